# apply: hbad's executor on the real kernel. `hbad apply` creates a declared vHBA
# through vport_create and marks it hbad's, and adopts one made by hand under a longer
# symbolic_name (the kernel keeps the old tail unless the new name is NUL-ended);
# a second apply changes nothing;
# `hbad destroy` deletes only what hbad owns (or with --force) and never a physical
# port; `hbad create` makes a transient vHBA by hand. Each step is checked in sysfs
# here and in hbad's JSON report on the host (checks.py).

[ -f /run/hbadvm/lab.env ] || die "the lab scenario left no /run/hbadvm/lab.env"
. /run/hbadvm/lab.env
FC=/sys/class/fc_host/$INI_HOST
POLICY=/vm/policy/apply.toml
EXPLICIT=0x5001a4a000000c01

vport_of_wwpn() { # 0x... -> vport-H:C-N
    for v in /sys/class/fc_vports/vport-*; do
        [ -e "$v" ] && [ "$(attr $v/port_name)" = "$1" ] && { basename "$v"; return 0; }
    done
    return 1
}
vports_total() { ls /sys/class/fc_vports | wc -l; }

check_eq "$INI_HOST npiv_vports_inuse before" "$(attr $FC/npiv_vports_inuse)" 0
run_hbad wwn --policy $POLICY wwn --format sysfs || fail "hbad wwn exited $(cat /tmp/hbad-wwn.rc)"
DERIVED="$(awk '$1 == "lab-derived" { print $2 }' /tmp/hbad-wwn.out)"
case "$DERIVED" in 0x5001a4a*) ok "lab-derived will use wwpn $DERIVED" ;; *) die "no derived WWPN for lab-derived in hbad wwn's table" ;; esac

# lab-explicit's vport exists already, made by someone else with a longer
# symbolic_name: apply must adopt it, and its mark must read back exactly.
err="$(sysfs_write "${EXPLICIT#0x}:5001a4a000000c00" $FC/vport_create)" || die "hand-made vport: $err"
V="$(vport_of_wwpn $EXPLICIT)" || die "no hand-made vport with $EXPLICIT"
sysfs_write "libvirt-made-this-one-earlier" /sys/class/fc_vports/$V/symbolic_name >/dev/null

# --- apply creates -------------------------------------------------------------------
run_hbad apply-1 --policy $POLICY --json apply
check_eq "hbad apply exit status" "$(cat /tmp/hbad-apply-1.rc)" 0
for pair in lab-derived:$DERIVED lab-explicit:$EXPLICIT; do
    name=${pair%%:*}
    wwpn=${pair#*:}
    if v="$(vport_of_wwpn $wwpn)"; then
        ok "$name: $v with wwpn $wwpn"
        case "$v" in vport-${INI_HOST#host}:*) ok "$name: made on $INI_HOST" ;; *) fail "$name: $v is not on $INI_HOST" ;; esac
        check_eq "$name: symbolic_name (hbad's mark)" "$(attr /sys/class/fc_vports/$v/symbolic_name)" "hbad:$name"
        vh="$(basename "$(ls -d "$(readlink -f /sys/class/fc_vports/$v/device)"/host* 2>/dev/null | head -n1)")"
        check_eq "$name: vHBA $vh port_name" "$(attr /sys/class/fc_host/$vh/port_name)" "$wwpn"
    else
        fail "$name: no vport with wwpn $wwpn after hbad apply"
    fi
done
check_eq "$INI_HOST npiv_vports_inuse after apply" "$(attr $FC/npiv_vports_inuse)" 2

# --- apply again: nothing to do -------------------------------------------------------
total="$(vports_total)"
run_hbad apply-2 --policy $POLICY --json apply
check_eq "second hbad apply exit status" "$(cat /tmp/hbad-apply-2.rc)" 0
check_eq "vports after the second apply" "$(vports_total)" "$total"
check_eq "$INI_HOST npiv_vports_inuse after the second apply" "$(attr $FC/npiv_vports_inuse)" 2
run_hbad plan-settled --policy $POLICY --json plan || fail "hbad plan exited $(cat /tmp/hbad-plan-settled.rc)"

# --- destroy ---------------------------------------------------------------------------
run_hbad destroy-derived --policy $POLICY --json destroy lab-derived
check_eq "hbad destroy lab-derived exit status" "$(cat /tmp/hbad-destroy-derived.rc)" 0
if vport_of_wwpn $DERIVED >/dev/null; then fail "lab-derived's vport is still there"; else ok "lab-derived's vport is gone"; fi
check_eq "$INI_HOST npiv_vports_inuse after destroy" "$(attr $FC/npiv_vports_inuse)" 1

# By host name: the WWPN alone is ambiguous in this lab, where the target side sees
# the initiator port as its remote port rport-0:0-0 with the same WWPN.
run_hbad destroy-physical --policy $POLICY --json destroy --force $INI_HOST
if [ "$(cat /tmp/hbad-destroy-physical.rc)" = 0 ]; then
    fail "hbad destroy --force of the physical port $INI_HOST succeeded"
else
    ok "hbad destroy --force of the physical port $INI_HOST refused: $(head -c 200 /tmp/hbad-destroy-physical.out | tr -s '\n ' ' ')"
fi
check "$INI_HOST still there" test -e /sys/class/fc_host/$INI_HOST

# A vport someone else made: hbad leaves it alone unless told --force.
FOREIGN=5001a4a000000e11
err="$(sysfs_write "$FOREIGN:5001a4a000000e10" $FC/vport_create)" || die "vport_create of a foreign vport: $err"
run_hbad destroy-foreign --policy $POLICY --json destroy 0x$FOREIGN
if [ "$(cat /tmp/hbad-destroy-foreign.rc)" = 0 ]; then
    fail "hbad destroy of a vport it did not make succeeded without --force"
else
    ok "hbad destroy of a foreign vport refused without --force: $(head -c 200 /tmp/hbad-destroy-foreign.out | tr -s '\n ' ' ')"
fi
vport_of_wwpn 0x$FOREIGN >/dev/null && ok "the foreign vport is still there" || fail "the foreign vport is gone"
run_hbad destroy-foreign-force --policy $POLICY --json destroy --force 0x$FOREIGN
check_eq "hbad destroy --force of the foreign vport exit status" "$(cat /tmp/hbad-destroy-foreign-force.rc)" 0
vport_of_wwpn 0x$FOREIGN >/dev/null && fail "the foreign vport survived --force" || ok "the foreign vport is gone after --force"

# --- create by hand -----------------------------------------------------------------------
run_hbad create-manual --policy $POLICY --json create --parent $INI_WWPN --wwpn 0x5001a4a000000e01 --wwnn 0x5001a4a000000e00 --name manual
check_eq "hbad create exit status" "$(cat /tmp/hbad-create-manual.rc)" 0
if v="$(vport_of_wwpn 0x5001a4a000000e01)"; then
    ok "hbad create made $v"
    check_eq "manual: symbolic_name" "$(attr /sys/class/fc_vports/$v/symbolic_name)" "hbad:manual"
else
    fail "no vport with wwpn 0x5001a4a000000e01 after hbad create"
fi
run_hbad create-again --policy $POLICY --json create --parent $INI_WWPN --wwpn 0x5001a4a000000e01 --wwnn 0x5001a4a000000e00 --name manual
info "hbad create of an existing vHBA again -> exit $(cat /tmp/hbad-create-again.rc)"
check_eq "vports with 0x5001a4a000000e01 after creating it twice" \
    "$(for v in /sys/class/fc_vports/*; do attr $v/port_name; done | grep -c 0x5001a4a000000e01)" 1

# Leave the port as the lab made it.
for name in manual lab-explicit; do
    run_hbad "destroy-$name" --policy $POLICY --json destroy "$name"
    check_eq "hbad destroy $name exit status" "$(cat /tmp/hbad-destroy-$name.rc)" 0
done
check_eq "$INI_HOST npiv_vports_inuse at the end" "$(attr $FC/npiv_vports_inuse)" 0
if [ -e /run/hbad/owned-vhbas.json ]; then
    info "ownership state file: $(head -c 300 /run/hbad/owned-vhbas.json)"
else
    info "no ownership state file: symbolic_name carried every mark"
fi
printf 'INI_HOST=%s\nINI_WWPN=%s\nDERIVED=%s\nEXPLICIT=%s\n' "$INI_HOST" "$INI_WWPN" "$DERIVED" "$EXPLICIT" >/tmp/apply-facts
vm_data facts /tmp/apply-facts

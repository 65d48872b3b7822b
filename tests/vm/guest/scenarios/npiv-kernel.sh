# npiv-kernel: NPIV on the real FC transport class, through the FCoE initiator port the
# lab built: vport_create and what it makes, the errors the kernel gives, the owner
# mark hbad writes (symbolic_name), vport_delete; and what `hbad wwn`/`hbad plan` make
# of it, checked on the host side from their JSON (tests/vm/checks.py).

[ -f /run/hbadvm/lab.env ] || die "the lab scenario left no /run/hbadvm/lab.env"
. /run/hbadvm/lab.env
FC=/sys/class/fc_host/$INI_HOST
P=${INI_HOST#host}
# lab-explicit in /vm/policy/npiv.toml.
V_WWPN=5001a4a000000c01
V_WWNN=5001a4a000000c00
POLICY=/vm/policy/npiv.toml

vports_with_wwpn() {
    for v in /sys/class/fc_vports/vport-*; do
        [ -e "$v" ] && [ "$(attr $v/port_name)" = "0x$1" ] && basename "$v"
    done
}

check_eq "$INI_HOST npiv_vports_inuse before" "$(attr $FC/npiv_vports_inuse)" 0
run_hbad plan-before --policy $POLICY --json plan || fail "hbad plan exited $(cat /tmp/hbad-plan-before.rc)"
run_hbad wwn --policy $POLICY --json wwn || fail "hbad wwn exited $(cat /tmp/hbad-wwn.rc)"

# --- create -------------------------------------------------------------------------
if err="$(sysfs_write "$V_WWPN:$V_WWNN" $FC/vport_create)"; then
    ok "vport_create $V_WWPN:$V_WWNN on $INI_HOST accepted"
else
    die "vport_create $V_WWPN:$V_WWNN on $INI_HOST: $err"
fi
VPORT="$(vports_with_wwpn $V_WWPN)"
[ -n "$VPORT" ] || die "no fc_vports entry with port_name 0x$V_WWPN after vport_create"
case "$VPORT" in
    vport-$P:0-*) ok "fc_vports entry $VPORT named after its parent $INI_HOST" ;;
    *) fail "fc_vports entry $VPORT is not named vport-$P:0-K" ;;
esac
VP=/sys/class/fc_vports/$VPORT
check_eq "$VPORT node_name" "$(attr $VP/node_name)" "0x$V_WWNN"
VDEV="$(readlink -f $VP/device)"
case "$VDEV" in
    */$INI_HOST/$VPORT) ok "$VPORT sits under its parent's device: $VDEV" ;;
    *) fail "$VPORT device is $VDEV, not under $INI_HOST" ;;
esac
# The vHBA: a new scsi_host + fc_host below the vport's device directory.
VHOST="$(basename "$(ls -d $VDEV/host* 2>/dev/null | head -n1)")"
case "$VHOST" in
    host[0-9]*) ok "vHBA $VHOST created under $VPORT" ;;
    *) die "no scsi host under $VDEV after vport_create" ;;
esac
check "vHBA $VHOST in class scsi_host" test -e /sys/class/scsi_host/$VHOST
check "vHBA $VHOST in class fc_host" test -e /sys/class/fc_host/$VHOST
check_eq "vHBA $VHOST port_name" "$(attr /sys/class/fc_host/$VHOST/port_name)" "0x$V_WWPN"
check_eq "vHBA $VHOST node_name" "$(attr /sys/class/fc_host/$VHOST/node_name)" "0x$V_WWNN"
check_eq "$VPORT vport_type" "$(attr $VP/vport_type)" "NPIV VPORT"
# KERNEL.md says a vHBA's fc_host port_type is "NPIV VPORT"; FCoE's vHBA shows its
# parent's port type instead ("NPort (fabric via point-to-point)" in VN2VN). Only the
# vport's vport_type says NPIV: tell vHBAs by their parent vport, not by port_type.
info "vHBA $VHOST fc_host port_type '$(attr /sys/class/fc_host/$VHOST/port_type)' (parent's: '$(attr $FC/port_type)')"
check_eq "vHBA $VHOST proc_name" "$(attr /sys/class/scsi_host/$VHOST/proc_name)" fcoe
check_eq "$INI_HOST npiv_vports_inuse after create" "$(attr $FC/npiv_vports_inuse)" 1
if [ -e /sys/class/fc_host/$VHOST/vport_create ]; then
    info "vHBA $VHOST offers vport_create itself (max_npiv_vports $(attr /sys/class/fc_host/$VHOST/max_npiv_vports))"
else
    info "vHBA $VHOST has no vport_create (vports of vports are not offered)"
fi
# No FC switch: the vport never logs in. vport_state changes without a uevent, so poll.
settled() { case "$(attr $VP/vport_state)" in "No Fabric Support" | Linkdown) return 0 ;; esac; return 1; }
if wait_for 10 settled; then
    ok "$VPORT vport_state settles without a fabric: $(attr $VP/vport_state)"
else
    fail "$VPORT vport_state '$(attr $VP/vport_state)' after 10 s, want 'No Fabric Support' or 'Linkdown'"
fi
info "$VPORT vport_last_state '$(attr $VP/vport_last_state)' roles '$(attr $VP/roles)' symbolic_name '$(attr $VP/symbolic_name)'"
info "vHBA $VHOST port_state '$(attr /sys/class/fc_host/$VHOST/port_state)' port_id '$(attr /sys/class/fc_host/$VHOST/port_id)' fabric_name '$(attr /sys/class/fc_host/$VHOST/fabric_name)'"
check_eq "vHBA $VHOST remote ports" "$(ls /sys/class/fc_remote_ports | grep -c "^rport-${VHOST#host}:")" 0

# --- errors -------------------------------------------------------------------------
expect_einval() { # description value
    local err
    if err="$(sysfs_write "$2" $FC/vport_create)"; then
        fail "$1: vport_create accepted '$2'"
    else
        case "$err" in
            *"Invalid argument"*) ok "$1: EINVAL" ;;
            *) fail "$1: want EINVAL, got: $err" ;;
        esac
    fi
}
expect_einval "garbage" "garbage"
expect_einval "0x prefixes" "0x5001a4a000000e01:0x5001a4a000000e00"
expect_einval "WWPN only" "5001a4a000000e01"
expect_einval "duplicate WWPN" "$V_WWPN:$V_WWNN"
if dmesg | grep -qi "already exists"; then
    ok "kernel log says the duplicate WWPN already exists: $(dmesg | grep -i 'already exists' | tail -n1 | cut -c1-120)"
else
    fail "no 'already exists' in the kernel log after a duplicate WWPN"
fi
check_eq "fc_vports entries with 0x$V_WWPN after the errors" "$(vports_with_wwpn $V_WWPN | wc -l)" 1
check_eq "$INI_HOST npiv_vports_inuse after the errors" "$(attr $FC/npiv_vports_inuse)" 1

# --- hbad against the vport ---------------------------------------------------------
run_hbad plan-present --policy $POLICY --json plan || fail "hbad plan exited $(cat /tmp/hbad-plan-present.rc)"
# hbad marks its vports by symbolic_name; the FC transport lets a driver take it.
if err="$(sysfs_write "hbad:lab-explicit" $VP/symbolic_name)"; then
    check_eq "$VPORT symbolic_name after writing it" "$(attr $VP/symbolic_name)" "hbad:lab-explicit"
else
    fail "writing symbolic_name of $VPORT: $err"
fi
# store_fc_vport_symbolic_name copies exactly the bytes written (less one trailing
# newline) and adds no terminator: a shorter name over a longer one keeps the old
# tail, unless the writer ends it with a NUL. hbad's ownership mark depends on this.
sysfs_write "libvirt-longer-name" $VP/symbolic_name >/dev/null
sysfs_write "hbad:db" $VP/symbolic_name >/dev/null
check_eq "symbolic_name 'hbad:db' written over 'libvirt-longer-name'" "$(attr $VP/symbolic_name)" "hbad:db-longer-name"
(printf 'hbad:db\0' >$VP/symbolic_name) 2>/dev/null
check_eq "symbolic_name 'hbad:db' + NUL written over it" "$(attr $VP/symbolic_name)" "hbad:db"
if err="$(sysfs_write "$(printf '%064d' 0)" $VP/symbolic_name)"; then
    fail "a 64-character symbolic_name was accepted (FC_SYMBOLIC_NAME_SIZE is 64 with the NUL)"
else
    case "$err" in *"Invalid argument"*) ok "a 64-character symbolic_name: EINVAL" ;; *) fail "a 64-character symbolic_name: $err" ;; esac
fi
# Back to hbad's mark, NUL-ended: the bytes after the earlier NUL are still there.
(printf 'hbad:lab-explicit\0' >$VP/symbolic_name) 2>/dev/null
check_eq "symbolic_name restored" "$(attr $VP/symbolic_name)" "hbad:lab-explicit"
run_hbad plan-marked --policy $POLICY --json plan || fail "hbad plan exited $(cat /tmp/hbad-plan-marked.rc)"

for view in "show:show 0x$V_WWPN" "list-vhba:list --cap vhba"; do
    name=${view%%:*}
    run_hbad "$name" --json ${view#*:}
    if hbad_unwritten "$name"; then
        xfail "hbad ${view#*:}: not written yet on this branch (the cli branch brings it)"
    elif [ "$(cat /tmp/hbad-$name.rc)" != 0 ]; then
        fail "hbad ${view#*:} exited $(cat /tmp/hbad-$name.rc): $(head -c 300 /tmp/hbad-$name.err)"
    fi
done

# --- delete -------------------------------------------------------------------------
if err="$(sysfs_write "$V_WWPN:$V_WWNN" $FC/vport_delete)"; then
    ok "vport_delete $V_WWPN:$V_WWNN accepted"
else
    fail "vport_delete $V_WWPN:$V_WWNN: $err"
fi
gone() { [ ! -e "$VP" ] && [ ! -e /sys/class/scsi_host/$VHOST ]; }
if wait_for 10 gone; then
    ok "$VPORT and vHBA $VHOST are gone"
else
    fail "$VPORT or $VHOST still there 10 s after vport_delete"
fi
check_eq "$INI_HOST npiv_vports_inuse after delete" "$(attr $FC/npiv_vports_inuse)" 0
if err="$(sysfs_write "$V_WWPN:$V_WWNN" $FC/vport_delete)"; then
    fail "vport_delete of a vport that is gone was accepted"
else
    info "vport_delete of a vport that is gone: $err"
    case "$err" in
        *"No such device"*) ok "vport_delete of a missing vport: ENODEV" ;;
        *) fail "vport_delete of a missing vport: want ENODEV (KERNEL.md), got: $err" ;;
    esac
fi
run_hbad plan-after --policy $POLICY --json plan || fail "hbad plan exited $(cat /tmp/hbad-plan-after.rc)"

cat >/tmp/npiv-facts <<FACTS
INI_HOST=$INI_HOST
INI_DEVPATH=$(readlink -f /sys/class/scsi_host/$INI_HOST/device | sed 's#^/sys##')
INI_WWPN=$INI_WWPN
TGT_HOST=$TGT_HOST
VPORT=$VPORT
VPORT_DEVPATH=$(echo "$VDEV" | sed 's#^/sys##')
VHOST=$VHOST
V_WWPN=0x$V_WWPN
V_WWNN=0x$V_WWNN
FACTS
vm_data facts /tmp/npiv-facts

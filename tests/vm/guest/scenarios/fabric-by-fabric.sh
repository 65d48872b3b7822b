# fabric-by-fabric: the parent chosen by fabric name. Two more FCFs, fabric B
# (0x100002fcf000000b) and fabric C (0x100002fcf000000c), each with one initiator port
# (fbi, fci). A policy whose vHBA names parent_fabric = fabric B: `hbad apply` puts it
# on the port logged in to fabric B and it logs in there. Then the cables are swapped
# (each FCF restarted on the other port): the ports log in to the other fabric, and a
# new apply puts the vHBA on the port now on fabric B.

. /vm/fabric.sh
fabric_lab || die "the fabric lab could not be built"
FAB_C=0x100002fcf000000c
FB_WWPN=0x200002000000020b
FC_WWPN=0x200002000000030b
P=/tmp/by-fabric.toml
cat >$P <<POLICY
[wwn]
seed = "hbadvm-fabric"
[[vhba]]
name = "on-b"
parent_fabric = "$FAB_B"
wwpn = "0x5001a4a000000e01"
wwnn = "0x5001a4a000000e00"
[ownership]
state_file = "/run/hbad/by-fabric-owned.json"
POLICY
fab_veth fbi xbi 02:00:00:00:02:0b && fab_veth fci xci 02:00:00:00:03:0b || die "veth pairs fbi/xbi, fci/xci"
: >/tmp/fcf-b.init
: >/tmp/fcf-c.init
fcf_start b 02:fc:f0:00:00:0b xbi && fcf_start c 02:fc:f0:00:00:0c xci || die "FCFs b and c did not start"
echo fbi >/sys/bus/fcoe/ctlr_create && echo fci >/sys/bus/fcoe/ctlr_create || die "ctlr_create fbi/fci"
HBI="$(fc_host_by_wwpn $FB_WWPN)" && HCI="$(fc_host_by_wwpn $FC_WWPN)" || die "no fc_host for fbi/fci"
t0="$(vm_uptime)"
echo 1 >/sys/bus/fcoe/devices/$(ctlr_of fbi)/enabled && echo 1 >/sys/bus/fcoe/devices/$(ctlr_of fci)/enabled || die "enable fbi/fci"
on_fabrics() { # host-on-B host-on-C
    host_online $1 && host_online $2 && [ "$(attr /sys/class/fc_host/$1/fabric_name)" = $FAB_B ] &&
        [ "$(attr /sys/class/fc_host/$2/fabric_name)" = $FAB_C ]
}
wait_for 30 on_fabrics $HBI $HCI || die "fbi/fci not on fabrics B/C: $(attr /sys/class/fc_host/$HBI/fabric_name) $(attr /sys/class/fc_host/$HCI/fabric_name)"
ok "$HBI on fabric $FAB_B, $HCI on fabric $FAB_C, $(since $t0) s after enabling"

applied_on() { # expected parent host
    run_hbad "apply-$1" --policy $P --json apply || { fail "hbad apply exited $(cat /tmp/hbad-apply-$1.rc): $(head -c 300 /tmp/hbad-apply-$1.err)"; return 1; }
    v="$(vport_of 0x5001a4a000000e01)" || { fail "no vport for on-b after hbad apply"; return 1; }
    check_eq "on-b's vport is under" "${v#vport-}" "${1#host}:0-${v##*-}"
    wait_for 20 vport_active 0x5001a4a000000e01 && ok "on-b logged in to fabric B ($(attr /sys/class/fc_host/$(fc_host_by_wwpn 0x5001a4a000000e01)/fabric_name))" ||
        fail "on-b not Active: $(attr /sys/class/fc_vports/$v/vport_state)"
}
applied_on $HBI
run_hbad destroy-1 --policy $P --json destroy on-b >/dev/null
gone() { ! vport_of 0x5001a4a000000e01 >/dev/null; }
wait_for 10 gone || fail "hbad destroy on-b left its vport"

# Swap the cables: fabric B's FCF now serves fci's link, fabric C's fbi's.
kill "$(cat /run/hbadvm/fcf-b.pid)" "$(cat /run/hbadvm/fcf-c.pid)"
t0="$(vm_uptime)"
fcf_start b 02:fc:f0:00:00:0b xci && fcf_start c 02:fc:f0:00:00:0c xbi || die "FCFs b and c did not restart"
if wait_for 40 on_fabrics $HCI $HBI; then
    ok "cables swapped: $HCI now on fabric B, $HBI on fabric C, $(since $t0) s after"
    applied_on $HCI
    run_hbad destroy-2 --policy $P --json destroy on-b >/dev/null
    wait_for 10 gone || fail "hbad destroy on-b left its vport"
else
    fail "after the swap: $HBI on $(attr /sys/class/fc_host/$HBI/fabric_name), $HCI on $(attr /sys/class/fc_host/$HCI/fabric_name)"
fi

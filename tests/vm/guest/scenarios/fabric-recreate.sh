# fabric-recreate: vm-b's vport deleted by hand (WWPN:WWNN > vport_delete) while the
# agent runs: the agent makes it again with the same WWPN, it logs in to the fabric
# again (FDISC, Active) and its LUN and by-vhba link return. The target side keeps a
# Blocked remote port for vm-b's WWPN until dev_loss_tmo (60 s here): that is the memory
# of the old login, not a port using the WWPN, and must not hold the recreation up.

. /vm/fabric.sh
fabric_vhbas_ready || die "the fabric lab with vm-a and vm-b logged in is not there"
uevent_log_start || die "busybox uevent saw no event"
FC=/sys/class/fc_host/$FA_INI_HOST
V1="$(vport_of $VM_B_WWPN)"
mark="$(log_mark)"
t0="$(vm_uptime)"
out="$(sysfs_write "${VM_B_WWPN#0x}:${VM_B_WWNN#0x}" $FC/vport_delete)" || die "vport_delete of $V1: $out"
ok "deleted vm-b ($V1, $HB) by hand"
stale() {
    for r in /sys/class/fc_remote_ports/rport-${FA_TGT_HOST#host}:*; do
        [ "$(attr $r/port_name)" = $VM_B_WWPN ] && echo "$(basename $r) $(attr $r/port_state)"
    done
}
info "the target side's remote ports for $VM_B_WWPN: $(stale | tr '\n' ' ')"
recreated() { v="$(vport_of $VM_B_WWPN)" && [ "$v" != "$V1" ]; }
if wait_for 15 recreated; then
    ok "the agent recreated vm-b as $(vport_of $VM_B_WWPN) $(since $t0) s after the delete"
else
    why="$(log_since $mark | grep -o 'already used by [^"]*' | head -n1)"
    die "vm-b not recreated within 15 s (${why:-no reason logged}); target side: $(stale | tr '\n' ' ')"
fi
t1="$(vm_uptime)"
wait_for 20 vport_active $VM_B_WWPN && ok "vm-b logged in again (Active) $(since $t1) s after it was recreated" ||
    fail "vm-b not Active: '$(attr /sys/class/fc_vports/$(vport_of $VM_B_WWPN)/vport_state)'"
HB2="$(fc_host_by_wwpn $VM_B_WWPN)"
lun_back() { [ -n "$(disk_of ${HB2#host}:0:0:0)" ]; }
wait_for 20 lun_back && ok "vm-b's LUN is back: ${HB2#host}:0:0:0 (/dev/$(disk_of ${HB2#host}:0:0:0)) $(since $t0) s after the delete" ||
    fail "vm-b's LUN did not return on $HB2"
check_eq "vm-b's LUN serial" "$(serial_of ${HB2#host}:0:0:0)" hbadvm-fb0
marked() { [ "$(attr /sys/class/fc_vports/$(vport_of $VM_B_WWPN)/symbolic_name)" = hbad:vm-b ]; }
wait_for 10 marked && ok "the recreated vport is marked hbad:vm-b" || fail "not marked: '$(attr /sys/class/fc_vports/$(vport_of $VM_B_WWPN)/symbolic_name)'"
udevadm settle -t 10
link_back() { ls /dev/disk/by-vhba/vm-b/ 2>/dev/null | grep -q -- '-lun-0$'; }
if wait_for 5 link_back; then
    ok "/dev/disk/by-vhba/vm-b/$(ls /dev/disk/by-vhba/vm-b/ | grep -- '-lun-0$') is back"
else
    fail "no /dev/disk/by-vhba/vm-b link after the recreation"
fi
check_eq "vm-a untouched" "$(disk_of ${HA#host}:0:0:0)" "$DA"
log_since $mark | grep -v "^$" | while read -r l; do info "agent: $(echo "$l" | cut -c 28-220)"; done
info "the target side's remote ports for $VM_B_WWPN after: $(stale | tr '\n' ' ')"
fab_snapshot $FA_INI_HOST $HB2 $FA_TGT_HOST >/tmp/fabric-recreate-attrs
vm_data attrs /tmp/fabric-recreate-attrs
cp /run/hbadvm/uevents /tmp/fabric-recreate-uevents && vm_data uevents /tmp/fabric-recreate-uevents

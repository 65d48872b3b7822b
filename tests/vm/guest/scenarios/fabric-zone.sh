# fabric-zone: the fabric's zoning decides what a vHBA sees. A zone that puts the
# second target (fas) with vm-a (one initiator per zone, as SANs zone: a zone of both
# targets would let them log in to each other) makes the FCF send RSCNs; vm-a's host
# rediscovers, gets a remote port for the new target, its LUN appears and hbad's graph
# (hbad luns) and by-vhba links follow. Taking the target out of the zone again: the
# remote port goes (dev_loss_tmo shortened to 1 s), the kernel removes the disk, and
# hbad's graph and links follow. vm-b sees none of it.

. /vm/fabric.sh
fabric_vhbas_ready || die "the fabric lab with vm-a and vm-b logged in is not there"
uevent_log_start || die "busybox uevent saw no event"
luns_b0="$(luns_of_host $HB | tr '\n' ' ')"
mark="$(log_mark)"
has_tgt2() { target_rport_of $HA $FA_TGT2_WWPN >/dev/null; }
check "vm-a has no remote port for $FA_TGT2_WWPN before the zone change" test -z "$(target_rport_of $HA $FA_TGT2_WWPN)"

t0="$(vm_uptime)"
answer="$(fcf_ctl a zone vm-a-2 $VM_A_WWPN $FA_TGT2_WWPN)" || die "FCF refused the zone change: $answer"
ok "zone vm-a-2 puts $FA_TGT2_WWPN with vm-a (FCF: $answer)"
if wait_for 20 has_tgt2; then
    R2="$(target_rport_of $HA $FA_TGT2_WWPN)"
    ok "RSCN -> vm-a's remote port $R2 for $FA_TGT2_WWPN Online $(since $t0) s after the zone change"
else
    die "no Online FCP target rport for $FA_TGT2_WWPN on $HA 20 s after the zone change; FCF: $(grep RSCN /tmp/fcf-a.log | tail -n 3 | tr '\n' ' ')"
fi
T2="$(attr /sys/class/fc_remote_ports/$R2/scsi_target_id)"
L2="${HA#host}:0:$T2:0"
has_l2() { [ -n "$(disk_of $L2)" ]; }
if wait_for 20 has_l2; then
    ok "LUN $L2 (/dev/$(disk_of $L2)) on vm-a $(since $t0) s after the zone change"
else
    fail "no disk on $L2 20 s after the zone change"
fi
check_eq "the new target's LUN serial" "$(serial_of $L2)" hbadvm-fc0
in_hbad() { hbad_luns_of luns-zone $VM_A_WWPN | grep -qx "$L2"; }
wait_for 10 in_hbad && ok "hbad luns shows $L2 under vm-a" || fail "hbad luns does not show $L2: $(hbad_luns_of luns-zone $VM_A_WWPN | tr '\n' ' ')"
udevadm settle -t 10
link2() { ls -l /dev/disk/by-vhba/vm-a/ 2>/dev/null | grep -- "$FA_TGT2_WWPN-lun-0 "; }
wait_for 5 link2 && ok "by-vhba link for the new target: $(link2 | sed 's/.* \(0x[^ ]*\) -> \(.*\)/\1 -> \2/')" ||
    fail "no /dev/disk/by-vhba/vm-a/$FA_TGT2_WWPN-lun-0 (have: $(ls /dev/disk/by-vhba/vm-a/ | tr '\n' ' '))"
scans_since $mark | while read -r l; do info "agent after the RSCN: $l"; done
check_eq "vm-b's LUNs are unchanged" "$(luns_of_host $HB | tr '\n' ' ')" "$luns_b0"
check "vm-b has no remote port for $FA_TGT2_WWPN" test -z "$(target_rport_of $HB $FA_TGT2_WWPN)"

# --- out of the zone again -------------------------------------------------------------
# The kernel keeps a lost remote port (Blocked) for dev_loss_tmo before removing it and
# its disks; 1 s keeps the scenario short.
echo 1 >/sys/class/fc_remote_ports/$R2/dev_loss_tmo || fail "dev_loss_tmo of $R2"
disk2="$(disk_of $L2)"
mark="$(log_mark)"
t0="$(vm_uptime)"
answer="$(fcf_ctl a unzone vm-a-2)" || die "FCF refused the zone change: $answer"
ok "zone vm-a-2 removed (FCF: $answer)"
rport_gone() { [ ! -e /sys/class/fc_remote_ports/$R2 ] || [ "$(attr /sys/class/fc_remote_ports/$R2/port_state)" != Online ]; }
wait_for 20 rport_gone && ok "$R2 left Online $(since $t0) s after the zone change ($(attr /sys/class/fc_remote_ports/$R2/port_state 2>/dev/null || echo removed))" ||
    fail "$R2 still Online 20 s after the zone change"
lun_gone() { [ ! -e /sys/bus/scsi/devices/$L2 ]; }
wait_for 20 lun_gone && ok "the kernel removed $L2 ($disk2) $(since $t0) s after the zone change" ||
    fail "$L2 still there 20 s after the zone change (state $(attr /sys/bus/scsi/devices/$L2/state))"
not_in_hbad() { ! hbad_luns_of luns-unzoned $VM_A_WWPN | grep -qx "$L2"; }
wait_for 10 not_in_hbad && ok "hbad luns no longer shows $L2" || fail "hbad luns still shows $L2"
udevadm settle -t 10
no_link2() { ! link2 >/dev/null; }
wait_for 5 no_link2 && ok "the by-vhba link for $FA_TGT2_WWPN is gone" || fail "by-vhba link left: $(link2)"
check_eq "vm-a keeps its first target's LUN" "$(disk_of ${HA#host}:0:0:0)" "$DA"
check_eq "vm-b's LUNs are still unchanged" "$(luns_of_host $HB | tr '\n' ' ')" "$luns_b0"
log_since $mark | grep -v "^$" | tail -n 20 | while read -r l; do info "agent: $(echo "$l" | cut -c 28-200)"; done
fab_snapshot $HA >/tmp/fabric-zone-attrs && vm_data attrs /tmp/fabric-zone-attrs
cp /run/hbadvm/uevents /tmp/fabric-zone-uevents && vm_data uevents /tmp/fabric-zone-uevents

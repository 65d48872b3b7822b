# fabric-login: hbad's vHBAs on a real fabric. `hbad run` with a policy of two vHBAs on
# one physical port (fabric A, see fabric.sh): both are created, both log in (FDISC:
# vport_state Active, their hosts Online), each sees exactly the LUN its LIO ACL masks
# to its WWPN (sysfs and `hbad luns` agree), and udev gives each disk its
# /dev/disk/by-vhba/<vhba>/ link, unique where upstream's by-path collides.

. /vm/fabric.sh
fabric_lab || die "the fabric lab could not be built"
# The kernel's events from the vports' creation on: their order at a login is what the
# simulator follows (tests/sim.rs pins it).
uevent_log_start || die "busybox uevent saw no event"
t0="$(vm_uptime)"
fabric_agent || die "the agent did not start"
ok "hbad run with the fabric policy is ready $(since $t0) s after start"

# When each vport appears and when it is Active: the login time of an NPIV vport.
both_created() { vport_of $VM_A_WWPN >/dev/null && vport_of $VM_B_WWPN >/dev/null; }
wait_for 30 both_created || die "vHBAs not created: vm-a '$(vport_of $VM_A_WWPN)', vm-b '$(vport_of $VM_B_WWPN)'; $(tail -c 300 $FAB_LOG | tr '\n' ' ')"
t_created="$(vm_uptime)"
ok "the agent created vm-a ($(vport_of $VM_A_WWPN)) and vm-b ($(vport_of $VM_B_WWPN)) $(since $t0) s after start"
for name in vm-a vm-b; do
    [ $name = vm-a ] && w=$VM_A_WWPN || w=$VM_B_WWPN
    if wait_for 30 vport_active $w; then
        ok "$name logged in (vport_state Active) $(since $t_created) s after it was created"
    else
        v="$(vport_of $w)"
        fail "$name ($v) not Active after 30 s: vport_state '$(attr /sys/class/fc_vports/$v/vport_state)'"
    fi
    h="$(fc_host_by_wwpn $w)"
    wait_for 10 host_online $h || fail "$name's host $h port_state '$(attr /sys/class/fc_host/$h/port_state)', want Online"
    check_eq "$name's host $h fabric_name" "$(attr /sys/class/fc_host/$h/fabric_name)" $FAB_A
    info "$name: $h port_id $(attr /sys/class/fc_host/$h/port_id) port_type '$(attr /sys/class/fc_host/$h/port_type)' symbolic_name of $(vport_of $w): '$(attr /sys/class/fc_vports/$(vport_of $w)/symbolic_name)'"
done

# Each vHBA: the target as an FCP target remote port, and exactly its own LUN.
for name in vm-a vm-b; do
    if [ $name = vm-a ]; then w=$VM_A_WWPN; serial=hbadvm-fa0; else w=$VM_B_WWPN; serial=hbadvm-fb0; fi
    h="$(fc_host_by_wwpn $w)"
    has_rport() { target_rport_of $h $FA_TGT_WWPN >/dev/null; }
    wait_for 20 has_rport || { fail "$name ($h): no Online FCP target rport for $FA_TGT_WWPN"; continue; }
    has_disk() { [ -n "$(disk_of ${h#host}:0:0:0)" ]; }
    wait_for 20 has_disk || fail "$name ($h): no disk on ${h#host}:0:0:0 within 20 s"
    ok "$name ($h): target $(target_rport_of $h $FA_TGT_WWPN), LUN ${h#host}:0:0:0 (/dev/$(disk_of ${h#host}:0:0:0)) $(since $t_created) s after creation"
    check_eq "$name's LUNs in sysfs" "$(luns_of_host $h | tr '\n' ' ')" "${h#host}:0:0:0 "
    check_eq "$name's LUN serial (its own ACL's disk)" "$(serial_of ${h#host}:0:0:0)" $serial
    check_eq "$name's LUNs in hbad luns" "$(hbad_luns_of luns-$name $w | tr '\n' ' ')" "$(luns_of_host $h | tr '\n' ' ')"
done
check_eq "the physical port $FA_INI_HOST sees no LUN (unzoned, no ACL)" "$(luns_of_host $FA_INI_HOST | wc -l)" 0

# by-vhba links: made by udev through `hbad udev-id` once the vport carries hbad's mark.
udevadm settle -t 30
# Did a disk come before its vport's mark? hbad then announces it to udev again (a
# change written to its uevent file, SYNTH_UUID=0 in the kernel's log).
for name in vm-a vm-b; do
    h="$(fc_host_by_wwpn $([ $name = vm-a ] && echo $VM_A_WWPN || echo $VM_B_WWPN))"
    lun_at="$(grep -n "new LUN 0 on $h " $FAB_LOG | head -n1 | cut -d: -f1)"
    mark_at="$(grep -n "vHBA $name created\|marked .* $name" $FAB_LOG | head -n1 | cut -d: -f1)"
    [ -n "$lun_at" ] && [ -n "$mark_at" ] && [ "$lun_at" -lt "$mark_at" ] &&
        info "$name's LUN was found before its vport was marked: $(grep -c "change block disk .*/$h/.*SYNTH_UUID=0" /run/hbadvm/uevents) change uevent(s) for its disk after the mark"
done
for name in vm-a vm-b; do
    [ $name = vm-a ] && w=$VM_A_WWPN || w=$VM_B_WWPN
    h="$(fc_host_by_wwpn $w)"
    disk="$(disk_of ${h#host}:0:0:0)"
    link="$(ls /dev/disk/by-vhba/$name/ 2>/dev/null | grep -- '-lun-0$' | head -n1)"
    if [ -n "$link" ] && [ "$(basename "$(readlink /dev/disk/by-vhba/$name/$link)")" = "$disk" ]; then
        ok "/dev/disk/by-vhba/$name/$link -> $disk"
    else
        fail "no /dev/disk/by-vhba/$name/...-lun-0 -> $disk (by-vhba: $(ls -R /dev/disk/by-vhba 2>/dev/null | tr '\n' ' '))"
    fi
done
bypath="$(ls /dev/disk/by-path/ 2>/dev/null | grep -c "fc-$FA_TGT_WWPN-lun-0$")"
info "upstream by-path: $bypath link(s) named fc-$FA_TGT_WWPN-lun-0 for the two vHBAs' LUN 0 (one name, two disks)"
info "FCF: $(fcf_ctl a status | grep -c '^login') logins"
fcf_ctl a status | while read -r l; do info "fcf a: $l"; done
vm_data agent.log $FAB_LOG
fab_snapshot $FA_INI_HOST $(fc_host_by_wwpn $VM_A_WWPN) $(fc_host_by_wwpn $VM_B_WWPN) >/tmp/fabric-attrs
vm_data attrs /tmp/fabric-attrs
cp /run/hbadvm/uevents /tmp/fabric-login-uevents && vm_data uevents /tmp/fabric-login-uevents

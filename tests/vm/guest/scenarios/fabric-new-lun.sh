# fabric-new-lun: a LUN mapped to vm-a's ACL on the target, then one read through
# vm-a: the target reports REPORTED_LUNS_DATA_HAS_CHANGED on vm-a's path only, hbad
# scans vm-a's host at that target only, the LUN and its by-vhba link appear (within
# 2 s of the read), and vm-b is not scanned and sees nothing new.

. /vm/fabric.sh
fabric_vhbas_ready || die "the fabric lab with vm-a and vm-b logged in is not there"
luns_b0="$(luns_of_host $HB | tr '\n' ' ')"
mark="$(log_mark)"
core=/sys/kernel/config/target/core
lio_backstore $core/rd_mcp_22/fa1 hbadvm-fa1 || die "LIO backstore fa1"
lio_map $FA_TPG 2 $core/rd_mcp_22/fa1 $VM_A_CFS 1 || die "map fa1 as LUN 1 of vm-a's ACL"
ok "LIO: hbadvm-fa1 mapped as LUN 1 into vm-a's ACL ($VM_A_CFS)"
check_eq "the kernel adds nothing by itself" "$(luns_of_host $HA | tr '\n' ' ')" "${HA#host}:0:0:0 "

lun1="${HA#host}:0:0:1"
has_lun1() { [ -n "$(disk_of $lun1)" ]; }
has_link1() { ls /dev/disk/by-vhba/vm-a/ 2>/dev/null | grep -q -- '-lun-1$'; }
# One read raises the unit attention; LIO does not always report it on the first
# command after the configfs change, so read again after a while if nothing came.
reads=0
t_io=
while [ $reads -lt 3 ] && ! has_lun1; do
    reads=$((reads + 1))
    t_io="$(vm_uptime)"
    dd if=/dev/$DA of=/dev/null bs=512 count=1 iflag=direct 2>/dev/null
    wait_for 4 has_lun1 && break
done
if has_lun1; then
    t_lun="$(since $t_io)"
    ok "LUN $lun1 (/dev/$(disk_of $lun1)) on vm-a $t_lun s after the read ($reads read(s))"
    wait_for 4 has_link1 || true
    t_link="$(since $t_io)"
    if has_link1; then
        ok "/dev/disk/by-vhba/vm-a/$(ls /dev/disk/by-vhba/vm-a/ | grep -- '-lun-1$') $t_link s after the read"
    else
        fail "no by-vhba link for $lun1 within 4 s (by-vhba/vm-a: $(ls /dev/disk/by-vhba/vm-a/ | tr '\n' ' '))"
    fi
    # Two seconds is the goal; TCG on a shared machine is slower than any host, so
    # over 2 s is said, and only over 5 s (something waited for nothing) fails.
    within() { awk -v t="$1" -v s="$2" 'BEGIN { exit !(t <= s) }'; }
    if within "$t_link" 2; then
        ok "LUN and link within 2 s of the read"
    elif within "$t_link" 5; then
        info "LUN and link took $t_link s (goal 2 s; the scan itself is synchronous under TCG)"
    else
        fail "LUN and link took $t_link s, want 2 s"
    fi
    check_eq "the new LUN's serial" "$(serial_of $lun1)" hbadvm-fa1
else
    fail "no LUN $lun1 after $reads reads; the agent's scans: $(scans_since $mark | tr '\n' ';')"
fi
ua="$(log_since $mark | grep -c 'REPORTED_LUNS_DATA_HAS_CHANGED\|unit attention')"
info "agent log lines about the unit attention: $ua"
scans="$(scans_since $mark)"
echo "$scans" | while read -r l; do [ -n "$l" ] && info "agent: $l"; done
if echo "$scans" | grep -q "scanned $HA "; then ok "hbad scanned vm-a's host $HA"; else fail "hbad did not scan $HA: '$scans'"; fi
if echo "$scans" | grep -q "scanned $HA \"- - -\""; then fail "hbad scanned all of $HA, want the target only"; fi
if echo "$scans" | grep -q "scanned $HB "; then fail "hbad scanned vm-b's host $HB: '$scans'"; else ok "vm-b's host $HB not scanned"; fi
if echo "$scans" | grep -v "scanned $HA " | grep -q scanned; then fail "hbad scanned another host: '$scans'"; fi
check_eq "vm-b's LUNs are unchanged" "$(luns_of_host $HB | tr '\n' ' ')" "$luns_b0"
check_eq "vm-a's LUNs in hbad luns" "$(hbad_luns_of luns-a $VM_A_WWPN | tr '\n' ' ')" "$(luns_of_host $HA | tr '\n' ' ')"
log_since $mark >/tmp/fabric-new-lun.log
vm_data agent.log /tmp/fabric-new-lun.log

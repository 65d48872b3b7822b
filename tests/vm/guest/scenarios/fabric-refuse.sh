# fabric-refuse: the fabric says no, then goes away. (1) The FCF refuses vm-b's WWPN and
# clears its virtual link: vm-b's FDISC gets LS_RJT, the vport stays Initializing and
# its host Offline while libfc retries; hbad leaks no vport and must not call it active.
# Accepted again, vm-b logs back in by itself and its LUN is there. (2) The FCF stops
# advertising (link loss): after 2.5 keep-alive periods the ENodes declare it lost and
# the vports lose their login; when it advertises again they log back in and their LUNs
# are there; hbad's status follows both ways.

. /vm/fabric.sh
fabric_vhbas_ready || die "the fabric lab with vm-a and vm-b logged in is not there"
FC=/sys/class/fc_host/$FA_INI_HOST
VB="$(vport_of $VM_B_WWPN)"
inuse0="$(attr $FC/npiv_vports_inuse)"
vports0="$(ls /sys/class/fc_vports | wc -l)"
# vm-b's line in `hbad status`: NAME STATE HOST PARENT WWPN VPORT-STATE OWNER.
hbad_state_of() { hbad status --status-file $FAB_STATUS 2>/dev/null | awk -v n="$1" '$1 == n { print $2 }'; }
mark="$(log_mark)"

# --- (1) the fabric refuses vm-b's WWPN ------------------------------------------------
answer="$(fcf_ctl a refuse $VM_B_WWPN)" || die "FCF: $answer"
t0="$(vm_uptime)"
answer="$(fcf_ctl a logout $VM_B_WWPN)" || die "FCF logout: $answer"
ok "FCF refuses $VM_B_WWPN and cleared its virtual link ($answer)"
refused() { grep -q "FDISC of $VM_B_WWPN on xai refused" /tmp/fcf-a.log; }
wait_for 10 refused && ok "vm-b sent a new FDISC $(since $t0) s after the CVL and the FCF refused it" ||
    fail "no refused FDISC of vm-b in the FCF's log: $(tail -n 3 /tmp/fcf-a.log | tr '\n' ' ')"
not_active() { ! vport_active $VM_B_WWPN; }
wait_for 10 not_active || fail "vm-b still Active 10 s after the CVL"
sleep 3
check_eq "vm-b's vport_state while refused" "$(attr /sys/class/fc_vports/$VB/vport_state)" Initializing
check_eq "vm-b's host port_state while refused" "$(attr /sys/class/fc_host/$HB/port_state)" Offline
check_eq "no vport leaked: npiv_vports_inuse" "$(attr $FC/npiv_vports_inuse)" "$inuse0"
check_eq "no vport leaked: fc_vports" "$(ls /sys/class/fc_vports | wc -l)" "$vports0"
check_eq "the vport is the same one" "$(vport_of $VM_B_WWPN)" "$VB"
retries="$(grep -c "FDISC of $VM_B_WWPN on xai refused" /tmp/fcf-a.log)"
info "refused FDISCs of vm-b so far (libfc retries by itself): $retries"
st="$(hbad_state_of vm-b)"
info "hbad status says vm-b is '$st' while the fabric refuses it"
if [ "$st" = active ]; then
    xfail "hbad status calls vm-b active while the fabric refuses its login (vport Initializing, host Offline)"
else
    ok "hbad status does not call the refused vm-b active: '$st'"
fi

t1="$(vm_uptime)"
fcf_ctl a accept $VM_B_WWPN >/dev/null || fail "FCF accept"
wait_for 30 vport_active $VM_B_WWPN && ok "vm-b logged in again $(since $t1) s after the fabric accepted it (libfc's own retry)" ||
    fail "vm-b not Active 30 s after the fabric accepted it: '$(attr /sys/class/fc_vports/$VB/vport_state)'"
back() { host_online $HB && [ -n "$(disk_of ${HB#host}:0:0:0)" ] && [ "$(hbad_state_of vm-b)" = active ]; }
wait_for 20 back && ok "vm-b's host Online, its LUN there, hbad says active" ||
    fail "after the accept: host $(attr /sys/class/fc_host/$HB/port_state), disk '$(disk_of ${HB#host}:0:0:0)', hbad '$(hbad_state_of vm-b)'"

# --- (2) link loss: the FCF stops advertising --------------------------------------------
t0="$(vm_uptime)"
fcf_ctl a link down >/dev/null || die "FCF link down"
ok "FCF stopped advertising and answering"
lost() { ! vport_active $VM_A_WWPN && ! vport_active $VM_B_WWPN; }
if wait_for 20 lost; then
    ok "both vports lost their login $(since $t0) s after the FCF went quiet (vm-a $(attr /sys/class/fc_vports/$(vport_of $VM_A_WWPN)/vport_state), host $(attr /sys/class/fc_host/$HA/port_state))"
else
    fail "vports still Active 20 s after the FCF went quiet"
fi
sleep 2
st_a="$(hbad_state_of vm-a)"
info "hbad status while the fabric is gone: vm-a '$st_a', vm-b '$(hbad_state_of vm-b)'"
if [ "$st_a" = active ]; then
    xfail "hbad status calls vm-a active while its vport has lost the fabric ($(attr /sys/class/fc_vports/$(vport_of $VM_A_WWPN)/vport_state))"
else
    ok "hbad status does not call vm-a active without a fabric: '$st_a'"
fi
check_eq "no vport deleted or added while the fabric is gone" "$(ls /sys/class/fc_vports | wc -l)" "$vports0"
mark2="$(log_mark)"
t1="$(vm_uptime)"
fcf_ctl a link up >/dev/null || die "FCF link up"
both_active() { vport_active $VM_A_WWPN && vport_active $VM_B_WWPN; }
if wait_for 40 both_active; then
    ok "both vports logged in again $(since $t1) s after the FCF came back"
else
    fail "vports not Active 40 s after the FCF came back: vm-a $(attr /sys/class/fc_vports/$(vport_of $VM_A_WWPN)/vport_state), vm-b $(attr /sys/class/fc_vports/$(vport_of $VM_B_WWPN)/vport_state)"
fi
luns_back() {
    target_rport_of $HA $FA_TGT_WWPN >/dev/null && target_rport_of $HB $FA_TGT_WWPN >/dev/null &&
        dd if=/dev/$DA of=/dev/null bs=512 count=1 iflag=direct 2>/dev/null &&
        dd if=/dev/$DB of=/dev/null bs=512 count=1 iflag=direct 2>/dev/null
}
wait_for 30 luns_back && ok "both vHBAs read their LUNs again $(since $t1) s after the FCF came back" ||
    fail "the LUNs are not readable 30 s after the FCF came back"
both_reported() { [ "$(hbad_state_of vm-a)" = active ] && [ "$(hbad_state_of vm-b)" = active ]; }
wait_for 10 both_reported && ok "hbad status: vm-a and vm-b active again" ||
    fail "hbad status after the return: vm-a '$(hbad_state_of vm-a)', vm-b '$(hbad_state_of vm-b)'"
scans_since $mark2 | while read -r l; do info "agent after the return: $l"; done
log_since $mark | grep -v "^$" | tail -n 30 | while read -r l; do info "agent: $(echo "$l" | cut -c 28-220)"; done

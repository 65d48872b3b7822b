# hung-host: `hbad run` while one SCSI host's scan is held in the kernel. scsi_debug's
# options are module-wide, so every scsi_debug host is made to ignore commands
# (opts bit 4 "timeout", every_nth=1) right after one of them raised
# REPORTED_LUNS_DATA_HAS_CHANGED: the agent's scan of that target then sits in the
# kernel (REPORT LUNS never answered). Meanwhile the FCoE host is the healthy one: a
# new LIO LUN there must still appear within 2 s, SIGHUP must reload, the watchdog must
# keep pinging (a test NOTIFY_SOCKET plays systemd), the status file and `hbad status`
# must name the hung host, and SIGTERM must end the agent within 10 s with the hung
# write logged (its writer process is left behind in the kernel). scsi_debug's options
# are restored at the end; the scan it holds finishes once the midlayer's timeout and
# error handling retry it.

[ -f /run/hbadvm/lab.env ] || die "the lab scenario left no /run/hbadvm/lab.env"
. /run/hbadvm/lab.env
H=${INI_HOST#host}
POLICY=/vm/policy/hung.toml
STATUS=/run/hbad/status.json
NOTIFY=/run/hbad/notify.sock
T=/sys/kernel/config/target
TPG=$T/fc/20:00:02:00:00:00:00:0a/tpgt_1
ACL=$TPG/acls/20:00:02:00:00:00:00:0b
SD=/sys/bus/pseudo/drivers/scsi_debug
SD_A=${SD_HOSTS%% *}
SD_N=${SD_A#host}

since() { awk -v a="$1" -v b="$(vm_uptime)" 'BEGIN { printf "%.2f", b - a }'; }
within() { awk -v s="$1" -v max="$2" 'BEGIN { exit !(s <= max) }'; }
# Processes in uninterruptible sleep named hbad: writers the kernel holds.
hbad_in_d() {
    local p line s
    for p in /proc/[0-9]*; do
        read -r line 2>/dev/null <"$p/stat" || continue
        case "$line" in *"(hbad)"*) ;; *) continue ;; esac
        s=${line#*) }
        [ "${s%% *}" = D ] && echo "${p#/proc/}"
    done
}

mkdir -p /run/hbad
rm -f $STATUS
notify-listen $NOTIFY >/tmp/notify.log 2>&1 &
LISTENER=$!
wait_for 5 test -S $NOTIFY || die "notify-listen did not bind $NOTIFY"
NOTIFY_SOCKET=$NOTIFY WATCHDOG_USEC=1000000 \
    hbad --policy $POLICY run --no-journal --udev off --status-file $STATUS >/tmp/hung.out 2>/tmp/hung.log &
AGENT=$!
trap 'kill $AGENT $LISTENER 2>/dev/null; echo 0 >$SD/every_nth; echo 0 >$SD/opts' EXIT
ready() { grep -q READY=1 /tmp/notify.log && grep -q '"ready": true' $STATUS; }
if wait_for 20 ready; then
    ok "hbad run is up (pid $AGENT), READY=1 on the notify socket"
else
    vm_data agent.log /tmp/hung.log
    die "hbad run not ready within 20 s: $(tail -c 300 /tmp/hung.log | tr '\n' ' ')"
fi

# --- hang scsi_debug: a unit attention first, then every command ignored ---------------
opts0="$(attr $SD/opts)"
nth0="$(attr $SD/every_nth)"
luns0="$(attr $SD/max_luns)"
SD_DISK="$(ls /sys/bus/scsi/devices/$SD_N:0:0:0/block)"
[ -n "$SD_DISK" ] || die "no disk on $SD_N:0:0:0"
# The LUN inventory changes on every scsi_debug LUN; this read reports it on target
# $SD_N:0:0 alone, and the agent scans that target after its 500 ms debounce: by then
# scsi_debug ignores commands, so the scan's REPORT LUNS never completes.
echo $((luns0 + 1)) >$SD/max_luns || die "scsi_debug max_luns $((luns0 + 1))"
dd if=/dev/$SD_DISK of=/dev/null bs=512 count=1 iflag=direct 2>/dev/null
echo 4 >$SD/opts && echo 1 >$SD/every_nth || die "scsi_debug opts 4, every_nth 1"
t_hang="$(vm_uptime)"
info "scsi_debug ignores every command from uptime $t_hang (opts was $opts0, every_nth $nth0)"

hung_named() { grep -q "\"$SD_A\"" $STATUS && grep -q '"hung": \[' $STATUS && ! grep -q '"hung": \[\]' $STATUS; }
if wait_for 20 hung_named; then
    ok "the status file names $SD_A hung, $(since $t_hang) s after scsi_debug stopped answering"
else
    vm_data agent.log /tmp/hung.log
    die "no hung host in the status file 20 s after scsi_debug stopped answering: $(grep -o '"hung": [^]]*]' $STATUS)"
fi
check "the agent logged the scan on $SD_A that has not returned" grep -q "$SD_A.*has not returned\|has not returned.*$SD_A" /tmp/hung.log
d_pids="$(hbad_in_d | tr '\n' ' ')"
if [ -n "$d_pids" ]; then
    ok "the write is held in the kernel: hbad writer(s) $d_pids in D state"
else
    fail "no hbad process in D state: the scan of $SD_A is not in the kernel"
fi
if echo " $d_pids" | grep -q " $AGENT "; then
    fail "the agent itself (pid $AGENT) is in D state"
else
    ok "the agent itself (pid $AGENT) is not in D state"
fi
wd_hung="$(vm_uptime)"

# --- the healthy host: a new LIO LUN on the FCoE target ---------------------------------
n=3
while [ -e $TPG/lun/lun_$n ] || [ -e $ACL/lun_$n ]; do n=$((n + 1)); done
b=10
while [ -e $T/core/rd_mcp_$b ]; do b=$((b + 1)); done # LIO names HBAs rd_mcp_<index>
RD=$T/core/rd_mcp_$b/rdhung
mkdir -p $RD && echo rd_pages=2048 >$RD/control && echo hbadvm-rdhung >$RD/wwn/vpd_unit_serial &&
    echo 1 >$RD/enable || die "LIO backstore rdhung"
mkdir $TPG/lun/lun_$n && ln -s $RD $TPG/lun/lun_$n/rdhung || die "lun_$n on the tcm_fc port"
mkdir $ACL/lun_$n && ln -s $TPG/lun/lun_$n $ACL/lun_$n/lun_$n || die "map lun_$n into the ACL"
t0="$(vm_uptime)"
read_until_lun() {
    dd if=/dev/$INI_DISK of=/dev/null bs=512 count=1 iflag=direct 2>/dev/null
    test -d /sys/bus/scsi/devices/$H:0:0:$n
}
if wait_for 20 read_until_lun; then
    took="$(since $t0)"
    if within "$took" 2; then
        ok "LUN $H:0:0:$n on the healthy $INI_HOST appeared $took s after mapping, with $SD_A hung"
    else
        fail "LUN $H:0:0:$n on the healthy $INI_HOST took $took s (more than 2 s) with $SD_A hung"
    fi
else
    fail "no $H:0:0:$n within 20 s of reads after mapping lun_$n: the hung $SD_A held up $INI_HOST"
fi

# --- reload while the host is hung ---------------------------------------------------------
reloads() { grep -c "policy reloaded" /tmp/hung.log; }
r0="$(reloads)"
kill -HUP $AGENT
reloaded() { [ "$(reloads)" -gt "$r0" ]; }
t0="$(vm_uptime)"
if wait_for 10 reloaded; then
    ok "SIGHUP answered with $SD_A hung: policy reloaded in $(since $t0) s"
else
    fail "no 'policy reloaded' within 10 s of SIGHUP with $SD_A hung"
fi

# --- the CLI names the hung host ----------------------------------------------------------
run_hbad status status --status-file $STATUS
# A hung host makes the agent degraded: LSB status 1, with the host as the reason.
check_eq "hbad status exit status (degraded)" "$(cat /tmp/hbad-status.rc)" 1
check "hbad status gives $SD_A's hung scan as the reason" grep -q "^  $SD_A hung: " /tmp/hbad-status.out
check "hbad status names the hung write on $SD_A" grep -q "^HUNG: .* on $SD_A for" /tmp/hbad-status.out
check "hbad status marks $SD_A (HUNG) in its host table" grep -q "$SD_A (HUNG)" /tmp/hbad-status.out
info "hbad status: $(grep -i hung /tmp/hbad-status.out | head -n 3 | tr '\n' ' ' | cut -c1-300)"
cp $STATUS /tmp/hung-status.json && vm_data status-file /tmp/hung-status.json

# --- the watchdog kept pinging through it all -------------------------------------------------
sleep 1
wd_end="$(vm_uptime)"
pings="$(awk -v a="$wd_hung" -v b="$wd_end" '$2 == "WATCHDOG=1" && $1 >= a && $1 <= b' /tmp/notify.log | wc -l)"
gap="$(awk -v a="$wd_hung" -v b="$wd_end" '$2 == "WATCHDOG=1" && $1 >= a && $1 <= b {
    if (last != "" && $1 - last > max) max = $1 - last; last = $1 } END { printf "%.2f", max + 0 }' /tmp/notify.log)"
span="$(awk -v a="$wd_hung" -v b="$wd_end" 'BEGIN { printf "%.1f", b - a }')"
if [ "$pings" -ge 3 ] && within "$gap" 1.5; then
    ok "watchdog: $pings pings in the $span s with $SD_A hung, longest gap $gap s (WATCHDOG_USEC 1 s)"
else
    fail "watchdog: $pings pings in the $span s with $SD_A hung, longest gap $gap s (want >= 3, gap <= 1.5 s)"
fi

# --- SIGTERM: out within 10 s, the hung write logged ---------------------------------------
t0="$(vm_uptime)"
kill -TERM $AGENT
stopped() { ! kill -0 $AGENT 2>/dev/null; }
if wait_for 12 stopped; then
    took="$(since $t0)"
    wait $AGENT
    check_eq "hbad run exit status after SIGTERM" "$?" 0
    if within "$took" 10; then
        ok "SIGTERM -> exit in $took s with $SD_A hung"
    else
        fail "SIGTERM -> exit took $took s (more than 10 s)"
    fi
else
    fail "hbad run still running 12 s after SIGTERM with $SD_A hung"
fi
check "STOPPING=1 on the notify socket" grep -q STOPPING=1 /tmp/notify.log
check "the stop logged the write still in the kernel on $SD_A" grep -q "stopping with .* on $SD_A still in the kernel" /tmp/hung.log
info "stop: $(grep "stopping with\|stopped" /tmp/hung.log | tail -n 2 | tr '\n' ' ' | cut -c1-400)"
kill $LISTENER 2>/dev/null
trap - EXIT
vm_data agent.log /tmp/hung.log
vm_data notify.log /tmp/notify.log
printf 'SD_HUNG=%s\nINI_HOST=%s\n' "$SD_A" "$INI_HOST" >/tmp/hung-facts
vm_data facts /tmp/hung-facts

# --- leave scsi_debug answering again -------------------------------------------------------
echo "$nth0" >$SD/every_nth && echo "$opts0" >$SD/opts || fail "restore scsi_debug opts $opts0, every_nth $nth0"
check_eq "scsi_debug every_nth restored" "$(attr $SD/every_nth)" "$nth0"
info "hbad writers still in D state after the restore: $(hbad_in_d | tr '\n' ' ') (the midlayer retries the held command after its timeout)"

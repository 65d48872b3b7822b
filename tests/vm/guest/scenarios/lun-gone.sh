# lun-gone: LUNs the array stops presenting. scsi_debug's max_luns is lowered by two
# (module-wide: every scsi_debug target stops reporting its two highest LUNs) while a
# process holds the disk of the lower one open. One read on one target raises
# REPORTED_LUNS_DATA_HAS_CHANGED there; the kernel keeps both devices. `hbad run`
# (policy remove_gone = true) scans that target, asks it with REPORT LUNS, names both
# LUNs gone, deletes the free one and keeps the held one with a warning naming the
# process; the other targets, which reported nothing, keep theirs. With the holder
# gone, `hbad rescan` of the host names and deletes what is still there on either
# of its targets. max_luns and the LUNs are restored at the end.

[ -f /run/hbadvm/lab.env ] || die "the lab scenario left no /run/hbadvm/lab.env"
. /run/hbadvm/lab.env
SD=/sys/bus/pseudo/drivers/scsi_debug
POLICY=/vm/policy/lun-gone.toml
STATUS=/run/hbad/lun-gone-status.json
SD_H=${SD_HOSTS%% *}
SD_N=${SD_H#host}
SD_OTHER=${SD_HOSTS#* }
SD_OTHER=${SD_OTHER%% *}
M="$(attr $SD/max_luns)"
[ "$M" -ge 3 ] || die "scsi_debug has $M LUNs per target; this scenario needs 3 or more"
KEEP=$((M - 2))     # max_luns from now on: LUNs $KEEP and $((M - 1)) leave REPORT LUNS
HELD=$SD_N:0:0:$KEEP
FREE=$SD_N:0:0:$((M - 1))
dev() { test -d /sys/bus/scsi/devices/$1; }
gone() { ! dev "$1"; }

# Every LUN of every scsi_debug target present to begin with (an earlier scenario
# may have left some out).
for h in $SD_HOSTS; do echo "- - -" >/sys/class/scsi_host/$h/scan; done
disk_of() { ls /sys/bus/scsi/devices/$1/block 2>/dev/null; }
wait_for 20 disk_of $HELD >/dev/null || die "no disk on $HELD"
wait_for 20 disk_of $FREE >/dev/null || die "no disk on $FREE"
HELD_DISK="$(disk_of $HELD)"
FREE_DISK="$(disk_of $FREE)"
info "max_luns $M; $HELD is $HELD_DISK (to be held), $FREE is $FREE_DISK"

mkdir -p /run/hbad
hbad --policy $POLICY run --no-journal --udev off --status-file $STATUS >/tmp/lun-gone.out 2>/tmp/lun-gone.log &
AGENT=$!
sleep 600 </dev/$HELD_DISK &
HOLDER=$!
trap 'kill $AGENT $HOLDER 2>/dev/null' EXIT
started() { kill -0 $AGENT 2>/dev/null && [ -s $STATUS ]; }
wait_for 20 started || die "hbad run did not come up: $(tail -c 300 /tmp/lun-gone.log | tr '\n' ' ')"
ok "hbad run is up; process $HOLDER (sleep) holds /dev/$HELD_DISK open"

echo $KEEP >$SD/max_luns || die "scsi_debug max_luns $KEEP"
LUN0_DISK="$(disk_of $SD_N:0:0:0)"
t0="$(vm_uptime)"
read_until_gone() {
    dd if=/dev/$LUN0_DISK of=/dev/null bs=512 count=1 iflag=direct 2>/dev/null
    gone $FREE
}
if wait_for 20 read_until_gone; then
    ok "the agent deleted $FREE ($FREE_DISK), gone from the array, $(awk -v a=$t0 -v b=$(vm_uptime) 'BEGIN{printf "%.2f", b-a}') s after max_luns dropped to $KEEP"
else
    fail "$FREE is still there 20 s after its target stopped reporting it"
fi
check "$HELD, held by process $HOLDER, is kept" dev $HELD
named_held() { grep -q "LUN $HELD $HELD_DISK is gone from the array.*open in process $HOLDER (sleep)" /tmp/lun-gone.log; }
if wait_for 10 named_held; then
    ok "the agent names $HELD gone and what holds it: $(grep "LUN $HELD " /tmp/lun-gone.log | tail -n 1 | sed 's/.*LUN /LUN /')"
else
    fail "no warning naming process $HOLDER for $HELD in the agent's log"
fi
grep -q "LUN $FREE $FREE_DISK is gone from the array.*deleted" /tmp/lun-gone.log &&
    ok "the agent's log says $FREE was deleted" || fail "the agent's log does not say $FREE was deleted"
check "$SD_N:0:1:$((M - 1)), whose target reported nothing, is kept" dev $SD_N:0:1:$((M - 1))
check "${SD_OTHER}'s LUN $((M - 1)) is kept" dev ${SD_OTHER#host}:0:0:$((M - 1))
check_eq "the kernel's view of $HELD (it never removes it)" "$(attr /sys/bus/scsi/devices/$HELD/state)" running

kill $AGENT
wait $AGENT
check_eq "hbad run exit status after SIGTERM" "$?" 0
vm_data lun-gone.log /tmp/lun-gone.log

# --- the holder ends; hbad rescan names and deletes what is left on the host --------------
kill $HOLDER
wait $HOLDER 2>/dev/null
run_hbad lun-gone-rescan --policy $POLICY --json rescan $SD_H
check_eq "hbad rescan $SD_H exit status" "$(cat /tmp/hbad-lun-gone-rescan.rc)" 0
for l in $HELD $SD_N:0:1:$KEEP $SD_N:0:1:$((M - 1)); do
    check "hbad rescan deleted $l" gone $l
done
grep -q "\"$HELD\"" /tmp/hbad-lun-gone-rescan.out && ok "hbad rescan --json names $HELD" ||
    fail "hbad rescan --json does not name $HELD"
check "${SD_OTHER}, not rescanned, keeps LUN $((M - 1))" dev ${SD_OTHER#host}:0:0:$((M - 1))

# Restore the lab: max_luns back, the deleted LUNs scanned in again.
echo $M >$SD/max_luns
for h in $SD_HOSTS; do echo "- - -" >/sys/class/scsi_host/$h/scan; done
check "$FREE is back after restoring max_luns $M" dev $FREE

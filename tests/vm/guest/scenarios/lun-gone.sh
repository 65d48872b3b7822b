# lun-gone: LUNs the array stops presenting. scsi_debug's max_luns is lowered by two
# (module-wide: every scsi_debug target stops reporting its two highest LUNs) while a
# process holds the disk of the lower one open. One read on one target raises
# REPORTED_LUNS_DATA_HAS_CHANGED there; the kernel keeps both devices. `hbad run`
# (policy remove_gone = true) scans that target, asks it with REPORT LUNS, names both
# LUNs gone, deletes the free one and keeps the held one with a warning naming the
# process; the other targets, which reported nothing, keep theirs. On the FC target,
# an LIO LUN mapped, found and then unmapped from the initiator's ACL is deleted too.
# With the holder gone, `hbad rescan` of the scsi_debug host names and deletes what is
# still there on either of its targets. max_luns and the LUNs are restored at the end.

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

# --- an LIO LUN unmapped from the initiator's ACL, on the FC target ------------------------
H=${INI_HOST#host}
T=/sys/kernel/config/target
TPG=$T/fc/20:00:02:00:00:00:00:0a/tpgt_1
ACL=$TPG/acls/20:00:02:00:00:00:00:0b
n=3
while [ -e $TPG/lun/lun_$n ] || [ -e $ACL/lun_$n ] || dev $H:0:0:$n; do n=$((n + 1)); done
r=20
while [ -e $T/core/rd_mcp_$r ]; do r=$((r + 1)); done
RD=$T/core/rd_mcp_$r/rdgone
mkdir -p $RD && echo rd_pages=1024 >$RD/control && echo hbadvm-rdgone >$RD/wwn/vpd_unit_serial &&
    echo 1 >$RD/enable || die "LIO backstore rdgone"
mkdir $TPG/lun/lun_$n && ln -s $RD $TPG/lun/lun_$n/rdgone || die "lun_$n on the tcm_fc port"
mkdir $ACL/lun_$n && ln -s $TPG/lun/lun_$n $ACL/lun_$n/lun_$n || die "map lun_$n into the ACL"
read_until() { # predicate: a read of the FC target's LUN 0 until it holds
    dd if=/dev/$INI_DISK of=/dev/null bs=512 count=1 iflag=direct 2>/dev/null
    "$@"
}
wait_for 20 read_until dev $H:0:0:$n || die "the agent did not scan in LIO LUN $H:0:0:$n"
wait_for 20 disk_of $H:0:0:$n >/dev/null || die "no disk on $H:0:0:$n"
ok "LIO LUN $H:0:0:$n mapped and found by the agent"
rm $ACL/lun_$n/lun_$n && rmdir $ACL/lun_$n || die "unmap lun_$n"
t0="$(vm_uptime)"
# The unit attention does not always come with the first read after the unmap.
if wait_for 20 read_until gone $H:0:0:$n; then
    ok "the agent deleted LIO LUN $H:0:0:$n, unmapped from the ACL, $(awk -v a=$t0 -v b=$(vm_uptime) 'BEGIN{printf "%.2f", b-a}') s after the unmap"
else
    fail "$H:0:0:$n is still there 20 s after it was unmapped from the ACL"
fi
# The record follows the delete's report back to the agent's loop.
named_fc() { grep -q "LUN $H:0:0:$n .* is gone from the array: target 0x200002000000000a no longer reports it" /tmp/lun-gone.log; }
wait_for 10 named_fc && ok "the agent names the FC target by WWPN" ||
    fail "no record naming $H:0:0:$n and target 0x200002000000000a"
check "LUN $H:0:0:0 of the FC target is kept" dev $H:0:0:0
rm $TPG/lun/lun_$n/rdgone && rmdir $TPG/lun/lun_$n && rmdir $RD && rmdir $T/core/rd_mcp_$r ||
    fail "remove lun_$n and its backstore"

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

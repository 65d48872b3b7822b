# lun-gone: LUNs the array stops presenting. scsi_debug's max_luns is raised to 8, then
# lowered to 2 (module-wide: every scsi_debug target stops reporting LUNs 2-7) while
# LUN 2's disk is open in a process, the kernel claims three more without a trace in
# /proc (LUN 3 is active swap, LUN 4 an ext2 file system mounted only in another mount
# namespace, LUN 5 an LIO iblock backstore) and LUN 6 backs a loop device (which
# neither claims it nor shows in /proc). One read on one target raises
# REPORTED_LUNS_DATA_HAS_CHANGED there; the kernel keeps every device. `hbad run`
# (policy remove_gone = true) scans that target, asks it with REPORT LUNS, names the
# six LUNs gone, deletes the free one (7), keeps the open one naming the process, the
# claimed ones naming the kernel's claim (its exclusive open was refused) and the loop
# device's backing disk naming the loop device; the other targets, which reported
# nothing, keep theirs. A second change of the target
# names none of the kept LUNs again. On the FC target, an LIO LUN mapped, found and
# then unmapped from the initiator's ACL is deleted too. With every holder and claim
# gone, `hbad rescan` of the scsi_debug host names and deletes what is still there on
# either of its targets. max_luns, the LUNs and the disks' first blocks are restored
# at the end.

[ -f /run/hbadvm/lab.env ] || die "the lab scenario left no /run/hbadvm/lab.env"
. /run/hbadvm/lab.env
SD=/sys/bus/pseudo/drivers/scsi_debug
T=/sys/kernel/config/target
POLICY=/vm/policy/lun-gone.toml
STATUS=/run/hbad/lun-gone-status.json
SD_H=${SD_HOSTS%% *}
SD_N=${SD_H#host}
SD_OTHER=${SD_HOSTS#* }
SD_OTHER=${SD_OTHER%% *}
M="$(attr $SD/max_luns)"
UP=8                # max_luns while the LUNs are set up
KEEP=2              # max_luns from then on: LUNs 2-7 leave REPORT LUNS
HELD=$SD_N:0:0:2    # open in a process
SWAP=$SD_N:0:0:3    # active swap
NSMNT=$SD_N:0:0:4   # mounted in another mount namespace only
IBLOCK=$SD_N:0:0:5  # an LIO iblock backstore
LOOP=$SD_N:0:0:6    # a loop device's backing file
FREE=$SD_N:0:0:7
dev() { test -d /sys/bus/scsi/devices/$1; }
gone() { ! dev "$1"; }
disk_of() { ls /sys/bus/scsi/devices/$1/block 2>/dev/null; }
since() { awk -v a=$1 -v b=$(vm_uptime) 'BEGIN{printf "%.2f", b-a}'; }

# Every LUN up to 7 of every scsi_debug target present to begin with (an earlier
# scenario may have left some out).
echo $UP >$SD/max_luns || die "scsi_debug max_luns $UP"
for h in $SD_HOSTS; do echo "- - -" >/sys/class/scsi_host/$h/scan; done
for l in $HELD $SWAP $NSMNT $IBLOCK $LOOP $FREE; do
    wait_for 20 disk_of $l >/dev/null || die "no disk on $l"
done
HELD_DISK="$(disk_of $HELD)"
SWAP_DISK="$(disk_of $SWAP)"
NS_DISK="$(disk_of $NSMNT)"
IB_DISK="$(disk_of $IBLOCK)"
LOOP_DISK="$(disk_of $LOOP)"
FREE_DISK="$(disk_of $FREE)"
info "max_luns $UP (was $M): $HELD $HELD_DISK to be open, $SWAP $SWAP_DISK swap, $NSMNT $NS_DISK mounted in another namespace, $IBLOCK $IB_DISK an LIO backstore, $LOOP $LOOP_DISK a loop device's backing file, $FREE $FREE_DISK free"

# --- the kernel's claims -----------------------------------------------------------------
# scsi_debug's LUNs share one store: the file system is made and mounted before mkswap
# writes its header over the same first page (a mounted file system keeps its
# superblock in memory; swapon reads the header once).
modprobe ext4 && modprobe crc32c_generic || die "modprobe ext4 crc32c_generic"
mke2fs /dev/$NS_DISK >/tmp/mke2fs.out 2>&1 || die "mke2fs /dev/$NS_DISK: $(cat /tmp/mke2fs.out)"
mkdir -p /mnt/other-ns
unshare -m sh -c "mount -t ext2 /dev/$NS_DISK /mnt/other-ns && echo mounted >/tmp/ns.state && exec sleep 600" &
NS_PID=$!
wait_for 10 test -s /tmp/ns.state || die "mount of /dev/$NS_DISK in a new mount namespace"
NS_MAJMIN="$(attr /sys/block/$NS_DISK/dev)"
if grep -q " $NS_MAJMIN " /proc/1/mountinfo /proc/self/mountinfo; then
    die "the mount of $NS_DISK shows in PID 1's mount table: not another namespace's"
fi
grep -q " $NS_MAJMIN " /proc/$NS_PID/mountinfo || die "$NS_DISK not in process $NS_PID's mount table"
ok "$NS_DISK is mounted in process ${NS_PID}'s mount namespace only"
mkswap /dev/$SWAP_DISK >/tmp/mkswap.out 2>&1 && swapon /dev/$SWAP_DISK ||
    die "swap on /dev/$SWAP_DISK: $(cat /tmp/mkswap.out)"
grep -q "^/dev/$SWAP_DISK " /proc/swaps || die "$SWAP_DISK is not in /proc/swaps"
ok "$SWAP_DISK is active swap"
i=30
while [ -e $T/core/iblock_$i ]; do i=$((i + 1)); done
IB=$T/core/iblock_$i/claimed
mkdir -p $IB && echo udev_path=/dev/$IB_DISK >$IB/control && echo 1 >$IB/enable ||
    die "LIO iblock backstore on /dev/$IB_DISK"
ok "$IB_DISK backs LIO backstore iblock_$i/claimed"
modprobe loop || die "modprobe loop"
LOOPDEV="$(losetup -f)"
losetup $LOOPDEV /dev/$LOOP_DISK || die "losetup $LOOPDEV /dev/$LOOP_DISK"
check_eq "${LOOPDEV}'s backing file" "$(attr /sys/block/${LOOPDEV#/dev/}/loop/backing_file)" /dev/$LOOP_DISK
release_claims() {
    losetup -d $LOOPDEV 2>/dev/null
    swapoff /dev/$SWAP_DISK 2>/dev/null
    nsenter -t $NS_PID -m umount /mnt/other-ns 2>/dev/null
    kill $NS_PID 2>/dev/null
    [ -d $IB ] && rmdir $IB && rmdir $T/core/iblock_$i
}

mkdir -p /run/hbad
hbad --policy $POLICY run --no-journal --udev off --status-file $STATUS >/tmp/lun-gone.out 2>/tmp/lun-gone.log &
AGENT=$!
sleep 600 </dev/$HELD_DISK &
HOLDER=$!
trap 'kill $AGENT $HOLDER 2>/dev/null; release_claims' EXIT
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
    ok "the agent deleted $FREE ($FREE_DISK), gone from the array, $(since $t0) s after max_luns dropped to $KEEP"
else
    fail "$FREE is still there 20 s after its target stopped reporting it"
fi
named() { grep -q "LUN $1 $2 is gone from the array.*$3" /tmp/lun-gone.log; }
record() { grep "LUN $1 " /tmp/lun-gone.log | tail -n 1 | sed 's/.*LUN /LUN /'; }
if wait_for 10 named $HELD $HELD_DISK "open in process $HOLDER (sleep)"; then
    ok "the agent names $HELD gone and what holds it: $(record $HELD)"
else
    fail "no warning naming process $HOLDER for $HELD in the agent's log"
fi
kept_claimed() { # LUN disk what
    check "$1 ($3), claimed by the kernel, is kept" dev $1
    if wait_for 10 named $1 $2 "$2 is claimed by the kernel: mounted, swap, RAID/volume member or in use by another driver"; then
        ok "the agent names $1 ($3) gone and claimed: $(record $1)"
    else
        fail "no warning naming the kernel's claim on $1 ($3): $(record $1)"
    fi
}
kept_claimed $SWAP $SWAP_DISK swap
kept_claimed $NSMNT $NS_DISK "mounted in another namespace"
kept_claimed $IBLOCK $IB_DISK "an LIO backstore"
check "$LOOP (backs ${LOOPDEV}) is kept" dev $LOOP
if wait_for 10 named $LOOP $LOOP_DISK "$LOOP_DISK is the backing file of loop device ${LOOPDEV#/dev/}"; then
    ok "the agent names $LOOP gone and the loop device on it: $(record $LOOP)"
else
    fail "no warning naming ${LOOPDEV} on $LOOP: $(record $LOOP)"
fi
grep -q "LUN $FREE $FREE_DISK is gone from the array.*deleted" /tmp/lun-gone.log &&
    ok "the agent's log says $FREE was deleted" || fail "the agent's log does not say $FREE was deleted"
check "$SD_N:0:1:7, whose target reported nothing, is kept" dev $SD_N:0:1:7
check "${SD_OTHER}'s LUN 7 is kept" dev ${SD_OTHER#host}:0:0:7
check_eq "the kernel's view of $HELD (it never removes it)" "$(attr /sys/bus/scsi/devices/$HELD/state)" running

# A second change of the target (LUN 2 reported again): the LUNs still gone are
# still kept, and named no second time.
named_times() { grep -c "LUN $1 .* is gone from the array" /tmp/lun-gone.log; }
scans() { grep -c "scanned $SD_H \"0 0 -\"" /tmp/lun-gone.log; }
scanned=$(scans)
echo 3 >$SD/max_luns || die "scsi_debug max_luns 3"
t0="$(vm_uptime)"
scanned_again() {
    dd if=/dev/$LUN0_DISK of=/dev/null bs=512 count=1 iflag=direct 2>/dev/null
    [ "$(scans)" -gt "$scanned" ]
}
wait_for 20 scanned_again || fail "the agent did not scan $SD_N:0:0 again after max_luns rose to 3"
# The look after the scan takes a second answer 1 s after the first, then opens each
# claimed disk again.
sleep 4
info "the agent scanned $SD_N:0:0 again $(since $t0) s after max_luns rose to 3"
for l in $SWAP $NSMNT $IBLOCK $LOOP; do
    check_eq "records naming $l gone after a second change of its target" "$(named_times $l)" 1
done
echo $KEEP >$SD/max_luns

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

# --- holder and claims end; hbad rescan names and deletes what is left on the host ------
kill $HOLDER
wait $HOLDER 2>/dev/null
release_claims || fail "release the LIO backstore iblock_$i"
grep -q "^/dev/$SWAP_DISK " /proc/swaps && fail "$SWAP_DISK is still swap after swapoff"
run_hbad lun-gone-rescan --policy $POLICY --json rescan $SD_H
check_eq "hbad rescan $SD_H exit status" "$(cat /tmp/hbad-lun-gone-rescan.rc)" 0
for l in $HELD $SWAP $NSMNT $IBLOCK $LOOP $SD_N:0:1:$KEEP $SD_N:0:1:7; do
    check "hbad rescan deleted $l" gone $l
done
grep -q "\"$HELD\"" /tmp/hbad-lun-gone-rescan.out && ok "hbad rescan --json names $HELD" ||
    fail "hbad rescan --json does not name $HELD"
check "${SD_OTHER}, not rescanned, keeps LUN 7" dev ${SD_OTHER#host}:0:0:7

# Restore the lab: max_luns back, LUNs past it deleted by hand (the host hbad did not
# rescan keeps them), the deleted ones scanned in again, and the store's first blocks
# (swap header, file system) zeroed for the scenarios after this one.
echo $M >$SD/max_luns
for h in $SD_HOSTS; do
    for d in /sys/class/scsi_host/$h/device/target*/${h#host}:*; do
        [ -d "$d" ] && [ "${d##*:}" -ge "$M" ] && echo 1 >$d/delete
    done
    echo "- - -" >/sys/class/scsi_host/$h/scan
done
dd if=/dev/zero of=/dev/$LUN0_DISK bs=4096 count=16 conv=fsync 2>/dev/null ||
    fail "zero the first blocks of the scsi_debug store"
check "$SD_N:0:0:$((M - 1)) is back after restoring max_luns $M" dev $SD_N:0:0:$((M - 1))
past_m() { for h in $SD_HOSTS; do ls -d /sys/bus/scsi/devices/${h#host}:* 2>/dev/null; done |
    awk -F: -v m=$M '$NF >= m' | wc -l; }
check_eq "scsi_debug LUNs numbered $M or more after restoring" "$(past_m)" 0

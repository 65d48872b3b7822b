# lun-resize: a volume grows under two paths. LIO exports one iblock backstore (over a
# scsi_debug disk, whose size scsi_debug's virtual_gb sets) as two LUNs of the FCoE
# target: the initiator sees two devices with one WWID, as two paths of a volume.
# With `hbad run` up, virtual_gb grows: the agent re-reads the scsi_debug disk on
# its CAPACITY_DATA_HAS_CHANGED; then one FC path is re-read by hand
# (device/rescan): its disk's RESIZE uevent makes the agent re-read the other path,
# whose size follows. Everything is taken down again at the end.

[ -f /run/hbadvm/lab.env ] || die "the lab scenario left no /run/hbadvm/lab.env"
. /run/hbadvm/lab.env
H=${INI_HOST#host}
T=/sys/kernel/config/target
TPG=$T/fc/20:00:02:00:00:00:00:0a/tpgt_1
ACL=$TPG/acls/20:00:02:00:00:00:00:0b
SD=/sys/bus/pseudo/drivers/scsi_debug
POLICY=/vm/policy/lun-resize.toml
STATUS=/run/hbad/lun-resize-status.json
SD_LAST=${SD_HOSTS% }
SD_LAST=${SD_LAST##* }
BACKING="$(ls /sys/bus/scsi/devices/${SD_LAST#host}:0:1:0/block 2>/dev/null)"
[ -n "$BACKING" ] || die "no disk on ${SD_LAST#host}:0:1:0 to back the volume"
GB0="$(attr $SD/virtual_gb)"
size_of() { attr /sys/block/$1/size; }
disk_of() { ls /sys/bus/scsi/devices/$1/block 2>/dev/null; }

# --- one backstore, two LUNs -------------------------------------------------------------
a=5
while [ -e $TPG/lun/lun_$a ] || [ -e $ACL/lun_$a ] || [ -d /sys/bus/scsi/devices/$H:0:0:$a ]; do a=$((a + 1)); done
b=$((a + 1))
while [ -e $TPG/lun/lun_$b ] || [ -e $ACL/lun_$b ] || [ -d /sys/bus/scsi/devices/$H:0:0:$b ]; do b=$((b + 1)); done
i=0
while [ -e $T/core/iblock_$i ]; do i=$((i + 1)); done
IB=$T/core/iblock_$i/vol
mkdir -p $IB && echo udev_path=/dev/$BACKING >$IB/control && echo hbadvm-vol >$IB/wwn/vpd_unit_serial &&
    echo 1 >$IB/enable || die "LIO iblock backstore over /dev/$BACKING"
for l in $a $b; do
    mkdir $TPG/lun/lun_$l && ln -s $IB $TPG/lun/lun_$l/vol || die "lun_$l on the tcm_fc port"
    mkdir $ACL/lun_$l && ln -s $TPG/lun/lun_$l $ACL/lun_$l/lun_$l || die "map lun_$l into the ACL"
done
ok "LIO exports iblock /dev/$BACKING as lun_$a and lun_$b to the initiator"

mkdir -p /run/hbad
hbad --policy $POLICY run --no-journal --udev off --status-file $STATUS >/tmp/lun-resize.out 2>/tmp/lun-resize.log &
AGENT=$!
trap 'kill $AGENT 2>/dev/null' EXIT
started() { kill -0 $AGENT 2>/dev/null && [ -s $STATUS ]; }
wait_for 20 started || die "hbad run did not come up: $(tail -c 300 /tmp/lun-resize.log | tr '\n' ' ')"

read_until_paths() {
    dd if=/dev/$INI_DISK of=/dev/null bs=512 count=1 iflag=direct 2>/dev/null
    [ -n "$(disk_of $H:0:0:$a)" ] && [ -n "$(disk_of $H:0:0:$b)" ]
}
wait_for 20 read_until_paths || die "the agent did not scan in $H:0:0:$a and $H:0:0:$b"
PA="$(disk_of $H:0:0:$a)"
PB="$(disk_of $H:0:0:$b)"
WA="$(attr /sys/bus/scsi/devices/$H:0:0:$a/wwid)"
check_eq "$H:0:0:$b ($PB) has the WWID of $H:0:0:$a ($PA): two paths of one volume" \
    "$(attr /sys/bus/scsi/devices/$H:0:0:$b/wwid)" "$WA"
s0="$(size_of $PA)"
check_eq "both paths' size before" "$(size_of $PB)" "$s0"

# --- the volume grows underneath -------------------------------------------------------
echo $((GB0 + 1)) >$SD/virtual_gb || die "scsi_debug virtual_gb $((GB0 + 1))"
backing_grown() {
    dd if=/dev/$BACKING of=/dev/null bs=512 count=1 iflag=direct 2>/dev/null
    [ "$(size_of $BACKING)" != "$s0" ]
}
if wait_for 20 backing_grown; then
    ok "the agent re-read the backing scsi_debug disk $BACKING after its capacity change: $s0 -> $(size_of $BACKING) sectors"
else
    fail "$BACKING still has $(size_of $BACKING) sectors 20 s after virtual_gb grew"
fi
s1="$(size_of $BACKING)"
check_eq "$PB before any path is re-read (sd keeps the old size)" "$(size_of $PB)" "$s0"

# One path re-read by hand, as an administrator would: the other follows.
t0="$(vm_uptime)"
echo 1 >/sys/bus/scsi/devices/$H:0:0:$a/rescan || fail "device/rescan of $H:0:0:$a"
check_eq "$PA after its rescan" "$(size_of $PA)" "$s1"
followed() { [ "$(size_of $PB)" = "$s1" ]; }
if wait_for 10 followed; then
    ok "the agent re-read the other path $H:0:0:$b ($PB) after $PA grew: $s0 -> $s1 sectors in $(awk -v a=$t0 -v b=$(vm_uptime) 'BEGIN{printf "%.2f", b-a}') s"
else
    fail "$PB has $(size_of $PB) sectors 10 s after $PA grew to $s1"
fi
grep -q "rescanned $H:0:0:$b: another path of the volume, $PA, is now" /tmp/lun-resize.log &&
    ok "the agent's log gives the reason: $(grep "rescanned $H:0:0:$b" /tmp/lun-resize.log | tail -n 1 | sed 's/.*rescanned/rescanned/; s/ hbad_.*//')" ||
    fail "no rescan of $H:0:0:$b for $PA's new size in the agent's log"
run_hbad lun-resize-luns --json luns $INI_HOST
check_eq "paths of $((s1 * 512)) bytes in hbad luns $INI_HOST" \
    "$(grep -cE "\"size_bytes\": *$((s1 * 512))([^0-9]|$)" /tmp/hbad-lun-resize-luns.out)" 2

kill $AGENT
wait $AGENT
check_eq "hbad run exit status after SIGTERM" "$?" 0
vm_data lun-resize.log /tmp/lun-resize.log

# --- take it down again ------------------------------------------------------------------
for l in $a $b; do echo 1 >/sys/bus/scsi/devices/$H:0:0:$l/delete; done
for l in $a $b; do
    rm $ACL/lun_$l/lun_$l && rmdir $ACL/lun_$l && rm $TPG/lun/lun_$l/vol && rmdir $TPG/lun/lun_$l ||
        fail "unmap lun_$l"
done
rmdir $IB && rmdir $T/core/iblock_$i || fail "remove the iblock backstore"
echo $GB0 >$SD/virtual_gb

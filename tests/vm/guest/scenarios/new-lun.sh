# new-lun: new storage on real targets, found by hbad's targeted scans. LIO maps a
# second LUN to the initiator and scsi_debug grows to 6 LUNs per target; I/O raises
# the unit attention (seen as a kernel uevent with SDEV_UA); the kernel adds nothing
# by itself; `hbad rescan --target WWPN` adds the LIO LUN and nothing on the
# scsi_debug hosts; `hbad find-luns 4 5` adds LUNs 4 and 5 on every scsi_debug target.

[ -f /run/hbadvm/lab.env ] || die "the lab scenario left no /run/hbadvm/lab.env"
. /run/hbadvm/lab.env
H=${INI_HOST#host}
T=/sys/kernel/config/target
TPG=$T/fc/20:00:02:00:00:00:00:0a/tpgt_1
ACL=$TPG/acls/20:00:02:00:00:00:00:0b
SD=/sys/bus/pseudo/drivers/scsi_debug

uevent_log_start || die "busybox uevent saw no event"

luns_of() { ls -d /sys/bus/scsi/devices/$1:* 2>/dev/null | wc -l; }
sd_luns() { for h in $SD_HOSTS; do luns_of ${h#host}; done | awk '{ n += $1 } END { print n + 0 }'; }
check_eq "LUNs on $INI_HOST before" "$(luns_of $H)" 1
check_eq "scsi_debug LUNs before" "$(sd_luns)" 16

# --- new storage appears ---------------------------------------------------------------
RD1=$T/core/rd_mcp_1/rd1
mkdir -p $RD1 && echo rd_pages=4096 >$RD1/control && echo hbadvm-rd1 >$RD1/wwn/vpd_unit_serial &&
    echo 1 >$RD1/enable || die "LIO backstore rd1"
mkdir $TPG/lun/lun_1 && ln -s $RD1 $TPG/lun/lun_1/rd1 || die "lun_1 on the tcm_fc port"
mkdir $ACL/lun_1 && ln -s $TPG/lun/lun_1 $ACL/lun_1/lun_1 || die "map lun_1 into the ACL"
ok "LIO maps rd1 as LUN 1 to the initiator"
echo 6 >$SD/max_luns || die "scsi_debug max_luns 6"
ok "scsi_debug now has 6 LUNs per target"

dd if=/dev/$INI_DISK of=/dev/null bs=512 count=1 iflag=direct 2>/dev/null || fail "I/O to /dev/$INI_DISK"
ua_on() { grep -q "change scsi scsi_device $1 SDEV_UA=REPORTED_LUNS_DATA_HAS_CHANGED" /run/hbadvm/uevents; }
LUN0_DEVPATH="$(readlink -f /sys/bus/scsi/devices/$H:0:0:0 | sed 's#^/sys##')"
if wait_for 10 ua_on "$LUN0_DEVPATH"; then
    ok "unit attention as a kernel uevent: change $LUN0_DEVPATH SDEV_UA=REPORTED_LUNS_DATA_HAS_CHANGED"
else
    fail "no REPORTED_LUNS_DATA_HAS_CHANGED uevent on $LUN0_DEVPATH after I/O"
    info "uevents: $(tail -n 5 /run/hbadvm/uevents | tr '\n' '|')"
fi
SD_H=${SD_HOSTS%% *}
SD_DISK="$(ls /sys/bus/scsi/devices/${SD_H#host}:0:0:0/block 2>/dev/null)"
SD_LUN0="$(readlink -f /sys/bus/scsi/devices/${SD_H#host}:0:0:0 | sed 's#^/sys##')"
dd if=/dev/$SD_DISK of=/dev/null bs=512 count=1 iflag=direct 2>/dev/null || fail "I/O to /dev/$SD_DISK"
if wait_for 10 ua_on "$SD_LUN0"; then
    ok "scsi_debug unit attention too: $SD_LUN0"
else
    fail "no REPORTED_LUNS_DATA_HAS_CHANGED uevent on $SD_LUN0 after raising max_luns and I/O"
    info "uevents: $(tail -n 5 /run/hbadvm/uevents | tr '\n' '|')"
fi
check_eq "LUNs on $INI_HOST after the unit attention (the kernel does not rescan)" "$(luns_of $H)" 1
check_eq "scsi_debug LUNs after the unit attention" "$(sd_luns)" 16

# --- hbad rescan --target: only the target that changed ------------------------------------
run_hbad rescan-target --json rescan --target $TGT_WWPN
check_eq "hbad rescan --target exit status" "$(cat /tmp/hbad-rescan-target.rc)" 0
check "LUN $H:0:0:1 after the targeted scan" test -d /sys/bus/scsi/devices/$H:0:0:1
wait_for 10 test -d /sys/bus/scsi/devices/$H:0:0:1/block || fail "no disk on $H:0:0:1"
check_eq "$H:0:0:1 vendor" "$(attr /sys/bus/scsi/devices/$H:0:0:1/vendor)" LIO-ORG
if grep -q hbadvm-rd1 /sys/bus/scsi/devices/$H:0:0:1/vpd_pg80 2>/dev/null; then
    ok "$H:0:0:1 serial is hbadvm-rd1 (VPD page 0x80)"
else
    fail "$H:0:0:1 VPD page 0x80 does not carry hbadvm-rd1"
fi
check_eq "scsi_debug LUNs after the targeted scan (untouched)" "$(sd_luns)" 16
grep "add scsi scsi_device" /run/hbadvm/uevents | grep -q "/$H:0:0:1 " &&
    ok "the new LUN came with an add uevent" || fail "no add uevent for $H:0:0:1"

# --- hbad find-luns: LUN numbers, wherever they are ----------------------------------------
run_hbad find-luns --json find-luns 4 5
check_eq "hbad find-luns exit status" "$(cat /tmp/hbad-find-luns.rc)" 0
check_eq "scsi_debug LUNs after find-luns 4 5 (16 + 2 on each of 4 targets)" "$(sd_luns)" 24
for h in $SD_HOSTS; do
    for t in 0 1; do
        for l in 4 5; do
            [ -d /sys/bus/scsi/devices/${h#host}:0:$t:$l ] || fail "no LUN ${h#host}:0:$t:$l after find-luns"
        done
    done
done
sd_disks() { for h in $SD_HOSTS; do ls -d /sys/bus/scsi/devices/${h#host}:*/block/* 2>/dev/null; done | wc -l; }
# sd attaches disks asynchronously: the scan write returns before they exist.
sd_disks_at_least() { [ "$(sd_disks)" -ge "$1" ]; }
wait_for 20 sd_disks_at_least 24 || true
check_eq "scsi_debug disks once sd has attached them" "$(sd_disks)" 24
check_eq "no LUN 6 or above (scsi_debug has 6 per target)" \
    "$(ls -d /sys/bus/scsi/devices/*:*:*:[6-9] 2>/dev/null | wc -l)" 0

# Unmapping raises the same unit attention, though not always on the first I/O after
# the configfs write (seen: a single read right after it got none): read until it comes.
rm $ACL/lun_1/lun_1 && rmdir $ACL/lun_1 || fail "unmap lun_1"
ua_count() { grep -c "change scsi scsi_device $LUN0_DEVPATH SDEV_UA=REPORTED_LUNS_DATA_HAS_CHANGED" /run/hbadvm/uevents; }
read_until_ua() {
    dd if=/dev/$INI_DISK of=/dev/null bs=512 count=1 iflag=direct 2>/dev/null
    [ "$(ua_count)" -ge 2 ]
}
if wait_for 10 read_until_ua; then
    ok "unmapping raised the unit attention again"
else
    fail "no second unit attention within 10 s of reads after unmapping lun_1"
fi
info "$H:0:0:1 after unmapping: $([ -d /sys/bus/scsi/devices/$H:0:0:1 ] && echo "still there, state $(attr /sys/bus/scsi/devices/$H:0:0:1/state)" || echo gone)"

vm_data uevents /run/hbadvm/uevents
printf 'INI_HOST=%s\nSD_HOSTS=%s\nTGT_WWPN=%s\n' "$INI_HOST" "$SD_HOSTS" "$TGT_WWPN" >/tmp/new-lun-facts
vm_data facts /tmp/new-lun-facts

# scan-facts: what KERNEL.md says about writes to scsi_host/hostN/scan, on the real
# kernel: exactly three tokens (a number or '-'), anything else EINVAL; the write is
# synchronous (the LUN exists when it returns); an FC host's scan of a target id no
# remote port has finds nothing and is not an error.

[ -f /run/hbadvm/lab.env ] || die "the lab scenario left no /run/hbadvm/lab.env"
. /run/hbadvm/lab.env
SD=/sys/bus/pseudo/drivers/scsi_debug
SD_H=$(echo $SD_HOSTS | awk '{ print $NF }') # the last scsi_debug host of the lab
N=${SD_H#host}
SCAN=/sys/class/scsi_host/$SD_H/scan

for bad in "0 0" "0 0 0 0" "a b c" "0 0 x" "- -" ""; do
    if err="$(sysfs_write "$bad" $SCAN)"; then
        fail "scan '$bad' on $SD_H was accepted"
    else
        case "$err" in *"Invalid argument"*) ok "scan '$bad': EINVAL" ;; *) fail "scan '$bad': $err" ;; esac
    fi
done

# A LUN number past every LUN there is now (earlier scenarios grew the targets and
# the storm's resync scanned every host), made to exist on the target side.
top="$(ls -d /sys/bus/scsi/devices/$N:0:*:* | sed 's/.*://' | sort -n | tail -n1)"
NEW=$((top + 1))
echo $((NEW + 1)) >$SD/max_luns || die "scsi_debug max_luns $((NEW + 1))"
L=$N:0:0:$NEW
if [ -e /sys/bus/scsi/devices/$L ]; then
    fail "$L exists before its scan: the lab is not as this scenario expects"
else
    t0="$(vm_uptime)"
    err="$(sysfs_write "0 0 $NEW" $SCAN)" || fail "scan '0 0 $NEW' on $SD_H: $err"
    # No waiting: if the write is synchronous the device is there when it returns.
    if [ -d /sys/bus/scsi/devices/$L ]; then
        ok "scan '0 0 $NEW' is synchronous: $L exists when the write returns ($(awk -v a=$t0 -v b=$(vm_uptime) 'BEGIN{printf "%.2f", b-a}') s)"
    else
        fail "$L does not exist when the scan write returns"
    fi
fi
other="$(ls -d /sys/bus/scsi/devices/$N:0:1:$NEW 2>/dev/null)"
[ -z "$other" ] && ok "a LUN scan adds that LUN only ($N:0:1:$NEW still absent)" || fail "$N:0:1:$NEW appeared too"

H=${INI_HOST#host}
FCSCAN=/sys/class/scsi_host/$INI_HOST/scan
before="$(ls -d /sys/bus/scsi/devices/$H:* | wc -l)"
if err="$(sysfs_write "0 5 -" $FCSCAN)"; then
    ok "FC scan of target id 5 (no remote port has it) is accepted"
else
    info "FC scan of target id 5 (no remote port has it): $err"
fi
check_eq "LUNs on $INI_HOST after scanning a target id nobody has" "$(ls -d /sys/bus/scsi/devices/$H:* | wc -l)" "$before"
if err="$(sysfs_write "- - -" $FCSCAN)"; then ok "FC wildcard scan accepted"; else fail "FC wildcard scan: $err"; fi

# udev: Debian's systemd-udevd 252 in the guest. It makes the stable links
# (/dev/disk/by-path, by-id) for the lab's disks; `hbad luns` must show for every LUN
# exactly the links udev made for its disk. Then `hbad run --udev on` listens to udev
# as well as to the kernel and finds a new FC LUN, whose by-path link udev makes.

[ -f /run/hbadvm/lab.env ] || die "the lab scenario left no /run/hbadvm/lab.env"
. /run/hbadvm/lab.env
H=${INI_HOST#host}
T=/sys/kernel/config/target
TPG=$T/fc/20:00:02:00:00:00:00:0a/tpgt_1
ACL=$TPG/acls/20:00:02:00:00:00:00:0b
STATUS=/run/hbad/udev-status.json

mkdir -p /run/udev /run/hbad
/lib/systemd/systemd-udevd --daemon 2>/tmp/udevd.err || die "systemd-udevd: $(head -c 300 /tmp/udevd.err)"
wait_for 10 test -S /run/udev/control || die "udevd made no control socket"
t0="$(vm_uptime)"
udevadm trigger --type=subsystems --action=add
udevadm trigger --type=devices --action=add
udevadm settle -t 60 || fail "udevadm settle timed out"
ok "udevd up, coldplug settled in $(awk -v a=$t0 -v b=$(vm_uptime) 'BEGIN{printf "%.2f", b-a}') s"

BYPATH=/dev/disk/by-path/fc-0x200002000000000a-lun-0
if [ -L $BYPATH ]; then
    check_eq "$BYPATH points to" "$(basename "$(readlink $BYPATH)")" "$INI_DISK"
else
    fail "no $BYPATH (by-path: $(ls /dev/disk/by-path 2>/dev/null | head -n 5 | tr '\n' ' '))"
fi
byid="$(for l in /dev/disk/by-id/*; do [ "$(basename "$(readlink $l)")" = "$INI_DISK" ] && basename $l; done | tr '\n' ' ')"
[ -n "$byid" ] && ok "by-id links of the LIO LUN: $byid" || fail "no by-id link to /dev/$INI_DISK"
echo "$byid" | grep -q hbadvm-rd0 && ok "a by-id link carries the LUN's serial hbadvm-rd0" ||
    info "no by-id link carries the serial hbadvm-rd0"

# hbad's own rule (60-hbad-vhba.rules) is installed as on a host; it names only disks
# reached through a vHBA, and no LUN is (vports never log in without a switch).
check "no /dev/disk/by-vhba without LUNs behind a vHBA" test ! -e /dev/disk/by-vhba
LUN0="$(readlink -f /sys/block/$INI_DISK | sed 's#^/sys##')"
# Not a vHBA's disk: nothing to import. Exit 0 even so: udev logs a program's failure.
out="$(hbad udev-id "$LUN0" 2>&1)"
rc=$?
if [ $rc = 0 ] && [ -z "$out" ]; then
    ok "hbad udev-id on a physical port's disk: nothing to import (exit 0, no output)"
else
    fail "hbad udev-id on a physical port's disk: exit $rc, output '$(echo "$out" | head -c 200)'"
fi
dmesg | grep -i "hbad-vhba" | head -n 3 | while read -r line; do fail "udev about hbad's rule: $line"; done

links_snapshot() {
    for d in by-path by-id by-vhba; do
        for l in /dev/disk/$d/*; do
            [ -L "$l" ] && echo "$l $(basename "$(readlink "$l")")"
        done
    done
}
links_snapshot >/tmp/links
ok "$(wc -l </tmp/links) stable links under /dev/disk"
run_hbad luns --json luns
check_eq "hbad luns exit status" "$(cat /tmp/hbad-luns.rc)" 0
vm_data links /tmp/links

# --- the agent with udev ----------------------------------------------------------------
hbad --policy /vm/policy/storm.toml run --no-journal --udev on --status-file $STATUS \
    >/tmp/udev-agent.out 2>/tmp/udev-agent.log &
AGENT=$!
trap 'kill $AGENT 2>/dev/null' EXIT
ready() { grep -q '"ready": true' $STATUS 2>/dev/null; }
wait_for 20 ready || die "hbad run --udev on did not become ready: $(tail -c 300 /tmp/udev-agent.log | tr '\n' ' ')"
ok "hbad run --udev on is ready"

RD3=$T/core/rd_mcp_3/rd3
mkdir -p $RD3 && echo rd_pages=1024 >$RD3/control && echo hbadvm-rd3 >$RD3/wwn/vpd_unit_serial &&
    echo 1 >$RD3/enable || die "LIO backstore rd3"
mkdir $TPG/lun/lun_3 && ln -s $RD3 $TPG/lun/lun_3/rd3 || die "lun_3 on the tcm_fc port"
mkdir $ACL/lun_3 && ln -s $TPG/lun/lun_3 $ACL/lun_3/lun_3 || die "map lun_3 into the ACL"
read_until_lun() {
    dd if=/dev/$INI_DISK of=/dev/null bs=512 count=1 iflag=direct 2>/dev/null
    test -d /sys/bus/scsi/devices/$H:0:0:3/block
}
wait_for 20 read_until_lun && ok "the agent found $H:0:0:3" || fail "the agent did not find $H:0:0:3 within 20 s"
udevadm settle -t 30
check "udev made /dev/disk/by-path/fc-0x200002000000000a-lun-3" test -L /dev/disk/by-path/fc-0x200002000000000a-lun-3
kill -TERM $AGENT
stopped() { ! kill -0 $AGENT 2>/dev/null; }
if wait_for 15 stopped; then
    wait $AGENT
    check_eq "hbad run exit status after SIGTERM" "$?" 0
else
    fail "hbad run still running 15 s after SIGTERM"
fi
trap - EXIT
if grep -q "udev events unavailable\|cannot listen to udev" /tmp/udev-agent.log; then
    fail "the agent could not listen to udev: $(grep udev /tmp/udev-agent.log | head -c 300)"
fi
vm_data agent.log /tmp/udev-agent.log

links_snapshot >/tmp/links-after
run_hbad luns-after --json luns
vm_data links-after /tmp/links-after
udevadm control --exit 2>/dev/null || true

# storm: `hbad run` loses events and repairs its view. With a receive buffer far too
# small, scsi_debug adds (then removes) hosts with all their targets, LUNs and disks in
# one burst; the kernel drops what does not fit and the socket reports ENOBUFS. The
# agent must count the overflow, rebuild its graph from sysfs, and end up knowing
# exactly the hosts sysfs has, after the adds and after the removes.

[ -f /run/hbadvm/lab.env ] || die "the lab scenario left no /run/hbadvm/lab.env"
. /run/hbadvm/lab.env
POLICY=/vm/policy/storm.toml
STATUS=/run/hbad/storm-status.json
SD=/sys/bus/pseudo/drivers/scsi_debug

sysfs_hosts() { ls /sys/class/scsi_host | sort -V | tr '\n' ' '; }
# The hosts in the agent's status file, in the same form.
agent_hosts() { grep -o '"host": "host[0-9]*"' $STATUS | sed 's/.*"\(host[0-9]*\)"/\1/' | sort -V | tr '\n' ' '; }
counter() { sed -n "s/.*\"$1\": \([0-9]*\).*/\1/p" $STATUS | head -n1; }
agrees() { [ "$(agent_hosts)" = "$(sysfs_hosts)" ]; }

mkdir -p /run/hbad
# 4096 bytes: a dozen uevents. hbad forces it past rmem_max as root; the kernel
# doubles it and keeps a floor.
hbad --policy $POLICY run --no-journal --udev off --recv-buffer 4096 --status-file $STATUS \
    >/tmp/storm.out 2>/tmp/storm.log &
AGENT=$!
trap 'kill $AGENT 2>/dev/null' EXIT
ready() { grep -q '"ready": true' $STATUS 2>/dev/null; }
wait_for 20 ready || die "hbad run did not become ready: $(tail -c 300 /tmp/storm.log | tr '\n' ' ')"
ok "hbad run ready with a 4096-byte receive buffer: $(grep -o 'receive buffer [0-9]* bytes' /tmp/storm.log)"
wait_for 10 agrees || fail "before the storm the agent knows hosts '$(agent_hosts)', sysfs has '$(sysfs_hosts)'"

hosts0="$(ls /sys/class/scsi_host | wc -l)"
luns_now() { ls /sys/class/scsi_device | wc -l; }
t0="$(vm_uptime)"
echo 4 >$SD/add_host || die "scsi_debug add_host 4"
# A function, so each poll counts again ("$(...)" as an argument is expanded once).
host_count_is() { [ "$(ls /sys/class/scsi_host | wc -l)" -eq "$1" ]; }
wait_for 30 host_count_is $((hosts0 + 4)) || fail "scsi_debug did not add 4 hosts"
# Wait until the burst is over: the LUN count stops moving.
settle() { a="$(luns_now)"; sleep 1; [ "$a" = "$(luns_now)" ]; }
wait_for 30 settle || true
ok "storm of adds: 4 hosts, $(luns_now) LUNs now, in $(awk -v a=$t0 -v b=$(vm_uptime) 'BEGIN{printf "%.1f", b-a}') s"
if wait_for 15 agrees; then
    ok "after the adds the agent knows exactly sysfs's hosts: $(sysfs_hosts)"
else
    fail "after the adds the agent knows '$(agent_hosts)', sysfs has '$(sysfs_hosts)'"
fi
ov1="$(counter overflows)"
rs1="$(counter resyncs)"
if [ "${ov1:-0}" -ge 1 ] && [ "${rs1:-0}" -ge 1 ]; then
    ok "the agent counted $ov1 overflow(s) and resynced $rs1 time(s)"
else
    fail "no overflow or resync counted (overflows ${ov1:-?}, resyncs ${rs1:-?}): the storm did not overflow, or the agent did not notice"
fi

t0="$(vm_uptime)"
echo -4 >$SD/add_host || die "scsi_debug add_host -4"
wait_for 30 host_count_is "$hosts0" || fail "scsi_debug did not remove 4 hosts"
wait_for 30 settle || true
ok "storm of removes: back to $hosts0 hosts in $(awk -v a=$t0 -v b=$(vm_uptime) 'BEGIN{printf "%.1f", b-a}') s"
if wait_for 15 agrees; then
    ok "after the removes the agent knows exactly sysfs's hosts: $(sysfs_hosts)"
else
    fail "after the removes the agent knows '$(agent_hosts)', sysfs has '$(sysfs_hosts)'"
fi
info "counters: $(tr -d ' \n' <$STATUS | grep -o '"counters":{[^}]*}')"
check "the agent is still running" kill -0 $AGENT
kill -TERM $AGENT
stopped() { ! kill -0 $AGENT 2>/dev/null; }
if wait_for 15 stopped; then
    wait $AGENT
    check_eq "hbad run exit status after SIGTERM" "$?" 0
else
    fail "hbad run still running 15 s after SIGTERM"
fi
trap - EXIT
cp $STATUS /tmp/storm-status.json && vm_data status-file /tmp/storm-status.json
vm_data agent.log /tmp/storm.log

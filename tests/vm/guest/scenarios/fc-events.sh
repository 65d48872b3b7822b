# fc-events: FC transport events (NETLINK_SCSITRANSPORT) on the real kernel. `hbad run`
# joins the FC event group, and its metrics say so. Root can send to that group too:
# `hbad-lab-fcf fc-event` forges a well-formed LINKUP for the FCoE initiator's host
# (struct fc_nl_event as fc_host_post_event lays it out), then a truncated one and one
# whose lengths claim 64 KiB; the agent drops and counts all three (sender portid not
# 0) and re-reads nothing. The genuine event: libfc posts LIPRESET when its port resets,
# and `issue_lip` on an fcoe host resets it (fcoe_reset -> fc_linkdown ->
# fc_lport_enter_reset): the agent re-reads that host at once. libfc posts no LINKUP,
# LINKDOWN, RSCN or FPIN, so those are seen only as forgeries here.

[ -f /run/hbadvm/lab.env ] || die "the lab scenario left no /run/hbadvm/lab.env"
. /run/hbadvm/lab.env
POLICY=/vm/policy/storm.toml
STATUS=/run/hbad/fc-events-status.json
METRICS=/run/hbad/fc-events.prom
LOG=/tmp/fc-events.log
command -v hbad-lab-fcf >/dev/null || die "no hbad-lab-fcf in the guest (run.py puts it there with --fcf)"
[ -e /sys/class/fc_host/$INI_HOST/issue_lip ] || die "no issue_lip on $INI_HOST"

# One series of the textfile, by its exact name and labels; empty when absent.
series() { awk -v s="$1" '$1 == s { print $2 }' $METRICS 2>/dev/null; }
fc_dropped() { series "hbad_events_dropped_total{source=\"fc\",reason=\"$1\"}"; }
fc_events() { series 'hbad_events_received_total{source="fc"}'; }
fc_up() { series 'hbad_event_source_up{source="fc"}'; }
rereads() { grep -c "FC event .*: re-reading" $LOG; }

mkdir -p /run/hbad
hbad --policy $POLICY run --no-journal --udev off --status-file $STATUS --metrics $METRICS \
    >/tmp/fc-events.out 2>$LOG &
AGENT=$!
trap 'kill $AGENT 2>/dev/null' EXIT
ready() { grep -q '"ready": true' $STATUS 2>/dev/null && [ -s $METRICS ]; }
wait_for 20 ready || die "hbad run did not become ready: $(tail -c 300 $LOG | tr '\n' ' ')"
ok "hbad run ready"
check "the agent's log says it listens to FC transport events" grep -q "listening to FC transport events" $LOG
check "no 'FC transport events unavailable' in the log" sh -c "! grep -q 'FC transport events unavailable' $LOG"
check_eq 'hbad_event_source_up{source="fc"}' "$(fc_up)" 1
check_eq "FC events received before any was sent" "$(fc_events)" 0
info "netlink sockets of protocol 18 (/proc/net/netlink: sk Eth Pid Groups ...): $(awk '$2 == 18 { printf "%s/%s ", $3, $4 }' /proc/net/netlink)"

# --- forgeries ------------------------------------------------------------------------
H=${INI_HOST#host}
n=0
for shape in well-formed truncated oversized; do
    n=$((n + 1))
    if hbad-lab-fcf fc-event --shape $shape --num $((900000 + n)) $H LINKUP >/tmp/forge.out 2>&1; then
        ok "forged $shape LINKUP on $INI_HOST: $(cat /tmp/forge.out)"
    else
        die "hbad-lab-fcf fc-event --shape $shape failed: $(cat /tmp/forge.out)"
    fi
    dropped() { [ "$(fc_dropped not_kernel)" = "$1" ]; }
    wait_for 10 dropped $n || fail "after the $shape forgery: dropped not_kernel $(fc_dropped not_kernel), want $n"
done
check_eq "FC forgeries dropped as not from the kernel" "$(fc_dropped not_kernel)" 3
check_eq "FC forgeries parsed as malformed (the sender is checked first)" "$(fc_dropped malformed)" 0
check_eq "FC events received (the forgeries count as received, not as events)" "$(fc_events)" 3
check_eq "hosts re-read for an FC event after the forgeries" "$(rereads)" 0
check "the agent's log names each forgery's sender" sh -c "[ \$(grep -c 'dropped an FC transport event: forged: sent by portid' $LOG) -eq 3 ]"
check "the agent is still running after the forgeries" kill -0 $AGENT

# --- the kernel's own event -----------------------------------------------------------
# A LIP reset on the FCoE initiator: libfc posts FCH_EVT_LIPRESET from portid 0.
t0="$(vm_uptime)"
sysfs_write 1 /sys/class/fc_host/$INI_HOST/issue_lip || fail "issue_lip on $INI_HOST"
reread() { grep -q "FC event LIPRESET on $INI_HOST (event [0-9]*): re-reading $INI_HOST" $LOG; }
if wait_for 10 reread; then
    t1="$(vm_uptime)"
    dt="$(awk -v a=$t0 -v b=$t1 'BEGIN{printf "%.2f", b-a}')"
    ok "the kernel's LIPRESET re-read $INI_HOST $dt s after issue_lip: $(grep "FC event LIPRESET" $LOG | head -n1)"
    awk -v d=$dt 'BEGIN{exit !(d <= 2)}' || fail "the re-read took $dt s, want at most 2 s (polling would, an event should not)"
else
    fail "no 'FC event LIPRESET on $INI_HOST' re-read 10 s after issue_lip: $(tail -c 400 $LOG | tr '\n' ' ')"
fi
events_at_least_one() { [ "$(series 'hbad_events_received_total{source="fc"}')" -ge 4 ]; }
wait_for 5 events_at_least_one || true
check_eq "FC forgeries dropped after the kernel's event" "$(fc_dropped not_kernel)" 3
info "FC counters: received $(fc_events), not_kernel $(fc_dropped not_kernel), malformed $(fc_dropped malformed), overflows $(series 'hbad_events_overflows_total{source="fc"}')"

# The lab must be whole again for whatever runs next: the port logs back in.
online() { [ "$(attr /sys/class/fc_host/$INI_HOST/port_state)" = Online ]; }
rport_online() { [ "$(attr /sys/class/fc_remote_ports/$RPORT/port_state)" = Online ]; }
wait_for 30 online || fail "$INI_HOST port_state $(attr /sys/class/fc_host/$INI_HOST/port_state) 30 s after the LIP"
wait_for 30 rport_online || fail "$RPORT port_state $(attr /sys/class/fc_remote_ports/$RPORT/port_state) 30 s after the LIP"
check "/dev/$INI_DISK reads after the LIP" dd if=/dev/$INI_DISK of=/dev/null bs=4096 count=1

check "the agent is still running" kill -0 $AGENT
stop_agent $AGENT
cp $METRICS /tmp/fc-events.prom && vm_data metrics /tmp/fc-events.prom
vm_data agent.log $LOG

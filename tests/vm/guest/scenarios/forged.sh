# forged: uevents that did not come from the kernel. Root in the guest can send to the
# kernel's uevent group from its own netlink socket (CVE-2009-1185); every listener
# gets it as if the kernel had sent it, and only the sender's nonzero portid gives it
# away. With `hbad run` listening, a forged REPORTED_LUNS_DATA_HAS_CHANGED on a real
# scsi_debug LUN, and a forged `add` of a host that does not exist, must be dropped
# and counted: no scan, no LUN found, no host in the agent's view.

[ -f /run/hbadvm/lab.env ] || die "the lab scenario left no /run/hbadvm/lab.env"
. /run/hbadvm/lab.env
POLICY=/vm/policy/storm.toml
STATUS=/run/hbad/forged-status.json
SD=/sys/bus/pseudo/drivers/scsi_debug
command -v uevent-forge >/dev/null || die "no uevent-forge in the guest (build-guest.sh builds tests/vm/guest/tools/)"

counter() { sed -n "s/.*\"$1\": \([0-9]*\).*/\1/p" $STATUS | head -n1; }
sysfs_hosts() { ls /sys/class/scsi_host | sort -V | tr '\n' ' '; }
agent_hosts() { grep -o '"host": "host[0-9]*"' $STATUS | sed 's/.*"\(host[0-9]*\)"/\1/' | sort -V | tr '\n' ' '; }
luns_on_target() { ls -d /sys/bus/scsi/devices/$1:* 2>/dev/null | wc -l; } # H:C:T

# The LUN the forgery names: on a scsi_debug target with fewer LUNs than scsi_debug
# would report, so a scan it caused would add LUNs and show. Earlier scenarios grow
# targets to 8 LUNs; 16 is above any of them. Put back at the end.
SD_H=${SD_HOSTS%% *}
SD_N=${SD_H#host}
T=$SD_N:0:1
max0="$(attr $SD/max_luns)"
echo 16 >$SD/max_luns || die "scsi_debug max_luns 16"
LUN=$T:0
[ -e /sys/bus/scsi/devices/$LUN ] || die "no LUN $LUN"
DEVPATH="$(readlink -f /sys/bus/scsi/devices/$LUN)"
DEVPATH="${DEVPATH#/sys}"
luns0="$(luns_on_target $T)"
[ "$luns0" -lt 16 ] || die "target $T already has $luns0 LUNs: a scan would show nothing"

mkdir -p /run/hbad
hbad --policy $POLICY run --no-journal --udev off --status-file $STATUS >/tmp/forged.out 2>/tmp/forged.log &
AGENT=$!
trap 'kill $AGENT 2>/dev/null' EXIT
ready() { grep -q '"ready": true' $STATUS 2>/dev/null; }
wait_for 20 ready || die "hbad run did not become ready: $(tail -c 300 /tmp/forged.log | tr '\n' ' ')"
ok "hbad run ready"
scans0="$(counter scans)"
events0="$(counter events)"
check_eq "forged counter before" "$(counter forged)" 0

# --- a forged unit attention on a real LUN ----------------------------------------------
if uevent-forge change "$DEVPATH" SUBSYSTEM=scsi DEVTYPE=scsi_device \
    SDEV_UA=REPORTED_LUNS_DATA_HAS_CHANGED SEQNUM=900001 >/tmp/forge.out 2>&1; then
    ok "forged change@$DEVPATH SDEV_UA=REPORTED_LUNS_DATA_HAS_CHANGED: $(cat /tmp/forge.out)"
else
    die "uevent-forge failed: $(cat /tmp/forge.out)"
fi
# The status file is written after each batch: once it counts the forgery, any scan
# the forgery caused would already be in the same file's counters.
counted() { [ "$(counter forged)" -ge 1 ]; }
if wait_for 10 counted; then
    ok "the agent counted the forged uevent: forged $(counter forged)"
else
    fail "forged counter $(counter forged) 10 s after the forgery: the agent did not see it, or took it"
fi
check_eq "scans after the forgery" "$(counter scans)" "$scans0"
check_eq "events taken as the kernel's after the forgery" "$(counter events)" "$events0"
check "no scan reported for $SD_H in the status file" sh -c "! tr -d '\n ' <$STATUS | grep -q '\"host\":\"$SD_H\",\"last_scan\":{'"
check "the agent's log says it dropped a forged uevent" grep -q "dropped a uevent: forged: sent by portid" /tmp/forged.log
check_eq "LUNs on target $T (a scan would have added LUNs)" "$(luns_on_target $T)" "$luns0"

# --- a forged add of a host that does not exist -------------------------------------------
if uevent-forge add /devices/pseudo_0/adapter0/host99 SUBSYSTEM=scsi DEVTYPE=scsi_host \
    SEQNUM=900002 >/tmp/forge.out 2>&1; then
    ok "forged add@/devices/pseudo_0/adapter0/host99: $(cat /tmp/forge.out)"
else
    die "uevent-forge failed: $(cat /tmp/forge.out)"
fi
counted2() { [ "$(counter forged)" -ge 2 ]; }
wait_for 10 counted2 || fail "forged counter $(counter forged) 10 s after the second forgery, want 2"
check_eq "the agent's hosts are sysfs's (no host99)" "$(agent_hosts)" "$(sysfs_hosts)"
check_eq "scans after both forgeries" "$(counter scans)" "$scans0"
info "counters: $(tr -d ' \n' <$STATUS | grep -o '"counters":{[^}]*}')"

check "the agent is still running" kill -0 $AGENT
stop_agent $AGENT
check_eq "LUNs on target $T at the end" "$(luns_on_target $T)" "$luns0"
echo "$max0" >$SD/max_luns || fail "scsi_debug max_luns back to $max0"
cp $STATUS /tmp/forged-status.json && vm_data status-file /tmp/forged-status.json
vm_data agent.log /tmp/forged.log

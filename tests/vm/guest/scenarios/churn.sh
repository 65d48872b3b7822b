# churn: `hbad run` follows devices coming and going one event at a time (no overflow,
# unlike storm): scsi_debug hosts added and removed, LUNs deleted through
# device/delete. After each round the agent's view must equal a fresh read of sysfs:
# the hosts in its status file are sysfs's, and its per-kind device counts are what
# a fresh `hbad list --json` counts.

[ -f /run/hbadvm/lab.env ] || die "the lab scenario left no /run/hbadvm/lab.env"
. /run/hbadvm/lab.env
POLICY=/vm/policy/storm.toml
STATUS=/run/hbad/churn-status.json
SD=/sys/bus/pseudo/drivers/scsi_debug
KINDS="host vport remote_port target lun disk"

counter() { sed -n "s/.*\"$1\": \([0-9]*\).*/\1/p" $STATUS | head -n1; }
sysfs_hosts() { ls /sys/class/scsi_host | sort -V | tr '\n' ' '; }
agent_hosts() { grep -o '"host": "host[0-9]*"' $STATUS | sed 's/.*"\(host[0-9]*\)"/\1/' | sort -V | tr '\n' ' '; }
# "host=5 vport=0 ..." from the status file's devices map and from hbad list --json.
agent_counts() {
    sed -n '/"devices": {/,/}/p' $STATUS >/tmp/churn-devices
    for k in $KINDS; do
        n="$(sed -n "s/^ *\"$k\": \([0-9]*\).*/\1/p" /tmp/churn-devices)"
        printf '%s=%s ' $k "${n:-0}"
    done
}
fresh_counts() {
    hbad list --json >/tmp/churn-list.json 2>/tmp/churn-list.err || { echo "hbad list failed"; return; }
    for k in $KINDS; do
        printf '%s=%s ' $k "$(grep -c "^    \"kind\": \"$k\"" /tmp/churn-list.json)"
    done
}
agrees() {
    [ "$(agent_hosts)" = "$(sysfs_hosts)" ] && [ "$(agent_counts)" = "$(fresh_counts)" ]
}
luns_now() { ls /sys/class/scsi_device | wc -l; }
disks_now() { ls -d /sys/class/scsi_device/*/device/block/* 2>/dev/null | wc -l; }
# Settled: LUN and disk counts stop moving for a second (sd attaches disks async).
settle() {
    a="$(luns_now)/$(disks_now)"
    sleep 1
    [ "$a" = "$(luns_now)/$(disks_now)" ]
}
compare() { # what just happened
    wait_for 30 settle || true
    if wait_for 15 agrees; then
        ok "after $1 the agent's view is a fresh read's: hosts $(agent_hosts)| $(agent_counts)"
    else
        fail "after $1: agent hosts '$(agent_hosts)' counts '$(agent_counts)'; sysfs hosts '$(sysfs_hosts)', hbad list counts '$(fresh_counts)'"
    fi
}
sd_hosts() { for h in /sys/class/scsi_host/host*; do [ "$(attr $h/proc_name)" = scsi_debug ] && basename $h; done; }

mkdir -p /run/hbad
hbad --policy $POLICY run --no-journal --udev off --status-file $STATUS >/tmp/churn.out 2>/tmp/churn.log &
AGENT=$!
trap 'kill $AGENT 2>/dev/null' EXIT
ready() { grep -q '"ready": true' $STATUS 2>/dev/null; }
wait_for 20 ready || die "hbad run did not become ready: $(tail -c 300 /tmp/churn.log | tr '\n' ' ')"
grep -q '"devices": {' $STATUS || die "the status file has no per-kind device counts"
compare "start"

hosts0="$(sysfs_hosts)"
sd0="$(sd_hosts | tr '\n' ' ')"
t0="$(vm_uptime)"
echo 1 >$SD/add_host || die "scsi_debug add_host 1"
compare "one scsi_debug host added"
echo 1 >$SD/add_host || die "scsi_debug add_host 1 (second)"
compare "a second scsi_debug host added"
# A new host takes the lowest free host number (the kernel's ida reuses numbers);
# nothing above the lab's hosts is free here, so the highest is one of the new ones.
NEW1="$(sd_hosts | sort -V | tail -n1)"
info "scsi_debug hosts now: $(sd_hosts | tr '\n' ' ')(were: $sd0)"

# LUNs deleted: two on a lab host, one on a new host.
SD_H=${SD_HOSTS%% *}
deleted=""
for d in /sys/bus/scsi/devices/${SD_H#host}:0:0:3 /sys/bus/scsi/devices/${SD_H#host}:0:1:2 \
    /sys/bus/scsi/devices/${NEW1#host}:0:0:1; do
    [ -e "$d/delete" ] || { fail "no $d to delete"; continue; }
    echo 1 >$d/delete || fail "delete $(basename $d)"
    deleted="$deleted $(basename $d)"
done
compare "deleting LUNs$deleted"

# scsi_debug removes the host it added last.
echo -1 >$SD/add_host || die "scsi_debug add_host -1"
compare "one scsi_debug host removed"
echo -1 >$SD/add_host || die "scsi_debug add_host -1 (second)"
compare "the other added host removed"
check_eq "hosts at the end are those at the start" "$(sysfs_hosts)" "$hosts0"
info "churn took $(awk -v a=$t0 -v b=$(vm_uptime) 'BEGIN{printf "%.1f", b-a}') s; counters: $(tr -d ' \n' <$STATUS | grep -o '"counters":{[^}]*}')"
check_eq "overflows (churn is one event at a time; storm tests overflow)" "$(counter overflows)" 0

check "the agent is still running" kill -0 $AGENT
stop_agent $AGENT
cp $STATUS /tmp/churn-status.json && vm_data status-file /tmp/churn-status.json
cp /tmp/churn-list.json /tmp/churn-list-last.json && vm_data list /tmp/churn-list-last.json
vm_data agent.log /tmp/churn.log

# agent: `hbad run` on the real kernel, driven by real uevents from the netlink
# socket. At start it creates the declared vHBAs; when a target reports new LUNs (a
# unit attention after I/O) it scans exactly that target: the new LUNs appear with
# nobody running a command, and targets that reported nothing stay as they were; when
# a LUN reports a new capacity it re-reads that device alone.
# `hbad status` reads what it reports; SIGTERM stops it cleanly.

[ -f /run/hbadvm/lab.env ] || die "the lab scenario left no /run/hbadvm/lab.env"
. /run/hbadvm/lab.env
H=${INI_HOST#host}
FC=/sys/class/fc_host/$INI_HOST
POLICY=/vm/policy/agent.toml
STATUS=/run/hbad/status.json
T=/sys/kernel/config/target
TPG=$T/fc/20:00:02:00:00:00:00:0a/tpgt_1
ACL=$TPG/acls/20:00:02:00:00:00:00:0b
SD=/sys/bus/pseudo/drivers/scsi_debug

luns_on_target() { ls -d /sys/bus/scsi/devices/$1:* 2>/dev/null | wc -l; } # H:C:T
vport_wwpns() { for v in /sys/class/fc_vports/vport-*; do [ -e "$v" ] && attr $v/port_name; done; }
inuse0="$(attr $FC/npiv_vports_inuse)"

mkdir -p /run/hbad
hbad --policy $POLICY run --no-journal --udev off --status-file $STATUS >/tmp/agent.out 2>/tmp/agent.log &
AGENT=$!
trap 'kill $AGENT 2>/dev/null' EXIT
started() { kill -0 $AGENT 2>/dev/null && [ -s $STATUS ]; }
if wait_for 20 started; then
    ok "hbad run is up (pid $AGENT) and wrote $STATUS"
else
    vm_data agent.log /tmp/agent.log
    die "hbad run did not come up: $(tail -c 300 /tmp/agent.log | tr '\n' ' ')"
fi

# --- boot-time vHBAs --------------------------------------------------------------------
both() { vport_wwpns | grep -q 0x5001a4a000000c01 && [ "$(vport_wwpns | grep -c .)" -ge 2 ]; }
if wait_for 20 both; then
    ok "the agent created the declared vHBAs: $(vport_wwpns | tr '\n' ' ')"
else
    fail "the agent did not create both vHBAs within 20 s: vports $(vport_wwpns | tr '\n' ' ')"
fi
# READY (and "ready": true in the status file) once the boot-time vHBAs are settled;
# the agent checks that on its 1 s tick.
ready() { grep -q '"ready": true' $STATUS; }
if wait_for 10 ready; then ok "the agent says it is ready"; else fail "the agent's status file never said ready within 10 s"; fi
check_eq "$INI_HOST npiv_vports_inuse with the agent's vHBAs" "$(attr $FC/npiv_vports_inuse)" $((inuse0 + 2))
for v in /sys/class/fc_vports/vport-*; do
    [ -e "$v" ] && info "$(basename $v): $(attr $v/port_name) symbolic_name '$(attr $v/symbolic_name)' vport_state '$(attr $v/vport_state)'"
done

# --- new LUNs on the FC target: the agent scans target 0:0 of the initiator -----------------
RD2=$T/core/rd_mcp_2/rd2
mkdir -p $RD2 && echo rd_pages=2048 >$RD2/control && echo hbadvm-rd2 >$RD2/wwn/vpd_unit_serial &&
    echo 1 >$RD2/enable || die "LIO backstore rd2"
mkdir $TPG/lun/lun_2 && ln -s $RD2 $TPG/lun/lun_2/rd2 || die "lun_2 on the tcm_fc port"
mkdir $ACL/lun_2 && ln -s $TPG/lun/lun_2 $ACL/lun_2/lun_2 || die "map lun_2 into the ACL"
t0="$(vm_uptime)"
read_until_lun() {
    dd if=/dev/$INI_DISK of=/dev/null bs=512 count=1 iflag=direct 2>/dev/null
    test -d /sys/bus/scsi/devices/$H:0:0:2/block
}
if wait_for 20 read_until_lun; then
    ok "the agent found LIO LUN $H:0:0:2 by itself, $(awk -v a=$t0 -v b=$(vm_uptime) 'BEGIN{printf "%.2f", b-a}') s after mapping"
else
    fail "no $H:0:0:2 within 20 s of reads after mapping lun_2: the agent did not scan"
fi

# --- new LUNs on one scsi_debug target: only that target is scanned ---------------------------
SD_H=${SD_HOSTS%% *}
SD_N=${SD_H#host}
SD_OTHER=${SD_HOSTS#* }
SD_OTHER=${SD_OTHER%% *}
before_t0="$(luns_on_target $SD_N:0:0)"
before_t1="$(luns_on_target $SD_N:0:1)"
before_o="$(luns_on_target ${SD_OTHER#host}:0:0)"
echo 8 >$SD/max_luns || die "scsi_debug max_luns 8"
SD_DISK="$(ls /sys/bus/scsi/devices/$SD_N:0:0:0/block)"
t0="$(vm_uptime)"
read_until_8() {
    dd if=/dev/$SD_DISK of=/dev/null bs=512 count=1 iflag=direct 2>/dev/null
    [ "$(luns_on_target $SD_N:0:0)" -ge 8 ]
}
if wait_for 20 read_until_8; then
    ok "the agent scanned target $SD_N:0:0 after its unit attention: $before_t0 -> 8 LUNs in $(awk -v a=$t0 -v b=$(vm_uptime) 'BEGIN{printf "%.2f", b-a}') s"
else
    fail "target $SD_N:0:0 has $(luns_on_target $SD_N:0:0) LUNs 20 s after its unit attention, want 8"
fi
check_eq "LUNs on target $SD_N:0:1, which reported nothing" "$(luns_on_target $SD_N:0:1)" "$before_t1"
check_eq "LUNs on ${SD_OTHER}'s target 0:0, which reported nothing" "$(luns_on_target ${SD_OTHER#host}:0:0)" "$before_o"

# --- a LUN grows: the agent re-reads exactly that device ---------------------------------
# scsi_debug reports the new capacity on READ CAPACITY at once but raises
# CAPACITY_DATA_HAS_CHANGED only on the next command to each LUN; sd keeps the old
# size until told to re-read (device/rescan).
# Target 0:0 again: it has reported its LUN change already (scsi_debug clears that
# unit attention on the whole target once one LUN reports it), so the next one on
# 0:0:0 is the capacity change alone.
L0=$SD_N:0:0:0
L1=$SD_N:0:0:1
# sd attaches the new LUNs' disks asynchronously and its probe sends commands; let it
# finish first, or those LUNs report the capacity change too (rightly re-read then).
disks_on_target() { ls -d /sys/bus/scsi/devices/$1:*/block/* 2>/dev/null | wc -l; }
eight_disks() { [ "$(disks_on_target $SD_N:0:0)" -ge 8 ]; }
wait_for 20 eight_disks || fail "the new LUNs of $SD_N:0:0 got no disks"
D0="$(ls /sys/bus/scsi/devices/$L0/block)"
D1="$(ls /sys/bus/scsi/devices/$L1/block)"
size0="$(attr /sys/block/$D0/size)"
size1="$(attr /sys/block/$D1/size)"
echo 1 >$SD/virtual_gb || die "scsi_debug virtual_gb 1"
check_eq "$L0 ($D0) size before any I/O (sd has not re-read it)" "$(attr /sys/block/$D0/size)" "$size0"
grown() {
    dd if=/dev/$D0 of=/dev/null bs=512 count=1 iflag=direct 2>/dev/null
    [ "$(attr /sys/block/$D0/size)" = 2097152 ]
}
t0="$(vm_uptime)"
if wait_for 20 grown; then
    ok "the agent re-read $L0 after its CAPACITY_DATA_HAS_CHANGED: $size0 -> 2097152 sectors in $(awk -v a=$t0 -v b=$(vm_uptime) 'BEGIN{printf "%.2f", b-a}') s"
else
    fail "$L0 ($D0) has $(attr /sys/block/$D0/size) sectors 20 s after its capacity unit attention, want 2097152"
fi
check_eq "$L1 ($D1), which reported nothing, keeps its size" "$(attr /sys/block/$D1/size)" "$size1"
echo 0 >$SD/virtual_gb

# --- status and stop ------------------------------------------------------------------
run_hbad status --json status --status-file $STATUS
# VN2VN has no fabric to log the vports into ('No Fabric Support'): there is no login
# to lose, the vHBAs reach their peers, so hbad calls them active (login no_fabric)
# and the agent healthy (status 0).
check_eq "hbad status exit status (healthy)" "$(cat /tmp/hbad-status.rc)" 0
check "hbad status gives the vports' login as no_fabric" grep -q '"login": "no_fabric"' /tmp/hbad-status.out
cp $STATUS /tmp/status-file.json && vm_data status-file /tmp/status-file.json
stop_agent $AGENT
vm_data agent.log /tmp/agent.log
info "agent log: $(wc -l </tmp/agent.log) lines; last: $(tail -n 1 /tmp/agent.log | cut -c1-200)"

# Leave the port as the lab made it: the agent's vHBAs go (they are hbad's).
for name in lab-derived lab-explicit; do
    hbad --policy $POLICY destroy "$name" >/dev/null 2>&1 || fail "hbad destroy $name after the agent"
done
check_eq "$INI_HOST npiv_vports_inuse at the end" "$(attr $FC/npiv_vports_inuse)" "$inuse0"
printf 'INI_HOST=%s\nSD_HOSTS=%s\n' "$INI_HOST" "$SD_HOSTS" >/tmp/agent-facts
vm_data facts /tmp/agent-facts

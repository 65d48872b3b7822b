# refusals: what hbad will not do, and that refusing disturbs nothing. With the agent
# running: a declared vHBA whose WWPN another port already has is not written (the
# plan and the status file say the WWPN is in use) while the other declared vHBA is
# made; `hbad create` on a scsi_debug host (no NPIV) and with a WWPN already in use
# fail with a message saying why and write nothing. After each: the hand-made vport,
# the agent's vHBA and every host are as they were, and the agent answers SIGHUP.

[ -f /run/hbadvm/lab.env ] || die "the lab scenario left no /run/hbadvm/lab.env"
. /run/hbadvm/lab.env
FC=/sys/class/fc_host/$INI_HOST
POLICY=/tmp/refusals.toml
STATUS=/run/hbad/refusals-status.json
# Someone else's vport, made by hand before the agent starts.
HAND_WWPN=0x5001a4a000000f01
HAND_WWNN=0x5001a4a000000f00
GOOD_WWPN=0x5001a4a000000f11
SD_H=${SD_HOSTS%% *}

cat >$POLICY <<POL
[wwn]
seed = "hbadvm-lab"

# The target-side FCoE port's WWPN: on this lab it is also the remote port the
# initiator logs in to. fcoe would accept it on the initiator (it only compares with
# its own port and vports); a second port with that name on the fabric is wrong.
[[vhba]]
name = "rf-taken"
parent_wwpn = "$INI_WWPN"
wwpn = "$TGT_WWPN"
wwnn = "0x5001a4a000000f20"

[[vhba]]
name = "rf-good"
parent_wwpn = "$INI_WWPN"
wwpn = "$GOOD_WWPN"
wwnn = "0x5001a4a000000f10"

[ownership]
state_file = "/run/hbad/owned-vhbas.json"
POL

vport_of() { # wwpn -> vport-H:C-N
    for v in /sys/class/fc_vports/vport-*; do
        [ -e "$v" ] && [ "$(attr $v/port_name)" = "$1" ] && { basename $v; return 0; }
    done
    return 1
}
# Everything that must not move: hosts, vports with their WWPN and symbolic_name,
# remote ports. Compared before and after each refusal.
world() {
    ls /sys/class/scsi_host | sort -V | tr '\n' ' '
    for v in /sys/class/fc_vports/vport-*; do
        [ -e "$v" ] && echo "$(basename $v)=$(attr $v/port_name)/$(attr $v/symbolic_name)"
    done | tr '\n' ' '
    ls /sys/class/fc_remote_ports | tr '\n' ' '
    echo "inuse=$(attr $FC/npiv_vports_inuse)"
}
reloads() { grep -c "policy reloaded" /tmp/rf.log; }
answers_hup() { # after what
    local r0
    r0="$(reloads)"
    kill -HUP $AGENT
    more_reloads() { [ "$(reloads)" -gt "$r0" ]; }
    if wait_for 10 more_reloads; then
        ok "after $1: the agent is running and reloads on SIGHUP"
    else
        fail "after $1: no reload logged 10 s after SIGHUP (agent alive: $(kill -0 $AGENT 2>/dev/null && echo yes || echo no))"
    fi
}

inuse0="$(attr $FC/npiv_vports_inuse)"
out="$(sysfs_write "${HAND_WWPN#0x}:${HAND_WWNN#0x}" $FC/vport_create)" || die "vport_create by hand: $out"
wait_for 10 vport_of $HAND_WWPN || die "no vport for the hand-made $HAND_WWPN"
HAND="$(vport_of $HAND_WWPN)"
echo libvirt-someone >/sys/class/fc_vports/$HAND/symbolic_name || die "symbolic_name of $HAND"
ok "made $HAND ($HAND_WWPN) by hand, symbolic_name libvirt-someone"

mkdir -p /run/hbad
hbad --policy $POLICY run --no-journal --udev off --status-file $STATUS >/tmp/rf.out 2>/tmp/rf.log &
AGENT=$!
trap 'kill $AGENT 2>/dev/null' EXIT
ready() { grep -q '"ready": true' $STATUS 2>/dev/null; }
wait_for 20 ready || die "hbad run did not become ready: $(tail -c 300 /tmp/rf.log | tr '\n' ' ')"
good() { fc_host_by_wwpn $GOOD_WWPN >/dev/null; }
wait_for 20 good || fail "the agent did not create rf-good ($GOOD_WWPN)"
ok "the agent is ready; rf-good is $(vport_of $GOOD_WWPN)"

# --- a declared WWPN in use: no write, said in the plan and the status ----------------
taken_vports="$(for v in /sys/class/fc_vports/vport-*; do [ "$(attr $v/port_name)" = "$TGT_WWPN" ] && echo $v; done)"
check_eq "vports with rf-taken's WWPN $TGT_WWPN" "$taken_vports" ""
check_eq "$INI_HOST npiv_vports_inuse (the hand-made vport and rf-good only)" "$(attr $FC/npiv_vports_inuse)" $((inuse0 + 2))
# The status file: rf-taken waiting, with the reason.
tr -d '\n' <$STATUS | grep -o '{[^{}]*"name": "rf-taken"[^{}]*}' >/tmp/rf-taken.json
info "status of rf-taken: $(tr -s ' ' </tmp/rf-taken.json)"
check "the status file says rf-taken is waiting" grep -q '"state": "waiting"' /tmp/rf-taken.json
check "the status file says why: the WWPN is in use" grep -q "WWPN $TGT_WWPN is already used by" /tmp/rf-taken.json
run_hbad plan --policy $POLICY --json plan
check "hbad plan: rf-taken waits because its WWPN is in use" grep -q '"wait": "wwpn_in_use"' /tmp/hbad-plan.out
info "hbad plan says rf-taken's WWPN is used by $(sed -n 's/.*"by": "\(.*\)".*/\1/p' /tmp/hbad-plan.out)"
check "hbad plan creates nothing" sh -c "! grep -q create_vhba /tmp/hbad-plan.out"
check "the agent wrote no vport_create for rf-taken (log)" sh -c "! grep -q 'vHBA rf-taken created' /tmp/rf.log"
before="$(world)"
answers_hup "the WWPN refusal"
check_eq "nothing moved after the WWPN refusal" "$(world)" "$before"

# --- hbad create on a host with no NPIV -------------------------------------------------
before="$(world)"
run_hbad create-sd --policy $POLICY create --parent $SD_H --wwpn 0x5001a4a000000f31 --wwnn 0x5001a4a000000f30
rc=$?
if [ $rc -ne 0 ]; then ok "hbad create --parent $SD_H (scsi_debug) exits $rc"; else fail "hbad create --parent $SD_H (scsi_debug) exited 0"; fi
info "its message: $(head -c 300 /tmp/hbad-create-sd.err)"
check "the message names $SD_H" grep -q "$SD_H" /tmp/hbad-create-sd.err
if grep -q "NPIV" /tmp/hbad-create-sd.err; then
    ok "the message names the missing NPIV support"
else
    # plan::candidates keeps FC ports only, so a non-FC host is "no FC port matches"
    # and never reaches the NoNpiv reason that names NPIV.
    xfail "hbad create --parent <non-FC host> says '$(head -c 200 /tmp/hbad-create-sd.err)': it does not name the missing NPIV support (plan::choose_parent drops non-FC hosts before its NoNpiv reason)"
fi
check_eq "nothing moved after create on $SD_H" "$(world)" "$before"
answers_hup "the refused create on $SD_H"

# --- hbad create with a WWPN the adapter already has -------------------------------------
# The kernel answers a duplicate WWPN with EINVAL ("already exists" in its log). hbad's
# plan sees every WWPN the kernel would compare (the port's own and its vports') and
# refuses first: the write, and so the EINVAL, is not reachable through hbad create.
before="$(world)"
run_hbad create-dup --policy $POLICY create --parent $INI_WWPN --wwpn $INI_WWPN --wwnn 0x5001a4a000000f40
rc=$?
if [ $rc -ne 0 ]; then ok "hbad create --wwpn <the parent's own WWPN> exits $rc"; else fail "hbad create --wwpn $INI_WWPN exited 0"; fi
check "its message says the WWPN is in use" grep -q "WWPN $INI_WWPN is already used by" /tmp/hbad-create-dup.err
check_eq "nothing moved after the duplicate-WWPN create" "$(world)" "$before"
# A WWPN of a vport that is there is not an error: it is the vport, reported as such,
# and someone else's is left as it was (not marked).
run_hbad create-hand --policy $POLICY create --parent $INI_WWPN --wwpn $HAND_WWPN --wwnn $HAND_WWNN
check_eq "hbad create with the hand-made vport's WWNs: exit" "$(cat /tmp/hbad-create-hand.rc)" 0
check "it says already present" grep -q "already present" /tmp/hbad-create-hand.out
check_eq "nothing moved after create on the hand-made vport's WWPN" "$(world)" "$before"
check_eq "$HAND keeps its owner's symbolic_name" "$(attr /sys/class/fc_vports/$HAND/symbolic_name)" libvirt-someone
answers_hup "the refused duplicate create"

stop_agent $AGENT
cp $STATUS /tmp/rf-status.json && vm_data status-file /tmp/rf-status.json
vm_data agent.log /tmp/rf.log

# Leave the port as the lab made it.
hbad --policy $POLICY destroy rf-good >/dev/null 2>&1 || fail "hbad destroy rf-good"
sysfs_write "${HAND_WWPN#0x}:${HAND_WWNN#0x}" $FC/vport_delete >/dev/null || fail "vport_delete of $HAND"
check_eq "$INI_HOST npiv_vports_inuse at the end" "$(attr $FC/npiv_vports_inuse)" "$inuse0"

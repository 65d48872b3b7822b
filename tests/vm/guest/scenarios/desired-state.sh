# desired-state: `hbad run` keeps the vHBAs the policy declares and lets go of those it
# no longer declares only as the policy says. A declared vHBA (parent chosen by WWPN)
# deleted by hand through the parent's vport_delete is created again by the agent
# alone; once SIGHUP takes it out of the policy it is kept while [ownership] prune is
# off (and no longer listed in the status file), and deleted when prune is on.

[ -f /run/hbadvm/lab.env ] || die "the lab scenario left no /run/hbadvm/lab.env"
. /run/hbadvm/lab.env
FC=/sys/class/fc_host/$INI_HOST
POLICY=/tmp/desired-state.toml
STATUS=/run/hbad/desired-state-status.json
WWPN=0x5001a4a000001e01
WWNN=0x5001a4a000001e00

write_policy() { # declare(yes|no) prune(true|false)
    {
        echo '[wwn]'
        echo 'seed = "hbadvm-lab"'
        echo '[ownership]'
        echo 'state_file = "/run/hbad/owned-vhbas.json"'
        echo "prune = $2"
        if [ "$1" = yes ]; then
            echo '[[vhba]]'
            echo 'name = "ds-keep"'
            echo "parent_wwpn = \"$INI_WWPN\""
            echo "wwpn = \"$WWPN\""
            echo "wwnn = \"$WWNN\""
        fi
    } >$POLICY
}
vport_of() { # wwpn -> vport-H:C-N, if a vport has it
    for v in /sys/class/fc_vports/vport-*; do
        [ -e "$v" ] && [ "$(attr $v/port_name)" = "$1" ] && { basename $v; return 0; }
    done
    return 1
}
counter() { sed -n "s/.*\"$1\": \([0-9]*\).*/\1/p" $STATUS | head -n1; }
inuse0="$(attr $FC/npiv_vports_inuse)"

write_policy yes false
mkdir -p /run/hbad
# At debug level: the log handed to the host then shows the agent's view of the
# vport too (read again after a create, logins), which is what a failure here needs.
HBAD_LOG=hbad=debug hbad --policy $POLICY run --no-journal --udev off --status-file $STATUS >/tmp/ds.out 2>/tmp/ds.log &
AGENT=$!
trap 'kill $AGENT 2>/dev/null' EXIT
ready() { grep -q '"ready": true' $STATUS 2>/dev/null; }
wait_for 20 ready || die "hbad run did not become ready: $(tail -c 300 /tmp/ds.log | tr '\n' ' ')"
present() { vport_of $WWPN >/dev/null && fc_host_by_wwpn $WWPN >/dev/null; }
wait_for 20 present || die "the agent did not create ds-keep ($WWPN) on $INI_HOST"
V1="$(vport_of $WWPN)"
H1="$(fc_host_by_wwpn $WWPN)"
ok "the agent created ds-keep: $V1, $H1 on $INI_HOST"
check_eq "vhbas_created after start" "$(counter vhbas_created)" 1

# --- deleted by hand: recreated --------------------------------------------------------
out="$(sysfs_write "${WWPN#0x}:${WWNN#0x}" $FC/vport_delete)" || die "vport_delete of $V1 by hand: $out"
ok "deleted $V1 by hand through $INI_HOST's vport_delete"
# Recreated means: a host with that WWPN again, under a vport the kernel numbered anew
# (vport numbers are not reused within a boot), and the agent counting a second create.
recreated() {
    v="$(vport_of $WWPN)" && [ "$v" != "$V1" ] && fc_host_by_wwpn $WWPN >/dev/null &&
        [ "$(counter vhbas_created)" = 2 ]
}
if wait_for 20 recreated; then
    ok "the agent recreated ds-keep: $(vport_of $WWPN), $(fc_host_by_wwpn $WWPN) (was $V1, $H1)"
else
    fail "ds-keep not recreated within 20 s: vport '$(vport_of $WWPN)', host '$(fc_host_by_wwpn $WWPN)', vhbas_created $(counter vhbas_created)"
fi
check "the agent's log says ds-keep was recreated" grep -q "vHBA ds-keep recreated on" /tmp/ds.log
check_eq "vhbas_created after the recreate" "$(counter vhbas_created)" 2
marked() { [ "$(attr /sys/class/fc_vports/$(vport_of $WWPN)/symbolic_name)" = hbad:ds-keep ]; }
wait_for 10 marked || fail "the recreated vport is not marked hbad:ds-keep: '$(attr /sys/class/fc_vports/$(vport_of $WWPN)/symbolic_name)'"
V2="$(vport_of $WWPN)"
check_eq "$INI_HOST npiv_vports_inuse with ds-keep" "$(attr $FC/npiv_vports_inuse)" $((inuse0 + 1))

# --- out of the policy, prune off: kept -----------------------------------------------
reloads() { grep -c "policy reloaded" /tmp/ds.log; }
r0="$(reloads)"
write_policy no false
kill -HUP $AGENT
reloaded() { [ "$(reloads)" -gt "$r0" ] && ! grep -q ds-keep $STATUS; }
if wait_for 10 reloaded; then
    ok "SIGHUP with ds-keep gone from the policy: reloaded, the status file no longer lists it"
else
    fail "after SIGHUP: $(reloads) reloads (was $r0), status file still names ds-keep: $(grep -c ds-keep $STATUS)"
fi
check_eq "with prune = false the vport is kept" "$(vport_of $WWPN)" "$V2"
check "the agent's log says why it kept it" grep -q "vHBA ds-keep ($WWPN, $V2) is not in the policy: .*prune = false" /tmp/ds.log
check "the kept vHBA's host is still there" fc_host_by_wwpn $WWPN
check "the agent is still running" kill -0 $AGENT

# --- prune on: deleted ------------------------------------------------------------------
r0="$(reloads)"
write_policy no true
kill -HUP $AGENT
gone() { [ "$(reloads)" -gt "$r0" ] && ! vport_of $WWPN >/dev/null; }
if wait_for 10 gone; then
    ok "SIGHUP with prune = true: the agent deleted $V2"
else
    fail "after SIGHUP with prune = true: vport '$(vport_of $WWPN)' still there"
fi
check "the vHBA host is gone too" test -z "$(fc_host_by_wwpn $WWPN)"
check "the agent's log says why it deleted it" grep -q "deleted vHBA ds-keep ($WWPN).*prune = true" /tmp/ds.log
check_eq "$INI_HOST npiv_vports_inuse at the end" "$(attr $FC/npiv_vports_inuse)" "$inuse0"

stop_agent $AGENT
cp $STATUS /tmp/ds-status.json && vm_data status-file /tmp/ds-status.json
vm_data agent.log /tmp/ds.log

# Helpers for scenario scripts (busybox ash). A scenario is /vm/scenarios/NAME.sh, run
# in a subshell by vm_run_scenario; it reports with ok/fail/info/xfail and hands data
# to the runner's host-side checks with vm_data. Facts one scenario leaves for the
# next (host numbers, WWPNs) go in /run/hbadvm/*.env.
#
# Console protocol, one line each, always starting with "HBADVM ":
#   BEGIN <scn> <uptime>            a scenario starts
#   <scn> ok|FAIL|info|xfail <text>  an assertion or a note
#   <scn> data <name> <base64>      a chunk of a file for the host-side checks
#   <scn> data-end <name> <bytes>   the file is complete
#   END <scn> pass|fail|xfail <seconds>
#   VERDICT pass|fail               the last line before power-off

mkdir -p /run/hbadvm

vm_line() { echo "HBADVM $*"; }
vm_uptime() { cut -d' ' -f1 /proc/uptime; }

ok() { vm_line "$VM_SCN ok $*"; }
info() { vm_line "$VM_SCN info $*"; }
fail() {
    vm_line "$VM_SCN FAIL $*"
    echo x >>"/run/hbadvm/$VM_SCN.failed"
}
# An expected failure: something the scenario cannot check yet, said out loud. A
# scenario with xfails and no failures ends as xfail, never as pass.
xfail() {
    vm_line "$VM_SCN xfail $*"
    echo x >>"/run/hbadvm/$VM_SCN.xfailed"
}
# Give up on the scenario: for setup steps everything after depends on.
die() {
    fail "$*"
    exit 1
}

check_eq() { # description actual expected
    if [ "$2" = "$3" ]; then ok "$1: $2"; else fail "$1: got '$2', want '$3'"; fi
}

check() { # description command...
    local desc="$1"
    shift
    if "$@" >/tmp/check.out 2>&1; then
        ok "$desc"
    else
        fail "$desc (exit $?: $(head -c 300 /tmp/check.out | tr '\n' ' '))"
        return 1
    fi
}

# Polls a condition every 0.1 s for at most SECONDS. Kernel state that changes without a
# uevent (port_state, vport_state) can only be waited for this way. The condition must
# read its state itself (a function or a command): `wait_for 9 test "$(count)" -ge 3`
# expands the count once, before the first poll, and never sees it change.
wait_for() { # seconds command...
    local limit=$(($1 * 10)) i=0
    shift
    while ! "$@" >/dev/null 2>&1; do
        i=$((i + 1))
        [ "$i" -ge "$limit" ] && return 1
        sleep 0.1
    done
    return 0
}

# Writes a value to a sysfs attribute; prints the shell's error text on failure.
# Returns the write's status, so callers can check the kernel's errno text.
# busybox's echo reports a failed write with strerror ("write error: Invalid argument");
# its printf fails silently. One echo is one write(2), as sysfs stores want.
sysfs_write() { # value file
    (echo "$1" >"$2") 2>&1
}

# The first line of an attribute, without the padding some carry (vendor, model).
# `read` trims it and costs no process: forks are slow under TCG.
attr() {
    local v=
    read -r v 2>/dev/null <"$1"
    echo "$v"
}

vm_data() { # name file
    local name="$1" file="$2"
    base64 "$file" | while read -r chunk; do vm_line "$VM_SCN data $name $chunk"; done
    vm_line "$VM_SCN data-end $name $(wc -c <"$file" | tr -d ' ')"
}

# Logs every kernel uevent to /run/hbadvm/uevents (one line each, uevent-log.sh) from
# now until the scenario ends. The listener is up once it sees an event: make one (a
# veth pair made and removed) until it does, rather than guess how long it takes to
# bind its socket.
uevent_log_start() {
    : >/run/hbadvm/uevents
    uevent /vm/uevent-log.sh &
    UEVENT_PID=$!
    trap 'kill $UEVENT_PID 2>/dev/null' EXIT
    listening() {
        ip link add ueva type veth peer name uevb 2>/dev/null && ip link del ueva 2>/dev/null
        sleep 0.2
        grep -q " add net " /run/hbadvm/uevents
    }
    if ! wait_for 10 listening; then
        info "uevent log: $(head -c 300 /run/hbadvm/uevents | tr '\n' '|'); ps: $(ps | grep -c uevent)"
        return 1
    fi
}

# Runs hbad with the given arguments; its stdout goes to /tmp/hbad-NAME.out (and to the
# runner as data NAME), stderr to /tmp/hbad-NAME.err. Returns hbad's exit status.
run_hbad() { # name args...
    local name="$1" rc
    shift
    hbad "$@" >"/tmp/hbad-$name.out" 2>"/tmp/hbad-$name.err"
    rc=$?
    echo "$rc" >"/tmp/hbad-$name.rc"
    info "hbad $* -> exit $rc"
    vm_data "$name" "/tmp/hbad-$name.out"
    vm_data "$name.stderr" "/tmp/hbad-$name.err"
    return $rc
}

# Is this hbad view still a placeholder? (The CLI views are written on another branch.)
hbad_unwritten() { # name
    grep -q "is not written yet" "/tmp/hbad-$1.err"
}

# The fc_host whose port_name is this WWPN (0x...), as hostN.
fc_host_by_wwpn() {
    local h
    for h in /sys/class/fc_host/host*; do
        [ "$(attr "$h/port_name")" = "$1" ] && { basename "$h"; return 0; }
    done
    return 1
}

# Stops an `hbad run` the scenario started in the background: SIGTERM must end it
# within 10 s with status 0. Clears the scenario's EXIT trap that would kill it.
stop_agent() { # pid
    local _agent=$1
    kill -TERM $_agent
    _agent_stopped() { ! kill -0 $_agent 2>/dev/null; }
    if wait_for 10 _agent_stopped; then
        wait $_agent
        check_eq "hbad run exit status after SIGTERM" "$?" 0
    else
        fail "hbad run still running 10 s after SIGTERM"
    fi
    trap - EXIT
}

vm_run_scenario() { # name
    local name="$1" start end status rc
    start="$(vm_uptime)"
    vm_line "BEGIN $name $start"
    rm -f "/run/hbadvm/$name.failed" "/run/hbadvm/$name.xfailed"
    if [ ! -f "/vm/scenarios/$name.sh" ]; then
        vm_line "$name FAIL no scenario /vm/scenarios/$name.sh"
        echo x >>"/run/hbadvm/$name.failed"
    else
        (
            VM_SCN="$name"
            . "/vm/scenarios/$name.sh"
        )
        rc=$?
        if [ "$rc" != 0 ] && [ ! -f "/run/hbadvm/$name.failed" ]; then
            vm_line "$name FAIL scenario script exited with status $rc"
            echo x >>"/run/hbadvm/$name.failed"
        fi
    fi
    end="$(vm_uptime)"
    if [ -f "/run/hbadvm/$name.failed" ]; then
        status=fail
    elif [ -f "/run/hbadvm/$name.xfailed" ]; then
        status=xfail
    else
        status=pass
    fi
    vm_line "END $name $status $(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", b - a }')"
    [ "$status" != fail ]
}


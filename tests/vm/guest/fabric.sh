# The fabric lab, for the fabric-* scenarios (busybox ash, sourced after lib.sh): FCoE
# ports in Fabric mode with the lab's FCoE Forwarder (hbad-lab-fcf, lab/fcf) between
# them, an LIO tcm_fc target with one ACL per vHBA WWPN, udevd with hbad's rule, and
# `hbad run` with a policy of two vHBAs. Each piece is made once per boot, by whichever
# fabric scenario comes first, and left running for the next; so each scenario can
# also run alone (`--scenarios fabric-zone`).
#
# Fabric A: FCF MAC 02:fc:f0:00:00:0a (fabric name 0x100002fcf000000a) between
#   fai (initiator ENode, 02:00:00:00:01:0b, WWPN 0x200002000000010b) and
#   fat (target ENode,    02:00:00:00:01:0a, WWPN 0x200002000000010a);
#   its own ends are xai and xat. Zones: vm-a = {vHBA vm-a, target}, vm-b likewise;
#   a second target, fas (02:00:00:00:01:0c, WWPN 0x200002000000010c, FCF end xas),
#   in no zone until fabric-zone adds it to vm-a's.
# Fabric B (fabric-by-fabric): FCF 02:fc:f0:00:00:0b, fbi/fbt, xbi/xbt.

FAB_ENV=/run/hbadvm/fabric.env
FAB_A=0x100002fcf000000a
FAB_B=0x100002fcf000000b
FA_INI_WWPN=0x200002000000010b
FA_TGT_WWPN=0x200002000000010a
FA_TGT_CFS=20:00:02:00:00:00:01:0a
VM_A_WWPN=0x5001a4a000000a01
VM_A_WWNN=0x5001a4a000000a00
VM_B_WWPN=0x5001a4a000000b01
VM_B_WWNN=0x5001a4a000000b00
VM_A_CFS=50:01:a4:a0:00:00:0a:01
VM_B_CFS=50:01:a4:a0:00:00:0b:01
FA_TPG=/sys/kernel/config/target/fc/$FA_TGT_CFS/tpgt_1
FA_TGT2_WWPN=0x200002000000010c
FA_TGT2_CFS=20:00:02:00:00:00:01:0c
FA_TPG2=/sys/kernel/config/target/fc/$FA_TGT2_CFS/tpgt_1
FAB_POLICY=/vm/policy/fabric.toml
FAB_STATUS=/run/hbad/fabric-status.json
FAB_LOG=/tmp/fabric-agent.log
# The FCF's keep-alive period: an ENode declares the FCF lost after 2.5 periods
# without an advertisement, so link loss shows within 5 s.
FAB_FKA_MS=2000

since() { awk -v a="$1" -v b="$(vm_uptime)" 'BEGIN { printf "%.2f", b - a }'; }

# A veth pair: ENode end ENODE (with MAC), FCF end FCFEND. busybox's ip names the peer
# veth0 whatever it is asked.
fab_veth() { # enode fcfend mac
    ip link add "$1" type veth peer name "$2" || return 1
    if [ -e /sys/class/net/veth0 ] && [ ! -e "/sys/class/net/$2" ]; then
        ip link set veth0 name "$2" || return 1
    fi
    ip link set "$1" address "$3" && ip link set "$1" mtu 9000 && ip link set "$2" mtu 9000 &&
        ip link set "$1" up && ip link set "$2" up
}

fcf_sock() { echo "/run/hbadvm/fcf-$1.sock"; }
# Starts an FCF serving the given links; its log is /tmp/fcf-NAME.log.
fcf_start() { # name mac links...
    local name="$1" mac="$2"
    shift 2
    hbad-lab-fcf serve --mac "$mac" --fka-ms $FAB_FKA_MS --control "$(fcf_sock $name)" \
        --init "/tmp/fcf-$name.init" "$@" >"/tmp/fcf-$name.log" 2>&1 &
    echo $! >"/run/hbadvm/fcf-$name.pid"
    wait_for 10 test -S "$(fcf_sock $name)"
}
# One control request; prints the answer, fails on an error answer.
fcf_ctl() { # name request...
    local name="$1"
    shift
    hbad-lab-fcf ctl "$(fcf_sock $name)" "$@"
}

ctlr_of() { basename "$(ls -d /sys/class/net/$1/ctlr_* 2>/dev/null | head -n1)"; }
host_online() { [ "$(attr /sys/class/fc_host/$1/port_state)" = Online ]; }

# An LIO ramdisk backstore with a serial (udev's by-id links need one).
lio_backstore() { # dir serial
    mkdir -p "$1" && echo rd_pages=1024 >"$1/control" && echo "$2" >"$1/wwn/vpd_unit_serial" &&
        echo 1 >"$1/enable"
}
# Maps TPG lun_N (made from the backstore if new) as LUN M of an initiator's ACL.
lio_map() { # tpg tpg_lun backstore acl_wwpn_cfs mapped_lun
    local tpg="$1" lun="$2" bs="$3" acl="$1/acls/$4"
    if [ ! -d "$tpg/lun/lun_$lun" ]; then
        mkdir -p "$tpg/lun/lun_$lun" && ln -s "$bs" "$tpg/lun/lun_$lun/$(basename $bs)" || return 1
    fi
    mkdir -p "$acl/lun_$5" && ln -s "$tpg/lun/lun_$lun" "$acl/lun_$5/lun_$5"
}

# Fabric A with its target, once per boot. Leaves its facts in $FAB_ENV.
fabric_lab() {
    [ -f $FAB_ENV ] && { . $FAB_ENV; return 0; }
    local t0 m
    for m in veth fcoe tcm_fc target_core_mod sd_mod sg; do
        modprobe "$m" || { fail "modprobe $m"; return 1; }
    done
    grep -q configfs /proc/mounts || mount -t configfs none /sys/kernel/config || return 1
    fab_veth fai xai 02:00:00:00:01:0b && fab_veth fat xat 02:00:00:00:01:0a &&
        fab_veth fas xas 02:00:00:00:01:0c || { fail "veth pairs fai/xai, fat/xat, fas/xas"; return 1; }
    cat >/tmp/fcf-a.init <<ZONES
zone vm-a $VM_A_WWPN $FA_TGT_WWPN
zone vm-b $VM_B_WWPN $FA_TGT_WWPN
ZONES
    fcf_start a 02:fc:f0:00:00:0a xai xat xas || { fail "FCF a did not start: $(tail -c 300 /tmp/fcf-a.log)"; return 1; }
    ok "FCF of fabric $FAB_A serving xai xat xas (zones vm-a, vm-b)"

    echo fat >/sys/bus/fcoe/ctlr_create && echo fas >/sys/bus/fcoe/ctlr_create &&
        echo fai >/sys/bus/fcoe/ctlr_create || { fail "fcoe ctlr_create fat/fas/fai"; return 1; }
    FA_TGT_HOST="$(fc_host_by_wwpn $FA_TGT_WWPN)" && FA_INI_HOST="$(fc_host_by_wwpn $FA_INI_WWPN)" &&
        FA_TGT2_HOST="$(fc_host_by_wwpn $FA_TGT2_WWPN)" || { fail "no fc_host for the fabric ports"; return 1; }
    local tc ic sc
    tc="$(ctlr_of fat)"
    sc="$(ctlr_of fas)"
    ic="$(ctlr_of fai)"
    check_eq "$ic mode (the controller's default)" "$(attr /sys/bus/fcoe/devices/$ic/mode)" Fabric

    # LIO before the controllers are enabled: LUN 0 for vm-a, LUN 0 (another disk)
    # for vm-b, each in its own ACL.
    local core=/sys/kernel/config/target/core
    lio_backstore $core/rd_mcp_20/fa0 hbadvm-fa0 && lio_backstore $core/rd_mcp_21/fb0 hbadvm-fb0 ||
        { fail "LIO backstores fa0/fb0"; return 1; }
    lio_map $FA_TPG 0 $core/rd_mcp_20/fa0 $VM_A_CFS 0 && lio_map $FA_TPG 1 $core/rd_mcp_21/fb0 $VM_B_CFS 0 ||
        { fail "LIO ACLs for vm-a/vm-b"; return 1; }
    ok "LIO: fc/$FA_TGT_CFS lun_0 (hbadvm-fa0) for $VM_A_CFS, lun_1 (hbadvm-fb0) for $VM_B_CFS"
    lio_backstore $core/rd_mcp_23/fc0 hbadvm-fc0 && lio_map $FA_TPG2 0 $core/rd_mcp_23/fc0 $VM_A_CFS 0 ||
        { fail "LIO on the second target"; return 1; }
    ok "LIO: fc/$FA_TGT2_CFS lun_0 (hbadvm-fc0) for $VM_A_CFS"

    t0="$(vm_uptime)"
    echo 1 >/sys/bus/fcoe/devices/$tc/enabled && echo 1 >/sys/bus/fcoe/devices/$sc/enabled &&
        echo 1 >/sys/bus/fcoe/devices/$ic/enabled || { fail "enable $tc/$sc/$ic"; return 1; }
    both_online() { host_online $FA_TGT_HOST && host_online $FA_TGT2_HOST && host_online $FA_INI_HOST; }
    wait_for 30 both_online || {
        fail "fabric logins: $FA_TGT_HOST $(attr /sys/class/fc_host/$FA_TGT_HOST/port_state), $FA_INI_HOST $(attr /sys/class/fc_host/$FA_INI_HOST/port_state) after 30 s; FCF: $(tail -n 5 /tmp/fcf-a.log | tr '\n' ' ')"
        return 1
    }
    ok "FLOGI: $FA_TGT_HOST, $FA_TGT2_HOST and $FA_INI_HOST Online $(since $t0) s after enabling"
    check_eq "$FA_INI_HOST fabric_name" "$(attr /sys/class/fc_host/$FA_INI_HOST/fabric_name)" $FAB_A
    info "$FA_INI_HOST port_type '$(attr /sys/class/fc_host/$FA_INI_HOST/port_type)' port_id $(attr /sys/class/fc_host/$FA_INI_HOST/port_id)"

    # udevd with hbad's rule, for the by-vhba links.
    if ! udevadm control --ping 2>/dev/null; then
        mkdir -p /run/udev
        /lib/systemd/systemd-udevd --daemon 2>/tmp/udevd.err || { fail "systemd-udevd: $(head -c 200 /tmp/udevd.err)"; return 1; }
        wait_for 10 test -S /run/udev/control || { fail "udevd made no control socket"; return 1; }
        udevadm trigger --type=subsystems --action=add
        udevadm trigger --type=devices --action=add
        udevadm settle -t 60
    fi
    cat >$FAB_ENV <<ENV
FA_TGT_HOST=$FA_TGT_HOST
FA_INI_HOST=$FA_INI_HOST
FA_TGT2_HOST=$FA_TGT2_HOST
ENV
}

# `hbad run` with the fabric policy, once per boot (the scenarios after fabric-login
# watch what it does).
fabric_agent() {
    local pid
    pid="$(cat /run/hbadvm/fabric-agent.pid 2>/dev/null)"
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && return 0
    mkdir -p /run/hbad
    hbad --policy $FAB_POLICY run --no-journal --udev on --status-file $FAB_STATUS >/tmp/fabric-agent.out 2>$FAB_LOG &
    echo $! >/run/hbadvm/fabric-agent.pid
    fab_ready() { grep -q '"ready": true' $FAB_STATUS 2>/dev/null; }
    wait_for 30 fab_ready || { fail "hbad run (fabric policy) not ready: $(tail -c 300 $FAB_LOG | tr '\n' ' ')"; return 1; }
}

vport_of() { # wwpn -> vport-H:C-N
    local v
    for v in /sys/class/fc_vports/vport-*; do
        [ -e "$v" ] && [ "$(attr $v/port_name)" = "$1" ] && { basename $v; return 0; }
    done
    return 1
}
vport_active() { [ "$(attr /sys/class/fc_vports/$(vport_of $1)/vport_state)" = Active ]; }
# The remote port on host H with this WWPN that is an FCP target and Online.
target_rport_of() { # host wwpn
    local r
    for r in /sys/class/fc_remote_ports/rport-${1#host}:*; do
        [ -e "$r" ] || continue
        [ "$(attr $r/port_name)" = "$2" ] && [ "$(attr $r/port_state)" = Online ] &&
            attr $r/roles | grep -q "FCP Target" && { basename $r; return 0; }
    done
    return 1
}
# The LUNs (H:C:T:L) under host H, sorted.
luns_of_host() { ls -d /sys/bus/scsi/devices/${1#host}:* 2>/dev/null | xargs -n1 basename 2>/dev/null | sort; }
disk_of() { ls /sys/bus/scsi/devices/$1/block 2>/dev/null; }
# The unit serial (VPD page 0x80) of a LUN: the page's 4-byte header, then the serial.
serial_of() { tail -c +5 /sys/bus/scsi/devices/$1/vpd_pg80 2>/dev/null | tr -d '\0 '; }
# hbad's LUNs for a host (by WWPN), as sorted H:C:T:L.
hbad_luns_of() { # name wwpn
    run_hbad "$1" luns --json "$2" >/dev/null
    sed -n 's/.*"hctl": *"\([0-9:]*\)".*/\1/p' "/tmp/hbad-$1.out" | sort
}

# Both vHBAs logged in with their LUN 0 disk: where fabric-login leaves them. Sets
# HA/HB (hosts) and DA/DB (disks).
fabric_vhbas_ready() {
    fabric_lab && fabric_agent || return 1
    both_disks() {
        HA="$(fc_host_by_wwpn $VM_A_WWPN)" && HB="$(fc_host_by_wwpn $VM_B_WWPN)" &&
            DA="$(disk_of ${HA#host}:0:0:0)" && DB="$(disk_of ${HB#host}:0:0:0)" &&
            [ -n "$DA" ] && [ -n "$DB" ]
    }
    wait_for 40 both_disks || { fail "vm-a/vm-b not logged in with their LUN 0 (hosts '$HA' '$HB')"; return 1; }
    both_disks
}
# Every readable attribute of the FC devices of the given hosts (hostN): their fc_host,
# the vports under them and their remote ports, as `class/name attr=value` lines, for
# the simulator to be compared with.
fab_snapshot() { # hosts...
    local h d a v
    for h in "$@"; do
        for d in /sys/class/fc_host/$h /sys/class/fc_vports/vport-${h#host}:* \
            /sys/class/fc_remote_ports/rport-${h#host}:*; do
            [ -d "$d" ] || continue
            for a in "$d"/*; do
                [ -f "$a" ] && [ -r "$a" ] || continue
                v="$(head -c 200 "$a" 2>/dev/null | head -n1)" || continue
                echo "$(basename "$(dirname "$a")")/$(basename "$a")=$v"
            done
        done
    done
}

# The agent's log lines since a mark (a line count taken with log_mark).
log_mark() { wc -l <$FAB_LOG; }
log_since() { tail -n +$(($1 + 1)) $FAB_LOG; }
scans_since() { log_since "$1" | grep ' scanned host' | sed 's/ hbad_host=.*//; s/.*INFO //'; }

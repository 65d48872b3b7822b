# lab: builds the storage the other scenarios look at, following VMLAB.md, and checks
# that the kernel shows it: FCoE over a veth pair in VN2VN mode with an LIO tcm_fc
# target exposing one LUN to the initiator port, and scsi_debug with 2 hosts x 2
# targets x 4 LUNs. Every step that fails ends the scenario: without the lab nothing
# else means anything.

# Fixed MACs make the WWNs predictable: port_name = 0x2000 + MAC, node_name = 0x1000 + MAC.
TGT_MAC=02:00:00:00:00:0a
INI_MAC=02:00:00:00:00:0b
TGT_WWPN=0x200002000000000a
INI_WWPN=0x200002000000000b
TGT_WWNN=0x100002000000000a
INI_WWNN=0x100002000000000b
# As LIO's configfs names FC ports: lower-case colon-separated bytes.
TGT_CFS=20:00:02:00:00:00:00:0a
INI_CFS=20:00:02:00:00:00:00:0b
LUN_SERIAL=hbadvm-rd0

for m in veth fcoe tcm_fc target_core_file target_core_iblock sd_mod sg; do
    modprobe "$m" || die "modprobe $m"
done
ok "modules loaded: veth fcoe tcm_fc target_core_file target_core_iblock sd_mod sg"

# --- FCoE over a veth pair ----------------------------------------------------------
ip link add vt type veth peer name vi || die "ip link add vt type veth peer name vi"
# busybox's ip names the peer veth0 whatever it is asked.
if [ -e /sys/class/net/veth0 ] && [ ! -e /sys/class/net/vi ]; then
    info "busybox named the veth peer veth0; renaming it vi"
    ip link set veth0 name vi || die "rename veth0 to vi"
fi
for pair in vt:$TGT_MAC vi:$INI_MAC; do
    dev=${pair%%:*}
    mac=${pair#*:}
    ip link set "$dev" address "$mac" || die "set $dev address $mac"
    ip link set "$dev" mtu 9000 || die "set $dev mtu 9000"
    ip link set "$dev" up || die "set $dev up"
done
ok "veth pair vt/vi up with MACs $TGT_MAC/$INI_MAC"

echo vt >/sys/bus/fcoe/ctlr_create || die "fcoe ctlr_create vt"
echo vi >/sys/bus/fcoe/ctlr_create || die "fcoe ctlr_create vi"
TGT_HOST="$(fc_host_by_wwpn $TGT_WWPN)" || die "no fc_host with port_name $TGT_WWPN after ctlr_create vt"
INI_HOST="$(fc_host_by_wwpn $INI_WWPN)" || die "no fc_host with port_name $INI_WWPN after ctlr_create vi"
ok "FCoE hosts: target side $TGT_HOST ($TGT_WWPN), initiator side $INI_HOST ($INI_WWPN)"
check_eq "$INI_HOST node_name" "$(attr /sys/class/fc_host/$INI_HOST/node_name)" "$INI_WWNN"
check_eq "$TGT_HOST node_name" "$(attr /sys/class/fc_host/$TGT_HOST/node_name)" "$TGT_WWNN"
check_eq "$INI_HOST max_npiv_vports" "$(attr /sys/class/fc_host/$INI_HOST/max_npiv_vports)" 65535
check "$INI_HOST has vport_create in fc_host" test -e /sys/class/fc_host/$INI_HOST/vport_create
check "$INI_HOST has vport_delete in fc_host" test -e /sys/class/fc_host/$INI_HOST/vport_delete

# The controllers: ctlr_N under the net device, found through the device tree.
ctlr_of() { basename "$(ls -d /sys/class/net/$1/ctlr_* 2>/dev/null | head -n1)"; }
TGT_CTLR="$(ctlr_of vt)"
INI_CTLR="$(ctlr_of vi)"
[ -n "$TGT_CTLR" ] && [ -n "$INI_CTLR" ] || die "no fcoe controllers under vt/vi"
for c in $TGT_CTLR $INI_CTLR; do
    info "$c: mode $(attr /sys/bus/fcoe/devices/$c/mode), enabled $(attr /sys/bus/fcoe/devices/$c/enabled)"
    check_eq "$c starts in mode" "$(attr /sys/bus/fcoe/devices/$c/mode)" Fabric
    echo VN2VN >/sys/bus/fcoe/devices/$c/mode || die "set $c mode VN2VN"
    check_eq "$c mode" "$(attr /sys/bus/fcoe/devices/$c/mode)" VN2VN
done

# --- LIO target on vt, configured before the controllers are enabled ---------------
grep -q configfs /proc/mounts || mount -t configfs none /sys/kernel/config || die "mount configfs"
T=/sys/kernel/config/target
[ -d $T ] || die "$T missing: target_core_mod not loaded?"
RD=$T/core/rd_mcp_0/rd0
mkdir -p $RD || die "mkdir rd_mcp backstore"
echo rd_pages=8192 >$RD/control || die "rd0 control"
echo $LUN_SERIAL >$RD/wwn/vpd_unit_serial || die "rd0 vpd_unit_serial"
echo 1 >$RD/enable || die "rd0 enable"
TPG=$T/fc/$TGT_CFS/tpgt_1
mkdir -p $TPG/lun/lun_0 || die "mkdir tcm_fc port $TPG/lun/lun_0"
ln -s $RD $TPG/lun/lun_0/rd0 || die "map rd0 into lun_0"
mkdir -p $TPG/acls/$INI_CFS/lun_0 || die "mkdir ACL for $INI_CFS"
# configfs resolves a symlink's target from the caller's working directory, not from
# the link's own directory: an absolute target works from anywhere.
ln -s $TPG/lun/lun_0 $TPG/acls/$INI_CFS/lun_0/lun_0 || die "map lun_0 into the ACL"
ok "LIO: rd_mcp rd0 (serial $LUN_SERIAL) as lun_0 of fc/$TGT_CFS/tpgt_1, ACL for $INI_CFS"

t0="$(vm_uptime)"
echo 1 >/sys/bus/fcoe/devices/$TGT_CTLR/enabled || die "enable $TGT_CTLR"
echo 1 >/sys/bus/fcoe/devices/$INI_CTLR/enabled || die "enable $INI_CTLR"
if (echo Fabric >/sys/bus/fcoe/devices/$INI_CTLR/mode) 2>/tmp/mode.err; then
    fail "changing the mode of an enabled controller succeeded (VMLAB.md says EBUSY)"
else
    check "mode change once enabled fails with EBUSY" grep -q "busy" /tmp/mode.err
fi

online() { [ "$(attr /sys/class/fc_host/$INI_HOST/port_state)" = Online ]; }
wait_for 20 online || die "$INI_HOST port_state $(attr /sys/class/fc_host/$INI_HOST/port_state) after 20 s, want Online"
target_rport() {
    for r in /sys/class/fc_remote_ports/rport-${INI_HOST#host}:*; do
        # The target side is an FCoE initiator port too: the kernel shows
        # "FCP Target, FCP Initiator" (VMLAB.md says "FCP Target").
        [ "$(attr $r/port_name)" = $TGT_WWPN ] && attr $r/roles | grep -q "FCP Target" && return 0
    done
    return 1
}
H=${INI_HOST#host}
show_rports() {
    for r in /sys/class/fc_remote_ports/rport-$H:*; do
        [ -e "$r" ] || continue
        info "$(basename $r): port_name $(attr $r/port_name) roles '$(attr $r/roles)' port_state $(attr $r/port_state) scsi_target_id $(attr $r/scsi_target_id)"
    done
}
if ! wait_for 20 target_rport; then
    show_rports
    die "no rport with port_name $TGT_WWPN and role 'FCP Target' on $INI_HOST"
fi
wait_for 20 test -d /sys/bus/scsi/devices/$H:0:0:0/block || die "no disk on LUN $H:0:0:0"
t1="$(vm_uptime)"
ok "$INI_HOST Online with a target rport and LUN $H:0:0:0, $(awk -v a=$t0 -v b=$t1 'BEGIN{printf "%.2f", b-a}') s after enabling"
show_rports
RPORT="$(basename "$(for r in /sys/class/fc_remote_ports/rport-$H:*; do [ "$(attr $r/port_name)" = $TGT_WWPN ] && echo $r; done | head -n1)")"
check_eq "$RPORT scsi_target_id" "$(attr /sys/class/fc_remote_ports/$RPORT/scsi_target_id)" 0
check_eq "$RPORT port_state" "$(attr /sys/class/fc_remote_ports/$RPORT/port_state)" Online
check_eq "LUN $H:0:0:0 vendor" "$(attr /sys/bus/scsi/devices/$H:0:0:0/vendor)" LIO-ORG
DISK="$(ls /sys/bus/scsi/devices/$H:0:0:0/block)"
check "/dev/$DISK is a block device" test -b /dev/$DISK
check "/dev/$DISK reads" dd if=/dev/$DISK of=/dev/null bs=4096 count=1
info "$INI_HOST fabric_name $(attr /sys/class/fc_host/$INI_HOST/fabric_name) port_type '$(attr /sys/class/fc_host/$INI_HOST/port_type)' port_id $(attr /sys/class/fc_host/$INI_HOST/port_id) speed '$(attr /sys/class/fc_host/$INI_HOST/speed)'"
info "$TGT_HOST port_state $(attr /sys/class/fc_host/$TGT_HOST/port_state); its rports: $(ls /sys/class/fc_remote_ports | grep "^rport-${TGT_HOST#host}:" | tr '\n' ' ')"

# --- scsi_debug ---------------------------------------------------------------------
before="$(ls /sys/class/scsi_host | wc -l)"
modprobe scsi_debug add_host=2 num_tgts=2 max_luns=4 || die "modprobe scsi_debug"
sd_hosts() { for h in /sys/class/scsi_host/host*; do [ "$(attr $h/proc_name)" = scsi_debug ] && basename $h; done; }
sd_luns() { for h in $(sd_hosts); do ls -d /sys/bus/scsi/devices/${h#host}:* 2>/dev/null; done | wc -l; }
sd_disks() { for h in $(sd_hosts); do ls -d /sys/bus/scsi/devices/${h#host}:*/block/* 2>/dev/null; done | wc -l; }
check_eq "scsi_debug hosts" "$(sd_hosts | wc -l)" 2
# A function, so each poll counts again ("$(...)" as an argument is expanded once).
sd_disks_at_least() { [ "$(sd_disks)" -ge "$1" ]; }
wait_for 30 sd_disks_at_least 16 || true
check_eq "scsi_debug LUNs (2 hosts x 2 targets x 4)" "$(sd_luns)" 16
check_eq "scsi_debug disks" "$(sd_disks)" 16
SD_HOSTS="$(sd_hosts | tr '\n' ' ')"

cat >/run/hbadvm/lab.env <<ENV
TGT_HOST=$TGT_HOST
INI_HOST=$INI_HOST
TGT_WWPN=$TGT_WWPN
INI_WWPN=$INI_WWPN
TGT_WWNN=$TGT_WWNN
INI_WWNN=$INI_WWNN
RPORT=$RPORT
INI_DISK=$DISK
SD_HOSTS="$SD_HOSTS"
ENV
ok "lab ready: FCoE initiator $INI_HOST, target $TGT_HOST, scsi_debug $SD_HOSTS"

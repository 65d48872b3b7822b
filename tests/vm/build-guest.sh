#!/usr/bin/env bash
# Builds the guest for hbad's real-kernel tier: Debian's current amd64 kernel and an
# initramfs holding busybox, the SCSI/FC/FCoE/LIO modules, the hbad binary under test
# and the scenario scripts. See /work/shared/design/VMLAB.md (and tests/vm/README.md).
#
#   tests/vm/build-guest.sh --hbad target/release/hbad [--fcf target/release/hbad-lab-fcf] --out DIR
#
# Writes DIR/vmlinuz and DIR/initrd.gz and prints nothing else on stdout but their
# directory. Downloads (the kernel and udev .debs) are cached under $HBAD_VM_CACHE
# (default ${XDG_CACHE_HOME:-~/.cache}/hbad-vm) and reused across runs.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
hbad=""
fcf=""
out=""
while [ $# -gt 0 ]; do
    case "$1" in
        --hbad) hbad="$2"; shift 2 ;;
        --fcf) fcf="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        *) echo "build-guest: unknown argument $1" >&2; exit 2 ;;
    esac
done
[ -n "$hbad" ] && [ -n "$out" ] || { echo "usage: $0 --hbad PATH --out DIR" >&2; exit 2; }
[ -x "$hbad" ] || { echo "build-guest: $hbad is not an executable (build hbad first)" >&2; exit 2; }
hbad="$(cd "$(dirname "$hbad")" && pwd)/$(basename "$hbad")"
# The lab's FCoE Forwarder (lab/fcf): the fabric-* scenarios need it, the others not.
if [ -n "$fcf" ]; then
    [ -x "$fcf" ] || { echo "build-guest: $fcf is not an executable (cargo build -p hbad-lab-fcf)" >&2; exit 2; }
    fcf="$(cd "$(dirname "$fcf")" && pwd)/$(basename "$fcf")"
fi

cache="${HBAD_VM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hbad-vm}"
mkdir -p "$cache/debs" "$out"
out="$(cd "$out" && pwd)"
log() { echo "build-guest: $*" >&2; }

# --- Host tools -------------------------------------------------------------------
# qemu without recommends stays small; busybox-static gives a guest userland with no
# library to copy; kmod's depmod builds the guest's modules.dep.
missing=()
command -v qemu-system-x86_64 >/dev/null || missing+=(qemu-system-x86)
[ -x /bin/busybox ] && /bin/busybox --list >/dev/null 2>&1 && ! ldd /bin/busybox >/dev/null 2>&1 \
    || missing+=(busybox-static)
command -v cpio >/dev/null || missing+=(cpio)
# gcc and libc.a build the guest's small static tools (guest/tools/*.c).
command -v gcc >/dev/null || missing+=(gcc)
[ -e /usr/lib/x86_64-linux-gnu/libc.a ] || missing+=(libc6-dev)
command -v depmod >/dev/null || [ -x /sbin/depmod ] || missing+=(kmod)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        log "missing ${missing[*]}; install them: apt-get install -y --no-install-recommends ${missing[*]}"
        exit 2
    fi
    log "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi
depmod="$(command -v depmod || echo /sbin/depmod)"

# --- Kernel -------------------------------------------------------------------------
# Resolved at run time: linux-image-amd64 is a metapackage that depends on the current
# versioned image (linux-image-6.1.0-NN-amd64 on Debian 12).
kpkg="$(apt-cache depends linux-image-amd64 2>/dev/null |
    awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ { print $2; exit }')"
[ -n "$kpkg" ] || { log "cannot resolve linux-image-amd64's kernel (apt-get update?)"; exit 2; }

fetch_deb() { # package -> path of its .deb in the cache
    local pkg="$1" deb
    deb="$(ls "$cache/debs/${pkg}_"*.deb 2>/dev/null | head -n1 || true)"
    if [ -z "$deb" ]; then
        log "downloading $pkg"
        (cd "$cache/debs" && apt-get download -q "$pkg" >&2)
        deb="$(ls "$cache/debs/${pkg}_"*.deb | head -n1)"
    fi
    echo "$deb"
}

kdeb="$(fetch_deb "$kpkg")"
kroot="$cache/kernel/$(basename "$kdeb" .deb)"
if [ ! -e "$kroot/.unpacked" ]; then
    log "unpacking $(basename "$kdeb")"
    rm -rf "$kroot"
    mkdir -p "$kroot"
    dpkg-deb -x "$kdeb" "$kroot"
    kver="$(ls "$kroot/lib/modules" | head -n1)"
    # The package ships no modules.dep (its postinst runs depmod); make one here.
    "$depmod" -b "$kroot" "$kver"
    touch "$kroot/.unpacked"
fi
kver="$(ls "$kroot/lib/modules" | head -n1)"
[ -n "$kver" ] && [ -f "$kroot/boot/vmlinuz-$kver" ] || { log "no kernel in $kdeb"; exit 2; }

# udev (systemd-udevd 252) for the scenario with udev's stable links and event stream.
udeb="$(fetch_deb udev)"
uroot="$cache/udev/$(basename "$udeb" .deb)"
if [ ! -e "$uroot/.unpacked" ]; then
    rm -rf "$uroot"
    mkdir -p "$uroot"
    dpkg-deb -x "$udeb" "$uroot"
    touch "$uroot/.unpacked"
fi

# --- Initramfs tree -----------------------------------------------------------------
stage="$out/initramfs"
rm -rf "$stage"
mkdir -p "$stage"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,run,tmp,etc,lib64,vm,root}

cp /bin/busybox "$stage/bin/busybox"
# Applet links, made relative so they are right inside the guest.
/bin/busybox --list-full | while read -r applet; do
    [ -e "$stage/$applet" ] && continue
    mkdir -p "$stage/$(dirname "$applet")"
    rel="$(dirname "$applet" | sed -e 's#[^/]\+#..#g')"
    ln -s "$rel/bin/busybox" "$stage/$applet"
done
# The kernel's request_module runs /sbin/modprobe: busybox's handles modules.dep.
ln -sf ../bin/busybox "$stage/sbin/modprobe"

# Modules: the ones the lab uses and every module they depend on, from modules.dep.
# ext4 (which mounts ext2; it needs crc32c at mount) and loop: lun-gone's file system
# mounted in another mount namespace and its loop device on a disk.
modules=(scsi_debug sd_mod sg veth fcoe libfcoe libfc scsi_transport_fc tcm_fc
    target_core_mod target_core_file target_core_iblock ext4 crc32c_generic loop)
mdir="$kroot/lib/modules/$kver"
declare -A want=()
resolve() { # module name -> marks its .ko path and its dependencies
    local name="$1" line path
    line="$(grep -E "(^|/)${name//_/[_-]}\.ko(\.[a-z]+)?:" "$mdir/modules.dep" | head -n1 || true)"
    if [ -z "$line" ]; then
        grep -qE "/${name//_/[_-]}\.ko" "$mdir/modules.builtin" && return 0
        log "module $name is neither a module nor built into $kver"
        return 1
    fi
    path="${line%%:*}"
    [ -n "${want[$path]:-}" ] && return 0
    want[$path]=1
    for dep in ${line#*:}; do
        local base
        base="$(basename "$dep")"
        resolve "${base%%.ko*}"
    done
}
for m in "${modules[@]}"; do resolve "$m" || exit 2; done
gmdir="$stage/lib/modules/$kver"
mkdir -p "$gmdir"
for path in "${!want[@]}"; do
    mkdir -p "$gmdir/$(dirname "$path")"
    case "$path" in
        # busybox modprobe loads plain .ko; newer Debian kernels compress them.
        *.ko.xz) xz -dc "$mdir/$path" >"$gmdir/${path%.xz}" ;;
        *.ko.zst) zstd -qdc "$mdir/$path" >"$gmdir/${path%.zst}" ;;
        *) cp "$mdir/$path" "$gmdir/$path" ;;
    esac
done
for f in modules.order modules.builtin modules.builtin.modinfo; do
    [ -f "$mdir/$f" ] && cp "$mdir/$f" "$gmdir/"
done
"$depmod" -b "$stage" "$kver"

copy_libs() { # binary: the libraries ldd names, from this (Debian) host
    ldd "$1" | awk '/=>/ { print $3 } !/=>/ && $1 ~ /^\// { print $1 }' | while read -r lib; do
        [ -n "$lib" ] && [ -e "$lib" ] || continue
        [ -e "$stage$lib" ] && continue
        mkdir -p "$stage$(dirname "$lib")"
        cp -L "$lib" "$stage$lib"
    done
}

# hbad and the libraries the dynamic loader will ask for.
cp "$hbad" "$stage/usr/bin/hbad"
strip --strip-debug "$stage/usr/bin/hbad" 2>/dev/null || true
copy_libs "$hbad"
if [ -n "$fcf" ]; then
    cp "$fcf" "$stage/usr/bin/hbad-lab-fcf"
    strip --strip-debug "$stage/usr/bin/hbad-lab-fcf" 2>/dev/null || true
    copy_libs "$fcf"
fi

# Tools the scenarios need that busybox lacks, static: the guest has no libc of its own.
for src in "$here"/guest/tools/*.c; do
    [ -e "$src" ] || continue
    gcc -static -O2 -Wall -Wextra -Werror -o "$stage/usr/bin/$(basename "$src" .c)" "$src" >&2
done

# udev: udevadm (systemd-udevd is a link to it), scsi_id, the stock rules.
mkdir -p "$stage/lib/systemd" "$stage/lib/udev" "$stage/etc/udev/rules.d"
cp "$uroot/bin/udevadm" "$stage/bin/udevadm"
ln -sf ../../bin/udevadm "$stage/lib/systemd/systemd-udevd"
cp "$uroot/lib/udev/scsi_id" "$stage/lib/udev/scsi_id"
cp -r "$uroot/lib/udev/rules.d" "$stage/lib/udev/rules.d"
copy_libs "$uroot/bin/udevadm"
copy_libs "$uroot/lib/udev/scsi_id"
cp "$here/guest/udev/"*.rules "$stage/etc/udev/rules.d/"
# hbad's own rule, installed as on a host (it runs /usr/bin/hbad udev-id).
repo="$(cd "$here/../.." && pwd)"
for rule in "$repo"/udev-rules/*.rules; do
    [ -e "$rule" ] && cp "$rule" "$stage/lib/udev/rules.d/"
done
if [ ! -e "$stage/lib64/ld-linux-x86-64.so.2" ]; then
    cp -L /lib64/ld-linux-x86-64.so.2 "$stage/lib64/"
fi

# The guest's own files: /init, helpers, scenarios, policies.
cp "$here/guest/init" "$stage/init"
chmod 755 "$stage/init"
cp -r "$here/guest/." "$stage/vm/"
rm -rf "$stage/vm/init" "$stage/vm/udev" "$stage/vm/tools"
echo "root:x:0:0:root:/root:/bin/sh" >"$stage/etc/passwd"
# Every group udev's rules name, so it does not warn about unknown ones.
{
    echo "root:x:0:"
    grep -oh 'GROUP="[a-z_-]*"' "$uroot/lib/udev/rules.d/"*.rules | sed 's/GROUP="\(.*\)"/\1/' |
        sort -u | awk '{ printf "%s:x:%d:\n", $1, 100 + NR }'
} >"$stage/etc/group"
echo "hbad-vm" >"$stage/etc/hostname"

(cd "$stage" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --quiet) |
    gzip -1 >"$out/initrd.gz"
cp "$kroot/boot/vmlinuz-$kver" "$out/vmlinuz"
echo "$kver" >"$out/kernel-version"
log "guest: kernel $kver ($kpkg), initramfs $(du -h "$out/initrd.gz" | cut -f1)"
echo "$out"

#!/usr/bin/env bash
# Installs the Debian packages hbad's build and tests need, when they are missing.
# Used by `make` (demo, test) and by CI; a no-op once they are there.
#   pkg-config, libudev-dev  the udev crate links libudev
#   iproute2, util-linux     netlink tests make veth pairs in a private network namespace
#   libvirt-clients, libxml2-utils  virt-xml-validate (and the xmllint it runs) check hbad's libvirt XML
set -euo pipefail

need=()
for pkg in pkg-config libudev-dev iproute2 util-linux libvirt-clients libxml2-utils; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    echo "hbad needs these Debian packages: ${need[*]}" >&2
    echo "install them with: sudo apt-get install -y --no-install-recommends ${need[*]}" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}"

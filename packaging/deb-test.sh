#!/usr/bin/env bash
# Builds hbad's .deb with cargo-deb and installs it on this machine, as CI does on
# its fresh one: the binary, unit, rules, catalog and man pages must land where
# Debian keeps them, the installed unit must pass systemd-analyze verify, and the
# installed hbad must accept the installed policy. Removes the package afterwards.
# Root only (it runs dpkg).
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_DEB_VERSION=3.8.0
if ! cargo deb --version 2>/dev/null | grep -q "$CARGO_DEB_VERSION"; then
    cargo install cargo-deb --locked --version "$CARGO_DEB_VERSION"
fi
make deb
deb=$(ls -t target/debian/hbad_*_amd64.deb | head -n 1)

passed=0
failed=0
check() {
    local what=$1
    shift
    if "$@" >/dev/null 2>&1; then
        echo "ok    $what"
        passed=$((passed + 1))
    else
        echo "FAIL  $what"
        failed=$((failed + 1))
    fi
}

# A machine that had hbad installed by hand keeps its policy: start from none.
dpkg --purge hbad >/dev/null 2>&1 || true
check "dpkg -i $(basename "$deb")" dpkg -i "$deb"
for f in /usr/bin/hbad \
    /usr/lib/systemd/system/hbad.service \
    /usr/lib/udev/rules.d/60-hbad-vhba.rules \
    /usr/lib/systemd/catalog/hbad.catalog \
    /usr/lib/tmpfiles.d/hbad.conf \
    /usr/share/man/man8/hbad.8.gz \
    /usr/share/man/man8/hbad-run.8.gz \
    /usr/share/man/man5/hbad.toml.5.gz \
    /usr/share/bash-completion/completions/hbad \
    /etc/hbad/hbad.toml; do
    check "installed $f" test -e "$f"
done
check "the policy is a conffile" sh -c "dpkg-query -W -f='\${Conffiles}' hbad | grep -q /etc/hbad/hbad.toml"
if command -v systemd-analyze >/dev/null; then
    check "systemd-analyze verify the installed unit" systemd-analyze verify /usr/lib/systemd/system/hbad.service
fi
check "the installed hbad checks the installed policy" /usr/bin/hbad check /etc/hbad/hbad.toml
check "hbad(8) is readable by man" sh -c "zcat /usr/share/man/man8/hbad.8.gz | grep -q '^.TH'"
check "dpkg --purge hbad" dpkg --purge hbad
check "purge removed the binary" test ! -e /usr/bin/hbad
echo "deb-test: $(basename "$deb"), $(stat -c %s "$deb") bytes"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]

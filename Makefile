# hbad — build, test, install.
#
#   make            build the release binary
#   make test       what CI runs: formatting, lints, unit + integration tests
#   make demo       hbad on a simulated host
#   make bench      graph load/apply, whole-daemon, policy-check, hbad-vs-lsscsi and idle-agent numbers
#                   (benches/README.md)
#   make fuzz       every fuzz target for FUZZ_SECONDS each (make test runs a short pass)
#   make vm-test    the real-kernel tier (Debian's kernel in qemu)
#   make install    install as a system package would (then: sudo make install)
#   make deb        a Debian package with cargo-deb

CARGO ?= cargo

.PHONY: all deps build test lint demo bench fuzz vm-test clean install uninstall generated deb deb-test

all: build

# Debian packages the build needs (installed when missing, as root).
deps:
	@scripts/deps.sh

build: deps
	$(CARGO) build --release --locked

# --workspace: the lab's FCoE Forwarder (lab/fcf) is linted and its codecs tested too.
lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --workspace --all-targets -- -D warnings

test: lint
	$(CARGO) test --locked --workspace

demo: deps
	$(CARGO) run --release --locked -- demo

bench:
	$(CARGO) bench --locked --bench graph
	$(CARGO) bench --locked --bench daemon
	$(CARGO) bench --locked --bench policy
	$(CARGO) bench --locked --bench lsscsi
	$(CARGO) bench --locked --bench idle

# The fuzz targets of tests/fuzz/ (make test runs each for a few hundred to a few
# thousand fixed-seed cases), here each for FUZZ_SECONDS with fresh seeds, one at a
# time and niced: the debug build, so integer overflow panics too. Pass a target's
# name in FUZZ to run one (e.g. FUZZ=policy), FUZZ_ARGS=--include-ignored to also
# run the targets that wait on a known bug.
FUZZ_SECONDS ?= 60
FUZZ ?=
FUZZ_ARGS ?=
fuzz:
	HBAD_FUZZ_SECONDS=$(FUZZ_SECONDS) nice -n 19 $(CARGO) test --locked --test fuzz -- \
		--nocapture --test-threads=1 $(FUZZ_ARGS) $(FUZZ)

# Boots Debian's kernel in qemu (TCG) with hbad and checks it against the real SCSI/FC
# stack. Needs root for apt (first run) and ~1 GB RAM; see tests/vm/README.md.
VM_ARGS ?=
vm-test: build
	$(CARGO) build --release --locked -p hbad-lab-fcf
	python3 tests/vm/selftest.py
	python3 tests/vm/run.py --hbad target/release/hbad --fcf target/release/hbad-lab-fcf $(VM_ARGS)

clean:
	$(CARGO) clean

# ---------------------------------------------------------------------------------------
# Install, laid out as Debian and Fedora packages lay hbad out:
#
#   make && sudo make install                      into /usr, policy into /etc/hbad
#   make install DESTDIR=/tmp/root                 staged, for packaging
#   make install HBAD_BIN=target/debug/hbad        another binary (tests; no rebuild)
#
# install never builds: as root, cargo would leave root-owned files in target/. The
# man pages and completions are made by the binary being installed (hbad generate),
# so they always match it and no other tool is needed. The unit and udev rule name
# /usr/bin/hbad; they are rewritten to $(BINDIR) when PREFIX is not /usr.
HBAD_BIN      ?= target/release/hbad
DESTDIR       ?=
PREFIX        ?= /usr
BINDIR        ?= $(PREFIX)/bin
SYSCONFDIR    ?= /etc
LIBDIR_SYS    ?= $(PREFIX)/lib
UNITDIR       ?= $(LIBDIR_SYS)/systemd/system
CATALOGDIR    ?= $(LIBDIR_SYS)/systemd/catalog
UDEVRULESDIR  ?= $(LIBDIR_SYS)/udev/rules.d
TMPFILESDIR   ?= $(LIBDIR_SYS)/tmpfiles.d
DATADIR       ?= $(PREFIX)/share
DOCDIR        ?= $(DATADIR)/doc/hbad
MANDIR        ?= $(DATADIR)/man
BASHCOMPDIR   ?= $(DATADIR)/bash-completion/completions
# Debian's (and Ubuntu's) zsh reads vendor-completions and not site-functions, which
# Fedora, Arch and upstream zsh read: follow the host's distribution unless told.
ZSHCOMPDIR    ?= $(if $(wildcard /etc/debian_version),$(DATADIR)/zsh/vendor-completions,$(DATADIR)/zsh/site-functions)
FISHCOMPDIR   ?= $(DATADIR)/fish/vendor_completions.d
INSTALL       ?= install

# What a file naming /usr/bin/hbad or the doc directory must say after install.
SUBST = sed -e 's|/usr/bin/hbad|$(BINDIR)/hbad|g' -e 's|/usr/share/doc/hbad|$(DOCDIR)|g'

install:
	@test -x "$(HBAD_BIN)" || { echo "$(HBAD_BIN) is missing: run make first, or set HBAD_BIN=" >&2; exit 1; }
	$(INSTALL) -d -m 0755 "$(DESTDIR)$(BINDIR)" "$(DESTDIR)$(UNITDIR)" "$(DESTDIR)$(CATALOGDIR)" \
		"$(DESTDIR)$(UDEVRULESDIR)" "$(DESTDIR)$(TMPFILESDIR)" "$(DESTDIR)$(DOCDIR)/examples" \
		"$(DESTDIR)$(MANDIR)/man5" "$(DESTDIR)$(MANDIR)/man8" \
		"$(DESTDIR)$(BASHCOMPDIR)" "$(DESTDIR)$(ZSHCOMPDIR)" "$(DESTDIR)$(FISHCOMPDIR)" \
		"$(DESTDIR)$(SYSCONFDIR)/hbad/hbad.d" "$(DESTDIR)$(LIBDIR_SYS)/hbad/hbad.d"
	$(INSTALL) -m 0755 "$(HBAD_BIN)" "$(DESTDIR)$(BINDIR)/hbad"
	$(SUBST) systemd/hbad.service > "$(DESTDIR)$(UNITDIR)/hbad.service"
	$(SUBST) udev-rules/60-hbad-vhba.rules > "$(DESTDIR)$(UDEVRULESDIR)/60-hbad-vhba.rules"
	chmod 0644 "$(DESTDIR)$(UNITDIR)/hbad.service" "$(DESTDIR)$(UDEVRULESDIR)/60-hbad-vhba.rules"
	$(INSTALL) -m 0644 systemd/hbad.catalog "$(DESTDIR)$(CATALOGDIR)/hbad.catalog"
	$(INSTALL) -m 0644 packaging/tmpfiles.d/hbad.conf "$(DESTDIR)$(TMPFILESDIR)/hbad.conf"
	@# The policy is the administrator's: never overwrite one that is there.
	@if [ -e "$(DESTDIR)$(SYSCONFDIR)/hbad/hbad.toml" ]; then \
		echo "kept $(DESTDIR)$(SYSCONFDIR)/hbad/hbad.toml (the example is in $(DOCDIR)/hbad.toml)"; \
	else \
		echo "$(INSTALL) -m 0644 config/hbad.toml $(DESTDIR)$(SYSCONFDIR)/hbad/hbad.toml"; \
		$(INSTALL) -m 0644 config/hbad.toml "$(DESTDIR)$(SYSCONFDIR)/hbad/hbad.toml"; \
	fi
	$(INSTALL) -m 0644 README.md config/hbad.toml "$(DESTDIR)$(DOCDIR)/"
	$(INSTALL) -m 0644 config/examples/*.toml "$(DESTDIR)$(DOCDIR)/examples/"
	$(INSTALL) -m 0644 man/hbad.toml.5 "$(DESTDIR)$(MANDIR)/man5/"
	"$(HBAD_BIN)" generate man "$(DESTDIR)$(MANDIR)/man8" >/dev/null
	"$(HBAD_BIN)" generate completions bash "$(DESTDIR)$(BASHCOMPDIR)" >/dev/null
	"$(HBAD_BIN)" generate completions zsh "$(DESTDIR)$(ZSHCOMPDIR)" >/dev/null
	"$(HBAD_BIN)" generate completions fish "$(DESTDIR)$(FISHCOMPDIR)" >/dev/null
	chmod 0644 "$(DESTDIR)$(MANDIR)"/man8/hbad*.8 "$(DESTDIR)$(BASHCOMPDIR)/hbad" \
		"$(DESTDIR)$(ZSHCOMPDIR)/_hbad" "$(DESTDIR)$(FISHCOMPDIR)/hbad.fish"
ifeq ($(DESTDIR),)
	@# A live install: what the package managers' triggers do. Enabling the unit is
	@# left to the administrator, once the policy is written.
	-command -v systemd-tmpfiles >/dev/null && systemd-tmpfiles --create "$(TMPFILESDIR)/hbad.conf"
	-command -v journalctl >/dev/null && journalctl --update-catalog
	-command -v udevadm >/dev/null && udevadm control --reload
	-command -v systemctl >/dev/null && systemctl daemon-reload
endif

# Removes what install put there, except the policy in $(SYSCONFDIR)/hbad and the
# state in /var/lib/hbad: those are the administrator's.
uninstall:
	rm -f "$(DESTDIR)$(BINDIR)/hbad" "$(DESTDIR)$(UNITDIR)/hbad.service" \
		"$(DESTDIR)$(CATALOGDIR)/hbad.catalog" "$(DESTDIR)$(UDEVRULESDIR)/60-hbad-vhba.rules" \
		"$(DESTDIR)$(TMPFILESDIR)/hbad.conf" "$(DESTDIR)$(MANDIR)/man5/hbad.toml.5" \
		"$(DESTDIR)$(MANDIR)"/man8/hbad.8 "$(DESTDIR)$(MANDIR)"/man8/hbad-*.8 \
		"$(DESTDIR)$(BASHCOMPDIR)/hbad" "$(DESTDIR)$(ZSHCOMPDIR)/_hbad" \
		"$(DESTDIR)$(FISHCOMPDIR)/hbad.fish"
	rm -rf "$(DESTDIR)$(DOCDIR)"
	-rmdir "$(DESTDIR)$(LIBDIR_SYS)/hbad/hbad.d" "$(DESTDIR)$(LIBDIR_SYS)/hbad"

# Man pages and completions for the packages (cargo-deb's assets, the RPM spec).
GENERATED ?= target/generated
generated:
	@test -x "$(HBAD_BIN)" || { echo "$(HBAD_BIN) is missing: run make first" >&2; exit 1; }
	"$(HBAD_BIN)" generate man $(GENERATED)/man8 >/dev/null
	"$(HBAD_BIN)" generate completions bash $(GENERATED)/completions >/dev/null
	"$(HBAD_BIN)" generate completions zsh $(GENERATED)/completions >/dev/null
	"$(HBAD_BIN)" generate completions fish $(GENERATED)/completions >/dev/null

# Needs cargo-deb (cargo install cargo-deb). Not part of `make test`: it rebuilds.
# Build the .deb, install it on this machine, check it, purge it (root; CI runs it).
deb-test: build
	packaging/deb-test.sh

deb: build
	$(MAKE) generated
	$(CARGO) deb --no-build --locked

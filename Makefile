# hbad — build, test, install.
#
#   make            build the release binary
#   make test       what CI runs: formatting, lints, unit + integration tests
#   make demo       hbad on a simulated host
#   make bench      graph load/apply and whole-daemon numbers (benches/README.md)
#   make vm-test    the real-kernel tier (Debian's kernel in qemu)

CARGO ?= cargo

.PHONY: all deps build test lint demo bench vm-test clean

all: build

# Debian packages the build needs (installed when missing, as root).
deps:
	@scripts/deps.sh

build: deps
	$(CARGO) build --release --locked

lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

test: lint
	$(CARGO) test --locked

demo: deps
	$(CARGO) run --release --locked -- demo

bench:
	$(CARGO) bench --locked --bench graph
	$(CARGO) bench --locked --bench daemon

# Boots Debian's kernel in qemu (TCG) with hbad and checks it against the real SCSI/FC
# stack. Needs root for apt (first run) and ~1 GB RAM; see tests/vm/README.md.
VM_ARGS ?=
vm-test: build
	python3 tests/vm/selftest.py
	python3 tests/vm/run.py --hbad target/release/hbad $(VM_ARGS)

clean:
	$(CARGO) clean

#!/usr/bin/env python3
"""hbad's real-kernel tier: boots Debian's kernel in qemu with the guest built by
build-guest.sh, follows the scenarios on the serial console, runs the host-side checks
on what the guest hands over, and reports.

    tests/vm/run.py --hbad target/release/hbad [--scenarios lab,inventory] [-v]

Exit status 0 only when every scenario passed (an expected failure, xfail, is not a
failure; it is reported as such). The last line is always `N passed, N failed`.
The console log is kept on failure (the path is printed) or with --keep-log.
Standard library only: this must run on a bare CI machine.
"""

import argparse
import base64
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.dont_write_bytecode = True  # keep tests/vm free of __pycache__
sys.path.insert(0, str(HERE))
import checks  # noqa: E402

PREFIX = "HBADVM "
ALL_SCENARIOS = ["lab", "inventory", "npiv-kernel", "apply", "new-lun", "agent", "storm", "udev", "scan-facts",
                 "desired-state", "refusals", "forged", "churn", "lun-gone", "lun-resize",
                 "hung-host", "fc-events",
                 # Over the lab's FCoE Forwarder (guest/fabric.sh), in this order.
                 "fabric-login", "fabric-new-lun", "fabric-zone",
                 "fabric-by-fabric", "fabric-refuse", "fabric-recreate"]


class Scenario:
    def __init__(self, name):
        self.name = name
        self.lines = []  # (kind, text) as the guest reported them
        self.data = {}  # name -> bytes, complete files only
        self.partial = {}  # name -> [base64 chunks]
        self.guest_status = None  # pass | fail | xfail, from the END line
        self.guest_seconds = None
        self.host_start = None
        self.host_end = None
        self.host_checks = []  # (ok, text)

    @property
    def failed_lines(self):
        return [t for k, t in self.lines if k == "FAIL"]

    @property
    def xfail_lines(self):
        return [t for k, t in self.lines if k == "xfail"]

    def status(self):
        if self.guest_status is None:
            return "fail"
        if self.guest_status == "fail" or any(not ok for ok, _ in self.host_checks):
            return "fail"
        if self.guest_status == "xfail" or any(
            ok == "xfail" for ok, _ in self.host_checks
        ):
            return "xfail"
        return "pass"


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hbad", required=True, help="the hbad binary to put in the guest")
    p.add_argument(
        "--fcf",
        default=None,
        help="the lab's FCoE Forwarder (default: hbad-lab-fcf next to --hbad, if built)",
    )
    p.add_argument(
        "--scenarios",
        default=",".join(ALL_SCENARIOS),
        help="comma-separated; lab is always run first when another needs it",
    )
    p.add_argument("--out", default=None, help="work directory (default target/vm)")
    p.add_argument(
        "--timeout", type=float, default=480, help="seconds for the whole boot"
    )
    p.add_argument("--keep-log", action="store_true", help="keep the console log")
    p.add_argument(
        "-v", "--verbose", action="store_true", help="print every guest assertion"
    )
    return p.parse_args()


def main():
    args = parse_args()
    repo = HERE.parent.parent
    out = Path(args.out) if args.out else repo / "target" / "vm"
    out.mkdir(parents=True, exist_ok=True)
    wanted = [s for s in args.scenarios.split(",") if s]
    unknown = [s for s in wanted if s not in ALL_SCENARIOS]
    if unknown:
        print(f"vm-test: unknown scenario(s) {', '.join(unknown)}; known: {', '.join(ALL_SCENARIOS)}")
        return 2
    # The fabric-* scenarios build their own fabric lab (fabric.sh) and need no VN2VN lab.
    if any(s != "lab" and not s.startswith("fabric-") for s in wanted) and "lab" not in wanted:
        wanted.insert(0, "lab")
    wanted.sort(key=ALL_SCENARIOS.index)

    t0 = time.monotonic()
    fcf = args.fcf or str(Path(args.hbad).with_name("hbad-lab-fcf"))
    build_cmd = [str(HERE / "build-guest.sh"), "--hbad", args.hbad, "--out", str(out)]
    if os.access(fcf, os.X_OK):
        build_cmd += ["--fcf", fcf]
    elif any(s.startswith("fabric-") or s == "fc-events" for s in wanted):
        print(f"vm-test: the fabric and fc-events scenarios need hbad-lab-fcf: {fcf} is missing "
              "(cargo build --release -p hbad-lab-fcf)")
        print("0 passed, 1 failed")
        return 1
    build = subprocess.run(
        build_cmd,
        stdout=subprocess.PIPE,
        text=True,
    )
    if build.returncode != 0:
        print(f"vm-test: building the guest failed (exit {build.returncode})")
        print("0 passed, 1 failed")
        return 1
    guest = Path(build.stdout.strip().splitlines()[-1])
    t_built = time.monotonic()
    kver = (guest / "kernel-version").read_text().strip()
    initrd_size = (guest / "initrd.gz").stat().st_size
    print(
        f"vm-test: guest built in {t_built - t0:.1f} s: kernel {kver}, "
        f"initramfs {initrd_size / 1e6:.1f} MB"
    )

    log_path = out / "console.log"
    cmd = [
        "qemu-system-x86_64",
        "-m", "1024",
        "-smp", "2",
        "-nographic",
        "-no-reboot",
        "-nic", "none",
        "-kernel", str(guest / "vmlinuz"),
        "-initrd", str(guest / "initrd.gz"),
        "-append",
        f"console=ttyS0 quiet panic=-1 hbadvm.scenarios={','.join(wanted)}",
    ]
    # TCG by default: /dev/kvm can exist yet fail (nested virtualisation refusing MSRs
    # was seen on this project's machines), and the timings are known for TCG.
    if os.environ.get("HBAD_VM_KVM") == "1":
        cmd[1:1] = ["-enable-kvm", "-cpu", "host"]

    scenarios = {}
    order = []
    current = None
    verdict = None
    boot_seen = None
    timed_out = False
    qemu_start = time.monotonic()
    proc = subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )

    def kill_on_timeout():
        nonlocal timed_out
        timed_out = True
        proc.kill()

    timer = threading.Timer(args.timeout, kill_on_timeout)
    timer.start()
    with open(log_path, "w", encoding="utf-8", errors="replace") as log:
        for raw in proc.stdout:
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n").replace("\r", "")
            log.write(line + "\n")
            at = line.find(PREFIX)
            if at < 0:
                continue
            words = line[at + len(PREFIX):].split(" ", 3)
            head = words[0]
            now = time.monotonic()
            if head == "GUEST":
                boot_seen = now - qemu_start
                print(f"vm-test: guest up {boot_seen:.1f} s after qemu start ({' '.join(words[1:])})")
            elif head == "BEGIN" and len(words) >= 2:
                current = scenarios.setdefault(words[1], Scenario(words[1]))
                current.host_start = now
                order.append(current.name)
            elif head == "END" and len(words) >= 4:
                sc = scenarios.setdefault(words[1], Scenario(words[1]))
                sc.guest_status = words[2]
                sc.guest_seconds = float(words[3])
                sc.host_end = now
                finish(sc, args.verbose)
                current = None
            elif head == "VERDICT":
                verdict = words[1] if len(words) > 1 else "?"
            elif head == "dmesg":
                pass
            elif head in scenarios and len(words) >= 2:
                sc = scenarios[head]
                kind = words[1]
                rest = " ".join(words[2:])
                if kind == "data" and len(words) == 4:
                    sc.partial.setdefault(words[2], []).append(words[3])
                elif kind == "data-end" and len(words) == 4:
                    blob = base64.b64decode("".join(sc.partial.pop(words[2], [])))
                    if len(blob) != int(words[3]):
                        sc.host_checks.append(
                            (False, f"data {words[2]}: {len(blob)} bytes arrived, guest sent {words[3]}")
                        )
                    sc.data[words[2]] = blob
                    # Kept for a look after the run, and for checks.py's self-test.
                    keep = out / "data" / sc.name
                    keep.mkdir(parents=True, exist_ok=True)
                    (keep / words[2]).write_bytes(blob)
                else:
                    sc.lines.append((kind, rest))
                    if kind == "FAIL" or (args.verbose and kind in ("ok", "info", "xfail")):
                        print(f"    {sc.name}: {kind} {rest}")
    proc.wait()
    timer.cancel()
    total = time.monotonic() - t0

    if current is not None and current.guest_status is None:
        why = "timed out" if timed_out else "guest stopped"
        current.lines.append(("FAIL", f"{why} during the scenario"))
        print(f"    {current.name}: FAIL {why} during the scenario")
        finish(current, args.verbose)
    for name in wanted:
        if name not in scenarios:
            sc = scenarios[name] = Scenario(name)
            why = "timed out" if timed_out else "never started"
            sc.lines.append(("FAIL", why))
            order.append(name)
            print(f"FAIL  {name}  ({why})")

    passed = sum(1 for n in order if scenarios[n].status() == "pass")
    xfailed = [n for n in order if scenarios[n].status() == "xfail"]
    failed = sum(1 for n in order if scenarios[n].status() == "fail")
    problems = []
    if timed_out:
        problems.append(f"qemu killed after {args.timeout:.0f} s")
    if verdict is None:
        problems.append("the guest gave no verdict")
        if boot_seen is None:
            tail = log_path.read_text(errors="replace").splitlines()[-15:]
            print("vm-test: the guest never came up; end of the console:")
            for t in tail:
                print(f"    | {t}")
    elif verdict != "pass" and failed == 0:
        problems.append(f"guest verdict {verdict}")
    if problems:
        failed = max(failed, 1)
    print(
        f"vm-test: total {total:.1f} s wall (guest build {t_built - t0:.1f} s, "
        f"qemu {time.monotonic() - qemu_start:.1f} s); {'; '.join(problems) or 'clean power-off'}"
    )
    if failed or args.keep_log:
        print(f"vm-test: console log kept at {log_path}")
    else:
        log_path.unlink(missing_ok=True)
    if xfailed:
        print(f"{len(xfailed)} expected to fail (xfail): {', '.join(xfailed)}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


def finish(sc, verbose):
    """Runs the host-side checks of a finished scenario and prints its line."""
    check = checks.HOST_CHECKS.get(sc.name)
    if check is not None and sc.guest_status is not None:
        try:
            sc.host_checks.extend(check(sc.data, sc.lines))
        except Exception as e:  # a checker bug must fail the scenario, loudly
            sc.host_checks.append((False, f"host check crashed: {type(e).__name__}: {e}"))
    for ok, text in sc.host_checks:
        if ok is not True or verbose:
            label = {True: "ok", False: "FAIL", "xfail": "xfail"}[ok]
            print(f"    {sc.name}: host {label} {text}")
    for text in sc.xfail_lines:
        if not verbose:
            print(f"    {sc.name}: xfail {text}")
    wall = (
        f"{sc.host_end - sc.host_start:.1f} s wall"
        if sc.host_start and sc.host_end
        else "no wall time"
    )
    guest = f", {sc.guest_seconds:.1f} s guest" if sc.guest_seconds is not None else ""
    status = sc.status().upper()
    print(f"{status:5} {sc.name}  ({wall}{guest})", flush=True)


if __name__ == "__main__":
    sys.exit(main())

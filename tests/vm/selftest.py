#!/usr/bin/env python3
"""Self-test of the host-side checks (checks.py), without qemu: they must pass on the
data a real guest sent (tests/vm/fixtures/, recorded from a run with the cli branch's
views), and fail on each of a set of wrong answers made from it. A checker that
cannot fail would make the real-kernel tier a fake pass.

    python3 tests/vm/selftest.py      (exit 0 when every case behaves)
"""

import copy
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.dont_write_bytecode = True
sys.path.insert(0, str(HERE))
import checks  # noqa: E402


def load(scenario):
    d = HERE / "fixtures" / scenario
    return {p.name: p.read_bytes() for p in d.iterdir()}


def edit_json(data, name, change):
    doc = json.loads(data[name])
    change(doc)
    out = dict(data)
    out[name] = json.dumps(doc).encode()
    return out


def first(items, **match):
    return next(i for i in items if all(i.get(k) == v for k, v in match.items()))


def walk_tree(items):
    for item in items:
        yield item
        yield from walk_tree(item.get("children", []))


def main():
    inv = load("inventory")
    npiv = load("npiv-kernel")
    cases = []  # (label, check, data, want_failure)

    cases.append(("inventory as recorded", checks.check_inventory, inv, False))

    def rport_wwpn(doc):
        first(doc, kind="remote_port")["wwpn"] = "0x200002000000000c"

    cases.append(("list: a remote port's WWPN wrong", checks.check_inventory, edit_json(inv, "list", rport_wwpn), True))

    def drop_lun(doc):
        doc.pop()

    cases.append(("luns: a LUN missing", checks.check_inventory, edit_json(inv, "luns", drop_lun), True))

    def extra_device(doc):
        fake = copy.deepcopy(first(doc, kind="lun"))
        fake["devpath"] += "9"
        doc.append(fake)

    cases.append(("list: a device sysfs lacks", checks.check_inventory, edit_json(inv, "list", extra_device), True))

    def not_vhba(doc):
        first(doc, kind="host", is_vhba=True)["is_vhba"] = False

    cases.append(("list: the vHBA not marked as one", checks.check_inventory, edit_json(inv, "list", not_vhba), True))

    def npiv_inuse(doc):
        h = next(i for i in doc if i.get("kind") == "host" and (i.get("fc") or {}).get("npiv"))
        h["fc"]["npiv"]["vports_inuse"] += 1

    cases.append(("list: npiv_vports_inuse off by one", checks.check_inventory, edit_json(inv, "list", npiv_inuse), True))

    def move_lun(doc):
        targets = [t for t in walk_tree(doc) if t.get("kind") == "target"]
        a, b = targets[0], targets[1]
        b["children"].append(a["children"].pop())

    cases.append(("tree: a LUN under the wrong target", checks.check_inventory, edit_json(inv, "tree", move_lun), True))

    def lun_size(doc):
        doc[0]["size_bytes"] += 512

    cases.append(("luns: a size wrong", checks.check_inventory, edit_json(inv, "luns", lun_size), True))

    def roles(doc):
        first(doc, kind="remote_port")["roles"] = ["FCP Target"]

    cases.append(("list: roles cut short", checks.check_inventory, edit_json(inv, "list", roles), True))

    snap = dict(inv)
    snap["sysfs"] = inv["sysfs"].replace(b"vendor=LIO-ORG", b"vendor=LIO-ORH")
    cases.append(("sysfs: the LIO LUN's vendor differs", checks.check_inventory, snap, True))

    cases.append(("npiv-kernel as recorded", checks.check_npiv_kernel, npiv, False))

    def other_parent(doc):
        first(doc["steps"], vhba="lab-derived")["parent"]["number"] = 0

    cases.append(("plan: vHBA on the wrong host", checks.check_npiv_kernel, edit_json(npiv, "plan-before", other_parent), True))

    def recreate(doc):
        step = first(doc["steps"], vhba="lab-explicit")
        step["action"] = "create_vhba"

    cases.append(("plan: existing vport created again", checks.check_npiv_kernel, edit_json(npiv, "plan-present", recreate), True))

    def wwn_drift(doc):
        first(doc, name="lab-derived")["wwpn"] = "50:01:a4:a0:00:00:00:01"

    cases.append(("wwn: derived WWPN differs from the plan's", checks.check_npiv_kernel, edit_json(npiv, "wwn", wwn_drift), True))

    def show_other(doc):
        text = json.dumps(doc).replace("0x5001a4a000000c01", "0x5001a4a000000c09")
        doc.clear()
        doc.extend(json.loads(text))

    cases.append(("show: the vHBA's WWPN missing", checks.check_npiv_kernel, edit_json(npiv, "show", show_other), True))

    def show_only_vport(doc):
        doc.pop(0)

    cases.append(("show: the vHBA host not found by its WWPN", checks.check_npiv_kernel, edit_json(npiv, "show", show_only_vport), True))

    def list_parent(doc):
        doc.append(copy.deepcopy(doc[0]))
        doc[-1]["name"] = "host1"

    cases.append(("list --cap vhba: a physical port listed", checks.check_npiv_kernel, edit_json(npiv, "list-vhba", list_parent), True))

    app = load("apply")
    cases.append(("apply as recorded", checks.check_apply, app, False))

    def half_done(doc):
        doc["steps"][1]["result"] = "failed"
        doc["tally"]["done"] = 1
        doc["tally"]["failed"] = 1

    cases.append(("apply: a create failed", checks.check_apply, edit_json(app, "apply-1", half_done), True))

    def redo(doc):
        doc["tally"]["done"] = 1

    cases.append(("apply: the second apply acted again", checks.check_apply, edit_json(app, "apply-2", redo), True))

    def destroyed(doc):
        doc.clear()
        doc.update({"result": "deleted", "deleted": {}})

    cases.append(("destroy: a physical port deleted", checks.check_apply, edit_json(app, "destroy-physical", destroyed), True))

    def created_twice(doc):
        doc["result"] = "created"

    cases.append(("create: a second vport for the same WWPN", checks.check_apply, edit_json(app, "create-again", created_twice), True))

    nl = load("new-lun")
    cases.append(("new-lun as recorded", checks.check_new_lun, nl, False))

    def wide_scan(doc):
        doc["scans"][0]["scope"] = {"scope": "host"}

    cases.append(("rescan --target scanned the whole host", checks.check_new_lun, edit_json(nl, "rescan-target", wide_scan), True))

    def extra_scan(doc):
        doc["scans"].append(copy.deepcopy(doc["scans"][0]))
        doc["scans"][-1]["host"]["number"] = 2

    cases.append(("rescan --target scanned another host too", checks.check_new_lun, edit_json(nl, "rescan-target", extra_scan), True))

    def lost_lun(doc):
        doc["found"].pop()

    cases.append(("find-luns misses a LUN", checks.check_new_lun, edit_json(nl, "find-luns", lost_lun), True))

    ag = load("agent")
    cases.append(("agent as recorded", checks.check_agent, ag, False))

    def scanned_bystander(doc):
        host = doc["hosts"][-1]
        for h in doc["hosts"]:
            if h["host"] == "host3":
                host = h
        host["last_scan"] = copy.deepcopy(next(h["last_scan"] for h in doc["hosts"] if h["host"] == "host2"))

    cases.append(("agent: a host that reported nothing was scanned", checks.check_agent, edit_json(ag, "status-file", scanned_bystander), True))

    def never_ready(doc):
        doc["ready"] = False

    cases.append(("agent: never ready", checks.check_agent, edit_json(ag, "status-file", never_ready), True))

    def forged(doc):
        doc["counters"]["forged"] = 1

    cases.append(("agent: counted a forged event", checks.check_agent, edit_json(ag, "status-file", forged), True))

    st = load("storm")
    cases.append(("storm as recorded", checks.check_storm, st, False))

    def no_overflow(doc):
        doc["counters"]["overflows"] = 0
        doc["counters"]["resyncs"] = 0

    cases.append(("storm: no overflow noticed", checks.check_storm, edit_json(st, "status-file", no_overflow), True))

    ud = load("udev")
    cases.append(("udev as recorded", checks.check_udev, ud, False))

    def lost_link(doc):
        first(doc, hctl="1:0:0:0")["links"].pop()

    cases.append(("luns: a by-path link missing", checks.check_udev, edit_json(ud, "luns", lost_link), True))

    def swapped(doc):
        a, b = doc[1], doc[2]
        a["links"], b["links"] = b["links"], a["links"]

    cases.append(("luns: links on the wrong LUN", checks.check_udev, edit_json(ud, "luns-after", swapped), True))

    def neighbour_rescanned(data):
        out = dict(data)
        out["agent.log"] = data["agent.log"] + (
            b"2026-11-23T00:00:00Z  INFO rescanned 2:0:0:1: 2:0:0:0 reported CAPACITY_DATA_HAS_CHANGED\n"
        )
        return out

    cases.append(("agent: a neighbour re-read for another LUN's change", checks.check_agent, neighbour_rescanned(ag), True))

    fc = load("fc-events")
    cases.append(("fc-events as recorded", checks.check_fc_events, fc, False))

    def edit_bytes(data, name, old, new):
        out = dict(data)
        assert old in data[name], f"{name} has no {old!r}"
        out[name] = data[name].replace(old, new)
        return out

    # What hbad bound to group 3 (the header's 1<<2 taken as a mask) showed: nothing.
    cases.append(("fc-events: the forgeries never arrived", checks.check_fc_events,
                  edit_bytes(fc, "metrics", b'reason="not_kernel"} 3', b'reason="not_kernel"} 0'), True))
    cases.append(("fc-events: the source down", checks.check_fc_events,
                  edit_bytes(fc, "metrics", b'hbad_event_source_up{source="fc"} 1', b'hbad_event_source_up{source="fc"} 0'),
                  True))
    cases.append(("fc-events: a forged LINKUP re-read a host", checks.check_fc_events,
                  edit_bytes(fc, "agent.log", b"FC event LIPRESET", b"FC event LINKUP"), True))
    cases.append(("fc-events: no genuine event", checks.check_fc_events,
                  edit_bytes(fc, "metrics", b'hbad_events_received_total{source="fc"} 4',
                             b'hbad_events_received_total{source="fc"} 3'), True))

    bad = 0
    for label, check, data, want_failure in cases:
        results = check(data, [])
        failures = [t for ok, t in results if ok is False]
        if want_failure and not failures:
            print(f"FAIL  {label}: the check found nothing wrong")
            bad += 1
        elif not want_failure and failures:
            print(f"FAIL  {label}: {failures[:3]}")
            bad += 1
        else:
            why = f" -> {failures[0]}" if failures else ""
            print(f"ok    {label}{why[:150]}")
    print(f"selftest: {len(cases) - bad} of {len(cases)} cases behave")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

//! Desired state against observed state: what hbad would do, and why.
//!
//! [`plan`] is pure: a policy, the graph, what the ownership state file records,
//! and the changes of the last batch of events in; a [`Plan`] out. No I/O and no
//! clock, so `hbad plan` prints exactly what the daemon would do, and every rule
//! here is a unit test away.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;

use serde::Serialize;

use crate::graph::{Change, Graph, Node, NodeKind, Notice};
use crate::ownership::{owned, Owned, OwnedRecord};
use crate::policy::{HostFilter, Origin, ParentSelector, Policy, ScopeChoice, VhbaSpec};
use crate::sysfs::writes::ScanScope;
use crate::sysfs::{devpath_name, FcHostInfo, Hctl, VportControlDir, VportInfo};
use crate::wwn::Wwn;

/// A host as actions name it: its number for people and its devpath for writes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct HostRef {
    pub number: u32,
    pub devpath: String,
}

impl HostRef {
    fn of(node: &Node) -> Option<HostRef> {
        match &node.kind {
            NodeKind::Host(h) => Some(HostRef {
                number: h.scsi.number,
                devpath: node.devpath.to_string(),
            }),
            _ => None,
        }
    }
}

impl fmt::Display for HostRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "host{}", self.number)
    }
}

/// Why a declared vHBA cannot be created yet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "wait", rename_all = "snake_case")]
pub enum WaitReason {
    /// Nothing in the graph matches the parent selector.
    NoParent { selector: String },
    /// Matching ports exist but none can make vports.
    NoNpiv { ports: Vec<String> },
    /// Matching NPIV ports exist but none is Online.
    LinkDown { ports: Vec<(String, String)> },
    /// Matching Online ports exist but all are full.
    Full { ports: Vec<(String, u32, u32)> },
    /// Something else on this host already uses the WWPN.
    WwpnInUse { wwpn: Wwn, by: String },
}

impl fmt::Display for WaitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WaitReason::NoParent { selector } => write!(f, "no FC port matches {selector}"),
            WaitReason::NoNpiv { ports } => {
                write!(
                    f,
                    "{} cannot create vports (no NPIV support in the driver)",
                    ports.join(", ")
                )
            }
            WaitReason::LinkDown { ports } => {
                let list: Vec<String> = ports.iter().map(|(p, s)| format!("{p} is {s}")).collect();
                write!(f, "parent link not Online: {}", list.join(", "))
            }
            WaitReason::Full { ports } => {
                let list: Vec<String> = ports
                    .iter()
                    .map(|(p, inuse, max)| format!("{p} has {inuse} of {max} vports in use"))
                    .collect();
                write!(f, "parent full: {}", list.join(", "))
            }
            WaitReason::WwpnInUse { wwpn, by } => write!(f, "WWPN {wwpn} is already used by {by}"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    CreateVhba {
        vhba: String,
        parent: HostRef,
        parent_wwpn: Option<Wwn>,
        control_dir: VportControlDir,
        wwpn: Wwn,
        wwnn: Wwn,
    },
    DeleteVhba {
        vhba: Option<String>,
        vport: String,
        parent: HostRef,
        control_dir: VportControlDir,
        wwpn: Wwn,
        wwnn: Wwn,
    },
    /// Mark a vport as hbad's own: symbolic_name = `hbad:<name>`.
    SetSymbolicName {
        vhba: String,
        vport: String,
        name: String,
    },
    Scan {
        host: HostRef,
        scope: ScanScope,
    },
    RescanDevice {
        hctl: Hctl,
        devpath: String,
    },
    /// After a target scan: ask the target which LUNs it maps to this initiator
    /// (REPORT LUNS) and name those sysfs still has that it no longer reports. A scan
    /// never removes them. With `remove` (the policy's `remove_gone`), each one
    /// nothing holds is deleted (`device/delete`).
    FindGone {
        host: HostRef,
        channel: u32,
        target: u32,
        /// The target's devpath: its LUNs are the ones compared.
        target_devpath: String,
        remove: bool,
    },
    /// A declared vHBA that cannot be created now; re-planned on the next change.
    Wait {
        vhba: String,
        /// Named `waiting` in JSON: the step's own `reason` sits beside it.
        #[serde(rename = "waiting")]
        reason: WaitReason,
    },
    /// An owned vHBA the policy no longer names, kept: pruning is off, or what
    /// `vport_delete` needs is not known (the step's reason says which).
    Keep {
        vhba: Option<String>,
        vport: String,
        wwpn: Wwn,
    },
}

/// One step of a plan, with the reason in words and the policy line behind it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Step {
    #[serde(flatten)]
    pub action: Action,
    pub reason: String,
    pub origin: Option<Origin>,
}

impl Step {
    /// Does this step change anything on the host?
    pub fn acts(&self) -> bool {
        !matches!(self.action, Action::Wait { .. } | Action::Keep { .. })
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.action {
            Action::CreateVhba {
                vhba,
                parent,
                wwpn,
                wwnn,
                ..
            } => write!(f, "create vHBA {vhba} on {parent}: wwpn {wwpn} wwnn {wwnn}")?,
            Action::DeleteVhba {
                vhba,
                vport,
                parent,
                wwpn,
                ..
            } => write!(
                f,
                "delete vHBA {} ({} on {parent}, wwpn {wwpn})",
                vhba.as_deref().unwrap_or("?"),
                devpath_name(vport)
            )?,
            Action::SetSymbolicName { vhba, vport, name } => write!(
                f,
                "mark {} as vHBA {vhba}: symbolic_name \"{name}\"",
                devpath_name(vport)
            )?,
            Action::Scan { host, scope } => match scope {
                ScanScope::Host => write!(f, "scan {host} (all targets)")?,
                ScanScope::Target { channel, target } => {
                    write!(f, "scan {host} target {channel}:{target}")?
                }
                ScanScope::Lun {
                    channel,
                    target,
                    lun,
                } => write!(f, "scan {host} LUN {channel}:{target}:{lun}")?,
            },
            Action::RescanDevice { hctl, .. } => write!(f, "rescan {hctl}")?,
            Action::FindGone {
                host,
                channel,
                target,
                remove,
                ..
            } => write!(
                f,
                "find LUNs gone from {host} target {channel}:{target}{}",
                if *remove {
                    ", deleting those nothing holds"
                } else {
                    ""
                }
            )?,
            Action::Wait { vhba, reason } => write!(f, "wait for vHBA {vhba}: {reason}")?,
            Action::Keep { vhba, vport, wwpn } => write!(
                f,
                "keep {vport} (wwpn {wwpn}{}): no longer in the policy",
                vhba.as_ref()
                    .map(|n| format!(", was {n}"))
                    .unwrap_or_default()
            )?,
        }
        write!(f, " — {}", self.reason)?;
        if let Some(o) = &self.origin {
            write!(f, " [{o}]")?;
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub steps: Vec<Step>,
}

impl Plan {
    /// Nothing to change on the host (waits and keeps are only reported).
    pub fn is_settled(&self) -> bool {
        !self.steps.iter().any(Step::acts)
    }
}

/// The vHBAs the ownership state file records as hbad's, by WWPN, with the name
/// each was made under: what binds a `hbad:<name>` mark to this host once the
/// policy stops declaring the vHBA, and the fallback mark where a driver refused
/// symbolic_name (or the name did not fit). The caller reads the file
/// (`OwnedState::all`); the planner only looks, so that a vHBA owned this way is
/// neither asked to be marked on every plan nor left out of pruning.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recorded {
    records: BTreeMap<Wwn, OwnedRecord>,
}

impl Recorded {
    /// Nothing recorded: only marks the policy declares are hbad's.
    pub fn none() -> Self {
        Recorded::default()
    }

    pub fn from_records(records: &BTreeMap<Wwn, OwnedRecord>) -> Self {
        Recorded {
            records: records.clone(),
        }
    }

    pub fn get(&self, wwpn: Wwn) -> Option<&OwnedRecord> {
        self.records.get(&wwpn)
    }

    /// The name recorded for the vport with this WWPN where the record stands in
    /// for a mark the driver refused.
    pub fn name(&self, wwpn: Wwn) -> Option<&str> {
        self.get(wwpn)
            .filter(|r| r.refused())
            .map(|r| r.name.as_str())
    }
}

impl FromIterator<(Wwn, OwnedRecord)> for Recorded {
    fn from_iter<I: IntoIterator<Item = (Wwn, OwnedRecord)>>(iter: I) -> Self {
        Recorded {
            records: iter.into_iter().collect(),
        }
    }
}

/// The policy's vHBAs as the state file binds marks to them: (WWPN, name).
pub fn declared(policy: &Policy) -> impl Iterator<Item = (Wwn, String)> + '_ {
    policy.vhbas.iter().map(|v| (v.wwpn, v.name.clone()))
}

/// Plans the desired vHBAs against the graph, and the scans the changes call for.
/// `recorded` is what the ownership state file holds, read by the caller.
pub fn plan(policy: &Policy, graph: &Graph, recorded: &Recorded, changes: &[Change]) -> Plan {
    let mut steps = Vec::new();
    plan_vhbas(policy, graph, recorded, &mut steps);
    plan_scans(policy, graph, changes, &mut steps);
    Plan { steps }
}

fn fc(node: &Node) -> Option<&FcHostInfo> {
    match &node.kind {
        NodeKind::Host(h) => h.fc.as_ref(),
        _ => None,
    }
}

fn describe_selector(sel: &ParentSelector) -> String {
    match sel {
        ParentSelector::Wwpn {
            wwpn,
            wwnn: Some(n),
        } => format!("parent_wwpn {wwpn} with wwnn {n}"),
        ParentSelector::Wwpn { wwpn, wwnn: None } => format!("parent_wwpn {wwpn}"),
        ParentSelector::Fabric { fabric } => format!("parent_fabric {fabric}"),
        ParentSelector::Auto => "parent = auto (any NPIV port)".into(),
        ParentSelector::Host { number } => format!("parent = host{number}"),
    }
}

/// Physical FC ports a selector designates (vHBAs cannot parent vHBAs).
fn candidates<'g>(graph: &'g Graph, sel: &ParentSelector) -> Vec<&'g Node> {
    let mut out: Vec<&Node> = graph
        .hosts()
        .into_iter()
        .filter(|h| !graph.is_vhba(h))
        .filter(|h| {
            let Some(fc) = fc(h) else { return false };
            match sel {
                ParentSelector::Wwpn { wwpn, wwnn } => {
                    fc.wwpn == Some(*wwpn) && wwnn.is_none_or(|n| fc.wwnn == Some(n))
                }
                ParentSelector::Fabric { fabric } => fc.fabric_name == Some(*fabric),
                ParentSelector::Auto => fc.npiv.is_some(),
                ParentSelector::Host { number } => {
                    HostRef::of(h).is_some_and(|r| r.number == *number)
                }
            }
        })
        .collect();
    // A stable order: the same policy picks the same parent on every boot.
    out.sort_by_key(|h| (fc(h).and_then(|f| f.wwpn), h.devpath.clone()));
    out
}

/// The vport (and vHBA) with this WWPN, if the kernel has it.
fn existing_vport(graph: &Graph, wwpn: Wwn) -> Option<&Node> {
    graph
        .by_wwpn(wwpn)
        .into_iter()
        .find(|n| matches!(n.kind, NodeKind::Vport(_)))
}

/// Whose a vport is, as `Vports::owner` decides it ([`owned`]): a mark the policy
/// (`declared`, the name it gives this WWPN) or the state file binds to this host,
/// or a record of a refused mark. `None`: not hbad's, never touched.
fn owner_name<'a>(
    v: &'a VportInfo,
    declared: Option<&str>,
    recorded: &'a Recorded,
) -> Option<&'a str> {
    let record = recorded.get(v.wwpn?);
    owned(v.symbolic_name.as_deref(), declared, record).map(|o| match o {
        Owned::Mark(name) => name,
        Owned::Record(r) => r.name.as_str(),
    })
}

/// Why the declared vHBA `name`'s vport needs its mark written, or `None` when it
/// carries it or may not be asked again: recorded under this name because the
/// driver refused the mark, asking on every plan would only be refused again. A
/// record adopted from a stopped create's intent is hbad's too, but the driver
/// was never asked, and until it is the fabric shows no name for the vHBA.
fn unmarked(v: &VportInfo, name: &str, recorded: &Recorded) -> Option<&'static str> {
    match owned(
        v.symbolic_name.as_deref(),
        Some(name),
        v.wwpn.and_then(|w| recorded.get(w)),
    ) {
        Some(Owned::Mark(n)) if n == name => None,
        Some(Owned::Record(r)) if r.name == name && r.mark_pending => Some(
            "hbad's (adopted from the intent of a create that stopped before marking it) \
             but not marked, so the fabric does not show its name",
        ),
        Some(Owned::Record(r)) if r.name == name => None,
        _ => Some("the vport exists but is not marked as hbad's"),
    }
}

fn plan_vhbas(policy: &Policy, graph: &Graph, recorded: &Recorded, steps: &mut Vec<Step>) {
    // vports this plan will add, per parent, so two vHBAs do not both take the last slot.
    let mut planned: HashMap<String, u32> = HashMap::new();
    for spec in &policy.vhbas {
        let origin = Some(spec.origin.clone());
        if let Some(vport) = existing_vport(graph, spec.wwpn) {
            if let NodeKind::Vport(v) = &vport.kind {
                if let Some(reason) = unmarked(v, &spec.name, recorded) {
                    steps.push(Step {
                        action: Action::SetSymbolicName {
                            vhba: spec.name.clone(),
                            vport: vport.devpath.to_string(),
                            name: spec.owner_tag(),
                        },
                        reason: reason.into(),
                        origin,
                    });
                }
            }
            continue;
        }
        if let Some(other) = graph.by_wwpn(spec.wwpn).into_iter().find(|n| holds_wwpn(n)) {
            steps.push(wait(
                spec,
                WaitReason::WwpnInUse {
                    wwpn: spec.wwpn,
                    by: describe(graph, other),
                },
            ));
            continue;
        }
        match choose_parent(graph, spec, &planned) {
            Ok((parent, fcinfo)) => {
                let control_dir = fcinfo
                    .npiv
                    .as_ref()
                    .map_or(VportControlDir::FcHost, |n| n.control_dir);
                *planned.entry(parent.devpath.clone()).or_default() += 1;
                let reason = format!(
                    "declared, not present; parent chosen by {}",
                    describe_selector(&spec.parent)
                );
                steps.push(Step {
                    action: Action::CreateVhba {
                        vhba: spec.name.clone(),
                        parent_wwpn: fcinfo.wwpn,
                        parent,
                        control_dir,
                        wwpn: spec.wwpn,
                        wwnn: spec.wwnn,
                    },
                    reason,
                    origin,
                });
            }
            Err(reason) => steps.push(wait(spec, reason)),
        }
    }
    // Owned vports the policy no longer declares.
    let declared: BTreeSet<Wwn> = policy.vhbas.iter().map(|v| v.wwpn).collect();
    // Through the WWPN index, not a walk of the graph: the plan runs after every
    // batch of events. A vport without a WWPN is never owned (`owner_name`).
    for vport in graph.vports_with_wwpn() {
        let NodeKind::Vport(v) = &vport.kind else {
            continue;
        };
        // Not declared: only the state file can show a mark is hbad's.
        let Some(name) = owner_name(v, None, recorded) else {
            continue; // not ours: never touched
        };
        let Some(wwpn) = v.wwpn else { continue };
        if declared.contains(&wwpn) {
            continue;
        }
        let parent = graph.vport_parent_host(vport);
        let keep = |reason: String| Step {
            action: Action::Keep {
                vhba: Some(name.to_string()),
                vport: vport.devpath.to_string(),
                wwpn,
            },
            reason,
            origin: None,
        };
        let step = match (policy.ownership.prune, parent, v.wwnn) {
            (false, ..) => keep("owned by hbad but kept: [ownership] prune = false".into()),
            // vport_delete takes both names, from a parent that is a host.
            (true, None, _) => keep(
                "owned by hbad and no longer in the policy, but kept although prune = true: \
                 its parent host is not known (deleted once it is)"
                    .into(),
            ),
            (true, _, None) => keep(
                "owned by hbad and no longer in the policy, but kept although prune = true: \
                 sysfs shows no node_name for it, which vport_delete needs (deleted once it \
                 does)"
                    .into(),
            ),
            (true, Some(parent), Some(wwnn)) => Step {
                action: Action::DeleteVhba {
                    vhba: Some(name.to_string()),
                    vport: vport.devpath.to_string(),
                    control_dir: fc(parent)
                        .and_then(|f| f.npiv.as_ref())
                        .map_or(VportControlDir::FcHost, |n| n.control_dir),
                    parent: HostRef::of(parent).expect("vport parents are hosts"),
                    wwpn,
                    wwnn,
                },
                reason: "owned by hbad, no longer in the policy, and prune = true".into(),
                origin: None,
            },
        };
        steps.push(step);
    }
}

fn wait(spec: &VhbaSpec, reason: WaitReason) -> Step {
    Step {
        reason: "re-planned when the graph changes".into(),
        action: Action::Wait {
            vhba: spec.name.clone(),
            reason,
        },
        origin: Some(spec.origin.clone()),
    }
}

fn describe(graph: &Graph, node: &Node) -> String {
    match &node.kind {
        NodeKind::Host(h) if graph.is_vhba(node) => format!("vHBA host{}", h.scsi.number),
        NodeKind::Host(h) => format!("physical port host{}", h.scsi.number),
        NodeKind::RemotePort(r) => format!("remote port {}", r.name),
        NodeKind::Vport(v) => format!("vport {}", v.name),
        _ => node.devpath.to_string(),
    }
}

fn choose_parent<'g>(
    graph: &'g Graph,
    spec: &VhbaSpec,
    planned: &HashMap<String, u32>,
) -> Result<(HostRef, &'g FcHostInfo), WaitReason> {
    let all = candidates(graph, &spec.parent);
    if all.is_empty() {
        // A host named by number that exists but has no FC side (a RAID controller,
        // scsi_debug, iSCSI): say it cannot make vports, not that nothing matched.
        if let ParentSelector::Host { number } = spec.parent {
            if let Some(h) = graph.host(number).filter(|h| !graph.is_vhba(h)) {
                return Err(WaitReason::NoNpiv {
                    ports: vec![format!("{} (not an FC port)", h.name())],
                });
            }
        }
        return Err(WaitReason::NoParent {
            selector: describe_selector(&spec.parent),
        });
    }
    let npiv: Vec<(&Node, &FcHostInfo)> = all
        .iter()
        .filter_map(|h| Some((*h, fc(h)?)))
        .filter(|(_, f)| f.npiv.is_some())
        .collect();
    if npiv.is_empty() {
        return Err(WaitReason::NoNpiv {
            ports: all.iter().map(|h| h.name().to_string()).collect(),
        });
    }
    let online: Vec<&(&Node, &FcHostInfo)> = npiv
        .iter()
        .filter(|(_, f)| f.port_state.as_deref() == Some("Online"))
        .collect();
    if online.is_empty() {
        return Err(WaitReason::LinkDown {
            ports: npiv
                .iter()
                .map(|(h, f)| {
                    (
                        h.name().to_string(),
                        f.port_state.clone().unwrap_or_else(|| "Unknown".into()),
                    )
                })
                .collect(),
        });
    }
    let free = |h: &Node, f: &FcHostInfo| -> (u32, u32, i64) {
        let n = f.npiv.as_ref();
        let max = n.and_then(|n| n.max_vports).unwrap_or(0);
        let inuse = n.and_then(|n| n.vports_inuse).unwrap_or(0)
            + planned.get(h.devpath.as_str()).copied().unwrap_or(0);
        (inuse, max, i64::from(max) - i64::from(inuse))
    };
    // Numbers as numbers: libvirt once compared "10" < "9" as strings.
    let chosen = online.iter().find(|(h, f)| free(h, f).2 > 0);
    match chosen {
        Some((h, f)) => Ok((HostRef::of(h).expect("candidates are hosts"), f)),
        None => Err(WaitReason::Full {
            ports: online
                .iter()
                .map(|(h, f)| {
                    let (inuse, max, _) = free(h, f);
                    (h.name().to_string(), inuse, max)
                })
                .collect(),
        }),
    }
}

/// Does this host take part in rescans?
pub fn takes_part(policy: &Policy, graph: &Graph, host: &Node) -> bool {
    let NodeKind::Host(h) = &host.kind else {
        return false;
    };
    let vhba_name = graph
        .is_vhba(host)
        .then(|| h.fc.as_ref().and_then(|f| f.wwpn))
        .flatten()
        .and_then(|w| policy.vhbas.iter().find(|v| v.wwpn == w))
        .map(|v| v.name.as_str());
    let matches = |f: &HostFilter| {
        h.scsi
            .proc_name
            .as_ref()
            .is_some_and(|d| f.drivers.contains(d))
            || h.fc
                .as_ref()
                .and_then(|fc| fc.fabric_name)
                .is_some_and(|w| f.fabrics.contains(&w))
            || h.fc
                .as_ref()
                .and_then(|fc| fc.wwpn)
                .is_some_and(|w| f.wwpns.contains(&w))
            || vhba_name.is_some_and(|n| f.vhbas.iter().any(|v| v == n))
    };
    let r = &policy.rescan;
    (r.include.is_empty() || matches(&r.include)) && !matches(&r.exclude)
}

fn plan_scans(policy: &Policy, graph: &Graph, changes: &[Change], steps: &mut Vec<Step>) {
    let volumes = Volumes::default();
    let r = &policy.rescan;
    // host devpath -> (scopes, reason); one scan per host/target however many events.
    let mut scans: BTreeMap<HostRef, BTreeMap<ScanScope, String>> = BTreeMap::new();
    let mut rescans: BTreeMap<Hctl, (String, String)> = BTreeMap::new();
    // (host, channel, target) -> (target devpath, reason): the targets whose
    // scan is followed by a look for LUNs they stopped reporting.
    let mut finds: BTreeMap<(HostRef, u32, u32), (String, String)> = BTreeMap::new();
    // (host, channel, target) whose REPORTED LUNS DATA HAS CHANGED was planned: a
    // storm repeats it on every LUN of the target, and each repeat would ask for
    // exactly what the first did (the first reason is the one kept).
    // Both are looked up once per notice of a storm: hashed with foldhash.
    let mut lun_changes_planned: HashSet<(u32, u32, u32), foldhash::fast::RandomState> =
        HashSet::default();
    let mut capacity_planned: HashSet<Hctl, foldhash::fast::RandomState> = HashSet::default();
    let mut want = |host: &Node, scope: ScanScope, reason: String| {
        if !takes_part(policy, graph, host) {
            return;
        }
        let scope = if r.scope == ScopeChoice::Host {
            ScanScope::Host
        } else {
            scope
        };
        if let Some(h) = HostRef::of(host) {
            scans.entry(h).or_default().entry(scope).or_insert(reason);
        }
    };
    for change in changes {
        match change {
            Change::Notice {
                node,
                notice: Notice::UnitAttention(ua),
            } => {
                let Some(hctl) = node.hctl() else {
                    continue;
                };
                let Some(host) = graph.host(hctl.host) else {
                    continue;
                };
                match ua.as_str() {
                    "REPORTED_LUNS_DATA_HAS_CHANGED" if r.on_lun_change => {
                        let key = (hctl.host, hctl.channel, hctl.target);
                        if lun_changes_planned.contains(&key) {
                            continue;
                        }
                        let reason = format!("{} reported REPORTED_LUNS_DATA_HAS_CHANGED", hctl);
                        // A LUN unmapped on the array raises the same attention as a
                        // new one; only REPORT LUNS tells which it was.
                        let target = node
                            .parent()
                            .and_then(|p| graph.node(p))
                            .filter(|t| matches!(t.kind, NodeKind::Target(_)));
                        if target.is_some() {
                            lun_changes_planned.insert(key);
                        }
                        if let (Some(h), Some(t)) = (HostRef::of(host), target) {
                            if takes_part(policy, graph, host) {
                                finds
                                    .entry((h, hctl.channel, hctl.target))
                                    .or_insert((t.devpath.to_string(), reason.clone()));
                            }
                        }
                        want(
                            host,
                            ScanScope::Target {
                                channel: hctl.channel,
                                target: hctl.target,
                            },
                            reason,
                        )
                    }
                    // Planned already (with every path of its volume), or left out
                    // with them: a storm asks once. The first reason is kept.
                    "CAPACITY_DATA_HAS_CHANGED" if !capacity_planned.insert(hctl) => {}
                    "CAPACITY_DATA_HAS_CHANGED" if r.on_capacity_change => {
                        // The array reports it on the path the I/O went to; every
                        // path of the volume has the old size until re-read, and a
                        // multipath map on top can only grow once they all agree.
                        let reason = format!("{} reported CAPACITY_DATA_HAS_CHANGED", hctl);
                        for path in paths_of(
                            graph,
                            &volumes,
                            hctl,
                            &node.devpath(),
                            wwid_of(graph, &node.devpath()),
                        ) {
                            rescan_path(policy, graph, &path, &reason, &mut rescans);
                        }
                    }
                    _ => {}
                }
            }
            Change::Added { node } | Change::Updated { node, .. } if r.on_port_online => {
                let came_online = match change {
                    Change::Updated { before, .. } => !online(before) && online(&node.kind),
                    _ => online(&node.kind),
                };
                if !came_online {
                    continue;
                }
                match &node.kind {
                    NodeKind::RemotePort(rp) if rp.is_target() => {
                        // The port, or the host it was under if a later event of the
                        // batch removed it.
                        let host = graph
                            .node(&node.devpath)
                            .or_else(|| graph.node(node.parent.as_deref()?))
                            .and_then(|n| graph.host_of(n));
                        let (Some(host), Some(tid)) = (host, rp.scsi_target_id) else {
                            continue;
                        };
                        let channel =
                            crate::sysfs::port_address(&rp.name, "rport-").map_or(0, |(_, c, _)| c);
                        want(
                            host,
                            ScanScope::Target {
                                channel,
                                target: tid,
                            },
                            format!(
                                "remote port {} ({}) came online",
                                rp.name,
                                rp.wwpn.map(|w| w.to_string()).unwrap_or_default()
                            ),
                        );
                    }
                    NodeKind::Host(_) => {
                        let Some(host) = graph.node(&node.devpath) else {
                            continue;
                        };
                        if !graph.is_vhba(host) {
                            continue;
                        }
                        want(
                            host,
                            ScanScope::Host,
                            format!("vHBA {} came online", node.name()),
                        );
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
    if r.on_capacity_change {
        for change in changes {
            // A disk re-read to a new size (by hbad, or by hand on one path): the
            // other paths of the volume that still show another size follow.
            let Change::Updated { before, node } = change else {
                continue;
            };
            let NodeKind::Disk(old) = &**before else {
                continue;
            };
            let NodeKind::Disk(new) = &node.kind else {
                continue;
            };
            let Some(size) = new.info.size_bytes else {
                continue;
            };
            if old.info.size_bytes == Some(size) {
                continue;
            }
            let Some((lun, l)) = node.parent.as_deref().and_then(|p| match graph.node(p) {
                Some(
                    n @ Node {
                        kind: NodeKind::Lun(l),
                        ..
                    },
                ) => Some((n, l)),
                _ => None,
            }) else {
                continue;
            };
            let reason = format!(
                "another path of the volume, {}, is now {size} bytes",
                new.info.name
            );
            for path in paths_of(graph, &volumes, l.hctl, &lun.devpath, l.wwid.as_deref()) {
                if path.size.is_some_and(|s| s != size) {
                    rescan_path(policy, graph, &path, &reason, &mut rescans);
                }
            }
        }
    }
    for (host, scopes) in scans {
        // A host-wide scan covers every target scan of that host.
        let host_wide = scopes.contains_key(&ScanScope::Host);
        for (scope, reason) in scopes {
            if host_wide && scope != ScanScope::Host {
                continue;
            }
            steps.push(Step {
                action: Action::Scan {
                    host: host.clone(),
                    scope,
                },
                reason,
                origin: None,
            });
        }
    }
    for ((host, channel, target), (target_devpath, reason)) in finds {
        steps.push(Step {
            action: Action::FindGone {
                host,
                channel,
                target,
                target_devpath,
                remove: r.remove_gone,
            },
            reason,
            origin: None,
        });
    }
    for (hctl, (devpath, reason)) in rescans {
        steps.push(Step {
            action: Action::RescanDevice { hctl, devpath },
            reason,
            origin: None,
        });
    }
}

/// One path of a volume: a LUN, and its disk's size as the graph has it.
struct VolumePath {
    hctl: Hctl,
    devpath: String,
    size: Option<u64>,
}

/// Every path of the volume the LUN `hctl` (at `devpath`) is a path of: the LUNs
/// with its WWID, itself included (only itself when it has none).
/// The LUNs of each WWID, built once per plan on first use: a storm of capacity
/// attentions over N LUNs then costs one pass over them, not one per attention.
#[derive(Default)]
struct Volumes<'g> {
    by_wwid: std::cell::OnceCell<std::collections::HashMap<&'g str, Vec<&'g Node>>>,
}

impl<'g> Volumes<'g> {
    fn of(&self, graph: &'g Graph, wwid: &str) -> &[&'g Node] {
        self.by_wwid
            .get_or_init(|| {
                let mut map: std::collections::HashMap<&str, Vec<&Node>> =
                    std::collections::HashMap::new();
                for n in graph.luns() {
                    if let NodeKind::Lun(l) = &n.kind {
                        if let Some(w) = l.wwid.as_deref() {
                            map.entry(w).or_default().push(n);
                        }
                    }
                }
                map
            })
            .get(wwid)
            .map_or(&[], Vec::as_slice)
    }
}

/// The WWID of the LUN at `devpath`, as the graph has it now: a notice names its
/// LUN and does not copy it.
fn wwid_of<'g>(graph: &'g Graph, devpath: &str) -> Option<&'g str> {
    match &graph.node(devpath)?.kind {
        NodeKind::Lun(l) => l.wwid.as_deref(),
        _ => None,
    }
}

fn paths_of<'g>(
    graph: &'g Graph,
    volumes: &Volumes<'g>,
    hctl: Hctl,
    devpath: &str,
    wwid: Option<&str>,
) -> Vec<VolumePath> {
    let path = |n: &Node| {
        let NodeKind::Lun(l) = &n.kind else {
            return None;
        };
        let size = graph.disk_of(n).and_then(|d| match &d.kind {
            NodeKind::Disk(d) => d.info.size_bytes,
            _ => None,
        });
        Some(VolumePath {
            hctl: l.hctl,
            devpath: n.devpath.to_string(),
            size,
        })
    };
    match wwid {
        Some(w) => volumes
            .of(graph, w)
            .iter()
            .filter_map(|n| path(n))
            .collect(),
        None => vec![graph.lun(hctl).and_then(path).unwrap_or(VolumePath {
            hctl,
            devpath: devpath.to_string(),
            size: None,
        })],
    }
}

/// A `device/rescan` of one path, when its host takes part in rescans.
fn rescan_path(
    policy: &Policy,
    graph: &Graph,
    path: &VolumePath,
    reason: &str,
    rescans: &mut BTreeMap<Hctl, (String, String)>,
) {
    if graph
        .host(path.hctl.host)
        .is_some_and(|h| takes_part(policy, graph, h))
    {
        rescans
            .entry(path.hctl)
            .or_insert_with(|| (path.devpath.clone(), reason.to_string()));
    }
}

/// Does this device, which has a vHBA's WWPN, stand in the way of creating it? A
/// remote port that is not Online is what a fabric port remembers of an earlier login
/// (Blocked until dev_loss_tmo, forever with dev_loss_tmo=infinity; typically the
/// vHBA's own, before it was deleted): no port uses the WWPN now, and the kernel takes
/// the remote port up again when the vHBA logs back in.
fn holds_wwpn(node: &Node) -> bool {
    match &node.kind {
        NodeKind::RemotePort(_) => online(&node.kind),
        _ => true,
    }
}

/// Is a host or remote port logged in?
fn online(kind: &NodeKind) -> bool {
    match kind {
        NodeKind::Host(h) => h.fc.as_ref().and_then(|f| f.port_state.as_deref()) == Some("Online"),
        NodeKind::RemotePort(r) => r.port_state.as_deref() == Some("Online"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use crate::graph::NodeRecord;
    use std::path::Path;

    use super::*;
    use crate::graph::Host;
    use crate::policy::Environment;
    use crate::sysfs::{LunInfo, Npiv, RemotePortInfo, ScsiHostInfo, TargetInfo, VportInfo};

    fn w(s: &str) -> Wwn {
        s.parse().unwrap()
    }

    /// A plan on a host whose state file records nothing.
    fn plan(policy: &Policy, graph: &Graph, changes: &[Change]) -> Plan {
        super::plan(policy, graph, &Recorded::none(), changes)
    }

    struct Port<'a> {
        n: u32,
        wwpn: &'a str,
        fabric: &'a str,
        state: &'a str,
        npiv: Option<(u32, u32)>,
        driver: &'a str,
    }

    fn port(n: u32, wwpn: &str, fabric: &str, state: &str, max: u32, inuse: u32) -> Port<'static> {
        // Leaked only in tests, to keep the table of ports readable.
        let wwpn: &'static str = Box::leak(wwpn.to_string().into_boxed_str());
        let fabric: &'static str = Box::leak(fabric.to_string().into_boxed_str());
        let state: &'static str = Box::leak(state.to_string().into_boxed_str());
        Port {
            n,
            wwpn,
            fabric,
            state,
            npiv: Some((max, inuse)),
            driver: "qla2xxx",
        }
    }

    fn host_devpath(n: u32) -> String {
        format!("/devices/pci0000:00/0000:00:0{n}.0/host{n}")
    }

    fn add_port(g: &mut Graph, p: &Port) {
        g.insert(
            host_devpath(p.n),
            NodeKind::Host(Box::new(Host {
                scsi: ScsiHostInfo {
                    number: p.n,
                    proc_name: Some(p.driver.into()),
                    unique_id: None,
                    state: Some("running".into()),
                },
                fc: Some(FcHostInfo {
                    wwpn: Some(w(p.wwpn)),
                    wwnn: Some(Wwn::from_u64(w(p.wwpn).as_u64() ^ 0x0100_0000_0000_0000)),
                    fabric_name: Some(w(p.fabric)),
                    port_id: None,
                    port_state: Some(p.state.into()),
                    port_type: None,
                    speed: None,
                    symbolic_name: None,
                    npiv: p.npiv.map(|(max, inuse)| Npiv {
                        control_dir: VportControlDir::FcHost,
                        max_vports: Some(max),
                        vports_inuse: Some(inuse),
                    }),
                }),
            })),
        );
    }

    fn add_vport(g: &mut Graph, parent: u32, k: u32, wwpn: &str, symbolic: Option<&str>) {
        let devpath = format!("{}/vport-{parent}:0-{k}", host_devpath(parent));
        g.insert(
            devpath,
            NodeKind::Vport(Box::new(VportInfo {
                name: format!("vport-{parent}:0-{k}"),
                wwpn: Some(w(wwpn)),
                wwnn: Some(Wwn::from_u64(w(wwpn).as_u64() - 1)),
                vport_state: Some("Active".into()),
                vport_last_state: None,
                vport_type: Some("NPIV VPORT".into()),
                symbolic_name: symbolic.map(str::to_string),
                roles: None,
            })),
        );
    }

    fn add_lun(g: &mut Graph, host: u32, target: u32, lun: u64) -> NodeRecord {
        let tdev = format!("{}/target{host}:0:{target}", host_devpath(host));
        g.insert(
            tdev.clone(),
            NodeKind::Target(TargetInfo {
                name: format!("target{host}:0:{target}"),
                host,
                channel: 0,
                id: target,
            }),
        );
        let hctl = Hctl {
            host,
            channel: 0,
            target,
            lun,
        };
        let dev = format!("{tdev}/{hctl}");
        g.insert(
            dev.clone(),
            NodeKind::Lun(
                LunInfo {
                    scsi_type: Some(0),
                    state: Some("running".into()),
                    ..LunInfo::at(hctl)
                }
                .into(),
            ),
        );
        g.record(g.node(&dev).unwrap())
    }

    fn policy(text: &str) -> Policy {
        Policy::from_str(Path::new("p.toml"), text, &Environment::fixed("seed"))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn creates(p: &Plan) -> Vec<(String, u32)> {
        p.steps
            .iter()
            .filter_map(|s| match &s.action {
                Action::CreateVhba { vhba, parent, .. } => Some((vhba.clone(), parent.number)),
                _ => None,
            })
            .collect()
    }

    fn waits(p: &Plan) -> Vec<String> {
        p.steps
            .iter()
            .filter_map(|s| match &s.action {
                Action::Wait { reason, .. } => Some(reason.to_string()),
                _ => None,
            })
            .collect()
    }

    const FAB_A: &str = "0x100000051e0d4f21";
    const FAB_B: &str = "0x100000051e0d4f99";

    fn two_fabrics() -> Graph {
        let mut g = Graph::new();
        add_port(
            &mut g,
            &port(5, "0x2100001b32a9da4e", FAB_A, "Online", 254, 3),
        );
        add_port(
            &mut g,
            &port(6, "0x2100001b32a9da4f", FAB_B, "Online", 254, 0),
        );
        add_port(
            &mut g,
            &port(7, "0x2100001b32a9da40", FAB_A, "Online", 254, 0),
        );
        g
    }

    #[test]
    fn parent_by_wwpn_names_exactly_that_port() {
        let p = plan(
            &policy("[[vhba]]\nname = \"a\"\nparent_wwpn = \"21:00:00:1b:32:a9:da:4f\"\n"),
            &two_fabrics(),
            &[],
        );
        assert_eq!(creates(&p), [("a".to_string(), 6)]);
        let step = &p.steps[0];
        assert_eq!(step.origin.as_ref().unwrap().to_string(), "p.toml:1:1");
        assert!(
            step.to_string().contains("parent_wwpn 0x2100001b32a9da4f"),
            "{step}"
        );
    }

    #[test]
    fn parent_by_fabric_takes_the_lowest_wwpn_on_that_fabric() {
        let p = plan(
            &policy(&format!(
                "[[vhba]]\nname = \"a\"\nparent_fabric = \"{FAB_A}\"\n"
            )),
            &two_fabrics(),
            &[],
        );
        // host7 (…da40) sorts before host5 (…da4e), whatever their host numbers.
        assert_eq!(creates(&p), [("a".to_string(), 7)]);
    }

    #[test]
    fn auto_skips_full_and_offline_ports_comparing_numbers_as_numbers() {
        let mut g = Graph::new();
        add_port(
            &mut g,
            &port(1, "0x2100000000000001", FAB_A, "Linkdown", 254, 0),
        );
        add_port(
            &mut g,
            &port(2, "0x2100000000000002", FAB_A, "Online", 9, 9),
        );
        // "9" < "10" is false as strings: a string compare would call this one full.
        add_port(
            &mut g,
            &port(3, "0x2100000000000003", FAB_A, "Online", 10, 9),
        );
        let p = plan(
            &policy("[[vhba]]\nname = \"a\"\nparent = \"auto\"\n"),
            &g,
            &[],
        );
        assert_eq!(creates(&p), [("a".to_string(), 3)]);
    }

    #[test]
    fn a_parent_named_by_number_that_is_not_fc_is_said_to_lack_npiv() {
        let mut g = Graph::new();
        g.insert(
            host_devpath(2),
            NodeKind::Host(Box::new(Host {
                scsi: ScsiHostInfo {
                    number: 2,
                    proc_name: Some("scsi_debug".into()),
                    unique_id: None,
                    state: Some("running".into()),
                },
                fc: None,
            })),
        );
        let p = plan(
            &policy("[[vhba]]\nname = \"a\"\nparent = \"host2\"\n"),
            &g,
            &[],
        );
        assert_eq!(
            waits(&p),
            ["host2 (not an FC port) cannot create vports (no NPIV support in the driver)"]
        );
        let p = plan(
            &policy("[[vhba]]\nname = \"a\"\nparent = \"host7\"\n"),
            &g,
            &[],
        );
        assert_eq!(waits(&p), ["no FC port matches parent = host7"]);
    }

    #[test]
    fn waits_say_why_link_down_full_or_no_match() {
        let mut g = Graph::new();
        add_port(
            &mut g,
            &port(1, "0x2100000000000001", FAB_A, "Linkdown", 254, 0),
        );
        let p = plan(
            &policy("[[vhba]]\nname = \"a\"\nparent = \"auto\"\n"),
            &g,
            &[],
        );
        assert_eq!(waits(&p), ["parent link not Online: host1 is Linkdown"]);

        let mut g = Graph::new();
        add_port(
            &mut g,
            &port(1, "0x2100000000000001", FAB_A, "Online", 8, 8),
        );
        let p = plan(
            &policy("[[vhba]]\nname = \"a\"\nparent = \"auto\"\n"),
            &g,
            &[],
        );
        assert_eq!(waits(&p), ["parent full: host1 has 8 of 8 vports in use"]);

        let p = plan(
            &policy("[[vhba]]\nname = \"a\"\nparent_wwpn = \"0x2100000000000099\"\n"),
            &g,
            &[],
        );
        assert_eq!(
            waits(&p),
            ["no FC port matches parent_wwpn 0x2100000000000099"]
        );

        let mut g = Graph::new();
        let mut p1 = port(1, "0x2100000000000001", FAB_A, "Online", 0, 0);
        p1.npiv = None;
        add_port(&mut g, &p1);
        let p = plan(
            &policy("[[vhba]]\nname = \"a\"\nparent_wwpn = \"0x2100000000000001\"\n"),
            &g,
            &[],
        );
        assert_eq!(
            waits(&p),
            ["host1 cannot create vports (no NPIV support in the driver)"]
        );
        assert!(p.is_settled());
    }

    #[test]
    fn two_vhbas_do_not_both_take_the_last_free_slot() {
        let mut g = Graph::new();
        add_port(
            &mut g,
            &port(1, "0x2100000000000001", FAB_A, "Online", 4, 3),
        );
        let p = plan(&policy("[[vhba]]\nname = \"a\"\nparent = \"auto\"\n[[vhba]]\nname = \"b\"\nparent = \"auto\"\n"), &g, &[]);
        assert_eq!(creates(&p), [("a".to_string(), 1)]);
        assert_eq!(waits(&p), ["parent full: host1 has 4 of 4 vports in use"]);
    }

    #[test]
    fn plan_after_apply_is_empty_and_unmarked_vports_get_marked() {
        let pol =
            policy("[[vhba]]\nname = \"a\"\nwwpn = \"0x5001a4a000000b01\"\nparent = \"auto\"\n");
        let mut g = two_fabrics();
        add_vport(&mut g, 5, 0, "0x5001a4a000000b01", Some("hbad:a"));
        let p = plan(&pol, &g, &[]);
        assert!(p.steps.is_empty(), "{:?}", p.steps);

        let mut g = two_fabrics();
        add_vport(&mut g, 5, 0, "0x5001a4a000000b01", None);
        let p = plan(&pol, &g, &[]);
        assert!(
            matches!(&p.steps[..], [Step { action: Action::SetSymbolicName { name, .. }, .. }] if name == "hbad:a")
        );
    }

    /// A record of a mark hbad wrote (symbolic_name carries it).
    fn bound(name: &str) -> OwnedRecord {
        OwnedRecord {
            name: name.into(),
            wwnn: Wwn::from_u64(0x5001_a4a0_0000_0b00),
            why: String::new(),
            mark_pending: false,
        }
    }

    /// A record standing in for a mark the driver refused.
    fn refused(name: &str) -> OwnedRecord {
        OwnedRecord {
            why: "EACCES".into(),
            ..bound(name)
        }
    }

    #[test]
    fn owned_vhbas_left_out_of_the_policy_are_kept_unless_pruning() {
        let mut g = two_fabrics();
        add_vport(&mut g, 5, 0, "0x5001a4a000000b01", Some("hbad:old"));
        add_vport(&mut g, 5, 1, "0x5001a4a000000c01", Some("made-by-libvirt"));
        let recorded: Recorded = [(w("0x5001a4a000000b01"), bound("old"))]
            .into_iter()
            .collect();
        let plan = |pol: &Policy| super::plan(pol, &g, &recorded, &[]);
        let p = plan(&policy(""));
        assert!(
            matches!(&p.steps[..], [Step { action: Action::Keep { vhba: Some(n), .. }, .. }] if n == "old")
        );
        assert!(p.is_settled());
        let p = plan(&policy("[ownership]\nprune = true\n"));
        // Only hbad's own vport is deleted; the other one is never touched.
        assert!(
            matches!(&p.steps[..], [Step { action: Action::DeleteVhba { wwpn, .. }, .. }] if *wwpn == w("0x5001a4a000000b01"))
        );
    }

    #[test]
    fn an_owned_vhba_that_cannot_be_deleted_yet_is_kept_saying_why() {
        let mut g = two_fabrics();
        add_vport(&mut g, 5, 0, "0x5001a4a000000b01", Some("hbad:old"));
        let devpath = format!("{}/vport-5:0-0", host_devpath(5));
        let Some(NodeKind::Vport(v)) = g.node(&devpath).map(|n| n.kind.clone()) else {
            panic!("no vport")
        };
        g.insert(
            devpath,
            NodeKind::Vport(Box::new(VportInfo { wwnn: None, ..*v })),
        );
        let recorded: Recorded = [(w("0x5001a4a000000b01"), bound("old"))]
            .into_iter()
            .collect();
        let p = super::plan(&policy("[ownership]\nprune = true\n"), &g, &recorded, &[]);
        let [Step {
            action: Action::Keep { vhba: Some(n), .. },
            reason,
            ..
        }] = &p.steps[..]
        else {
            panic!("{:#?}", p.steps)
        };
        assert_eq!(n, "old");
        assert!(
            reason.contains("prune = true") && reason.contains("no node_name"),
            "{reason}"
        );
    }

    #[test]
    fn a_mark_hbad_did_not_write_is_never_pruned() {
        // Named `hbad:…` by hand or by another tool: the policy does not declare
        // these WWPNs, and the state file does not record them (or records another
        // name, or a mark since overwritten).
        let mut g = two_fabrics();
        add_vport(&mut g, 5, 0, "0x5001a4a000000b01", Some("hbad:foo"));
        add_vport(&mut g, 5, 1, "0x5001a4a000000c01", Some("hbad:a"));
        add_vport(&mut g, 5, 2, "0x5001a4a000000d01", Some("hbad:x"));
        add_vport(&mut g, 5, 3, "0x5001a4a000000e01", Some("hbad:"));
        add_vport(&mut g, 5, 4, "0x5001a4a000000f01", Some("by hand"));
        let recorded: Recorded = [
            (w("0x5001a4a000000d01"), bound("y")),
            (w("0x5001a4a000000f01"), bound("z")),
        ]
        .into_iter()
        .collect();
        // `a` is declared, at another WWPN: its name on this vport binds nothing.
        let pol = policy(
            "[ownership]\nprune = true\n[[vhba]]\nname = \"a\"\nwwpn = \"0x5001a4a000000a01\"\nparent = \"auto\"\n",
        );
        let p = super::plan(&pol, &g, &recorded, &[]);
        assert!(
            !p.steps
                .iter()
                .any(|s| matches!(s.action, Action::DeleteVhba { .. } | Action::Keep { .. })),
            "{:#?}",
            p.steps
        );
        // Declared at its WWPN, the hand-made vport is adopted: marked, not deleted.
        let pol = policy(
            "[ownership]\nprune = true\n[[vhba]]\nname = \"foo\"\nwwpn = \"0x5001a4a000000b01\"\nparent = \"auto\"\n",
        );
        let p = super::plan(&pol, &g, &recorded, &[]);
        assert!(p.is_settled(), "{:#?}", p.steps);
    }

    #[test]
    fn a_vhba_owned_through_the_state_file_is_neither_re_marked_nor_left_out_of_pruning() {
        // The driver refused symbolic_name: the vports read as unmarked, and only
        // the state file says they are hbad's.
        let mut g = two_fabrics();
        add_vport(&mut g, 5, 0, "0x5001a4a000000b01", None);
        add_vport(&mut g, 5, 1, "0x5001a4a000000c01", Some("made-by-libvirt"));
        add_vport(&mut g, 5, 2, "0x5001a4a000000d01", None);
        let recorded: Recorded = [
            (w("0x5001a4a000000b01"), refused("a")),
            (w("0x5001a4a000000c01"), refused("old")),
        ]
        .into_iter()
        .collect();
        let pol = policy(
            "[ownership]\nprune = true\n[[vhba]]\nname = \"a\"\nwwpn = \"0x5001a4a000000b01\"\nparent = \"auto\"\n",
        );
        let p = super::plan(&pol, &g, &recorded, &[]);
        // a is declared and recorded under its name: nothing to mark. old is
        // recorded but no longer declared: deleted, whatever its symbolic_name
        // shows. The unrecorded, unmarked vport is never touched.
        assert!(
            matches!(&p.steps[..], [Step { action: Action::DeleteVhba { vhba: Some(n), wwpn, .. }, .. }] if n == "old" && *wwpn == w("0x5001a4a000000c01")),
            "{:#?}",
            p.steps
        );
        // Without pruning it is kept, under the recorded name.
        let pol =
            policy("[[vhba]]\nname = \"a\"\nwwpn = \"0x5001a4a000000b01\"\nparent = \"auto\"\n");
        let p = super::plan(&pol, &g, &recorded, &[]);
        assert!(
            matches!(&p.steps[..], [Step { action: Action::Keep { vhba: Some(n), .. }, .. }] if n == "old"),
            "{:#?}",
            p.steps
        );
        assert!(p.is_settled());
        // Recorded under another name (renamed in the policy): mark it anew.
        let renamed: Recorded = [(w("0x5001a4a000000b01"), refused("before"))]
            .into_iter()
            .collect();
        let p = super::plan(&pol, &g, &renamed, &[]);
        assert!(
            matches!(&p.steps[..], [Step { action: Action::SetSymbolicName { vhba, .. }, .. }] if vhba == "a"),
            "{:#?}",
            p.steps
        );
        // And with nothing recorded, the same host asks for the mark.
        let p = super::plan(&pol, &g, &Recorded::none(), &[]);
        assert!(matches!(
            &p.steps[..],
            [Step {
                action: Action::SetSymbolicName { .. },
                ..
            }]
        ));
    }

    /// A record of a vport adopted from the intent of a create that stopped
    /// before marking it.
    fn adopted(name: &str) -> OwnedRecord {
        OwnedRecord {
            why: "hbad stopped between vport_create and marking it".into(),
            mark_pending: true,
            ..bound(name)
        }
    }

    #[test]
    fn a_declared_vhba_adopted_before_its_mark_is_marked_once() {
        let pol =
            policy("[[vhba]]\nname = \"a\"\nwwpn = \"0x5001a4a000000b01\"\nparent = \"auto\"\n");
        let wwpn = w("0x5001a4a000000b01");
        let plan = |symbolic: Option<&str>, rec: OwnedRecord| {
            let mut g = two_fabrics();
            add_vport(&mut g, 5, 0, "0x5001a4a000000b01", symbolic);
            super::plan(&pol, &g, &[(wwpn, rec)].into_iter().collect(), &[])
        };
        // Recorded as hbad's, unmarked: the mark is written.
        for symbolic in [None, Some("")] {
            let p = plan(symbolic, adopted("a"));
            let [Step {
                action: Action::SetSymbolicName { vhba, name, .. },
                reason,
                ..
            }] = &p.steps[..]
            else {
                panic!("{:#?}", p.steps)
            };
            assert_eq!((vhba.as_str(), name.as_str()), ("a", "hbad:a"));
            assert!(reason.contains("adopted"), "{reason}");
        }
        // Marked (by the create before it stopped, or since): nothing to do.
        let p = plan(Some("hbad:a"), adopted("a"));
        assert!(p.steps.is_empty(), "{:#?}", p.steps);
        // The driver refused the mark since: not asked again.
        let p = plan(None, refused("a"));
        assert!(p.steps.is_empty(), "{:#?}", p.steps);
        // Adopted under another name (renamed in the policy since): marked anew.
        let p = plan(None, adopted("before"));
        assert!(
            matches!(&p.steps[..], [Step { action: Action::SetSymbolicName { vhba, .. }, reason, .. }] if vhba == "a" && !reason.contains("adopted")),
            "{:#?}",
            p.steps
        );
    }

    fn ua(node: &NodeRecord, reason: &str) -> Change {
        Change::Notice {
            node: node.clone().into(),
            notice: Notice::UnitAttention(reason.into()),
        }
    }

    #[test]
    fn unit_attentions_of_one_target_make_one_target_scan() {
        let mut g = two_fabrics();
        let l0 = add_lun(&mut g, 5, 2, 0);
        let l1 = add_lun(&mut g, 5, 2, 1);
        let l9 = add_lun(&mut g, 6, 0, 9);
        let storm: Vec<Change> = (0..1000)
            .flat_map(|_| {
                [
                    ua(&l0, "REPORTED_LUNS_DATA_HAS_CHANGED"),
                    ua(&l1, "REPORTED_LUNS_DATA_HAS_CHANGED"),
                ]
            })
            .chain([
                ua(&l9, "REPORTED_LUNS_DATA_HAS_CHANGED"),
                ua(&l9, "POWER_ON_RESET_OCCURRED"),
            ])
            .collect();
        let p = plan(&policy(""), &g, &storm);
        let scans: Vec<String> = p.steps.iter().map(|s| s.to_string()).collect();
        // Each target scanned once, then asked once which LUNs it stopped reporting.
        assert_eq!(scans.len(), 4, "{scans:#?}");
        assert!(scans[0].starts_with(
            "scan host5 target 0:2 — 5:0:2:0 reported REPORTED_LUNS_DATA_HAS_CHANGED"
        ));
        assert!(scans[1].starts_with("scan host6 target 0:0"));
        assert!(scans[2].starts_with("find LUNs gone from host5 target 0:2 —"));
        assert!(scans[3].starts_with("find LUNs gone from host6 target 0:0 —"));
        assert!(matches!(
            &p.steps[2].action,
            Action::FindGone { remove: false, target_devpath, .. } if target_devpath.ends_with("/target5:0:2")
        ));
        let p = plan(&policy("[rescan]\nremove_gone = true\n"), &g, &storm);
        assert!(
            p.steps[2]
                .to_string()
                .contains(", deleting those nothing holds"),
            "{}",
            p.steps[2]
        );
        let p = plan(&policy("[rescan]\non_lun_change = false\n"), &g, &storm);
        assert!(p.steps.is_empty(), "{:?}", p.steps);
        let p = plan(&policy("[rescan]\nscope = \"host\"\n"), &g, &storm);
        assert!(matches!(
            &p.steps[0].action,
            Action::Scan {
                scope: ScanScope::Host,
                ..
            }
        ));
    }

    /// Two paths (host5 and host6) of one volume, each with a disk of `size`.
    fn two_paths(size: u64) -> (Graph, NodeRecord, NodeRecord) {
        let mut g = two_fabrics();
        let mut path = |host: u32, disk: &str| {
            let lun = add_lun(&mut g, host, 0, 3);
            let mut kind = lun.kind.clone();
            if let NodeKind::Lun(l) = &mut kind {
                l.edit(|l| l.wwid = Some("naa.600140500000000000000000000000a3".into()));
            }
            g.insert(lun.devpath.clone(), kind);
            g.insert(
                format!("{}/block/{disk}", lun.devpath),
                NodeKind::Disk(crate::graph::Disk {
                    info: crate::sysfs::BlockInfo {
                        name: disk.into(),
                        major_minor: None,
                        size_bytes: Some(size),
                        read_only: None,
                        removable: None,
                        multipath: None,
                    },
                    links: Vec::new(),
                }),
            );
            g.record(g.node(&lun.devpath).unwrap())
        };
        let a = path(5, "sdc");
        let b = path(6, "sdd");
        (g, a, b)
    }

    fn rescanned(p: &Plan) -> Vec<String> {
        p.steps
            .iter()
            .filter_map(|s| match &s.action {
                Action::RescanDevice { hctl, .. } => Some(hctl.to_string()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_capacity_change_on_one_path_rescans_every_path_of_the_volume() {
        let (g, a, _) = two_paths(1 << 30);
        let p = plan(&policy(""), &g, &[ua(&a, "CAPACITY_DATA_HAS_CHANGED")]);
        assert_eq!(rescanned(&p), ["5:0:0:3", "6:0:0:3"]);
    }

    #[test]
    fn a_path_re_read_to_a_new_size_has_the_other_paths_follow() {
        let (mut g, a, _) = two_paths(1 << 30);
        let disk = g.disk_of(g.node(&a.devpath).unwrap()).unwrap().clone();
        let NodeKind::Disk(mut grown) = disk.kind.clone() else {
            panic!()
        };
        grown.info.size_bytes = Some(2 << 30);
        g.insert(disk.devpath.to_string(), NodeKind::Disk(grown));
        let change = Change::Updated {
            before: Box::new(disk.kind.clone()),
            node: Box::new(g.record(g.node(&disk.devpath).unwrap())),
        };
        // Path b still shows the old size: it is re-read; a is not again.
        assert_eq!(
            rescanned(&plan(&policy(""), &g, std::slice::from_ref(&change))),
            ["6:0:0:3"]
        );
        let off = policy("[rescan]\non_capacity_change = false\n");
        assert!(rescanned(&plan(&off, &g, &[change])).is_empty());
    }

    #[test]
    fn capacity_changes_rescan_the_device_and_excluded_hosts_are_left_alone() {
        let mut g = two_fabrics();
        let mut raid = port(8, "0x2100000000000008", FAB_A, "Online", 0, 0);
        raid.driver = "megaraid_sas";
        add_port(&mut g, &raid);
        let l = add_lun(&mut g, 5, 0, 3);
        let local = add_lun(&mut g, 8, 0, 0);
        let p = plan(
            &policy(""),
            &g,
            &[
                ua(&l, "CAPACITY_DATA_HAS_CHANGED"),
                ua(&local, "REPORTED_LUNS_DATA_HAS_CHANGED"),
            ],
        );
        assert_eq!(p.steps.len(), 1, "{:?}", p.steps);
        assert!(
            matches!(&p.steps[0].action, Action::RescanDevice { hctl, .. } if hctl.to_string() == "5:0:0:3")
        );
        // The same with capacity rescans off: nothing.
        let p = plan(
            &policy("[rescan]\non_capacity_change = false\n"),
            &g,
            &[ua(&l, "CAPACITY_DATA_HAS_CHANGED")],
        );
        assert!(p.steps.is_empty());
    }

    #[test]
    fn a_remote_port_left_by_an_earlier_login_does_not_hold_the_wwpn() {
        let text = "[[vhba]]\nname = \"a\"\nparent_wwpn = \"0x2100001b32a9da4f\"\nwwpn = \"0x5001a4a000000b01\"\nwwnn = \"0x5001a4a000000b00\"\n";
        let mut g = two_fabrics();
        let devpath = format!("{}/rport-5:0-9", host_devpath(5));
        let mut rp = RemotePortInfo {
            name: "rport-5:0-9".into(),
            wwpn: Some(w("0x5001a4a000000b01")),
            wwnn: None,
            port_id: None,
            roles: vec!["FCP Initiator".into()],
            port_state: Some("Online".into()),
            scsi_target_id: None,
        };
        g.insert(devpath.clone(), NodeKind::RemotePort(Box::new(rp.clone())));
        let p = plan(&policy(text), &g, &[]);
        assert!(creates(&p).is_empty());
        assert_eq!(
            waits(&p),
            ["WWPN 0x5001a4a000000b01 is already used by remote port rport-5:0-9"]
        );
        for state in ["Blocked", "Not Present"] {
            rp.port_state = Some(state.into());
            g.insert(devpath.clone(), NodeKind::RemotePort(Box::new(rp.clone())));
            let p = plan(&policy(text), &g, &[]);
            assert_eq!(creates(&p), [("a".to_string(), 6)], "{state}");
        }
    }

    #[test]
    fn a_remote_port_coming_online_scans_its_target() {
        let mut g = two_fabrics();
        let devpath = format!("{}/rport-5:0-3", host_devpath(5));
        let mut rp = RemotePortInfo {
            name: "rport-5:0-3".into(),
            wwpn: Some(w("0x500601603ce0a1b2")),
            wwnn: None,
            port_id: None,
            roles: vec!["FCP Target".into()],
            port_state: Some("Blocked".into()),
            scsi_target_id: Some(4),
        };
        g.insert(devpath.clone(), NodeKind::RemotePort(Box::new(rp.clone())));
        let before = g.node(&devpath).unwrap().kind.clone();
        rp.port_state = Some("Online".into());
        g.insert(devpath.clone(), NodeKind::RemotePort(Box::new(rp)));
        let change = Change::Updated {
            before: Box::new(before),
            node: Box::new(g.record(g.node(&devpath).unwrap())),
        };
        let p = plan(&policy(""), &g, &[change]);
        assert!(
            matches!(&p.steps[..], [Step { action: Action::Scan { scope: ScanScope::Target { channel: 0, target: 4 }, host }, .. }] if host.number == 5)
        );
        let p = plan(&policy("[rescan]\non_port_online = false\n"), &g, &[]);
        assert!(p.steps.is_empty());
    }
}

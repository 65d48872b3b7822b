//! `list`, `tree`, `show`, `luns`: views of the graph loaded from sysfs.
//!
//! Text for people goes through [`super::render`]; `--json` prints the shapes
//! documented there.

use std::collections::{HashMap, HashSet};
use std::process::ExitCode;

use anyhow::Context;

use super::details::{self, Details};
use super::policy::{load_graph, load_graph_with};
use super::render::{self, NodeView, RelationView, ShowView, Streamed};
use super::{Cap, Global};
use crate::graph::{Graph, Lookup, Node, NodeKind};
use crate::listing::{DiskLinks, Feed, LunState, Skeleton, TargetLuns, TargetRead};
use crate::sysfs::Detail;
use crate::terminal::echoed;

fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    render::emit_json(value)
}

/// The graph for a listing: text shows a few attributes of each device, so only
/// those are read; JSON shows them all.
fn load_listing(g: &Global) -> anyhow::Result<Graph> {
    load_graph_with(
        g,
        if g.json {
            Detail::Full
        } else {
            Detail::Listing
        },
    )
}

fn has_cap(graph: &Graph, node: &Node, cap: Cap) -> bool {
    match (&node.kind, cap) {
        (NodeKind::Host(_), Cap::ScsiHost) => true,
        (NodeKind::Host(h), Cap::FcHost) => h.fc.is_some(),
        (NodeKind::Host(h), Cap::Vports) => h.fc.as_ref().is_some_and(|f| f.npiv.is_some()),
        (NodeKind::Host(_), Cap::Vhba) => graph.is_vhba(node),
        (NodeKind::Vport(_), Cap::Vports) => false,
        (NodeKind::RemotePort(_), Cap::Rport) => true,
        (NodeKind::Target(_), Cap::Target) => true,
        (NodeKind::Lun(_), Cap::Lun) => true,
        (NodeKind::Disk(_), Cap::Block) => true,
        _ => false,
    }
}

fn cap_word(cap: Cap) -> &'static str {
    match cap {
        Cap::ScsiHost => "scsi_host",
        Cap::FcHost => "fc_host",
        Cap::Vports => "vports",
        Cap::Vhba => "vhba",
        Cap::Rport => "rport",
        Cap::Target => "target",
        Cap::Lun => "lun",
        Cap::Block => "block",
    }
}

/// Every device, or those of one capability, like `virsh nodedev-list --cap`.
pub fn list(g: &Global, cap: Option<Cap>) -> anyhow::Result<ExitCode> {
    let graph = load_listing(g)?;
    let mut nodes: Vec<&Node> = graph
        .nodes()
        .filter(|n| cap.is_none_or(|c| has_cap(&graph, n, c)))
        .collect();
    render::sort_devices(&mut nodes);
    if g.json {
        print_json(&Streamed(|| nodes.iter().map(|n| render::view(&graph, n))))?;
    } else if nodes.is_empty() {
        match cap {
            Some(c) => eprintln!(
                "no {} devices under {}",
                cap_word(c),
                g.sysfs_root.display()
            ),
            None => eprintln!("no SCSI devices under {}", g.sysfs_root.display()),
        }
    } else {
        let rows = || nodes.iter().map(|n| render::list_row(&graph, n));
        render::emit_with(|out| render::write_table(&render::LIST_HEADER, rows, out))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Hosts -> vports -> vHBAs, remote ports -> targets -> LUNs -> disks.
pub fn tree(g: &Global) -> anyhow::Result<ExitCode> {
    check_sysfs(g)?;
    crate::listing::lean_heap();
    let Some(skeleton) = Skeleton::load(&g.sysfs(), listing_detail(g)) else {
        let graph = load_listing(g)?;
        if g.json {
            print_json(&render::TreeStream::roots(&graph))?;
        } else if graph.is_empty() {
            eprintln!("no SCSI hosts under {}", g.sysfs_root.display());
        } else {
            render::emit_with(|out| render::write_tree(&graph, out))?;
        }
        return Ok(ExitCode::SUCCESS);
    };
    // JSON says an empty tree with `[]`, text on stderr.
    if !g.json && skeleton.graph().is_empty() {
        eprintln!("no SCSI hosts under {}", g.sysfs_root.display());
    } else {
        render::emit_with(|out| write_tree_streamed(&skeleton, g.json, out))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `hbad tree` from a skeleton, each target's LUNs read as the tree reaches it.
pub fn write_tree_streamed(
    skeleton: &Skeleton,
    json: bool,
    out: &mut dyn std::io::Write,
) -> std::io::Result<()> {
    let has_luns = |n: &Node| matches!(n.kind, NodeKind::Target(_)) && skeleton.has_luns(n);
    let targets: Vec<&Node> = render::tree_order(skeleton.graph())
        .into_iter()
        .filter(|n| has_luns(n))
        .collect();
    if json {
        return skeleton.stream(
            &targets,
            DiskLinks::Read,
            LunState::Read,
            |luns| luns,
            |feed| {
                let below = |node: &Node| -> Option<Graph> {
                    if !has_luns(node) {
                        return None;
                    }
                    let luns = feed.next()?;
                    debug_assert_eq!(luns.target().map(|t| &t.devpath), Some(&node.devpath));
                    Some(luns.graph)
                };
                let below = std::cell::RefCell::new(below);
                let written = render::write_json(
                    &render::TreeStream::roots_with(skeleton.graph(), &below),
                    out,
                );
                written
            },
        );
    }
    // Each target's lines are made where its LUNs were read: the prefix they
    // start with comes from a walk of the skeleton that writes nothing.
    let mut prefixes: HashMap<String, String> = HashMap::new();
    render::write_tree_with(
        skeleton.graph(),
        &mut |node, prefix, _| {
            if has_luns(node) {
                prefixes.insert(node.devpath.to_string(), prefix.to_string());
            }
            Ok(false)
        },
        &mut std::io::sink(),
    )?;
    let lines = |luns: TargetLuns| {
        let mut lines = Vec::new();
        if let Some(target) = luns.target() {
            let prefix = prefixes
                .get(target.devpath.as_str())
                .map_or("", String::as_str);
            // Writing to a Vec cannot fail.
            let _ = render::write_subtree(&luns.graph, target, prefix, &mut lines);
        }
        lines
    };
    skeleton.stream(&targets, DiskLinks::Read, LunState::Read, lines, |feed| {
        render::write_tree_with(
            skeleton.graph(),
            &mut |node, _, out| {
                if !has_luns(node) {
                    return Ok(false);
                }
                if let Some(lines) = feed.next() {
                    out.write_all(&lines)?;
                }
                Ok(true)
            },
            out,
        )
    })
}

/// The sysfs root must look like one (`class/` there) before anything is read.
fn check_sysfs(g: &Global) -> anyhow::Result<()> {
    let root = g.sysfs_root.as_path();
    std::fs::metadata(root.join("class"))
        .with_context(|| format!("cannot read {}: is sysfs mounted there?", root.display()))?;
    Ok(())
}

fn listing_detail(g: &Global) -> Detail {
    if g.json {
        Detail::Full
    } else {
        Detail::Listing
    }
}

/// What a lookup searched for, in words, for "not found" errors.
fn looked_for(lookup: &Lookup) -> String {
    match lookup {
        Lookup::Host(n) => format!("SCSI host {n}"),
        Lookup::Wwpn(w) => format!("an FC host, vHBA, vport or remote port with WWPN {w}"),
        Lookup::Hctl(h) => format!("the SCSI device {h}"),
        Lookup::Disk(d) => format!("a disk named {} on a SCSI device", echoed(d)),
        Lookup::Name(n) => format!("a device with kernel name or devpath `{}`", echoed(n)),
    }
}

pub(super) fn resolve<'a>(graph: &'a Graph, device: &str) -> anyhow::Result<Vec<&'a Node>> {
    let lookup: Lookup = device
        .parse()
        .map_err(super::BadArgument)
        .with_context(|| format!("cannot read `{}` as a device name", echoed(device)))?;
    let mut found = graph.find(&lookup);
    found.sort_by(|a, b| render::device_order(a, b));
    if found.is_empty() {
        return Err(super::NotFound(format!(
            "no device `{}`: looked for {}; `hbad list` shows the devices there are",
            echoed(device),
            looked_for(&lookup)
        ))
        .into());
    }
    Ok(found)
}

/// Nodes below `node` of one kind, whose nearest host is `host` (so a physical HBA
/// does not claim what its vHBAs reach).
fn below<'a>(graph: &'a Graph, node: &'a Node, pred: impl Fn(&NodeKind) -> bool) -> Vec<&'a Node> {
    let mut found = Vec::new();
    let mut stack: Vec<&Node> = graph.children(node).collect();
    while let Some(n) = stack.pop() {
        if matches!(n.kind, NodeKind::Vport(_) | NodeKind::Host(_)) {
            continue;
        }
        if pred(&n.kind) {
            found.push(n);
        }
        stack.extend(graph.children(n));
    }
    render::sort_devices(&mut found);
    found
}

/// The devices a device relates to: parent HBA of a vHBA, vports of an HBA, remote
/// port of a LUN, disk, ...
pub fn relations(graph: &Graph, node: &Node) -> Vec<RelationView> {
    let mut rel: Vec<(&'static str, &Node)> = Vec::new();
    match &node.kind {
        NodeKind::Host(_) => {
            if let Some(vport) = graph.vport_of_vhba(node) {
                if let Some(parent) = graph.vport_parent_host(vport) {
                    rel.push(("parent_hba", parent));
                }
                rel.push(("vport", vport));
            }
            let mut children: Vec<&Node> = graph.children(node).collect();
            children.sort_by(|a, b| render::device_order(a, b));
            for c in &children {
                if let NodeKind::Vport(_) = c.kind {
                    rel.push(("vport", c));
                    if let Some(vhba) = graph.vhba_of_vport(c) {
                        rel.push(("vhba", vhba));
                    }
                }
            }
            for c in children {
                if let NodeKind::RemotePort(_) = c.kind {
                    rel.push(("remote_port", c));
                }
            }
            for t in below(graph, node, |k| matches!(k, NodeKind::Target(_))) {
                rel.push(("target", t));
            }
            for l in below(graph, node, |k| matches!(k, NodeKind::Lun(_))) {
                rel.push(("lun", l));
            }
        }
        NodeKind::Vport(_) => {
            if let Some(p) = graph.vport_parent_host(node) {
                rel.push(("parent_hba", p));
            }
            if let Some(h) = graph.vhba_of_vport(node) {
                rel.push(("vhba", h));
            }
        }
        NodeKind::RemotePort(_) | NodeKind::Target(_) => {
            if let Some(h) = graph.host_of(node) {
                rel.push(("host", h));
            }
            if let Some(r) = graph
                .remote_port_of(node)
                .filter(|r| r.devpath != node.devpath)
            {
                rel.push(("remote_port", r));
            }
            for t in below(graph, node, |k| matches!(k, NodeKind::Target(_))) {
                rel.push(("target", t));
            }
            for l in below(graph, node, |k| matches!(k, NodeKind::Lun(_))) {
                rel.push(("lun", l));
            }
        }
        NodeKind::Lun(_) | NodeKind::Disk(_) => {
            if let NodeKind::Disk(_) = node.kind {
                if let Some(l) = graph.parent(node) {
                    rel.push(("lun", l));
                }
            }
            if let Some(h) = graph.host_of(node) {
                rel.push(("host", h));
                if let Some(p) = graph
                    .vport_of_vhba(h)
                    .and_then(|v| graph.vport_parent_host(v))
                {
                    rel.push(("parent_hba", p));
                }
            }
            if let Some(r) = graph.remote_port_of(node) {
                rel.push(("remote_port", r));
            }
            if let Some(t) = graph
                .ancestor(node, |k| matches!(k, NodeKind::Target(_)))
                .filter(|t| t.devpath != node.devpath)
            {
                rel.push(("target", t));
            }
            if let Some(d) = graph.disk_of(node) {
                rel.push(("disk", d));
            }
        }
    }
    rel.into_iter()
        .map(|(relation, n)| RelationView {
            relation,
            device: render::view(graph, n),
        })
        .collect()
}

/// One device: every attribute hbad reads, and the devices it relates to.
pub fn show(g: &Global, device: &str) -> anyhow::Result<ExitCode> {
    let graph = load_graph(g)?;
    let found = resolve(&graph, device)?;
    let sysfs = g.sysfs();
    let shows: Vec<ShowWithDetails> = found
        .iter()
        .map(|n| ShowWithDetails {
            show: ShowView {
                device: render::view(&graph, n),
                relations: relations(&graph, n),
            },
            sysfs: details::of_node(&sysfs, n),
        })
        .collect();
    if g.json {
        print_json(&shows)?;
    } else {
        let text: Vec<String> = shows
            .iter()
            .map(|s| render::render_show(&s.show) + &s.sysfs.render())
            .collect();
        render::emit_all(&text.join("\n"))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// A device as `show` prints it, with what `systool -v` would add.
#[derive(serde::Serialize)]
struct ShowWithDetails {
    #[serde(flatten)]
    show: ShowView,
    #[serde(skip_serializing_if = "Details::is_empty")]
    sysfs: Details,
}

/// The LUNs a filter covers: a host (by number or WWPN) covers the LUNs it reaches
/// itself, a vport those of its vHBA, a remote port (a target's WWPN) or target
/// those behind it, a LUN or disk itself.
pub(super) fn luns_of<'a>(graph: &'a Graph, matched: &[&'a Node]) -> Vec<&'a Node> {
    let mut scope: HashSet<&str> = HashSet::new();
    for m in matched {
        match m.kind {
            NodeKind::Vport(_) => {
                if let Some(h) = graph.vhba_of_vport(m) {
                    scope.insert(&h.devpath);
                }
            }
            NodeKind::Disk(_) => {
                if let Some(l) = graph.parent(m) {
                    scope.insert(&l.devpath);
                }
            }
            _ => {
                scope.insert(&m.devpath);
            }
        }
    }
    graph
        .luns()
        .into_iter()
        .filter(|lun| {
            let mut cur = Some(*lun);
            while let Some(n) = cur {
                if scope.contains(n.devpath.as_str()) {
                    return true;
                }
                // A LUN belongs to its nearest host only, not to the HBA above a vHBA.
                if matches!(n.kind, NodeKind::Host(_)) {
                    return false;
                }
                cur = graph.parent(n);
            }
            false
        })
        .collect()
}

/// LUNs with their addresses, sizes, device nodes and stable paths.
pub fn luns(g: &Global, filter: Option<&str>) -> anyhow::Result<ExitCode> {
    if filter.is_none() {
        check_sysfs(g)?;
        crate::listing::lean_heap();
        if let Some(skeleton) = Skeleton::load(&g.sysfs(), listing_detail(g)) {
            let mut any = true;
            render::emit_with(|out| {
                any = write_luns_streamed(&skeleton, g.json, out)?;
                Ok(())
            })?;
            if !any {
                eprintln!("no LUNs under {}", g.sysfs_root.display());
            }
            return Ok(ExitCode::SUCCESS);
        }
    }
    let graph = load_listing(g)?;
    let luns = match filter {
        None => graph.luns(),
        Some(f) => luns_of(&graph, &resolve(&graph, f)?),
    };
    if !g.json && luns.is_empty() {
        match filter {
            Some(f) => eprintln!("no LUNs on {f}"),
            None => eprintln!("no LUNs under {}", g.sysfs_root.display()),
        }
        return Ok(ExitCode::SUCCESS);
    }
    render::emit_with(|out| write_luns(&graph, &luns, g.json, out))?;
    Ok(ExitCode::SUCCESS)
}

/// `hbad luns` of these LUNs of a graph.
pub fn write_luns(
    graph: &Graph,
    luns: &[&Node],
    json: bool,
    out: &mut dyn std::io::Write,
) -> std::io::Result<()> {
    // Each row is made as it is written: a large host has tens of thousands.
    if json {
        render::write_json(
            &Streamed(|| luns.iter().map(|l| render::view(graph, l))),
            out,
        )
    } else {
        let rows = || {
            luns.iter().flat_map(|l| match render::view(graph, l) {
                NodeView::Lun(l) => render::lun_rows(&l),
                _ => Vec::new(),
            })
        };
        render::write_table(&render::LUNS_HEADER, rows, out)
    }
}

/// `hbad luns` of every LUN, each target's LUNs read as they are printed (JSON)
/// or kept in a compact table until the widest is known (text). Whether there
/// was any LUN: text says nothing when there is none.
pub fn write_luns_streamed(
    skeleton: &Skeleton,
    json: bool,
    out: &mut dyn std::io::Write,
) -> std::io::Result<bool> {
    let targets = skeleton.targets_by_address();
    if json {
        return skeleton.stream(
            &targets,
            DiskLinks::Read,
            LunState::Read,
            |luns| luns,
            |feed| {
                let feed = std::cell::RefCell::new(feed);
                render::write_json(&Streamed(|| LunViews::new(&feed)), out)?;
                Ok(true)
            },
        );
    }
    // Each target's rows are made where its LUNs were read, with no graph; the
    // links are looked up as the rows are written.
    let rows = |read: TargetRead<'_>| {
        let mut rows = render::LunTable::default();
        let target_wwpn = match skeleton.graph().remote_port_of(read.target()) {
            Some(Node {
                kind: NodeKind::RemotePort(rp),
                ..
            }) => rp.wwpn,
            _ => None,
        };
        for (lun, disks) in read.luns() {
            rows.push_read(lun, disks.first(), target_wwpn);
        }
        rows
    };
    // The state is not a column: it is not read.
    skeleton.stream_read(&targets, LunState::Skip, rows, |feed| {
        let mut table = render::LunTable::default();
        for rows in feed.by_ref() {
            table.append(rows);
        }
        if table.is_empty() {
            return Ok(false);
        }
        table.write(&feed.links(), out)?;
        Ok(true)
    })
}

/// The views of the LUNs a feed brings, one target's LUNs held at a time.
struct LunViews<'f, 'g, 's> {
    feed: &'f std::cell::RefCell<&'g mut Feed<'s, TargetLuns>>,
    luns: Option<TargetLuns>,
    at: usize,
}

impl<'f, 'g, 's> LunViews<'f, 'g, 's> {
    fn new(feed: &'f std::cell::RefCell<&'g mut Feed<'s, TargetLuns>>) -> Self {
        LunViews {
            feed,
            luns: None,
            at: 0,
        }
    }
}

impl Iterator for LunViews<'_, '_, '_> {
    type Item = NodeView;

    fn next(&mut self) -> Option<NodeView> {
        loop {
            if let Some(luns) = &self.luns {
                if self.at < luns.len() {
                    self.at += 1;
                    if let Some(lun) = luns.lun(self.at - 1) {
                        return Some(render::view(&luns.graph, lun));
                    }
                    continue;
                }
            }
            self.luns = Some(self.feed.borrow_mut().next()?);
            self.at = 0;
        }
    }
}

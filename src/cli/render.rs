//! Output of the inspection commands: JSON shapes for programs, tables and trees for
//! people.
//!
//! # JSON shapes (stable)
//!
//! Every device is one object with a `kind` (`host`, `vport`, `remote_port`,
//! `target`, `lun`, `disk`), its kernel `name`, its `devpath` (relative to the sysfs
//! root, as in uevents) and the `parent` devpath in the graph (`null` at the top).
//! Attributes the kernel did not fill in are `null`, never missing, so a key's
//! presence never depends on the hardware. WWNs are strings in the sysfs style
//! (`0x200002000000000b`); sizes are bytes.
//!
//! - `host`: `number`, `proc_name`, `unique_id`, `state`, `is_vhba`, `parent_hba`
//!   (name of the physical host a vHBA was made on), `vport` (the vport that made it),
//!   `vhba_name` (hbad's name for it), `fc` (`null` for non-FC hosts, else `wwpn`,
//!   `wwnn`, `fabric_name`, `port_id`, `port_state`, `port_type`, `speed`,
//!   `symbolic_name`, `npiv`: `null` or `control_dir` (`fc_host`|`scsi_host`),
//!   `max_vports`, `vports_inuse`, `free`).
//! - `vport`: `host` (physical host), `wwpn`, `wwnn`, `vport_state`,
//!   `vport_last_state`, `vport_type`, `symbolic_name`, `roles`, `vhba` (host it made),
//!   `vhba_name`.
//! - `remote_port`: `host`, `wwpn`, `wwnn`, `port_id`, `roles` (list), `port_state`,
//!   `scsi_target_id`, `target` (name of its SCSI target, once scanned).
//! - `target`: `host`, `channel`, `id`, `remote_port`, `target_wwpn`.
//! - `lun`: `hctl`, `host`, `channel`, `target`, `lun`, `vendor`, `model`, `rev`,
//!   `scsi_type`, `type_name`, `state`, `wwid`, `serial`, `driver`, `remote_port`,
//!   `target_wwpn`, `vhba_name`, `disk`, `dev`, `size_bytes`, `links`.
//! - `disk`: `dev`, `lun` (H:C:T:L), `major_minor`, `size_bytes`, `read_only`,
//!   `removable`, `links`.
//!
//! `hbad list` prints an array of these; `hbad luns` an array of `lun` devices; `hbad
//! tree` an array of the top devices, each with `children` (same shape, nested as
//! sysfs nests them); `hbad show` an array (a WWPN can name a vport and its vHBA) of
//! `{"device": {...}, "relations": [{"relation": "...", "device": {...}}]}`.

use std::cmp::Ordering;
use std::fmt::Write as _;

use serde::Serialize;

use crate::graph::describe::{human_size, vhba_name};
use crate::graph::{Graph, Node, NodeKind};
use crate::sysfs::{
    scsi_type_name, BlockInfo, LunInfo, MultipathMap, StableLinks, VportControlDir,
};
use crate::terminal::printable;
use crate::wwn::Wwn;

#[derive(Clone, Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum NodeView {
    Host(HostView),
    Vport(VportView),
    RemotePort(RemotePortView),
    Target(TargetView),
    Lun(LunView),
    Disk(DiskView),
}

#[derive(Clone, Debug, Serialize)]
pub struct HostView {
    pub name: String,
    pub devpath: String,
    pub parent: Option<String>,
    pub number: u32,
    pub proc_name: Option<String>,
    pub unique_id: Option<String>,
    pub state: Option<String>,
    pub is_vhba: bool,
    pub parent_hba: Option<String>,
    pub vport: Option<String>,
    pub vhba_name: Option<String>,
    pub fc: Option<FcView>,
}

#[derive(Clone, Debug, Serialize)]
pub struct FcView {
    pub wwpn: Option<Wwn>,
    pub wwnn: Option<Wwn>,
    pub fabric_name: Option<Wwn>,
    pub port_id: Option<String>,
    pub port_state: Option<String>,
    pub port_type: Option<String>,
    pub speed: Option<String>,
    pub symbolic_name: Option<String>,
    pub npiv: Option<NpivView>,
}

#[derive(Clone, Debug, Serialize)]
pub struct NpivView {
    pub control_dir: VportControlDir,
    pub max_vports: Option<u32>,
    pub vports_inuse: Option<u32>,
    pub free: Option<u32>,
}

#[derive(Clone, Debug, Serialize)]
pub struct VportView {
    pub name: String,
    pub devpath: String,
    pub parent: Option<String>,
    pub host: Option<String>,
    pub wwpn: Option<Wwn>,
    pub wwnn: Option<Wwn>,
    pub vport_state: Option<String>,
    pub vport_last_state: Option<String>,
    pub vport_type: Option<String>,
    pub symbolic_name: Option<String>,
    pub roles: Option<String>,
    pub vhba: Option<String>,
    pub vhba_name: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct RemotePortView {
    pub name: String,
    pub devpath: String,
    pub parent: Option<String>,
    pub host: Option<String>,
    pub wwpn: Option<Wwn>,
    pub wwnn: Option<Wwn>,
    pub port_id: Option<String>,
    pub roles: Vec<String>,
    pub port_state: Option<String>,
    pub scsi_target_id: Option<u32>,
    pub target: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct TargetView {
    pub name: String,
    pub devpath: String,
    pub parent: Option<String>,
    pub host: String,
    pub channel: u32,
    pub id: u32,
    pub remote_port: Option<String>,
    pub target_wwpn: Option<Wwn>,
}

#[derive(Clone, Debug, Serialize)]
pub struct LunView {
    pub name: String,
    pub devpath: String,
    pub parent: Option<String>,
    pub hctl: String,
    pub host: String,
    pub channel: u32,
    pub target: u32,
    pub lun: u64,
    pub vendor: Option<String>,
    pub model: Option<String>,
    pub rev: Option<String>,
    pub scsi_type: Option<u8>,
    pub type_name: Option<&'static str>,
    pub state: Option<String>,
    pub wwid: Option<String>,
    pub serial: Option<String>,
    pub driver: Option<String>,
    pub remote_port: Option<String>,
    pub target_wwpn: Option<Wwn>,
    pub vhba_name: Option<String>,
    pub disk: Option<String>,
    pub dev: Option<String>,
    pub size_bytes: Option<u64>,
    pub links: Vec<String>,
    /// The multipath map the disk is a path of: what a VM should be given.
    pub multipath: Option<MultipathMap>,
}

#[derive(Clone, Debug, Serialize)]
pub struct DiskView {
    pub name: String,
    pub devpath: String,
    pub parent: Option<String>,
    pub dev: String,
    pub lun: Option<String>,
    pub major_minor: Option<String>,
    pub size_bytes: Option<u64>,
    pub read_only: Option<bool>,
    pub removable: Option<bool>,
    pub links: Vec<String>,
    pub multipath: Option<MultipathMap>,
}

/// One device with the devices it relates to, for `hbad show --json`.
#[derive(Clone, Debug, Serialize)]
pub struct ShowView {
    pub device: NodeView,
    pub relations: Vec<RelationView>,
}

#[derive(Clone, Debug, Serialize)]
pub struct RelationView {
    /// `parent_hba`, `vport`, `vhba`, `host`, `remote_port`, `target`, `lun` or `disk`.
    pub relation: &'static str,
    pub device: NodeView,
}

/// Writes to stdout. A reader that went away (`hbad tree | head`) is an error the
/// caller can tell apart (`BrokenPipe`), not a panic as with `println!`.
pub fn emit(text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()
}

/// `emit`, where a closed pipe just means nobody wants the rest.
pub fn emit_all(text: &str) -> anyhow::Result<()> {
    emit_with(|out| out.write_all(text.as_bytes()))
}

/// Writes to a locked, buffered stdout as the output is produced, so that a long
/// listing is never held whole in memory; a closed pipe ends it quietly, as in
/// [`emit_all`].
pub fn emit_with(
    write: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<()>,
) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::BufWriter::with_capacity(64 << 10, std::io::stdout().lock());
    match write(&mut out).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// JSON, pretty-printed straight to stdout as it is serialized, then a newline.
pub fn emit_json(value: &impl Serialize) -> anyhow::Result<()> {
    emit_with(|out| write_json(value, out))
}

/// JSON, pretty-printed to `out` as it is serialized, then a newline.
pub fn write_json(value: &impl Serialize, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value).map_err(std::io::Error::from)?;
    out.write_all(b"\n")
}

/// A sequence serialized as it is produced, nothing collected first: the JSON is
/// the same as that of a `Vec` of the items.
#[derive(Debug)]
pub struct Streamed<F>(pub F);

impl<F, I> Serialize for Streamed<F>
where
    F: Fn() -> I,
    I: IntoIterator,
    I::Item: Serialize,
{
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq((self.0)())
    }
}

/// The vport a vHBA host was made by, and that vport's hbad name.
fn vhba_vport<'a>(graph: &'a Graph, host: &'a Node) -> Option<&'a Node> {
    graph.vport_of_vhba(host)
}

fn vport_info_name(node: Option<&Node>) -> Option<String> {
    match &node?.kind {
        NodeKind::Vport(v) => vhba_name(v).map(str::to_string),
        _ => None,
    }
}

fn remote_port_wwpn(graph: &Graph, node: &Node) -> (Option<String>, Option<Wwn>) {
    match graph.remote_port_of(node) {
        Some(
            r @ Node {
                kind: NodeKind::RemotePort(rp),
                ..
            },
        ) => (Some(r.name().to_string()), rp.wwpn),
        _ => (None, None),
    }
}

/// The JSON view of one node, with its relations resolved by name.
pub fn view(graph: &Graph, node: &Node) -> NodeView {
    let name = node.name().to_string();
    let devpath = node.devpath.to_string();
    let parent = graph.parent(node).map(|p| p.devpath.to_string());
    match &node.kind {
        NodeKind::Host(h) => {
            let vport = vhba_vport(graph, node);
            NodeView::Host(HostView {
                name,
                devpath,
                parent,
                number: h.scsi.number,
                proc_name: h.scsi.proc_name.clone(),
                unique_id: h.scsi.unique_id.clone(),
                state: h.scsi.state.clone(),
                is_vhba: vport.is_some(),
                parent_hba: vport
                    .and_then(|v| graph.vport_parent_host(v))
                    .map(|p| p.name().to_string()),
                vport: vport.map(|v| v.name().to_string()),
                vhba_name: vport_info_name(vport),
                fc: h.fc.as_ref().map(|fc| FcView {
                    wwpn: fc.wwpn,
                    wwnn: fc.wwnn,
                    fabric_name: fc.fabric_name,
                    port_id: fc.port_id.clone(),
                    port_state: fc.port_state.clone(),
                    port_type: fc.port_type.clone(),
                    speed: fc.speed.clone(),
                    symbolic_name: fc.symbolic_name.clone(),
                    npiv: fc.npiv.as_ref().map(|n| NpivView {
                        control_dir: n.control_dir,
                        max_vports: n.max_vports,
                        vports_inuse: n.vports_inuse,
                        free: n.free(),
                    }),
                }),
            })
        }
        NodeKind::Vport(v) => NodeView::Vport(VportView {
            name,
            devpath,
            parent,
            host: graph.vport_parent_host(node).map(|h| h.name().to_string()),
            wwpn: v.wwpn,
            wwnn: v.wwnn,
            vport_state: v.vport_state.clone(),
            vport_last_state: v.vport_last_state.clone(),
            vport_type: v.vport_type.clone(),
            symbolic_name: v.symbolic_name.clone(),
            roles: v.roles.clone(),
            vhba: graph.vhba_of_vport(node).map(|h| h.name().to_string()),
            vhba_name: vhba_name(v).map(str::to_string),
        }),
        NodeKind::RemotePort(r) => NodeView::RemotePort(RemotePortView {
            name,
            devpath,
            parent,
            host: graph.host_of(node).map(|h| h.name().to_string()),
            wwpn: r.wwpn,
            wwnn: r.wwnn,
            port_id: r.port_id.clone(),
            roles: r.roles.clone(),
            port_state: r.port_state.clone(),
            scsi_target_id: r.scsi_target_id,
            target: graph
                .children(node)
                .find(|c| matches!(c.kind, NodeKind::Target(_)))
                .map(|t| t.name().to_string()),
        }),
        NodeKind::Target(t) => {
            let (remote_port, target_wwpn) = remote_port_wwpn(graph, node);
            NodeView::Target(TargetView {
                name,
                devpath,
                parent,
                host: format!("host{}", t.host),
                channel: t.channel,
                id: t.id,
                remote_port,
                target_wwpn,
            })
        }
        NodeKind::Lun(l) => {
            let (remote_port, target_wwpn) = remote_port_wwpn(graph, node);
            let disk = graph.disk_of(node);
            let disk_info = match disk.map(|d| &d.kind) {
                Some(NodeKind::Disk(d)) => Some(d),
                _ => None,
            };
            NodeView::Lun(LunView {
                name,
                devpath,
                parent,
                hctl: l.hctl.to_string(),
                host: format!("host{}", l.hctl.host),
                channel: l.hctl.channel,
                target: l.hctl.target,
                lun: l.hctl.lun,
                vendor: l.vendor.clone(),
                model: l.model.clone(),
                rev: l.rev.clone(),
                scsi_type: l.scsi_type,
                type_name: l.scsi_type.map(scsi_type_name),
                state: l.state.clone(),
                wwid: l.wwid.clone(),
                serial: l.serial.clone(),
                driver: l.driver.clone(),
                remote_port,
                target_wwpn,
                vhba_name: graph
                    .host_of(node)
                    .and_then(|h| vport_info_name(graph.vport_of_vhba(h))),
                disk: disk_info.map(|d| d.info.name.clone()),
                dev: disk_info.map(|d| format!("/dev/{}", d.info.name)),
                size_bytes: disk_info.and_then(|d| d.info.size_bytes),
                links: disk_info.map(|d| d.links.clone()).unwrap_or_default(),
                multipath: disk_info.and_then(|d| d.info.multipath.as_deref().cloned()),
            })
        }
        NodeKind::Disk(d) => NodeView::Disk(DiskView {
            name,
            devpath,
            parent,
            dev: format!("/dev/{}", d.info.name),
            lun: graph
                .parent(node)
                .filter(|p| matches!(p.kind, NodeKind::Lun(_)))
                .map(|p| p.name().to_string()),
            major_minor: d.info.major_minor.clone(),
            size_bytes: d.info.size_bytes,
            read_only: d.info.read_only,
            removable: d.info.removable,
            links: d.links.clone(),
            multipath: d.info.multipath.as_deref().cloned(),
        }),
    }
}

/// A name's place in natural order: see [`name_key`].
type NameKey = (usize, Vec<(String, u64)>);

/// Natural order of names: `host2` before `host10`, `1:0:0:2` before `1:0:0:10`,
/// `sdz` before `sdaa` (the kernel's own disk order).
fn name_key(name: &str) -> NameKey {
    let mut parts = Vec::new();
    let mut text = String::new();
    let mut digits = String::new();
    for c in name.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
        } else {
            if !digits.is_empty() {
                parts.push((
                    std::mem::take(&mut text),
                    digits.parse().unwrap_or(u64::MAX),
                ));
                digits.clear();
            }
            text.push(c);
        }
    }
    parts.push((text, digits.parse().unwrap_or(0)));
    // Only disk names have no digits; among them the shorter name comes first.
    let len = if name.bytes().any(|b| b.is_ascii_digit()) {
        0
    } else {
        name.len()
    };
    (len, parts)
}

fn kind_rank(kind: &NodeKind) -> u8 {
    match kind {
        NodeKind::Host(_) => 0,
        NodeKind::Vport(_) => 1,
        NodeKind::RemotePort(_) => 2,
        NodeKind::Target(_) => 3,
        NodeKind::Lun(_) => 4,
        NodeKind::Disk(_) => 5,
    }
}

/// Devices of mixed kinds in the order people expect: hosts, vports, remote ports,
/// targets, LUNs, disks, each in natural name order.
pub fn device_order(a: &Node, b: &Node) -> Ordering {
    kind_rank(&a.kind)
        .cmp(&kind_rank(&b.kind))
        .then_with(|| name_key(a.name()).cmp(&name_key(b.name())))
        .then_with(|| a.devpath.cmp(&b.devpath))
}

/// Sorts devices as [`device_order`] does, each name's key made once rather than
/// twice per comparison: a target has hundreds of LUNs.
pub fn sort_devices(nodes: &mut Vec<&Node>) {
    let mut keyed: Vec<(u8, NameKey, &Node)> = nodes
        .drain(..)
        .map(|n| (kind_rank(&n.kind), name_key(n.name()), n))
        .collect();
    keyed.sort_by(|a, b| {
        (a.0, &a.1)
            .cmp(&(b.0, &b.1))
            .then_with(|| a.2.devpath.cmp(&b.2.devpath))
    });
    nodes.extend(keyed.into_iter().map(|(_, _, n)| n));
}

fn sorted_children<'a>(graph: &'a Graph, node: &'a Node) -> Vec<&'a Node> {
    let mut v: Vec<&Node> = graph.children(node).collect();
    // Under a host: its vports (and their vHBAs) first, then what it reaches.
    sort_devices(&mut v);
    v
}

/// The top of the tree: devices with no parent in the graph (physical hosts, and
/// anything whose parent was never seen).
pub fn roots(graph: &Graph) -> Vec<&Node> {
    let mut v: Vec<&Node> = graph
        .nodes()
        .filter(|n| graph.parent(n).is_none())
        .collect();
    sort_devices(&mut v);
    v
}

/// A device and everything below it, for `hbad tree --json`: the device's view
/// with `children` (same shape), made one device at a time while it is written,
/// so the whole tree is never built first.
pub struct TreeStream<'a, 'f> {
    graph: &'a Graph,
    node: &'a Node,
    below: Option<&'a std::cell::RefCell<GraphBelow<'f>>>,
}

impl std::fmt::Debug for TreeStream<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TreeStream")
            .field("node", &self.node.devpath)
            .finish_non_exhaustive()
    }
}

impl<'a> TreeStream<'a, 'a> {
    /// The top devices, each with everything below it.
    pub fn roots(graph: &'a Graph) -> impl Serialize + 'a {
        Streamed(move || {
            roots(graph).into_iter().map(move |node| TreeStream {
                graph,
                node,
                below: None,
            })
        })
    }
}

impl<'a, 'f> TreeStream<'a, 'f> {
    /// [`TreeStream::roots`] where what is below some nodes comes from `below`,
    /// a graph of what is below each.
    pub fn roots_with(
        graph: &'a Graph,
        below: &'a std::cell::RefCell<GraphBelow<'f>>,
    ) -> impl Serialize + use<'a, 'f> {
        Streamed(move || {
            roots(graph).into_iter().map(move |node| TreeStream {
                graph,
                node,
                below: Some(below),
            })
        })
    }
}

impl Serialize for TreeStream<'_, '_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Shape<C> {
            #[serde(flatten)]
            device: NodeView,
            children: C,
        }
        let (graph, node, below) = (self.graph, self.node, self.below);
        let sub = below.and_then(|b| (b.borrow_mut())(node));
        let (graph_below, node_below) = match &sub {
            Some(sub) => match sub.node(&node.devpath) {
                Some(n) => (sub, Some(n)),
                None => (sub, None),
            },
            None => (graph, Some(node)),
        };
        Shape {
            device: view(graph, node),
            children: Streamed(|| {
                node_below
                    .map(|n| sorted_children(graph_below, n))
                    .unwrap_or_default()
                    .into_iter()
                    .map(|node| TreeStream {
                        graph: graph_below,
                        node,
                        below,
                    })
            }),
        }
        .serialize(s)
    }
}

fn or_dash(v: Option<impl ToString>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

/// The few fields that identify a device at a glance, in columns: the tree's lines.
fn tree_fields(graph: &Graph, node: &Node) -> Vec<String> {
    let name = node.name().to_string();
    match &node.kind {
        NodeKind::Host(h) => {
            let driver = or_dash(h.scsi.proc_name.as_deref());
            let Some(fc) = &h.fc else {
                return vec![name, driver];
            };
            let role = match graph.vport_of_vhba(node) {
                Some(v) => match vport_info_name(Some(v)) {
                    Some(n) => format!("vHBA {n}"),
                    None => "vHBA".to_string(),
                },
                None => "FC".to_string(),
            };
            let mut f = vec![
                name,
                driver,
                role,
                or_dash(fc.wwpn),
                or_dash(fc.port_state.as_deref()),
            ];
            if let Some(n) = &fc.npiv {
                f.push(format!(
                    "NPIV {}/{} in use",
                    or_dash(n.vports_inuse),
                    or_dash(n.max_vports)
                ));
            }
            f
        }
        NodeKind::Vport(v) => {
            let mut f = vec![name, or_dash(v.wwpn), or_dash(v.vport_state.as_deref())];
            if let Some(n) = vhba_name(v) {
                f.push(format!("hbad vHBA {n}"));
            }
            f
        }
        NodeKind::RemotePort(r) => vec![
            name,
            or_dash(r.wwpn),
            or_dash(r.port_state.as_deref()),
            if r.roles.is_empty() {
                "-".to_string()
            } else {
                r.roles.join(", ")
            },
        ],
        NodeKind::Target(_) => vec![name],
        NodeKind::Lun(l) => vec![
            name,
            or_dash(l.scsi_type.map(scsi_type_name)),
            or_dash(l.vendor.as_deref()),
            or_dash(l.model.as_deref()),
            or_dash(l.state.as_deref()),
        ],
        NodeKind::Disk(d) => {
            let mut f = vec![
                format!("/dev/{}", d.info.name),
                or_dash(d.info.size_bytes.map(human_size)),
            ];
            // One link keeps the tree readable: hbad's own, else the path, else the id.
            let rank = |l: &String| {
                ["/by-vhba/", "/by-path/", "/by-id/"]
                    .iter()
                    .position(|dir| l.contains(dir))
                    .unwrap_or(3)
            };
            if let Some(best) = d.links.iter().min_by_key(|l| rank(l)) {
                f.push(best.clone());
                if d.links.len() > 1 {
                    f.push(format!("(+{} more)", d.links.len() - 1));
                }
            }
            f
        }
    }
}

/// Lines up rows of fields in columns, two spaces apart, without trailing blanks.
fn align(rows: &[Vec<String>]) -> Vec<String> {
    let mut widths = Vec::new();
    for row in rows {
        widen(&mut widths, row);
    }
    rows.iter().map(|row| aligned(&widths, row)).collect()
}

/// Widens columns to fit a row. The last field of a row is never padded, so it
/// does not widen its column.
fn widen<S: AsRef<str>>(widths: &mut Vec<usize>, row: &[S]) {
    if widths.len() < row.len() {
        widths.resize(row.len(), 0);
    }
    for (i, cell) in row.iter().enumerate() {
        if i + 1 < row.len() {
            widths[i] = widths[i].max(shown(cell.as_ref()).1);
        }
    }
}

/// A cell as shown ([`printable`]) and its width in characters. Printable ASCII,
/// nearly every cell, is shown as it is, one character a byte: a table of tens of
/// thousands of rows is not decoded character by character.
fn shown(cell: &str) -> (std::borrow::Cow<'_, str>, usize) {
    if cell.bytes().all(|b| matches!(b, b' '..=b'~')) {
        return (std::borrow::Cow::Borrowed(cell), cell.len());
    }
    let cell = printable(cell);
    let width = cell.chars().count();
    (cell, width)
}

/// One row in columns of the given widths, without trailing blanks.
fn aligned(widths: &[usize], row: &[String]) -> String {
    let mut line = String::new();
    aligned_into(widths, row, &mut line);
    line
}

/// [`aligned`] into `line` (emptied first): no allocation per row for tables of
/// tens of thousands of rows.
fn aligned_into<S: AsRef<str>>(widths: &[usize], row: &[S], line: &mut String) {
    line.clear();
    for (i, cell) in row.iter().enumerate() {
        // Every cell is shown escaped: vendor and model come from the array's
        // INQUIRY data, symbolic names and device names from whoever wrote them.
        let (cell, width) = shown(cell.as_ref());
        line.push_str(&cell);
        if i + 1 < row.len() {
            // As `{cell:<w$}` pads: to a width in characters.
            let pad = widths[i].saturating_sub(width) + 2;
            line.extend(std::iter::repeat_n(' ', pad));
        }
    }
    line.truncate(line.trim_end().len());
}

/// The device tree for people: hosts, their vports with the vHBAs under them, remote
/// ports, targets, LUNs and disks, nested as sysfs nests them. Siblings of one kind
/// line up in columns.
pub fn render_tree(graph: &Graph) -> String {
    let mut out = Vec::new();
    // Writing to a Vec cannot fail.
    let _ = write_tree(graph, &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// [`render_tree`], written as it is made: only one run of siblings is held at a
/// time (to line it up).
pub fn write_tree(graph: &Graph, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    write_tree_with(graph, &mut |_, _, _| Ok(false), out)
}

/// What is below some nodes of a tree when the graph does not hold it:
/// `below(node, prefix, out)` writes the lines under `node` (a target's LUNs, read
/// as they are shown), each starting with `prefix`, and says `true`; or says
/// `false` for the node's own children in the graph.
pub type LinesBelow<'f> =
    dyn FnMut(&Node, &str, &mut dyn std::io::Write) -> std::io::Result<bool> + 'f;

/// [`write_tree`] where what is below some nodes comes from `below`.
pub fn write_tree_with(
    graph: &Graph,
    below: &mut LinesBelow<'_>,
    out: &mut dyn std::io::Write,
) -> std::io::Result<()> {
    walk_tree(graph, &roots(graph), "", true, below, out)
}

/// The lines under `node`, each starting with `prefix`: what [`write_tree`] writes
/// below it, for a node whose lines are made apart from the rest of the tree.
pub fn write_subtree(
    graph: &Graph,
    node: &Node,
    prefix: &str,
    out: &mut dyn std::io::Write,
) -> std::io::Result<()> {
    let children = sorted_children(graph, node);
    walk_tree(
        graph,
        &children,
        prefix,
        false,
        &mut |_, _, _| Ok(false),
        out,
    )
}

fn walk_tree(
    graph: &Graph,
    nodes: &[&Node],
    prefix: &str,
    top: bool,
    below: &mut LinesBelow<'_>,
    out: &mut dyn std::io::Write,
) -> std::io::Result<()> {
    // Align each run of same-kind siblings.
    let mut i = 0;
    while i < nodes.len() {
        let rank = kind_rank(&nodes[i].kind);
        let mut j = i;
        while j < nodes.len() && kind_rank(&nodes[j].kind) == rank {
            j += 1;
        }
        let rows: Vec<Vec<String>> = nodes[i..j].iter().map(|n| tree_fields(graph, n)).collect();
        for (k, line) in align(&rows).into_iter().enumerate() {
            let node = nodes[i + k];
            let last = i + k + 1 == nodes.len();
            let (branch, indent) = match (top, last) {
                (true, _) => ("", ""),
                (false, false) => ("├── ", "│   "),
                (false, true) => ("└── ", "    "),
            };
            writeln!(out, "{prefix}{branch}{line}")?;
            let prefix = format!("{prefix}{indent}");
            if !below(node, &prefix, out)? {
                let children = sorted_children(graph, node);
                walk_tree(graph, &children, &prefix, false, below, out)?;
            }
        }
        i = j;
    }
    Ok(())
}

/// What is below some nodes of a tree in JSON when the graph does not hold it: a
/// graph with the node and what is below it, or `None` for the node's own
/// children.
pub type GraphBelow<'f> = dyn FnMut(&Node) -> Option<Graph> + 'f;

/// Every node in the order the tree shows them.
pub fn tree_order(graph: &Graph) -> Vec<&Node> {
    let mut order = Vec::new();
    let mut stack: Vec<&Node> = roots(graph).into_iter().rev().collect();
    while let Some(n) = stack.pop() {
        order.push(n);
        stack.extend(sorted_children(graph, n).into_iter().rev());
    }
    order
}

/// A table with a header row, for `list` and `luns`.
pub fn render_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = Vec::new();
    // Writing to a Vec cannot fail.
    let _ = write_table(header, || rows.iter().cloned(), &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// [`render_table`] over rows made twice, once to measure the columns and once to
/// write them, so that no row is kept: `rows` gives the same rows each call.
pub fn write_table<I: IntoIterator<Item = Vec<String>>>(
    header: &[&str],
    rows: impl Fn() -> I,
    out: &mut dyn std::io::Write,
) -> std::io::Result<()> {
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    // Pad short rows so the header's last column stays last.
    let fit = |mut row: Vec<String>| {
        row.resize(header.len(), String::new());
        row
    };
    let mut widths = Vec::new();
    widen(&mut widths, &header);
    for row in rows() {
        widen(&mut widths, &fit(row));
    }
    writeln!(out, "{}", aligned(&widths, &header))?;
    for row in rows() {
        writeln!(out, "{}", aligned(&widths, &fit(row)))?;
    }
    Ok(())
}

/// The capabilities a node is listed under (`hbad list --cap`); every host is a
/// scsi_host, so that is said only of hosts that are nothing more.
pub fn cap_name(graph: &Graph, node: &Node) -> &'static str {
    match &node.kind {
        NodeKind::Host(h) => {
            let npiv = h.fc.as_ref().is_some_and(|f| f.npiv.is_some());
            match (h.fc.is_some(), graph.is_vhba(node), npiv) {
                (_, true, true) => "fc_host,vhba,vports",
                (_, true, false) => "fc_host,vhba",
                (true, false, true) => "fc_host,vports",
                (true, false, false) => "fc_host",
                (false, _, _) => "scsi_host",
            }
        }
        NodeKind::Vport(_) => "vport",
        NodeKind::RemotePort(_) => "rport",
        NodeKind::Target(_) => "target",
        NodeKind::Lun(_) => "lun",
        NodeKind::Disk(_) => "block",
    }
}

pub const LIST_HEADER: [&str; 5] = ["NAME", "CAP", "WWPN", "STATE", "DETAIL"];

/// One row of `hbad list`: name, capability, WWPN, state and what it hangs off.
pub fn list_row(graph: &Graph, node: &Node) -> Vec<String> {
    let name = node.name().to_string();
    let cap = cap_name(graph, node).to_string();
    let host_name = || graph.host_of(node).map(|h| h.name().to_string());
    match &node.kind {
        NodeKind::Host(h) => {
            let fc = h.fc.as_ref();
            let mut detail = vec![or_dash(h.scsi.proc_name.as_deref())];
            if let Some(v) = graph.vport_of_vhba(node) {
                let parent = graph
                    .vport_parent_host(v)
                    .map_or("?".to_string(), |p| p.name().to_string());
                let mut s = format!("on {parent} via {}", v.name());
                if let Some(n) = vport_info_name(Some(v)) {
                    s.push_str(&format!(" as {n}"));
                }
                detail.push(s);
            }
            if let Some(n) = fc.and_then(|f| f.npiv.as_ref()) {
                detail.push(format!(
                    "NPIV {}/{} in use",
                    or_dash(n.vports_inuse),
                    or_dash(n.max_vports)
                ));
            }
            let state = match fc {
                Some(f) => or_dash(f.port_state.as_deref()),
                None => or_dash(h.scsi.state.as_deref()),
            };
            vec![
                name,
                cap,
                or_dash(fc.and_then(|f| f.wwpn)),
                state,
                detail.join(", "),
            ]
        }
        NodeKind::Vport(v) => {
            let mut detail = format!(
                "on {}",
                graph
                    .vport_parent_host(node)
                    .map_or("?".to_string(), |p| p.name().to_string())
            );
            if let Some(h) = graph.vhba_of_vport(node) {
                detail.push_str(&format!(", makes {}", h.name()));
            }
            if let Some(n) = vhba_name(v) {
                detail.push_str(&format!(", hbad vHBA {n}"));
            }
            vec![
                name,
                cap,
                or_dash(v.wwpn),
                or_dash(v.vport_state.as_deref()),
                detail,
            ]
        }
        NodeKind::RemotePort(r) => {
            let mut detail = vec![format!("on {}", or_dash(host_name()))];
            if !r.roles.is_empty() {
                detail.push(r.roles.join(", "));
            }
            if let Some(t) = r.scsi_target_id {
                detail.push(format!("target id {t}"));
            }
            vec![
                name,
                cap,
                or_dash(r.wwpn),
                or_dash(r.port_state.as_deref()),
                detail.join(", "),
            ]
        }
        NodeKind::Target(_) => {
            let (rport, wwpn) = remote_port_wwpn(graph, node);
            let mut detail = format!("on {}", or_dash(host_name()));
            if let Some(r) = rport {
                detail.push_str(&format!(" via {r}"));
            }
            vec![name, cap, or_dash(wwpn), "-".to_string(), detail]
        }
        NodeKind::Lun(l) => {
            let (_, wwpn) = remote_port_wwpn(graph, node);
            let mut detail: Vec<String> = [l.vendor.as_deref(), l.model.as_deref()]
                .into_iter()
                .flatten()
                .map(str::to_string)
                .collect();
            if let Some(t) = l.scsi_type {
                detail.insert(0, scsi_type_name(t).to_string());
            }
            if let Some(d) = graph.disk_of(node) {
                detail.push(format!("/dev/{}", d.name()));
            }
            vec![
                name,
                cap,
                or_dash(wwpn),
                or_dash(l.state.as_deref()),
                detail.join(" "),
            ]
        }
        NodeKind::Disk(d) => {
            let lun = graph
                .parent(node)
                .map_or("?".to_string(), |p| p.name().to_string());
            vec![
                format!("/dev/{}", d.info.name),
                cap,
                "-".to_string(),
                "-".to_string(),
                format!("{} on {lun}", or_dash(d.info.size_bytes.map(human_size))),
            ]
        }
    }
}

pub const LUNS_HEADER: [&str; 10] = [
    "H:C:T:L", "LUN", "TYPE", "VENDOR", "MODEL", "SIZE", "DEVICE", "MAP", "TARGET", "LINKS",
];

/// Rows of `hbad luns`: one per LUN, then one more per extra stable link so that
/// every link stays in the LINKS column.
pub fn lun_rows(lun: &LunView) -> Vec<Vec<String>> {
    link_rows(lun_cells(lun), &lun.links)
}

/// The cells of a LUN's first row but the last, LINKS: all that sets the widths of
/// the columns (the last column is never padded).
fn lun_cells(lun: &LunView) -> Vec<String> {
    LunCells {
        hctl: &lun.hctl,
        lun: lun.lun,
        type_name: lun.type_name,
        vendor: lun.vendor.as_deref(),
        model: lun.model.as_deref(),
        size_bytes: lun.size_bytes,
        dev: lun.dev.as_deref(),
        map: lun.multipath.as_ref().map(|m| m.name.as_str()),
        target_wwpn: lun.target_wwpn,
    }
    .cells()
}

/// What the first row of a LUN in `hbad luns` shows, from a view or from what was
/// read of it.
struct LunCells<'a> {
    hctl: &'a str,
    lun: u64,
    type_name: Option<&'static str>,
    vendor: Option<&'a str>,
    model: Option<&'a str>,
    size_bytes: Option<u64>,
    dev: Option<&'a str>,
    map: Option<&'a str>,
    target_wwpn: Option<Wwn>,
}

impl LunCells<'_> {
    fn cells(&self) -> Vec<String> {
        vec![
            self.hctl.to_string(),
            self.lun.to_string(),
            or_dash(self.type_name),
            or_dash(self.vendor),
            or_dash(self.model),
            or_dash(self.size_bytes.map(human_size)),
            or_dash(self.dev),
            or_dash(self.map),
            or_dash(self.target_wwpn),
        ]
    }
}

/// A LUN's rows from its first cells and its links: the first link ends the first
/// row, each other link has a row of its own.
fn link_rows(mut first: Vec<String>, links: &[String]) -> Vec<Vec<String>> {
    let mut links = links.iter();
    first.push(links.next().cloned().unwrap_or_else(|| "-".to_string()));
    let mut rows = vec![first];
    for link in links {
        let mut row = vec![String::new(); LUNS_HEADER.len() - 1];
        row.push(link.clone());
        rows.push(row);
    }
    rows
}

/// `hbad luns` as a table whose rows are all read before the first is printed: the
/// columns are as wide as their widest cell. A large host has tens of thousands
/// of LUNs, so each row is kept as text, and only what the row before it does not
/// already say: a target's LUNs share their type, vendor, model, size, map and
/// target, and the LUN number and device are in the address and the disk's name.
/// Links are looked up by the disk's name as each row is printed.
#[derive(Debug)]
pub struct LunTable {
    /// Each row: a flag character ([`LunTable::LUN`], [`LunTable::DEVICE`],
    /// [`LunTable::SHARED`] added to `'0'`) before its address, then the cells
    /// the flags say are there, each ended by a NUL (attributes are cut at their
    /// first NUL, so none holds one): the address, the LUN number (when it is
    /// not the address's last field), the disk's name (empty for none), the
    /// device (when it is not `/dev/` and that name, or `-` for none) and the
    /// six cells of [`SHARED_CELLS`] (when they are not the row before's).
    text: String,
    widths: Vec<usize>,
    rows: usize,
    /// The shared cells of the last row.
    last: Option<Vec<String>>,
}

/// The columns of `hbad luns` whose cells a target's LUNs usually share: TYPE,
/// VENDOR, MODEL, SIZE, MAP, TARGET.
const SHARED_CELLS: [usize; 6] = [2, 3, 4, 5, 7, 8];

impl Default for LunTable {
    fn default() -> Self {
        let mut widths = Vec::new();
        widen(&mut widths, &LUNS_HEADER);
        LunTable {
            text: String::new(),
            widths,
            rows: 0,
            last: None,
        }
    }
}

impl LunTable {
    const LUN: u8 = 1;
    const DEVICE: u8 = 2;
    const SHARED: u8 = 4;

    pub fn push(&mut self, lun: &LunView) {
        let cells = lun_cells(lun);
        self.push_cells(&cells, lun.disk.as_deref().unwrap_or(""));
    }

    /// A LUN's row from what was read of it (its first disk, as the graph's
    /// [`Graph::disk_of`] gives it, and the WWPN of the remote port above it):
    /// the row [`LunTable::push`] makes of the LUN's view, without the graph.
    pub fn push_read(&mut self, lun: &LunInfo, disk: Option<&BlockInfo>, target: Option<Wwn>) {
        let hctl = lun.hctl.to_string();
        let dev = disk.map(|d| format!("/dev/{}", d.name));
        let cells = LunCells {
            hctl: &hctl,
            lun: lun.hctl.lun,
            type_name: lun.scsi_type.map(scsi_type_name),
            vendor: lun.vendor.as_deref(),
            model: lun.model.as_deref(),
            size_bytes: disk.and_then(|d| d.size_bytes),
            dev: dev.as_deref(),
            map: disk
                .and_then(|d| d.multipath.as_deref())
                .map(|m| m.name.as_str()),
            target_wwpn: target,
        }
        .cells();
        self.push_cells(&cells, disk.map_or("", |d| d.name.as_str()));
    }

    /// A row from its cells but LINKS ([`lun_cells`]) and its disk's name (empty
    /// for none).
    pub fn push_cells<S: AsRef<str>>(&mut self, cells: &[S], disk: &str) {
        let cell = |i: usize| cells.get(i).map_or("", |c| c.as_ref());
        // LINKS, not among them, is never padded and so widens nothing.
        for (w, c) in self.widths.iter_mut().zip(cells) {
            *w = (*w).max(shown(c.as_ref()).1);
        }
        let (address, lun, device) = (cell(0), cell(1), cell(6));
        let mut flags = 0;
        if lun_of_address(address) != lun {
            flags |= Self::LUN;
        }
        if !device_is_disk(device, disk) {
            flags |= Self::DEVICE;
        }
        let same = self.last.as_ref().is_some_and(|last| {
            SHARED_CELLS
                .iter()
                .zip(last)
                .all(|(&i, l)| cell(i) == l.as_str())
        });
        if !same {
            flags |= Self::SHARED;
            self.last = Some(SHARED_CELLS.iter().map(|&i| cell(i).to_string()).collect());
        }
        self.text.push(char::from(b'0' + flags));
        let mut put = |c: &str| {
            self.text.push_str(c);
            self.text.push('\0');
        };
        put(address);
        if flags & Self::LUN != 0 {
            put(lun);
        }
        put(disk);
        if flags & Self::DEVICE != 0 {
            put(device);
        }
        if flags & Self::SHARED != 0 {
            for i in SHARED_CELLS {
                put(cell(i));
            }
        }
        self.rows += 1;
    }

    /// Adds the rows of another table after these.
    pub fn append(&mut self, other: LunTable) {
        self.text.push_str(&other.text);
        for (w, o) in self.widths.iter_mut().zip(other.widths) {
            *w = (*w).max(o);
        }
        self.rows += other.rows;
        if other.last.is_some() {
            self.last = other.last;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Writes the header and the rows, each disk with its stable `links`.
    pub fn write(&self, links: &StableLinks, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        const LAST: usize = LUNS_HEADER.len() - 1;
        let mut line = String::new();
        aligned_into(&self.widths, &LUNS_HEADER, &mut line);
        writeln!(out, "{line}")?;
        let (mut link, mut device) = (String::new(), String::new());
        let mut shared = [""; SHARED_CELLS.len()];
        let mut cells = self.text.split('\0');
        for _ in 0..self.rows {
            let first = cells.next().unwrap_or("");
            let flags = first.bytes().next().map_or(0, |b| b.wrapping_sub(b'0'));
            let address = first.get(1..).unwrap_or("");
            let mut row = [""; LUNS_HEADER.len()];
            row[0] = address;
            row[1] = if flags & Self::LUN != 0 {
                cells.next().unwrap_or("")
            } else {
                lun_of_address(address)
            };
            let disk = cells.next().unwrap_or("");
            if flags & Self::DEVICE != 0 {
                row[6] = cells.next().unwrap_or("");
            } else {
                device.clear();
                device_of_disk(disk, &mut device);
                row[6] = &device;
            }
            if flags & Self::SHARED != 0 {
                for cell in &mut shared {
                    *cell = cells.next().unwrap_or("");
                }
            }
            for (&i, cell) in SHARED_CELLS.iter().zip(shared) {
                row[i] = cell;
            }
            let mut disk_links = links.of(disk);
            // The first link ends the LUN's row, each other has a row of its own.
            link.clear();
            match disk_links.next_link().filter(|_| !disk.is_empty()) {
                Some(l) => write!(link, "{l}").unwrap_or(()),
                None => link.push('-'),
            }
            row[LAST] = &link;
            aligned_into(&self.widths, &row, &mut line);
            writeln!(out, "{line}")?;
            while let Some(l) = disk_links.next_link().filter(|_| !disk.is_empty()) {
                link.clear();
                write!(link, "{l}").unwrap_or(());
                let mut row = [""; LUNS_HEADER.len()];
                row[LAST] = &link;
                aligned_into(&self.widths, &row, &mut line);
                writeln!(out, "{line}")?;
            }
        }
        Ok(())
    }
}

/// The LUN number as an address (`H:C:T:L`) ends with it.
fn lun_of_address(address: &str) -> &str {
    address.rsplit(':').next().unwrap_or("")
}

/// The DEVICE cell of a LUN whose disk is `disk` (empty for none), into `out`.
fn device_of_disk(disk: &str, out: &mut String) {
    if disk.is_empty() {
        out.push('-');
    } else {
        out.push_str("/dev/");
        out.push_str(disk);
    }
}

/// Is `device` the DEVICE cell [`device_of_disk`] makes of `disk`?
fn device_is_disk(device: &str, disk: &str) -> bool {
    if disk.is_empty() {
        device == "-"
    } else {
        device.strip_prefix("/dev/") == Some(disk)
    }
}

/// `hbad show` for people: the device's attributes, then its relations.
pub fn render_show(show: &ShowView) -> String {
    let mut out = String::new();
    let (kind, name) = kind_and_name(&show.device);
    let _ = writeln!(out, "{} ({kind})", printable(name));
    let rows: Vec<Vec<String>> = attribute_rows(&show.device)
        .into_iter()
        .filter(|(k, _)| k != "kind" && k != "name")
        .map(|(k, v)| vec![format!("  {k}"), v])
        .collect();
    for line in align(&rows) {
        let _ = writeln!(out, "{line}");
    }
    if !show.relations.is_empty() {
        let _ = writeln!(out, "relations");
        let rows: Vec<Vec<String>> = show
            .relations
            .iter()
            .map(|r| {
                let (_, name) = kind_and_name(&r.device);
                vec![
                    format!("  {}", r.relation.replace('_', " ")),
                    name.to_string(),
                    relation_summary(&r.device),
                ]
            })
            .collect();
        for line in align(&rows) {
            let _ = writeln!(out, "{line}");
        }
    }
    out
}

fn kind_and_name(v: &NodeView) -> (&'static str, &str) {
    match v {
        NodeView::Host(h) if h.is_vhba => ("vHBA", &h.name),
        NodeView::Host(h) if h.fc.is_some() => ("FC host", &h.name),
        NodeView::Host(h) => ("SCSI host", &h.name),
        NodeView::Vport(v) => ("NPIV vport", &v.name),
        NodeView::RemotePort(r) => ("FC remote port", &r.name),
        NodeView::Target(t) => ("SCSI target", &t.name),
        NodeView::Lun(l) => ("LUN", &l.name),
        NodeView::Disk(d) => ("disk", &d.name),
    }
}

fn relation_summary(v: &NodeView) -> String {
    let join =
        |parts: Vec<Option<String>>| parts.into_iter().flatten().collect::<Vec<_>>().join("  ");
    match v {
        NodeView::Host(h) => join(vec![
            h.proc_name.clone(),
            h.fc.as_ref().and_then(|f| f.wwpn).map(|w| w.to_string()),
            h.fc.as_ref().and_then(|f| f.port_state.clone()),
        ]),
        NodeView::Vport(p) => join(vec![
            p.wwpn.map(|w| w.to_string()),
            p.vport_state.clone(),
            p.vhba.as_ref().map(|h| format!("makes {h}")),
        ]),
        NodeView::RemotePort(r) => join(vec![
            r.wwpn.map(|w| w.to_string()),
            r.port_state.clone(),
            (!r.roles.is_empty()).then(|| r.roles.join(", ")),
        ]),
        NodeView::Target(t) => join(vec![t.target_wwpn.map(|w| w.to_string())]),
        NodeView::Lun(l) => join(vec![
            l.vendor.clone(),
            l.model.clone(),
            l.size_bytes.map(human_size),
            l.dev.clone(),
        ]),
        NodeView::Disk(d) => join(vec![
            Some(d.dev.clone()),
            d.size_bytes.map(human_size),
            d.links.first().cloned(),
        ]),
    }
}

/// A JSON value that keeps object keys in the order they were written (serde_json's
/// own `Value` sorts them), so `show` lists attributes in the order of the structs.
enum Ordered {
    Scalar(String),
    Object(Vec<(String, Ordered)>),
}

impl<'de> serde::Deserialize<'de> for Ordered {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Ordered;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_unit<E>(self) -> Result<Ordered, E> {
                Ok(Ordered::Scalar("-".into()))
            }
            fn visit_none<E>(self) -> Result<Ordered, E> {
                Ok(Ordered::Scalar("-".into()))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Ordered, E> {
                Ok(Ordered::Scalar(v.to_string()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Ordered, E> {
                Ok(Ordered::Scalar(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Ordered, E> {
                Ok(Ordered::Scalar(v.to_string()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Ordered, E> {
                Ok(Ordered::Scalar(v.to_string()))
            }
            fn visit_str<E>(self, v: &str) -> Result<Ordered, E> {
                Ok(Ordered::Scalar(v.to_string()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<Ordered, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = a.next_element::<Ordered>()? {
                    if let Ordered::Scalar(s) = item {
                        items.push(s);
                    }
                }
                Ok(Ordered::Scalar(if items.is_empty() {
                    "-".into()
                } else {
                    items.join(", ")
                }))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<Ordered, A::Error> {
                let mut entries = Vec::new();
                while let Some((k, v)) = a.next_entry::<String, Ordered>()? {
                    entries.push((k, v));
                }
                Ok(Ordered::Object(entries))
            }
        }
        d.deserialize_any(V)
    }
}

/// The attributes of a device view as `key  value` pairs in struct order, nested
/// objects as dotted keys (`fc.npiv.max_vports`); nulls show as `-`.
fn attribute_rows(view: &NodeView) -> Vec<(String, String)> {
    fn flatten(prefix: &str, value: Ordered, out: &mut Vec<(String, String)>) {
        match value {
            Ordered::Scalar(s) => out.push((prefix.to_string(), s)),
            Ordered::Object(entries) => {
                for (k, v) in entries {
                    let key = if prefix.is_empty() {
                        k
                    } else {
                        format!("{prefix}.{k}")
                    };
                    flatten(&key, v, out);
                }
            }
        }
    }
    let mut out = Vec::new();
    if let Ok(value) = serde_json::to_string(view).and_then(|j| serde_json::from_str(&j)) {
        flatten("", value, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_naturally() {
        let mut names = vec![
            "host10", "host2", "sdaa", "sdb", "sda", "1:0:0:10", "1:0:0:2",
        ];
        names.sort_by_key(|n| name_key(n));
        assert_eq!(
            names,
            ["1:0:0:2", "1:0:0:10", "host2", "host10", "sda", "sdb", "sdaa"]
        );
    }

    #[test]
    fn columns_line_up_and_last_column_is_not_padded() {
        let rows = vec![
            vec!["a".to_string(), "long".into(), "x".into()],
            vec!["bbb".to_string(), "s".into(), "longer last".into()],
            vec!["c".to_string()],
        ];
        assert_eq!(
            align(&rows),
            ["a    long  x", "bbb  s     longer last", "c"]
        );
    }
}

//! libvirt interop at the edge: `show --xml`, `luns --libvirt-disk` and
//! `import-libvirt`. The XML itself is built and read in [`crate::libvirt`]; this
//! module only gathers what it needs from sysfs and files, and prints.

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, ValueEnum};

use super::inspect::{luns_of, resolve};
use super::policy::load_graph;
use super::render::{self, NodeView};
use super::Global;
use crate::graph::describe::human_size;
use crate::graph::{Graph, Lookup, Node, NodeKind};
use crate::libvirt::pool::POOL_XML_MAX;
use crate::libvirt::{
    guest_disk_name, import_pools, stable_source, DiskDevice, DiskSnippet, Import, ImportParent,
    NodeDeviceParent, PoolSource, ScsiDevice, ScsiHostDevice, ScsiTargetDevice,
};
use crate::sysfs::{devpath_name, host_number, parent_devpath, Sysfs};
use crate::terminal::{echoed, printable};

#[derive(Debug, Clone, Args)]
pub struct ShowArgs {
    /// Print a SCSI host, target or LUN as libvirt's node-device XML (`virsh
    /// nodedev-dumpxml scsi_hostN`, `scsi_target1_0_0`, `scsi_1_0_0_0`).
    #[arg(long)]
    pub xml: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DeviceArg {
    /// device='lun': SCSI commands pass through (reservations, clustering).
    Lun,
    /// device='disk': an emulated disk on top of the LUN.
    Disk,
}

#[derive(Debug, Clone, Args)]
pub struct LunsArgs {
    /// Print libvirt <disk type='block'> elements for the LUNs' disks, each naming the
    /// disk by its most stable link (by-vhba, by-id, by-path, else /dev/sdX); a
    /// path of a multipath map gives one element for the map, named
    /// /dev/disk/by-id/dm-uuid-mpath-WWID.
    #[arg(long)]
    pub libvirt_disk: bool,
    /// What the guest sees, with --libvirt-disk.
    #[arg(long, value_enum, default_value = "lun", requires = "libvirt_disk")]
    pub device: DeviceArg,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// libvirt pool definitions (`virsh pool-dumpxml POOL > POOL.xml`); `-` reads
    /// one from standard input.
    #[arg(required = true, value_name = "POOL.xml")]
    pub files: Vec<PathBuf>,
    /// Write the policy to FILE instead of standard output: only when the import
    /// succeeds, and by renaming a finished temporary over it, so an existing FILE
    /// is never left truncated or half-written. FILE must be a regular file or
    /// absent: a device (`/dev/null`), FIFO, directory or symbolic link is refused.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

fn no_json(g: &Global, flag: &str) -> anyhow::Result<()> {
    if g.json {
        anyhow::bail!("{flag} prints XML; it does not go with --json");
    }
    Ok(())
}

/// The node device libvirt would name as a host's parent: the vport's host for a
/// vHBA, else the nearest PCI function or network interface above it, else `computer`.
fn node_device_parent(sysfs: &Sysfs, graph: &Graph, host: &Node) -> NodeDeviceParent {
    if let Some(NodeKind::Host(parent)) = graph
        .vport_of_vhba(host)
        .and_then(|v| graph.vport_parent_host(v))
        .map(|p| &p.kind)
    {
        return NodeDeviceParent::ScsiHost(parent.scsi.number);
    }
    let mut cur = parent_devpath(&host.devpath);
    while let Some(dir) = cur {
        let name = devpath_name(dir);
        let subsystem = sysfs.link_name(dir, "subsystem");
        match subsystem.as_deref() {
            Some("pci") => return NodeDeviceParent::Pci(name.to_string()),
            Some("net") => {
                if let Some(mac) = sysfs.attr(dir, "address") {
                    return NodeDeviceParent::Net {
                        interface: name.to_string(),
                        mac,
                    };
                }
            }
            // Copies of sysfs may lack the subsystem link; the names still tell.
            None if NodeDeviceParent::is_pci_address(name) => {
                return NodeDeviceParent::Pci(name.to_string())
            }
            None => {
                if let Some(n) = host_number(name) {
                    return NodeDeviceParent::ScsiHost(n);
                }
            }
            _ => {}
        }
        cur = parent_devpath(dir);
    }
    NodeDeviceParent::Computer
}

/// `hbad show --xml DEVICE`: a SCSI host, target or LUN as libvirt's node-device XML.
pub fn show_xml(g: &Global, device: &str) -> anyhow::Result<ExitCode> {
    no_json(g, "--xml")?;
    let graph = load_graph(g)?;
    let found = resolve(&graph, device)?;
    // A WWPN names a vport and its vHBA at once; libvirt has node devices for the
    // vHBA only, and none for vports, remote ports or (here) disks.
    let described: Vec<&Node> = found
        .iter()
        .copied()
        .filter(|n| {
            matches!(
                n.kind,
                NodeKind::Host(_) | NodeKind::Target(_) | NodeKind::Lun(_)
            )
        })
        .collect();
    let node = match described.as_slice() {
        [one] => *one,
        [] => {
            let what: Vec<String> = found
                .iter()
                .map(|n| format!("{} {}", n.kind.label(), n.name()))
                .collect();
            anyhow::bail!(
                "`{}` is {}, which libvirt has no node device for here; --xml describes SCSI hosts (host5 or a port's WWPN), targets (target1:0:0) and LUNs (1:0:0:0)",
                echoed(device),
                what.join(" and ")
            );
        }
        many => {
            let names: Vec<&str> = many.iter().map(|n| n.name()).collect();
            anyhow::bail!(
                "`{}` names several devices ({}); name one of them",
                echoed(device),
                names.join(", ")
            );
        }
    };
    let path = format!("/sys{}", node.devpath);
    let xml = match &node.kind {
        NodeKind::Host(h) => {
            let parent = node_device_parent(&g.sysfs(), &graph, node);
            ScsiHostDevice::from_host(h, &node.devpath, parent).to_xml()
        }
        NodeKind::Target(t) => {
            let remote_port = graph.remote_port_of(node).and_then(|r| match &r.kind {
                NodeKind::RemotePort(rp) => Some((r.name().to_string(), rp.wwpn?)),
                _ => None,
            });
            ScsiTargetDevice {
                target: t.name.clone(),
                path,
                host: t.host,
                remote_port,
            }
            .to_xml()
        }
        NodeKind::Lun(l) => {
            let h = l.hctl;
            ScsiDevice {
                hctl: h,
                path,
                target: format!("target{}:{}:{}", h.host, h.channel, h.target),
                driver: l.driver.clone(),
                scsi_type: l.scsi_type,
            }
            .to_xml()
        }
        _ => unreachable!("filtered to hosts, targets and LUNs above"),
    };
    render::emit_all(&xml)?;
    Ok(ExitCode::SUCCESS)
}

/// `hbad luns --libvirt-disk [FILTER]`: a `<disk>` element per LUN with a disk.
pub fn luns_disks(g: &Global, filter: Option<&str>, args: &LunsArgs) -> anyhow::Result<ExitCode> {
    no_json(g, "--libvirt-disk")?;
    let graph = load_graph(g)?;
    let luns = match filter {
        None => graph.luns(),
        Some(f) => luns_of(&graph, &resolve(&graph, f)?),
    };
    let device = match args.device {
        DeviceArg::Lun => DiskDevice::Lun,
        DeviceArg::Disk => DiskDevice::Disk,
    };
    let mut snippets = Vec::new();
    // One LUN reached through two paths (two vHBAs, two target ports) is two sdX with
    // one WWID: handing both to a guest gives it one disk twice, unsynchronised.
    let mut seen_wwid: HashMap<String, String> = HashMap::new();
    let mut seen_maps: HashMap<String, String> = HashMap::new();
    for lun in &luns {
        let NodeView::Lun(l) = render::view(&graph, lun) else {
            continue;
        };
        let Some(dev) = &l.dev else {
            eprintln!(
                "note: LUN {} has no disk (no block device), so no <disk> for it",
                l.hctl
            );
            continue;
        };
        // A path of a multipath map: the guest gets the map, which survives the
        // loss of any one path, named by the link that is the same on every host
        // that sees the volume (a live migration's destination finds it there).
        if let Some(map) = &l.multipath {
            if let Some(first) = seen_maps.get(&map.dm) {
                eprintln!(
                    "note: {} ({dev}) is another path of multipath map {} ({first} too): one <disk> for the map",
                    l.hctl, map.name
                );
                continue;
            }
            seen_maps.insert(map.dm.clone(), format!("{} ({dev})", l.hctl));
        } else if let Some(wwid) = &l.wwid {
            match seen_wwid.get(wwid) {
                Some(first) => eprintln!(
                    "warning: {} ({dev}) is the LUN {first} shows too (WWID {wwid}), through another path; give a guest one of them, or the dm-multipath device over both",
                    l.hctl
                ),
                None => {
                    seen_wwid.insert(wwid.clone(), format!("{} ({dev})", l.hctl));
                }
            }
        }
        let mut about = vec![l.hctl.clone()];
        about.extend(l.vendor.clone());
        about.extend(l.model.clone());
        about.push(dev.clone());
        if let Some(map) = &l.multipath {
            about.push(format!(
                "path of multipath map {} ({})",
                map.name,
                map.mapper_path()
            ));
        }
        about.extend(l.size_bytes.map(human_size));
        if let Some(v) = &l.vhba_name {
            about.push(format!("vHBA {v}"));
        }
        if let Some(t) = l.target_wwpn {
            about.push(format!("target {t}"));
        }
        snippets.push(DiskSnippet {
            device,
            source: match &l.multipath {
                Some(map) => map.by_id_path(),
                None => stable_source(dev, &l.links).to_string(),
            },
            target: guest_disk_name(snippets.len()),
            about: about.join(" "),
        });
    }
    if snippets.is_empty() {
        match filter {
            Some(f) => eprintln!("no LUNs with a disk on {f}"),
            None => eprintln!("no LUNs with a disk under {}", g.sysfs_root.display()),
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = String::from(
        "<!-- For a domain's <devices>. bus='scsi' needs a SCSI controller there, e.g.\n     <controller type='scsi' model='virtio-scsi'/>; target names are suggestions. -->\n",
    );
    for s in &snippets {
        out.push_str(&s.to_xml());
    }
    render::emit_all(&out)?;
    Ok(ExitCode::SUCCESS)
}

/// For vHBAs whose pool named the parent `scsi_hostN`: the WWPN that host has on this
/// machine now, which names the same port after the next boot too. Only a hint, and
/// only where sysfs can be read: the import itself never depends on this machine.
fn suggest_parent_wwpns(g: &Global, import: &Import) {
    let by_host: Vec<(&str, u32)> = import
        .vhbas
        .iter()
        .filter_map(|v| match v.parent {
            ImportParent::Host(n) => Some((v.name.as_str(), n)),
            _ => None,
        })
        .collect();
    if by_host.is_empty() {
        return;
    }
    let Ok(graph) = load_graph(g) else {
        return;
    };
    for (name, n) in by_host {
        let wwpn = graph
            .find(&Lookup::Host(n))
            .into_iter()
            .find_map(|h| match &h.kind {
                NodeKind::Host(host) => host.fc.as_ref()?.wwpn,
                _ => None,
            });
        if let Some(w) = wwpn {
            eprintln!(
                "note: host{n} is the FC port {w} on this machine: parent_wwpn = \"{w}\" instead of parent = \"host{n}\" keeps vHBA `{name}` on it across boots"
            );
        }
    }
}

/// One pool definition, or why it cannot be read: stdin for `-`, else a regular
/// file, opened non-blocking and checked before it is read, never read past
/// [`POOL_XML_MAX`] (a FIFO, /dev/zero or a disk image given by mistake).
fn read_pool(path: &Path) -> Result<String, String> {
    let too_big = || format!("more than the {POOL_XML_MAX} bytes a pool definition may hold");
    let mut bytes = Vec::new();
    let limit = POOL_XML_MAX as u64 + 1;
    if path == Path::new("-") {
        std::io::stdin()
            .lock()
            .take(limit)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("cannot read: {e}"))?;
    } else {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| format!("cannot read: {e}"))?;
        let meta = file.metadata().map_err(|e| format!("cannot read: {e}"))?;
        if !meta.is_file() {
            return Err("cannot read: not a regular file (a pool definition is one)".into());
        }
        if meta.len() > POOL_XML_MAX as u64 {
            return Err(too_big());
        }
        file.take(limit)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("cannot read: {e}"))?;
    }
    if bytes.len() > POOL_XML_MAX {
        return Err(too_big());
    }
    String::from_utf8(bytes).map_err(|e| {
        format!(
            "not UTF-8 (byte {}); libvirt writes pool definitions in UTF-8",
            e.utf8_error().valid_up_to()
        )
    })
}

/// Writes `text` to `path` whole or not at all: a temporary beside it, synced and
/// renamed over it; only a regular file (or nothing) at `path` is replaced.
fn write_whole(path: &Path, text: &str) -> std::io::Result<()> {
    crate::files::replace(path, text.as_bytes(), 0o644)
}

/// `hbad import-libvirt POOL.xml...`: policy TOML on stdout (or `--output`), or
/// every refusal on stderr and nothing written. Pools that stand for no vHBA are
/// skipped, each with why.
pub fn import(g: &Global, args: ImportArgs) -> anyhow::Result<ExitCode> {
    let mut sources = Vec::new();
    let mut unreadable = Vec::new();
    if args
        .files
        .iter()
        .filter(|f| f.as_path() == Path::new("-"))
        .count()
        > 1
    {
        anyhow::bail!("`-` (standard input) can be given once");
    }
    if let Some(why) = args
        .output
        .as_deref()
        .and_then(|p| crate::files::replaceable(p).err())
    {
        anyhow::bail!("--output: {why}");
    }
    for path in &args.files {
        match read_pool(path) {
            Ok(text) => sources.push(PoolSource {
                path: path.clone(),
                text,
            }),
            Err(e) => unreadable.push(format!("{}: {e}", printable(&path.display().to_string()))),
        }
    }
    let result = import_pools(&sources);
    let refusals = match &result {
        Ok(_) => 0,
        Err(errors) => errors.len(),
    } + unreadable.len();
    for e in &unreadable {
        eprintln!("error: {e}");
    }
    if let Ok(import) = &result {
        for s in &import.skipped {
            eprintln!("skipped: {s}");
        }
    }
    match result {
        Ok(import) if unreadable.is_empty() && !import.vhbas.is_empty() => {
            for w in &import.warnings {
                eprintln!("warning: {w}");
            }
            suggest_parent_wwpns(g, &import);
            match &args.output {
                Some(path) => write_whole(path, &import.to_string())
                    .map_err(|e| anyhow::anyhow!("{}: cannot write: {e}", path.display()))?,
                None => render::emit_all(&import.to_string())?,
            }
            Ok(ExitCode::SUCCESS)
        }
        Ok(import) if unreadable.is_empty() => {
            eprintln!(
                "nothing imported: none of the {} pool definition{} stands for a vHBA",
                import.skipped.len(),
                if import.skipped.len() == 1 { "" } else { "s" }
            );
            Ok(ExitCode::FAILURE)
        }
        other => {
            if let Err(errors) = other {
                for e in errors {
                    eprintln!("error: {e}");
                }
            }
            eprintln!(
                "nothing imported: {refusals} pool definition{} cannot be expressed as hbad policy",
                if refusals == 1 { "" } else { "s" }
            );
            Ok(ExitCode::FAILURE)
        }
    }
}

//! What `hbad show` adds to a host or remote port, as `systool -v` prints it: the
//! FC transport's link and loss settings, the driver's firmware and version
//! attributes, and the port statistics. They are read when shown, not kept in
//! the graph: statistics change with every frame and nothing decides on them.
//!
//! Which attributes exist is the driver's business (qla2xxx has `fw_version`,
//! lpfc `fwrev`), so each group lists what drivers are known to offer and shows
//! the ones present. Every read is bounded: a sysfs attribute is at most a page.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use serde::Serialize;

use crate::graph::{Node, NodeKind};
use crate::sysfs::Sysfs;

/// An fc_host has about twenty statistics; a directory with far more is not one.
const MAX_STATISTICS: usize = 64;

/// fc_host attributes `hbad show` does not already print elsewhere.
const FC_HOST: [&str; 7] = [
    "supported_speeds",
    "supported_classes",
    "maxframe_size",
    "dev_loss_tmo",
    "tgtid_bind_type",
    "system_hostname",
    "port_type",
];

/// Firmware, driver and model, under the names drivers give them.
const FIRMWARE: [&str; 13] = [
    "fw_version",
    "fwrev",
    "optrom_fw_version",
    "driver_version",
    "lpfc_drvr_version",
    "model_name",
    "modelname",
    "model_desc",
    "modeldesc",
    "serial_num",
    "serialnum",
    "isp_name",
    "hardware_version",
];

/// fc_remote_ports attributes: the loss timeouts decide how long a path may be gone.
const REMOTE_PORT: [&str; 5] = [
    "dev_loss_tmo",
    "fast_io_fail_tmo",
    "supported_classes",
    "maxframe_size",
    "roles",
];

/// Groups of `name = value`, by group (`fc_host`, `firmware`, `statistics`,
/// `fc_remote_port`); empty groups are left out.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Details(pub BTreeMap<&'static str, BTreeMap<String, String>>);

impl Details {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Indented `name  value` lines under each group's name.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (group, attrs) in &self.0 {
            out.push_str(group);
            out.push('\n');
            let width = attrs.keys().map(|k| k.len()).max().unwrap_or(0);
            for (k, v) in attrs {
                out.push_str(&format!("  {k:width$}  {v}\n"));
            }
        }
        out
    }
}

/// The details of a host or remote port; nothing for other kinds.
pub fn of_node(sysfs: &Sysfs, node: &Node) -> Details {
    let mut d = Details::default();
    let dir = sysfs.path(&node.devpath);
    let name = node.name();
    match &node.kind {
        NodeKind::Host(h) => {
            if h.fc.is_some() {
                let fc = dir.join("fc_host").join(name);
                add(&mut d, "fc_host", &fc, &FC_HOST);
                add_statistics(&mut d, &fc.join("statistics"));
            }
            add(
                &mut d,
                "firmware",
                &dir.join("scsi_host").join(name),
                &FIRMWARE,
            );
        }
        NodeKind::RemotePort(_) => {
            let rp = dir.join("fc_remote_ports").join(name);
            add(&mut d, "fc_remote_port", &rp, &REMOTE_PORT);
        }
        _ => {}
    }
    d
}

fn add(d: &mut Details, group: &'static str, dir: &Path, names: &[&str]) {
    let found: BTreeMap<String, String> = names
        .iter()
        .filter_map(|n| Some((n.to_string(), read_attr(&dir.join(n))?)))
        .collect();
    if !found.is_empty() {
        d.0.insert(group, found);
    }
}

fn add_statistics(d: &mut Details, dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().into_string().ok())
        // Write-only: reading it fails, and it is an action, not a statistic.
        .filter(|n| n != "reset_statistics")
        .collect();
    names.sort();
    names.truncate(MAX_STATISTICS);
    let stats: BTreeMap<String, String> = names
        .into_iter()
        .filter_map(|n| {
            let v = read_attr(&dir.join(&n))?;
            Some((n, v))
        })
        .collect();
    if !stats.is_empty() {
        d.0.insert("statistics", stats);
    }
}

/// One attribute, bounded and non-blocking as every sysfs read; `None` when it is
/// missing, unreadable, empty or longer than a page.
fn read_attr(path: &Path) -> Option<String> {
    crate::sysfs::attr_file(path).filter(|text| !text.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_read_bounded_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a");
        fs::write(&p, "16 Gbit\n").unwrap();
        assert_eq!(read_attr(&p).as_deref(), Some("16 Gbit"));
        fs::write(&p, b"fw 8.08\0garbage").unwrap();
        assert_eq!(read_attr(&p).as_deref(), Some("fw 8.08"));
        fs::write(&p, vec![b'x'; 5000]).unwrap();
        assert_eq!(read_attr(&p), None, "longer than a page");
        fs::write(&p, "\n").unwrap();
        assert_eq!(read_attr(&p), None);
        assert_eq!(read_attr(&dir.path().join("missing")), None);
    }

    #[test]
    fn statistics_skip_the_reset_knob_and_stop_at_a_bound() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..100 {
            fs::write(dir.path().join(format!("stat{i:03}")), "0x1").unwrap();
        }
        fs::write(dir.path().join("reset_statistics"), "").unwrap();
        let mut d = Details::default();
        add_statistics(&mut d, dir.path());
        let stats = &d.0["statistics"];
        assert_eq!(stats.len(), MAX_STATISTICS);
        assert!(!stats.contains_key("reset_statistics"));
    }
}

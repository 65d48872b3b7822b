//! Growing a multipath map once its paths have been re-read.
//!
//! A volume grown on the array shows its new size on a path only after that path's
//! `device/rescan`, and device-mapper keeps the map's size until told:
//! `multipathd resize map NAME`, which multipathd refuses while its paths disagree.
//! So after each path's rescan the worker looks at the map over it: when every path
//! now has one size and the map another, it asks multipathd (the last path re-read
//! does; two at once ask twice, which multipathd answers twice with "ok").

use std::process::Command;
use std::time::Duration;

use crate::sysfs::writes::{run_child, ChildBounds};
use crate::sysfs::{MultipathMap, Sysfs};

/// How long `multipathd resize map` may take: it talks to the daemon over its
/// socket, and the daemon reloads the map's table.
const MULTIPATHD_TIMEOUT: Duration = Duration::from_secs(30);

/// What the look at the map after a path's rescan found or did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MapResize {
    /// Not a path of a multipath map.
    NoMap,
    /// Paths still disagree, or the map already has their size.
    NotYet {
        map: MultipathMap,
        why: String,
    },
    Resized {
        map: MultipathMap,
        size: u64,
    },
    /// multipathd is not installed: the map keeps its size until resized by hand.
    NoMultipathd {
        map: MultipathMap,
    },
    Failed {
        map: MultipathMap,
        error: String,
    },
}

impl MapResize {
    /// In words, after "re-read H:C:T:L".
    pub fn describe(&self) -> Option<String> {
        match self {
            MapResize::NoMap => None,
            MapResize::NotYet { map, why } => Some(format!("multipath map {}: {why}", map.name)),
            MapResize::Resized { map, size } => Some(format!(
                "multipath map {} resized to {size} bytes (multipathd resize map {})",
                map.name, map.name
            )),
            MapResize::NoMultipathd { map } => Some(format!(
                "multipath map {} keeps its size: multipathd is not installed; run \
                 `multipathd resize map {}` where it is",
                map.name, map.name
            )),
            MapResize::Failed { map, error } => {
                Some(format!("multipath map {} not resized: {error}", map.name))
            }
        }
    }
}

/// After `device/rescan` of the LUN at `lun_devpath`: resizes the multipath map over
/// its disk once all the map's paths agree on a size the map does not have.
pub fn resize_after_rescan(sysfs: &Sysfs, lun_devpath: &str) -> MapResize {
    let Some(disk) = sysfs.disk_of_lun(lun_devpath) else {
        return MapResize::NoMap;
    };
    let Some(map) = sysfs.multipath_map_of(&disk) else {
        return MapResize::NoMap;
    };
    let paths = sysfs.multipath_paths(&map.dm);
    let sizes: std::collections::BTreeSet<Option<u64>> = paths.iter().map(|(_, s)| *s).collect();
    let size = match sizes.iter().collect::<Vec<_>>().as_slice() {
        [Some(one)] => *one,
        _ => {
            let list = paths
                .iter()
                .map(|(d, s)| format!("{d} {}", s.map_or("?".into(), |s| s.to_string())))
                .collect::<Vec<_>>()
                .join(", ");
            return MapResize::NotYet {
                map,
                why: format!("its paths do not agree yet ({list})"),
            };
        }
    };
    if sysfs.block_size_bytes(&map.dm) == Some(size) {
        return MapResize::NotYet {
            map,
            why: format!("already {size} bytes"),
        };
    }
    match multipathd(&["resize", "map", &map.name], MULTIPATHD_TIMEOUT) {
        Ok(()) => MapResize::Resized { map, size },
        Err(Multipathd::Missing) => MapResize::NoMultipathd { map },
        Err(Multipathd::Failed(error)) => MapResize::Failed { map, error },
    }
}

enum Multipathd {
    Missing,
    Failed(String),
}

/// Runs the multipathd client (from PATH) and waits at most `timeout`. It prints
/// `ok` or `fail` (and exits 1 on failure in recent multipath-tools). A client,
/// not a kernel write: past its time it is killed.
fn multipathd(args: &[&str], timeout: Duration) -> Result<(), Multipathd> {
    let command = format!("multipathd {}", args.join(" "));
    let bounds = ChildBounds {
        stdout: 4096,
        stderr: 4096,
        timeout: Some(timeout),
    };
    let end = match run_child(Command::new("multipathd").args(args), None, bounds) {
        Ok(end) => end,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Multipathd::Missing),
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
            return Err(Multipathd::Failed(format!(
                "`{command}` did not answer within {} s",
                timeout.as_secs()
            )))
        }
        Err(e) => return Err(Multipathd::Failed(format!("cannot run `{command}`: {e}"))),
    };
    let said = end.stdout.trim();
    if end.status.success() && !said.starts_with("fail") {
        Ok(())
    } else {
        let text = [said, end.stderr.trim()]
            .into_iter()
            .filter(|t| !t.is_empty())
            .collect::<Vec<_>>()
            .join(": ");
        Err(Multipathd::Failed(format!(
            "`{command}` said {text:?} ({})",
            end.status
        )))
    }
}

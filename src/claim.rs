//! The kernel's own answer to "is this disk in use": an exclusive open, held
//! across the `device/delete` write.
//!
//! [`crate::holders`] finds what leaves a trace in sysfs and `/proc`: stacked
//! devices, mounts hbad and PID 1 can see, open files. Kernel users of a disk
//! leave none there: an active swap area, a file system mounted only in another
//! mount namespace (a container's), the second device of a btrfs file system, a
//! ZFS vdev, an LIO iblock backstore. Each of them holds the disk *claimed*
//! (opened with a holder), and `open(2)` with `O_EXCL` and no `O_CREAT` asks for a
//! claim too (`bd_prepare_to_claim`): granted to the open file, or refused with
//! `EBUSY` while anyone else holds one.
//!
//! One exclusive open of the whole disk answers for its partitions as well:
//! claiming a partition marks the whole disk claimed (`bd_finish_claiming` sets the
//! whole disk's holder), so the whole disk's exclusive open fails while any
//! partition is claimed; and while the whole disk is held, no partition can be
//! claimed (`bd_may_claim`), nor the disk. Held across the write, it leaves no
//! moment between the look and the delete in which something could claim the
//! disk. The partitions are opened only when the disk is refused, to name which
//! one is claimed.
//!
//! The open is an `sd` open, which can wait on the target (a pending partition
//! scan, the host's error recovery): it runs in the `hbad delete-lun` child, on
//! the host's worker, like the writes.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::report_luns::{node_args, node_from_args, DeviceNode};
use crate::sysfs::writes::AttrWriter;

/// A LUN to delete through `delete`, once its disk is claimed by nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LunDelete {
    /// `.../H:C:T:L/delete`.
    pub delete: PathBuf,
    /// The LUN's disk, `/dev/sdX` as sysfs numbers it.
    pub disk: DeviceNode,
    /// The disk's partitions: opened to name the claimed one.
    pub partitions: Vec<DeviceNode>,
}

/// What came of a [`LunDelete`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Deletion {
    /// `device/delete` written while the disk was held exclusively.
    Deleted,
    /// The kernel refused the exclusive open: these nodes (device names) are
    /// claimed; nothing was written.
    Claimed { nodes: Vec<String> },
}

/// The most nodes one `delete-lun` takes (a disk and the partitions hbad looks at).
const MAX_NODES: usize = 257;

impl LunDelete {
    /// `hbad delete-lun`'s arguments after `--`: the delete attribute, then
    /// `NODE MAJ:MIN` for the disk and each partition.
    pub fn args(&self) -> Vec<String> {
        let mut out = vec![self.delete.display().to_string()];
        for node in std::iter::once(&self.disk).chain(&self.partitions) {
            out.extend(node_args(node));
        }
        out
    }

    /// Reads [`LunDelete::args`] back; `None` for anything else.
    pub fn from_args(args: &[String]) -> Option<LunDelete> {
        let (delete, nodes) = args.split_first()?;
        if nodes.is_empty() || nodes.len() % 2 != 0 || nodes.len() / 2 > MAX_NODES {
            return None;
        }
        let mut nodes = nodes
            .chunks_exact(2)
            .map(|pair| node_from_args(Path::new(&pair[0]), &pair[1]));
        let disk = nodes.next()??;
        Some(LunDelete {
            delete: PathBuf::from(delete),
            disk,
            partitions: nodes.collect::<Option<_>>()?,
        })
    }
}

impl fmt::Display for Deletion {
    /// The one line `hbad delete-lun` prints: `deleted` or `claimed NAME...`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Deletion::Deleted => writeln!(f, "deleted"),
            Deletion::Claimed { nodes } => writeln!(f, "claimed {}", nodes.join(" ")),
        }
    }
}

/// Reads `hbad delete-lun`'s line back, refusing anything else.
pub fn parse_deletion(text: &str) -> io::Result<Deletion> {
    let line = text.strip_suffix('\n').unwrap_or(text);
    let refused = || {
        io::Error::other(format!(
            "the delete-lun process printed `{}`, not `deleted` or `claimed NAME...`",
            line.chars().take(200).collect::<String>().escape_debug()
        ))
    };
    if line.contains('\n') {
        return Err(refused());
    }
    match line.split_once(' ') {
        None if line == "deleted" => Ok(Deletion::Deleted),
        Some(("claimed", names)) => {
            let nodes: Vec<String> = names.split(' ').map(str::to_string).collect();
            if nodes.iter().any(|n| n.is_empty()) || nodes.len() > MAX_NODES {
                return Err(refused());
            }
            Ok(Deletion::Claimed { nodes })
        }
        _ => Err(refused()),
    }
}

/// Opens the disk exclusively and, while it is held, writes `1` to `delete`
/// through `writer`. In process: call it where a hang costs one host.
pub fn delete_unclaimed(writer: &dyn AttrWriter, lun: &LunDelete) -> io::Result<Deletion> {
    let held = match lun.disk.open(libc::O_NONBLOCK | libc::O_EXCL) {
        Ok(file) => file,
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
            return Ok(Deletion::Claimed {
                nodes: claimed_nodes(lun),
            })
        }
        Err(e) => {
            return Err(io::Error::new(
                e.kind(),
                format!("cannot open {} exclusively: {e}", lun.disk),
            ))
        }
    };
    writer.write_attr(&lun.delete, "1").map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("{} (write of 1) failed: {e}", lun.delete.display()),
        )
    })?;
    // Closed only now: until the delete returned, nothing else could claim it.
    drop(held);
    Ok(Deletion::Deleted)
}

/// The partitions whose own exclusive open is refused; the disk itself when none
/// is (it is claimed whole, or a partition was released meanwhile).
fn claimed_nodes(lun: &LunDelete) -> Vec<String> {
    let name = |n: &DeviceNode| {
        n.path.file_name().map_or_else(
            || n.path.display().to_string(),
            |f| f.to_string_lossy().into(),
        )
    };
    let parts: Vec<String> = lun
        .partitions
        .iter()
        .filter(|p| {
            matches!(p.open(libc::O_NONBLOCK | libc::O_EXCL),
                Err(e) if e.raw_os_error() == Some(libc::EBUSY))
        })
        .map(name)
        .collect();
    if parts.is_empty() {
        vec![name(&lun.disk)]
    } else {
        parts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, dev: (u32, u32)) -> DeviceNode {
        DeviceNode {
            lun_devpath: String::new(),
            path: PathBuf::from(format!("/dev/{name}")),
            dev,
        }
    }

    #[test]
    fn the_child_arguments_round_trip_and_refuse_anything_else() {
        let lun = LunDelete {
            delete: PathBuf::from("/sys/devices/x/5:0:0:3/delete"),
            disk: node("sdd", (8, 48)),
            partitions: vec![node("sdd1", (8, 49)), node("sdd2", (8, 50))],
        };
        let args = lun.args();
        assert_eq!(
            args,
            [
                "/sys/devices/x/5:0:0:3/delete",
                "/dev/sdd",
                "8:48",
                "/dev/sdd1",
                "8:49",
                "/dev/sdd2",
                "8:50"
            ]
        );
        assert_eq!(LunDelete::from_args(&args), Some(lun));
        let strings = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        for bad in [
            &[][..],
            &["/sys/x/delete"][..],
            &["/sys/x/delete", "/dev/sdd"][..],
            &["/sys/x/delete", "/dev/sdd", "sdd"][..],
            &["/sys/x/delete", "/dev/sdd", "8:48", "/dev/sdd1"][..],
        ] {
            assert_eq!(LunDelete::from_args(&strings(bad)), None, "{bad:?}");
        }
    }

    #[test]
    fn the_child_line_round_trips_and_refuses_anything_else() {
        for d in [
            Deletion::Deleted,
            Deletion::Claimed {
                nodes: vec!["sdd".into()],
            },
            Deletion::Claimed {
                nodes: vec!["sdd1".into(), "sdd3".into()],
            },
        ] {
            assert_eq!(parse_deletion(&d.to_string()).unwrap(), d);
        }
        for bad in [
            "",
            "deleted\ndeleted\n",
            "claimed",
            "claimed \n",
            "claimed sdd  sdd1\n",
            "deleted sdd\n",
            "Deleted\n",
        ] {
            assert!(parse_deletion(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_node_that_is_not_the_disk_is_never_opened_nor_deleted_through() {
        // /dev/null is a character device: not the disk 8:48 whatever its name.
        let dir = tempfile::tempdir().unwrap();
        let delete = dir.path().join("delete");
        std::fs::write(&delete, "").unwrap();
        let lun = LunDelete {
            delete: delete.clone(),
            disk: DeviceNode {
                lun_devpath: String::new(),
                path: PathBuf::from("/dev/null"),
                dev: (8, 48),
            },
            partitions: vec![],
        };
        let err = delete_unclaimed(
            &crate::sysfs::writes::KernelWriter::beneath(dir.path()),
            &lun,
        )
        .unwrap_err();
        assert!(err.to_string().contains("is not the disk 8:48"), "{err}");
        assert_eq!(std::fs::read_to_string(&delete).unwrap(), "");
    }
}

//! What holds a disk: asked before hbad deletes a SCSI device.
//!
//! `device/delete` removes a disk whatever uses it: a mounted file system loses its
//! device, a VM's disk fails every I/O from then on, a multipath map loses a path.
//! So hbad deletes a LUN only when nothing holds its disk, looked at the four ways
//! a disk is held that leave a trace, for the disk and each of its partitions:
//! - a kernel holder, `holders/` in sysfs: device-mapper (a multipath map, LVM),
//!   md, bcache;
//! - a mount: `major:minor` (or the source `/dev/sdX`) in the mount table of hbad
//!   and of PID 1 (a service with a private mount namespace sees its own);
//! - an open file descriptor, found as `fuser` finds it, through `/proc/PID/fd`: a
//!   VM's qemu opens its disks itself;
//! - a loop device set up on it, which the loop driver keeps open in the kernel
//!   (`loop/backing_file`).
//!
//! What the kernel itself has claimed (swap, a mount in another mount namespace,
//! a btrfs or ZFS member, an LIO backstore) leaves no trace in any of these: the
//! delete asks the kernel with an exclusive open ([`crate::claim`]).
//!
//! Every read is bounded. When a bound is hit, or a process's files cannot be read,
//! the answer is "held" with the reason: a disk is never deleted on a guess.
//!
//! A `/proc` that hides processes (`hidepid=`, systemd's `ProtectProc=invisible`
//! without `CAP_SYS_PTRACE`) lists only what hbad may trace: a VM's qemu running as
//! another user would be missing and its disk look free. PID 1 is the probe: a
//! reader that cannot list `/proc/1/fd` or read `/proc/1/mountinfo` does not see
//! every process, and every disk is then held by "cannot see every process".

use std::fmt;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::files::{self, ReadError};
use crate::sysfs::parse_major_minor;
use crate::sysfs::Sysfs;

/// Processes looked at, at most (Linux's `pid_max` default on 64-bit is 4194304,
/// but a hypervisor runs thousands, not millions).
const MAX_PROCESSES: usize = 200_000;
/// Open files looked at over all processes, at most.
const MAX_OPEN_FILES: usize = 2_000_000;
/// The most of one mount table read: 64k mounts of ~150 bytes.
const MAX_MOUNTINFO: u64 = 16 * 1024 * 1024;
/// Processes holding a disk named, at most: the first ones say it is in use.
const MAX_HOLDERS: usize = 8;
/// Loop devices looked at (each is one sysfs read).
const MAX_LOOP_DEVICES: usize = 4096;
/// Partitions of one disk looked at (GPT allows 128).
const MAX_PARTITIONS: usize = 256;

/// One thing that holds a disk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "holder", rename_all = "snake_case")]
pub enum Holder {
    /// A kernel device stacked on it: `dm-3` (with its map name), `md0`.
    Device {
        device: String,
        of: String,
        name: Option<String>,
    },
    Mount {
        of: String,
        mountpoint: String,
    },
    Process {
        of: String,
        pid: u32,
        command: String,
    },
    /// A loop device set up on it (`losetup`).
    LoopBacking {
        device: String,
        of: String,
    },
    /// The kernel refused hbad an exclusive open ([`crate::claim`]): something
    /// in the kernel uses it without a trace in sysfs or `/proc`.
    Claimed {
        of: String,
    },
    /// Could not be looked at fully: treated as held.
    Unknown {
        why: String,
    },
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Holder::Device {
                device,
                of,
                name: Some(name),
            } => write!(f, "{of} is held by {device} ({name})"),
            Holder::Device { device, of, .. } => write!(f, "{of} is held by {device}"),
            Holder::Mount { of, mountpoint } => write!(f, "{of} is mounted on {mountpoint}"),
            Holder::Process { of, pid, command } => {
                write!(f, "{of} is open in process {pid} ({command})")
            }
            Holder::LoopBacking { device, of } => {
                write!(f, "{of} is the backing file of loop device {device}")
            }
            Holder::Claimed { of } => write!(
                f,
                "{of} is claimed by the kernel: mounted, swap, RAID/volume member or in \
                 use by another driver"
            ),
            Holder::Unknown { why } => write!(f, "cannot tell whether it is in use: {why}"),
        }
    }
}

/// A device node of a LUN: its disk or a partition (block), or its `sgN` or
/// `bsg/H:C:T:L` node (character: a VM given the LUN as `<hostdev type='scsi'>`,
/// a tape or changer tool). `name` is the node under `/dev`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct DevNode {
    name: String,
    dev: (u32, u32),
    char: bool,
    /// Which of the LUNs looked at together it belongs to.
    lun: usize,
}

/// The disk at `disk_devpath` (`.../H:C:T:L/block/sdX`) and its partitions, and
/// what holds the disk for want of a look: partitions past [`MAX_PARTITIONS`].
fn block_devs(
    sysfs: &Sysfs,
    disk_devpath: &str,
    lun: usize,
) -> (Vec<(String, Option<DevNode>)>, Option<Holder>) {
    let name = crate::sysfs::devpath_name(disk_devpath).to_string();
    let dev_of = |dir: &str, name: &str| {
        sysfs
            .attr(dir, "dev")
            .and_then(|d| parse_major_minor(&d))
            .map(|dev| DevNode {
                name: name.to_string(),
                dev,
                char: false,
                lun,
            })
    };
    let mut out = vec![(disk_devpath.to_string(), dev_of(disk_devpath, &name))];
    let mut partitions = sysfs.partitions_of(disk_devpath);
    // A partition not looked at could be the one mounted.
    let too_many = (partitions.len() > MAX_PARTITIONS).then(|| Holder::Unknown {
        why: format!(
            "{name} has {} partitions; hbad looks at {MAX_PARTITIONS} at most",
            partitions.len()
        ),
    });
    partitions.truncate(MAX_PARTITIONS);
    for part in partitions {
        let dir = format!("{disk_devpath}/{part}");
        out.push((dir.clone(), dev_of(&dir, &part)));
    }
    (out, too_many)
}

/// The LUN's character nodes: `scsi_generic/sgN` and `bsg/H:C:T:L`, as named
/// under `/dev`.
fn char_devs(sysfs: &Sysfs, lun_devpath: &str, lun: usize) -> Vec<DevNode> {
    ["scsi_generic", "bsg"]
        .iter()
        .filter_map(|class| {
            let dir = format!("{lun_devpath}/{class}");
            let name = sysfs.list(&dir).into_iter().next()?;
            let dev = parse_major_minor(&sysfs.attr(&format!("{dir}/{name}"), "dev")?)?;
            let name = if *class == "bsg" {
                format!("bsg/{name}")
            } else {
                name
            };
            Some(DevNode {
                name,
                dev,
                char: true,
                lun,
            })
        })
        .collect()
}

/// A LUN looked at: its devpath and its disk (the block device under `block/`).
#[derive(Clone, Copy, Debug)]
pub struct LunDisk<'a> {
    pub lun_devpath: &'a str,
    pub disk: &'a str,
}

/// What holds each of `luns`, through its disk and partitions and through its sg
/// and bsg nodes: one list per LUN, in order, empty when it is free to delete.
/// Mount tables and `/proc` are read once for all of them. `proc_root` is
/// `/proc` (a directory of the simulator's in tests).
pub fn holders(sysfs: &Sysfs, proc_root: &Path, luns: &[LunDisk<'_>]) -> Vec<Vec<Holder>> {
    let mut out: Vec<Vec<Holder>> = vec![Vec::new(); luns.len()];
    let mut devs = Vec::new();
    let mut chars = Vec::new();
    for (i, lun) in luns.iter().enumerate() {
        let (block, too_many) =
            block_devs(sysfs, &format!("{}/block/{}", lun.lun_devpath, lun.disk), i);
        out[i].extend(too_many);
        for (dir, dev) in &block {
            let of = crate::sysfs::devpath_name(dir).to_string();
            for device in sysfs.list(&format!("{dir}/holders")) {
                // A multipath map or LV says what it is: dm/name beside its dev.
                let name = sysfs.attr(&format!("/block/{device}/dm"), "name");
                out[i].push(Holder::Device {
                    device,
                    of: of.clone(),
                    name,
                });
            }
            if dev.is_none() {
                out[i].push(Holder::Unknown {
                    why: format!("{of} has no readable dev attribute"),
                });
            }
        }
        let block: Vec<DevNode> = block.into_iter().filter_map(|(_, d)| d).collect();
        // Without a single device number there is nothing to look for.
        if !block.is_empty() {
            chars.extend(char_devs(sysfs, lun.lun_devpath, i));
            devs.extend(block);
        }
    }
    if devs.is_empty() {
        return out;
    }
    merge(&mut out, mounts(proc_root, &devs, luns.len()));
    merge(&mut out, loop_backings(sysfs, &devs, luns.len()));
    devs.extend(chars);
    merge(&mut out, open_files(proc_root, &devs, luns.len()));
    out
}

/// Loop devices whose backing file is one of `devs` (`losetup /dev/loop0
/// /dev/sdd`), per LUN. The loop driver keeps the file open in the kernel without
/// claiming it and without a `holders/` link: neither `/proc` nor an exclusive
/// open sees it; only the loop device's `loop/backing_file` names it.
fn loop_backings(sysfs: &Sysfs, devs: &[DevNode], luns: usize) -> Vec<Vec<Holder>> {
    let mut out: Vec<Vec<Holder>> = vec![Vec::new(); luns];
    let loops = sysfs
        .list("/class/block")
        .into_iter()
        .filter(|n| n.starts_with("loop"))
        .take(MAX_LOOP_DEVICES);
    for device in loops {
        let Some(file) = sysfs.attr(&format!("/class/block/{device}/loop"), "backing_file") else {
            continue;
        };
        let held = devs.iter().filter(|d| !d.char).find(|d| {
            file == format!("/dev/{}", d.name)
                || (file.starts_with("/dev/") && {
                    // The node a loop device was set up on may have another name (a
                    // container's /dev): its number says which disk it is. Only /dev is
                    // looked into, as for open files.
                    let meta = fs::metadata(&file);
                    meta.is_ok_and(|m| {
                        m.file_type().is_block_device()
                            && (libc::major(m.rdev()), libc::minor(m.rdev())) == d.dev
                    })
                })
        });
        if let Some(d) = held {
            note(
                &mut out,
                d.lun,
                Holder::LoopBacking {
                    device,
                    of: d.name.clone(),
                },
            );
        }
    }
    out
}

fn merge(into: &mut [Vec<Holder>], from: Vec<Vec<Holder>>) {
    for (to, more) in into.iter_mut().zip(from) {
        to.extend(more);
    }
}

/// Adds `h` to LUN `lun`'s holders once, up to [`MAX_HOLDERS`]: the first ones say
/// it is in use and by whom.
fn note(out: &mut [Vec<Holder>], lun: usize, h: Holder) {
    if let Some(list) = out.get_mut(lun) {
        if list.len() < MAX_HOLDERS && !list.contains(&h) {
            list.push(h);
        }
    }
}

/// The same holder for every LUN (what could not be looked at).
fn for_all(luns: usize, h: Holder) -> Vec<Vec<Holder>> {
    vec![vec![h]; luns]
}

/// Why hbad cannot see every process and mount, said once for every disk.
const CANNOT_SEE_ALL: &str = "cannot see every process: /proc hides some of them \
     (hidepid or ProtectProc=invisible) or hbad lacks CAP_SYS_PTRACE";

/// Mounts of any of `devs`, in hbad's mount namespace and PID 1's, per LUN.
fn mounts(proc_root: &Path, devs: &[DevNode], luns: usize) -> Vec<Vec<Holder>> {
    let mut out: Vec<Vec<Holder>> = vec![Vec::new(); luns];
    for table in ["self/mountinfo", "1/mountinfo"] {
        let path = proc_root.join(table);
        // A table not read whole could hide the mount of a disk: unread or cut,
        // every disk is held, with the reason.
        let bytes = match files::read_bounded(&path, MAX_MOUNTINFO) {
            Ok(bytes) => bytes,
            // PID 1's table is the one a hiding /proc keeps from hbad.
            Err(e @ ReadError::Open(_)) if table.starts_with('1') => {
                let h = Holder::Unknown {
                    why: format!("{CANNOT_SEE_ALL} ({}: {e})", path.display()),
                };
                (0..luns).for_each(|i| note(&mut out, i, h.clone()));
                continue;
            }
            Err(e) => {
                let h = Holder::Unknown {
                    why: format!("the mount table {}: {e}", path.display()),
                };
                (0..luns).for_each(|i| note(&mut out, i, h.clone()));
                continue;
            }
        };
        // A mount point is any bytes but the four mountinfo escapes: one that is
        // not UTF-8 must not hide the mounts around it.
        let text = String::from_utf8_lossy(&bytes);
        // A disk bind-mounted a thousand times is named by its first mounts.
        for (lun, m) in mounted(&text, devs) {
            note(&mut out, lun, m);
        }
    }
    out
}

/// The mounts in one `mountinfo` text of any of `devs`: by `major:minor` (field 3),
/// or by the mount source `/dev/NAME` (btrfs shows an anonymous device number).
fn mounted(mountinfo: &str, devs: &[DevNode]) -> Vec<(usize, Holder)> {
    let mut out = Vec::new();
    for line in mountinfo.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let (Some(dev), Some(point)) = (fields.get(2), fields.get(4)) else {
            continue;
        };
        let source = fields
            .iter()
            .position(|f| *f == "-")
            .and_then(|i| fields.get(i + 2))
            .copied();
        let by_number = parse_major_minor(dev);
        for d in devs.iter().filter(|d| !d.char) {
            let node = format!("/dev/{}", d.name);
            if by_number == Some(d.dev) || source == Some(node.as_str()) {
                out.push((
                    d.lun,
                    Holder::Mount {
                        of: d.name.clone(),
                        mountpoint: unescape_octal(point),
                    },
                ));
            }
        }
    }
    out
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|o| o.iter().all(|c| (b'0'..=b'7').contains(c)));
        if let (b'\\', Some(o)) = (b[i], octal) {
            let v = (u32::from(o[0] - b'0') << 6)
                | (u32::from(o[1] - b'0') << 3)
                | u32::from(o[2] - b'0');
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Processes with one of `devs` open, as `fuser -m`-less `fuser /dev/sdX` finds
/// them: each `/proc/PID/fd/N` whose link names the node, or which is a block
/// device with that number (opened through another path: a by-id link, a node in
/// a container's /dev).
fn open_files(proc_root: &Path, devs: &[DevNode], luns: usize) -> Vec<Vec<Holder>> {
    let mut out: Vec<Vec<Holder>> = vec![Vec::new(); luns];
    let Ok(entries) = fs::read_dir(proc_root) else {
        return for_all(
            luns,
            Holder::Unknown {
                why: format!("cannot read {}", proc_root.display()),
            },
        );
    };
    // A listing that omits processes reads as "nothing holds it": PID 1 is always
    // there and shown to a reader that sees everyone.
    if fs::read_dir(proc_root.join("1/fd")).is_err() {
        return for_all(
            luns,
            Holder::Unknown {
                why: format!(
                    "{CANNOT_SEE_ALL} ({}/1/fd cannot be listed)",
                    proc_root.display()
                ),
            },
        );
    }
    let nodes: Vec<(String, &DevNode)> = devs
        .iter()
        .map(|d| (format!("/dev/{}", d.name), d))
        .collect();
    let mut processes = 0usize;
    let mut files = 0usize;
    let mut unreadable = 0usize;
    let mut first_unreadable: Option<String> = None;
    for entry in entries.filter_map(Result::ok) {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        processes += 1;
        if processes > MAX_PROCESSES {
            let h = Holder::Unknown {
                why: format!("more than {MAX_PROCESSES} processes to look through"),
            };
            (0..luns).for_each(|i| note(&mut out, i, h.clone()));
            return out;
        }
        let fd_dir: PathBuf = entry.path().join("fd");
        let fds = match fs::read_dir(&fd_dir) {
            Ok(fds) => fds,
            // Gone since the listing: it holds nothing now.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                // One count for all, not one line per process in the journal.
                unreadable += 1;
                first_unreadable.get_or_insert_with(|| format!("{}: {e}", fd_dir.display()));
                continue;
            }
        };
        for fd in fds.filter_map(Result::ok) {
            files += 1;
            if files > MAX_OPEN_FILES {
                let h = Holder::Unknown {
                    why: format!("more than {MAX_OPEN_FILES} open files to look through"),
                };
                (0..luns).for_each(|i| note(&mut out, i, h.clone()));
                return out;
            }
            let path = fd.path();
            let Ok(target) = fs::read_link(&path) else {
                continue;
            };
            let target = target.to_string_lossy();
            // Sockets, pipes and anonymous inodes read `socket:[...]` and the like.
            if !target.starts_with('/') {
                continue;
            }
            let by_name = nodes.iter().find(|(n, _)| *n == target).map(|(_, d)| *d);
            // stat follows the link into the open file: on a dead hard NFS mount
            // or a stuck FUSE file system that blocks. A device node lives under
            // /dev (the host's or a container's); nothing else is looked into.
            let held = by_name.or_else(|| {
                if !target.starts_with("/dev/") {
                    return None;
                }
                let meta = fs::metadata(&path).ok()?;
                let kind = meta.file_type();
                let char = match (kind.is_block_device(), kind.is_char_device()) {
                    (true, _) => false,
                    (_, true) => true,
                    _ => return None,
                };
                let rdev = (libc::major(meta.rdev()), libc::minor(meta.rdev()));
                devs.iter().find(|d| d.dev == rdev && d.char == char)
            });
            if let Some(d) = held {
                let command = files::read_bounded(&entry.path().join("comm"), 64)
                    .map(|c| String::from_utf8_lossy(&c).trim().to_string())
                    .ok()
                    .unwrap_or_else(|| "?".into());
                let h = Holder::Process {
                    of: d.name.clone(),
                    pid,
                    command,
                };
                note(&mut out, d.lun, h);
                // Enough to say every disk is in use and by whom.
                if out.iter().all(|l| l.len() >= MAX_HOLDERS) {
                    return out;
                }
            }
        }
    }
    if let Some(first) = first_unreadable {
        let h = Holder::Unknown {
            why: format!("the open files of {unreadable} processes cannot be read ({first})"),
        };
        (0..luns).for_each(|i| note(&mut out, i, h.clone()));
    }
    out
}

/// Where `/proc` is for a sysfs tree: beside its `/dev` (`/proc` for `/sys` and
/// `/dev`; the simulator's own `proc/` beside its `sys/` and `dev/`).
pub fn proc_root(sysfs: &Sysfs) -> PathBuf {
    sysfs
        .dev_root()
        .parent()
        .map_or_else(|| PathBuf::from("/proc"), |p| p.join("proc"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sdb() -> Vec<DevNode> {
        vec![
            DevNode {
                name: "sdb".into(),
                dev: (8, 16),
                char: false,
                lun: 0,
            },
            DevNode {
                name: "sdb1".into(),
                dev: (8, 17),
                char: false,
                lun: 0,
            },
        ]
    }

    #[test]
    fn a_mount_is_found_by_number_or_by_source() {
        let text = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
40 22 8:17 / /srv/my\\040data rw - xfs /dev/sdb1 rw
41 22 0:45 / /mnt/b rw - btrfs /dev/sdb rw
bad line
";
        let m = mounted(text, &sdb());
        assert_eq!(
            m,
            vec![
                (
                    0,
                    Holder::Mount {
                        of: "sdb1".into(),
                        mountpoint: "/srv/my data".into()
                    }
                ),
                (
                    0,
                    Holder::Mount {
                        of: "sdb".into(),
                        mountpoint: "/mnt/b".into()
                    }
                ),
            ]
        );
        assert!(mounted("22 1 8:1 / / rw - ext4 /dev/sda1 rw\n", &sdb()).is_empty());
    }

    #[test]
    fn a_process_with_the_disk_open_holds_it_and_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        fs::create_dir_all(p.join("4242/fd")).unwrap();
        fs::write(p.join("4242/comm"), "qemu-system-x86\n").unwrap();
        std::os::unix::fs::symlink("/dev/sdb", p.join("4242/fd/7")).unwrap();
        std::os::unix::fs::symlink("socket:[123]", p.join("4242/fd/3")).unwrap();
        fs::create_dir_all(p.join("7/fd")).unwrap();
        std::os::unix::fs::symlink("/dev/sdc", p.join("7/fd/0")).unwrap();
        fs::create_dir_all(p.join("1/fd")).unwrap();
        fs::create_dir_all(p.join("self")).unwrap();
        let held = open_files(p, &sdb(), 1).remove(0);
        assert_eq!(
            held,
            vec![Holder::Process {
                of: "sdb".into(),
                pid: 4242,
                command: "qemu-system-x86".into()
            }]
        );
        assert_eq!(
            held[0].to_string(),
            "sdb is open in process 4242 (qemu-system-x86)"
        );
        assert!(open_files(
            p,
            &[DevNode {
                name: "sdd".into(),
                dev: (8, 48),
                char: false,
                lun: 0,
            }],
            1
        )
        .remove(0)
        .is_empty());
    }

    #[test]
    fn one_look_names_each_luns_own_holders() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        fs::create_dir_all(p.join("1/fd")).unwrap();
        fs::create_dir_all(p.join("self")).unwrap();
        fs::write(p.join("self/mountinfo"), "").unwrap();
        fs::write(
            p.join("1/mountinfo"),
            "40 22 8:33 / /srv rw - xfs /dev/sdc1 rw\n",
        )
        .unwrap();
        fs::create_dir_all(p.join("4242/fd")).unwrap();
        std::os::unix::fs::symlink("/dev/sdb", p.join("4242/fd/7")).unwrap();
        let node = |name: &str, dev, lun| DevNode {
            name: name.into(),
            dev,
            char: false,
            lun,
        };
        // LUN 0 is sdb (open), LUN 1 sdc with sdc1 (mounted), LUN 2 sdd (free).
        let devs = [
            node("sdb", (8, 16), 0),
            node("sdc", (8, 32), 1),
            node("sdc1", (8, 33), 1),
            node("sdd", (8, 48), 2),
        ];
        let files = open_files(p, &devs, 3);
        let mounted = mounts(p, &devs, 3);
        let text = |v: &Vec<Holder>| v.iter().map(|h| h.to_string()).collect::<Vec<_>>();
        assert_eq!(text(&files[0]), ["sdb is open in process 4242 (?)"]);
        assert!(files[1].is_empty() && files[2].is_empty(), "{files:?}");
        assert_eq!(text(&mounted[1]), ["sdc1 is mounted on /srv"]);
        assert!(
            mounted[0].is_empty() && mounted[2].is_empty(),
            "{mounted:?}"
        );
        // What cannot be looked at holds every one of them.
        fs::remove_dir_all(p.join("1")).unwrap();
        let files = open_files(p, &devs, 3);
        assert!(files
            .iter()
            .all(|f| matches!(f.as_slice(), [Holder::Unknown { .. }])));
    }

    #[test]
    fn a_loop_device_on_a_disk_holds_it() {
        let dir = tempfile::tempdir().unwrap();
        let sysfs = Sysfs::new(dir.path().join("sys"), dir.path().join("dev"));
        for (device, file) in [
            ("loop0", "/var/lib/images/a.img"),
            ("loop1", "/dev/sdb1"),
            ("loop2", "/dev/sdc"),
        ] {
            let d = dir.path().join(format!("sys/class/block/{device}/loop"));
            fs::create_dir_all(&d).unwrap();
            fs::write(d.join("backing_file"), format!("{file}\n")).unwrap();
        }
        // loop3 has no file attached: no loop/ directory.
        fs::create_dir_all(dir.path().join("sys/class/block/loop3")).unwrap();
        let held = loop_backings(&sysfs, &sdb(), 1).remove(0);
        assert_eq!(
            held.iter().map(Holder::to_string).collect::<Vec<_>>(),
            ["sdb1 is the backing file of loop device loop1"]
        );
    }

    #[test]
    fn unreadable_processes_are_counted_once_and_holders_named_up_to_a_bound() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        fs::create_dir_all(p.join("1/fd")).unwrap();
        for pid in 100..103 {
            // An fd/ that cannot be listed.
            fs::create_dir_all(p.join(pid.to_string())).unwrap();
            fs::write(p.join(format!("{pid}/fd")), "").unwrap();
        }
        for pid in 200..220 {
            fs::create_dir_all(p.join(format!("{pid}/fd"))).unwrap();
            std::os::unix::fs::symlink("/dev/sdb", p.join(format!("{pid}/fd/3"))).unwrap();
        }
        // A file elsewhere is not followed (it could sit on a dead NFS mount).
        fs::create_dir_all(p.join("300/fd")).unwrap();
        std::os::unix::fs::symlink("/nonexistent/x", p.join("300/fd/3")).unwrap();
        let held = open_files(p, &sdb(), 1).remove(0);
        assert_eq!(held.len(), MAX_HOLDERS, "{held:?}");
        assert!(held.iter().all(|h| matches!(h, Holder::Process { .. })));
        for pid in 200..220 {
            fs::remove_dir_all(p.join(pid.to_string())).unwrap();
        }
        let held = open_files(p, &sdb(), 1).remove(0);
        assert!(
            matches!(held.as_slice(), [Holder::Unknown { why }] if why.starts_with("the open files of 3 processes")),
            "{held:?}"
        );
    }

    #[test]
    fn an_unreadable_proc_means_held_not_free() {
        let held = open_files(Path::new("/nonexistent/proc"), &sdb(), 1).remove(0);
        assert!(
            matches!(held.as_slice(), [Holder::Unknown { .. }]),
            "{held:?}"
        );
    }

    #[test]
    fn a_proc_that_hides_pid_1_means_held_not_free() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        // What hidepid=invisible shows a reader without CAP_SYS_PTRACE: its own
        // processes only, and neither PID 1 nor the VM's qemu.
        fs::create_dir_all(p.join("self")).unwrap();
        fs::write(
            p.join("self/mountinfo"),
            "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n",
        )
        .unwrap();
        fs::create_dir_all(p.join("600/fd")).unwrap();
        for held in [
            open_files(p, &sdb(), 1).remove(0),
            mounts(p, &sdb(), 1).remove(0),
        ] {
            assert!(
                matches!(held.as_slice(), [Holder::Unknown { why }] if why.contains("CAP_SYS_PTRACE")),
                "{held:?}"
            );
        }
        // PID 1 visible: nothing holds the disk.
        fs::create_dir_all(p.join("1/fd")).unwrap();
        fs::write(
            p.join("1/mountinfo"),
            "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n",
        )
        .unwrap();
        assert_eq!(open_files(p, &sdb(), 1).remove(0), vec![]);
        assert_eq!(mounts(p, &sdb(), 1).remove(0), vec![]);
    }

    /// A /proc where PID 1 is seen, with no mounts, files or other processes.
    fn empty_proc() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        fs::create_dir_all(p.join("1/fd")).unwrap();
        fs::create_dir_all(p.join("self")).unwrap();
        fs::write(p.join("1/mountinfo"), "").unwrap();
        fs::write(p.join("self/mountinfo"), "").unwrap();
        dir
    }

    fn whys(held: &[Holder]) -> Vec<String> {
        held.iter().map(Holder::to_string).collect()
    }

    #[test]
    fn a_mount_table_cut_at_its_bound_or_unread_holds_every_disk() {
        let dir = empty_proc();
        let p = dir.path();
        let table = p.join("self/mountinfo");
        assert_eq!(mounts(p, &sdb(), 1).remove(0), vec![]);

        // The mount of sdb1 sits just past the bound.
        {
            use std::io::{Seek, SeekFrom, Write};
            let mut f = fs::File::create(&table).unwrap();
            f.seek(SeekFrom::Start(MAX_MOUNTINFO)).unwrap();
            f.write_all(b"40 22 8:17 / /srv rw - xfs /dev/sdb1 rw\n")
                .unwrap();
        }
        let held = whys(&mounts(p, &sdb(), 1).remove(0));
        assert!(
            matches!(held.as_slice(), [why] if why.contains(&format!("hbad reads at most {MAX_MOUNTINFO} bytes"))),
            "{held:?}"
        );

        // A mount point that is not UTF-8 hides no mount.
        fs::write(
            &table,
            b"40 22 8:17 / /srv/\xff rw - xfs /dev/sdb1 rw\n".as_slice(),
        )
        .unwrap();
        let held = mounts(p, &sdb(), 1).remove(0);
        assert!(
            matches!(held.as_slice(), [Holder::Mount { of, .. }] if of == "sdb1"),
            "{held:?}"
        );

        // Missing, or a FIFO (never waited on): held, and said why.
        fs::remove_file(&table).unwrap();
        let held = whys(&mounts(p, &sdb(), 1).remove(0));
        assert!(
            matches!(held.as_slice(), [why] if why.contains("self/mountinfo: cannot open it")),
            "{held:?}"
        );
        crate::files::testing::mkfifo(&table);
        let root = p.to_path_buf();
        let held = crate::files::testing::within_seconds(move || mounts(&root, &sdb(), 1));
        let held = whys(&held[0]);
        assert!(
            matches!(held.as_slice(), [why] if why.contains("is a FIFO")),
            "{held:?}"
        );
    }

    #[test]
    fn a_disk_with_more_partitions_than_looked_at_is_held() {
        let proc = empty_proc();
        let root = tempfile::tempdir().unwrap();
        let sysfs = Sysfs::new(root.path().join("sys"), root.path().join("dev"));
        let lun = "/devices/pseudo_0/adapter0/host2/target2:0:0/2:0:0:0";
        let disk = root.path().join(format!("sys{lun}/block/sdb"));
        fs::create_dir_all(&disk).unwrap();
        fs::write(disk.join("dev"), "8:16\n").unwrap();
        let look = || {
            let luns = [LunDisk {
                lun_devpath: lun,
                disk: "sdb",
            }];
            let held = holders(&sysfs, proc.path(), &luns).remove(0);
            whys(&held)
        };
        let mut n = 0;
        let mut add_partitions = |count: usize| {
            for _ in 0..count {
                n += 1;
                let part = disk.join(format!("sdb{n}"));
                fs::create_dir_all(&part).unwrap();
                fs::write(part.join("partition"), format!("{n}\n")).unwrap();
                fs::write(part.join("dev"), format!("259:{n}\n")).unwrap();
            }
        };
        add_partitions(MAX_PARTITIONS);
        assert_eq!(look(), Vec::<String>::new());
        add_partitions(1);
        assert_eq!(
            look(),
            [format!(
                "cannot tell whether it is in use: sdb has {} partitions; hbad looks at \
                 {MAX_PARTITIONS} at most",
                MAX_PARTITIONS + 1
            )]
        );
    }

    #[test]
    fn octal_escapes_are_undone_and_a_torn_one_is_kept() {
        assert_eq!(unescape_octal("/a\\040b\\134c"), "/a b\\c");
        assert_eq!(unescape_octal("/a\\04"), "/a\\04");
    }

    /// How long the look through this machine's /proc takes (run by hand:
    /// `cargo test --release --lib measure_open_file_scan -- --ignored --nocapture`).
    #[test]
    #[ignore]
    fn measure_open_file_scan_of_this_machine() {
        let processes = fs::read_dir("/proc")
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| {
                e.file_name()
                    .to_str()
                    .is_some_and(|n| n.parse::<u32>().is_ok())
            })
            .count();
        let nobody = [DevNode {
            name: "sdzzz".into(),
            dev: (65, 4095),
            char: false,
            lun: 0,
        }];
        let t0 = std::time::Instant::now();
        let rounds = 20;
        for _ in 0..rounds {
            assert!(open_files(Path::new("/proc"), &nobody, 1)
                .remove(0)
                .iter()
                .all(|h| matches!(h, Holder::Unknown { .. })));
        }
        println!(
            "open-file scan of /proc: {processes} processes, {:.2} ms per scan",
            t0.elapsed().as_secs_f64() * 1000.0 / rounds as f64
        );
    }

    #[test]
    fn proc_sits_beside_dev() {
        assert_eq!(proc_root(&Sysfs::default()), PathBuf::from("/proc"));
        assert_eq!(
            proc_root(&Sysfs::new("/tmp/sim/sys", "/tmp/sim/dev")),
            PathBuf::from("/tmp/sim/proc")
        );
    }
}

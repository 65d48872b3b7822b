//! The stable names udev made for block devices (`/dev/disk/by-*`), read once.
//!
//! A large host has three links per disk, tens of thousands of disks: each
//! `by-*` directory is opened once and each link read with `readlinkat` on it
//! (no path walked per link, no `lstat`: the directory entry's type says what is
//! a link), into one text arena with a table sorted by device name, so that the
//! store costs the text of the links and a few bytes each, not a `String` per
//! link and a map entry per disk.

use std::fmt;
use std::path::Path;

use super::dir::EntryKind;
use super::{DeviceDir, Sysfs};

/// The `/dev/disk` directories whose links name a disk stably: upstream udev's
/// by-path and by-id, and hbad's own by-vhba.
pub const STABLE_LINK_DIRS: [&str; 3] = ["by-path", "by-id", "by-vhba"];

/// by-vhba nests one directory per vHBA; nothing deeper is read.
const DEPTH_MAX: usize = 4;

/// The longest link target read (`../../sdX`; a page is far more than udev writes).
const LINK_MAX: usize = 4096;

/// Where in the arena a piece of text is.
#[derive(Clone, Copy, Debug)]
struct Span {
    at: u32,
    len: u32,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    /// The device the link names (`sda`).
    device: Span,
    /// Index into `dirs`: the link's directory as shown (`/dev/disk/by-id/`).
    dir: u32,
    /// The link's own name (`wwn-0x6001...`).
    name: Span,
}

/// Every stable link, by the device it names.
#[derive(Debug, Default)]
pub struct StableLinks {
    text: String,
    dirs: Vec<String>,
    /// Sorted by device, then by the link's path as shown.
    entries: Vec<Entry>,
}

/// One stable link: its path as a host shows it, in two pieces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StableLink<'a> {
    /// `/dev/disk/by-id/` (with the slash).
    pub dir: &'a str,
    /// `wwn-0x6001...`.
    pub name: &'a str,
}

impl fmt::Display for StableLink<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.dir)?;
        f.write_str(self.name)
    }
}

impl StableLinks {
    /// Reads the `by-*` directories under `<dev root>/disk`. Links are shown as a
    /// host sees them, under `/dev`, whatever dev root is read.
    pub fn read(dev_root: &Path) -> StableLinks {
        let mut links = StableLinks::default();
        let disk = dev_root.join("disk");
        let mut buf = [0u8; LINK_MAX];
        let mut stack: Vec<(DeviceDir, String, usize)> = STABLE_LINK_DIRS
            .iter()
            .rev()
            .filter_map(|d| {
                let dir = DeviceDir::open(&disk.join(d)).ok()?;
                Some((dir, format!("/dev/disk/{d}/"), 0))
            })
            .collect();
        while let Some((dir, shown, depth)) = stack.pop() {
            let at = links.dirs.len() as u32;
            let mut found = false;
            dir.each_entry(".", |name, kind| match kind {
                EntryKind::Dir if depth < DEPTH_MAX => {
                    if let Ok(sub) = dir.sub(name) {
                        stack.push((sub, format!("{shown}{name}/"), depth + 1));
                    }
                }
                EntryKind::Link => {
                    let Some(target) = dir.link_into(name, &mut buf) else {
                        return;
                    };
                    let device = target.rsplit(|&b| b == b'/').next().unwrap_or(target);
                    let Ok(device) = std::str::from_utf8(device) else {
                        return;
                    };
                    if device.is_empty() {
                        return;
                    }
                    if let (Some(device), Some(name)) = (links.put(device), links.put(name)) {
                        links.entries.push(Entry {
                            device,
                            dir: at,
                            name,
                        });
                        found = true;
                    }
                }
                _ => {}
            });
            if found {
                links.dirs.push(shown);
            }
        }
        let mut entries = std::mem::take(&mut links.entries);
        entries.sort_unstable_by(|a, b| {
            links
                .str(a.device)
                .cmp(links.str(b.device))
                .then_with(|| links.shown_bytes(a).cmp(links.shown_bytes(b)))
        });
        links.entries = entries;
        links.text.shrink_to_fit();
        links.entries.shrink_to_fit();
        links
    }

    /// Appends text to the arena; `None` past 4 GiB of links (never on a host).
    fn put(&mut self, s: &str) -> Option<Span> {
        let at = u32::try_from(self.text.len()).ok()?;
        let len = u32::try_from(s.len()).ok()?;
        at.checked_add(len)?;
        self.text.push_str(s);
        Some(Span { at, len })
    }

    fn str(&self, span: Span) -> &str {
        &self.text[span.at as usize..(span.at + span.len) as usize]
    }

    fn shown_bytes<'a>(&'a self, e: &Entry) -> impl Iterator<Item = u8> + 'a {
        self.dirs[e.dir as usize]
            .bytes()
            .chain(self.str(e.name).bytes())
    }

    /// The links naming a device (`sda`), sorted by path.
    pub fn of<'a>(&'a self, device: &'a str) -> impl Iterator<Item = StableLink<'a>> + 'a {
        let from = self
            .entries
            .partition_point(|e| self.str(e.device) < device);
        self.entries[from..]
            .iter()
            .take_while(move |e| self.str(e.device) == device)
            .map(|e| StableLink {
                dir: &self.dirs[e.dir as usize],
                name: self.str(e.name),
            })
    }

    /// The links naming a device as the paths a host shows.
    pub fn paths_of(&self, device: &str) -> Vec<String> {
        self.of(device).map(|l| l.to_string()).collect()
    }

    /// How many links there are, of all devices.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl Sysfs {
    /// The stable names udev made for block devices, from `disk/by-*` under the dev
    /// root. Read once per load, never per event.
    pub fn stable_links(&self) -> StableLinks {
        StableLinks::read(self.dev_root())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn links_are_found_by_device_sorted_by_path_in_nested_and_flat_directories() {
        let dir = tempfile::tempdir().unwrap();
        let disk = dir.path().join("disk");
        for d in ["by-id", "by-path", "by-vhba/vm-a", "by-label"] {
            std::fs::create_dir_all(disk.join(d)).unwrap();
        }
        symlink("../../sdb", disk.join("by-id/wwn-0x2")).unwrap();
        symlink("../../sdb", disk.join("by-id/scsi-32")).unwrap();
        symlink("../../sda", disk.join("by-id/wwn-0x1")).unwrap();
        symlink("../../sdb", disk.join("by-path/pci-0-lun-2")).unwrap();
        symlink("../../../sdb", disk.join("by-vhba/vm-a/lun-2")).unwrap();
        // Not a stable-link directory hbad reads; and a file that is no link.
        symlink("../../sdb", disk.join("by-label/data")).unwrap();
        std::fs::write(disk.join("by-id/stray"), "x").unwrap();
        let links = StableLinks::read(dir.path());
        assert_eq!(
            links.paths_of("sdb"),
            [
                "/dev/disk/by-id/scsi-32",
                "/dev/disk/by-id/wwn-0x2",
                "/dev/disk/by-path/pci-0-lun-2",
                "/dev/disk/by-vhba/vm-a/lun-2",
            ]
        );
        assert_eq!(links.paths_of("sda"), ["/dev/disk/by-id/wwn-0x1"]);
        assert!(links.paths_of("sdc").is_empty());
        assert!(links.paths_of("sd").is_empty());
        assert_eq!(links.len(), 5);
    }

    #[test]
    fn no_dev_tree_gives_no_links() {
        let dir = tempfile::tempdir().unwrap();
        assert!(StableLinks::read(&dir.path().join("absent")).is_empty());
    }
}

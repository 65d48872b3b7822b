//! The stable names udev made for block devices (`/dev/disk/by-*`), read once.
//!
//! A large host has three links per disk, tens of thousands of disks: each
//! `by-*` directory is opened once and each link read with `readlinkat` on it
//! (no path walked per link, no `lstat`: the directory entry's type says what is
//! a link). The links' paths are kept sorted and front coded (each says how much
//! of the one before it shares, then the rest), in pages of [`PAGE`] whose first
//! path is whole, and each device has the list of its links' numbers: paths that
//! differ by a LUN number or a few hex digits cost those bytes, not the whole
//! path. A 65,536-disk host's 196,608 links, 13 MB as a text arena with a table
//! by device, take about 4.
//!
//! A `by-*` directory is read, sorted and coded before the next is read, so that
//! only one directory's links are ever held whole.

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

/// Paths per page of the front coding: a lookup decodes at most this many.
const PAGE: usize = 16;

/// Every stable link, by the device it names.
#[derive(Debug, Default)]
pub struct StableLinks {
    /// Every link's path as shown (`/dev/disk/by-id/wwn-0x...`), in byte order,
    /// each as: the length of the prefix it shares with the path before it, the
    /// length of the rest (LEB128 both), the rest. The first of a page shares
    /// nothing.
    coded: Vec<u8>,
    /// Where each page starts in `coded`.
    pages: Vec<u32>,
    /// How many links there are.
    count: u32,
    /// The names of the devices the links name, sorted, back to back.
    devices: String,
    /// Where each device's name starts in `devices`; one more, the end.
    device_at: Vec<u32>,
    /// Where each device's links start in `links`; one more, the end.
    links_at: Vec<u32>,
    /// The links of each device in turn, by their number in path order.
    links: Vec<u32>,
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

/// A `by-*` directory's links as read, before they are sorted and coded.
#[derive(Default)]
struct Read {
    /// Each link's path (below the `by-*` directory) then its device's name.
    text: String,
    links: Vec<RawLink>,
}

/// Where a link is in [`Read::text`]: 8 bytes a link, for the 131,072 of a
/// 65,536-disk host's by-id.
#[derive(Clone, Copy, Debug)]
struct RawLink {
    at: u32,
    path: u16,
    device: u16,
}

impl RawLink {
    fn path(self, text: &str) -> &str {
        let from = self.at as usize;
        text.get(from..from + usize::from(self.path)).unwrap_or("")
    }

    fn device(self, text: &str) -> &str {
        let from = self.at as usize + usize::from(self.path);
        text.get(from..from + usize::from(self.device))
            .unwrap_or("")
    }
}

impl Read {
    /// Adds a link; `None` past 4 GiB of them, or for a path longer than 64 KiB
    /// (never on a host).
    fn put(&mut self, path: &str, device: &str) -> Option<()> {
        let at = u32::try_from(self.text.len()).ok()?;
        let link = RawLink {
            at,
            path: u16::try_from(path.len()).ok()?,
            device: u16::try_from(device.len()).ok()?,
        };
        at.checked_add(u32::from(link.path) + u32::from(link.device))?;
        self.text.push_str(path);
        self.text.push_str(device);
        self.links.push(link);
        Some(())
    }
}

/// Device names back to back.
#[derive(Default)]
struct Names {
    text: String,
}

/// Where a piece of text is in an arena.
#[derive(Clone, Copy, Debug)]
struct Span {
    at: u32,
    len: u32,
}

impl Names {
    /// Appends a name; `None` past 4 GiB (never on a host).
    fn put(&mut self, s: &str) -> Option<Span> {
        let at = u32::try_from(self.text.len()).ok()?;
        let len = u32::try_from(s.len()).ok()?;
        at.checked_add(len)?;
        self.text.push_str(s);
        Some(Span { at, len })
    }

    fn str(&self, span: Span) -> &str {
        self.text
            .get(span.at as usize..(span.at + span.len) as usize)
            .unwrap_or("")
    }
}

impl StableLinks {
    /// Reads the `by-*` directories under `<dev root>/disk`. Links are shown as a
    /// host sees them, under `/dev`, whatever dev root is read.
    pub fn read(dev_root: &Path) -> StableLinks {
        let mut links = StableLinks::default();
        let disk = dev_root.join("disk");
        // In the order of the paths they show: each is then coded after the one
        // before, and the numbers of the links are in path order throughout.
        let mut tops: Vec<String> = STABLE_LINK_DIRS
            .iter()
            .map(|d| format!("/dev/disk/{d}/"))
            .collect();
        tops.sort_unstable();
        // Each link's device (in `names`) and number.
        let mut names = Names::default();
        let mut owners: Vec<(Span, u32)> = Vec::new();
        let mut buf = [0u8; LINK_MAX];
        let mut last = String::new();
        for shown in tops {
            let top = &shown["/dev/disk/".len()..shown.len() - 1];
            let Ok(dir) = DeviceDir::open(&disk.join(top)) else {
                continue;
            };
            let Read {
                text,
                links: mut raw,
            } = read_tree(dir, &mut buf);
            raw.sort_unstable_by(|a, b| a.path(&text).cmp(b.path(&text)));
            let mut path = String::new();
            for link in raw {
                path.clear();
                path.push_str(&shown);
                path.push_str(link.path(&text));
                let (Some(n), Some(device)) = (
                    links.push_path(&path, &mut last),
                    names.put(link.device(&text)),
                ) else {
                    continue;
                };
                owners.push((device, n));
            }
        }
        owners.sort_unstable_by(|a, b| names.str(a.0).cmp(names.str(b.0)).then(a.1.cmp(&b.1)));
        links.links.reserve_exact(owners.len());
        for (device, n) in owners {
            let name = names.str(device);
            let same = links.device_count() > 0 && links.device(links.device_count() - 1) == name;
            if !same {
                // Both fit: the names are fewer than the bytes `names` held.
                links.device_at.push(links.devices.len() as u32);
                links.links_at.push(links.links.len() as u32);
                links.devices.push_str(name);
            }
            links.links.push(n);
        }
        links.device_at.push(links.devices.len() as u32);
        links.links_at.push(links.links.len() as u32);
        links.coded.shrink_to_fit();
        links.pages.shrink_to_fit();
        links.devices.shrink_to_fit();
        links.device_at.shrink_to_fit();
        links.links_at.shrink_to_fit();
        links
    }

    /// Codes the next path (not before the one coded last, `last`, which it then
    /// becomes); its number, `None` past 4 GiB of coded paths (never on a host).
    fn push_path(&mut self, path: &str, last: &mut String) -> Option<u32> {
        let n = self.count;
        let at = u32::try_from(self.coded.len()).ok()?;
        let next = n.checked_add(1)?;
        let shared = if n as usize % PAGE == 0 {
            self.pages.push(at);
            0
        } else {
            last.bytes()
                .zip(path.bytes())
                .take_while(|(a, b)| a == b)
                .count()
        };
        leb128(&mut self.coded, shared);
        leb128(&mut self.coded, path.len() - shared);
        self.coded.extend_from_slice(&path.as_bytes()[shared..]);
        self.count = next;
        last.clear();
        last.push_str(path);
        Some(n)
    }

    /// The path of link `n` into `out` (emptied first).
    fn decode(&self, n: u32, out: &mut Vec<u8>) {
        out.clear();
        let Some(&page) = self.pages.get(n as usize / PAGE) else {
            return;
        };
        let mut at = page as usize;
        for _ in 0..=n as usize % PAGE {
            let (Some(shared), Some(len)) = (
                read_leb128(&self.coded, &mut at),
                read_leb128(&self.coded, &mut at),
            ) else {
                return;
            };
            let Some(rest) = self.coded.get(at..at + len) else {
                return;
            };
            out.truncate(shared);
            out.extend_from_slice(rest);
            at += len;
        }
    }

    fn device_count(&self) -> usize {
        self.device_at.len()
    }

    fn device(&self, i: usize) -> &str {
        let from = self.device_at[i] as usize;
        let to = self
            .device_at
            .get(i + 1)
            .map_or(self.devices.len(), |&e| e as usize);
        self.devices.get(from..to).unwrap_or("")
    }

    /// The links naming a device (`sda`), sorted by path: a cursor, as each path
    /// is decoded into it.
    pub fn of<'a>(&'a self, device: &str) -> LinksOf<'a> {
        // The last entry of `device_at` is the end, not a device.
        let devices = self.device_at.len().saturating_sub(1);
        let i = partition_point(devices, |i| self.device(i) < device);
        let ids = if i < devices && self.device(i) == device {
            let from = self.links_at[i] as usize;
            let to = self.links_at[i + 1] as usize;
            self.links.get(from..to).unwrap_or(&[])
        } else {
            &[]
        };
        LinksOf {
            links: self,
            ids: ids.iter(),
            path: Vec::new(),
        }
    }

    /// The links naming a device as the paths a host shows.
    pub fn paths_of(&self, device: &str) -> Vec<String> {
        let mut of = self.of(device);
        let mut paths = Vec::new();
        while let Some(link) = of.next_link() {
            paths.push(link.to_string());
        }
        paths
    }

    /// How many links there are, of all devices.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// The links of one device, each decoded in turn ([`StableLinks::of`]).
#[derive(Debug)]
pub struct LinksOf<'a> {
    links: &'a StableLinks,
    ids: std::slice::Iter<'a, u32>,
    path: Vec<u8>,
}

impl LinksOf<'_> {
    /// The next link, valid until the one after is asked for.
    pub fn next_link(&mut self) -> Option<StableLink<'_>> {
        // Coded from UTF-8 paths, so always UTF-8 again.
        loop {
            let &n = self.ids.next()?;
            self.links.decode(n, &mut self.path);
            if std::str::from_utf8(&self.path).is_ok() {
                break;
            }
        }
        let path = std::str::from_utf8(&self.path).ok()?;
        let cut = path.rfind('/').map_or(0, |i| i + 1);
        let (dir, name) = path.split_at(cut);
        Some(StableLink { dir, name })
    }
}

/// The links below one `by-*` directory, nested ones named by their path below it.
fn read_tree(top: DeviceDir, buf: &mut [u8]) -> Read {
    let mut read = Read::default();
    let mut stack: Vec<(DeviceDir, String, usize)> = vec![(top, String::new(), 0)];
    let mut path = String::new();
    while let Some((dir, below, depth)) = stack.pop() {
        dir.each_entry(".", |name, kind| match kind {
            EntryKind::Dir if depth < DEPTH_MAX => {
                if let Ok(sub) = dir.sub(name) {
                    stack.push((sub, format!("{below}{name}/"), depth + 1));
                }
            }
            EntryKind::Link => {
                let Some(target) = dir.link_into(name, buf) else {
                    return;
                };
                let device = target.rsplit(|&b| b == b'/').next().unwrap_or(target);
                let Ok(device) = std::str::from_utf8(device) else {
                    return;
                };
                if device.is_empty() {
                    return;
                }
                path.clear();
                path.push_str(&below);
                path.push_str(name);
                // Left out past 4 GiB of links, with those the kernel cannot hold.
                let _ = read.put(&path, device);
            }
            _ => {}
        });
    }
    read
}

/// The first of `0..n` for which `below` is false (it is true of a prefix).
fn partition_point(n: usize, below: impl Fn(usize) -> bool) -> usize {
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if below(mid) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

fn leb128(out: &mut Vec<u8>, mut v: usize) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn read_leb128(bytes: &[u8], at: &mut usize) -> Option<usize> {
    let mut v = 0usize;
    for shift in (0..35).step_by(7) {
        let byte = *bytes.get(*at)?;
        *at += 1;
        v |= usize::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
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
    fn paths_are_found_whole_across_pages_of_the_front_coding() {
        let dir = tempfile::tempdir().unwrap();
        let disk = dir.path().join("disk");
        for d in ["by-id", "by-path"] {
            std::fs::create_dir_all(disk.join(d)).unwrap();
        }
        // Three pages and more of paths sharing long prefixes, and some none.
        let mut want: Vec<(String, String)> = Vec::new();
        for i in 0..(3 * PAGE + 5) {
            let device = format!("sd{}", (b'a' + (i % 7) as u8) as char);
            let name = format!("pci-0000:3b:00.0-fc-0x5000-lun-{i}");
            symlink(format!("../../{device}"), disk.join("by-path").join(&name)).unwrap();
            want.push((device.clone(), format!("/dev/disk/by-path/{name}")));
            let name = format!("wwn-0x{i:x}{}", "é".repeat(i % 3));
            symlink(format!("../../{device}"), disk.join("by-id").join(&name)).unwrap();
            want.push((device, format!("/dev/disk/by-id/{name}")));
        }
        let links = StableLinks::read(dir.path());
        assert_eq!(links.len(), want.len());
        want.sort();
        for device in ["sda", "sdd", "sdg"] {
            let paths: Vec<String> = want
                .iter()
                .filter(|(d, _)| d == device)
                .map(|(_, p)| p.clone())
                .collect();
            assert_eq!(links.paths_of(device), paths, "{device}");
        }
        // `wwn-0x16é` (LUN 22) before `wwn-0x1é` (LUN 1): in byte order.
        let mut of = links.of("sdb");
        let first = of.next_link().unwrap();
        assert_eq!((first.dir, first.name), ("/dev/disk/by-id/", "wwn-0x16é"));
        assert!(links.paths_of("sdh").is_empty());
    }

    #[test]
    fn no_dev_tree_gives_no_links() {
        let dir = tempfile::tempdir().unwrap();
        assert!(StableLinks::read(&dir.path().join("absent")).is_empty());
    }
}

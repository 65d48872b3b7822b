//! hbad's writes, interpreted as the kernel's store handlers would.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread;

use super::kernel::{errno, Kernel};
use super::{lock, Sim};
use crate::claim::{Deletion, LunDelete};
use crate::report_luns::DeviceNode;
use crate::sysfs::writes::AttrWriter;
use crate::sysfs::{devpath_name, host_number, parent_devpath, port_address, Hctl};
use crate::wwn::Wwn;

/// One write to the simulator and what it returned (`errno` on failure).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteRecord {
    pub path: PathBuf,
    pub value: String,
    pub errno: Option<i32>,
}

impl AttrWriter for Sim {
    fn store(&self, path: &Path, value: &str) -> io::Result<()> {
        let result = self.route(path, value);
        lock(&self.shared.writes).push(WriteRecord {
            path: path.to_path_buf(),
            value: value.to_string(),
            errno: result
                .as_ref()
                .err()
                .map(|e| e.raw_os_error().unwrap_or(libc::EIO)),
        });
        result
    }

    fn report_luns(&self, node: &DeviceNode) -> io::Result<Vec<u64>> {
        let hctl: Hctl = devpath_name(&node.lun_devpath)
            .parse()
            .map_err(|_| errno(libc::ENODEV))?;
        let mut k = self.kernel();
        if k.lun_devpath(hctl).as_deref() != Some(node.lun_devpath.as_str()) {
            return Err(errno(libc::ENODEV));
        }
        k.report_luns(hctl)
    }

    /// The exclusive open as the kernel's `bd_prepare_to_claim` answers it, then
    /// the delete.
    fn delete_unclaimed(&self, lun: &LunDelete) -> io::Result<Deletion> {
        if self.kernel().faults.claimed.contains(&lun.disk.dev) {
            let name = devpath_name(&lun.disk.path.to_string_lossy()).to_string();
            return Ok(Deletion::Claimed { nodes: vec![name] });
        }
        self.write_attr(&lun.delete, "1")?;
        Ok(Deletion::Deleted)
    }
}

impl Sim {
    /// The executor hbad's commands would use, writing to this simulator: vport
    /// waits polled every 5 ms, ownership recorded in `state_file`, and the given
    /// scan timeout.
    pub fn executor(
        &self,
        state_file: PathBuf,
        scan_timeout: std::time::Duration,
    ) -> crate::exec::Executor {
        use crate::exec::vport::{SysfsPoll, Vports};
        let sysfs = self.sysfs();
        let writer: Arc<dyn AttrWriter> = Arc::new(self.clone());
        crate::exec::Executor::new(
            Vports::new(
                sysfs.clone(),
                writer.clone(),
                Arc::new(SysfsPoll::new(
                    sysfs.clone(),
                    std::time::Duration::from_millis(5),
                )),
                crate::ownership::OwnedState::new(state_file),
                std::time::Duration::from_secs(5),
            ),
            crate::exec::Scanner::new(writer, sysfs, scan_timeout),
        )
    }
}

/// `store_fc_host_vport_create`'s parsing: exactly `<16 hex>:<16 hex>`, one
/// optional trailing newline.
pub(crate) fn parse_vport_ids(value: &str) -> io::Result<(Wwn, Wwn)> {
    let text = value.strip_suffix('\n').unwrap_or(value);
    let b = text.as_bytes();
    if b.len() != 33 || b[16] != b':' {
        return Err(errno(libc::EINVAL));
    }
    let hex = |s: &[u8]| -> io::Result<Wwn> {
        if !s.iter().all(u8::is_ascii_hexdigit) {
            return Err(errno(libc::EINVAL));
        }
        let s = std::str::from_utf8(s).map_err(|_| errno(libc::EINVAL))?;
        u64::from_str_radix(s, 16)
            .map(Wwn::from_u64)
            .map_err(|_| errno(libc::EINVAL))
    };
    Ok((hex(&b[..16])?, hex(&b[17..])?))
}

/// `FC_VPORT_SYMBOLIC_NAMELEN`: the size of `fc_vport->symbolic_name`, NUL included.
pub(crate) const FC_VPORT_SYMBOLIC_NAMELEN: usize = 64;

/// `store_fc_vport_symbolic_name` (`fc_vport_store_str_function`): one trailing
/// newline dropped, more than 63 bytes refused with EINVAL, and the rest copied
/// over the start of the old name with `memcpy`, no terminator added. A shorter
/// name leaves the old tail showing; a NUL written with it ends the name there
/// while the bytes behind it stay in the buffer.
pub(crate) fn store_vport_symbolic_name(buffer: &mut Vec<u8>, written: &[u8]) -> io::Result<()> {
    // sysfs_kf_write answers an empty write with 0 before any store handler runs
    // (and the handler would read buf[-1]).
    if written.is_empty() {
        return Ok(());
    }
    let name = written.strip_suffix(b"\n").unwrap_or(written);
    if name.len() > FC_VPORT_SYMBOLIC_NAMELEN - 1 {
        return Err(errno(libc::EINVAL));
    }
    if buffer.len() < name.len() {
        buffer.resize(name.len(), 0);
    }
    buffer[..name.len()].copy_from_slice(name);
    Ok(())
}

/// `scsi_scan`'s parsing: three tokens, each `-` or a number as simple_strtoull
/// with base 0 reads it (`0x` hex, leading `0` octal), nothing more.
pub(crate) fn parse_scan(value: &str) -> io::Result<(Option<u32>, Option<u32>, Option<u64>)> {
    let tokens: Vec<&str> = value.split_whitespace().collect();
    let [c, t, l] = tokens[..] else {
        return Err(errno(libc::EINVAL));
    };
    fn num(tok: &str) -> io::Result<Option<u64>> {
        if tok == "-" {
            return Ok(None);
        }
        let (digits, radix) = if let Some(h) = tok.strip_prefix("0x").or(tok.strip_prefix("0X")) {
            (h, 16)
        } else if tok.len() > 1 && tok.starts_with('0') {
            (&tok[1..], 8)
        } else {
            (tok, 10)
        };
        if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
            return Err(errno(libc::EINVAL));
        }
        u64::from_str_radix(digits, radix)
            .map(Some)
            .map_err(|_| errno(libc::EINVAL))
    }
    let narrow = |v: Option<u64>| -> io::Result<Option<u32>> {
        v.map(|v| u32::try_from(v).map_err(|_| errno(libc::EINVAL)))
            .transpose()
    };
    Ok((narrow(num(c)?)?, narrow(num(t)?)?, num(l)?))
}

impl Sim {
    fn route(&self, path: &Path, value: &str) -> io::Result<()> {
        let root = self.shared.sysfs.root();
        let rel = path.strip_prefix(root).map_err(|_| errno(libc::ENOENT))?;
        // Opening without O_CREAT: an attribute the driver lacks is ENOENT.
        if !path.is_file() {
            return Err(errno(libc::ENOENT));
        }
        let rel = format!("/{}", rel.to_string_lossy());
        let attr = devpath_name(&rel).to_string();
        let dir = parent_devpath(&rel).ok_or_else(|| errno(libc::ENOENT))?;
        let class = parent_devpath(dir).map(devpath_name);
        match (attr.as_str(), class) {
            ("vport_create", Some("fc_host" | "scsi_host")) => {
                let (wwpn, wwnn) = parse_vport_ids(value)?;
                let mut k = self.kernel();
                let host = class_host(&k, dir)?;
                k.create_vport(host, wwpn, wwnn)
            }
            ("vport_delete", Some("fc_host" | "scsi_host")) => {
                let (wwpn, wwnn) = parse_vport_ids(value)?;
                let mut k = self.kernel();
                let host = class_host(&k, dir)?;
                let number = k
                    .find_vport(host, wwpn, wwnn)
                    .ok_or_else(|| errno(libc::ENODEV))?;
                k.delete_vport(host, number)
            }
            ("scan", Some("scsi_host")) => {
                let (c, t, l) = parse_scan(value)?;
                let host = class_host(&self.kernel(), dir)?;
                self.scan(host, c, t, l)
            }
            ("issue_lip", Some("fc_host")) => {
                let mut k = self.kernel();
                let host = class_host(&k, dir)?;
                k.fc_login(host)
            }
            ("rescan" | "delete", _) => {
                let hctl: Hctl = devpath_name(dir).parse().map_err(|_| errno(libc::EACCES))?;
                let mut k = self.kernel();
                if k.lun_devpath(hctl).as_deref() != Some(dir) {
                    return Err(errno(libc::ENODEV));
                }
                if attr == "rescan" {
                    k.rescan_lun(hctl)
                } else {
                    k.remove_lun(hctl)
                }
            }
            // A disk's uevent file: `.../block/sdX/uevent`.
            ("uevent", Some("block")) => self.kernel().synth_uevent(dir, value),
            ("symbolic_name" | "vport_delete", Some("fc_vports")) => {
                let mut k = self.kernel();
                let (host, number) = class_vport(&k, dir)?;
                if attr == "vport_delete" {
                    return k.delete_vport(host, number);
                }
                k.set_vport_symbolic_name(host, number, value.as_bytes())
            }
            // Read-only attributes (and writable ones the simulator does not model).
            _ => Err(errno(libc::EACCES)),
        }
    }
}

/// The host owning `.../hostN/<class>/hostN`, checked against the model under
/// the same lock as the operation: a write to a host that has gone is ENODEV,
/// as for a sysfs file whose device was removed.
fn class_host(k: &Kernel, class_dir: &str) -> io::Result<u32> {
    let no = host_number(devpath_name(class_dir)).ok_or_else(|| errno(libc::ENOENT))?;
    let devpath = parent_devpath(class_dir)
        .and_then(parent_devpath)
        .ok_or_else(|| errno(libc::ENOENT))?;
    match k.hosts.get(&no) {
        Some(h) if h.devpath == devpath => Ok(no),
        _ => Err(errno(libc::ENODEV)),
    }
}

/// The (parent host, vport number) of `.../vport-P:0-K/fc_vports/vport-P:0-K`.
fn class_vport(k: &Kernel, class_dir: &str) -> io::Result<(u32, u32)> {
    let (host, _, number) =
        port_address(devpath_name(class_dir), "vport-").ok_or_else(|| errno(libc::ENOENT))?;
    let known = k
        .hosts
        .get(&host)
        .and_then(|h| h.fc.as_ref())
        .and_then(|f| f.npiv.as_ref())
        .is_some_and(|n| n.vports.contains_key(&number));
    if known {
        Ok((host, number))
    } else {
        Err(errno(libc::ENODEV))
    }
}

impl Sim {
    /// A synchronous scan: serialized per host (the kernel's scan_mutex), held
    /// by any injected delay or stall, and run without blocking other hosts.
    fn scan(&self, host: u32, c: Option<u32>, t: Option<u32>, l: Option<u64>) -> io::Result<()> {
        let (serial, delay, gate) = {
            let mut k = self.kernel();
            if !k.hosts.contains_key(&host) {
                return Err(errno(libc::ENODEV));
            }
            let serial: Arc<Mutex<()>> = Arc::clone(k.scan_locks.entry(host).or_default());
            (
                serial,
                k.faults.scan_delay.get(&host).copied(),
                k.faults.scan_gates.get(&host).cloned(),
            )
        };
        let _scan_mutex = lock(&serial);
        if let Some(gate) = gate {
            gate.pass();
        }
        if let Some(delay) = delay {
            // A slow target is time passing inside the kernel: there is nothing
            // to wait for but the clock.
            thread::sleep(delay);
        }
        let mut k = self.kernel();
        // The host went away while this scan waited (unplugged, vport deleted).
        if !k.hosts.contains_key(&host) {
            return Err(errno(libc::ENODEV));
        }
        k.scan(host, c, t, l)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(r: io::Result<impl std::fmt::Debug>) -> Option<i32> {
        r.err().and_then(|e| e.raw_os_error())
    }

    #[test]
    fn vport_ids_parse_like_the_kernel() {
        let (p, n) = parse_vport_ids("5001a4a000000b01:5001a4a000000b00\n").unwrap();
        assert_eq!(p.as_u64(), 0x5001_a4a0_0000_0b01);
        assert_eq!(n.as_u64(), 0x5001_a4a0_0000_0b00);
        assert!(parse_vport_ids("5001A4A000000B01:5001a4a000000b00").is_ok());
        for bad in [
            "garbage",
            "",
            "5001a4a000000b01:5001a4a000000b00\n\n",
            "0x5001a4a000000b01:5001a4a000000b00",
            "5001a4a000000b01-5001a4a000000b00",
            "5001a4a000000b0g:5001a4a000000b00",
            "5001a4a000000b01:5001a4a000000b00 ",
        ] {
            assert_eq!(code(parse_vport_ids(bad)), Some(libc::EINVAL), "{bad:?}");
        }
    }

    #[test]
    fn symbolic_name_is_stored_like_store_fc_vport_symbolic_name() {
        let store = |buffer: &mut Vec<u8>, written: &str| {
            store_vport_symbolic_name(buffer, written.as_bytes())
        };
        let shown = |buffer: &[u8]| -> String {
            let end = buffer.iter().position(|&b| b == 0).unwrap_or(buffer.len());
            String::from_utf8_lossy(&buffer[..end]).into_owned()
        };
        let mut b = Vec::new();
        store(&mut b, "libvirt-x1\n").unwrap();
        assert_eq!(shown(&b), "libvirt-x1");
        // No terminator: the old tail shows behind a shorter name.
        store(&mut b, "hbad:d").unwrap();
        assert_eq!(shown(&b), "hbad:dt-x1");
        // A NUL ends the name; the bytes behind it stay in the buffer.
        store(&mut b, "hbad:d\0").unwrap();
        assert_eq!(shown(&b), "hbad:d");
        assert_eq!(b, b"hbad:d\0-x1");
        // ...and show again when a longer name without one covers the NUL.
        store(&mut b, "hbad:db1").unwrap();
        assert_eq!(shown(&b), "hbad:db1x1");
        // 63 bytes fit with the buffer's last NUL, 64 do not; the newline does not count.
        let mut b = Vec::new();
        assert!(store(&mut b, &format!("{}\n", "x".repeat(63))).is_ok());
        assert_eq!(shown(&b).len(), 63);
        assert_eq!(code(store(&mut b, &"y".repeat(64))), Some(libc::EINVAL));
        assert_eq!(shown(&b), "x".repeat(63), "a refused write changes nothing");
        // An empty write never reaches the store handler; a lone newline copies nothing.
        store(&mut b, "").unwrap();
        store(&mut b, "\n").unwrap();
        assert_eq!(shown(&b), "x".repeat(63));
    }

    #[test]
    fn scan_text_parses_like_scsi_scan() {
        assert_eq!(parse_scan("- - -").unwrap(), (None, None, None));
        assert_eq!(parse_scan("0 3 -\n").unwrap(), (Some(0), Some(3), None));
        assert_eq!(
            parse_scan("0 0x10 010").unwrap(),
            (Some(0), Some(16), Some(8))
        );
        for bad in ["", "- -", "- - - -", "a - -", "-1 - -", "0 0 0x", "0 09 0"] {
            assert_eq!(code(parse_scan(bad)), Some(libc::EINVAL), "{bad:?}");
        }
    }
}

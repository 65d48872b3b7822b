//! What uses the simulated disks: processes with a disk open, mounts, and
//! device-mapper multipath maps stacked on them; and LUNs a local controller
//! stops presenting.
//!
//! Laid out as the kernel and procfs show them, beside the simulated `sys/` and
//! `dev/`: `proc/PID/fd/N` links naming `/dev/sdX` and `proc/PID/comm`,
//! `proc/self/mountinfo` lines, and for a map `devices/virtual/block/dm-N` (with
//! `dev`, `size`, `dm/name`, `dm/uuid` and `slaves/`), `block/dm-N`, and a
//! `holders/dm-N` link in each path's disk. The kernel's `device/delete` ignores
//! all of it, as the real one does: it is hbad's to look before deleting.

use std::fs;
use std::io;
use std::path::PathBuf;

use super::kernel::{sd_dev, sd_name};
use super::{Sim, SimError};
use crate::sysfs::Hctl;

/// device-mapper's block major on a default Debian kernel (dynamic, first free).
const DM_MAJOR: u32 = 253;

impl Sim {
    fn proc_dir(&self) -> PathBuf {
        crate::holders::proc_root(&self.shared.sysfs)
    }

    /// The disk of a device: name and `major:minor`.
    fn disk_of(&self, hctl: Hctl) -> Result<(String, (u32, u32), String), SimError> {
        let k = self.kernel();
        let lun = k.lun(hctl).ok_or(SimError::NoDevice(hctl))?;
        let dev = k.lun_devpath(hctl).ok_or(SimError::NoDevice(hctl))?;
        Ok((sd_name(lun.sd), sd_dev(lun.sd), dev))
    }

    /// A process opens the disk (a VM's qemu): `proc/PID/fd/3` -> `/dev/sdX`.
    pub fn open_disk(&self, hctl: Hctl, pid: u32, command: &str) -> Result<(), SimError> {
        let (name, _, _) = self.disk_of(hctl)?;
        self.open_node(&name, pid, command)
    }

    /// `proc/PID/fd/N` -> `/dev/NAME`, at the first free `N` from 3.
    fn open_node(&self, name: &str, pid: u32, command: &str) -> Result<(), SimError> {
        let dir = self.proc_dir().join(pid.to_string());
        let run = || -> io::Result<()> {
            fs::create_dir_all(dir.join("fd"))?;
            fs::write(dir.join("comm"), format!("{command}\n"))?;
            let fd = (3..)
                .find(|n| !dir.join("fd").join(n.to_string()).exists())
                .unwrap_or(3);
            std::os::unix::fs::symlink(format!("/dev/{name}"), dir.join("fd").join(fd.to_string()))
        };
        run().map_err(|e| self.tree_err(e))
    }

    /// A process opens the LUN's SCSI generic node (a VM given the LUN as
    /// `<hostdev type='scsi'>`): `proc/PID/fd/N` -> `/dev/sgN`.
    pub fn open_sg(&self, hctl: Hctl, pid: u32, command: &str) -> Result<(), SimError> {
        let (_, _, devpath) = self.disk_of(hctl)?;
        let sg = self
            .shared
            .sysfs
            .list(&format!("{devpath}/scsi_generic"))
            .into_iter()
            .next()
            .ok_or(SimError::NoDevice(hctl))?;
        self.open_node(&sg, pid, command)
    }

    /// The process ends: its files close.
    pub fn end_process(&self, pid: u32) -> Result<(), SimError> {
        match fs::remove_dir_all(self.proc_dir().join(pid.to_string())) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(self.tree_err(e)),
            _ => Ok(()),
        }
    }

    /// `/proc` as `ProtectProc=invisible` shows it to a reader without
    /// `CAP_SYS_PTRACE`: PID 1 (and every process of another user) is missing.
    pub fn hide_other_processes(&self) -> Result<(), SimError> {
        self.end_process(1)
    }

    /// The kernel claims the disk (an active swap area, a file system mounted in
    /// another mount namespace, an LIO backstore): nothing shows in `proc/`, and
    /// only an exclusive open is refused.
    pub fn claim_disk(&self, hctl: Hctl) -> Result<(), SimError> {
        let (_, dev, _) = self.disk_of(hctl)?;
        self.kernel().faults.claimed.insert(dev);
        Ok(())
    }

    /// The disk is mounted: a line in `proc/self/mountinfo`.
    pub fn mount_disk(&self, hctl: Hctl, mountpoint: &str) -> Result<(), SimError> {
        let (name, (major, minor), _) = self.disk_of(hctl)?;
        let path = self.proc_dir().join("self/mountinfo");
        let run = || -> io::Result<()> {
            fs::create_dir_all(self.proc_dir().join("self"))?;
            let mut text = fs::read_to_string(&path).unwrap_or_default();
            let id = 100 + text.lines().count();
            text.push_str(&format!(
                "{id} 1 {major}:{minor} / {mountpoint} rw,relatime shared:{id} - xfs /dev/{name} rw\n"
            ));
            fs::write(&path, text)
        };
        run().map_err(|e| self.tree_err(e))
    }

    /// multipathd makes a map over these paths (one LUN seen through several
    /// ports): `dm-N` named `name`, uuid `mpath-<WWID>` as multipath spells the
    /// LUN's NAA id (`3` + hex), its size the first path's. Returns `dm-N`.
    pub fn add_multipath_map(&self, name: &str, paths: &[Hctl]) -> Result<String, SimError> {
        let disks = paths
            .iter()
            .map(|h| self.disk_of(*h))
            .collect::<Result<Vec<_>, _>>()?;
        let k = self.kernel();
        let Some(first) = paths.first() else {
            return Ok(String::new());
        };
        let lun = k.lun(*first).ok_or(SimError::NoDevice(*first))?;
        let wwid = match lun.spec.wwid.strip_prefix("naa.") {
            Some(hex) => format!("3{hex}"),
            None => lun.spec.wwid.clone(),
        };
        let size = lun.size_bytes / 512;
        let tree = &k.tree;
        let n = (0..)
            .find(|n| {
                !tree
                    .path(&format!("/devices/virtual/block/dm-{n}"))
                    .exists()
            })
            .unwrap_or(0);
        let dm = format!("dm-{n}");
        let dir = format!("/devices/virtual/block/{dm}");
        let run = || -> io::Result<()> {
            tree.mkdir(&format!("{dir}/dm"))?;
            tree.mkdir(&format!("{dir}/slaves"))?;
            tree.attr(&dir, "dev", &format!("{DM_MAJOR}:{n}"))?;
            tree.attr(&dir, "size", &size.to_string())?;
            tree.attr(&format!("{dir}/dm"), "name", name)?;
            tree.attr(&format!("{dir}/dm"), "uuid", &format!("mpath-{wwid}"))?;
            tree.link(&format!("block/{dm}"), &dir)?;
            for (disk, _, lun_dev) in &disks {
                let bdev = format!("{lun_dev}/block/{disk}");
                tree.mkdir(&format!("{bdev}/holders"))?;
                tree.link(
                    &format!("{}/holders/{dm}", bdev.trim_start_matches('/')),
                    &dir,
                )?;
                tree.link(
                    &format!("{}/slaves/{disk}", dir.trim_start_matches('/')),
                    &bdev,
                )?;
            }
            Ok(())
        };
        run().map_err(|e| self.tree_err(e))?;
        Ok(dm)
    }

    /// A local controller stops presenting a LUN (scsi_debug's `max_luns`
    /// lowered): REPORT LUNS leaves it out, its target reports REPORTED LUNS DATA
    /// HAS CHANGED on the next command, and the device stays until deleted.
    pub fn remove_local_lun(&self, hctl: Hctl) -> Result<(), SimError> {
        let mut k = self.kernel();
        if !k.hosts.contains_key(&hctl.host) {
            return Err(SimError::NoHost(hctl.host));
        }
        k.remove_local_lun(hctl);
        Ok(())
    }
}

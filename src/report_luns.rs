//! REPORT LUNS, asked of a target by hbad itself: which LUNs the array maps to
//! this initiator now.
//!
//! A target scan adds the LUNs REPORT LUNS names that are not there yet, and never
//! removes one it no longer names: the kernel keeps a LUN unmapped on the array as a
//! device whose every command fails (or, on some arrays, that still answers) until
//! someone deletes it. To name such LUNs hbad compares what the target reports with
//! the devices sysfs has, as `rescan-scsi-bus.sh -r` does with `sg_luns`.
//!
//! The command goes through the block device of one of the target's disks with
//! `SG_IO` (v3 header, which sd accepts), after checking that the node is that
//! disk. LUN numbers are converted the way the kernel's `scsilun_to_int` does, so
//! they compare with the `H:C:T:L` names in sysfs.

use std::fmt;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::sysfs::{parse_major_minor, Sysfs};

/// The device node a REPORT LUNS goes through: a disk of the target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceNode {
    /// The LUN's devpath (`/devices/.../H:C:T:L`).
    pub lun_devpath: String,
    /// `/dev/sdX`.
    pub path: PathBuf,
    /// `major:minor` the node must have: a disk name can be reused.
    pub dev: (u32, u32),
}

impl fmt::Display for DeviceNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}:{})", self.path.display(), self.dev.0, self.dev.1)
    }
}

impl DeviceNode {
    /// The node of the first disk under a LUN, from sysfs (`block/sdX/dev`).
    pub fn of_lun(sysfs: &Sysfs, lun_devpath: &str) -> Option<DeviceNode> {
        let name = sysfs.disk_of_lun(lun_devpath)?;
        let dev = parse_major_minor(&sysfs.attr(&format!("{lun_devpath}/block/{name}"), "dev")?)?;
        Some(DeviceNode {
            lun_devpath: lun_devpath.to_string(),
            path: sysfs.dev_root().join(&name),
            dev,
        })
    }

    /// Opens the node read-only with `flags` added (`O_NONBLOCK`: no wait for a
    /// medium; `O_EXCL`: a claim), once it is this disk: a block device numbered
    /// `dev`, looked at before the open (a stale `/dev` entry naming another disk
    /// is not opened, not even for a moment) and again on the open file (the name
    /// may have been replaced in between). A node of hbad's own would need
    /// `CAP_MKNOD`, which the unit does not grant.
    pub fn open(&self, flags: libc::c_int) -> io::Result<std::fs::File> {
        self.is_this_disk(&std::fs::metadata(&self.path)?)?;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(flags)
            .open(&self.path)?;
        self.is_this_disk(&file.metadata()?)?;
        Ok(file)
    }

    fn is_this_disk(&self, meta: &std::fs::Metadata) -> io::Result<()> {
        let rdev = (libc::major(meta.rdev()), libc::minor(meta.rdev()));
        if meta.file_type().is_block_device() && rdev == self.dev {
            return Ok(());
        }
        Err(io::Error::other(format!(
            "{} is not the disk {}:{} (found {}:{})",
            self.path.display(),
            self.dev.0,
            self.dev.1,
            rdev.0,
            rdev.1
        )))
    }
}

/// How long the target has to answer one REPORT LUNS (the kernel aborts it then).
const COMMAND_TIMEOUT_MS: u32 = 30_000;
/// The first allocation: 2047 LUNs ((16384 - 8) / 8). A target with more says so and is asked again.
const FIRST_ALLOCATION: u32 = 16 * 1024;
/// The most asked for: 65535 LUNs, more than any array maps to one initiator
/// (the kernel's own scan stops at `max_report_luns`, 16383 by default).
const MAX_ALLOCATION: u32 = 8 + 8 * 65_535;
/// Unit attentions answered before giving up: each command reports one.
const UA_RETRIES: usize = 4;

/// REPORT LUNS (SELECT REPORT 0) through `node`, in process. Blocks as long as
/// the target takes: call it where a hang costs only that host.
pub fn report_luns(node: &DeviceNode) -> io::Result<Vec<u64>> {
    let file = node.open(libc::O_NONBLOCK)?;
    let mut allocation = FIRST_ALLOCATION;
    let mut attentions = 0;
    loop {
        let mut data = vec![0u8; allocation as usize];
        match sg_io_report_luns(&file, &mut data)? {
            Answer::Data(len) => {
                let list = parse_report_luns(&data[..len.min(data.len())])?;
                if list.listed_bytes > allocation.saturating_sub(8) && allocation < MAX_ALLOCATION {
                    allocation = (list.listed_bytes.saturating_add(8)).min(MAX_ALLOCATION);
                    continue;
                }
                return list.complete(len);
            }
            Answer::UnitAttention(sense) if attentions < UA_RETRIES => {
                attentions += 1;
                tracing::debug!("REPORT LUNS through {node}: {sense}; asking again");
            }
            Answer::UnitAttention(sense) | Answer::Refused(sense) => {
                return Err(io::Error::other(format!(
                    "REPORT LUNS through {node} failed: {sense}"
                )))
            }
        }
    }
}

enum Answer {
    Data(usize),
    UnitAttention(Sense),
    Refused(Sense),
}

/// What a failed command said, in words an operator can look up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sense {
    status: u8,
    host_status: u16,
    driver_status: u16,
    key: Option<u8>,
    asc: u8,
    ascq: u8,
}

impl fmt::Display for Sense {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SCSI status 0x{:02x}", self.status)?;
        if let Some(key) = self.key {
            write!(
                f,
                ", sense key 0x{key:x} asc/ascq 0x{:02x}/0x{:02x}",
                self.asc, self.ascq
            )?;
        }
        if self.host_status != 0 {
            write!(f, ", host status 0x{:x}", self.host_status)?;
        }
        if self.driver_status != 0 {
            write!(f, ", driver status 0x{:x}", self.driver_status)?;
        }
        Ok(())
    }
}

/// Fixed (0x70/0x71) or descriptor (0x72/0x73) sense data: key, ASC, ASCQ.
fn sense_of(buf: &[u8]) -> Option<(u8, u8, u8)> {
    let code = buf.first()? & 0x7f;
    match code {
        0x70 | 0x71 => Some((buf.get(2)? & 0x0f, *buf.get(12)?, *buf.get(13)?)),
        0x72 | 0x73 => Some((buf.get(1)? & 0x0f, *buf.get(2)?, *buf.get(3)?)),
        _ => None,
    }
}

/// `struct sg_io_hdr` from `<scsi/sg.h>`.
#[repr(C)]
struct SgIoHdr {
    interface_id: libc::c_int,
    dxfer_direction: libc::c_int,
    cmd_len: libc::c_uchar,
    mx_sb_len: libc::c_uchar,
    iovec_count: libc::c_ushort,
    dxfer_len: libc::c_uint,
    dxferp: *mut libc::c_void,
    cmdp: *mut libc::c_uchar,
    sbp: *mut libc::c_uchar,
    timeout: libc::c_uint,
    flags: libc::c_uint,
    pack_id: libc::c_int,
    usr_ptr: *mut libc::c_void,
    status: libc::c_uchar,
    masked_status: libc::c_uchar,
    msg_status: libc::c_uchar,
    sb_len_wr: libc::c_uchar,
    host_status: libc::c_ushort,
    driver_status: libc::c_ushort,
    resid: libc::c_int,
    duration: libc::c_uint,
    info: libc::c_uint,
}

const SG_IO: libc::c_ulong = 0x2285;
const SG_DXFER_FROM_DEV: libc::c_int = -3;
const CHECK_CONDITION: u8 = 0x02;
const UNIT_ATTENTION: u8 = 0x06;
/// `DRIVER_SENSE`: the driver status that only says sense data came back.
const DRIVER_SENSE: u16 = 0x08;

fn sg_io_report_luns(file: &std::fs::File, data: &mut [u8]) -> io::Result<Answer> {
    use std::os::fd::AsRawFd;
    let len = u32::try_from(data.len()).unwrap_or(MAX_ALLOCATION);
    let mut cdb = [0u8; 12];
    cdb[0] = 0xa0; // REPORT LUNS
    cdb[6..10].copy_from_slice(&len.to_be_bytes());
    let mut sense = [0u8; 64];
    let mut hdr = SgIoHdr {
        interface_id: b'S' as libc::c_int,
        dxfer_direction: SG_DXFER_FROM_DEV,
        cmd_len: cdb.len() as u8,
        mx_sb_len: sense.len() as u8,
        iovec_count: 0,
        dxfer_len: len,
        dxferp: data.as_mut_ptr().cast(),
        cmdp: cdb.as_mut_ptr(),
        sbp: sense.as_mut_ptr(),
        timeout: COMMAND_TIMEOUT_MS,
        flags: 0,
        pack_id: 0,
        usr_ptr: std::ptr::null_mut(),
        status: 0,
        masked_status: 0,
        msg_status: 0,
        sb_len_wr: 0,
        host_status: 0,
        driver_status: 0,
        resid: 0,
        duration: 0,
        info: 0,
    };
    // SAFETY: every pointer in `hdr` points into a live local buffer of the length
    // given beside it, and outlives the call; the kernel writes only within them.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), SG_IO as _, &mut hdr as *mut SgIoHdr) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let written = &sense[..usize::from(hdr.sb_len_wr).min(sense.len())];
    let parsed = sense_of(written);
    let s = Sense {
        status: hdr.status,
        host_status: hdr.host_status,
        driver_status: hdr.driver_status,
        key: parsed.map(|p| p.0),
        asc: parsed.map_or(0, |p| p.1),
        ascq: parsed.map_or(0, |p| p.2),
    };
    let driver_ok = hdr.driver_status & !DRIVER_SENSE == 0;
    if hdr.status == 0 && hdr.host_status == 0 && driver_ok {
        let resid = usize::try_from(hdr.resid.max(0)).unwrap_or(0);
        return Ok(Answer::Data(data.len().saturating_sub(resid)));
    }
    if hdr.status == CHECK_CONDITION && s.key == Some(UNIT_ATTENTION) {
        return Ok(Answer::UnitAttention(s));
    }
    Ok(Answer::Refused(s))
}

/// A REPORT LUNS answer: the LUNs in it, and how many bytes of list the target
/// has (more than were read when the allocation was short).
#[derive(Debug, PartialEq, Eq)]
pub struct LunList {
    pub luns: Vec<u64>,
    pub listed_bytes: u32,
}

impl LunList {
    /// The LUNs, when the whole list the target has came back in `received`
    /// bytes. A part of it would make every LUN past the cut look gone: a list
    /// longer than hbad asks for, or a transfer cut short (`resid`), is an error.
    pub fn complete(self, received: usize) -> io::Result<Vec<u64>> {
        let whole = 8 + u64::from(self.listed_bytes);
        if whole > received as u64 {
            return Err(io::Error::other(format!(
                "REPORT LUNS answer incomplete: {received} of {whole} bytes"
            )));
        }
        Ok(self.luns)
    }
}

/// Parses REPORT LUNS parameter data: a 4-byte big-endian list length, 4 reserved
/// bytes, then 8-byte LUNs. Only entries wholly inside `data` are read.
pub fn parse_report_luns(data: &[u8]) -> io::Result<LunList> {
    let Some(head) = data.get(..8) else {
        return Err(io::Error::other(format!(
            "REPORT LUNS answered {} bytes, fewer than its 8-byte header",
            data.len()
        )));
    };
    let listed_bytes = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    let listed = usize::try_from(listed_bytes / 8).unwrap_or(usize::MAX);
    let mut luns: Vec<u64> = data[8..]
        .chunks_exact(8)
        .take(listed)
        .map(|c| {
            let mut raw = [0u8; 8];
            raw.copy_from_slice(c);
            scsilun_to_int(raw)
        })
        .collect();
    luns.sort_unstable();
    luns.dedup();
    Ok(LunList { luns, listed_bytes })
}

/// The kernel's `scsilun_to_int`: the 8-byte LUN as the number sysfs shows in
/// `H:C:T:L` (level by level, two bytes each, first level lowest).
pub fn scsilun_to_int(raw: [u8; 8]) -> u64 {
    let mut lun = 0u64;
    for i in (0..8).step_by(2) {
        let level = (u64::from(raw[i]) << 8) | u64::from(raw[i + 1]);
        lun |= level << (i * 8);
    }
    lun
}

/// `hbad report-luns`'s output: one LUN a line, nothing else.
pub fn format_luns(luns: &[u64]) -> String {
    luns.iter().map(|l| format!("{l}\n")).collect()
}

/// Reads `hbad report-luns`'s output back, refusing anything else.
pub fn parse_luns(text: &str) -> io::Result<Vec<u64>> {
    text.lines()
        .take(MAX_ALLOCATION as usize / 8)
        .map(|l| {
            l.trim().parse::<u64>().map_err(|_| {
                io::Error::other(format!(
                    "the report-luns process printed `{}`, not a LUN number",
                    l.escape_debug()
                ))
            })
        })
        .collect()
}

/// Where `hbad report-luns` writes a node path and its `major:minor`.
pub fn node_args(node: &DeviceNode) -> [String; 2] {
    [
        node.path.display().to_string(),
        format!("{}:{}", node.dev.0, node.dev.1),
    ]
}

/// Rebuilds the node `hbad report-luns PATH MAJ:MIN` names.
pub fn node_from_args(path: &Path, dev: &str) -> Option<DeviceNode> {
    Some(DeviceNode {
        lun_devpath: String::new(),
        path: path.to_path_buf(),
        dev: parse_major_minor(dev)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luns_convert_as_the_kernel_numbers_them() {
        assert_eq!(scsilun_to_int([0, 1, 0, 0, 0, 0, 0, 0]), 1);
        assert_eq!(scsilun_to_int([0, 0, 0, 0, 0, 0, 0, 0]), 0);
        // Flat space addressing keeps its method bits: sysfs shows 16385.
        assert_eq!(scsilun_to_int([0x40, 0x01, 0, 0, 0, 0, 0, 0]), 0x4001);
        // A second level lands above the first.
        assert_eq!(scsilun_to_int([0, 2, 0, 3, 0, 0, 0, 0]), 0x0003_0002);
    }

    #[test]
    fn report_luns_data_is_read_only_within_its_length_and_the_buffer() {
        let mut data = vec![0, 0, 0, 24, 0, 0, 0, 0];
        for lun in [3u8, 0, 1] {
            data.extend_from_slice(&[0, lun, 0, 0, 0, 0, 0, 0]);
        }
        let list = parse_report_luns(&data).unwrap();
        assert_eq!(list.luns, vec![0, 1, 3]);
        assert_eq!(list.listed_bytes, 24);
        // The target lists more than the buffer holds: what is there, and the length.
        let mut short = data[..16].to_vec();
        short[3] = 200;
        let list = parse_report_luns(&short).unwrap();
        assert_eq!(list.luns, vec![3]);
        assert_eq!(list.listed_bytes, 200);
        // A torn entry is not a LUN.
        let list = parse_report_luns(&data[..20]).unwrap();
        assert_eq!(list.luns, vec![3]);
        assert!(parse_report_luns(&data[..7]).is_err());
    }

    #[test]
    fn only_a_whole_list_is_an_answer() {
        let mut data = vec![0, 0, 0, 16, 0, 0, 0, 0];
        data.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        let whole = parse_report_luns(&data).unwrap();
        assert_eq!(whole.complete(data.len()).unwrap(), vec![0, 1]);
        // Cut short by the transfer (resid): LUN 1 is not gone, the answer is partial.
        let cut = parse_report_luns(&data[..16]).unwrap();
        let err = cut.complete(16).unwrap_err().to_string();
        assert_eq!(err, "REPORT LUNS answer incomplete: 16 of 24 bytes");
        // Longer than the most hbad asks for: the first part only, an error too.
        let mut huge = data.clone();
        huge[..4].copy_from_slice(&(MAX_ALLOCATION).to_be_bytes());
        let len = huge.len();
        assert!(parse_report_luns(&huge).unwrap().complete(len).is_err());
    }

    #[test]
    fn sense_data_of_both_formats_names_key_and_codes() {
        let mut fixed = [0u8; 18];
        fixed[0] = 0x70;
        fixed[2] = 0x05;
        fixed[12] = 0x25;
        assert_eq!(sense_of(&fixed), Some((5, 0x25, 0)));
        assert_eq!(sense_of(&[0x72, 0x06, 0x3f, 0x0e]), Some((6, 0x3f, 0x0e)));
        assert_eq!(sense_of(&[0x70, 0, 6]), None);
        assert_eq!(sense_of(&[]), None);
    }

    #[test]
    fn the_child_output_round_trips_and_refuses_anything_else() {
        assert_eq!(
            parse_luns(&format_luns(&[0, 2, 16385])).unwrap(),
            vec![0, 2, 16385]
        );
        assert!(parse_luns("0\nsdb\n").is_err());
        assert_eq!(parse_major_minor("8:16"), Some((8, 16)));
        assert_eq!(parse_major_minor("8"), None);
    }
}

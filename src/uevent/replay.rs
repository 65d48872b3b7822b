//! Replay files: captured kernel uevents, for tests, benchmarks and `hbad watch --replay`.
//!
//! The format is the one the shared kernel capture uses: each record is a 4-byte
//! little-endian length followed by the datagram exactly as netlink delivered it.

use std::io::{self, Write};
use std::path::Path;

use super::{parse_kernel, ParseError, Uevent};
use crate::files;

/// The longest record taken: the kernel builds a uevent's properties in a
/// 2048-byte buffer (`UEVENT_BUFFER_SIZE`) behind an `action@devpath` header, and a
/// devpath is at most `PATH_MAX` (4096) bytes, so no datagram it sends is longer.
pub const MAX_RECORD: usize = 8192;

/// The largest replay file read: about a million events, far past any capture of
/// a real host, and a bound on the memory a replay takes.
pub const MAX_FILE: u64 = 256 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("{path}: record {index} at byte {offset}: length {len} runs past the end of the file (truncated capture?)")]
    Truncated {
        path: String,
        index: usize,
        offset: usize,
        len: usize,
    },
    #[error("{path}: record {index} at byte {offset} is {len} bytes; a kernel uevent is at most {MAX_RECORD} bytes")]
    TooLong {
        path: String,
        index: usize,
        offset: usize,
        len: usize,
    },
    #[error("{path}: {why}")]
    File { path: String, why: files::ReadError },
    #[error("{path}: record {index} at byte {offset}: {source}")]
    Parse {
        path: String,
        index: usize,
        offset: usize,
        source: ParseError,
    },
}

/// Splits a replay buffer into its datagrams, checking lengths.
pub fn records(path: &str, data: &[u8]) -> Result<Vec<(usize, Vec<u8>)>, ReplayError> {
    let mut out = Vec::new();
    let mut offset = 0;
    while offset < data.len() {
        let index = out.len();
        let Some(head) = data.get(offset..offset + 4) else {
            return Err(ReplayError::Truncated {
                path: path.into(),
                index,
                offset,
                len: 4,
            });
        };
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        if len > MAX_RECORD {
            return Err(ReplayError::TooLong {
                path: path.into(),
                index,
                offset,
                len,
            });
        }
        let Some(body) = data.get(offset + 4..offset + 4 + len) else {
            return Err(ReplayError::Truncated {
                path: path.into(),
                index,
                offset,
                len,
            });
        };
        out.push((offset, body.to_vec()));
        offset += 4 + len;
    }
    Ok(out)
}

/// Reads and parses every event of a replay file; the first bad record is an error
/// that names the record, since a capture is evidence and must not be half-read.
pub fn read_file(path: &Path) -> Result<Vec<Uevent>, ReplayError> {
    parse_buffer(&path.display().to_string(), &read_bytes(path)?)
}

/// The bytes of a replay file: a regular file of at most [`MAX_FILE`] bytes, read
/// without blocking on a FIFO or a device.
pub fn read_bytes(path: &Path) -> Result<Vec<u8>, ReplayError> {
    files::read_bounded(path, MAX_FILE).map_err(|why| ReplayError::File {
        path: path.display().to_string(),
        why,
    })
}

pub fn parse_buffer(name: &str, data: &[u8]) -> Result<Vec<Uevent>, ReplayError> {
    records(name, data)?
        .into_iter()
        .enumerate()
        .map(|(index, (offset, body))| {
            parse_kernel(&body).map_err(|source| ReplayError::Parse {
                path: name.into(),
                index,
                offset,
                source,
            })
        })
        .collect()
}

/// Appends one event as a replay record.
pub fn write_record(out: &mut impl Write, event: &Uevent) -> io::Result<()> {
    let bytes = event.to_kernel_bytes();
    out.write_all(&(bytes.len() as u32).to_le_bytes())?;
    out.write_all(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uevent::Action;

    #[test]
    fn round_trips_and_rejects_truncated_files() {
        let mut buf = Vec::new();
        let ev = Uevent::new(Action::Add, "/devices/x/host9", "scsi").with_devtype("scsi_host");
        write_record(&mut buf, &ev).unwrap();
        write_record(&mut buf, &ev).unwrap();
        assert_eq!(parse_buffer("t", &buf).unwrap(), vec![ev.clone(), ev]);
        for cut in [1, 3, 5, buf.len() - 1] {
            let err = parse_buffer("t", &buf[..buf.len() - cut])
                .unwrap_err()
                .to_string();
            assert!(err.contains("truncated") || err.contains("NUL"), "{err}");
        }
    }

    #[test]
    fn a_record_longer_than_any_uevent_is_refused_with_the_bound() {
        let mut buf = Vec::new();
        let ev = Uevent::new(Action::Add, "/devices/x/host9", "scsi");
        write_record(&mut buf, &ev).unwrap();
        let at = buf.len();
        buf.extend_from_slice(&(3u32 << 30).to_le_bytes());
        buf.extend_from_slice(&[b'x'; 16]);
        let err = parse_buffer("cap", &buf).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "cap: record 1 at byte {at} is 3221225472 bytes; a kernel uevent is at most 8192 bytes"
            )
        );
    }

    #[test]
    fn a_fifo_or_an_endless_device_is_refused_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let [fifo, zero] = crate::files::testing::refusals(dir.path().join("cap.rep"), read_file);
        assert!(fifo.contains("is a FIFO, not a regular file"), "{fifo}");
        assert!(zero.contains("is a character device"), "{zero}");
        let big = dir.path().join("big.rep");
        std::fs::File::create(&big)
            .unwrap()
            .set_len(MAX_FILE + 1)
            .unwrap();
        let err = read_file(&big).unwrap_err().to_string();
        assert!(err.contains("at most 268435456 bytes"), "{err}");
    }
}

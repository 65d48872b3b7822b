//! Replay files: captured kernel uevents, for tests, benchmarks and `hbad watch --replay`.
//!
//! The format is the one the shared kernel capture uses: each record is a 4-byte
//! little-endian length followed by the datagram exactly as netlink delivered it.

use std::io::{self, Read, Write};
use std::path::Path;

use super::{parse_kernel, ParseError, Uevent};

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
    #[error("{path}: record {index} at byte {offset}: length {len} runs past the end of the file (truncated capture?)")]
    Truncated {
        path: String,
        index: usize,
        offset: usize,
        len: usize,
    },
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
    let name = path.display().to_string();
    let mut data = Vec::new();
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_end(&mut data))
        .map_err(|source| ReplayError::Io {
            path: name.clone(),
            source,
        })?;
    parse_buffer(&name, &data)
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
}

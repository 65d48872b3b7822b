//! Ethernet, FCoE and Fibre Channel framing: the layers every FIP and FC message of
//! the forwarder rides on. Layouts follow the kernel's include/scsi/fc/fc_fcoe.h and
//! include/uapi/scsi/fc/fc_fs.h.

use std::fmt;

pub const ETH_P_FCOE: u16 = 0x8906;
pub const ETH_P_FIP: u16 = 0x8914;
pub const ETH_HLEN: usize = 14;
/// struct fcoe_hdr: version nibble, 12 reserved bytes, SOF.
pub const FCOE_HLEN: usize = 14;
/// struct fcoe_crc_eof: CRC-32 (little-endian), EOF, 3 pad bytes.
pub const FCOE_TRAILER: usize = 8;
/// struct fc_frame_header.
pub const FC_HLEN: usize = 24;

pub const SOF_I3: u8 = 0x2e;
pub const EOF_T: u8 = 0x42;

/// The largest FC frame payload (FC-FS): receive sizes outside 256..=2112 are refused.
pub const FC_MAX_PAYLOAD: usize = 2112;

/// Why a frame could not be decoded. Frames come from the kernel under test, so a
/// malformed one is logged and dropped, never trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

pub type Result<T> = std::result::Result<T, Malformed>;

/// A 48-bit Ethernet address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// FIP's all-ENodes multicast group: unsolicited advertisements go here.
    pub const ALL_ENODES: Mac = Mac([0x01, 0x10, 0x18, 0x01, 0x00, 0x01]);
    /// FIP's all-FCFs multicast group: solicitations arrive here.
    pub const ALL_FCFS: Mac = Mac([0x01, 0x10, 0x18, 0x01, 0x00, 0x02]);

    /// The fabric-provided MAC of an N_Port: FC-MAP in the upper 24 bits, the
    /// N_Port ID in the lower 24.
    pub fn fpma(fc_map: u32, port_id: u32) -> Mac {
        let m = fc_map.to_be_bytes();
        let p = port_id.to_be_bytes();
        Mac([m[1], m[2], m[3], p[1], p[2], p[3]])
    }

    pub fn parse(text: &str) -> Option<Mac> {
        let mut out = [0u8; 6];
        let mut parts = text.split(':');
        for byte in &mut out {
            let part = parts.next()?;
            if part.len() != 2 {
                return None;
            }
            *byte = u8::from_str_radix(part, 16).ok()?;
        }
        parts.next().is_none().then_some(Mac(out))
    }

    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 == 1
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

pub fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

pub fn be24(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([0, b[at], b[at + 1], b[at + 2]])
}

pub fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

pub fn be64(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(w)
}

pub fn put24(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes()[1..]);
}

/// An Ethernet frame as received: addresses, ethertype and the bytes after the header.
#[derive(Debug, Clone, Copy)]
pub struct Ethernet<'a> {
    pub dst: Mac,
    pub src: Mac,
    pub ethertype: u16,
    pub payload: &'a [u8],
}

impl<'a> Ethernet<'a> {
    pub fn parse(frame: &'a [u8]) -> Result<Self> {
        if frame.len() < ETH_HLEN {
            return Err(Malformed("Ethernet frame shorter than its header"));
        }
        let mut dst = [0u8; 6];
        let mut src = [0u8; 6];
        dst.copy_from_slice(&frame[0..6]);
        src.copy_from_slice(&frame[6..12]);
        Ok(Ethernet {
            dst: Mac(dst),
            src: Mac(src),
            ethertype: be16(frame, 12),
            payload: &frame[ETH_HLEN..],
        })
    }
}

pub fn ethernet(dst: Mac, src: Mac, ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ETH_HLEN + payload.len());
    out.extend_from_slice(&dst.0);
    out.extend_from_slice(&src.0);
    out.extend_from_slice(&ethertype.to_be_bytes());
    out.extend_from_slice(payload);
    // Ethernet's minimum frame (60 bytes before the FCS).
    if out.len() < 60 {
        out.resize(60, 0);
    }
    out
}

/// CRC-32 as zlib computes it (reflected, polynomial 0xEDB88320): FCoE's frame CRC.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xedb8_8320 & mask);
        }
    }
    !crc
}

/// struct fc_frame_header, the 24 bytes in front of every FC frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FcHeader {
    pub r_ctl: u8,
    pub d_id: u32,
    pub s_id: u32,
    pub fc_type: u8,
    pub f_ctl: u32,
    pub seq_id: u8,
    pub seq_cnt: u16,
    pub ox_id: u16,
    pub rx_id: u16,
}

pub const R_CTL_CT_REQ: u8 = 0x02; // FC_RCTL_DD_UNSOL_CTL
pub const R_CTL_CT_REP: u8 = 0x03; // FC_RCTL_DD_SOL_CTL
pub const R_CTL_ELS_REQ: u8 = 0x22;
pub const R_CTL_ELS_REP: u8 = 0x23;
pub const TYPE_ELS: u8 = 0x01;
pub const TYPE_CT: u8 = 0x20;
/// F_CTL of a request: first sequence, end of sequence, sequence initiative.
pub const F_CTL_REQ: u32 = 0x29_0000;
/// F_CTL of a reply: exchange responder, last sequence, end of sequence, initiative.
pub const F_CTL_REP: u32 = 0x99_0000;

impl FcHeader {
    pub fn parse(b: &[u8]) -> Result<Self> {
        if b.len() < FC_HLEN {
            return Err(Malformed("FC frame shorter than its header"));
        }
        Ok(FcHeader {
            r_ctl: b[0],
            d_id: be24(b, 1),
            s_id: be24(b, 5),
            fc_type: b[8],
            f_ctl: be24(b, 9),
            seq_id: b[12],
            seq_cnt: be16(b, 14),
            ox_id: be16(b, 16),
            rx_id: be16(b, 18),
        })
    }

    pub fn write(&self, out: &mut Vec<u8>) {
        out.push(self.r_ctl);
        put24(out, self.d_id);
        out.push(0); // CS_CTL
        put24(out, self.s_id);
        out.push(self.fc_type);
        put24(out, self.f_ctl);
        out.push(self.seq_id);
        out.push(0); // DF_CTL
        out.extend_from_slice(&self.seq_cnt.to_be_bytes());
        out.extend_from_slice(&self.ox_id.to_be_bytes());
        out.extend_from_slice(&self.rx_id.to_be_bytes());
        out.extend_from_slice(&0u32.to_be_bytes()); // parameter
    }

    /// The header of the reply to this request: addresses swapped, the exchange's
    /// OX_ID echoed (libfc matches the reply to its exchange by it and checks that
    /// the reply's D_ID is the requester and its S_ID the address it asked).
    pub fn reply(&self, r_ctl: u8) -> FcHeader {
        FcHeader {
            r_ctl,
            d_id: self.s_id,
            s_id: self.d_id,
            fc_type: self.fc_type,
            f_ctl: F_CTL_REP,
            seq_id: 0,
            seq_cnt: 0,
            ox_id: self.ox_id,
            rx_id: 0xffff,
        }
    }
}

/// An FC frame: header and payload (no SOF/EOF/CRC).
pub fn fc_frame(header: &FcHeader, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(FC_HLEN + payload.len());
    header.write(&mut out);
    out.extend_from_slice(payload);
    out
}

/// A decoded FCoE frame: the SOF and the FC frame (header + payload) between the
/// FCoE header and the CRC.
#[derive(Debug, Clone, Copy)]
pub struct Fcoe<'a> {
    pub sof: u8,
    pub fc: &'a [u8],
    pub eof: u8,
}

impl<'a> Fcoe<'a> {
    /// Parses the Ethernet payload of an FCoE frame and checks its CRC.
    pub fn parse(payload: &'a [u8]) -> Result<Self> {
        if payload.len() < FCOE_HLEN + FC_HLEN + FCOE_TRAILER {
            return Err(Malformed("FCoE frame too short"));
        }
        if payload[0] >> 4 != 0 {
            return Err(Malformed("FCoE version is not 0"));
        }
        let end = payload.len() - FCOE_TRAILER;
        let fc = &payload[FCOE_HLEN..end];
        let crc = u32::from_le_bytes([
            payload[end],
            payload[end + 1],
            payload[end + 2],
            payload[end + 3],
        ]);
        if crc != crc32(fc) {
            return Err(Malformed("FCoE frame CRC mismatch"));
        }
        Ok(Fcoe {
            sof: payload[FCOE_HLEN - 1],
            fc,
            eof: payload[end + 4],
        })
    }
}

/// The Ethernet payload carrying one FC frame as a single-frame sequence (SOF I3,
/// EOF T): what the forwarder sends from its own services.
pub fn fcoe_payload(fc: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(FCOE_HLEN + fc.len() + FCOE_TRAILER);
    out.extend_from_slice(&[0u8; FCOE_HLEN - 1]);
    out.push(SOF_I3);
    out.extend_from_slice(fc);
    out.extend_from_slice(&crc32(fc).to_le_bytes());
    out.extend_from_slice(&[EOF_T, 0, 0, 0]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_is_zlibs() {
        // The check value of CRC-32/ISO-HDLC (zlib's crc32): "123456789".
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn fpma_is_fc_map_and_port_id() {
        assert_eq!(
            Mac::fpma(0x0efc00, 0x010203).to_string(),
            "0e:fc:00:01:02:03"
        );
        assert!(!Mac::fpma(0x0efc00, 0x010203).is_multicast());
        assert!(Mac::ALL_ENODES.is_multicast());
    }

    #[test]
    fn mac_parse_round_trips_and_refuses_junk() {
        let m = Mac::parse("02:fc:f0:00:00:0a").unwrap();
        assert_eq!(m.to_string(), "02:fc:f0:00:00:0a");
        for bad in [
            "",
            "02:fc:f0:00:00",
            "02:fc:f0:00:00:0a:0b",
            "2:fc:f0:00:00:0a",
            "zz:fc:f0:00:00:0a",
        ] {
            assert_eq!(Mac::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn fc_header_layout_is_fc_frame_header() {
        // struct fc_frame_header: r_ctl, d_id[3], cs_ctl, s_id[3], type, f_ctl[3],
        // seq_id, df_ctl, seq_cnt, ox_id, rx_id, parm_offset.
        let h = FcHeader {
            r_ctl: 0x23,
            d_id: 0x010001,
            s_id: 0xfffffe,
            fc_type: 0x01,
            f_ctl: 0x990000,
            seq_id: 0,
            seq_cnt: 0,
            ox_id: 0x1234,
            rx_id: 0xffff,
        };
        let mut b = Vec::new();
        h.write(&mut b);
        assert_eq!(
            b,
            [
                0x23, 0x01, 0x00, 0x01, 0x00, 0xff, 0xff, 0xfe, 0x01, 0x99, 0x00, 0x00, 0x00, 0x00,
                0x00, 0x00, 0x12, 0x34, 0xff, 0xff, 0, 0, 0, 0
            ]
        );
        assert_eq!(FcHeader::parse(&b).unwrap(), h);
        assert!(FcHeader::parse(&b[..23]).is_err());
    }

    #[test]
    fn fcoe_encapsulation_round_trips_and_checks_the_crc() {
        let fc = fc_frame(&FcHeader::parse(&[0x22; 24]).unwrap(), &[1, 2, 3, 4]);
        let payload = fcoe_payload(&fc);
        assert_eq!(payload.len(), 14 + 28 + 8);
        assert_eq!(payload[13], SOF_I3);
        assert_eq!(&payload[payload.len() - 4..], &[EOF_T, 0, 0, 0]);
        let back = Fcoe::parse(&payload).unwrap();
        assert_eq!(back.fc, &fc[..]);
        assert_eq!((back.sof, back.eof), (SOF_I3, EOF_T));
        let mut bad = payload.clone();
        bad[20] ^= 1;
        assert_eq!(
            Fcoe::parse(&bad).unwrap_err(),
            Malformed("FCoE frame CRC mismatch")
        );
        assert!(Fcoe::parse(&payload[..40]).is_err());
    }

    #[test]
    fn ethernet_pads_to_the_minimum_and_parses_back() {
        let f = ethernet(
            Mac::ALL_ENODES,
            Mac([2, 0, 0, 0, 0, 1]),
            ETH_P_FIP,
            &[9; 10],
        );
        assert_eq!(f.len(), 60);
        let e = Ethernet::parse(&f).unwrap();
        assert_eq!(
            (e.dst, e.src, e.ethertype),
            (Mac::ALL_ENODES, Mac([2, 0, 0, 0, 0, 1]), ETH_P_FIP)
        );
        assert!(Ethernet::parse(&f[..13]).is_err());
    }
}

//! FIP, the FCoE Initialization Protocol (FC-BB-5): discovery (solicitation and
//! advertisement), logins carried in FIP (FLOGI, FDISC, LOGO), keep-alives and Clear
//! Virtual Links. Layouts: the kernel's include/scsi/fc/fc_fip.h.

use crate::wire::{be16, be24, be32, be64, put24, Mac, Malformed, Result};

pub const FIP_VER: u8 = 1 << 4;
pub const OP_DISC: u16 = 1;
pub const OP_LS: u16 = 2;
pub const OP_CTRL: u16 = 3;
pub const SC_SOL: u8 = 1;
pub const SC_ADV: u8 = 2;
pub const SC_REQ: u8 = 1;
pub const SC_REP: u8 = 2;
pub const SC_KEEP_ALIVE: u8 = 1;
pub const SC_CLR_VLINK: u8 = 2;

pub const FL_FPMA: u16 = 0x8000;
pub const FL_AVAIL: u16 = 0x0004;
pub const FL_SOL: u16 = 0x0002;

pub const DT_PRI: u8 = 1;
pub const DT_MAC: u8 = 2;
pub const DT_NAME: u8 = 4;
pub const DT_FAB: u8 = 5;
pub const DT_FCOE_SIZE: u8 = 6;
pub const DT_FLOGI: u8 = 7;
pub const DT_FDISC: u8 = 8;
pub const DT_LOGO: u8 = 9;
pub const DT_VN_ID: u8 = 11;
pub const DT_FKA: u8 = 12;

/// struct fip_header: 10 bytes.
const HLEN: usize = 10;

/// One FIP descriptor, decoded where the forwarder needs its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Desc<'a> {
    Mac(Mac),
    Name(u64),
    FcoeSize(u16),
    /// An encapsulated ELS (FLOGI 7, FDISC 8, LOGO 9): the FC header and payload
    /// follow the descriptor's 4-byte head, without SOF, EOF or CRC.
    Els {
        dtype: u8,
        frame: &'a [u8],
    },
    VnId {
        mac: Mac,
        port_id: u32,
        wwpn: u64,
    },
    Other {
        dtype: u8,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fip<'a> {
    pub op: u16,
    pub subcode: u8,
    pub flags: u16,
    pub descs: Vec<Desc<'a>>,
}

impl<'a> Fip<'a> {
    /// Parses the Ethernet payload of a FIP frame. The descriptor list length bounds
    /// the walk; a zero-length descriptor ends it as malformed (it would never advance).
    pub fn parse(b: &'a [u8]) -> Result<Self> {
        if b.len() < HLEN {
            return Err(Malformed("FIP frame shorter than its header"));
        }
        if b[0] >> 4 != 1 {
            return Err(Malformed("FIP version is not 1"));
        }
        let op = be16(b, 2);
        let subcode = b[5] & 0x0f;
        let dl_len = usize::from(be16(b, 6)) * 4;
        let flags = be16(b, 8);
        let list = b
            .get(HLEN..HLEN + dl_len)
            .ok_or(Malformed("FIP descriptor list longer than the frame"))?;
        let mut descs = Vec::new();
        let mut at = 0;
        while at + 2 <= list.len() {
            let dtype = list[at];
            let dlen = usize::from(list[at + 1]) * 4;
            if dlen == 0 {
                return Err(Malformed("FIP descriptor of length 0"));
            }
            let d = list
                .get(at..at + dlen)
                .ok_or(Malformed("FIP descriptor past the list"))?;
            descs.push(decode(dtype, d)?);
            at += dlen;
        }
        Ok(Fip {
            op,
            subcode,
            flags,
            descs,
        })
    }

    pub fn mac(&self) -> Option<Mac> {
        self.descs.iter().find_map(|d| match d {
            Desc::Mac(m) => Some(*m),
            _ => None,
        })
    }

    pub fn els(&self) -> Option<(u8, &'a [u8])> {
        self.descs.iter().find_map(|d| match d {
            Desc::Els { dtype, frame } => Some((*dtype, *frame)),
            _ => None,
        })
    }
}

fn decode(dtype: u8, d: &[u8]) -> Result<Desc<'_>> {
    let need = |n: usize, what: &'static str| {
        if d.len() == n {
            Ok(())
        } else {
            Err(Malformed(what))
        }
    };
    Ok(match dtype {
        DT_MAC => {
            need(8, "FIP MAC descriptor is not 8 bytes")?;
            let mut m = [0u8; 6];
            m.copy_from_slice(&d[2..8]);
            Desc::Mac(Mac(m))
        }
        DT_NAME => {
            need(12, "FIP NAME descriptor is not 12 bytes")?;
            Desc::Name(be64(d, 4))
        }
        DT_FCOE_SIZE => {
            need(4, "FIP FCoE size descriptor is not 4 bytes")?;
            Desc::FcoeSize(be16(d, 2))
        }
        DT_FLOGI | DT_FDISC | DT_LOGO => Desc::Els {
            dtype,
            frame: &d[4..],
        },
        DT_VN_ID => {
            need(20, "FIP VN_ID descriptor is not 20 bytes")?;
            let mut m = [0u8; 6];
            m.copy_from_slice(&d[2..8]);
            Desc::VnId {
                mac: Mac(m),
                port_id: be24(d, 9),
                wwpn: be64(d, 12),
            }
        }
        _ => Desc::Other { dtype },
    })
}

/// Builds a FIP frame's Ethernet payload from its descriptors.
fn frame(op: u16, subcode: u8, flags: u16, descs: &[u8]) -> Vec<u8> {
    debug_assert_eq!(descs.len() % 4, 0, "FIP descriptors are whole words");
    let words = u16::try_from(descs.len() / 4).unwrap_or(u16::MAX);
    let mut out = Vec::with_capacity(HLEN + descs.len());
    out.extend_from_slice(&[FIP_VER, 0]);
    out.extend_from_slice(&op.to_be_bytes());
    out.extend_from_slice(&[0, subcode]);
    out.extend_from_slice(&words.to_be_bytes());
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(descs);
    out
}

fn put_mac(out: &mut Vec<u8>, mac: Mac) {
    out.extend_from_slice(&[DT_MAC, 2]);
    out.extend_from_slice(&mac.0);
}

fn put_name(out: &mut Vec<u8>, wwn: u64) {
    out.extend_from_slice(&[DT_NAME, 3, 0, 0]);
    out.extend_from_slice(&wwn.to_be_bytes());
}

/// What an FCF says about itself in every advertisement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FcfIdentity {
    pub mac: Mac,
    pub switch_name: u64,
    pub fabric_name: u64,
    pub fc_map: u32,
    pub priority: u8,
    pub fka_ms: u32,
}

/// An advertisement (op 1 sub 2): PRI, MAC, NAME, FAB and FKA descriptors with exactly
/// the sizes libfcoe checks; flags FPMA | Available, plus Solicited on the unicast
/// answer to a solicitation.
pub fn advertisement(id: &FcfIdentity, solicited: bool) -> Vec<u8> {
    let mut d = Vec::with_capacity(48);
    d.extend_from_slice(&[DT_PRI, 1, 0, id.priority]);
    put_mac(&mut d, id.mac);
    put_name(&mut d, id.switch_name);
    d.extend_from_slice(&[DT_FAB, 4, 0, 0, 0]); // VF_ID 0, reserved
    put24(&mut d, id.fc_map);
    d.extend_from_slice(&id.fabric_name.to_be_bytes());
    d.extend_from_slice(&[DT_FKA, 2, 0, 0]);
    d.extend_from_slice(&id.fka_ms.to_be_bytes());
    let flags = FL_FPMA | FL_AVAIL | if solicited { FL_SOL } else { 0 };
    frame(OP_DISC, SC_ADV, flags, &d)
}

/// A login reply (op 2 sub 2): the encapsulated ELS reply first, then, for an accept,
/// the MAC descriptor with the granted fabric-provided MAC (libfcoe drops an accept
/// without one).
pub fn login_reply(dtype: u8, fc: &[u8], granted: Option<Mac>) -> Vec<u8> {
    let mut d = Vec::with_capacity(4 + fc.len() + 8);
    let len = 4 + fc.len();
    let padded = len.div_ceil(4) * 4;
    d.extend_from_slice(&[dtype, u8::try_from(padded / 4).unwrap_or(u8::MAX), 0, 0]);
    d.extend_from_slice(fc);
    d.resize(padded, 0);
    if let Some(mac) = granted {
        put_mac(&mut d, mac);
    }
    frame(OP_LS, SC_REP, FL_FPMA, &d)
}

/// Clear Virtual Links (op 3 sub 2) for one VN_Port: the FCF's MAC and switch name,
/// and the port's VN_ID (FPMA, N_Port ID, WWPN). libfcoe resets exactly that port.
pub fn clear_virtual_link(id: &FcfIdentity, port_mac: Mac, port_id: u32, wwpn: u64) -> Vec<u8> {
    let mut d = Vec::with_capacity(40);
    put_mac(&mut d, id.mac);
    put_name(&mut d, id.switch_name);
    d.extend_from_slice(&[DT_VN_ID, 5]);
    d.extend_from_slice(&port_mac.0);
    d.push(0);
    put24(&mut d, port_id);
    d.extend_from_slice(&wwpn.to_be_bytes());
    frame(OP_CTRL, SC_CLR_VLINK, FL_FPMA, &d)
}

/// The FKA period an advertisement carries, for tests and logs.
pub fn fka_period(fip: &[u8]) -> Option<u32> {
    let list = fip.get(HLEN..)?;
    let mut at = 0;
    while at + 2 <= list.len() {
        let dlen = usize::from(list[at + 1]) * 4;
        if dlen == 0 {
            return None;
        }
        if list[at] == DT_FKA && dlen == 8 {
            return list.get(at + 4..at + 8).map(|w| be32(w, 0));
        }
        at += dlen;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> FcfIdentity {
        FcfIdentity {
            mac: Mac([0x02, 0xfc, 0xf0, 0, 0, 1]),
            switch_name: 0x2000_02fc_f000_0001,
            fabric_name: 0x1000_02fc_f000_0001,
            fc_map: 0x0efc00,
            priority: 128,
            fka_ms: 8000,
        }
    }

    #[test]
    fn advertisement_bytes_follow_fc_fip_h() {
        let a = advertisement(&id(), true);
        #[rustfmt::skip]
        let want = [
            // fip_header: ver 1, op 1 (DISC), subcode 2 (ADV), 12 words, FPMA|AVAIL|SOL
            0x10, 0x00, 0x00, 0x01, 0x00, 0x02, 0x00, 0x0c, 0x80, 0x06,
            // fip_pri_desc (4 bytes)
            0x01, 0x01, 0x00, 0x80,
            // fip_mac_desc (8)
            0x02, 0x02, 0x02, 0xfc, 0xf0, 0x00, 0x00, 0x01,
            // fip_wwn_desc (12): switch name
            0x04, 0x03, 0x00, 0x00, 0x20, 0x00, 0x02, 0xfc, 0xf0, 0x00, 0x00, 0x01,
            // fip_fab_desc (16): VF_ID 0, FC-MAP 0efc00, fabric name
            0x05, 0x04, 0x00, 0x00, 0x00, 0x0e, 0xfc, 0x00,
            0x10, 0x00, 0x02, 0xfc, 0xf0, 0x00, 0x00, 0x01,
            // fip_fka_desc (8): 8000 ms
            0x0c, 0x02, 0x00, 0x00, 0x00, 0x00, 0x1f, 0x40,
        ];
        assert_eq!(a, want);
        assert_eq!(fka_period(&a), Some(8000));
        let unsolicited = advertisement(&id(), false);
        assert_eq!(be16(&unsolicited, 8), FL_FPMA | FL_AVAIL);
    }

    #[test]
    fn solicitation_from_libfcoe_parses() {
        // What fcoe_ctlr_solicit sends: MAC, NAME (node name), FCOE_SIZE.
        #[rustfmt::skip]
        let sol = [
            0x10, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x06, 0x80, 0x00,
            0x02, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x0b,
            0x04, 0x03, 0x00, 0x00, 0x10, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x0b,
            0x06, 0x01, 0x08, 0x7e,
        ];
        let f = Fip::parse(&sol).unwrap();
        assert_eq!((f.op, f.subcode, f.flags), (OP_DISC, SC_SOL, FL_FPMA));
        assert_eq!(f.mac(), Some(Mac([2, 0, 0, 0, 0, 0x0b])));
        assert_eq!(f.descs[1], Desc::Name(0x1000_0200_0000_000b));
        assert_eq!(f.descs[2], Desc::FcoeSize(2174));
    }

    #[test]
    fn login_reply_puts_the_els_first_then_the_granted_mac() {
        let fc = [0xab; 24 + 116];
        let r = login_reply(DT_FDISC, &fc, Some(Mac::fpma(0x0efc00, 0x010002)));
        assert_eq!(&r[..10], &[0x10, 0, 0, 2, 0, 2, 0, 38, 0x80, 0]);
        // fip_encaps: type 8, 36 words (4 + 140 bytes), 2 reserved bytes, then the frame.
        assert_eq!(&r[10..14], &[DT_FDISC, 36, 0, 0]);
        assert_eq!(&r[14..154], &fc[..]);
        assert_eq!(&r[154..], &[DT_MAC, 2, 0x0e, 0xfc, 0x00, 0x01, 0x00, 0x02]);
        let back = Fip::parse(&r).unwrap();
        assert_eq!(back.els(), Some((DT_FDISC, &fc[..])));
        assert_eq!(back.mac(), Some(Mac::fpma(0x0efc00, 0x010002)));
        // A refusal carries no MAC descriptor.
        let rjt = login_reply(DT_FDISC, &[0; 32], None);
        assert_eq!(Fip::parse(&rjt).unwrap().mac(), None);
    }

    #[test]
    fn clear_virtual_link_names_one_vn_port() {
        let c = clear_virtual_link(
            &id(),
            Mac::fpma(0x0efc00, 0x010003),
            0x010003,
            0x5001_a4a0_0000_0a01,
        );
        assert_eq!(&c[..10], &[0x10, 0, 0, 3, 0, 2, 0, 10, 0x80, 0]);
        #[rustfmt::skip]
        let vn = [
            0x0b, 0x05, 0x0e, 0xfc, 0x00, 0x01, 0x00, 0x03, 0x00, 0x01, 0x00, 0x03,
            0x50, 0x01, 0xa4, 0xa0, 0x00, 0x00, 0x0a, 0x01,
        ];
        assert_eq!(&c[c.len() - 20..], &vn);
        let f = Fip::parse(&c).unwrap();
        assert_eq!(
            f.descs[2],
            Desc::VnId {
                mac: Mac::fpma(0x0efc00, 0x010003),
                port_id: 0x010003,
                wwpn: 0x5001_a4a0_0000_0a01
            }
        );
    }

    #[test]
    fn malformed_fip_is_refused_not_trusted() {
        assert!(Fip::parse(&[0x10, 0, 0, 1]).is_err());
        // Version 2.
        assert!(Fip::parse(&[0x20, 0, 0, 1, 0, 1, 0, 0, 0, 0]).is_err());
        // A list longer than the frame.
        assert!(Fip::parse(&[0x10, 0, 0, 1, 0, 1, 0, 9, 0, 0, 2, 2]).is_err());
        // A zero-length descriptor.
        assert_eq!(
            Fip::parse(&[0x10, 0, 0, 1, 0, 1, 0, 1, 0, 0, 2, 0, 0, 0]).unwrap_err(),
            Malformed("FIP descriptor of length 0")
        );
        // A MAC descriptor of the wrong size.
        assert!(Fip::parse(&[0x10, 0, 0, 1, 0, 1, 0, 1, 0, 0, 2, 1, 0, 0]).is_err());
    }
}

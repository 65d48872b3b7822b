//! FC-GS Common Transport for the directory (name) server at FFFFFC: the requests
//! libfc and tcm_fc send (registrations, GPN_FT discovery, single-port queries) and
//! the accepts and rejects the fabric answers with. Layouts: the kernel's
//! include/uapi/scsi/fc/fc_gs.h and include/scsi/fc/fc_ns.h.

use crate::wire::{be16, be24, be32, be64, put24, Malformed, Result};

/// struct fc_ct_hdr.
pub const CT_HLEN: usize = 16;
pub const FS_TYPE_DIR: u8 = 0xfc;
pub const FS_SUBTYPE_NS: u8 = 0x02;

pub const FS_RJT: u16 = 0x8001;
pub const FS_ACC: u16 = 0x8002;
/// Reject reasons and explanations (fc_gs.h).
pub const RJT_CMD: u8 = 0x01;
pub const RJT_UNABLE: u8 = 0x09;
pub const EXP_NONE: u8 = 0x00;
pub const EXP_PORT_ID: u8 = 0x01;
/// "FC-4 types not registered": GPN_FT's answer when nothing matches.
pub const EXP_FTNR: u8 = 0x07;

pub const GPN_ID: u16 = 0x0112;
pub const GNN_ID: u16 = 0x0113;
pub const GFF_ID: u16 = 0x011f;
pub const GPN_FT: u16 = 0x0172;
pub const RFT_ID: u16 = 0x0217;
pub const RNN_ID: u16 = 0x0213;
pub const RSPN_ID: u16 = 0x0218;
pub const RFF_ID: u16 = 0x021f;
pub const RSNN_NN: u16 = 0x0239;

/// FCP's FC-4 type.
pub const TYPE_FCP: u8 = 0x08;
/// fc_ns_gpn_ft_resp fp_flags: the last entry of a GPN_FT accept.
pub const FID_LAST: u8 = 0x80;

/// The CT header fields a reply echoes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CtHeader {
    pub fs_type: u8,
    pub fs_subtype: u8,
    pub cmd: u16,
}

/// A name server request, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NsRequest {
    RftId {
        port_id: u32,
        types: [u32; 8],
    },
    RffId {
        port_id: u32,
        features: u8,
        fc4_type: u8,
    },
    RnnId {
        port_id: u32,
        wwnn: u64,
    },
    RsnnNn {
        wwnn: u64,
        name: String,
    },
    RspnId {
        port_id: u32,
        name: String,
    },
    GpnFt {
        fc4_type: u8,
    },
    GpnId {
        port_id: u32,
    },
    GnnId {
        port_id: u32,
    },
    GffId {
        port_id: u32,
    },
    /// Any other command: answered with a CT reject, never silence.
    Other,
}

pub fn parse(payload: &[u8]) -> Result<(CtHeader, NsRequest)> {
    if payload.len() < CT_HLEN {
        return Err(Malformed("CT payload shorter than its header"));
    }
    if payload[0] != 1 {
        return Err(Malformed("CT revision is not 1"));
    }
    let hdr = CtHeader {
        fs_type: payload[4],
        fs_subtype: payload[5],
        cmd: be16(payload, 8),
    };
    let b = &payload[CT_HLEN..];
    let need = |n: usize| {
        if b.len() >= n {
            Ok(())
        } else {
            Err(Malformed("CT request body too short"))
        }
    };
    if hdr.fs_type != FS_TYPE_DIR || hdr.fs_subtype != FS_SUBTYPE_NS {
        return Ok((hdr, NsRequest::Other));
    }
    let req = match hdr.cmd {
        RFT_ID => {
            need(36)?;
            let mut types = [0u32; 8];
            for (i, t) in types.iter_mut().enumerate() {
                *t = be32(b, 4 + 4 * i);
            }
            NsRequest::RftId {
                port_id: be24(b, 1),
                types,
            }
        }
        RFF_ID => {
            need(8)?;
            NsRequest::RffId {
                port_id: be24(b, 1),
                features: b[6],
                fc4_type: b[7],
            }
        }
        RNN_ID => {
            need(12)?;
            NsRequest::RnnId {
                port_id: be24(b, 1),
                wwnn: be64(b, 4),
            }
        }
        RSNN_NN => {
            need(9)?;
            NsRequest::RsnnNn {
                wwnn: be64(b, 0),
                name: symbolic(&b[8..])?,
            }
        }
        RSPN_ID => {
            need(5)?;
            NsRequest::RspnId {
                port_id: be24(b, 1),
                name: symbolic(&b[4..])?,
            }
        }
        GPN_FT => {
            need(4)?;
            NsRequest::GpnFt { fc4_type: b[3] }
        }
        GPN_ID | GNN_ID | GFF_ID => {
            need(4)?;
            let port_id = be24(b, 1);
            match hdr.cmd {
                GPN_ID => NsRequest::GpnId { port_id },
                GNN_ID => NsRequest::GnnId { port_id },
                _ => NsRequest::GffId { port_id },
            }
        }
        _ => NsRequest::Other,
    };
    Ok((hdr, req))
}

/// A symbolic name: a length byte, then at most 255 bytes (shown lossily: it is
/// only ever printed).
fn symbolic(b: &[u8]) -> Result<String> {
    let len = usize::from(b[0]);
    let name = b
        .get(1..1 + len)
        .ok_or(Malformed("symbolic name longer than the request"))?;
    let name = name.split(|&c| c == 0).next().unwrap_or(&[]);
    Ok(String::from_utf8_lossy(name).into_owned())
}

fn header(req: &CtHeader, cmd: u16, reason: u8, explanation: u8) -> Vec<u8> {
    let mut h = Vec::with_capacity(CT_HLEN);
    h.extend_from_slice(&[1, 0, 0, 0, req.fs_type, req.fs_subtype, 0, 0]);
    h.extend_from_slice(&cmd.to_be_bytes());
    h.extend_from_slice(&[0, 0, 0, reason, explanation, 0]);
    h
}

pub fn accept(req: &CtHeader, body: &[u8]) -> Vec<u8> {
    let mut p = header(req, FS_ACC, 0, 0);
    p.extend_from_slice(body);
    p
}

pub fn reject(req: &CtHeader, reason: u8, explanation: u8) -> Vec<u8> {
    header(req, FS_RJT, reason, explanation)
}

/// The body of a GPN_FT accept: one struct fc_gpn_ft_resp per port, the last flagged.
pub fn gpn_ft_body(ports: &[(u32, u64)]) -> Vec<u8> {
    let mut b = Vec::with_capacity(16 * ports.len());
    for (i, (port_id, wwpn)) in ports.iter().enumerate() {
        b.push(if i + 1 == ports.len() { FID_LAST } else { 0 });
        put24(&mut b, *port_id);
        b.extend_from_slice(&[0; 4]);
        b.extend_from_slice(&wwpn.to_be_bytes());
    }
    b
}

/// The body of a GFF_ID accept: 4 feature bits for each of the 256 FC-4 types (128
/// bytes, struct fc_ns_ff); type T sits in word T/8 at bit (T%8)*4.
pub fn gff_id_body(features: &[(u8, u8)]) -> Vec<u8> {
    let mut words = [0u32; 32];
    for &(fc4_type, feat) in features {
        let t = usize::from(fc4_type);
        words[t / 8] |= u32::from(feat & 0x0f) << ((t % 8) * 4);
    }
    words.iter().flat_map(|w| w.to_be_bytes()).collect()
}

/// Is FC-4 type T set in an RFT_ID bitmap (struct fc_ns_fts: bit T%32 of word T/32)?
pub fn has_type(types: &[u32; 8], fc4_type: u8) -> bool {
    let t = usize::from(fc4_type);
    types[t / 32] & (1 << (t % 32)) != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(cmd: u16, body: &[u8]) -> Vec<u8> {
        let mut p = vec![1, 0, 0, 0, 0xfc, 0x02, 0, 0];
        p.extend_from_slice(&cmd.to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        p.extend_from_slice(body);
        p
    }

    #[test]
    fn rft_id_as_libfc_registers_fcp() {
        // fc_ns_rft_id: fc_ns_fid (flags, 3-byte ID), then 8 big-endian words; FCP
        // (type 8) is bit 8 of word 0.
        let mut body = vec![0, 0x01, 0x00, 0x02];
        body.extend_from_slice(&[0x00, 0x00, 0x01, 0x00]);
        body.extend_from_slice(&[0; 28]);
        let (h, r) = parse(&request(RFT_ID, &body)).unwrap();
        assert_eq!(h.cmd, RFT_ID);
        let NsRequest::RftId { port_id, types } = r else {
            panic!("{r:?}")
        };
        assert_eq!(port_id, 0x010002);
        assert!(has_type(&types, TYPE_FCP));
        assert!(!has_type(&types, 0x05));
    }

    #[test]
    fn rff_id_rspn_rsnn_rnn_decode() {
        let (_, r) = parse(&request(RFF_ID, &[0, 1, 0, 3, 0, 0, 0x03, 0x08])).unwrap();
        assert_eq!(
            r,
            NsRequest::RffId {
                port_id: 0x010003,
                features: 3,
                fc4_type: 8
            }
        );
        let mut body = vec![0, 1, 0, 3, 7];
        body.extend_from_slice(b"hbad:db\0\0\0\0");
        let (_, r) = parse(&request(RSPN_ID, &body)).unwrap();
        assert_eq!(
            r,
            NsRequest::RspnId {
                port_id: 0x010003,
                name: "hbad:db".into()
            }
        );
        let mut body = 0x1000_0200_0000_000bu64.to_be_bytes().to_vec();
        body.extend_from_slice(&[4, b'n', b'o', b'd', b'e']);
        let (_, r) = parse(&request(RSNN_NN, &body)).unwrap();
        assert_eq!(
            r,
            NsRequest::RsnnNn {
                wwnn: 0x1000_0200_0000_000b,
                name: "node".into()
            }
        );
        let mut body = vec![0, 1, 0, 3];
        body.extend_from_slice(&7u64.to_be_bytes());
        assert_eq!(
            parse(&request(RNN_ID, &body)).unwrap().1,
            NsRequest::RnnId {
                port_id: 0x010003,
                wwnn: 7
            }
        );
    }

    #[test]
    fn queries_decode_and_unknown_commands_are_other() {
        assert_eq!(
            parse(&request(GPN_FT, &[0, 0, 0, 8])).unwrap().1,
            NsRequest::GpnFt { fc4_type: 8 }
        );
        assert_eq!(
            parse(&request(GPN_ID, &[0, 1, 0, 9])).unwrap().1,
            NsRequest::GpnId { port_id: 0x010009 }
        );
        assert_eq!(
            parse(&request(GNN_ID, &[0, 1, 0, 9])).unwrap().1,
            NsRequest::GnnId { port_id: 0x010009 }
        );
        assert_eq!(
            parse(&request(GFF_ID, &[0, 1, 0, 9])).unwrap().1,
            NsRequest::GffId { port_id: 0x010009 }
        );
        assert_eq!(parse(&request(0x0101, &[])).unwrap().1, NsRequest::Other);
    }

    #[test]
    fn truncated_requests_are_malformed() {
        assert!(parse(&request(RFT_ID, &[0; 35])).is_err());
        assert!(parse(&request(RSPN_ID, &[0, 1, 0, 3, 200, b'x'])).is_err());
        assert!(parse(&[1; 15]).is_err());
        let mut rev2 = request(GPN_FT, &[0, 0, 0, 8]);
        rev2[0] = 2;
        assert!(parse(&rev2).is_err());
    }

    #[test]
    fn replies_follow_fc_ct_hdr() {
        let h = CtHeader {
            fs_type: 0xfc,
            fs_subtype: 2,
            cmd: GPN_FT,
        };
        assert_eq!(
            reject(&h, RJT_UNABLE, EXP_FTNR),
            [1, 0, 0, 0, 0xfc, 2, 0, 0, 0x80, 0x01, 0, 0, 0, 9, 7, 0]
        );
        let acc = accept(
            &h,
            &gpn_ft_body(&[(0x010001, 0x2000_0000_0000_000a), (0x010002, 0x5001)]),
        );
        assert_eq!(be16(&acc, 8), FS_ACC);
        #[rustfmt::skip]
        let body = [
            0x00, 0x01, 0x00, 0x01, 0, 0, 0, 0, 0x20, 0, 0, 0, 0, 0, 0, 0x0a,
            0x80, 0x01, 0x00, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x50, 0x01,
        ];
        assert_eq!(&acc[16..], &body);
    }

    #[test]
    fn gff_id_puts_fcp_features_in_word_one() {
        let b = gff_id_body(&[(TYPE_FCP, 0x3)]);
        assert_eq!(b.len(), 128);
        assert_eq!(b[7], 0x03);
        assert!(b.iter().enumerate().all(|(i, &x)| i == 7 || x == 0));
    }
}

//! Extended Link Services (FC-LS) the fabric answers or sends: FLOGI/FDISC/PLOGI
//! accepts with service parameters, LS_ACC, LS_RJT, LOGO, SCR and RSCN. Layouts: the
//! kernel's include/uapi/scsi/fc/fc_els.h.

use crate::wire::{be24, be64, put24, Malformed, Result, FC_MAX_PAYLOAD};

pub const LS_RJT: u8 = 0x01;
pub const LS_ACC: u8 = 0x02;
pub const PLOGI: u8 = 0x03;
pub const FLOGI: u8 = 0x04;
pub const LOGO: u8 = 0x05;
pub const FDISC: u8 = 0x51;
pub const RSCN: u8 = 0x61;
pub const SCR: u8 = 0x62;

/// LS_RJT reasons and explanations (fc_els.h enum fc_els_rjt_reason / _explan).
pub const RJT_LOGIC: u8 = 0x03;
pub const RJT_UNSUP: u8 = 0x0b;
pub const EXPL_NONE: u8 = 0x00;
/// FC-LS "Invalid Port_Name": the fabric refuses this WWPN.
pub const EXPL_INVALID_PORT_NAME: u8 = 0x0d;

/// Common service parameter features (fc_els.h FC_SP_FT_*).
pub const SP_FT_NPIV_ACC: u16 = 0x2000;
pub const SP_FT_FPORT: u16 = 0x1000;

/// struct fc_els_flogi: command word, common service parameters (16), port name,
/// node name, four class service parameters (16 each), vendor version (16).
pub const FLOGI_LEN: usize = 116;

/// The names a FLOGI, FDISC or PLOGI carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Names {
    pub wwpn: u64,
    pub wwnn: u64,
}

pub fn login_names(payload: &[u8]) -> Result<Names> {
    if payload.len() < 36 {
        return Err(Malformed("login payload shorter than its names"));
    }
    Ok(Names {
        wwpn: be64(payload, 20),
        wwnn: be64(payload, 28),
    })
}

/// Service parameters in an accept. For the fabric's FLOGI/FDISC accept: F_Port and
/// NPIV (libfc refuses vport FDISC without FC_SP_FT_NPIV_ACC), receive size 2112,
/// R_A_TOV 10 s and E_D_TOV 2 s; its node name is the fabric name the host reports.
/// For a PLOGI accept (name server): the same sizes, no F_Port bit.
pub fn service_parameters(fabric_login: bool, names: Names) -> Vec<u8> {
    let mut p = Vec::with_capacity(FLOGI_LEN);
    p.extend_from_slice(&[LS_ACC, 0, 0, 0]);
    // fc_els_csp: versions 0x20/0x20, BB credit 10.
    p.extend_from_slice(&[0x20, 0x20, 0x00, 0x0a]);
    let features = if fabric_login {
        SP_FT_FPORT | SP_FT_NPIV_ACC
    } else {
        0
    };
    p.extend_from_slice(&features.to_be_bytes());
    let rdfs = u16::try_from(FC_MAX_PAYLOAD).unwrap_or(2112);
    p.extend_from_slice(&rdfs.to_be_bytes());
    if fabric_login {
        p.extend_from_slice(&10_000u32.to_be_bytes()); // R_A_TOV, ms
    } else {
        p.extend_from_slice(&[0x00, 0xff, 0x00, 0x1f]); // total sequences, rel. offset
    }
    p.extend_from_slice(&2_000u32.to_be_bytes()); // E_D_TOV, ms
    p.extend_from_slice(&names.wwpn.to_be_bytes());
    p.extend_from_slice(&names.wwnn.to_be_bytes());
    for class in 1..=4 {
        if class == 3 {
            // fc_els_cssp: valid + sequential delivery, receive size, 255 concurrent
            // sequences, 1 open sequence per exchange.
            p.extend_from_slice(&[0x88, 0x00, 0, 0, 0, 0]);
            p.extend_from_slice(&rdfs.to_be_bytes());
            p.extend_from_slice(&[0x00, 0xff, 0, 0, 0, 1, 0, 0]);
        } else {
            p.extend_from_slice(&[0u8; 16]);
        }
    }
    p.extend_from_slice(&[0u8; 16]);
    debug_assert_eq!(p.len(), FLOGI_LEN);
    p
}

pub fn ls_acc() -> Vec<u8> {
    vec![LS_ACC, 0, 0, 0]
}

/// struct fc_els_ls_rjt: command, 3 reserved, reserved, reason, explanation, vendor.
pub fn ls_rjt(reason: u8, explanation: u8) -> Vec<u8> {
    vec![LS_RJT, 0, 0, 0, 0, reason, explanation, 0]
}

/// struct fc_els_logo: command, reserved, the N_Port ID and port name logging out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Logo {
    pub port_id: u32,
    pub wwpn: u64,
}

pub fn parse_logo(payload: &[u8]) -> Result<Logo> {
    if payload.len() < 16 {
        return Err(Malformed("LOGO payload shorter than 16 bytes"));
    }
    Ok(Logo {
        port_id: be24(payload, 5),
        wwpn: be64(payload, 8),
    })
}

/// An RSCN in fabric address format: every receiver rediscovers the whole fabric
/// (libfc runs GPN_FT again), which is what a zone change needs.
pub fn rscn_fabric() -> Vec<u8> {
    let mut p = Vec::with_capacity(8);
    // struct fc_els_rscn: command, page length 4, payload length 8.
    p.extend_from_slice(&[RSCN, 4, 0, 8]);
    // struct fc_els_rscn_page: address format 3 (fabric), address 0.
    p.push(0x03);
    put24(&mut p, 0);
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{be16, be32};

    #[test]
    fn fabric_accept_says_fport_and_npiv() {
        let p = service_parameters(
            true,
            Names {
                wwpn: 0x2000_0000_0000_0001,
                wwnn: 0x1000_0000_0000_00fa,
            },
        );
        assert_eq!(p.len(), FLOGI_LEN);
        assert_eq!(p[0], LS_ACC);
        // fc_els_csp at 4: sp_features at 8, sp_bb_data at 10, R_A_TOV at 12, E_D_TOV at 16.
        assert_eq!(be16(&p, 8), 0x3000);
        assert_eq!(be16(&p, 10) & 0x0fff, 2112);
        assert_eq!(be32(&p, 12), 10_000);
        assert_eq!(be32(&p, 16), 2_000);
        assert_eq!(
            login_names(&p).unwrap(),
            Names {
                wwpn: 0x2000_0000_0000_0001,
                wwnn: 0x1000_0000_0000_00fa
            }
        );
        // Class 3 (fl_cssp[2]) at 36 + 32: valid, receive size 2112.
        assert_eq!(be16(&p, 68), 0x8800);
        assert_eq!(be16(&p, 74), 2112);
    }

    #[test]
    fn plogi_accept_is_no_fport() {
        let p = service_parameters(false, Names { wwpn: 1, wwnn: 2 });
        assert_eq!(be16(&p, 8) & SP_FT_FPORT, 0);
        assert_eq!(be16(&p, 12), 0x00ff); // sp_tot_seq
    }

    #[test]
    fn rjt_and_acc_layouts() {
        assert_eq!(ls_acc(), [2, 0, 0, 0]);
        assert_eq!(
            ls_rjt(RJT_LOGIC, EXPL_INVALID_PORT_NAME),
            [1, 0, 0, 0, 0, 3, 0x0d, 0]
        );
    }

    #[test]
    fn logo_parses_id_and_name() {
        let logo = [
            LOGO, 0, 0, 0, 0, 0x01, 0x00, 0x02, 0x50, 0x01, 0xa4, 0xa0, 0, 0, 0x0a, 0x01,
        ];
        assert_eq!(
            parse_logo(&logo).unwrap(),
            Logo {
                port_id: 0x010002,
                wwpn: 0x5001_a4a0_0000_0a01
            }
        );
        assert!(parse_logo(&logo[..15]).is_err());
    }

    #[test]
    fn rscn_is_one_fabric_page() {
        assert_eq!(rscn_fabric(), [0x61, 4, 0, 8, 3, 0, 0, 0]);
    }

    #[test]
    fn short_login_is_malformed() {
        assert!(login_names(&[FDISC; 35]).is_err());
    }
}

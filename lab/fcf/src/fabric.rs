//! The fabric itself, as a pure state machine: frames in (with the link they came
//! from), frames out (with the link to send them on). It owns the logins (N_Port IDs
//! and fabric-provided MACs), the name server's registrations, the zones and the
//! state-change registrations; I/O and timers live in main.rs.

use std::collections::{BTreeMap, BTreeSet};

use crate::ct::{self, NsRequest};
use crate::els::{self, Names};
use crate::fip::{self, FcfIdentity, Fip};
use crate::wire::{
    ethernet, fc_frame, fcoe_payload, Ethernet, FcHeader, Fcoe, Mac, ETH_P_FCOE, ETH_P_FIP,
};
use crate::wire::{
    F_CTL_REQ, R_CTL_CT_REP, R_CTL_CT_REQ, R_CTL_ELS_REP, R_CTL_ELS_REQ, TYPE_CT, TYPE_ELS,
};

/// Well-known addresses (FC-FS).
pub const FID_FLOGI: u32 = 0xff_fffe;
pub const FID_CTRL: u32 = 0xff_fffd;
pub const FID_DIR_SERV: u32 = 0xff_fffc;
const FID_WELL_KNOWN_MIN: u32 = 0xff_fff0;

/// A frame to send: the index of the link (the veth end) and the Ethernet frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Out {
    pub link: usize,
    pub frame: Vec<u8>,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub identity: FcfIdentity,
    /// The domain of the N_Port IDs this fabric hands out.
    pub domain: u8,
}

/// One logged-in N_Port: the physical port of an ENode (FLOGI) or one of its NPIV
/// ports (FDISC), with what it registered at the name server.
#[derive(Debug, Clone)]
pub struct Login {
    pub port_id: u32,
    pub link: usize,
    pub enode: Mac,
    pub names: Names,
    pub npiv: bool,
    pub fc4_types: [u32; 8],
    pub fc4_features: u8,
    pub symbolic_port: String,
    pub symbolic_node: String,
    pub scr: bool,
}

/// A control request (see control.rs for the text form).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Zone {
        name: String,
        members: BTreeSet<u64>,
    },
    Unzone {
        name: String,
    },
    Logout {
        wwpn: u64,
    },
    LinkDown,
    LinkUp,
    Refuse {
        wwpn: u64,
    },
    Accept {
        wwpn: u64,
    },
    Status,
}

#[derive(Debug)]
pub struct Fabric {
    config: Config,
    links: Vec<String>,
    logins: BTreeMap<u32, Login>,
    zones: BTreeMap<String, BTreeSet<u64>>,
    refused: BTreeSet<u64>,
    up: bool,
    next_port: u32,
    next_ox_id: u16,
    /// What happened, for the log (main.rs prints and clears it).
    pub events: Vec<String>,
}

impl Fabric {
    pub fn new(config: Config, links: Vec<String>) -> Self {
        Fabric {
            config,
            links,
            logins: BTreeMap::new(),
            zones: BTreeMap::new(),
            refused: BTreeSet::new(),
            up: true,
            next_port: 1,
            next_ox_id: 1,
            events: Vec::new(),
        }
    }

    pub fn is_up(&self) -> bool {
        self.up
    }

    pub fn logins(&self) -> impl Iterator<Item = &Login> {
        self.logins.values()
    }

    fn id(&self) -> &FcfIdentity {
        &self.config.identity
    }

    fn link_name(&self, link: usize) -> &str {
        self.links.get(link).map_or("?", String::as_str)
    }

    fn note(&mut self, text: String) {
        self.events.push(text);
    }

    /// The unsolicited advertisements multicast on every link each FKA period;
    /// without them an ENode declares the FCF lost after 2.5 periods.
    pub fn advertisements(&self) -> Vec<Out> {
        if !self.up {
            return Vec::new();
        }
        let adv = fip::advertisement(self.id(), false);
        (0..self.links.len())
            .map(|link| Out {
                link,
                frame: ethernet(Mac::ALL_ENODES, self.id().mac, ETH_P_FIP, &adv),
            })
            .collect()
    }

    /// One frame received on a link.
    pub fn receive(&mut self, link: usize, frame: &[u8]) -> Vec<Out> {
        if !self.up {
            return Vec::new();
        }
        let Ok(eth) = Ethernet::parse(frame) else {
            return Vec::new();
        };
        let result = match eth.ethertype {
            ETH_P_FIP => self.fip(link, &eth),
            ETH_P_FCOE => self.fcoe(link, frame, &eth),
            _ => Ok(Vec::new()),
        };
        result.unwrap_or_else(|e| {
            let name = self.link_name(link).to_owned();
            self.note(format!(
                "dropped a malformed frame on {name} from {}: {e}",
                eth.src
            ));
            Vec::new()
        })
    }

    // --- FIP ---------------------------------------------------------------------------

    fn fip(&mut self, link: usize, eth: &Ethernet<'_>) -> crate::wire::Result<Vec<Out>> {
        let f = Fip::parse(eth.payload)?;
        let enode = eth.src;
        let send = |payload: Vec<u8>| Out {
            link,
            frame: ethernet(enode, self.id().mac, ETH_P_FIP, &payload),
        };
        match (f.op, f.subcode) {
            (fip::OP_DISC, fip::SC_SOL) => Ok(vec![send(fip::advertisement(self.id(), true))]),
            (fip::OP_LS, fip::SC_REQ) => {
                let Some((dtype, frame)) = f.els() else {
                    return Err(crate::wire::Malformed(
                        "FIP login request without an ELS descriptor",
                    ));
                };
                let hdr = FcHeader::parse(frame)?;
                let payload = &frame[crate::wire::FC_HLEN..];
                self.fip_login(link, enode, dtype, &hdr, payload)
            }
            // Keep-alives (ENode and VN_Port) need no answer; anything else is not ours.
            _ => Ok(Vec::new()),
        }
    }

    fn fip_login(
        &mut self,
        link: usize,
        enode: Mac,
        dtype: u8,
        hdr: &FcHeader,
        payload: &[u8],
    ) -> crate::wire::Result<Vec<Out>> {
        let cmd = payload.first().copied().unwrap_or(0);
        let mut out = Vec::new();
        let reply = |fabric: &Fabric, payload: Vec<u8>, d_id: u32, granted: Option<Mac>| {
            let mut h = hdr.reply(R_CTL_ELS_REP);
            h.d_id = d_id;
            h.s_id = FID_FLOGI;
            let fc = fc_frame(&h, &payload);
            Out {
                link,
                frame: ethernet(
                    enode,
                    fabric.id().mac,
                    ETH_P_FIP,
                    &fip::login_reply(dtype, &fc, granted),
                ),
            }
        };
        match (dtype, cmd) {
            (fip::DT_FLOGI, els::FLOGI) | (fip::DT_FDISC, els::FDISC) => {
                let names = els::login_names(payload)?;
                let npiv = dtype == fip::DT_FDISC;
                let what = if npiv { "FDISC" } else { "FLOGI" };
                let link_name = self.link_name(link).to_owned();
                if self.refused.contains(&names.wwpn) {
                    self.note(format!(
                        "{what} of {} on {link_name} refused (LS_RJT)",
                        wwn(names.wwpn)
                    ));
                    let rjt = els::ls_rjt(els::RJT_LOGIC, els::EXPL_INVALID_PORT_NAME);
                    out.push(reply(self, rjt, 0, None));
                    return Ok(out);
                }
                // A new FLOGI from an ENode means it starts over: its earlier logins
                // (physical and NPIV) are gone. A repeated FDISC of a WWPN from the same
                // ENode replaces that port's login (after a CVL it logs in again).
                let stale: Vec<u32> = self
                    .logins
                    .values()
                    .filter(|l| {
                        l.link == link && l.enode == enode && (!npiv || l.names.wwpn == names.wwpn)
                    })
                    .map(|l| l.port_id)
                    .collect();
                for port_id in stale {
                    out.extend(self.remove_login(port_id, "implicit logout"));
                }
                if let Some(other) = self.logins.values().find(|l| l.names.wwpn == names.wwpn) {
                    let other_link = self.link_name(other.link).to_owned();
                    self.note(format!(
                        "{what} of {} on {link_name} refused: already logged in on {other_link}",
                        wwn(names.wwpn)
                    ));
                    out.push(reply(
                        self,
                        els::ls_rjt(els::RJT_LOGIC, els::EXPL_INVALID_PORT_NAME),
                        0,
                        None,
                    ));
                    return Ok(out);
                }
                let port_id = self.allocate();
                let granted = Mac::fpma(self.id().fc_map, port_id);
                self.logins.insert(
                    port_id,
                    Login {
                        port_id,
                        link,
                        enode,
                        names,
                        npiv,
                        fc4_types: [0; 8],
                        fc4_features: 0,
                        symbolic_port: String::new(),
                        symbolic_node: String::new(),
                        scr: false,
                    },
                );
                self.note(format!(
                    "{what} of {} (node {}) on {link_name}: N_Port ID {port_id:06x}, MAC {granted}",
                    wwn(names.wwpn),
                    wwn(names.wwnn)
                ));
                let acc = els::service_parameters(
                    true,
                    Names {
                        wwpn: self.id().switch_name,
                        wwnn: self.id().fabric_name,
                    },
                );
                out.push(reply(self, acc, port_id, Some(granted)));
                out.extend(self.notify_peers_of(port_id));
                Ok(out)
            }
            (fip::DT_LOGO, els::LOGO) => {
                let port_id = if hdr.s_id != 0 {
                    hdr.s_id
                } else {
                    els::parse_logo(payload)?.port_id
                };
                let known = self
                    .logins
                    .get(&port_id)
                    .is_some_and(|l| l.link == link && l.enode == enode);
                let granted = Mac::fpma(self.id().fc_map, port_id);
                if known {
                    out.extend(self.remove_login(port_id, "LOGO"));
                }
                let mut acc = reply(self, els::ls_acc(), port_id, Some(granted));
                // The LOGO accept comes from the fabric to the port that logged out.
                acc.frame = {
                    let mut h = hdr.reply(R_CTL_ELS_REP);
                    h.d_id = port_id;
                    h.s_id = FID_FLOGI;
                    let fc = fc_frame(&h, &els::ls_acc());
                    ethernet(
                        enode,
                        self.id().mac,
                        ETH_P_FIP,
                        &fip::login_reply(dtype, &fc, Some(granted)),
                    )
                };
                out.push(acc);
                Ok(out)
            }
            _ => {
                let link_name = self.link_name(link).to_owned();
                self.note(format!(
                    "FIP login request type {dtype} ELS {cmd:#04x} on {link_name}: not handled"
                ));
                Ok(out)
            }
        }
    }

    fn allocate(&mut self) -> u32 {
        // IDs are not reused soon: a late frame from a port's old ID must not reach
        // the port that has it next.
        loop {
            let n = self.next_port;
            self.next_port = if n >= 0xfeff { 1 } else { n + 1 };
            let id = (u32::from(self.config.domain) << 16) | n;
            if !self.logins.contains_key(&id) {
                return id;
            }
        }
    }

    fn remove_login(&mut self, port_id: u32, why: &str) -> Vec<Out> {
        let Some(gone) = self.logins.get(&port_id).cloned() else {
            return Vec::new();
        };
        let out = self.notify_peers_of(port_id);
        self.logins.remove(&port_id);
        let link_name = self.link_name(gone.link).to_owned();
        self.note(format!(
            "{why}: {} (N_Port ID {port_id:06x}) on {link_name}",
            wwn(gone.names.wwpn)
        ));
        out
    }

    // --- FCoE: forwarding and the fabric's services ---------------------------------

    fn fcoe(
        &mut self,
        link: usize,
        frame: &[u8],
        eth: &Ethernet<'_>,
    ) -> crate::wire::Result<Vec<Out>> {
        let f = Fcoe::parse(eth.payload)?;
        let hdr = FcHeader::parse(f.fc)?;
        // Only logged-in ports speak: after a CVL a port still sends from its old ID,
        // and a late reply could match a new login's reused OX_ID.
        match self.logins.get(&hdr.s_id) {
            Some(l) if l.link == link => {}
            _ => return Ok(Vec::new()),
        }
        let payload = &f.fc[crate::wire::FC_HLEN..];
        match hdr.d_id {
            FID_DIR_SERV => Ok(self.name_server(link, &hdr, payload)),
            FID_CTRL => Ok(self.controller(link, &hdr, payload)),
            d if d >= FID_WELL_KNOWN_MIN => {
                // Management, time, alias servers: not here.
                if hdr.r_ctl == R_CTL_ELS_REQ {
                    Ok(vec![self.reply_els(
                        link,
                        &hdr,
                        els::ls_rjt(els::RJT_UNSUP, els::EXPL_NONE),
                    )])
                } else if hdr.r_ctl == R_CTL_CT_REQ {
                    let h = ct::CtHeader {
                        fs_type: payload.get(4).copied().unwrap_or(0),
                        fs_subtype: 0,
                        cmd: 0,
                    };
                    Ok(vec![self.reply_ct(
                        link,
                        &hdr,
                        ct::reject(&h, ct::RJT_CMD, ct::EXP_NONE),
                    )])
                } else {
                    Ok(Vec::new())
                }
            }
            d_id => Ok(self.forward(frame, &hdr, d_id)),
        }
    }

    /// Switches a frame by D_ID: the owner's link, source = the FCF, destination = the
    /// owner's fabric-provided MAC (libfcoe checks both). The FC frame and its CRC pass
    /// unchanged. Frames between ports that share no zone are dropped.
    fn forward(&mut self, frame: &[u8], hdr: &FcHeader, d_id: u32) -> Vec<Out> {
        let (Some(src), Some(dst)) = (self.logins.get(&hdr.s_id), self.logins.get(&d_id)) else {
            return Vec::new();
        };
        if !self.visible(src.names.wwpn, dst.names.wwpn) {
            return Vec::new();
        }
        let mut copy = frame.to_vec();
        copy[0..6].copy_from_slice(&Mac::fpma(self.id().fc_map, d_id).0);
        copy[6..12].copy_from_slice(&self.id().mac.0);
        vec![Out {
            link: dst.link,
            frame: copy,
        }]
    }

    fn send_fc(&self, link: usize, hdr: &FcHeader, payload: &[u8]) -> Out {
        let fc = fc_frame(hdr, payload);
        let dst = Mac::fpma(self.id().fc_map, hdr.d_id);
        Out {
            link,
            frame: ethernet(dst, self.id().mac, ETH_P_FCOE, &fcoe_payload(&fc)),
        }
    }

    fn reply_els(&self, link: usize, req: &FcHeader, payload: Vec<u8>) -> Out {
        self.send_fc(link, &req.reply(R_CTL_ELS_REP), &payload)
    }

    fn reply_ct(&self, link: usize, req: &FcHeader, payload: Vec<u8>) -> Out {
        self.send_fc(link, &req.reply(R_CTL_CT_REP), &payload)
    }

    fn name_server(&mut self, link: usize, hdr: &FcHeader, payload: &[u8]) -> Vec<Out> {
        if hdr.fc_type == TYPE_ELS && hdr.r_ctl == R_CTL_ELS_REQ {
            let reply = match payload.first().copied() {
                Some(els::PLOGI) => {
                    let switch = self.id().switch_name;
                    els::service_parameters(
                        false,
                        Names {
                            wwpn: switch,
                            wwnn: switch,
                        },
                    )
                }
                Some(els::LOGO) => els::ls_acc(),
                _ => els::ls_rjt(els::RJT_UNSUP, els::EXPL_NONE),
            };
            return vec![self.reply_els(link, hdr, reply)];
        }
        if hdr.fc_type != TYPE_CT || hdr.r_ctl != R_CTL_CT_REQ {
            return Vec::new();
        }
        let (ct_hdr, req) = match ct::parse(payload) {
            Ok(r) => r,
            Err(e) => {
                self.note(format!(
                    "name server: malformed request from {:06x}: {e}",
                    hdr.s_id
                ));
                return Vec::new();
            }
        };
        let mut notify = Vec::new();
        let reply = self.name_service(hdr.s_id, &ct_hdr, req, &mut notify);
        let mut out = vec![self.reply_ct(link, hdr, reply)];
        for port_id in notify {
            out.extend(self.notify_peers_of(port_id));
        }
        out
    }

    fn name_service(
        &mut self,
        from: u32,
        h: &ct::CtHeader,
        req: NsRequest,
        notify: &mut Vec<u32>,
    ) -> Vec<u8> {
        let unknown = || ct::reject(h, ct::RJT_UNABLE, ct::EXP_PORT_ID);
        // A port registers for itself only.
        let own = |port_id: u32| port_id == from;
        match req {
            NsRequest::RftId { port_id, types } if own(port_id) => {
                if let Some(l) = self.logins.get_mut(&port_id) {
                    let changed = l.fc4_types != types;
                    l.fc4_types = types;
                    // Peers discover by FC-4 type: tell them a port became visible.
                    if changed {
                        notify.push(port_id);
                    }
                }
                ct::accept(h, &[])
            }
            NsRequest::RffId {
                port_id,
                features,
                fc4_type,
            } if own(port_id) => {
                if let Some(l) = self.logins.get_mut(&port_id) {
                    if fc4_type == ct::TYPE_FCP {
                        l.fc4_features = features;
                    }
                }
                ct::accept(h, &[])
            }
            NsRequest::RnnId { port_id, .. } if own(port_id) => ct::accept(h, &[]),
            NsRequest::RspnId { port_id, name } if own(port_id) => {
                if let Some(l) = self.logins.get_mut(&port_id) {
                    l.symbolic_port = name;
                }
                ct::accept(h, &[])
            }
            NsRequest::RsnnNn { wwnn, name } => {
                if let Some(l) = self.logins.get_mut(&from).filter(|l| l.names.wwnn == wwnn) {
                    l.symbolic_node = name;
                }
                ct::accept(h, &[])
            }
            NsRequest::GpnFt { fc4_type } => {
                let Some(me) = self.logins.get(&from).map(|l| l.names.wwpn) else {
                    return unknown();
                };
                let ports: Vec<(u32, u64)> = self
                    .logins
                    .values()
                    .filter(|l| {
                        ct::has_type(&l.fc4_types, fc4_type) && self.visible(me, l.names.wwpn)
                    })
                    .map(|l| (l.port_id, l.names.wwpn))
                    .collect();
                if ports.is_empty() {
                    ct::reject(h, ct::RJT_UNABLE, ct::EXP_FTNR)
                } else {
                    ct::accept(h, &ct::gpn_ft_body(&ports))
                }
            }
            NsRequest::GpnId { port_id }
            | NsRequest::GnnId { port_id }
            | NsRequest::GffId { port_id } => {
                let me = self.logins.get(&from).map(|l| l.names.wwpn);
                let Some(l) = self
                    .logins
                    .get(&port_id)
                    .filter(|l| me.is_some_and(|m| self.visible(m, l.names.wwpn)))
                else {
                    return unknown();
                };
                let body = match req {
                    NsRequest::GpnId { .. } => l.names.wwpn.to_be_bytes().to_vec(),
                    NsRequest::GnnId { .. } => l.names.wwnn.to_be_bytes().to_vec(),
                    _ => ct::gff_id_body(&[(ct::TYPE_FCP, l.fc4_features)]),
                };
                ct::accept(h, &body)
            }
            NsRequest::RftId { .. }
            | NsRequest::RffId { .. }
            | NsRequest::RnnId { .. }
            | NsRequest::RspnId { .. } => ct::reject(h, ct::RJT_UNABLE, ct::EXP_PORT_ID),
            NsRequest::Other => ct::reject(h, ct::RJT_CMD, ct::EXP_NONE),
        }
    }

    fn controller(&mut self, link: usize, hdr: &FcHeader, payload: &[u8]) -> Vec<Out> {
        if hdr.fc_type != TYPE_ELS || hdr.r_ctl != R_CTL_ELS_REQ {
            return Vec::new(); // the ports' accepts of our RSCNs
        }
        let reply = match payload.first().copied() {
            Some(els::SCR) => {
                if let Some(l) = self.logins.get_mut(&hdr.s_id) {
                    l.scr = true;
                }
                els::ls_acc()
            }
            _ => els::ls_rjt(els::RJT_UNSUP, els::EXPL_NONE),
        };
        vec![self.reply_els(link, hdr, reply)]
    }

    // --- Zoning and state change notification ---------------------------------------

    /// Do two ports share a zone? A port always sees itself.
    fn visible(&self, a: u64, b: u64) -> bool {
        a == b
            || self
                .zones
                .values()
                .any(|z| z.contains(&a) && z.contains(&b))
    }

    fn rscn(&mut self, port_id: u32) -> Option<Out> {
        let link = self.logins.get(&port_id)?.link;
        let ox_id = self.next_ox_id;
        self.next_ox_id = self.next_ox_id.wrapping_add(1).max(1);
        let hdr = FcHeader {
            r_ctl: R_CTL_ELS_REQ,
            d_id: port_id,
            s_id: FID_CTRL,
            fc_type: TYPE_ELS,
            f_ctl: F_CTL_REQ,
            seq_id: 0,
            seq_cnt: 0,
            ox_id,
            rx_id: 0xffff,
        };
        Some(self.send_fc(link, &hdr, &els::rscn_fabric()))
    }

    /// RSCNs to the registered ports that share a zone with this one (it logged in,
    /// out, or registered an FC-4 type).
    fn notify_peers_of(&mut self, port_id: u32) -> Vec<Out> {
        let Some(wwpn) = self.logins.get(&port_id).map(|l| l.names.wwpn) else {
            return Vec::new();
        };
        let peers: Vec<u32> = self
            .logins
            .values()
            .filter(|l| l.scr && l.port_id != port_id && self.visible(wwpn, l.names.wwpn))
            .map(|l| l.port_id)
            .collect();
        self.send_rscns(peers)
    }

    fn send_rscns(&mut self, ports: Vec<u32>) -> Vec<Out> {
        if !ports.is_empty() {
            let list: Vec<String> = ports.iter().map(|p| format!("{p:06x}")).collect();
            self.note(format!("RSCN to {}", list.join(" ")));
        }
        ports.into_iter().filter_map(|p| self.rscn(p)).collect()
    }

    /// Which logged-in ports each logged-in port sees.
    fn views(&self) -> BTreeMap<u32, BTreeSet<u32>> {
        self.logins
            .values()
            .map(|a| {
                let seen = self
                    .logins
                    .values()
                    .filter(|b| self.visible(a.names.wwpn, b.names.wwpn))
                    .map(|b| b.port_id)
                    .collect();
                (a.port_id, seen)
            })
            .collect()
    }

    // --- Control ----------------------------------------------------------------------

    /// Carries out a control request: the text answer and the frames it causes.
    pub fn control(&mut self, cmd: Command) -> (String, Vec<Out>) {
        match cmd {
            Command::Zone { .. } | Command::Unzone { .. } => {
                let before = self.views();
                let what = match cmd {
                    Command::Zone { name, members } => {
                        let text = format!("zone {name}: {} members", members.len());
                        self.zones.insert(name, members);
                        text
                    }
                    Command::Unzone { name } => {
                        if self.zones.remove(&name).is_none() {
                            return (format!("error: no zone {name}"), Vec::new());
                        }
                        format!("zone {name} removed")
                    }
                    _ => unreachable!("matched above"),
                };
                let after = self.views();
                let changed: Vec<u32> = after
                    .iter()
                    .filter(|(p, seen)| {
                        before.get(p) != Some(seen) && self.logins.get(p).is_some_and(|l| l.scr)
                    })
                    .map(|(p, _)| *p)
                    .collect();
                self.note(what.clone());
                let out = self.send_rscns(changed);
                (format!("ok {what}"), out)
            }
            Command::Logout { wwpn } => {
                let Some(l) = self.logins.values().find(|l| l.names.wwpn == wwpn).cloned() else {
                    return (format!("error: {} is not logged in", wwn(wwpn)), Vec::new());
                };
                let mac = Mac::fpma(self.id().fc_map, l.port_id);
                let cvl = fip::clear_virtual_link(self.id(), mac, l.port_id, wwpn);
                let mut out = vec![Out {
                    link: l.link,
                    frame: ethernet(l.enode, self.id().mac, ETH_P_FIP, &cvl),
                }];
                // Clearing the physical port's link clears its NPIV ports with it.
                let gone: Vec<u32> = if l.npiv {
                    vec![l.port_id]
                } else {
                    self.logins
                        .values()
                        .filter(|o| o.link == l.link && o.enode == l.enode)
                        .map(|o| o.port_id)
                        .collect()
                };
                for port_id in gone {
                    out.extend(self.remove_login(port_id, "Clear Virtual Link"));
                }
                (format!("ok cleared the virtual link of {}", wwn(wwpn)), out)
            }
            Command::LinkDown => {
                // As if the FCF lost power: no advertisements, no answers, no logins.
                self.up = false;
                let n = self.logins.len();
                self.logins.clear();
                self.note(format!("link down: stopped advertising, forgot {n} logins"));
                (format!("ok link down ({n} logins dropped)"), Vec::new())
            }
            Command::LinkUp => {
                self.up = true;
                self.note("link up: advertising again".into());
                ("ok link up".into(), self.advertisements())
            }
            Command::Refuse { wwpn } => {
                self.refused.insert(wwpn);
                (format!("ok refusing logins of {}", wwn(wwpn)), Vec::new())
            }
            Command::Accept { wwpn } => {
                self.refused.remove(&wwpn);
                (format!("ok accepting logins of {}", wwn(wwpn)), Vec::new())
            }
            Command::Status => (self.status(), Vec::new()),
        }
    }

    fn status(&self) -> String {
        let id = self.id();
        let mut s = format!(
            "fabric {} switch {} mac {} {}\n",
            wwn(id.fabric_name),
            wwn(id.switch_name),
            id.mac,
            if self.up { "up" } else { "down" }
        );
        for l in self.logins.values() {
            s.push_str(&format!(
                "login {:06x} wwpn {} wwnn {} link {} {} fcp {} features {} scr {} symbolic '{}'\n",
                l.port_id,
                wwn(l.names.wwpn),
                wwn(l.names.wwnn),
                self.link_name(l.link),
                if l.npiv { "fdisc" } else { "flogi" },
                if ct::has_type(&l.fc4_types, ct::TYPE_FCP) {
                    "yes"
                } else {
                    "no"
                },
                l.fc4_features,
                if l.scr { "yes" } else { "no" },
                l.symbolic_port
            ));
        }
        for (name, members) in &self.zones {
            let m: Vec<String> = members.iter().map(|w| wwn(*w)).collect();
            s.push_str(&format!("zone {name} {}\n", m.join(" ")));
        }
        for w in &self.refused {
            s.push_str(&format!("refuse {}\n", wwn(*w)));
        }
        s
    }
}

/// A WWN as the kernel's sysfs writes it.
pub fn wwn(w: u64) -> String {
    format!("0x{w:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fip::Desc;
    use crate::wire::{be16, be24, FC_HLEN};

    const FCF: Mac = Mac([0x02, 0xfc, 0xf0, 0, 0, 1]);
    const INI: Mac = Mac([0x02, 0, 0, 0, 0, 0x0b]);
    const TGT: Mac = Mac([0x02, 0, 0, 0, 0, 0x0a]);
    const INI_WWPN: u64 = 0x2000_0200_0000_000b;
    const TGT_WWPN: u64 = 0x2000_0200_0000_000a;
    const VPORT: u64 = 0x5001_a4a0_0000_0a01;

    fn fabric() -> Fabric {
        let identity = FcfIdentity {
            mac: FCF,
            switch_name: 0x2000_02fc_f000_0001,
            fabric_name: 0x1000_02fc_f000_0001,
            fc_map: 0x0efc00,
            priority: 128,
            fka_ms: 8000,
        };
        Fabric::new(
            Config {
                identity,
                domain: 1,
            },
            vec!["fi".into(), "ft".into()],
        )
    }

    /// What libfcoe sends for a FLOGI or FDISC: the ELS in its descriptor, then a MAC
    /// descriptor (zero: it asks for an FPMA).
    fn login_request(enode: Mac, dtype: u8, cmd: u8, wwpn: u64, ox_id: u16) -> Vec<u8> {
        let mut payload = vec![0u8; els::FLOGI_LEN];
        payload[0] = cmd;
        payload[20..28].copy_from_slice(&wwpn.to_be_bytes());
        payload[28..36].copy_from_slice(&(wwpn ^ 0x3000_0000_0000_0000).to_be_bytes());
        let h = FcHeader {
            r_ctl: R_CTL_ELS_REQ,
            d_id: FID_FLOGI,
            s_id: 0,
            fc_type: TYPE_ELS,
            f_ctl: F_CTL_REQ,
            seq_id: 0,
            seq_cnt: 0,
            ox_id,
            rx_id: 0xffff,
        };
        let fc = fc_frame(&h, &payload);
        let mut d = vec![dtype, u8::try_from((4 + fc.len()) / 4).unwrap(), 0, 0];
        d.extend_from_slice(&fc);
        d.extend_from_slice(&[fip::DT_MAC, 2, 0, 0, 0, 0, 0, 0]);
        let mut f = vec![0x10, 0, 0, 2, 0, 1];
        f.extend_from_slice(&u16::try_from(d.len() / 4).unwrap().to_be_bytes());
        f.extend_from_slice(&fip::FL_FPMA.to_be_bytes());
        f.extend_from_slice(&d);
        ethernet(FCF, enode, ETH_P_FIP, &f)
    }

    /// Logs a port in and returns its N_Port ID, checking the reply on the way.
    fn login(f: &mut Fabric, link: usize, enode: Mac, npiv: bool, wwpn: u64) -> u32 {
        let (dtype, cmd) = if npiv {
            (fip::DT_FDISC, els::FDISC)
        } else {
            (fip::DT_FLOGI, els::FLOGI)
        };
        let out = f.receive(link, &login_request(enode, dtype, cmd, wwpn, 0x42));
        let reply = &out[0];
        assert_eq!(reply.link, link);
        let eth = Ethernet::parse(&reply.frame).unwrap();
        assert_eq!((eth.dst, eth.src, eth.ethertype), (enode, FCF, ETH_P_FIP));
        let fip = Fip::parse(eth.payload).unwrap();
        assert_eq!((fip.op, fip.subcode), (fip::OP_LS, fip::SC_REP));
        let (d, frame) = fip.els().unwrap();
        assert_eq!(d, dtype);
        let h = FcHeader::parse(frame).unwrap();
        assert_eq!(
            (h.r_ctl, h.s_id, h.ox_id, h.f_ctl),
            (R_CTL_ELS_REP, FID_FLOGI, 0x42, 0x990000)
        );
        let acc = &frame[FC_HLEN..];
        assert_eq!(acc[0], els::LS_ACC);
        assert_eq!(be16(acc, 8), 0x3000, "F_Port + NPIV");
        assert_eq!(
            els::login_names(acc).unwrap().wwnn,
            0x1000_02fc_f000_0001,
            "fabric name"
        );
        assert_eq!(fip.mac(), Some(Mac::fpma(0x0efc00, h.d_id)));
        h.d_id
    }

    fn fcoe_from(enode_port: u32, d_id: u32, r_ctl: u8, fc_type: u8, payload: &[u8]) -> Vec<u8> {
        let h = FcHeader {
            r_ctl,
            d_id,
            s_id: enode_port,
            fc_type,
            f_ctl: F_CTL_REQ,
            seq_id: 1,
            seq_cnt: 0,
            ox_id: 7,
            rx_id: 0xffff,
        };
        ethernet(
            FCF,
            Mac::fpma(0x0efc00, enode_port),
            ETH_P_FCOE,
            &fcoe_payload(&fc_frame(&h, payload)),
        )
    }

    fn ct_request(cmd: u16, body: &[u8]) -> Vec<u8> {
        let mut p = vec![1, 0, 0, 0, 0xfc, 0x02, 0, 0];
        p.extend_from_slice(&cmd.to_be_bytes());
        p.extend_from_slice(&[0; 6]);
        p.extend_from_slice(body);
        p
    }

    fn register_fcp(f: &mut Fabric, link: usize, port: u32) -> Vec<Out> {
        let mut body = vec![0];
        body.extend_from_slice(&port.to_be_bytes()[1..]);
        body.extend_from_slice(&[0, 0, 1, 0]);
        body.extend_from_slice(&[0; 28]);
        f.receive(
            link,
            &fcoe_from(
                port,
                FID_DIR_SERV,
                R_CTL_CT_REQ,
                TYPE_CT,
                &ct_request(ct::RFT_ID, &body),
            ),
        )
    }

    fn scr(f: &mut Fabric, link: usize, port: u32) {
        let out = f.receive(
            link,
            &fcoe_from(
                port,
                FID_CTRL,
                R_CTL_ELS_REQ,
                TYPE_ELS,
                &[els::SCR, 0, 0, 0, 0, 0, 0, 3],
            ),
        );
        assert_eq!(fc_payload(&out[0])[0], els::LS_ACC);
    }

    fn fc_payload(o: &Out) -> Vec<u8> {
        let eth = Ethernet::parse(&o.frame).unwrap();
        Fcoe::parse(eth.payload).unwrap().fc[FC_HLEN..].to_vec()
    }

    fn fc_header(o: &Out) -> FcHeader {
        let eth = Ethernet::parse(&o.frame).unwrap();
        FcHeader::parse(Fcoe::parse(eth.payload).unwrap().fc).unwrap()
    }

    fn gpn_ft(f: &mut Fabric, link: usize, port: u32) -> Vec<u64> {
        let out = f.receive(
            link,
            &fcoe_from(
                port,
                FID_DIR_SERV,
                R_CTL_CT_REQ,
                TYPE_CT,
                &ct_request(ct::GPN_FT, &[0, 0, 0, 8]),
            ),
        );
        let p = fc_payload(&out[0]);
        if be16(&p, 8) == ct::FS_RJT {
            return Vec::new();
        }
        p[16..]
            .chunks(16)
            .map(|e| crate::wire::be64(e, 8))
            .collect()
    }

    #[test]
    fn solicitation_gets_a_solicited_unicast_advertisement() {
        let mut f = fabric();
        let sol = ethernet(
            Mac::ALL_FCFS,
            INI,
            ETH_P_FIP,
            &[
                0x10, 0, 0, 1, 0, 1, 0, 2, 0x80, 0, 2, 2, 2, 0, 0, 0, 0, 0x0b,
            ],
        );
        let out = f.receive(0, &sol);
        let eth = Ethernet::parse(&out[0].frame).unwrap();
        assert_eq!(eth.dst, INI);
        let fip = Fip::parse(eth.payload).unwrap();
        assert_eq!(
            (fip.op, fip.subcode, fip.flags),
            (fip::OP_DISC, fip::SC_ADV, 0x8006)
        );
        assert_eq!(f.advertisements().len(), 2);
    }

    #[test]
    fn flogi_and_fdisc_get_ids_and_fpmas() {
        let mut f = fabric();
        let phys = login(&mut f, 0, INI, false, INI_WWPN);
        let vport = login(&mut f, 0, INI, true, VPORT);
        assert_eq!(phys >> 16, 1);
        assert_ne!(phys, vport);
        assert_eq!(f.logins().count(), 2);
        // The same vport logging in again (after a CVL) replaces its login.
        let again = login(&mut f, 0, INI, true, VPORT);
        assert_ne!(again, vport);
        assert_eq!(f.logins().count(), 2);
        // A new FLOGI from the ENode starts it over: its vport is gone too.
        login(&mut f, 0, INI, false, INI_WWPN);
        assert_eq!(f.logins().count(), 1);
    }

    #[test]
    fn a_refused_wwpn_gets_ls_rjt_and_no_login() {
        let mut f = fabric();
        login(&mut f, 0, INI, false, INI_WWPN);
        f.control(Command::Refuse { wwpn: VPORT });
        let out = f.receive(0, &login_request(INI, fip::DT_FDISC, els::FDISC, VPORT, 9));
        let eth = Ethernet::parse(&out[0].frame).unwrap();
        let fip = Fip::parse(eth.payload).unwrap();
        assert_eq!(fip.mac(), None);
        let (_, frame) = fip.els().unwrap();
        assert_eq!(
            &frame[FC_HLEN..],
            &els::ls_rjt(els::RJT_LOGIC, els::EXPL_INVALID_PORT_NAME)[..]
        );
        assert_eq!(f.logins().count(), 1);
        f.control(Command::Accept { wwpn: VPORT });
        login(&mut f, 0, INI, true, VPORT);
    }

    #[test]
    fn zoning_decides_discovery_forwarding_and_rscns() {
        let mut f = fabric();
        let _phys = login(&mut f, 0, INI, false, INI_WWPN);
        let vport = login(&mut f, 0, INI, true, VPORT);
        let tgt = login(&mut f, 1, TGT, false, TGT_WWPN);
        for (link, p) in [(0, vport), (1, tgt)] {
            register_fcp(&mut f, link, p);
            scr(&mut f, link, p);
        }
        // No zone: each port sees only itself.
        assert_eq!(gpn_ft(&mut f, 0, vport), vec![VPORT]);
        let plogi = fcoe_from(vport, tgt, R_CTL_ELS_REQ, TYPE_ELS, &[els::PLOGI, 0, 0, 0]);
        assert!(
            f.receive(0, &plogi).is_empty(),
            "unzoned frames are dropped"
        );

        // Zoning them together tells both, and only them.
        let (answer, out) = f.control(Command::Zone {
            name: "a".into(),
            members: [VPORT, TGT_WWPN].into(),
        });
        assert!(answer.starts_with("ok"), "{answer}");
        let mut told: Vec<u32> = out.iter().map(|o| fc_header(o).d_id).collect();
        told.sort_unstable();
        assert_eq!(told, [vport.min(tgt), vport.max(tgt)]);
        for o in &out {
            assert_eq!(fc_payload(o), els::rscn_fabric());
            assert_eq!(fc_header(o).s_id, FID_CTRL);
        }
        assert_eq!(gpn_ft(&mut f, 0, vport), vec![VPORT, TGT_WWPN]);

        // Forwarding: to the target's link, MACs rewritten, FC frame untouched.
        let fwd = f.receive(0, &plogi);
        assert_eq!(fwd.len(), 1);
        assert_eq!(fwd[0].link, 1);
        let eth = Ethernet::parse(&fwd[0].frame).unwrap();
        assert_eq!((eth.dst, eth.src), (Mac::fpma(0x0efc00, tgt), FCF));
        assert_eq!(&fwd[0].frame[12..], &plogi[12..]);

        // Frames from an ID that is not logged in are dropped.
        assert!(f
            .receive(
                0,
                &fcoe_from(
                    0x01_00ff,
                    tgt,
                    R_CTL_ELS_REQ,
                    TYPE_ELS,
                    &[els::PLOGI, 0, 0, 0]
                )
            )
            .is_empty());

        // Unzoning tells both again and hides the target.
        let (_, out) = f.control(Command::Unzone { name: "a".into() });
        assert_eq!(out.len(), 2);
        assert_eq!(gpn_ft(&mut f, 0, vport), vec![VPORT]);
        assert!(f
            .control(Command::Unzone { name: "a".into() })
            .0
            .starts_with("error"));
    }

    #[test]
    fn name_server_answers_queries_and_rejects_the_rest() {
        let mut f = fabric();
        let tgt = login(&mut f, 1, TGT, false, TGT_WWPN);
        let vport = {
            login(&mut f, 0, INI, false, INI_WWPN);
            login(&mut f, 0, INI, true, VPORT)
        };
        f.control(Command::Zone {
            name: "a".into(),
            members: [VPORT, TGT_WWPN].into(),
        });
        let ask = |f: &mut Fabric, cmd: u16, body: &[u8]| {
            let out = f.receive(
                0,
                &fcoe_from(
                    vport,
                    FID_DIR_SERV,
                    R_CTL_CT_REQ,
                    TYPE_CT,
                    &ct_request(cmd, body),
                ),
            );
            let h = fc_header(&out[0]);
            assert_eq!(
                (h.r_ctl, h.d_id, h.s_id, h.ox_id),
                (R_CTL_CT_REP, vport, FID_DIR_SERV, 7)
            );
            fc_payload(&out[0])
        };
        let id = tgt.to_be_bytes();
        let p = ask(&mut f, ct::GPN_ID, &[0, id[1], id[2], id[3]]);
        assert_eq!(
            (be16(&p, 8), crate::wire::be64(&p, 16)),
            (ct::FS_ACC, TGT_WWPN)
        );
        let p = ask(&mut f, ct::GNN_ID, &[0, id[1], id[2], id[3]]);
        assert_eq!(crate::wire::be64(&p, 16), TGT_WWPN ^ 0x3000_0000_0000_0000);
        let p = ask(&mut f, ct::GFF_ID, &[0, id[1], id[2], id[3]]);
        assert_eq!(p.len(), 16 + 128);
        let p = ask(&mut f, ct::GPN_ID, &[0, 1, 0x7f, 0]);
        assert_eq!(
            (be16(&p, 8), p[13], p[14]),
            (ct::FS_RJT, ct::RJT_UNABLE, ct::EXP_PORT_ID)
        );
        let p = ask(&mut f, 0x0101, &[]);
        assert_eq!((be16(&p, 8), p[13]), (ct::FS_RJT, ct::RJT_CMD));
        let mut rspn = vec![0, (vport >> 16) as u8, (vport >> 8) as u8, vport as u8, 7];
        rspn.extend_from_slice(b"hbad:db");
        assert_eq!(be16(&ask(&mut f, ct::RSPN_ID, &rspn), 8), ct::FS_ACC);
        assert!(f.control(Command::Status).0.contains("symbolic 'hbad:db'"));
        // Registering for another port is refused.
        let mut other = rspn.clone();
        other[1..4].copy_from_slice(&id[1..]);
        assert_eq!(be16(&ask(&mut f, ct::RSPN_ID, &other), 8), ct::FS_RJT);
        // PLOGI to the name server is accepted with service parameters.
        let out = f.receive(
            0,
            &fcoe_from(
                vport,
                FID_DIR_SERV,
                R_CTL_ELS_REQ,
                TYPE_ELS,
                &[els::PLOGI, 0, 0, 0],
            ),
        );
        assert_eq!(fc_payload(&out[0]).len(), els::FLOGI_LEN);
        assert_eq!(be24(&out[0].frame, 0), 0x0efc00);
    }

    #[test]
    fn logout_clears_the_virtual_link_and_tells_peers() {
        let mut f = fabric();
        login(&mut f, 0, INI, false, INI_WWPN);
        let vport = login(&mut f, 0, INI, true, VPORT);
        let tgt = login(&mut f, 1, TGT, false, TGT_WWPN);
        scr(&mut f, 1, tgt);
        f.control(Command::Zone {
            name: "a".into(),
            members: [VPORT, TGT_WWPN].into(),
        });
        let (answer, out) = f.control(Command::Logout { wwpn: VPORT });
        assert!(answer.starts_with("ok"), "{answer}");
        let cvl = Ethernet::parse(&out[0].frame).unwrap();
        assert_eq!((cvl.dst, cvl.ethertype), (INI, ETH_P_FIP));
        let fip = Fip::parse(cvl.payload).unwrap();
        assert_eq!((fip.op, fip.subcode), (fip::OP_CTRL, fip::SC_CLR_VLINK));
        assert!(fip.descs.contains(&Desc::VnId {
            mac: Mac::fpma(0x0efc00, vport),
            port_id: vport,
            wwpn: VPORT
        }));
        assert_eq!(fc_header(&out[1]).d_id, tgt, "the target hears of it");
        assert_eq!(f.logins().count(), 2);
        assert!(f
            .control(Command::Logout { wwpn: VPORT })
            .0
            .starts_with("error"));
    }

    #[test]
    fn fip_logo_is_accepted_with_the_port_mac() {
        let mut f = fabric();
        login(&mut f, 0, INI, false, INI_WWPN);
        let vport = login(&mut f, 0, INI, true, VPORT);
        let mut logo = vec![els::LOGO, 0, 0, 0, 0];
        logo.extend_from_slice(&vport.to_be_bytes()[1..]);
        logo.extend_from_slice(&VPORT.to_be_bytes());
        let h = FcHeader {
            r_ctl: R_CTL_ELS_REQ,
            d_id: FID_FLOGI,
            s_id: vport,
            fc_type: TYPE_ELS,
            f_ctl: F_CTL_REQ,
            seq_id: 0,
            seq_cnt: 0,
            ox_id: 5,
            rx_id: 0xffff,
        };
        let fc = fc_frame(&h, &logo);
        let mut d = vec![
            fip::DT_LOGO,
            u8::try_from((4 + fc.len()) / 4).unwrap(),
            0,
            0,
        ];
        d.extend_from_slice(&fc);
        let mut req = vec![
            0x10,
            0,
            0,
            2,
            0,
            1,
            0,
            u8::try_from(d.len() / 4).unwrap(),
            0x80,
            0,
        ];
        req.extend_from_slice(&d);
        let out = f.receive(0, &ethernet(FCF, INI, ETH_P_FIP, &req));
        let fip = Fip::parse(Ethernet::parse(&out[0].frame).unwrap().payload).unwrap();
        let (dtype, frame) = fip.els().unwrap();
        assert_eq!((dtype, frame[FC_HLEN]), (fip::DT_LOGO, els::LS_ACC));
        assert_eq!(fip.mac(), Some(Mac::fpma(0x0efc00, vport)));
        assert_eq!(f.logins().count(), 1);
    }

    #[test]
    fn link_down_silences_the_fabric_until_link_up() {
        let mut f = fabric();
        login(&mut f, 0, INI, false, INI_WWPN);
        f.control(Command::LinkDown);
        assert!(!f.is_up());
        assert!(f.advertisements().is_empty());
        assert!(f
            .receive(
                0,
                &login_request(INI, fip::DT_FLOGI, els::FLOGI, INI_WWPN, 1)
            )
            .is_empty());
        assert_eq!(f.logins().count(), 0);
        let (_, out) = f.control(Command::LinkUp);
        assert_eq!(out.len(), 2, "advertises at once on both links");
        login(&mut f, 0, INI, false, INI_WWPN);
    }

    #[test]
    fn malformed_frames_are_dropped_and_noted() {
        let mut f = fabric();
        assert!(f.receive(0, &[0; 10]).is_empty());
        let bad = ethernet(
            FCF,
            INI,
            ETH_P_FIP,
            &[0x10, 0, 0, 2, 0, 1, 0, 1, 0, 0, 7, 0, 0, 0],
        );
        assert!(f.receive(0, &bad).is_empty());
        assert!(
            f.events.iter().any(|e| e.contains("malformed")),
            "{:?}",
            f.events
        );
        let mut fcoe = fcoe_from(0x010001, FID_DIR_SERV, R_CTL_CT_REQ, TYPE_CT, &[0; 16]);
        let n = fcoe.len();
        fcoe[n - 12] ^= 0xff;
        assert!(f.receive(0, &fcoe).is_empty());
    }
}

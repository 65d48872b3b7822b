//! FC transport events: netlink `NETLINK_SCSITRANSPORT`, multicast group
//! `SCSI_NL_GRP_FC_EVENTS`.
//!
//! Port and vport state change without a uevent, so hbad polls them; drivers that
//! post FC transport events (qla2xxx, lpfc, zfcp, ibmvfc) say at once when a link
//! went up or down, a LIP happened or the fabric sent an RSCN or FPIN, which lets
//! the agent re-read that host immediately instead of at its next poll. libfc/fcoe
//! posts only LIPRESET, so polling stays as the fallback.
//!
//! Unlike uevents, these datagrams are real netlink messages: an `nlmsghdr` of type
//! `SCSI_TRANSPORT_MSG`, then `struct fc_nl_event` (include/uapi/scsi/
//! scsi_netlink_fc.h) in host byte order, starting with a `scsi_nl_hdr`. Each of the
//! four lengths involved (datagram, `nlmsg_len`, `msglen`, `event_datalen`) is
//! checked against the one around it; a message whose lengths disagree is rejected
//! and counted, never read past. As for uevents, only portid 0 (the kernel) is
//! believed: root in the same network namespace can send to the group too.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::Arc;

use netlink_sys::{Socket, SocketAddr};
use serde::Serialize;

use super::kernel::{receive, Datagram};
use super::source::{raise_recv_buffer, RecvBuffer, SourceCounters};

/// `NETLINK_SCSITRANSPORT` (include/uapi/linux/netlink.h).
pub const NETLINK_SCSITRANSPORT: isize = 18;

/// `SCSI_NL_GRP_FC_EVENTS` (include/uapi/scsi/scsi_netlink.h): `(1<<2)`, but the
/// FC transport hands it to `nlmsg_multicast` as a group *number*, so its events go
/// to group 4.
pub const SCSI_NL_GRP_FC_EVENTS: u32 = 1 << 2;

/// The `nl_groups` bit that joins group [`SCSI_NL_GRP_FC_EVENTS`] (group N is bit
/// N-1): `1 << 3`. Binding the header's value itself, `1 << 2`, joins group 3,
/// where nothing is ever sent (seen on Debian's 6.1 kernel in the vm tier).
pub const FC_EVENTS_BIND_MASK: u32 = 1 << (SCSI_NL_GRP_FC_EVENTS - 1);

/// `SCSI_TRANSPORT_MSG` = `NLMSG_MIN_TYPE + 1`: the netlink type of every message
/// the SCSI transports send.
pub const SCSI_TRANSPORT_MSG: u16 = 0x11;
const SCSI_NL_VERSION: u8 = 1;
const SCSI_NL_TRANSPORT_FC: u8 = 1;
const SCSI_NL_MAGIC: u16 = 0xA1B2;
/// `FC_NL_ASYNC_EVENT`: the only message type the FC transport sends.
const FC_NL_ASYNC_EVENT: u16 = 0x0100;

/// `sizeof(struct nlmsghdr)`.
const NLMSG_HDRLEN: usize = 16;
/// `sizeof(struct fc_nl_event)`: the header, seconds, vendor_id, host_no,
/// event_datalen, event_num, event_code and the 4-byte `event_data` union.
pub const FC_NL_EVENT_LEN: usize = 40;
/// Where `event_data` starts inside `struct fc_nl_event`.
const EVENT_DATA_OFFSET: usize = 36;

/// `scsi_nl_hdr.msglen` is 16 bits, so no valid message is longer than this plus
/// the netlink header; the buffer is one byte longer so `MSG_TRUNC` tells the rest.
const DATAGRAM_BUFFER: usize = NLMSG_HDRLEN + u16::MAX as usize + 1;

/// The receive buffer asked for: FC events come a few at a time (a link bounce is
/// a handful), so the default uevent buffer would only waste pinned memory.
pub const DEFAULT_FC_RECV_BUFFER: usize = 4 * 1024 * 1024;

/// Whether an FC driver posts link events (LINKUP/LINKDOWN...) for the changes of
/// its ports' login: qla2xxx, lpfc, zfcp and ibmvfc do; libfc's drivers (fcoe,
/// bnx2fc, qedf) post only LIPRESET, and a vport's lost login may come with none.
pub fn posts_link_events(driver: &str) -> bool {
    matches!(driver, "qla2xxx" | "lpfc" | "zfcp" | "ibmvfc")
}

/// `enum fc_host_event_code` (include/scsi/scsi_transport_fc.h).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FcEventCode {
    Lip,
    LinkUp,
    LinkDown,
    LipReset,
    Rscn,
    AdapterChange,
    PortUnknown,
    PortOffline,
    PortOnline,
    PortFabric,
    CritTemp,
    LinkUnknown,
    LinkFpin,
    LinkFpinAck,
    VendorUnique,
    /// A code this build does not know (a newer kernel): kept, not rejected.
    Other(u32),
}

impl FcEventCode {
    pub fn from_code(code: u32) -> FcEventCode {
        match code {
            0x1 => FcEventCode::Lip,
            0x2 => FcEventCode::LinkUp,
            0x3 => FcEventCode::LinkDown,
            0x4 => FcEventCode::LipReset,
            0x5 => FcEventCode::Rscn,
            0x103 => FcEventCode::AdapterChange,
            0x200 => FcEventCode::PortUnknown,
            0x201 => FcEventCode::PortOffline,
            0x202 => FcEventCode::PortOnline,
            0x204 => FcEventCode::PortFabric,
            0x300 => FcEventCode::CritTemp,
            0x500 => FcEventCode::LinkUnknown,
            0x501 => FcEventCode::LinkFpin,
            0x502 => FcEventCode::LinkFpinAck,
            0xffff => FcEventCode::VendorUnique,
            other => FcEventCode::Other(other),
        }
    }

    pub fn code(self) -> u32 {
        match self {
            FcEventCode::Lip => 0x1,
            FcEventCode::LinkUp => 0x2,
            FcEventCode::LinkDown => 0x3,
            FcEventCode::LipReset => 0x4,
            FcEventCode::Rscn => 0x5,
            FcEventCode::AdapterChange => 0x103,
            FcEventCode::PortUnknown => 0x200,
            FcEventCode::PortOffline => 0x201,
            FcEventCode::PortOnline => 0x202,
            FcEventCode::PortFabric => 0x204,
            FcEventCode::CritTemp => 0x300,
            FcEventCode::LinkUnknown => 0x500,
            FcEventCode::LinkFpin => 0x501,
            FcEventCode::LinkFpinAck => 0x502,
            FcEventCode::VendorUnique => 0xffff,
            FcEventCode::Other(c) => c,
        }
    }

    /// The kernel's name without the `FCH_EVT_` prefix, as the journal shows it.
    pub fn name(self) -> &'static str {
        match self {
            FcEventCode::Lip => "LIP",
            FcEventCode::LinkUp => "LINKUP",
            FcEventCode::LinkDown => "LINKDOWN",
            FcEventCode::LipReset => "LIPRESET",
            FcEventCode::Rscn => "RSCN",
            FcEventCode::AdapterChange => "ADAPTER_CHANGE",
            FcEventCode::PortUnknown => "PORT_UNKNOWN",
            FcEventCode::PortOffline => "PORT_OFFLINE",
            FcEventCode::PortOnline => "PORT_ONLINE",
            FcEventCode::PortFabric => "PORT_FABRIC",
            FcEventCode::CritTemp => "CRITTEMP",
            FcEventCode::LinkUnknown => "LINK_UNKNOWN",
            FcEventCode::LinkFpin => "LINK_FPIN",
            FcEventCode::LinkFpinAck => "LINK_FPIN_ACK",
            FcEventCode::VendorUnique => "VENDOR_UNIQUE",
            FcEventCode::Other(_) => "UNKNOWN",
        }
    }

    /// Whether the host's port, remote ports or vports may have changed state: the
    /// events that make the agent re-read the host at once rather than at its next
    /// poll. Temperature, vendor and adapter notices change nothing hbad reads.
    pub fn changes_link(self) -> bool {
        matches!(
            self,
            FcEventCode::Lip
                | FcEventCode::LinkUp
                | FcEventCode::LinkDown
                | FcEventCode::LipReset
                | FcEventCode::Rscn
                | FcEventCode::PortUnknown
                | FcEventCode::PortOffline
                | FcEventCode::PortOnline
                | FcEventCode::PortFabric
                | FcEventCode::LinkUnknown
                | FcEventCode::LinkFpin
        )
    }
}

impl fmt::Display for FcEventCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FcEventCode::Other(c) => write!(f, "UNKNOWN({c:#x})"),
            known => f.write_str(known.name()),
        }
    }
}

/// One `struct fc_nl_event`, owned.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FcEvent {
    /// The SCSI host the event is about (`hostN`).
    pub host_no: u16,
    pub code: FcEventCode,
    /// The driver's running event number (`fc_get_event_number`).
    pub event_num: u32,
    /// Wall-clock seconds when the kernel posted it.
    pub seconds: u64,
    /// Driver-specific; 0 for the common events.
    pub vendor_id: u64,
    /// `event_datalen` bytes of `event_data`: a 4-byte value for the common events
    /// (`fc_host_post_event`), the FPIN ELS payload for LINK_FPIN. At most 64 KiB
    /// (the lengths are 16-bit).
    pub data: Vec<u8>,
}

impl FcEvent {
    /// An event as a driver posts it through `fc_host_post_event`: 4 bytes of data.
    pub fn new(host_no: u16, code: FcEventCode, event_num: u32, value: u32) -> FcEvent {
        FcEvent {
            host_no,
            code,
            event_num,
            seconds: 0,
            vendor_id: 0,
            data: value.to_ne_bytes().to_vec(),
        }
    }

    /// The datagram the kernel would multicast for this event, `nlmsghdr` included
    /// (`fc_host_post_fc_event`). Events longer than the 16-bit lengths allow are
    /// cut to fit, as no kernel could send them.
    pub fn to_bytes(&self) -> Vec<u8> {
        let max_data = u16::MAX as usize - FC_NL_EVENT_LEN;
        let data = &self.data[..self.data.len().min(max_data)];
        // FC_NL_MSGALIGN(sizeof(*event) + data_len): the union's own 4 bytes are
        // counted even though the data starts there.
        let msglen = (FC_NL_EVENT_LEN + data.len() + 7) & !7;
        let mut out = Vec::with_capacity(NLMSG_HDRLEN + msglen);
        out.extend_from_slice(&((NLMSG_HDRLEN + msglen) as u32).to_ne_bytes());
        out.extend_from_slice(&SCSI_TRANSPORT_MSG.to_ne_bytes());
        out.extend_from_slice(&0u16.to_ne_bytes()); // flags
        out.extend_from_slice(&0u32.to_ne_bytes()); // seq
        out.extend_from_slice(&0u32.to_ne_bytes()); // pid
        out.push(SCSI_NL_VERSION);
        out.push(SCSI_NL_TRANSPORT_FC);
        out.extend_from_slice(&SCSI_NL_MAGIC.to_ne_bytes());
        out.extend_from_slice(&FC_NL_ASYNC_EVENT.to_ne_bytes());
        out.extend_from_slice(&(msglen as u16).to_ne_bytes());
        out.extend_from_slice(&self.seconds.to_ne_bytes());
        out.extend_from_slice(&self.vendor_id.to_ne_bytes());
        out.extend_from_slice(&self.host_no.to_ne_bytes());
        out.extend_from_slice(&(data.len() as u16).to_ne_bytes());
        out.extend_from_slice(&self.event_num.to_ne_bytes());
        out.extend_from_slice(&self.code.code().to_ne_bytes());
        out.extend_from_slice(data);
        out.resize(NLMSG_HDRLEN + msglen, 0);
        out
    }
}

impl fmt::Display for FcEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} on host{} (event {})",
            self.code, self.host_no, self.event_num
        )
    }
}

/// Why a datagram on the FC event group is not an event we can use.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FcParseError {
    #[error("datagram was longer than the receive buffer (truncated)")]
    Truncated,
    #[error("{len} bytes is shorter than a netlink header and an fc_nl_event ({min})")]
    TooShort { len: usize, min: usize },
    #[error("nlmsg_len {claimed} does not fit the {got}-byte datagram")]
    NetlinkLength { claimed: usize, got: usize },
    #[error("netlink type {0:#x} is not SCSI_TRANSPORT_MSG")]
    NotTransportMessage(u16),
    #[error("scsi_nl_hdr version {0}, expected {SCSI_NL_VERSION}")]
    Version(u8),
    #[error("scsi_nl_hdr transport {0}, expected FC ({SCSI_NL_TRANSPORT_FC})")]
    Transport(u8),
    #[error("scsi_nl_hdr magic {0:#06x}, expected {SCSI_NL_MAGIC:#06x}")]
    Magic(u16),
    #[error("scsi_nl_hdr msgtype {0:#x} is not FC_NL_ASYNC_EVENT")]
    MessageType(u16),
    #[error("scsi_nl_hdr msglen {claimed} does not fit the {room}-byte payload (at least {FC_NL_EVENT_LEN})")]
    MessageLength { claimed: usize, room: usize },
    #[error("event_datalen {claimed} runs past msglen (room for {room})")]
    DataLength { claimed: usize, room: usize },
}

/// Reads native-endian integers at fixed offsets of a slice already checked long
/// enough; the length checks happen before any of these are called.
struct Fields<'a>(&'a [u8]);

impl Fields<'_> {
    fn bytes<const N: usize>(&self, at: usize) -> [u8; N] {
        let mut out = [0; N];
        out.copy_from_slice(&self.0[at..at + N]);
        out
    }
    fn u8(&self, at: usize) -> u8 {
        self.0[at]
    }
    fn u16(&self, at: usize) -> u16 {
        u16::from_ne_bytes(self.bytes(at))
    }
    fn u32(&self, at: usize) -> u32 {
        u32::from_ne_bytes(self.bytes(at))
    }
    fn u64(&self, at: usize) -> u64 {
        u64::from_ne_bytes(self.bytes(at))
    }
}

/// Parses one datagram of the FC event group. Pure: every length is checked
/// before the bytes it covers are read.
pub fn parse_fc_event(datagram: &[u8]) -> Result<FcEvent, FcParseError> {
    let min = NLMSG_HDRLEN + FC_NL_EVENT_LEN;
    if datagram.len() < min {
        return Err(FcParseError::TooShort {
            len: datagram.len(),
            min,
        });
    }
    let nl = Fields(datagram);
    let nlmsg_len = nl.u32(0) as usize;
    if !(min..=datagram.len()).contains(&nlmsg_len) {
        return Err(FcParseError::NetlinkLength {
            claimed: nlmsg_len,
            got: datagram.len(),
        });
    }
    let nlmsg_type = nl.u16(4);
    if nlmsg_type != SCSI_TRANSPORT_MSG {
        return Err(FcParseError::NotTransportMessage(nlmsg_type));
    }
    let payload = &datagram[NLMSG_HDRLEN..nlmsg_len];
    let ev = Fields(payload);
    if ev.u8(0) != SCSI_NL_VERSION {
        return Err(FcParseError::Version(ev.u8(0)));
    }
    if ev.u8(1) != SCSI_NL_TRANSPORT_FC {
        return Err(FcParseError::Transport(ev.u8(1)));
    }
    if ev.u16(2) != SCSI_NL_MAGIC {
        return Err(FcParseError::Magic(ev.u16(2)));
    }
    if ev.u16(4) != FC_NL_ASYNC_EVENT {
        return Err(FcParseError::MessageType(ev.u16(4)));
    }
    let msglen = ev.u16(6) as usize;
    if !(FC_NL_EVENT_LEN..=payload.len()).contains(&msglen) {
        return Err(FcParseError::MessageLength {
            claimed: msglen,
            room: payload.len(),
        });
    }
    let datalen = ev.u16(26) as usize;
    let room = msglen - EVENT_DATA_OFFSET;
    if datalen > room {
        return Err(FcParseError::DataLength {
            claimed: datalen,
            room,
        });
    }
    Ok(FcEvent {
        seconds: ev.u64(8),
        vendor_id: ev.u64(16),
        host_no: ev.u16(24),
        event_num: ev.u32(28),
        code: FcEventCode::from_code(ev.u32(32)),
        data: payload[EVENT_DATA_OFFSET..EVENT_DATA_OFFSET + datalen].to_vec(),
    })
}

/// What the FC event source yields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FcItem {
    Event(FcEvent),
    /// Events were lost (ENOBUFS): every FC host's state must be re-read.
    Overflow,
    Rejected(FcRejection),
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FcRejection {
    #[error("forged: sent by portid {0}, not the kernel")]
    NotKernel(u32),
    #[error("malformed: {0}")]
    Malformed(FcParseError),
}

/// Decides what one datagram from the FC event group is; the sender first, so a
/// forged message is never parsed.
pub fn classify_fc(sender_portid: u32, datagram: &[u8], truncated: bool) -> FcItem {
    if sender_portid != 0 {
        return FcItem::Rejected(FcRejection::NotKernel(sender_portid));
    }
    if truncated {
        return FcItem::Rejected(FcRejection::Malformed(FcParseError::Truncated));
    }
    match parse_fc_event(datagram) {
        Ok(event) => FcItem::Event(event),
        Err(e) => FcItem::Rejected(FcRejection::Malformed(e)),
    }
}

impl Datagram for FcItem {
    const OVERFLOW: Self = FcItem::Overflow;
    fn classify(sender_portid: u32, datagram: &[u8], truncated: bool) -> Self {
        classify_fc(sender_portid, datagram, truncated)
    }
}

/// The FC transport event socket, blocking: the daemon reads it on a thread of its
/// own. As an iterator it never ends; an `Err` means the socket itself failed.
#[derive(Debug)]
pub struct FcEventSource {
    socket: Socket,
    buf: Box<[u8]>,
    backlog: VecDeque<FcItem>,
    recv_buffer: RecvBuffer,
    counters: Arc<SourceCounters>,
}

impl FcEventSource {
    /// Opens and binds the socket. Fails with `EPROTONOSUPPORT` on a kernel without
    /// SCSI netlink (no `scsi_mod`, or `CONFIG_SCSI_NETLINK` off): the caller then
    /// relies on polling alone.
    pub fn open(recv_buffer: usize) -> io::Result<FcEventSource> {
        let mut socket = Socket::new(NETLINK_SCSITRANSPORT)?;
        let recv_buffer = raise_recv_buffer(&socket, recv_buffer)?;
        socket.bind(&SocketAddr::new(0, FC_EVENTS_BIND_MASK))?;
        Ok(FcEventSource {
            socket,
            buf: vec![0; DATAGRAM_BUFFER].into_boxed_slice(),
            backlog: VecDeque::new(),
            recv_buffer,
            counters: Arc::default(),
        })
    }

    /// Waits for the next datagram (or loss report) and classifies it.
    pub fn recv(&mut self) -> io::Result<FcItem> {
        loop {
            match receive(&self.socket, &mut self.buf, &mut self.backlog) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
                Ok(item) => {
                    self.counters.record_fc(&item);
                    return Ok(item);
                }
            }
        }
    }

    pub fn recv_buffer(&self) -> RecvBuffer {
        self.recv_buffer
    }

    /// Live counters, the same shape as the uevent sources' (never `not_root`).
    pub fn counters(&self) -> Arc<SourceCounters> {
        Arc::clone(&self.counters)
    }
}

impl Iterator for FcEventSource {
    type Item = io::Result<FcItem>;
    fn next(&mut self) -> Option<Self::Item> {
        Some(self.recv())
    }
}

impl AsRawFd for FcEventSource {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}

impl AsFd for FcEventSource {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A LINKUP on host 5 laid out byte by byte as `fc_host_post_event` builds it
    /// on a little-endian machine, independently of `to_bytes`.
    fn linkup_bytes() -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&64u32.to_ne_bytes()); // nlmsg_len: 16 + 48
        b.extend_from_slice(&0x11u16.to_ne_bytes()); // SCSI_TRANSPORT_MSG
        b.extend_from_slice(&[0; 10]); // flags, seq, pid
        b.extend_from_slice(&[1, 1]); // version, transport FC
        b.extend_from_slice(&0xA1B2u16.to_ne_bytes());
        b.extend_from_slice(&0x0100u16.to_ne_bytes());
        b.extend_from_slice(&48u16.to_ne_bytes()); // FC_NL_MSGALIGN(40 + 4)
        b.extend_from_slice(&1_700_000_000u64.to_ne_bytes());
        b.extend_from_slice(&0u64.to_ne_bytes());
        b.extend_from_slice(&5u16.to_ne_bytes()); // host_no
        b.extend_from_slice(&4u16.to_ne_bytes()); // event_datalen
        b.extend_from_slice(&77u32.to_ne_bytes()); // event_num
        b.extend_from_slice(&2u32.to_ne_bytes()); // FCH_EVT_LINKUP
        b.extend_from_slice(&0xdeadu32.to_ne_bytes()); // event_data
        b.extend_from_slice(&[0; 8]); // FC_NL_MSGALIGN padding
        assert_eq!(b.len(), 64);
        b
    }

    #[test]
    fn the_fc_event_group_is_joined_by_its_number_not_the_header_value() {
        // nlmsg_multicast(scsi_nl_sock, skb, 0, SCSI_NL_GRP_FC_EVENTS, ...) sends to
        // group number 4; bind's nl_groups has group N at bit N-1.
        assert_eq!(SCSI_NL_GRP_FC_EVENTS, 4);
        assert_eq!(FC_EVENTS_BIND_MASK, 0b1000);
    }

    #[test]
    fn parses_a_linkup_as_fc_host_post_event_lays_it_out() {
        let ev = parse_fc_event(&linkup_bytes()).unwrap();
        assert_eq!(ev.host_no, 5);
        assert_eq!(ev.code, FcEventCode::LinkUp);
        assert_eq!(ev.event_num, 77);
        assert_eq!(ev.seconds, 1_700_000_000);
        assert_eq!(ev.data, 0xdeadu32.to_ne_bytes());
        let mut again = FcEvent::new(5, FcEventCode::LinkUp, 77, 0xdead);
        again.seconds = 1_700_000_000;
        assert_eq!(again.to_bytes(), linkup_bytes());
    }

    #[test]
    fn an_fpin_carries_its_payload_and_round_trips() {
        let ev = FcEvent {
            host_no: 3,
            code: FcEventCode::LinkFpin,
            event_num: 9,
            seconds: 1,
            vendor_id: 0,
            data: (0..=200u8).collect(),
        };
        let bytes = ev.to_bytes();
        assert_eq!(bytes.len() % 8, 0);
        assert_eq!(parse_fc_event(&bytes).unwrap(), ev);
        assert!(ev.code.changes_link());
        assert!(!FcEventCode::CritTemp.changes_link());
    }

    #[test]
    fn every_known_code_round_trips_and_unknown_ones_are_kept() {
        for code in [
            1, 2, 3, 4, 5, 0x103, 0x200, 0x201, 0x202, 0x204, 0x300, 0x500, 0x501, 0x502, 0xffff,
            0x777,
        ] {
            assert_eq!(FcEventCode::from_code(code).code(), code);
        }
        assert_eq!(FcEventCode::from_code(0x777).to_string(), "UNKNOWN(0x777)");
        assert_eq!(FcEventCode::from_code(3).to_string(), "LINKDOWN");
    }

    #[test]
    fn every_truncation_is_rejected_without_panic() {
        let full = linkup_bytes();
        for len in 0..full.len() {
            assert!(
                parse_fc_event(&full[..len]).is_err(),
                "{len} bytes accepted"
            );
        }
    }

    #[test]
    fn lying_lengths_and_wrong_headers_are_rejected_with_reasons() {
        let patch = |at: usize, with: &[u8]| {
            let mut b = linkup_bytes();
            b[at..at + with.len()].copy_from_slice(with);
            b
        };
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (patch(0, &65u32.to_ne_bytes()), "nlmsg_len 65"),
            (patch(0, &u32::MAX.to_ne_bytes()), "nlmsg_len"),
            (patch(0, &20u32.to_ne_bytes()), "nlmsg_len 20"),
            (patch(4, &3u16.to_ne_bytes()), "not SCSI_TRANSPORT_MSG"),
            (patch(16, &[2]), "version 2"),
            (patch(17, &[0]), "transport 0"),
            (patch(18, &0xbeefu16.to_ne_bytes()), "magic"),
            (patch(20, &1u16.to_ne_bytes()), "msgtype"),
            (patch(22, &56u16.to_ne_bytes()), "msglen 56"),
            (patch(22, &8u16.to_ne_bytes()), "msglen 8"),
            (patch(42, &13u16.to_ne_bytes()), "event_datalen 13"),
            (patch(42, &u16::MAX.to_ne_bytes()), "event_datalen"),
        ];
        for (bytes, want) in cases {
            let err = parse_fc_event(&bytes).unwrap_err().to_string();
            assert!(err.contains(want), "expected `{want}` in `{err}`");
        }
        // A msglen shorter than nlmsg_len (trailing padding) is fine; data up to
        // msglen is allowed.
        assert!(parse_fc_event(&patch(42, &12u16.to_ne_bytes())).is_ok());
    }

    #[test]
    fn only_the_kernel_is_believed_and_truncation_is_malformed() {
        let bytes = linkup_bytes();
        assert!(matches!(classify_fc(0, &bytes, false), FcItem::Event(_)));
        assert_eq!(
            classify_fc(1234, &bytes, false),
            FcItem::Rejected(FcRejection::NotKernel(1234))
        );
        assert_eq!(
            classify_fc(0, &bytes, true),
            FcItem::Rejected(FcRejection::Malformed(FcParseError::Truncated))
        );
    }

    #[test]
    fn counters_tally_fc_items_like_uevents() {
        let c = SourceCounters::default();
        c.record_fc(&classify_fc(0, &linkup_bytes(), false));
        c.record_fc(&classify_fc(9, &linkup_bytes(), false));
        c.record_fc(&classify_fc(0, b"short", false));
        c.record_fc(&FcItem::Overflow);
        let s = c.snapshot();
        assert_eq!(
            (
                s.received,
                s.events,
                s.rejected_not_kernel,
                s.rejected_malformed,
                s.overflows
            ),
            (3, 1, 1, 1, 1)
        );
    }
}

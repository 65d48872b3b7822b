//! FC transport events as the kernel multicasts them (`fc_host_post_fc_event`),
//! built in userspace so the vm tier can forge them: a `struct nlmsghdr`, then
//! `struct fc_nl_event` (include/uapi/scsi/scsi_netlink_fc.h), which starts with a
//! `struct scsi_nl_hdr` (include/uapi/scsi/scsi_netlink.h). Host byte order
//! throughout, as the kernel writes them.
//!
//! Root may send to any netlink group, so an agent must tell the kernel's events
//! from these by the sender's portid: that is what the forgeries test.

use std::io;
use std::mem;

/// `NETLINK_SCSITRANSPORT` (include/uapi/linux/netlink.h).
pub const NETLINK_SCSITRANSPORT: i32 = 18;
/// The group the FC transport multicasts to: `SCSI_NL_GRP_FC_EVENTS` (`1<<2`)
/// handed to `nlmsg_multicast` as a group number.
pub const FC_EVENTS_GROUP: u32 = 4;

const NLMSG_HDRLEN: usize = 16;
/// `SCSI_TRANSPORT_MSG` = `NLMSG_MIN_TYPE + 1`.
const SCSI_TRANSPORT_MSG: u16 = 0x11;
const SCSI_NL_VERSION: u8 = 1;
const SCSI_NL_TRANSPORT_FC: u8 = 1;
const SCSI_NL_MAGIC: u16 = 0xA1B2;
const FC_NL_ASYNC_EVENT: u16 = 0x0100;
/// `sizeof(struct fc_nl_event)`, the 4-byte `event_data` union included.
const FC_NL_EVENT_LEN: usize = 40;

/// `enum fc_host_event_code` (include/scsi/scsi_transport_fc.h), by the names the
/// kernel's `get_fc_host_event_code_name` uses without `FCH_EVT_`.
const CODES: &[(&str, u32)] = &[
    ("LIP", 0x1),
    ("LINKUP", 0x2),
    ("LINKDOWN", 0x3),
    ("LIPRESET", 0x4),
    ("RSCN", 0x5),
    ("ADAPTER_CHANGE", 0x103),
    ("PORT_UNKNOWN", 0x200),
    ("PORT_OFFLINE", 0x201),
    ("PORT_ONLINE", 0x202),
    ("PORT_FABRIC", 0x204),
    ("LINK_UNKNOWN", 0x500),
    ("LINK_FPIN", 0x501),
    ("VENDOR_UNIQUE", 0xffff),
];

/// An event code by name (`LINKUP`) or number (`2`, `0x501`).
pub fn parse_code(text: &str) -> Result<u32, String> {
    if let Some((_, c)) = CODES.iter().find(|(n, _)| n.eq_ignore_ascii_case(text)) {
        return Ok(*c);
    }
    let parsed = match text.strip_prefix("0x") {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => text.parse(),
    };
    parsed.map_err(|_| {
        let names: Vec<&str> = CODES.iter().map(|(n, _)| *n).collect();
        format!(
            "event code {text:?}: one of {} or a number",
            names.join(" ")
        )
    })
}

/// How a forged datagram lies, beyond its sender.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// Exactly what `fc_host_post_event` sends.
    WellFormed,
    /// Cut inside the `scsi_nl_hdr`; `nlmsg_len` still claims the whole event.
    Truncated,
    /// Whole, but `nlmsg_len`, `msglen` and `event_datalen` claim about 64 KiB.
    Oversized,
}

impl Shape {
    pub fn parse(text: &str) -> Result<Shape, String> {
        match text {
            "well-formed" => Ok(Shape::WellFormed),
            "truncated" => Ok(Shape::Truncated),
            "oversized" => Ok(Shape::Oversized),
            _ => Err(format!(
                "--shape {text}: well-formed, truncated or oversized"
            )),
        }
    }
}

/// One event as `fc_host_post_event` lays it out: 4 bytes of `event_data`,
/// `msglen` = `FC_NL_MSGALIGN(sizeof(struct fc_nl_event) + 4)`, `vendor_id` 0.
pub fn event(host_no: u16, code: u32, event_num: u32, seconds: u64, data: u32) -> Vec<u8> {
    let msglen = (FC_NL_EVENT_LEN + 4 + 7) & !7;
    let mut b = Vec::with_capacity(NLMSG_HDRLEN + msglen);
    b.extend_from_slice(&((NLMSG_HDRLEN + msglen) as u32).to_ne_bytes());
    b.extend_from_slice(&SCSI_TRANSPORT_MSG.to_ne_bytes());
    b.extend_from_slice(&[0; 10]); // nlmsg_flags, nlmsg_seq, nlmsg_pid
    b.extend_from_slice(&[SCSI_NL_VERSION, SCSI_NL_TRANSPORT_FC]);
    b.extend_from_slice(&SCSI_NL_MAGIC.to_ne_bytes());
    b.extend_from_slice(&FC_NL_ASYNC_EVENT.to_ne_bytes());
    b.extend_from_slice(&(msglen as u16).to_ne_bytes());
    b.extend_from_slice(&seconds.to_ne_bytes());
    b.extend_from_slice(&0u64.to_ne_bytes()); // vendor_id
    b.extend_from_slice(&host_no.to_ne_bytes());
    b.extend_from_slice(&4u16.to_ne_bytes()); // event_datalen
    b.extend_from_slice(&event_num.to_ne_bytes());
    b.extend_from_slice(&code.to_ne_bytes());
    b.extend_from_slice(&data.to_ne_bytes());
    b.resize(NLMSG_HDRLEN + msglen, 0);
    b
}

/// A well-formed event made to lie as `shape` says.
pub fn shaped(mut datagram: Vec<u8>, shape: Shape) -> Vec<u8> {
    match shape {
        Shape::WellFormed => {}
        Shape::Truncated => datagram.truncate(NLMSG_HDRLEN + 4),
        Shape::Oversized => {
            let msglen: u16 = 0xfff8;
            datagram[0..4]
                .copy_from_slice(&(NLMSG_HDRLEN as u32 + u32::from(msglen)).to_ne_bytes());
            datagram[22..24].copy_from_slice(&msglen.to_ne_bytes());
            datagram[42..44].copy_from_slice(&u16::MAX.to_ne_bytes());
        }
    }
    datagram
}

/// Sends one datagram to `group` from a fresh socket, as root can; returns the
/// portid the kernel gave the socket (what a listener sees as the sender). The
/// kernel's own socket gets a copy too (destination portid 0) and discards it.
pub fn send(datagram: &[u8], group: u32) -> io::Result<u32> {
    if !(1..=32).contains(&group) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("group {group}: 1..32"),
        ));
    }
    // SAFETY: plain socket calls on a descriptor this function owns; the
    // addresses are zeroed sockaddr_nl of the size passed.
    unsafe {
        let fd = libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            NETLINK_SCSITRANSPORT,
        );
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let result = (|| {
            let mut local: libc::sockaddr_nl = mem::zeroed();
            local.nl_family = libc::AF_NETLINK as libc::sa_family_t;
            let len = mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
            if libc::bind(fd, &local as *const _ as *const libc::sockaddr, len) < 0 {
                return Err(io::Error::last_os_error());
            }
            let mut got_len = len;
            if libc::getsockname(
                fd,
                &mut local as *mut _ as *mut libc::sockaddr,
                &mut got_len,
            ) < 0
            {
                return Err(io::Error::last_os_error());
            }
            let mut to: libc::sockaddr_nl = mem::zeroed();
            to.nl_family = libc::AF_NETLINK as libc::sa_family_t;
            to.nl_groups = 1 << (group - 1);
            let sent = libc::sendto(
                fd,
                datagram.as_ptr().cast(),
                datagram.len(),
                0,
                &to as *const _ as *const libc::sockaddr,
                len,
            );
            if sent < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(local.nl_pid)
        })();
        libc::close(fd);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// LINKUP on host 5, event 77, laid out field by field from the uapi headers
    /// on a little-endian machine (the lab's), independently of `event`.
    const LINKUP: [u8; 64] = [
        64, 0, 0, 0, // nlmsg_len: 16 + 48
        0x11, 0, // nlmsg_type SCSI_TRANSPORT_MSG
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // nlmsg_flags, nlmsg_seq, nlmsg_pid
        1, 1, // scsi_nl_hdr.version, .transport (FC)
        0xb2, 0xa1, // .magic 0xA1B2
        0x00, 0x01, // .msgtype FC_NL_ASYNC_EVENT
        48, 0, // .msglen FC_NL_MSGALIGN(40 + 4)
        0x00, 0xf1, 0x53, 0x65, 0, 0, 0, 0, // seconds 1_700_000_000
        0, 0, 0, 0, 0, 0, 0, 0, // vendor_id
        5, 0, // host_no
        4, 0, // event_datalen
        77, 0, 0, 0, // event_num
        2, 0, 0, 0, // event_code FCH_EVT_LINKUP
        0xad, 0xde, 0, 0, // event_data
        0, 0, 0, 0, 0, 0, 0, 0, // FC_NL_MSGALIGN padding
    ];

    #[test]
    #[cfg(target_endian = "little")]
    fn a_linkup_is_laid_out_as_the_kernel_headers_say() {
        assert_eq!(event(5, 2, 77, 1_700_000_000, 0xdead), LINKUP);
    }

    #[test]
    fn shapes_lie_where_they_say() {
        let ok = event(5, 2, 77, 0, 0);
        assert_eq!(shaped(ok.clone(), Shape::WellFormed), ok);
        let cut = shaped(ok.clone(), Shape::Truncated);
        assert_eq!(cut.len(), 20);
        assert_eq!(cut[..], ok[..20], "a prefix, nlmsg_len still 64");
        let big = shaped(ok.clone(), Shape::Oversized);
        assert_eq!(big.len(), 64);
        let u32_at = |at: usize| u32::from_ne_bytes(big[at..at + 4].try_into().unwrap());
        let u16_at = |at: usize| u16::from_ne_bytes(big[at..at + 2].try_into().unwrap());
        assert_eq!(u32_at(0), 16 + 0xfff8);
        assert_eq!(u16_at(22), 0xfff8);
        assert_eq!(u16_at(42), 0xffff);
        assert_eq!(big[24..42], ok[24..42], "the rest as sent");
    }

    #[test]
    fn codes_by_name_or_number() {
        assert_eq!(parse_code("LINKUP"), Ok(2));
        assert_eq!(parse_code("lipreset"), Ok(4));
        assert_eq!(parse_code("0x501"), Ok(0x501));
        assert_eq!(parse_code("3"), Ok(3));
        assert!(parse_code("LINKSIDEWAYS").unwrap_err().contains("LINKUP"));
        assert!(Shape::parse("huge").is_err());
    }

    #[test]
    fn the_group_is_checked_before_any_socket() {
        assert_eq!(
            send(&[], 0).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        assert!(send(&[], 33).is_err());
    }
}

//! Kernel uevents as one owned type, whatever source they came from.
//!
//! The kernel, udev and the replay files all deliver the same thing: an action on a
//! devpath with `KEY=VALUE` properties. Everything past the sources works on
//! [`Uevent`] and never on bytes, so a forged or truncated message is rejected here,
//! once, with a reason.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::Serialize;

pub mod fc_event;
pub mod kernel;
pub mod replay;
pub mod source;
pub mod udev;

/// What happened to the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Add,
    Remove,
    Change,
    Move,
    Online,
    Offline,
    Bind,
    Unbind,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Add => "add",
            Action::Remove => "remove",
            Action::Change => "change",
            Action::Move => "move",
            Action::Online => "online",
            Action::Offline => "offline",
            Action::Bind => "bind",
            Action::Unbind => "unbind",
        }
    }
}

impl FromStr for Action {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Ok(match s {
            "add" => Action::Add,
            "remove" => Action::Remove,
            "change" => Action::Change,
            "move" => Action::Move,
            "online" => Action::Online,
            "offline" => Action::Offline,
            "bind" => Action::Bind,
            "unbind" => Action::Unbind,
            _ => return Err(()),
        })
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One uevent, owned and sendable across threads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Uevent {
    pub action: Action,
    /// Relative to the sysfs root, with a leading slash: `/devices/pseudo_0/...`.
    pub devpath: String,
    pub subsystem: String,
    pub devtype: Option<String>,
    pub seqnum: Option<u64>,
    /// Every other property (`SDEV_UA`, `DEVNAME`, `DEVLINKS`, `DEVPATH_OLD`, ...).
    pub props: BTreeMap<String, String>,
}

impl Uevent {
    pub fn new(action: Action, devpath: &str, subsystem: &str) -> Self {
        Uevent {
            action,
            devpath: devpath.to_string(),
            subsystem: subsystem.to_string(),
            devtype: None,
            seqnum: None,
            props: BTreeMap::new(),
        }
    }

    pub fn with_devtype(mut self, devtype: &str) -> Self {
        self.devtype = Some(devtype.to_string());
        self
    }

    pub fn with_prop(mut self, key: &str, value: &str) -> Self {
        self.props.insert(key.to_string(), value.to_string());
        self
    }

    pub fn prop(&self, key: &str) -> Option<&str> {
        self.props.get(key).map(String::as_str)
    }

    /// The unit attention the midlayer reported (`SDEV_UA=...`), if any.
    pub fn unit_attention(&self) -> Option<&str> {
        self.prop("SDEV_UA")
    }

    /// The datagram the kernel would send for this event on netlink group 1.
    pub fn to_kernel_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        let mut push = |s: &str| {
            out.extend_from_slice(s.as_bytes());
            out.push(0);
        };
        push(&format!("{}@{}", self.action, self.devpath));
        push(&format!("ACTION={}", self.action));
        push(&format!("DEVPATH={}", self.devpath));
        push(&format!("SUBSYSTEM={}", self.subsystem));
        if let Some(devtype) = &self.devtype {
            push(&format!("DEVTYPE={devtype}"));
        }
        for (k, v) in &self.props {
            push(&format!("{k}={v}"));
        }
        if let Some(seqnum) = self.seqnum {
            push(&format!("SEQNUM={seqnum}"));
        }
        out
    }

    /// The fields hbad acts on, borrowed from this event.
    pub fn view(&self) -> UeventRef<'_> {
        UeventRef::from(self)
    }

    /// Builds an event from its properties, as udev and the kernel both give them.
    pub fn from_props<'a, I>(props: I) -> Result<Uevent, ParseError>
    where
        I: IntoIterator<Item = (&'a str, &'a str)>,
    {
        // The keys every event has become fields without a trip through the map;
        // a key given twice keeps its last value, as a map would.
        let mut keys = Keys::default();
        let mut rest = BTreeMap::new();
        for (k, v) in props {
            if !keys.take(k, v) {
                rest.insert(k.to_string(), v.to_string());
            }
        }
        let ev = keys.check()?;
        Ok(Uevent {
            action: ev.action,
            devpath: ev.devpath.to_string(),
            subsystem: ev.subsystem.to_string(),
            devtype: ev.devtype.map(str::to_string),
            seqnum: ev.seqnum,
            props: rest,
        })
    }
}

/// The keys hbad reads, as they are found among an event's properties: those
/// every uevent has, which become fields of [`Uevent`], and the few others hbad
/// acts on, which an owned event keeps among its properties.
#[derive(Default)]
struct Keys<'a> {
    action: Option<&'a str>,
    devpath: Option<&'a str>,
    subsystem: Option<&'a str>,
    devtype: Option<&'a str>,
    seqnum: Option<&'a str>,
    unit_attention: Option<&'a str>,
    media_change: Option<&'a str>,
    devlinks: Option<&'a str>,
    /// A devpath too, checked with `DEVPATH` so that every source's events are.
    devpath_old: Option<&'a str>,
    synth_uuid: Option<&'a str>,
}

/// A key [`Keys`] reads, as [`Keys::take_once`] took it.
struct Taken {
    /// Every uevent has it.
    core: bool,
    /// It was taken before.
    again: bool,
}

impl<'a> Keys<'a> {
    /// Keeps `k` if hbad reads it; says whether it is one every uevent has.
    fn take(&mut self, k: &str, v: &'a str) -> bool {
        self.take_once(k, v).is_some_and(|t| t.core)
    }

    /// [`Keys::take`], saying also whether `k` was taken before; `None` for a
    /// key hbad does not read.
    fn take_once(&mut self, k: &str, v: &'a str) -> Option<Taken> {
        let (slot, core) = match k {
            "ACTION" => (&mut self.action, true),
            "DEVPATH" => (&mut self.devpath, true),
            "SUBSYSTEM" => (&mut self.subsystem, true),
            "DEVTYPE" => (&mut self.devtype, true),
            "SEQNUM" => (&mut self.seqnum, true),
            "SDEV_UA" => (&mut self.unit_attention, false),
            "SDEV_MEDIA_CHANGE" => (&mut self.media_change, false),
            "DEVLINKS" => (&mut self.devlinks, false),
            "DEVPATH_OLD" => (&mut self.devpath_old, false),
            "SYNTH_UUID" => (&mut self.synth_uuid, false),
            _ => return None,
        };
        let again = slot.replace(v).is_some();
        Some(Taken { core, again })
    }

    /// What every source of uevents must give, whatever its format.
    fn check(self) -> Result<UeventRef<'a>, ParseError> {
        let action_text = self.action.ok_or(ParseError::MissingKey("ACTION"))?;
        let action = action_text
            .parse()
            .map_err(|_| ParseError::UnknownAction(action_text.to_string()))?;
        let devpath = self.devpath.ok_or(ParseError::MissingKey("DEVPATH"))?;
        check_devpath("DEVPATH", devpath)?;
        if let Some(old) = self.devpath_old {
            check_devpath("DEVPATH_OLD", old)?;
        }
        let subsystem = self.subsystem.ok_or(ParseError::MissingKey("SUBSYSTEM"))?;
        let seqnum = match self.seqnum {
            Some(s) => Some(
                s.parse()
                    .map_err(|_| ParseError::BadSeqnum(s.to_string()))?,
            ),
            None => None,
        };
        Ok(UeventRef {
            action,
            devpath,
            subsystem,
            devtype: self.devtype,
            seqnum,
            unit_attention: self.unit_attention,
            media_change: self.media_change,
            devlinks: self.devlinks,
            devpath_old: self.devpath_old,
            synth_uuid: self.synth_uuid,
        })
    }
}

/// A uevent read in place: the fields hbad acts on, borrowed from the datagram
/// they arrived in (or from a [`Uevent`]). Reading one allocates nothing, so the
/// daemon takes a storm of unit attentions straight from its receive buffer; the
/// properties hbad never looks at are checked and skipped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UeventRef<'a> {
    pub action: Action,
    /// As in [`Uevent::devpath`]: absolute, never climbing out with `..`.
    pub devpath: &'a str,
    pub subsystem: &'a str,
    pub devtype: Option<&'a str>,
    pub seqnum: Option<u64>,
    /// `SDEV_UA`: the unit attention the midlayer reported.
    pub unit_attention: Option<&'a str>,
    /// `SDEV_MEDIA_CHANGE`.
    pub media_change: Option<&'a str>,
    /// `DEVLINKS`: the links udev made (udev's events only).
    pub devlinks: Option<&'a str>,
    /// `DEVPATH_OLD`: where a `move` came from.
    pub devpath_old: Option<&'a str>,
    /// `SYNTH_UUID`: the event was written to the device's `uevent` file
    /// (`udevadm trigger`, `echo remove > uevent`), not sent because the device
    /// changed. Its action is what the writer asked for, not what happened.
    pub synth_uuid: Option<&'a str>,
}

impl UeventRef<'_> {
    /// Made by a write to a `uevent` file rather than by the device changing
    /// (`kobject_synth_uevent` adds `SYNTH_UUID`, `0` when no UUID was given).
    pub fn is_synthetic(&self) -> bool {
        self.synth_uuid.is_some()
    }
}

impl UeventRef<'_> {
    /// The owned event, with only the properties a view keeps.
    pub fn to_owned_event(&self) -> Uevent {
        let mut ev = Uevent::new(self.action, self.devpath, self.subsystem);
        ev.devtype = self.devtype.map(str::to_string);
        ev.seqnum = self.seqnum;
        for (k, v) in [
            ("SDEV_UA", self.unit_attention),
            ("SDEV_MEDIA_CHANGE", self.media_change),
            ("DEVLINKS", self.devlinks),
            ("DEVPATH_OLD", self.devpath_old),
            ("SYNTH_UUID", self.synth_uuid),
        ] {
            if let Some(v) = v {
                ev.props.insert(k.to_string(), v.to_string());
            }
        }
        ev
    }
}

impl<'a> From<&'a Uevent> for UeventRef<'a> {
    fn from(ev: &'a Uevent) -> Self {
        UeventRef {
            action: ev.action,
            devpath: &ev.devpath,
            subsystem: &ev.subsystem,
            devtype: ev.devtype.as_deref(),
            seqnum: ev.seqnum,
            unit_attention: ev.prop("SDEV_UA"),
            media_change: ev.prop("SDEV_MEDIA_CHANGE"),
            devlinks: ev.prop("DEVLINKS"),
            devpath_old: ev.prop("DEVPATH_OLD"),
            synth_uuid: ev.prop("SYNTH_UUID"),
        }
    }
}

impl fmt::Display for UeventRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{} ({})", self.action, self.devpath, self.subsystem)
    }
}

impl fmt::Display for Uevent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{} ({})", self.action, self.devpath, self.subsystem)
    }
}

/// The kernel's environment buffer for one uevent (`UEVENT_BUFFER_SIZE` in
/// `include/linux/kobject.h`): every `KEY=VALUE` string of the event, each with
/// its NUL, fits in these bytes together (`add_uevent_var` refuses one more).
pub const UEVENT_BUFFER_SIZE: usize = 2048;

/// The most components a devpath may have. The kernel sets no limit, but a real
/// device sits a few dozen deep at most (an FC disk on a vHBA behind nested PCIe
/// switches: about 20); anything past this is forged, and walking it costs time.
pub const MAX_DEVPATH_DEPTH: usize = 128;

/// Checks a devpath-valued property (`DEVPATH`, `DEVPATH_OLD`): as long as the
/// kernel can send, as deep as a device can be, absolute and never climbing
/// out with `..`. Every source's events pass here, so that no forged or replayed
/// path costs the graph more than a real one.
fn check_devpath(key: &'static str, devpath: &str) -> Result<(), ParseError> {
    // `KEY=` and the NUL share the buffer with the value.
    let max = UEVENT_BUFFER_SIZE - key.len() - 2;
    if devpath.len() > max {
        return Err(ParseError::DevpathTooLong {
            key,
            len: devpath.len(),
            max,
        });
    }
    let bytes = devpath.as_bytes();
    let depth = memchr::memchr_iter(b'/', bytes).count();
    // A component that is `..` (with the leading `/`, the same as containing
    // `/../` or ending in `/..`), looked for at the few dots a devpath has.
    let climbs = memchr::memchr_iter(b'.', bytes).any(|i| {
        i > 0
            && bytes[i - 1] == b'/'
            && bytes.get(i + 1) == Some(&b'.')
            && matches!(bytes.get(i + 2), None | Some(b'/'))
    });
    if depth > MAX_DEVPATH_DEPTH {
        return Err(ParseError::DevpathTooDeep {
            key,
            depth,
            max: MAX_DEVPATH_DEPTH,
        });
    }
    if !devpath.starts_with('/') || climbs {
        return Err(ParseError::BadDevpath(devpath.to_string()));
    }
    Ok(())
}

/// Why a message is not a uevent we can use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("empty message")]
    Empty,
    #[error("message is not NUL-terminated (truncated?)")]
    Truncated,
    #[error("header `{0}` is not `action@devpath`")]
    BadHeader(String),
    #[error("a libudev message arrived on the kernel socket")]
    UdevFormat,
    #[error("bytes that are not UTF-8 in field {0}")]
    NotUtf8(usize),
    #[error("field `{0}` is not KEY=VALUE")]
    BadField(String),
    #[error("missing key {0}")]
    MissingKey(&'static str),
    #[error("unknown action `{0}`")]
    UnknownAction(String),
    #[error("devpath `{0}` is not an absolute sysfs path")]
    BadDevpath(String),
    #[error(
        "{key} is {len} bytes; the kernel sends at most {max} \
         (a uevent's properties share {UEVENT_BUFFER_SIZE} bytes)"
    )]
    DevpathTooLong {
        key: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{key} has {depth} components; hbad takes at most {max}")]
    DevpathTooDeep {
        key: &'static str,
        depth: usize,
        max: usize,
    },
    #[error("SEQNUM `{0}` is not a number")]
    BadSeqnum(String),
    #[error("header says `{header}` but {key} says `{value}`")]
    HeaderMismatch {
        header: String,
        key: &'static str,
        value: String,
    },
    #[error("key {0} appears twice")]
    DuplicateKey(String),
}

/// Parses one datagram of the kernel's uevent group: `action@devpath\0KEY=VALUE\0...`.
///
/// The kernel terminates every string with NUL, so a message whose last byte is not
/// NUL was cut short and is rejected rather than guessed at.
pub fn parse_kernel(bytes: &[u8]) -> Result<Uevent, ParseError> {
    let mut props = BTreeMap::new();
    let ev = parse_datagram(bytes, |k, v| {
        props.insert(k.to_string(), v.to_string());
    })?;
    Ok(Uevent {
        action: ev.action,
        devpath: ev.devpath.to_string(),
        subsystem: ev.subsystem.to_string(),
        devtype: ev.devtype.map(str::to_string),
        seqnum: ev.seqnum,
        props,
    })
}

/// Parses one datagram as [`parse_kernel`] does, with the same checks and the
/// same errors, into fields borrowed from it: nothing is allocated for an event
/// the kernel could have sent.
pub fn parse_kernel_ref(bytes: &[u8]) -> Result<UeventRef<'_>, ParseError> {
    parse_datagram(bytes, |_, _| {})
}

/// The fields of a message, as `text.split('\0')` gives them, found with the
/// memchr crate's SIMD search (a devpath field is a hundred bytes).
fn nul_separated(text: &str) -> impl Iterator<Item = &str> {
    let mut left = Some(text);
    std::iter::from_fn(move || {
        let t = left?;
        match memchr::memchr(0, t.as_bytes()) {
            Some(i) => {
                left = Some(&t[i + 1..]);
                Some(&t[..i])
            }
            None => {
                left = None;
                Some(t)
            }
        }
    })
}

/// `KEY=value` -> (`KEY`, `value`); `None` without an `=` or with no key.
fn split_key(field: &str) -> Option<(&str, &str)> {
    let at = field.bytes().position(|b| b == b'=')?;
    (at > 0).then(|| (&field[..at], &field[at + 1..]))
}

/// Checks a datagram field by field, in order, so that the first bad field is the
/// one named; hands every property besides the core keys to `rest`.
fn parse_datagram<'a>(
    bytes: &'a [u8],
    mut rest: impl FnMut(&'a str, &'a str),
) -> Result<UeventRef<'a>, ParseError> {
    if bytes.is_empty() {
        return Err(ParseError::Empty);
    }
    if bytes.starts_with(b"libudev\0") {
        return Err(ParseError::UdevFormat);
    }
    let Some((&0, body)) = bytes.split_last() else {
        return Err(ParseError::Truncated);
    };
    // The message is checked for UTF-8 at once, not field by field: that is most
    // of what reading it costs. Bytes that are not UTF-8 are still reported as a
    // field-by-field read would report them: the fields before theirs are read
    // first, in order, and any error there comes first.
    let (text, not_utf8) = match std::str::from_utf8(body) {
        Ok(text) => (text, None),
        Err(e) => {
            let valid = &body[..e.valid_up_to()];
            let Some(end) = valid.iter().rposition(|&b| b == 0) else {
                return Err(ParseError::NotUtf8(0));
            };
            let field = valid.iter().filter(|&&b| b == 0).count();
            let before = std::str::from_utf8(&body[..end]).map_err(|_| ParseError::NotUtf8(0))?;
            (before, Some(field))
        }
    };
    let mut fields = nul_separated(text);
    let header = fields.next().unwrap_or_default();
    let Some((h_action, h_devpath)) = header.split_once('@') else {
        return Err(ParseError::BadHeader(header.to_string()));
    };
    // A key hbad reads is repeated when [`Keys`] had it already. The others are
    // compared with the others before them: below SEEN_ON_STACK on the stack,
    // past it (only a forged or corrupt message) through a set, so that no
    // message costs quadratic time. A kernel message has a dozen keys, most of
    // them ones hbad reads.
    const SEEN_ON_STACK: usize = 32;
    let mut few = [""; SEEN_ON_STACK];
    let mut others = 0;
    let mut many = std::collections::HashSet::new();
    let mut keys = Keys::default();
    for field in fields {
        let Some((k, v)) = split_key(field) else {
            return Err(ParseError::BadField(field.to_string()));
        };
        let (repeated, core) = match keys.take_once(k, v) {
            Some(taken) => (taken.again, taken.core),
            None => {
                let seen = if others < SEEN_ON_STACK {
                    let seen = few[..others].contains(&k);
                    few[others] = k;
                    seen
                } else {
                    if others == SEEN_ON_STACK {
                        many.extend(few);
                    }
                    !many.insert(k)
                };
                others += 1;
                (seen, false)
            }
        };
        if repeated {
            return Err(ParseError::DuplicateKey(k.to_string()));
        }
        if !core {
            rest(k, v);
        }
    }
    if let Some(field) = not_utf8 {
        return Err(ParseError::NotUtf8(field));
    }
    let event = keys.check()?;
    let mismatch = |key, value: &str| ParseError::HeaderMismatch {
        header: header.to_string(),
        key,
        value: value.to_string(),
    };
    if event.action.as_str() != h_action {
        return Err(mismatch("ACTION", event.action.as_str()));
    }
    if event.devpath != h_devpath {
        return Err(mismatch("DEVPATH", event.devpath));
    }
    Ok(event)
}

/// What a source yields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceItem {
    Event(Uevent),
    /// The source knows events were lost (ENOBUFS): the only repair is a resync.
    Overflow,
    /// A message was dropped: not from the kernel (or root, for udev), or malformed.
    Rejected(Rejection),
}

/// What a source yields, read in place: an event's fields borrow the source's
/// receive buffer and last until the next receive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceItemRef<'a> {
    Event(UeventRef<'a>),
    Overflow,
    Rejected(Rejection),
}

impl SourceItemRef<'_> {
    /// The owned item, with only the properties an event read in place keeps.
    pub fn to_owned_item(&self) -> SourceItem {
        match self {
            SourceItemRef::Event(ev) => SourceItem::Event(ev.to_owned_event()),
            SourceItemRef::Overflow => SourceItem::Overflow,
            SourceItemRef::Rejected(r) => SourceItem::Rejected(r.clone()),
        }
    }
}

impl<'a> From<&'a SourceItem> for SourceItemRef<'a> {
    fn from(item: &'a SourceItem) -> Self {
        match item {
            SourceItem::Event(ev) => SourceItemRef::Event(ev.view()),
            SourceItem::Overflow => SourceItemRef::Overflow,
            SourceItem::Rejected(r) => SourceItemRef::Rejected(r.clone()),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("forged: sent by portid {0}, not the kernel")]
    NotKernel(u32),
    #[error("forged: sent by uid {0}, not root")]
    NotRoot(u32),
    #[error("no sender credentials")]
    NoCredentials,
    #[error("malformed: {0}")]
    Malformed(ParseError),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(parts: &[&str]) -> Vec<u8> {
        let mut v = Vec::new();
        for p in parts {
            v.extend_from_slice(p.as_bytes());
            v.push(0);
        }
        v
    }

    #[test]
    fn a_uevent_written_to_a_uevent_file_is_known_as_synthetic() {
        let bytes = msg(&[
            "remove@/devices/x/block/sdb",
            "ACTION=remove",
            "DEVPATH=/devices/x/block/sdb",
            "SUBSYSTEM=block",
            "SYNTH_UUID=0",
            "SEQNUM=7",
        ]);
        let ev = parse_kernel_ref(&bytes).unwrap();
        assert!(ev.is_synthetic());
        let owned = parse_kernel(&bytes).unwrap();
        assert!(owned.view().is_synthetic());
        assert!(owned.view().to_owned_event().view().is_synthetic());
        let genuine = msg(&[
            "remove@/devices/x/block/sdb",
            "ACTION=remove",
            "DEVPATH=/devices/x/block/sdb",
            "SUBSYSTEM=block",
        ]);
        assert!(!parse_kernel_ref(&genuine).unwrap().is_synthetic());
    }

    const UA: &[&str] = &[
        "change@/devices/pseudo_0/adapter0/host2/target2:0:0/2:0:0:0",
        "ACTION=change",
        "DEVPATH=/devices/pseudo_0/adapter0/host2/target2:0:0/2:0:0:0",
        "SUBSYSTEM=scsi",
        "SDEV_UA=REPORTED_LUNS_DATA_HAS_CHANGED",
        "DEVTYPE=scsi_device",
        "DRIVER=sd",
        "MODALIAS=scsi:t-0x00",
        "SEQNUM=936",
    ];

    #[test]
    fn parses_a_unit_attention_as_the_kernel_sends_it() {
        let ev = parse_kernel(&msg(UA)).unwrap();
        assert_eq!(ev.action, Action::Change);
        assert_eq!(ev.subsystem, "scsi");
        assert_eq!(ev.devtype.as_deref(), Some("scsi_device"));
        assert_eq!(ev.seqnum, Some(936));
        assert_eq!(ev.unit_attention(), Some("REPORTED_LUNS_DATA_HAS_CHANGED"));
        assert_eq!(parse_kernel(&ev.to_kernel_bytes()).unwrap(), ev);
    }

    #[test]
    fn rejects_truncated_messages_at_every_length() {
        let full = msg(UA);
        for len in 0..full.len() {
            // Every prefix either ends off a NUL (truncated) or lacks a key: never Ok, never panics.
            let cut = &full[..len];
            if len > 0 && cut[len - 1] == 0 {
                let _ = parse_kernel(cut);
            } else {
                assert!(parse_kernel(cut).is_err(), "prefix of {len} bytes accepted");
            }
        }
    }

    #[test]
    fn rejects_bad_messages_with_reasons() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"libudev\0\xfe\xed\xca\xfe".to_vec(), "libudev"),
            (msg(&["noat", "ACTION=add"]), "action@devpath"),
            (msg(&["add@/x", "ACTION=add", "SUBSYSTEM=scsi"]), "DEVPATH"),
            (msg(&["add@/x", "ACTION=add", "DEVPATH=/x"]), "SUBSYSTEM"),
            (
                msg(&["add@/x", "ACTION=add", "DEVPATH=/y", "SUBSYSTEM=s"]),
                "header",
            ),
            (
                msg(&["eat@/x", "ACTION=eat", "DEVPATH=/x", "SUBSYSTEM=s"]),
                "unknown action",
            ),
            (
                msg(&["add@x", "ACTION=add", "DEVPATH=x", "SUBSYSTEM=s"]),
                "absolute",
            ),
            (
                msg(&[
                    "add@/x",
                    "ACTION=add",
                    "DEVPATH=/x",
                    "SUBSYSTEM=s",
                    "SEQNUM=z",
                ]),
                "SEQNUM",
            ),
            (
                msg(&["add@/x", "ACTION=add", "DEVPATH=/x", "SUBSYSTEM=s", "JUNK"]),
                "KEY=VALUE",
            ),
            (
                msg(&["add@/x", "ACTION=add", "ACTION=add", "DEVPATH=/x"]),
                "twice",
            ),
            (
                b"add@/x\0ACTION=add\0DEVPATH=/\xff\0SUBSYSTEM=s\0".to_vec(),
                "UTF-8",
            ),
            (
                msg(&[
                    "move@/x",
                    "ACTION=move",
                    "DEVPATH=/x",
                    "DEVPATH_OLD=y/../z",
                    "SUBSYSTEM=s",
                ]),
                "absolute",
            ),
        ];
        for (bytes, want) in cases {
            let err = parse_kernel(&bytes).unwrap_err().to_string();
            assert!(err.contains(want), "expected `{want}` in `{err}`");
        }
    }

    #[test]
    fn bytes_that_are_not_utf8_are_named_by_their_field_after_the_errors_before_them() {
        let with = |fields: &[&[u8]]| {
            let mut v = Vec::new();
            for f in fields {
                v.extend_from_slice(f);
                v.push(0);
            }
            v
        };
        let head: &[&[u8]] = &[b"add@/x", b"ACTION=add", b"DEVPATH=/x", b"SUBSYSTEM=s"];
        for bad in 0..head.len() {
            let mut fields = head.to_vec();
            let mut field = fields[bad].to_vec();
            field.push(0xff);
            fields[bad] = &field;
            assert_eq!(
                parse_kernel_ref(&with(&fields)),
                Err(ParseError::NotUtf8(bad))
            );
            assert_eq!(parse_kernel(&with(&fields)), Err(ParseError::NotUtf8(bad)));
        }
        // A field before the bad bytes that is wrong itself is the one named.
        let err = parse_kernel(&with(&[b"add@/x", b"JUNK", b"A=\xff"])).unwrap_err();
        assert_eq!(err, ParseError::BadField("JUNK".into()));
        let err = parse_kernel(&with(&[b"add@/x", b"A=1", b"A=2", b"\xff"])).unwrap_err();
        assert_eq!(err, ParseError::DuplicateKey("A".into()));
        // After them, whatever is missing is never looked at.
        let err = parse_kernel(&with(&[b"add@/x", b"ACTION=add", b"\xfe=1"])).unwrap_err();
        assert_eq!(err, ParseError::NotUtf8(2));
    }

    /// An event whose devpath (or old devpath) is `path`, as the kernel sends it.
    fn with_path(key: &str, path: &str) -> Vec<u8> {
        let old = format!("DEVPATH_OLD={path}");
        let (devpath, old) = match key {
            "DEVPATH" => (path, None),
            _ => ("/devices/x", Some(old.as_str())),
        };
        let header = format!("move@{devpath}");
        let devpath = format!("DEVPATH={devpath}");
        let mut parts = vec![header.as_str(), "ACTION=move", devpath.as_str()];
        parts.extend(old);
        parts.push("SUBSYSTEM=scsi");
        msg(&parts)
    }

    #[test]
    fn a_devpath_longer_or_deeper_than_the_kernel_sends_is_refused_with_the_bound() {
        for key in ["DEVPATH", "DEVPATH_OLD"] {
            let max = UEVENT_BUFFER_SIZE - key.len() - 2;
            // The longest the kernel can send, in few components, is taken.
            let longest = format!("/devices/{}", "a".repeat(max - "/devices/".len()));
            assert!(parse_kernel(&with_path(key, &longest)).is_ok(), "{key}");
            let err = parse_kernel(&with_path(key, &format!("{longest}b"))).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!(
                    "{key} is {} bytes; the kernel sends at most {max} \
                     (a uevent's properties share 2048 bytes)",
                    max + 1
                )
            );
            // Short but deep: the depth is bounded on its own.
            let deepest = "/a".repeat(MAX_DEVPATH_DEPTH);
            assert!(parse_kernel(&with_path(key, &deepest)).is_ok(), "{key}");
            let err = parse_kernel(&with_path(key, &format!("{deepest}/b"))).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!(
                    "{key} has {} components; hbad takes at most {MAX_DEVPATH_DEPTH}",
                    MAX_DEVPATH_DEPTH + 1
                )
            );
        }
        // udev's events are built from the same properties, through the same gate.
        let deep = "/a".repeat(400_000);
        let err =
            Uevent::from_props([("ACTION", "add"), ("DEVPATH", &deep), ("SUBSYSTEM", "scsi")])
                .unwrap_err();
        assert!(
            matches!(err, ParseError::DevpathTooLong { len: 800_000, .. }),
            "{err}"
        );
    }
}

//! The policy: which vHBAs must exist, and how new storage is found.
//!
//! Policy files are written by config management, so they are read in three stages
//! (the zincati way): each file is parsed on its own into a fragment whose values
//! keep their spans ([`fragment`]); the fragments are merged in drop-in order; the
//! merged inputs are validated into the typed [`Policy`] the rest of hbad uses. Every
//! problem in every file is reported at once, with file:line:column and a hint, and
//! a policy with any error is rejected whole: nothing is half-applied.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::ownership::{OwnedState, OWNER_PREFIX};
use crate::terminal::echoed;
use crate::wwn::{derive, Wwn, WwnRole, DEFAULT_OUI};

pub mod error;
mod fragment;
pub mod limits;
mod read;
mod sources;

pub use error::{LineIndex, Origin, PolicyError, PolicyErrors};
pub use read::Perms;
pub use sources::{discover, SearchPaths};

use fragment::{HostFilterFragment, ParsedFile, S};

/// How a vHBA's parent HBA is chosen. Never by host number alone: those change
/// across boots.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "by", rename_all = "snake_case")]
pub enum ParentSelector {
    /// The physical port with this WWPN (and WWNN, when given).
    Wwpn { wwpn: Wwn, wwnn: Option<Wwn> },
    /// Any NPIV-capable port on this fabric.
    Fabric { fabric: Wwn },
    /// Any Online NPIV-capable port with free vports; ties go to the lowest WWPN.
    Auto,
    /// `hostN`, accepted with a warning.
    Host { number: u32 },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VhbaSpec {
    pub name: String,
    pub wwpn: Wwn,
    pub wwnn: Wwn,
    /// Whether each WWN was written in the policy or derived.
    pub wwpn_derived: bool,
    pub wwnn_derived: bool,
    pub parent: ParentSelector,
    /// How long to wait at boot for the parent's link to come up.
    #[serde(with = "humantime_serde_compat")]
    pub link_wait: Duration,
    pub origin: Origin,
}

impl VhbaSpec {
    /// What hbad writes to the vport's symbolic_name to mark it as its own.
    pub fn owner_tag(&self) -> String {
        format!("{OWNER_PREFIX}{}", self.name)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ScopeChoice {
    Target,
    Host,
}

/// Which hosts take part in rescans. Empty lists match nothing for `exclude` and
/// everything for `include`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct HostFilter {
    pub drivers: Vec<String>,
    pub fabrics: Vec<Wwn>,
    pub wwpns: Vec<Wwn>,
    pub vhbas: Vec<String>,
}

impl HostFilter {
    pub fn is_empty(&self) -> bool {
        self.drivers.is_empty()
            && self.fabrics.is_empty()
            && self.wwpns.is_empty()
            && self.vhbas.is_empty()
    }
}

/// Local controllers kept out of rescans unless the policy says otherwise: boot
/// disks and RAID volumes never gain LUNs from a SAN.
pub const DEFAULT_EXCLUDED_DRIVERS: &[&str] = &[
    "ahci",
    "ata_piix",
    "megaraid_sas",
    "mpt3sas",
    "smartpqi",
    "hpsa",
    "aacraid",
    "usb-storage",
];

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RescanPolicy {
    /// REPORTED_LUNS_DATA_HAS_CHANGED -> scan the target (or host, by `scope`).
    pub on_lun_change: bool,
    /// CAPACITY_DATA_HAS_CHANGED -> rescan the device.
    pub on_capacity_change: bool,
    /// LUNs a target stopped reporting (found after a REPORTED_LUNS_DATA_HAS_CHANGED
    /// scan) are deleted from the kernel when nothing holds them. Off: only named.
    pub remove_gone: bool,
    /// A vHBA or remote port coming online -> scan it.
    pub on_port_online: bool,
    pub scope: ScopeChoice,
    #[serde(with = "humantime_serde_compat::option")]
    pub periodic: Option<Duration>,
    /// Allow issue_lip. Disruptive to I/O on the whole port; off unless set.
    pub lip: bool,
    #[serde(with = "humantime_serde_compat")]
    pub debounce: Duration,
    #[serde(with = "humantime_serde_compat")]
    pub scan_timeout: Duration,
    pub include: HostFilter,
    pub exclude: HostFilter,
}

impl Default for RescanPolicy {
    fn default() -> Self {
        RescanPolicy {
            on_lun_change: true,
            on_capacity_change: true,
            remove_gone: false,
            on_port_online: true,
            scope: ScopeChoice::Target,
            periodic: None,
            lip: false,
            debounce: Duration::from_millis(250),
            scan_timeout: Duration::from_secs(120),
            include: HostFilter::default(),
            exclude: HostFilter {
                drivers: DEFAULT_EXCLUDED_DRIVERS
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
                ..HostFilter::default()
            },
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Ownership {
    /// Delete owned vHBAs that the policy no longer names.
    pub prune: bool,
    /// Where ownership is recorded when a driver refuses symbolic_name.
    pub state_file: PathBuf,
    /// Where the policy set `state_file`, for errors found when the path is looked at.
    #[serde(skip)]
    pub state_file_origin: Option<Origin>,
    /// Whether the state file and its directory must be root's (or the user
    /// running hbad's) and not writable by others: the loader's permissions.
    #[serde(skip)]
    pub perms: Perms,
}

impl Default for Ownership {
    fn default() -> Self {
        Ownership {
            prune: false,
            state_file: PathBuf::from("/var/lib/hbad/owned-vhbas.json"),
            state_file_origin: None,
            perms: Perms::Strict,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WwnSettings {
    pub oui: u32,
    /// The seed of derived WWNs; the host's machine-id when the policy sets none.
    pub seed: String,
    pub seed_from: String,
}

/// A validated policy: what hbad acts on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Policy {
    pub vhbas: Vec<VhbaSpec>,
    pub rescan: RescanPolicy,
    pub wwn: WwnSettings,
    pub ownership: Ownership,
    pub files: Vec<PathBuf>,
    /// Accepted, but worth saying (a parent named by host number...).
    pub warnings: Vec<PolicyError>,
}

/// Where the seed of derived WWNs comes from when the policy sets none.
#[derive(Clone, Debug)]
pub struct Environment {
    pub machine_id: Option<String>,
    pub machine_id_path: PathBuf,
}

impl Environment {
    pub fn from_host() -> Self {
        let path = PathBuf::from("/etc/machine-id");
        // Read as a policy file is (bounded, never blocking on a FIFO): it seeds WWNs.
        let machine_id = read::Reader::new(Perms::Relaxed)
            .read(&path)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty() && s.len() <= limits::MAX_SEED_BYTES);
        Environment {
            machine_id,
            machine_id_path: path,
        }
    }

    pub fn fixed(machine_id: &str) -> Self {
        Environment {
            machine_id: Some(machine_id.to_string()),
            machine_id_path: "(fixed)".into(),
        }
    }
}

/// Everything needed to load the policy hbad runs with: one function for `check`,
/// start-up and reload. Cheap to clone and `Send`, so the agent can load a new policy
/// on a worker thread while the old one keeps running.
#[derive(Clone, Debug, Default)]
pub struct Loader {
    /// `--policy`: a file, or a directory holding hbad.toml and hbad.d/.
    pub policy: Option<PathBuf>,
    pub search: SearchPaths,
    pub perms: Perms,
}

impl Loader {
    /// Finds, reads, merges and validates the policy, and looks at the paths it names.
    /// Reads the host's /etc/machine-id for derived WWNs.
    pub fn load(&self) -> Result<Policy, PolicyErrors> {
        let files = discover(self.policy.as_deref(), &self.search)?;
        Policy::load_files(&files, &Environment::from_host(), self.perms)
    }
}

impl Policy {
    /// The ownership state file this policy names, knowing the vHBAs it declares,
    /// and trusted as its policy files are (`--no-strict-perms` relaxes both). The
    /// one path every command and the agent keep records in: no flag or variable
    /// moves it for some of them only.
    pub fn owned_state(&self) -> OwnedState {
        OwnedState::new(self.ownership.state_file.clone())
            .declaring(self.vhbas.iter().map(|v| (v.wwpn, v.name.clone())))
            .perms(self.ownership.perms)
    }

    /// Reads, merges and validates these files, in this order (later ones override).
    pub fn load_files(
        files: &[PathBuf],
        env: &Environment,
        perms: Perms,
    ) -> Result<Policy, PolicyErrors> {
        let texts = read_all(files, perms)?;
        let mut errors = Vec::new();
        let mut parsed = Vec::new();
        for (path, bytes) in files.iter().zip(texts) {
            match decode(path, bytes).and_then(|text| fragment::parse(path, text)) {
                Ok(p) => parsed.push(p),
                Err(e) => errors.push(e),
            }
        }
        if !errors.is_empty() {
            return Err(PolicyErrors::capped(errors));
        }
        too_many_vhbas(&parsed).map_err(|e| PolicyErrors(vec![e]))?;
        let mut policy = build(&parsed, env)?;
        policy.ownership.perms = perms;
        look_at_paths(&policy)?;
        policy.files = files.to_vec();
        Ok(policy)
    }

    /// One file's bytes from a pipe (`hbad check -`): the checks of [`Policy::from_bytes`],
    /// then a look at the paths the policy names, as the loader does.
    pub fn from_piped(
        name: &Path,
        bytes: &[u8],
        env: &Environment,
    ) -> Result<Policy, PolicyErrors> {
        let policy = Policy::from_bytes(name, bytes, env)?;
        look_at_paths(&policy)?;
        Ok(policy)
    }

    /// Parses policy text (tests, `hbad check -`).
    pub fn from_str(name: &Path, text: &str, env: &Environment) -> Result<Policy, PolicyErrors> {
        let parsed = fragment::parse(name, text.to_string()).map_err(|e| PolicyErrors(vec![e]))?;
        let mut p = build(std::slice::from_ref(&parsed), env)?;
        p.files = vec![name.to_path_buf()];
        Ok(p)
    }

    /// Checks the bytes of one policy file as the loader does once it has read them:
    /// UTF-8 (else the line of the first bad byte), nesting, syntax, every value's
    /// bounds. No I/O: the entry point for fuzzing and for `check` of piped input.
    pub fn from_bytes(
        name: &Path,
        bytes: &[u8],
        env: &Environment,
    ) -> Result<Policy, PolicyErrors> {
        let text = decode(name, bytes.to_vec()).map_err(|e| PolicyErrors(vec![e]))?;
        Policy::from_str(name, &text, env)
    }

    pub fn vhba(&self, name: &str) -> Option<&VhbaSpec> {
        self.vhbas.iter().find(|v| v.name == name)
    }
}

/// The pure checks said the state file's path can name a file; this looks at what is
/// there.
fn look_at_paths(policy: &Policy) -> Result<(), PolicyErrors> {
    let ownership = &policy.ownership;
    let Some(why) = read::state_file_refusal(&ownership.state_file, ownership.perms) else {
        return Ok(());
    };
    let at = policy
        .ownership
        .state_file_origin
        .clone()
        .unwrap_or_else(|| Origin::file(Path::new("(built-in state_file)")));
    Err(PolicyErrors(vec![PolicyError::new(at, why).hint(
        "set [ownership] state_file to a file path, e.g. /var/lib/hbad/owned-vhbas.json",
    )]))
}

/// Opens every file, sums their sizes (refusing more than [`limits::MAX_TOTAL_BYTES`]
/// before reading any), then reads them, still bounded: a file may grow after fstat.
fn read_all(files: &[PathBuf], perms: Perms) -> Result<Vec<Vec<u8>>, PolicyErrors> {
    let mut reader = read::Reader::new(perms);
    let mut opened = Vec::new();
    let mut errors = Vec::new();
    for path in files {
        match reader.open(path) {
            Ok(o) => opened.push(o),
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        return Err(PolicyErrors::capped(errors));
    }
    let total: u64 = opened.iter().map(|o| o.len()).sum();
    let largest = opened
        .iter()
        .max_by_key(|o| o.len())
        .map(|o| o.path().to_path_buf());
    let too_much = |total: u64| {
        let at = largest.as_deref().unwrap_or(Path::new("(policy)"));
        PolicyErrors(vec![PolicyError::new(
            Origin::file(at),
            format!(
                "the {} policy files hold {total} bytes together; hbad reads at most {} bytes (4 MiB) of policy",
                files.len(),
                limits::MAX_TOTAL_BYTES
            ),
        )
        .hint("this is the largest of them; merge or remove drop-ins (a [[vhba]] table takes about 60 bytes)")])
    };
    if total > limits::MAX_TOTAL_BYTES {
        return Err(too_much(total));
    }
    let mut read_so_far = 0u64;
    let mut texts = Vec::with_capacity(opened.len());
    for o in opened {
        let bytes = o
            .read(limits::MAX_TOTAL_BYTES - read_so_far)
            .map_err(|e| PolicyErrors(vec![e]))?;
        read_so_far += bytes.len() as u64;
        if read_so_far > limits::MAX_TOTAL_BYTES {
            // A file grew after fstat.
            return Err(too_much(read_so_far));
        }
        texts.push(bytes);
    }
    Ok(texts)
}

/// The `[[vhba]]` tables of all files counted before any is validated: a policy
/// declaring more than [`limits::MAX_VHBAS`] is refused at the first table too many.
fn too_many_vhbas(files: &[ParsedFile]) -> Result<(), PolicyError> {
    let mut seen = 0usize;
    for file in files {
        let here = file.fragment.vhba.len();
        if seen + here > limits::MAX_VHBAS {
            let first_too_many = &file.fragment.vhba[limits::MAX_VHBAS - seen];
            return Err(PolicyError::new(
                file.origin(first_too_many.span()),
                format!(
                    "more than {} [[vhba]] tables in the policy files",
                    limits::MAX_VHBAS
                ),
            )
            .hint("no host holds this many vports; split the policy per host"));
        }
        seen += here;
    }
    Ok(())
}

/// A file's text, or where its first byte that is not UTF-8 is.
fn decode(path: &Path, bytes: Vec<u8>) -> Result<String, PolicyError> {
    String::from_utf8(bytes).map_err(|e| {
        // The byte at `valid_up_to` exists: it is where decoding failed.
        let valid = e.utf8_error().valid_up_to();
        let bytes = e.into_bytes();
        // The prefix up to `valid_up_to` is UTF-8 by definition; lossy is only a guard.
        let prefix = String::from_utf8_lossy(&bytes[..valid]);
        PolicyError::new(
            Origin::at(&Arc::from(path), &prefix, prefix.len()),
            format!("byte 0x{:02x} is not UTF-8 text", bytes[valid]),
        )
        .hint("policy files are UTF-8; convert with iconv -t UTF-8")
    })
}

/// A vHBA after merging, before validation: the file it came from and its fragment.
struct MergedVhba<'a> {
    file: &'a ParsedFile,
    table: &'a S<fragment::VhbaFragment>,
}

fn build(files: &[ParsedFile], env: &Environment) -> Result<Policy, PolicyErrors> {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();

    // vHBAs: a name may appear once per file; a later file's table of the same name
    // replaces the earlier one, as drop-ins do.
    let mut order: Vec<String> = Vec::new();
    let mut merged: HashMap<String, MergedVhba> = HashMap::new();
    for file in files {
        let mut seen_here: HashMap<String, Origin> = HashMap::new();
        for table in &file.fragment.vhba {
            let Some(name) = &table.get_ref().name else {
                errors.push(
                    PolicyError::new(file.origin(table.span()), "[[vhba]] without a `name`")
                        .hint("give every vHBA a unique name, e.g. name = \"fabric-a\""),
                );
                continue;
            };
            let n = name.get_ref().clone();
            let at = file.origin(name.span());
            if let Some(first) = seen_here.get(&n) {
                errors.push(
                    PolicyError::new(at, format!("duplicate vHBA name `{}`", echoed(&n)))
                        .hint(format!("first defined at {first}; names must be unique")),
                );
                continue;
            }
            if !merged.contains_key(&n) {
                if order.len() == limits::MAX_VHBAS {
                    errors.push(
                        PolicyError::new(
                            at,
                            format!("more than {} vHBAs declared", limits::MAX_VHBAS),
                        )
                        .hint("no host holds this many vports; split the policy per host"),
                    );
                    break;
                }
                order.push(n.clone());
            }
            seen_here.insert(n.clone(), at);
            merged.insert(n, MergedVhba { file, table });
        }
    }

    let wwn = build_wwn(files, env, &mut errors);
    let mut vhbas = Vec::new();
    let mut wwpn_at = Vec::new();
    for name in &order {
        if let Some(m) = merged.get(name) {
            if let Some((spec, at)) = build_vhba(m, &wwn, &mut errors, &mut warnings) {
                vhbas.push(spec);
                wwpn_at.push(at);
            }
        }
    }
    check_identities(&vhbas, &wwpn_at, &mut errors);

    let mut rescan = RescanPolicy::default();
    let mut ownership = Ownership::default();
    // Where the include list that ends up in force names each vHBA.
    let mut include_vhbas_at: Vec<Origin> = Vec::new();
    for file in files {
        if let Some(r) = &file.fragment.rescan {
            merge_rescan(file, r.get_ref(), &mut rescan, &mut errors);
            if let Some(list) = r
                .get_ref()
                .include
                .as_ref()
                .and_then(|f| f.get_ref().vhbas.as_ref())
            {
                include_vhbas_at = list.iter().map(|v| file.origin(v.span())).collect();
            }
        }
        if let Some(o) = &file.fragment.ownership {
            let o = o.get_ref();
            if let Some(p) = &o.prune {
                ownership.prune = *p.get_ref();
            }
            if let Some(s) = &o.state_file {
                match state_file_refusal(s.get_ref()) {
                    Some((message, hint)) => {
                        errors.push(PolicyError::new(file.origin(s.span()), message).hint(hint))
                    }
                    None => {
                        ownership.state_file = PathBuf::from(s.get_ref());
                        ownership.state_file_origin = Some(file.origin(s.span()));
                    }
                }
            }
        }
    }
    for (v, at) in rescan.include.vhbas.iter().zip(&include_vhbas_at) {
        if !vhbas.iter().any(|s| &s.name == v) {
            warnings.push(PolicyError::new(
                at.clone(),
                format!("[rescan] include names vHBA `{v}`, which no [[vhba]] declares"),
            ));
        }
    }

    if errors.is_empty() {
        Ok(Policy {
            vhbas,
            rescan,
            wwn,
            ownership,
            files: Vec::new(),
            warnings,
        })
    } else {
        // In reading order, file by file, whatever order the checks ran in.
        let file_rank = |o: &Origin| {
            files
                .iter()
                .position(|f| f.path == o.file)
                .unwrap_or(usize::MAX)
        };
        errors.sort_by_key(|e| (file_rank(&e.origin), e.origin.line, e.origin.column));
        Err(PolicyErrors::capped(errors))
    }
}

fn parse_wwn(
    file: &ParsedFile,
    value: &S<String>,
    key: &str,
    errors: &mut Vec<PolicyError>,
) -> Option<Wwn> {
    match value.get_ref().parse::<Wwn>() {
        Ok(w) => Some(w),
        Err(e) => {
            errors.push(PolicyError::new(
                file.origin(value.span()),
                format!("`{key}`: {e}"),
            ));
            None
        }
    }
}

fn parse_duration(
    file: &ParsedFile,
    value: &S<String>,
    limit: &limits::DurationLimit,
    errors: &mut Vec<PolicyError>,
) -> Option<Duration> {
    match limit.parse(value.get_ref()) {
        Ok(d) => Some(d),
        Err(refusal) => {
            errors.push(
                PolicyError::new(file.origin(value.span()), refusal.message).hint(refusal.hint),
            );
            None
        }
    }
}

/// Why `state_file` cannot name a file hbad writes, if it cannot. Whether the path is
/// a device or a directory on this host is the loader's to find out.
fn state_file_refusal(path: &str) -> Option<(String, &'static str)> {
    let example = "e.g. state_file = \"/var/lib/hbad/owned-vhbas.json\"";
    if !Path::new(path).is_absolute() {
        return Some((
            format!("state_file `{}` is not an absolute path", echoed(path)),
            example,
        ));
    }
    if path.len() > limits::MAX_PATH_BYTES || path.contains('\0') {
        return Some((
            format!(
                "state_file is not a usable path (NUL, or longer than {} bytes)",
                limits::MAX_PATH_BYTES
            ),
            example,
        ));
    }
    if Path::new(path)
        .components()
        .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Some((
            format!("state_file `{}` goes up with `..`", echoed(path)),
            "write the path the file has, without `..`",
        ));
    }
    let names_a_file =
        !path.ends_with('/') && !path.ends_with("/.") && Path::new(path).file_name().is_some();
    if !names_a_file {
        return Some((
            format!(
                "state_file `{}` names a directory, not a file",
                echoed(path)
            ),
            "name the file hbad keeps its records in, e.g. /var/lib/hbad/owned-vhbas.json",
        ));
    }
    // By components, so `//dev/x` and `/./sys/x` are what they are.
    let top = Path::new(path).components().find_map(|c| match c {
        std::path::Component::Normal(name) => Some(name),
        _ => None,
    });
    if top.is_some_and(|t| t == "dev" || t == "proc" || t == "sys") {
        return Some((
            format!(
                "state_file `{}` is under /dev, /proc or /sys, not a place for a file",
                echoed(path)
            ),
            example,
        ));
    }
    None
}

/// vHBA names end up in log fields, symbolic names and /dev/disk/by-vhba/<name>.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 48
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && !name.starts_with('.')
}

fn build_wwn(
    files: &[ParsedFile],
    env: &Environment,
    errors: &mut Vec<PolicyError>,
) -> WwnSettings {
    let mut oui = DEFAULT_OUI;
    let mut seed: Option<(String, String)> = None;
    for file in files {
        let Some(w) = &file.fragment.wwn else {
            continue;
        };
        let w = w.get_ref();
        if let Some(o) = &w.oui {
            match parse_oui(o.get_ref()) {
                Some(v) => oui = v,
                None => errors.push(
                    PolicyError::new(
                        file.origin(o.span()),
                        format!("`oui`: `{}` is not a 24-bit OUI", echoed(o.get_ref())),
                    )
                    .hint("write 6 hex digits, e.g. oui = \"001a4a\" or \"0x001a4a\""),
                ),
            }
        }
        if let Some(s) = &w.seed {
            if s.get_ref().trim().is_empty() {
                errors.push(
                    PolicyError::new(file.origin(s.span()), "`seed` is empty")
                        .hint("remove it to use /etc/machine-id"),
                );
            } else if s.get_ref().len() > limits::MAX_SEED_BYTES {
                errors.push(
                    PolicyError::new(
                        file.origin(s.span()),
                        format!(
                            "`seed` is {} bytes, more than the {} hbad accepts",
                            s.get_ref().len(),
                            limits::MAX_SEED_BYTES
                        ),
                    )
                    .hint("a host name or a random 32-digit hex string is enough"),
                );
            } else {
                seed = Some((s.get_ref().clone(), file.origin(s.span()).to_string()));
            }
        }
    }
    let (seed, seed_from) = match (seed, &env.machine_id) {
        (Some(s), _) => s,
        (None, Some(id)) => (id.clone(), env.machine_id_path.display().to_string()),
        (None, None) => (String::new(), String::new()),
    };
    WwnSettings {
        oui,
        seed,
        seed_from,
    }
}

/// An OUI: exactly 6 hex digits, `0x` before them at most once, or `00:1a:4a`.
fn parse_oui(text: &str) -> Option<u32> {
    let digits = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(rest) => rest.to_string(),
        None if text.len() == 8 && text.split(':').all(|g| g.len() == 2) => text.replace(':', ""),
        None => text.to_string(),
    };
    if digits.len() != 6 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(&digits, 16).ok()
}

fn build_vhba(
    m: &MergedVhba,
    wwn: &WwnSettings,
    errors: &mut Vec<PolicyError>,
    warnings: &mut Vec<PolicyError>,
) -> Option<(VhbaSpec, Origin)> {
    let file = m.file;
    let t = m.table.get_ref();
    let name_s = t.name.as_ref()?;
    let name = name_s.get_ref().clone();
    // The name as errors show it: it may be any string until it is found valid.
    let shown = echoed(&name);
    let start = errors.len();
    if !valid_name(&name) {
        errors.push(
            PolicyError::new(file.origin(name_s.span()), format!("vHBA name `{shown}` is not usable"))
                .hint("use up to 48 letters, digits, '-', '_' or '.'; it becomes /dev/disk/by-vhba/<name>"),
        );
    }
    let given_wwpn = t
        .wwpn
        .as_ref()
        .and_then(|v| parse_wwn(file, v, "wwpn", errors));
    let given_wwnn = t
        .wwnn
        .as_ref()
        .and_then(|v| parse_wwn(file, v, "wwnn", errors));

    let ways: Vec<(&str, &S<String>)> = [
        ("parent_wwpn", &t.parent_wwpn),
        ("parent_fabric", &t.parent_fabric),
        ("parent", &t.parent),
    ]
    .into_iter()
    .filter_map(|(k, v)| Some((k, v.as_ref()?)))
    .collect();
    let mut ways = ways;
    ways.sort_by_key(|(_, v)| v.span().start);
    let parent = match ways.as_slice() {
        [] => {
            errors.push(
                PolicyError::new(file.origin(m.table.span()), format!("vHBA `{shown}` has no parent"))
                    .hint("set one of parent_wwpn = \"0x...\", parent_fabric = \"0x...\" or parent = \"auto\""),
            );
            None
        }
        [(first, a), .., (_, last)] => {
            let keys: Vec<String> = ways.iter().map(|(k, _)| format!("`{k}`")).collect();
            let keys = match keys.split_last() {
                Some((last_key, init)) => format!("{} and {last_key}", init.join(", ")),
                None => String::new(),
            };
            errors.push(
                PolicyError::new(
                    file.origin(last.span()),
                    format!("vHBA `{shown}`: parent given {} ways, {keys}", ways.len()),
                )
                .hint(format!(
                    "keep one; `{first}` is at {}",
                    file.origin(a.span())
                )),
            );
            None
        }
        [("parent_wwpn", v)] => {
            let wwpn = parse_wwn(file, v, "parent_wwpn", errors);
            let wwnn = t.parent_wwnn.as_ref().and_then(|n| {
                let w = parse_wwn(file, n, "parent_wwnn", errors)?;
                if Some(w) == wwpn {
                    errors.push(
                        PolicyError::new(
                            file.origin(n.span()),
                            format!("vHBA `{shown}`: parent_wwnn is the same as parent_wwpn"),
                        )
                        .hint("a port name and a node name differ; see `hbad show` of the parent"),
                    );
                }
                Some(w)
            });
            wwpn.map(|w| ParentSelector::Wwpn { wwpn: w, wwnn })
        }
        [("parent_fabric", v)] => parse_wwn(file, v, "parent_fabric", errors)
            .map(|w| ParentSelector::Fabric { fabric: w }),
        [(_, v)] => {
            let text = v.get_ref().trim();
            if text == "auto" {
                Some(ParentSelector::Auto)
            } else if let Some(n) =
                crate::sysfs::host_number(text.strip_prefix("scsi_").unwrap_or(text))
            {
                warnings.push(
                    PolicyError::new(file.origin(v.span()), format!("vHBA `{shown}`: parent `{}` is a host number, which can change at the next boot", echoed(text)))
                        .hint("name the parent by parent_wwpn or parent_fabric instead (see `hbad list --cap vports`)"),
                );
                Some(ParentSelector::Host { number: n })
            } else {
                errors.push(
                    PolicyError::new(
                        file.origin(v.span()),
                        format!(
                            "`parent`: `{}` is neither \"auto\" nor a host name",
                            echoed(text)
                        ),
                    )
                    .hint("write parent = \"auto\", or use parent_wwpn / parent_fabric"),
                );
                None
            }
        }
    };
    if let (Some(n), None) = (&t.parent_wwnn, &t.parent_wwpn) {
        errors.push(
            PolicyError::new(file.origin(n.span()), "`parent_wwnn` without `parent_wwpn`")
                .hint("parent_wwnn only narrows a parent_wwpn; add parent_wwpn or remove it"),
        );
    }
    let link_wait = match &t.link_wait {
        Some(v) => parse_duration(file, v, &limits::LINK_WAIT, errors).unwrap_or_default(),
        None => Duration::from_secs(60),
    };
    if (given_wwpn.is_none() || given_wwnn.is_none()) && wwn.seed.is_empty() {
        errors.push(
            PolicyError::new(file.origin(name_s.span()), format!("vHBA `{shown}` needs derived WWNs, but there is no seed"))
                .hint("/etc/machine-id is missing or empty: set [wwn] seed = \"...\" or write wwpn and wwnn"),
        );
    }
    if errors.len() > start {
        return None;
    }
    let wwpn = given_wwpn.unwrap_or_else(|| derive(wwn.oui, &wwn.seed, &name, WwnRole::Port));
    let wwnn = given_wwnn.unwrap_or_else(|| derive(wwn.oui, &wwn.seed, &name, WwnRole::Node));
    if wwpn == wwnn {
        errors.push(
            PolicyError::new(
                file.origin(t.wwnn.as_ref().map_or(m.table.span(), |s| s.span())),
                format!("vHBA `{shown}`: wwpn and wwnn are the same"),
            )
            .hint("a port name and a node name must differ; drop wwnn to have one derived"),
        );
        return None;
    }
    // Errors about the WWPN point at it, or at the name it was derived from.
    let wwpn_at = file.origin(t.wwpn.as_ref().unwrap_or(name_s).span());
    let spec = VhbaSpec {
        name,
        wwpn,
        wwnn,
        wwpn_derived: given_wwpn.is_none(),
        wwnn_derived: given_wwnn.is_none(),
        parent: parent?,
        link_wait,
        origin: file.origin(m.table.span()),
    };
    Some((spec, wwpn_at))
}

/// WWPNs must be unique, and a vHBA must not take the WWPN of a port it sits on.
/// `wwpn_at` holds, for each vHBA, where its WWPN was written (or derived from).
fn check_identities(vhbas: &[VhbaSpec], wwpn_at: &[Origin], errors: &mut Vec<PolicyError>) {
    let mut seen: HashMap<Wwn, usize> = HashMap::new();
    for (i, v) in vhbas.iter().enumerate() {
        if let Some(&first) = seen.get(&v.wwpn) {
            errors.push(
                PolicyError::new(
                    wwpn_at[i].clone(),
                    format!(
                        "vHBA `{}` has the same WWPN {} as vHBA `{}`",
                        v.name, v.wwpn, vhbas[first].name
                    ),
                )
                .hint(format!(
                    "`{}` sets it at {}; every WWPN on a fabric must be unique",
                    vhbas[first].name, wwpn_at[first]
                )),
            );
        } else {
            seen.insert(v.wwpn, i);
        }
    }
    let parents: HashMap<Wwn, &str> = vhbas
        .iter()
        .filter_map(|v| match v.parent {
            ParentSelector::Wwpn { wwpn, .. } => Some((wwpn, v.name.as_str())),
            _ => None,
        })
        .collect();
    for (i, v) in vhbas.iter().enumerate() {
        if let Some(other) = parents.get(&v.wwpn) {
            errors.push(
                PolicyError::new(
                    wwpn_at[i].clone(),
                    format!(
                        "vHBA `{}` has WWPN {}, which is the physical port `{other}` uses as parent",
                        v.name, v.wwpn
                    ),
                )
                .hint("a vHBA needs a WWPN of its own; remove wwpn to have one derived"),
            );
        }
    }
}

fn merge_rescan(
    file: &ParsedFile,
    r: &fragment::RescanFragment,
    out: &mut RescanPolicy,
    errors: &mut Vec<PolicyError>,
) {
    let set_bool = |v: &Option<S<bool>>, dst: &mut bool| {
        if let Some(v) = v {
            *dst = *v.get_ref();
        }
    };
    set_bool(&r.on_lun_change, &mut out.on_lun_change);
    set_bool(&r.on_capacity_change, &mut out.on_capacity_change);
    set_bool(&r.remove_gone, &mut out.remove_gone);
    set_bool(&r.on_port_online, &mut out.on_port_online);
    set_bool(&r.lip, &mut out.lip);
    if let Some(s) = &r.scope {
        match s.get_ref().as_str() {
            "target" => out.scope = ScopeChoice::Target,
            "host" => out.scope = ScopeChoice::Host,
            other => errors.push(
                PolicyError::new(
                    file.origin(s.span()),
                    format!("`scope`: `{}` is not a scan scope", echoed(other)),
                )
                .hint("write scope = \"target\" (scan only the target that changed) or \"host\""),
            ),
        }
    }
    if let Some(p) = &r.periodic {
        // Durations are read trimmed, so the words are too; and a zero duration is
        // "off" however it is written ("0", "0s"), never "less than 1m".
        let text = p.get_ref().trim();
        if matches!(text, "off" | "never") || humantime::parse_duration(text) == Ok(Duration::ZERO)
        {
            out.periodic = None;
        } else if let Some(d) = parse_duration(file, p, &limits::PERIODIC, errors) {
            out.periodic = Some(d);
        }
    }
    if let Some(d) = &r.debounce {
        if let Some(v) = parse_duration(file, d, &limits::DEBOUNCE, errors) {
            out.debounce = v;
        }
    }
    if let Some(d) = &r.scan_timeout {
        if let Some(v) = parse_duration(file, d, &limits::SCAN_TIMEOUT, errors) {
            out.scan_timeout = v;
        }
    }
    if let Some(f) = &r.include {
        out.include = merge_filter(file, f.get_ref(), &out.include, errors);
    }
    if let Some(f) = &r.exclude {
        out.exclude = merge_filter(file, f.get_ref(), &out.exclude, errors);
    }
}

/// A list given in a later file replaces the earlier list of the same key.
fn merge_filter(
    file: &ParsedFile,
    f: &HostFilterFragment,
    base: &HostFilter,
    errors: &mut Vec<PolicyError>,
) -> HostFilter {
    let mut strings = |v: &Option<Vec<S<String>>>, key: &str, old: &Vec<String>| match v {
        Some(list) if within_list_limit(file, list, key, errors) => list
            .iter()
            .filter(|s| {
                let refusal = list_entry_refusal(key, s.get_ref());
                if let Some(why) = &refusal {
                    errors.push(PolicyError::new(file.origin(s.span()), why.clone()).hint(
                        match key {
                            "drivers" => {
                                "write driver names as `hbad list` shows them, e.g. \"qla2xxx\""
                            }
                            _ => "write the name of a [[vhba]] of this policy",
                        },
                    ));
                }
                refusal.is_none()
            })
            .map(|s| s.get_ref().clone())
            .collect(),
        Some(_) => Vec::new(),
        None => old.clone(),
    };
    let drivers = strings(&f.drivers, "drivers", &base.drivers);
    let vhbas = strings(&f.vhbas, "vhbas", &base.vhbas);
    let mut wwns = |v: &Option<Vec<S<String>>>, key: &str, old: &Vec<Wwn>| match v {
        Some(list) if within_list_limit(file, list, key, errors) => list
            .iter()
            .filter_map(|s| parse_wwn(file, s, key, errors))
            .collect(),
        Some(_) => Vec::new(),
        None => old.clone(),
    };
    HostFilter {
        drivers,
        fabrics: wwns(&f.fabrics, "fabrics", &base.fabrics),
        wwpns: wwns(&f.wwpns, "wwpns", &base.wwpns),
        vhbas,
    }
}

fn within_list_limit(
    file: &ParsedFile,
    list: &[S<String>],
    key: &str,
    errors: &mut Vec<PolicyError>,
) -> bool {
    match list.get(limits::MAX_LIST) {
        None => true,
        Some(first_too_many) => {
            errors.push(
                PolicyError::new(
                    file.origin(first_too_many.span()),
                    format!(
                        "`{key}` lists {} entries, more than the {} hbad accepts",
                        list.len(),
                        limits::MAX_LIST
                    ),
                )
                .hint("shorten the list, or filter by driver or fabric instead"),
            );
            false
        }
    }
}

/// Driver names and vHBA names in filters are compared with what sysfs and the
/// policy hold: anything else can never match, and is a typo.
fn list_entry_refusal(key: &str, value: &str) -> Option<String> {
    match key {
        "drivers" => {
            let ok = !value.is_empty()
                && value.len() <= limits::MAX_DRIVER_BYTES
                && value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
            (!ok).then(|| format!("`drivers`: `{}` is not a driver name", echoed(value)))
        }
        _ => {
            (!valid_name(value)).then(|| format!("`vhbas`: `{}` is not a vHBA name", echoed(value)))
        }
    }
}

/// Durations shown as people write them ("250ms", "1m").
mod humantime_serde_compat {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(*d))
    }

    pub mod option {
        use std::time::Duration;

        pub fn serialize<S: serde::Serializer>(
            d: &Option<Duration>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match d {
                Some(d) => s.collect_str(&humantime::format_duration(*d)),
                None => s.serialize_none(),
            }
        }
    }
}

//! Stage one: one policy file as written, every field optional and every value
//! carrying its byte span, so that later stages can point at it.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;
use toml::Spanned;

use super::error::{closest, Origin, PolicyError};

pub type S<T> = Spanned<T>;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileFragment {
    #[serde(default)]
    pub vhba: Vec<S<VhbaFragment>>,
    pub rescan: Option<S<RescanFragment>>,
    pub wwn: Option<S<WwnFragment>>,
    pub ownership: Option<S<OwnershipFragment>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VhbaFragment {
    pub name: Option<S<String>>,
    pub wwpn: Option<S<String>>,
    pub wwnn: Option<S<String>>,
    pub parent_wwpn: Option<S<String>>,
    pub parent_wwnn: Option<S<String>>,
    pub parent_fabric: Option<S<String>>,
    /// `"auto"`, or `"hostN"` (accepted with a warning).
    pub parent: Option<S<String>>,
    pub link_wait: Option<S<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RescanFragment {
    pub on_lun_change: Option<S<bool>>,
    pub on_capacity_change: Option<S<bool>>,
    pub on_port_online: Option<S<bool>>,
    pub scope: Option<S<String>>,
    pub periodic: Option<S<String>>,
    pub lip: Option<S<bool>>,
    pub debounce: Option<S<String>>,
    pub scan_timeout: Option<S<String>>,
    pub include: Option<S<HostFilterFragment>>,
    pub exclude: Option<S<HostFilterFragment>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostFilterFragment {
    pub drivers: Option<Vec<S<String>>>,
    pub fabrics: Option<Vec<S<String>>>,
    pub wwpns: Option<Vec<S<String>>>,
    pub vhbas: Option<Vec<S<String>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WwnFragment {
    pub oui: Option<S<String>>,
    pub seed: Option<S<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OwnershipFragment {
    pub prune: Option<S<bool>>,
    pub state_file: Option<S<String>>,
}

/// The keys each table accepts, for "did you mean" hints.
const KEYS: &[(&str, &[&str])] = &[
    ("top", &["vhba", "rescan", "wwn", "ownership"]),
    (
        "vhba",
        &[
            "name",
            "wwpn",
            "wwnn",
            "parent_wwpn",
            "parent_wwnn",
            "parent_fabric",
            "parent",
            "link_wait",
        ],
    ),
    (
        "rescan",
        &[
            "on_lun_change",
            "on_capacity_change",
            "on_port_online",
            "scope",
            "periodic",
            "lip",
            "debounce",
            "scan_timeout",
            "include",
            "exclude",
        ],
    ),
    ("filter", &["drivers", "fabrics", "wwpns", "vhbas"]),
    ("wwn", &["oui", "seed"]),
    ("ownership", &["prune", "state_file"]),
];

/// A parsed file and what is needed to turn spans into lines.
#[derive(Debug)]
pub struct ParsedFile {
    pub path: Arc<Path>,
    pub text: String,
    pub fragment: FileFragment,
}

impl ParsedFile {
    pub fn origin(&self, span: Range<usize>) -> Origin {
        Origin::at(&self.path, &self.text, span.start)
    }
}

/// Parses one policy file's text.
pub fn parse(path: &Path, text: String) -> Result<ParsedFile, PolicyError> {
    let path: Arc<Path> = Arc::from(path);
    match toml::from_str::<FileFragment>(&text) {
        Ok(fragment) => Ok(ParsedFile {
            path,
            text,
            fragment,
        }),
        Err(err) => {
            let origin = match err.span() {
                Some(span) => Origin::at(&path, &text, span.start),
                None => Origin::file(&path),
            };
            Err(explain(origin, err.message()))
        }
    }
}

/// Rewrites serde's and toml's messages in the policy's own words.
fn explain(origin: Origin, message: &str) -> PolicyError {
    let message = message.trim();
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let (key, expected) = rest.split_once('`').unwrap_or((rest, ""));
        let accepted: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
        let table_keys = KEYS
            .iter()
            .find(|(_, keys)| accepted.iter().all(|a| keys.contains(a)) && !accepted.is_empty())
            .map(|(_, k)| *k)
            .unwrap_or(&[]);
        let err = PolicyError::new(origin, format!("unknown key `{key}`"));
        return match closest(key, table_keys) {
            Some(best) => err.hint(format!("did you mean `{best}`?")),
            None if !table_keys.is_empty() => {
                err.hint(format!("accepted keys here: {}", table_keys.join(", ")))
            }
            None => err,
        };
    }
    if message.starts_with("invalid type: map, expected a sequence") {
        return PolicyError::new(origin, "this table is a list")
            .hint("write [[vhba]] with double brackets, once per vHBA");
    }
    if let Some(rest) = message.strip_prefix("invalid type: ") {
        return PolicyError::new(origin, format!("wrong type: {rest}")).hint(
            "strings are quoted (\"0x2001001b32a9da4e\", \"30s\"), switches are true or false",
        );
    }
    if let Some(rest) = message.strip_prefix("missing field `") {
        let key = rest.split('`').next().unwrap_or(rest);
        return PolicyError::new(origin, format!("missing key `{key}`"));
    }
    PolicyError::new(origin, format!("not valid TOML: {message}"))
        .hint("see hbad.toml(5) or the commented example in /usr/share/doc/hbad/hbad.toml")
}

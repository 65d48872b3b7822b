//! Stage one: one policy file as written, every field optional and every value
//! carrying its byte span, so that later stages can point at it.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;
use toml::Spanned;

use super::error::{closest, LineIndex, Origin, PolicyError};
use crate::terminal::echoed;

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
    pub remove_gone: Option<S<bool>>,
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
            "remove_gone",
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
    lines: LineIndex,
    pub fragment: FileFragment,
}

impl ParsedFile {
    pub fn origin(&self, span: Range<usize>) -> Origin {
        self.lines.origin(&self.path, &self.text, span.start)
    }
}

/// Tables, dotted keys, arrays and inline tables nested deeper than this are refused
/// before the TOML parser sees them. hbad's own keys nest 4 deep at most; the parser's
/// limits on dotted keys give an error without a position.
pub const MAX_NESTING: usize = 32;

/// Parses one policy file's text.
pub fn parse(path: &Path, text: String) -> Result<ParsedFile, PolicyError> {
    let path: Arc<Path> = Arc::from(path);
    if let Some(offset) = too_deep(&text, MAX_NESTING) {
        return Err(PolicyError::new(
            Origin::at(&path, &text, offset),
            format!("nested more than {MAX_NESTING} levels deep (tables, dotted keys, arrays)"),
        )
        .hint("hbad's keys nest at most 4 levels: see hbad.toml(5)"));
    }
    match toml::from_str::<FileFragment>(&text) {
        Ok(fragment) => Ok(ParsedFile {
            path,
            lines: LineIndex::new(&text),
            text,
            fragment,
        }),
        Err(err) => {
            let origin = match err.span() {
                Some(span) => Origin::at(&path, &text, span.start),
                None => Origin::file(&path),
            };
            if err.message().trim() == "duplicate key" {
                if let Some(span) = err.span() {
                    return Err(duplicate_key(&path, &text, span, origin));
                }
            }
            Err(explain(origin, err.message()))
        }
    }
}

/// A key or table given twice in one file, with both places.
fn duplicate_key(path: &Arc<Path>, text: &str, span: Range<usize>, at: Origin) -> PolicyError {
    let key = text.get(span.clone()).unwrap_or("").trim();
    let err = PolicyError::new(at, format!("`{}` is given twice", echoed(key)));
    let hint = "a key may appear once per table; a later drop-in overrides it instead";
    match first_definition(text, span) {
        Some(first) => err.hint(format!(
            "first given at {}; {hint}",
            Origin::at(path, text, first)
        )),
        None => err.hint(hint),
    }
}

/// Where the key (or table header) at `span` was first given: an equal header
/// earlier in the file, or the same key earlier in the same table.
fn first_definition(text: &str, span: Range<usize>) -> Option<usize> {
    let key = text.get(span.clone())?.trim();
    let before = text.get(..span.start)?;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let this_line = text[line_start..].split('\n').next()?.trim();
    let is_header = text[line_start..span.start].trim_start().starts_with('[');
    // Lines before this one, with their offsets.
    let mut lines = Vec::new();
    let mut offset = 0;
    for line in text[..line_start].split('\n') {
        lines.push((offset, line));
        offset += line.len() + 1;
    }
    if is_header {
        return lines.iter().find_map(|&(at, line)| {
            (line.trim() == this_line).then(|| at + line.len() - line.trim_start().len())
        });
    }
    // Only within the table this key is in: after the last header before it.
    let table = lines
        .iter()
        .rposition(|(_, l)| l.trim_start().starts_with('['))
        .map_or(0, |i| i + 1);
    lines[table..].iter().find_map(|&(at, line)| {
        let t = line.trim_start();
        let rest = t.strip_prefix(key)?;
        rest.trim_start()
            .starts_with('=')
            .then(|| at + line.len() - t.len())
    })
}

/// The byte offset where the nesting of keys and values first exceeds `max`, if it
/// does. A lexical scan: strings and comments are skipped, table headers and dotted
/// keys count one level per dot, arrays and inline tables one level per bracket.
fn too_deep(text: &str, max: usize) -> Option<usize> {
    let b = text.as_bytes();
    // Open brackets inside values, innermost last (b'[' or b'{'); never longer than max.
    let mut open: Vec<u8> = Vec::new();
    let mut dots = 0usize;
    let mut in_key = true;
    let mut header = false;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            q @ (b'"' | b'\'') => {
                i = skip_string(b, i, q);
                continue;
            }
            b'\n' if open.is_empty() => {
                in_key = true;
                header = false;
                dots = 0;
            }
            b'[' if open.is_empty() && in_key => header = true,
            b']' if header => {}
            b'[' => {
                open.push(b'[');
                in_key = false;
            }
            b'{' => {
                open.push(b'{');
                in_key = true;
                dots = 0;
            }
            b']' | b'}' => {
                open.pop();
                in_key = false;
            }
            b',' if open.last() == Some(&b'{') => {
                in_key = true;
                dots = 0;
            }
            b'=' => in_key = false,
            b'.' if in_key || header => dots += 1,
            _ => {}
        }
        // The key itself is one level, each dot and bracket one more.
        if open.len() + dots + 1 > max {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// The offset just past the string that starts at `start` with quote `q`.
fn skip_string(b: &[u8], start: usize, q: u8) -> usize {
    let triple = b.get(start..start + 3) == Some(&[q, q, q][..]);
    let mut i = start + if triple { 3 } else { 1 };
    while i < b.len() {
        if q == b'"' && b[i] == b'\\' {
            i += 2;
            continue;
        }
        if b[i] == b'\n' && !triple {
            return i;
        }
        if b[i] == q && (!triple || b.get(i..i + 3) == Some(&[q, q, q][..])) {
            return i + if triple { 3 } else { 1 };
        }
        i += 1;
    }
    b.len()
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
        let err = PolicyError::new(origin, format!("unknown key `{}`", echoed(key)));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_is_counted_outside_strings_and_comments() {
        let ok = "[rescan.include]\ndrivers = [\"a.b.c\", 'x.y']\n# a.b.c.d.e.f\n[[vhba]]\nname = \"\"\"\nx.y.z\n\"\"\"\n";
        assert_eq!(too_deep(ok, 2), None);
        assert_eq!(too_deep("a.b.c = 1\n", 2), Some(3));
        assert_eq!(too_deep("[a.b.c]\n", 2), Some(4));
        assert_eq!(too_deep("x = [[[1]]]\n", 2), Some(5));
        assert_eq!(too_deep("x = {a = {b = {c = 1}}}\n", 2), Some(9));
        assert_eq!(too_deep("x = 1.5\ny = \"a\\\"b.c.d\"\n", 1), None);
    }

    #[test]
    fn a_key_or_table_given_twice_names_both_places() {
        let err = parse(
            Path::new("d.toml"),
            "[[vhba]]\nname = \"a\"\n[[vhba]]\nname = \"b\"\r\n  name = \"c\"\n".into(),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "d.toml:5:3: `name` is given twice\n  hint: first given at d.toml:4:1; a key may \
             appear once per table; a later drop-in overrides it instead"
        );
        let err = parse(
            Path::new("d.toml"),
            "[rescan]\nlip = true\n\n [rescan]\n".into(),
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("d.toml:4:3: `rescan` is given twice"),
            "{err}"
        );
        assert!(
            err.to_string().contains("first given at d.toml:1:1"),
            "{err}"
        );
    }

    #[test]
    fn deep_dotted_keys_are_refused_with_a_line() {
        let text = format!("[rescan]\nlip = true\n{}y = 1\n", "x.".repeat(50_000));
        let err = parse(Path::new("deep.toml"), text).unwrap_err();
        assert_eq!((err.origin.line, err.origin.column), (3, 64));
        assert!(err.message.contains("32 levels"), "{err}");
    }
}

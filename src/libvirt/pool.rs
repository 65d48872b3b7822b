//! libvirt `<pool type='scsi'>` definitions with an `fc_host` adapter, turned into
//! hbad `[[vhba]]` tables.
//!
//! Such a pool is how libvirt users keep a vHBA today: libvirt creates the vport when
//! the pool starts (`managed='yes'`) and finds the LUNs below it. hbad keeps the same
//! vHBA from boot on, whatever libvirt does, so the pool's WWNs and parent selector
//! carry over; libvirt then finds the vHBA already there.
//!
//! libvirt picks the parent from the adapter attributes in this order (see
//! virStorageBackendCreateVport): `parent`, then `parent_wwnn` with `parent_wwpn`,
//! then `parent_fabric_wwn`, else any NPIV-capable port. The import keeps that order
//! and says which attributes it dropped, since the policy takes one selector only.

use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};

use super::xml::{self, line_col, Element};
use crate::sysfs::host_number;
use crate::terminal::{echoed, printable};
use crate::wwn::Wwn;

/// A pool definition as read from one file.
#[derive(Clone, Debug)]
pub struct PoolSource {
    pub path: PathBuf,
    pub text: String,
}

/// Something in a pool file the policy cannot express (or, as a warning, can only
/// approximate): where, what, and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}:{column}: {what}\n  hint: {why}", file.display())]
pub struct ImportError {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub what: String,
    pub why: String,
}

/// How the imported vHBA finds its parent port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImportParent {
    Wwpn {
        wwpn: Wwn,
        wwnn: Option<Wwn>,
    },
    Fabric(Wwn),
    /// `scsi_hostN`: kept, with the policy's own warning that host numbers change.
    Host(u32),
    Auto,
}

/// One `[[vhba]]` table and the pool it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VhbaTable {
    pub name: String,
    pub wwpn: Wwn,
    pub wwnn: Wwn,
    pub parent: ImportParent,
    pub pool: String,
    pub file: PathBuf,
}

/// The result of importing every file: tables in file order, and what to tell the user.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Import {
    pub vhbas: Vec<VhbaTable>,
    pub warnings: Vec<ImportError>,
    /// Pools that stand for no vHBA (a `logical` pool, a scsi_host adapter), left
    /// to libvirt, and why.
    pub skipped: Vec<ImportError>,
}

/// The largest pool definition read. `virsh pool-dumpxml` prints well under a
/// kilobyte; the bound keeps a wrong file (a disk image, /dev/zero) from being read
/// whole.
pub const POOL_XML_MAX: usize = 1 << 20;

/// A TOML basic string: the toml crate's quoting, so any pool name stays one string.
fn quoted(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

impl fmt::Display for Import {
    /// The policy TOML, one `[[vhba]]` per pool, each with a comment naming its source.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "# Written by `hbad import-libvirt` from libvirt storage pools."
        )?;
        for v in &self.vhbas {
            let mut t = String::new();
            // A TOML comment takes no control character but a tab: file names (and
            // pool names, though refused on import) are shown escaped.
            let _ = writeln!(
                t,
                "\n# pool `{}` in {}",
                printable(&v.pool),
                printable(&v.file.display().to_string())
            );
            let _ = writeln!(t, "[[vhba]]");
            let _ = writeln!(t, "name = {}", quoted(&v.name));
            let _ = writeln!(t, "wwpn = \"{}\"", v.wwpn);
            let _ = writeln!(t, "wwnn = \"{}\"", v.wwnn);
            match &v.parent {
                ImportParent::Wwpn { wwpn, wwnn } => {
                    let _ = writeln!(t, "parent_wwpn = \"{wwpn}\"");
                    if let Some(n) = wwnn {
                        let _ = writeln!(t, "parent_wwnn = \"{n}\"");
                    }
                }
                ImportParent::Fabric(w) => {
                    let _ = writeln!(t, "parent_fabric = \"{w}\"");
                }
                ImportParent::Host(n) => {
                    let _ = writeln!(t, "parent = \"host{n}\"");
                }
                ImportParent::Auto => {
                    let _ = writeln!(t, "parent = \"auto\"");
                }
            }
            f.write_str(&t)?;
        }
        Ok(())
    }
}

struct File<'a> {
    path: &'a Path,
    text: &'a str,
}

impl File<'_> {
    fn at(&self, offset: usize, what: impl Into<String>, why: impl Into<String>) -> ImportError {
        let (line, column) = line_col(self.text, offset);
        ImportError {
            file: self.path.to_path_buf(),
            line,
            column,
            what: printable(&what.into()).into_owned(),
            why: printable(&why.into()).into_owned(),
        }
    }
}

/// vHBA names become /dev/disk/by-vhba/<name> and symbolic names; the policy allows
/// up to 48 letters, digits, `-`, `_` and `.`, not starting with `.`.
fn vhba_name_from_pool(pool: &str) -> String {
    let mut name: String = pool
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect();
    while name.starts_with('.') {
        name.remove(0);
    }
    name.truncate(48);
    name
}

fn wwn_attr(file: &File, adapter: &Element, key: &str) -> Result<Option<Wwn>, ImportError> {
    match adapter.attr(key) {
        None => Ok(None),
        Some(v) => v.parse::<Wwn>().map(Some).map_err(|e| {
            file.at(
                adapter.offset,
                format!("adapter `{key}`: {e}"),
                "libvirt writes WWNs as 16 hex digits; fix the pool definition",
            )
        }),
    }
}

/// What one pool file holds: a vHBA, or a pool that is none (skipped, and why).
enum Pool {
    Vhba(VhbaTable),
    Skipped(ImportError),
}

/// One pool file -> one table, plus warnings.
fn import_one(file: &File, warnings: &mut Vec<ImportError>) -> Result<Pool, ImportError> {
    if file.text.len() > POOL_XML_MAX {
        return Err(file.at(
            0,
            format!(
                "{} bytes, more than the {POOL_XML_MAX} a pool definition may hold",
                file.text.len()
            ),
            "import-libvirt reads pool definitions as `virsh pool-dumpxml POOL` prints them",
        ));
    }
    let root = xml::parse(file.text).map_err(|e| {
        file.at(
            e.offset,
            format!("not well-formed XML: {}", e.message),
            "import-libvirt reads pool definitions as `virsh pool-dumpxml POOL` prints them",
        )
    })?;
    if root.name != "pool" {
        return Err(file.at(
            root.offset,
            format!("a <{}> document, not a storage pool", root.name),
            "import-libvirt reads pool definitions as `virsh pool-dumpxml POOL` prints them",
        ));
    }
    let pool_type = root.attr("type").unwrap_or("");
    if pool_type != "scsi" {
        let pool = echoed(root.child("name").map_or("(no name)", |n| n.text.as_str()));
        let shown = if pool_type.is_empty() {
            format!("pool `{pool}` has no type")
        } else {
            format!("pool `{pool}` is a `{}` pool", echoed(pool_type))
        };
        return Ok(Pool::Skipped(file.at(
            root.offset,
            shown,
            "only <pool type='scsi'> with an fc_host adapter stands for a vHBA; other pools stay libvirt's",
        )));
    }
    let pool = root
        .child("name")
        .map(|n| n.text.clone())
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            file.at(
                root.offset,
                "the pool has no <name>",
                "the vHBA takes its name from the pool; libvirt itself requires one",
            )
        })?;
    if pool.chars().any(char::is_control) {
        return Err(file.at(
            root.child("name").map_or(root.offset, |n| n.offset),
            format!(
                "pool `{}` has a control character in its name",
                printable(&pool)
            ),
            "libvirt pool names are printable; rename the pool (virsh pool-edit) and dump it again",
        ));
    }
    // The pool as messages quote it: its name may be long, kept whole in the table.
    let shown = echoed(&pool);
    let source = root.child("source").ok_or_else(|| {
        file.at(
            root.offset,
            format!("pool `{shown}` has no <source>"),
            "an fc_host pool names its vHBA in <source><adapter type='fc_host' .../>",
        )
    })?;
    let adapter = source.child("adapter").ok_or_else(|| {
        file.at(
            source.offset,
            format!("pool `{shown}` has no <adapter> in <source>"),
            "an fc_host pool names its vHBA in <source><adapter type='fc_host' .../>",
        )
    })?;
    match adapter.attr("type") {
        Some("fc_host") => {}
        Some("scsi_host") => {
            return Ok(Pool::Skipped(file.at(
                adapter.offset,
                format!("pool `{shown}` uses a scsi_host adapter"),
                "a scsi_host adapter names an HBA that already exists: there is no vHBA for hbad to keep",
            )))
        }
        // Old pools name the HBA without a type: libvirt reads those as scsi_host.
        None if adapter.attr("name").is_some() => {
            return Ok(Pool::Skipped(file.at(
                adapter.offset,
                format!("pool `{shown}` names an adapter without a type (a scsi_host adapter)"),
                "a scsi_host adapter names an HBA that already exists: there is no vHBA for hbad to keep",
            )))
        }
        None => {
            return Err(file.at(
                adapter.offset,
                format!("pool `{shown}`: the adapter has no type"),
                "libvirt needs type='fc_host' (or scsi_host); fix the pool definition",
            ))
        }
        Some(other) => {
            return Err(file.at(
                adapter.offset,
                format!("pool `{shown}`: unknown adapter type `{}`", echoed(other)),
                "only type='fc_host' adapters describe a vHBA",
            ))
        }
    }
    let (wwnn, wwpn) = match (
        wwn_attr(file, adapter, "wwnn")?,
        wwn_attr(file, adapter, "wwpn")?,
    ) {
        (Some(n), Some(p)) => (n, p),
        (n, p) => {
            let missing: Vec<&str> = [("wwnn", n.is_none()), ("wwpn", p.is_none())]
                .into_iter()
                .filter_map(|(k, m)| m.then_some(k))
                .collect();
            return Err(file.at(
                adapter.offset,
                format!("pool `{shown}`: the fc_host adapter has no {}", missing.join(" and ")),
                "the vHBA's identity is its WWNN and WWPN; libvirt needs both to find it and so does the policy",
            ));
        }
    };
    if wwnn == wwpn {
        return Err(file.at(
            adapter.offset,
            format!("pool `{shown}`: wwnn and wwpn are the same ({wwpn})"),
            "a port name and a node name must differ",
        ));
    }

    let parent_host = adapter.attr("parent");
    let parent_wwnn = wwn_attr(file, adapter, "parent_wwnn")?;
    let parent_wwpn = wwn_attr(file, adapter, "parent_wwpn")?;
    let parent_fabric = wwn_attr(file, adapter, "parent_fabric_wwn")?;
    let by_wwn = match (parent_wwnn, parent_wwpn) {
        (Some(n), Some(p)) if n == p => {
            return Err(file.at(
                adapter.offset,
                format!("pool `{shown}`: parent_wwnn and parent_wwpn are the same ({p})"),
                "a port name and a node name differ; see `hbad show` of the parent and fix the pool definition",
            ))
        }
        (Some(n), Some(p)) => Some(ImportParent::Wwpn {
            wwpn: p,
            wwnn: Some(n),
        }),
        (None, None) => None,
        (n, _) => {
            let (given, missing) = if n.is_some() {
                ("parent_wwnn", "parent_wwpn")
            } else {
                ("parent_wwpn", "parent_wwnn")
            };
            return Err(file.at(
                adapter.offset,
                format!("pool `{shown}`: `{given}` without `{missing}`"),
                "libvirt only takes the two together; add the missing one or remove both",
            ));
        }
    };
    let by_host = match parent_host {
        None => None,
        Some(p) => match host_number(p.strip_prefix("scsi_").unwrap_or(p)) {
            Some(n) => {
                warnings.push(file.at(
                    adapter.offset,
                    format!("pool `{shown}`: parent `{}` is a host number, which can change at the next boot", echoed(p)),
                    "kept as parent = \"hostN\"; better name the parent by parent_wwpn or parent_fabric (see `hbad list --cap vports`)",
                ));
                Some(ImportParent::Host(n))
            }
            None => {
                return Err(file.at(
                    adapter.offset,
                    format!(
                        "pool `{shown}`: parent `{}` is not a scsi_hostN name",
                        echoed(p)
                    ),
                    "libvirt names a parent HBA by its node device, scsi_hostN",
                ))
            }
        },
    };
    let by_fabric = parent_fabric.map(ImportParent::Fabric);
    let given: Vec<(&str, ImportParent)> = [
        ("parent", by_host),
        ("parent_wwnn/parent_wwpn", by_wwn),
        ("parent_fabric_wwn", by_fabric),
    ]
    .into_iter()
    .filter_map(|(k, p)| Some((k, p?)))
    .collect();
    let parent = match given.as_slice() {
        [] => ImportParent::Auto,
        [(_, p)] => p.clone(),
        [(used, p), rest @ ..] => {
            let dropped: Vec<&str> = rest.iter().map(|(k, _)| *k).collect();
            warnings.push(file.at(
                adapter.offset,
                format!("pool `{shown}`: parent given {} ways; kept `{used}`, dropped {}", given.len(), dropped.join(", ")),
                "libvirt uses the first of parent, parent_wwnn/parent_wwpn, parent_fabric_wwn; the policy takes one",
            ));
            p.clone()
        }
    };
    if let ImportParent::Wwpn { wwpn: pw, .. } = parent {
        if pw == wwpn {
            return Err(file.at(
                adapter.offset,
                format!("pool `{shown}`: the vHBA's wwpn is its parent's ({wwpn})"),
                "a vHBA needs a WWPN of its own",
            ));
        }
    }
    match adapter.attr("managed") {
        None | Some("no") => {}
        Some("yes") => warnings.push(file.at(
            adapter.offset,
            format!("pool `{shown}` is managed='yes': libvirt deletes the vHBA when the pool stops"),
            "set managed='no' (virsh pool-edit) so libvirt uses the vHBA hbad keeps instead of deleting it",
        )),
        Some(other) => {
            return Err(file.at(
                adapter.offset,
                format!("pool `{shown}`: managed='{}'", echoed(other)),
                "libvirt takes managed='yes' or 'no'",
            ))
        }
    }
    let name = vhba_name_from_pool(&pool);
    if name.is_empty() {
        return Err(file.at(
            root.offset,
            format!("pool name `{shown}` leaves nothing usable as a vHBA name"),
            "vHBA names are letters, digits, '-', '_' and '.'; rename the pool or write the table by hand",
        ));
    }
    if name != pool {
        warnings.push(file.at(
            root.offset,
            format!("pool `{shown}` becomes vHBA `{name}`"),
            "vHBA names are up to 48 letters, digits, '-', '_' or '.' (they become /dev/disk/by-vhba/<name>)",
        ));
    }
    Ok(Pool::Vhba(VhbaTable {
        name,
        wwpn,
        wwnn,
        parent,
        pool,
        file: file.path.to_path_buf(),
    }))
}

/// Imports every pool; any refusal rejects the whole import, as the policy does with
/// any error, so a half-converted set of pools is never printed.
pub fn import_pools(sources: &[PoolSource]) -> Result<Import, Vec<ImportError>> {
    let mut import = Import::default();
    let mut errors = Vec::new();
    let mut names: HashMap<String, PathBuf> = HashMap::new();
    let mut wwpns: HashMap<Wwn, (String, PathBuf)> = HashMap::new();
    for src in sources {
        let file = File {
            path: &src.path,
            text: &src.text,
        };
        let table = match import_one(&file, &mut import.warnings) {
            Ok(Pool::Vhba(t)) => t,
            Ok(Pool::Skipped(why)) => {
                import.skipped.push(why);
                continue;
            }
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        if let Some(first) = names.get(&table.name) {
            errors.push(file.at(
                0,
                format!("vHBA name `{}` comes twice", table.name),
                format!(
                    "{} gave it first; vHBA names must be unique",
                    first.display()
                ),
            ));
            continue;
        }
        if let Some((other, first)) = wwpns.get(&table.wwpn) {
            errors.push(file.at(
                0,
                format!(
                    "pool `{}` has the WWPN {} of pool `{}`",
                    echoed(&table.pool),
                    table.wwpn,
                    echoed(other)
                ),
                format!(
                    "{} gave it first; every WWPN on a fabric must be unique",
                    first.display()
                ),
            ));
            continue;
        }
        names.insert(table.name.clone(), src.path.clone());
        wwpns.insert(table.wwpn, (table.pool.clone(), src.path.clone()));
        import.vhbas.push(table);
    }
    // A vHBA must not take the WWPN a sibling names as its physical parent.
    for v in &import.vhbas {
        for other in &import.vhbas {
            if let ImportParent::Wwpn { wwpn, .. } = other.parent {
                if wwpn == v.wwpn {
                    errors.push(ImportError {
                        file: other.file.clone(),
                        line: 1,
                        column: 1,
                        what: format!(
                            "pool `{}` names as parent the WWPN {} of pool `{}`'s vHBA",
                            echoed(&other.pool),
                            wwpn,
                            echoed(&v.pool)
                        ),
                        why: "a vHBA's parent is a physical port; vHBAs cannot nest".into(),
                    });
                }
            }
        }
    }
    if errors.is_empty() {
        errors = refused_by_policy(&import);
    }
    if errors.is_empty() {
        Ok(import)
    } else {
        Err(errors)
    }
}

/// The import as `hbad check` would judge it: the generated text read back by the
/// policy parser itself, so that what import-libvirt prints or writes is always a
/// policy hbad runs, whatever rule the checks above miss. Each refusal is put on the
/// pool whose table it is in.
fn refused_by_policy(import: &Import) -> Vec<ImportError> {
    let text = import.to_string();
    // Every table carries its WWNs, so the seed of derived names is never used.
    let env = crate::policy::Environment::fixed("import-libvirt");
    let Err(refusals) = crate::policy::Policy::from_str(Path::new("(import)"), &text, &env) else {
        return Vec::new();
    };
    // The line each `[[vhba]]` table starts on, in the order of `import.vhbas`.
    let starts: Vec<usize> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| *l == "[[vhba]]")
        .map(|(i, _)| i + 1)
        .collect();
    refusals
        .0
        .iter()
        .map(|e| {
            let table = starts
                .iter()
                .rposition(|&start| start <= e.origin.line)
                .and_then(|i| import.vhbas.get(i));
            let (file, pool) = match table {
                Some(v) => (v.file.clone(), v.pool.as_str()),
                None => (PathBuf::from("(import)"), ""),
            };
            ImportError {
                file,
                line: 1,
                column: 1,
                what: format!(
                    "pool `{}` gives a vHBA hbad check refuses: {}",
                    echoed(pool),
                    e.message
                ),
                why: e
                    .hint
                    .clone()
                    .unwrap_or_else(|| "fix the pool definition".into()),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(name: &str, text: &str) -> PoolSource {
        PoolSource {
            path: PathBuf::from(name),
            text: text.to_string(),
        }
    }

    fn pool(name: &str, adapter_attrs: &str) -> String {
        format!(
            "<pool type='scsi'>\n  <name>{name}</name>\n  <source>\n    <adapter type='fc_host' {adapter_attrs}/>\n  </source>\n  <target>\n    <path>/dev/disk/by-path</path>\n  </target>\n</pool>\n"
        )
    }

    fn one(text: &str) -> Result<Import, Vec<ImportError>> {
        import_pools(&[src("p.xml", text)])
    }

    fn refusal(text: &str) -> ImportError {
        let mut e = one(text).unwrap_err();
        assert_eq!(e.len(), 1, "{e:?}");
        e.remove(0)
    }

    /// A pool that is no vHBA: skipped, the import goes on.
    fn skipped(text: &str) -> ImportError {
        let mut i = one(text).unwrap();
        assert!(i.vhbas.is_empty() && i.skipped.len() == 1, "{i:?}");
        i.skipped.remove(0)
    }

    #[test]
    fn fc_host_pool_with_parent_wwns_becomes_a_vhba_table() {
        let i = one(&pool(
            "vhba-a",
            "parent_wwnn='20000000c9848140' parent_wwpn='10000000c9848140' wwnn='5001a4a000000b00' wwpn='5001a4a000000b01'",
        ))
        .unwrap();
        assert!(i.warnings.is_empty(), "{:?}", i.warnings);
        assert_eq!(
            i.vhbas,
            vec![VhbaTable {
                name: "vhba-a".into(),
                wwpn: "5001a4a000000b01".parse().unwrap(),
                wwnn: "5001a4a000000b00".parse().unwrap(),
                parent: ImportParent::Wwpn {
                    wwpn: "10000000c9848140".parse().unwrap(),
                    wwnn: Some("20000000c9848140".parse().unwrap()),
                },
                pool: "vhba-a".into(),
                file: "p.xml".into(),
            }]
        );
        let toml = i.to_string();
        assert!(toml.contains("[[vhba]]\nname = \"vhba-a\"\nwwpn = \"0x5001a4a000000b01\"\nwwnn = \"0x5001a4a000000b00\"\nparent_wwpn = \"0x10000000c9848140\"\nparent_wwnn = \"0x20000000c9848140\"\n"), "{toml}");
    }

    #[test]
    fn fabric_host_and_no_parent_map_to_the_policys_selectors() {
        let fabric = one(&pool(
            "f",
            "parent_fabric_wwn='2001000dec9877c1' wwnn='5001a4a000000b00' wwpn='5001a4a000000b01'",
        ))
        .unwrap();
        assert_eq!(
            fabric.vhbas[0].parent,
            ImportParent::Fabric("0x2001000dec9877c1".parse().unwrap())
        );
        assert!(fabric
            .to_string()
            .contains("parent_fabric = \"0x2001000dec9877c1\""));

        let host = one(&pool(
            "h",
            "parent='scsi_host3' wwnn='5001a4a000000b00' wwpn='5001a4a000000b01'",
        ))
        .unwrap();
        assert_eq!(host.vhbas[0].parent, ImportParent::Host(3));
        assert_eq!(host.warnings.len(), 1);
        assert!(
            host.warnings[0].what.contains("host number"),
            "{}",
            host.warnings[0]
        );
        assert!(host.to_string().contains("parent = \"host3\""));

        let auto = one(&pool(
            "a",
            "wwnn='5001a4a000000b00' wwpn='5001a4a000000b01'",
        ))
        .unwrap();
        assert_eq!(auto.vhbas[0].parent, ImportParent::Auto);
        assert!(auto.to_string().contains("parent = \"auto\""));
    }

    #[test]
    fn a_parent_wwnn_equal_to_parent_wwpn_is_refused_as_check_refuses_it() {
        let e = refusal(&pool(
            "a",
            "wwnn='2001001b32a9da4e' wwpn='2101001b32a9da4e' parent_wwnn='5001a4a000000001' parent_wwpn='5001a4a000000001'",
        ));
        assert_eq!((e.line, e.column), (4, 5), "{e}");
        assert!(
            e.what
                .contains("parent_wwnn and parent_wwpn are the same (0x5001a4a000000001)"),
            "{e}"
        );
    }

    #[test]
    fn values_quoted_in_refusals_are_cut_short() {
        let long = "p".repeat(5000);
        let e = refusal(&format!(
            "<pool type='scsi'><name>{long}</name><source><adapter type='{}'/></source></pool>",
            "t".repeat(5000)
        ));
        assert!(e.what.len() < 300, "{} bytes: {e}", e.what.len());
        assert!(
            e.what.contains(&format!("pool `{}…`", "p".repeat(80))),
            "{e}"
        );
    }

    #[test]
    fn host_numbers_take_digits_only() {
        for parent in ["scsi_host+7", "scsi_host07", "scsi_host4294967295"] {
            let e = refusal(&pool(
                "h",
                &format!("parent='{parent}' wwnn='5001a4a000000b00' wwpn='5001a4a000000b01'"),
            ));
            assert!(e.what.contains("is not a scsi_hostN name"), "{e}");
        }
    }

    #[test]
    fn whatever_the_policy_parser_refuses_is_never_printed_or_written() {
        let same: Wwn = "5001a4a000000001".parse().unwrap();
        let import = Import {
            vhbas: vec![VhbaTable {
                name: "a".into(),
                wwpn: "2101001b32a9da4e".parse().unwrap(),
                wwnn: "2001001b32a9da4e".parse().unwrap(),
                parent: ImportParent::Wwpn {
                    wwpn: same,
                    wwnn: Some(same),
                },
                pool: "pool-a".into(),
                file: "a.xml".into(),
            }],
            ..Import::default()
        };
        let refused = refused_by_policy(&import);
        assert_eq!(refused.len(), 1, "{refused:?}");
        assert_eq!(refused[0].file, Path::new("a.xml"));
        assert!(
            refused[0].what.starts_with(
                "pool `pool-a` gives a vHBA hbad check refuses: vHBA `a`: parent_wwnn is the same as parent_wwpn"
            ),
            "{}",
            refused[0]
        );
        let mut fine = import.clone();
        fine.vhbas[0].parent = ImportParent::Auto;
        assert!(refused_by_policy(&fine).is_empty());
    }

    #[test]
    fn several_parents_keep_libvirts_first_choice_and_say_so() {
        let i = one(&pool("x", "parent='scsi_host3' parent_fabric_wwn='2001000dec9877c1' managed='yes' wwnn='5001a4a000000b00' wwpn='5001a4a000000b01'")).unwrap();
        assert_eq!(i.vhbas[0].parent, ImportParent::Host(3));
        let text: Vec<String> = i.warnings.iter().map(|w| w.to_string()).collect();
        assert!(
            text.iter().any(|w| w.contains("dropped parent_fabric_wwn")),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|w| w.contains("managed='yes'") && w.contains("managed='no'")),
            "{text:?}"
        );
    }

    #[test]
    fn refusals_name_the_file_line_what_and_why() {
        let e = refusal(&pool("x", "wwpn='5001a4a000000b01'"));
        assert_eq!((e.file.as_path(), e.line), (Path::new("p.xml"), 4));
        assert!(e.what.contains("no wwnn"), "{e}");
        assert!(e.to_string().starts_with("p.xml:4:5: "), "{e}");

        let e = skipped("<pool type='scsi'>\n<name>s</name>\n<source><adapter type='scsi_host' name='scsi_host2'/></source></pool>");
        assert!(
            e.what.contains("scsi_host adapter") && e.why.contains("no vHBA"),
            "{e}"
        );
        let e = skipped(
            "<pool type='scsi'><name>s</name><source><adapter name='host2'/></source></pool>",
        );
        assert!(e.what.contains("without a type"), "{e}");
        let e = skipped("<pool type='logical'><name>vg</name></pool>");
        assert!(e.what.contains("`logical` pool"), "{e}");
        let e = refusal("<domain type='kvm'/>");
        assert!(e.what.contains("<domain>"), "{e}");
        let e = refusal("<pool type='scsi'><name>x</name>");
        assert!(e.what.starts_with("not well-formed XML"), "{e}");
        let e = refusal(&pool(
            "x",
            "parent='pci_0000_06_00_1' wwnn='5001a4a000000b00' wwpn='5001a4a000000b01'",
        ));
        assert!(e.what.contains("not a scsi_hostN"), "{e}");
        let e = refusal(&pool(
            "x",
            "parent_wwpn='10000000c9848140' wwnn='5001a4a000000b00' wwpn='5001a4a000000b01'",
        ));
        assert!(
            e.what.contains("`parent_wwpn` without `parent_wwnn`"),
            "{e}"
        );
        let e = refusal(&pool("x", "wwnn='zz' wwpn='5001a4a000000b01'"));
        assert!(e.what.contains("adapter `wwnn`"), "{e}");
        let e = refusal(&pool(
            "x",
            "wwnn='5001a4a000000b01' wwpn='5001a4a000000b01'",
        ));
        assert!(e.what.contains("the same"), "{e}");
        let e = refusal(&pool(
            "x",
            "managed='maybe' wwnn='5001a4a000000b00' wwpn='5001a4a000000b01'",
        ));
        assert!(e.what.contains("managed='maybe'"), "{e}");
        let e = refusal("<pool type='scsi'><source><adapter type='fc_host'/></source></pool>");
        assert!(e.what.contains("no <name>"), "{e}");
    }

    #[test]
    fn pools_that_are_no_vhba_are_skipped_and_the_rest_imported() {
        let i = import_pools(&[
            src("vg.xml", "<pool type='logical'><name>vg</name></pool>"),
            src(
                "a.xml",
                &pool("a", "wwnn='5001a4a000000b00' wwpn='5001a4a000000b01'"),
            ),
        ])
        .unwrap();
        assert_eq!(i.vhbas.len(), 1);
        let text: Vec<String> = i.skipped.iter().map(ToString::to_string).collect();
        assert_eq!(text.len(), 1);
        assert!(
            text[0].starts_with("vg.xml:1:1: pool `vg` is a `logical` pool"),
            "{text:?}"
        );
    }

    #[test]
    fn control_characters_never_reach_the_policy_or_the_terminal() {
        let e = refusal(&pool(
            "db\u{1b}[2J\u{7}",
            "wwnn='5001a4a000000b00' wwpn='5001a4a000000b01'",
        ));
        assert!(
            e.what
                .contains("pool `db\\u{1b}[2J\\u{7}` has a control character"),
            "{e}"
        );
        assert!(!e.to_string().chars().any(|c| c.is_control() && c != '\n'));
        // Through a character reference too, and in a value hbad only echoes.
        let e = refusal(&pool(
            "a&#x1b;b",
            "wwnn='5001a4a000000b00' wwpn='5001a4a000000b01'",
        ));
        assert!(e.what.contains("a\\u{1b}b"), "{e}");
        let e = refusal(&pool("a", "wwnn='&#x1b;]0;x' wwpn='5001a4a000000b01'"));
        assert!(!e.to_string().contains('\u{1b}'), "{e}");
        // A file name with a newline stays inside its comment.
        let i = import_pools(&[src(
            "a\nname = \"evil\"\u{1}.xml",
            &pool("a", "wwnn='5001a4a000000b00' wwpn='5001a4a000000b01'"),
        )])
        .unwrap();
        let toml = i.to_string();
        assert!(
            toml.contains("# pool `a` in a\\nname = \"evil\"\\u{1}.xml\n"),
            "{toml}"
        );
        let parsed: toml::Table = toml.parse().unwrap();
        assert_eq!(parsed["vhba"].as_array().map(Vec::len), Some(1));
    }

    #[test]
    fn size_and_depth_are_bounded_with_the_bound_in_the_error() {
        let big = format!("<pool type='scsi'>{}</pool>", " ".repeat(POOL_XML_MAX));
        let e = refusal(&big);
        assert!(e.what.contains("more than the 1048576"), "{e}");
        let deep = format!(
            "<pool>{}{}</pool>",
            "<a>".repeat(100_000),
            "</a>".repeat(100_000)
        );
        let e = refusal(&deep);
        assert!(e.what.contains("nested deeper than 32"), "{e}");
        assert_eq!(e.line, 1);
    }

    #[test]
    fn pool_names_are_made_fit_for_vhba_names() {
        let i = one(&pool(
            "..my pool/α",
            "wwnn='5001a4a000000b00' wwpn='5001a4a000000b01'",
        ))
        .unwrap();
        assert_eq!(i.vhbas[0].name, "my-pool--");
        assert!(i
            .warnings
            .iter()
            .any(|w| w.what.contains("becomes vHBA `my-pool--`")));
        assert_eq!(vhba_name_from_pool(&"a".repeat(60)).len(), 48);
        assert!(refusal(&pool(
            "...",
            "wwnn='5001a4a000000b00' wwpn='5001a4a000000b01'"
        ))
        .what
        .contains("nothing usable"));
    }

    #[test]
    fn duplicates_across_files_reject_the_import() {
        let a = pool("a", "wwnn='5001a4a000000b00' wwpn='5001a4a000000b01'");
        let b = pool("b", "wwnn='5001a4a000000c00' wwpn='5001a4a000000b01'");
        let e = import_pools(&[src("a.xml", &a), src("b.xml", &b)]).unwrap_err();
        assert_eq!(e.len(), 1);
        assert!(
            e[0].what.contains("WWPN") && e[0].file == Path::new("b.xml"),
            "{:?}",
            e
        );
        let e = import_pools(&[src("a.xml", &a), src("a2.xml", &a)]).unwrap_err();
        assert!(e[0].what.contains("comes twice"), "{e:?}");
        let nest = pool("n", "parent_wwnn='5001a4a000000b00' parent_wwpn='5001a4a000000b01' wwnn='5001a4a000000d00' wwpn='5001a4a000000d01'");
        let e = import_pools(&[src("a.xml", &a), src("n.xml", &nest)]).unwrap_err();
        assert!(e[0].why.contains("cannot nest"), "{e:?}");
    }
}

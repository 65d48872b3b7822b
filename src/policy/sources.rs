//! Which policy files are read, in which order: systemd's drop-in rules.
//!
//! The main file `/etc/hbad/hbad.toml` comes first, then `hbad.d/*.toml` from
//! `/usr/lib/hbad`, `/run/hbad` and `/etc/hbad`, sorted by file name. A drop-in in a
//! later directory replaces one of the same name in an earlier directory, and a
//! drop-in that is a link to /dev/null masks that name. Config management owns
//! /etc; packages own /usr/lib; /run is for what lives until the next boot.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use super::error::{Origin, PolicyError, PolicyErrors};
use super::limits::MAX_FILES;

#[derive(Clone, Debug)]
pub struct SearchPaths {
    pub main: PathBuf,
    pub dropin_dirs: Vec<PathBuf>,
}

impl Default for SearchPaths {
    fn default() -> Self {
        SearchPaths::under(Path::new("/"))
    }
}

impl SearchPaths {
    /// The standard locations under another root (tests, images being built).
    pub fn under(root: &Path) -> Self {
        SearchPaths {
            main: root.join("etc/hbad/hbad.toml"),
            dropin_dirs: ["usr/lib/hbad/hbad.d", "run/hbad/hbad.d", "etc/hbad/hbad.d"]
                .iter()
                .map(|d| root.join(d))
                .collect(),
        }
    }

    /// `--policy PATH`: a file alone, or a directory holding `hbad.toml` and `hbad.d/`.
    pub fn from_override(path: &Path) -> Self {
        SearchPaths {
            main: path.join("hbad.toml"),
            dropin_dirs: vec![path.join("hbad.d")],
        }
    }
}

/// The files to read, in order. `--policy FILE` gives just that file.
pub fn discover(
    policy: Option<&Path>,
    defaults: &SearchPaths,
) -> Result<Vec<PathBuf>, PolicyErrors> {
    let paths = match policy {
        Some(p) if p.is_dir() => SearchPaths::from_override(p),
        Some(p) if p.exists() => return Ok(vec![p.to_path_buf()]),
        Some(p) => {
            return Err(PolicyErrors(vec![PolicyError::new(
                Origin::file(p),
                "no such policy file or directory",
            )
            .hint(
                "give a .toml file or a directory holding hbad.toml and hbad.d/",
            )]))
        }
        None => defaults.clone(),
    };
    let mut files = Vec::new();
    let mut errors = Vec::new();
    // Whatever is at the main path is read: a directory or FIFO named hbad.toml is an
    // error the reader names, not a policy silently skipped.
    if fs::symlink_metadata(&paths.main).is_ok() {
        files.push(paths.main.clone());
    }
    let mut dropins: BTreeMap<String, Option<PathBuf>> = BTreeMap::new();
    for dir in &paths.dropin_dirs {
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                errors.push(
                    PolicyError::new(Origin::file(dir), format!("cannot list drop-ins: {e}"))
                        .hint("hbad.d is a directory of *.toml files"),
                );
                continue;
            }
        };
        for entry in entries {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    errors.push(PolicyError::new(
                        Origin::file(dir),
                        format!("cannot list drop-ins: {e}"),
                    ));
                    break;
                }
            };
            let raw = entry.file_name();
            let bytes = raw.as_encoded_bytes();
            if !bytes.ends_with(b".toml") || bytes.starts_with(b".") {
                continue;
            }
            // Names order and override drop-ins: two names that are not UTF-8 would
            // read alike, and one file would silently replace the other.
            let Some(name) = raw.to_str().map(str::to_string) else {
                errors.push(
                    PolicyError::new(
                        Origin::file(dir),
                        format!("drop-in name `{}` is not UTF-8", bytes.escape_ascii()),
                    )
                    .hint("rename the file: drop-ins are ordered and overridden by name"),
                );
                continue;
            };
            let path = entry.path();
            let masked = fs::read_link(&path).is_ok_and(|t| t == Path::new("/dev/null"));
            dropins.insert(name, (!masked).then_some(path));
            if dropins.len() > MAX_FILES {
                errors.push(
                    PolicyError::new(
                        Origin::file(dir),
                        format!("more than {MAX_FILES} drop-ins in the hbad.d directories"),
                    )
                    .hint("merge drop-ins; each may hold many [[vhba]] tables"),
                );
                return Err(PolicyErrors(errors));
            }
        }
    }
    if !errors.is_empty() {
        return Err(PolicyErrors(errors));
    }
    files.extend(dropins.into_values().flatten());
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_named_like_a_policy_file_is_read_not_skipped() {
        let root = tempfile::tempdir().unwrap();
        let sp = SearchPaths::under(root.path());
        fs::create_dir_all(&sp.main).unwrap();
        fs::create_dir_all(sp.dropin_dirs[2].join("20-dir.toml")).unwrap();
        let files = discover(None, &sp).unwrap();
        assert_eq!(
            files,
            [sp.main.clone(), sp.dropin_dirs[2].join("20-dir.toml")]
        );
    }

    #[test]
    fn a_drop_in_directory_that_is_a_file_is_an_error() {
        let root = tempfile::tempdir().unwrap();
        let sp = SearchPaths::under(root.path());
        fs::create_dir_all(sp.dropin_dirs[2].parent().unwrap()).unwrap();
        fs::write(&sp.dropin_dirs[2], "").unwrap();
        let err = discover(None, &sp).unwrap_err();
        assert!(err.to_string().contains("cannot list drop-ins"), "{err}");
    }

    #[test]
    fn drop_in_names_that_are_not_utf8_are_refused_not_merged() {
        use std::os::unix::ffi::OsStrExt;
        let root = tempfile::tempdir().unwrap();
        let sp = SearchPaths::under(root.path());
        let etc = &sp.dropin_dirs[2];
        fs::create_dir_all(etc).unwrap();
        for name in [&b"\xff.toml"[..], b"\xfe.toml"] {
            fs::write(etc.join(std::ffi::OsStr::from_bytes(name)), "").unwrap();
        }
        fs::write(etc.join(std::ffi::OsStr::from_bytes(b"\xfd.txt")), "").unwrap();
        let err = discover(None, &sp).unwrap_err();
        assert_eq!(err.0.len(), 2, "{err}");
        let text = err.to_string();
        assert!(
            text.contains(&format!(
                "{}: drop-in name `\\xff.toml` is not UTF-8",
                etc.display()
            )),
            "{text}"
        );
        assert!(text.contains("`\\xfe.toml`"), "{text}");
    }

    #[test]
    fn later_directories_override_and_dev_null_masks() {
        let root = tempfile::tempdir().unwrap();
        let sp = SearchPaths::under(root.path());
        for d in &sp.dropin_dirs {
            fs::create_dir_all(d).unwrap();
        }
        fs::create_dir_all(sp.main.parent().unwrap()).unwrap();
        fs::write(&sp.main, "").unwrap();
        let (usr, run, etc) = (&sp.dropin_dirs[0], &sp.dropin_dirs[1], &sp.dropin_dirs[2]);
        fs::write(usr.join("10-defaults.toml"), "").unwrap();
        fs::write(usr.join("20-site.toml"), "").unwrap();
        fs::write(usr.join("30-gone.toml"), "").unwrap();
        fs::write(run.join("20-site.toml"), "").unwrap();
        fs::write(etc.join("15-local.toml"), "").unwrap();
        fs::write(etc.join("notes.txt"), "").unwrap();
        std::os::unix::fs::symlink("/dev/null", etc.join("30-gone.toml")).unwrap();
        let files = discover(None, &sp).unwrap();
        let rel: Vec<String> = files
            .iter()
            .map(|f| f.strip_prefix(root.path()).unwrap().display().to_string())
            .collect();
        assert_eq!(
            rel,
            [
                "etc/hbad/hbad.toml",
                "usr/lib/hbad/hbad.d/10-defaults.toml",
                "etc/hbad/hbad.d/15-local.toml",
                "run/hbad/hbad.d/20-site.toml",
            ]
        );
    }
}

//! Policy errors that point at the file, line and column, and say what to do.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

/// Where a value came from: a file and a 1-based line and column.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Origin {
    pub file: Arc<Path>,
    pub line: usize,
    pub column: usize,
}

impl Origin {
    /// The position of a byte offset in a file's text.
    pub fn at(file: &Arc<Path>, text: &str, offset: usize) -> Origin {
        let offset = offset.min(text.len());
        let before = &text.as_bytes()[..offset];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        let column = String::from_utf8_lossy(&before[line_start..])
            .chars()
            .count()
            + 1;
        Origin {
            file: file.clone(),
            line,
            column,
        }
    }

    /// A whole file, for errors that have no better place.
    pub fn file(path: &Path) -> Origin {
        Origin {
            file: Arc::from(path),
            line: 0,
            column: 0,
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.file.display())
        } else {
            write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
        }
    }
}

/// One problem with a policy: where, what, and (often) what to write instead.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PolicyError {
    pub origin: Origin,
    pub message: String,
    pub hint: Option<String>,
}

impl PolicyError {
    pub fn new(origin: Origin, message: impl Into<String>) -> Self {
        PolicyError {
            origin,
            message: message.into(),
            hint: None,
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.origin, self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// Every problem found, so that one run of `hbad check` shows them all.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PolicyErrors(pub Vec<PolicyError>);

impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PolicyErrors {}

/// The accepted key closest to a mistyped one, if any is close enough to suggest.
pub fn closest<'a>(wrong: &str, accepted: &[&'a str]) -> Option<&'a str> {
    accepted
        .iter()
        .map(|k| (strsim::damerau_levenshtein(wrong, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 3))
        .min()
        .map(|(_, k)| k)
}

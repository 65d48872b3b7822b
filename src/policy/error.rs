//! Policy errors that point at the file, line and column, and say what to do.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

use crate::terminal::printable;

/// Where a value came from: a file and a 1-based line and column.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Origin {
    pub file: Arc<Path>,
    pub line: usize,
    pub column: usize,
}

impl Origin {
    /// The position of a byte offset in a file's text, for a one-off error. Many
    /// positions in one file go through a [`LineIndex`].
    pub fn at(file: &Arc<Path>, text: &str, offset: usize) -> Origin {
        LineIndex::new(text).origin(file, text, offset)
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

/// Where each line of a file starts, built once per file: the span of every value
/// becomes a line with a binary search and a column with a bounded count, so a file of
/// 50,000 vHBA tables costs the same per value as a file of one.
#[derive(Debug, Clone)]
pub struct LineIndex {
    /// Byte offset of the first byte of each line; `line_starts[0] == 0`.
    line_starts: Vec<usize>,
    /// For text with multi-byte characters: the number of characters before every
    /// `CHUNK`-th byte, so a column is counted over at most `CHUNK` bytes.
    chars_before_chunk: Option<Vec<usize>>,
    text_len: usize,
}

const CHUNK: usize = 256;

impl LineIndex {
    pub fn new(text: &str) -> LineIndex {
        let bytes = text.as_bytes();
        let mut line_starts = vec![0];
        line_starts.extend(
            bytes
                .iter()
                .enumerate()
                .filter(|(_, &b)| b == b'\n')
                .map(|(i, _)| i + 1),
        );
        let chars_before_chunk = (!text.is_ascii()).then(|| {
            let mut counts = Vec::with_capacity(bytes.len() / CHUNK + 1);
            let mut chars = 0;
            for chunk in bytes.chunks(CHUNK) {
                counts.push(chars);
                chars += chunk.iter().filter(|&&b| !is_continuation(b)).count();
            }
            counts
        });
        LineIndex {
            line_starts,
            chars_before_chunk,
            text_len: bytes.len(),
        }
    }

    /// The 1-based line and column (in characters) of a byte offset.
    pub fn position(&self, text: &str, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text_len).min(text.len());
        // The last line start at or before `offset`; line_starts[0] == 0 <= offset.
        let line = self.line_starts.partition_point(|&s| s <= offset);
        let start = self.line_starts[line.saturating_sub(1)];
        let column = match &self.chars_before_chunk {
            None => offset - start,
            Some(_) => self.chars_before(text, offset) - self.chars_before(text, start),
        };
        (line, column + 1)
    }

    /// `text` is the text this index was built from.
    pub fn origin(&self, file: &Arc<Path>, text: &str, offset: usize) -> Origin {
        let (line, column) = self.position(text, offset);
        Origin {
            file: file.clone(),
            line,
            column,
        }
    }

    fn chars_before(&self, text: &str, offset: usize) -> usize {
        let bytes = text.as_bytes();
        let chunk = offset / CHUNK;
        let base = self
            .chars_before_chunk
            .as_ref()
            .and_then(|c| c.get(chunk).copied())
            .unwrap_or(0);
        base + bytes[chunk * CHUNK..offset]
            .iter()
            .filter(|&&b| !is_continuation(b))
            .count()
    }
}

fn is_continuation(b: u8) -> bool {
    b & 0xc0 == 0x80
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", printable(&self.file.display().to_string()))
        } else {
            write!(
                f,
                "{}:{}:{}",
                printable(&self.file.display().to_string()),
                self.line,
                self.column
            )
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

impl PolicyErrors {
    /// The first [`MAX_ERRORS`](super::limits::MAX_ERRORS) errors and, when there were
    /// more, one that counts the rest, placed where the first of them is: a policy of
    /// 65,536 broken vHBAs is refused in a screenful, not 65,536 lines.
    pub fn capped(mut errors: Vec<PolicyError>) -> PolicyErrors {
        let max = super::limits::MAX_ERRORS;
        if errors.len() > max {
            let more = errors.len() - max;
            let at = errors[max].origin.clone();
            errors.truncate(max);
            errors.push(
                PolicyError::new(
                    at,
                    format!(
                        "... and {more} more error{}",
                        if more == 1 { "" } else { "s" }
                    ),
                )
                .hint(format!(
                    "hbad shows the first {max}; fix these and run hbad check again"
                )),
            );
        }
        PolicyErrors(errors)
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_lines_and_characters() {
        let text = "a = 1\nb = \"é\u{1F600}\"\n\nc = 2";
        let index = LineIndex::new(text);
        let at = |needle: &str| index.position(text, text.find(needle).unwrap());
        assert_eq!(at("a"), (1, 1));
        assert_eq!(at("b"), (2, 1));
        // Characters, not bytes: é is 2 bytes, the emoji 4.
        assert_eq!(at("\"\n"), (2, 8));
        assert_eq!(at("c"), (4, 1));
        assert_eq!(index.position(text, usize::MAX), (4, 6));
        let ascii = "x\ny = 1";
        assert_eq!(LineIndex::new(ascii).position(ascii, 4), (2, 3));
    }

    #[test]
    fn columns_past_a_chunk_of_multibyte_text_are_exact() {
        let line = "é".repeat(300);
        let text = format!("{line}\n{line}x");
        let index = LineIndex::new(&text);
        assert_eq!(index.position(&text, text.len() - 1), (2, 301));
        assert_eq!(index.position(&text, 600), (1, 301));
    }
}

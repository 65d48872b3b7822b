//! Text from outside hbad (a policy, the command line, sysfs, a state or status file)
//! on its way to a terminal or a log line.
//!
//! A SAN array chooses its INQUIRY vendor and model, a vport's symbolic name is
//! anyone's to write, and a policy value can hold any character: printed raw, an
//! escape sequence retitles the terminal or repaints what the operator reads, and a
//! newline forges a line of output. Everything shown goes through [`printable`]; a
//! value echoed back in an error also goes through [`echoed`], which cuts it short.

use std::borrow::Cow;

/// Characters past this are cut from an echoed value (the end is marked with "…").
pub const ECHO_CHARS: usize = 80;

/// Whether a character changes what a terminal shows rather than being shown: C0 and
/// C1 controls, and the invisible format characters that reorder or hide text
/// (bidirectional overrides, zero-width characters, the byte-order mark).
fn hides(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{206f}' | '\u{feff}')
}

/// `s` with every character that a terminal would act on written as an escape
/// (`\u{1b}`, `\n`), and borrowed unchanged when there is none.
pub fn printable(s: &str) -> Cow<'_, str> {
    if !s.chars().any(hides) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if hides(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A value quoted back in an error: printable, and at most [`ECHO_CHARS`] characters
/// of it, so a 1 MiB value does not become a 1 MiB error line.
pub fn echoed(s: &str) -> String {
    match s.char_indices().nth(ECHO_CHARS) {
        None => printable(s).into_owned(),
        Some((cut, _)) => format!("{}…", printable(&s[..cut])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_hidden_characters_are_escaped_the_rest_kept() {
        assert_eq!(printable("qla2xxx"), "qla2xxx");
        assert!(matches!(printable("é ok"), Cow::Borrowed(_)));
        assert_eq!(printable("\u{1b}[31mX\n"), "\\u{1b}[31mX\\n");
        assert_eq!(
            printable("hbad:x\u{1b}]0;pwned\u{7}"),
            "hbad:x\\u{1b}]0;pwned\\u{7}"
        );
        assert_eq!(printable("a\u{202e}b\u{9b}"), "a\\u{202e}b\\u{9b}");
    }

    #[test]
    fn echoed_values_are_cut_at_a_character_boundary() {
        assert_eq!(echoed(&"x".repeat(80)), "x".repeat(80));
        assert_eq!(echoed(&"é".repeat(900_000)), format!("{}…", "é".repeat(80)));
        assert_eq!(echoed("\u{1b}"), "\\u{1b}");
    }
}

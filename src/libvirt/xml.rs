//! Just enough XML: escaping for what hbad writes, and a small element tree for the
//! pool definitions it reads. The reading is quick-xml's; this only keeps each
//! element's byte offset so that errors can say `file:line:column`.

use std::borrow::Cow;

use quick_xml::escape::{escape, resolve_predefined_entity};
use quick_xml::events::Event;
use quick_xml::Reader;

use crate::terminal::{echoed, printable};

/// Text or an attribute value, quoted either way (`'` included: libvirt quotes
/// attributes with `'`). Control characters (which XML 1.0 refuses, and which a
/// terminal acts on) are written as escapes first: sysfs strings come from devices.
pub(crate) fn esc(s: &str) -> Cow<'_, str> {
    match printable(s) {
        Cow::Borrowed(s) => escape(s),
        Cow::Owned(s) => Cow::Owned(escape(&s).into_owned()),
    }
}

/// Text fit for `<!-- ... -->`: XML forbids `--` inside a comment and `-` at its end,
/// and control characters anywhere.
pub(crate) fn comment(s: &str) -> String {
    let s = printable(s);
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c == '-' && out.ends_with('-') {
            out.push(' ');
        }
        out.push(c);
    }
    if out.ends_with('-') {
        out.push(' ');
    }
    out
}

/// An element as read: name, attributes in document order, child elements, the
/// text directly inside it (trimmed), and where it starts in the input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Element {
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Element>,
    pub text: String,
    pub offset: usize,
}

impl Element {
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }
}

/// Why a document is not well-formed XML, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct XmlError {
    pub offset: usize,
    pub message: String,
}

/// 1-based line and column (in characters) of a byte offset.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let upto = text.get(..offset.min(text.len())).unwrap_or(text);
    let line = upto.matches('\n').count() + 1;
    let col = upto.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    (line, col)
}

/// The offset of the first non-blank byte at or after `from`: where an element
/// read after some whitespace really starts.
fn skip_blank(text: &str, from: usize) -> usize {
    let rest = text.get(from..).unwrap_or("");
    from + (rest.len() - rest.trim_start().len())
}

/// The deepest element nesting read. libvirt's pool definitions nest four deep;
/// the bound keeps a hostile document from exhausting the stack when its tree is
/// dropped or printed (both recurse).
pub(crate) const MAX_DEPTH: usize = 32;

/// Reads a whole document into its root element.
pub(crate) fn parse(text: &str) -> Result<Element, XmlError> {
    // Text is kept whole and trimmed per element at its end: trimming each piece
    // would eat the blanks around an entity (`a &amp; b` read as `a&b`).
    let mut reader = Reader::from_str(text);
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let fail = |offset: u64, message: String| XmlError {
        offset: usize::try_from(offset).unwrap_or(usize::MAX),
        message,
    };
    loop {
        let before = usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX);
        let event = reader
            .read_event()
            .map_err(|e| fail(reader.error_position(), e.to_string()))?;
        let open = |e: &quick_xml::events::BytesStart| -> Result<Element, XmlError> {
            let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
            let mut attrs = Vec::new();
            for a in e.attributes() {
                let a = a.map_err(|err| fail(before as u64, err.to_string()))?;
                let key = String::from_utf8_lossy(a.key.as_ref()).into_owned();
                let value = a
                    .unescape_value()
                    .map_err(|err| {
                        fail(
                            before as u64,
                            format!("attribute `{}`: {err}", echoed(&key)),
                        )
                    })?
                    .into_owned();
                attrs.push((key, value));
            }
            Ok(Element {
                name,
                attrs,
                children: Vec::new(),
                text: String::new(),
                offset: skip_blank(text, before),
            })
        };
        match event {
            Event::Start(e) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(fail(
                        before as u64,
                        format!("elements nested deeper than {MAX_DEPTH}"),
                    ));
                }
                let el = open(&e)?;
                stack.push(el);
            }
            Event::Empty(e) => {
                let el = open(&e)?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None if root.is_none() => root = Some(el),
                    None => return Err(fail(before as u64, "more than one root element".into())),
                }
            }
            Event::End(_) => {
                let Some(mut el) = stack.pop() else {
                    return Err(fail(
                        before as u64,
                        "closing tag without an opening one".into(),
                    ));
                };
                el.text = el.text.trim().to_string();
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None if root.is_none() => root = Some(el),
                    None => return Err(fail(before as u64, "more than one root element".into())),
                }
            }
            Event::Text(t) => {
                let s = t.decode().map_err(|e| fail(before as u64, e.to_string()))?;
                if let Some(el) = stack.last_mut() {
                    el.text.push_str(&s);
                }
            }
            Event::CData(t) => {
                let s = t.decode().map_err(|e| fail(before as u64, e.to_string()))?;
                if let Some(el) = stack.last_mut() {
                    el.text.push_str(&s);
                }
            }
            Event::GeneralRef(r) => {
                let resolved = match r
                    .resolve_char_ref()
                    .map_err(|e| fail(before as u64, e.to_string()))?
                {
                    Some(c) => c.to_string(),
                    None => {
                        let name = r.decode().map_err(|e| fail(before as u64, e.to_string()))?;
                        resolve_predefined_entity(&name)
                            .ok_or_else(|| {
                                fail(
                                    before as u64,
                                    format!("unknown entity `&{};`", echoed(&name)),
                                )
                            })?
                            .to_string()
                    }
                };
                if let Some(el) = stack.last_mut() {
                    el.text.push_str(&resolved);
                }
            }
            Event::Eof => break,
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) | Event::DocType(_) => {}
        }
    }
    if let Some(open) = stack.last() {
        return Err(XmlError {
            offset: open.offset,
            message: format!("<{}> is never closed", echoed(&open.name)),
        });
    }
    root.ok_or(XmlError {
        offset: 0,
        message: "no element at all".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_never_reach_the_xml_written() {
        assert_eq!(esc("a<\u{1b}[31m"), "a&lt;\\u{1b}[31m");
        assert_eq!(esc("plain"), "plain");
        assert_eq!(comment("EVIL\u{1b}\n--"), "EVIL\\u{1b}\\n- - ");
    }

    #[test]
    fn reads_attributes_text_and_entities() {
        let doc = "<?xml version='1.0'?>\n<pool type='scsi'>\n  <name> a &amp; b&#x21; </name>\n  <source><adapter type=\"fc_host\" wwnn='&apos;x'/></source>\n</pool>\n";
        let root = parse(doc).unwrap();
        assert_eq!(root.name, "pool");
        assert_eq!(root.attr("type"), Some("scsi"));
        assert_eq!(root.child("name").unwrap().text, "a & b!");
        let adapter = root.child("source").unwrap().child("adapter").unwrap();
        assert_eq!(adapter.attr("wwnn"), Some("'x"));
        assert_eq!(line_col(doc, adapter.offset), (4, 11));
        assert_eq!(line_col(doc, root.child("name").unwrap().offset), (3, 3));
    }

    #[test]
    fn rejects_ill_formed_documents_with_a_position() {
        for bad in [
            "<pool><name>x</pool>",
            "<pool>",
            "",
            "<a/><b/>",
            "<pool a='1' a='2'/>",
            "<pool>&nbsp;</pool>",
        ] {
            assert!(parse(bad).is_err(), "accepted {bad:?}");
        }
        let e = parse("<pool>\n  <name>x</nam>\n</pool>").unwrap_err();
        assert_eq!(line_col("<pool>\n  <name>x</nam>\n</pool>", e.offset).0, 2);
    }

    #[test]
    fn nesting_is_bounded_with_the_bound_in_the_error() {
        let deep = |n: usize| format!("{}{}", "<a>".repeat(n), "</a>".repeat(n));
        assert!(parse(&deep(MAX_DEPTH)).is_ok());
        let e = parse(&deep(MAX_DEPTH + 1)).unwrap_err();
        assert!(e.message.contains("deeper than 32"), "{e:?}");
        // Far deeper than any stack takes recursion through: an error, not a crash.
        let e = parse(&deep(1_000_000)).unwrap_err();
        assert_eq!(e.offset, 3 * MAX_DEPTH);
    }

    #[test]
    fn escapes_text_and_comments() {
        assert_eq!(esc("a<b>&'\""), "a&lt;b&gt;&amp;&apos;&quot;");
        assert_eq!(comment("LIO--ORG-"), "LIO- -ORG- ");
        assert_eq!(comment("plain"), "plain");
    }
}

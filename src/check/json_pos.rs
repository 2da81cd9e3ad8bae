//! Where a value is written in JSON text.
//!
//! The document rules read a parsed [`serde_json::Value`] and say what they found at
//! a JSON Pointer (RFC 6901, as `Value::pointer` and the chart schemas use it:
//! `/Statement/1/Action`). A finding on a document a template made must name the line
//! of the template that wrote the value, and [`lines`](crate::render) maps output
//! lines to template lines; this module maps a pointer to the output line (and
//! column) in between.
//!
//! It is a scanner, not a parser: it walks the text along the pointer only, skipping
//! every other value without building it, and expects text that `serde_json` already
//! accepted (anything else gives `None`, never a panic). It runs only when a finding
//! exists. Of two members with one key the last is the one found, as `serde_json`
//! keeps the last.

/// A place in the text: 1-based line and column (the column counts characters, as
/// every strata location does) and the byte offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    pub line: u32,
    pub col: u32,
    pub offset: usize,
}

/// Where a value is: the value's first character and, for an object member, the
/// opening quote of its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    pub value: Pos,
    pub key: Option<Pos>,
}

/// The value at `pointer` in `text`, or `None` when the pointer names nothing there
/// (or the text is not JSON).
pub fn locate(text: &str, pointer: &str) -> Option<Found> {
    let segments = segments(pointer)?;
    let mut s = Scanner {
        text,
        bytes: text.as_bytes(),
        at: 0,
    };
    s.blank();
    let mut key = None;
    for segment in &segments {
        let (k, v) = s.child(segment)?;
        key = k;
        s.at = v;
    }
    // The value must start with a character a JSON value starts with.
    match s.bytes.get(s.at)? {
        b'{' | b'[' | b'"' | b'-' | b'0'..=b'9' | b't' | b'f' | b'n' => {}
        _ => return None,
    }
    Some(Found {
        value: position(text, s.at),
        key: key.map(|k| position(text, k)),
    })
}

/// The value at `pointer` or, when it is not there, at the nearest pointer above it
/// that is (a missing member: the object that lacks it), with that pointer.
pub fn nearest(text: &str, pointer: &str) -> Option<(Found, String)> {
    let mut pointer = pointer.to_owned();
    loop {
        if let Some(found) = locate(text, &pointer) {
            return Some((found, pointer));
        }
        let cut = pointer.rfind('/')?;
        pointer.truncate(cut);
    }
}

/// The segments of a JSON Pointer, unescaped (`~1` is `/`, `~0` is `~`); `None` for
/// text that is not a pointer.
fn segments(pointer: &str) -> Option<Vec<String>> {
    if pointer.is_empty() {
        return Some(Vec::new());
    }
    let rest = pointer.strip_prefix('/')?;
    Some(
        rest.split('/')
            .map(|s| s.replace("~1", "/").replace("~0", "~"))
            .collect(),
    )
}

/// An array index as `Value::pointer` reads one: digits, no sign, no leading zero.
fn index(segment: &str) -> Option<usize> {
    if segment.starts_with('+') || (segment.starts_with('0') && segment.len() != 1) {
        return None;
    }
    segment.parse().ok()
}

/// Line and column of byte `offset`.
fn position(text: &str, offset: usize) -> Pos {
    let before = &text.as_bytes()[..offset];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |p| p + 1);
    let col = text[line_start..offset].chars().count() + 1;
    Pos {
        line: u32::try_from(line).unwrap_or(u32::MAX),
        col: u32::try_from(col).unwrap_or(u32::MAX),
        offset,
    }
}

struct Scanner<'a> {
    text: &'a str,
    bytes: &'a [u8],
    at: usize,
}

impl Scanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn blank(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.at += 1)
    }

    /// The member or element `segment` of the value at the cursor: (offset of its
    /// key, offset of its value). The cursor ends anywhere.
    fn child(&mut self, segment: &str) -> Option<(Option<usize>, usize)> {
        match self.peek()? {
            b'{' => {
                self.at += 1;
                let mut found = None;
                self.blank();
                if self.peek()? == b'}' {
                    return None;
                }
                loop {
                    self.blank();
                    let key_at = self.at;
                    let key = self.string()?;
                    self.blank();
                    self.expect(b':')?;
                    self.blank();
                    if key == segment {
                        // Keep looking: of two members with this key, the last counts.
                        found = Some((Some(key_at), self.at));
                    }
                    self.skip_value()?;
                    self.blank();
                    match self.peek()? {
                        b',' => self.at += 1,
                        b'}' => return found,
                        _ => return None,
                    }
                }
            }
            b'[' => {
                let wanted = index(segment)?;
                self.at += 1;
                self.blank();
                if self.peek()? == b']' {
                    return None;
                }
                for i in 0.. {
                    self.blank();
                    if i == wanted {
                        return Some((None, self.at));
                    }
                    self.skip_value()?;
                    self.blank();
                    match self.peek()? {
                        b',' => self.at += 1,
                        _ => return None,
                    }
                }
                None
            }
            _ => None,
        }
    }

    /// Moves past one value, nested ones without recursion (a deep document cannot
    /// exhaust the stack).
    fn skip_value(&mut self) -> Option<()> {
        let mut depth = 0usize;
        loop {
            match self.peek()? {
                b'"' => self.skip_string()?,
                b'{' | b'[' => {
                    depth += 1;
                    self.at += 1;
                }
                b'}' | b']' => {
                    depth = depth.checked_sub(1)?;
                    self.at += 1;
                }
                b',' | b':' | b' ' | b'\t' | b'\n' | b'\r' if depth > 0 => self.at += 1,
                _ => {
                    // A number, true, false or null: up to the next delimiter.
                    let start = self.at;
                    while !matches!(
                        self.peek(),
                        None | Some(b',' | b']' | b'}' | b':' | b' ' | b'\t' | b'\n' | b'\r')
                    ) {
                        self.at += 1;
                    }
                    if self.at == start {
                        return None;
                    }
                }
            }
            if depth == 0 {
                return Some(());
            }
        }
    }

    fn skip_string(&mut self) -> Option<()> {
        self.expect(b'"')?;
        loop {
            match self.peek()? {
                b'"' => {
                    self.at += 1;
                    return Some(());
                }
                b'\\' => self.at += 2,
                _ => self.at += 1,
            }
        }
    }

    /// The string at the cursor, unescaped.
    fn string(&mut self) -> Option<String> {
        self.expect(b'"')?;
        let mut out = String::new();
        let mut run = self.at;
        loop {
            match self.peek()? {
                b'"' => {
                    out.push_str(self.text.get(run..self.at)?);
                    self.at += 1;
                    return Some(out);
                }
                b'\\' => {
                    out.push_str(self.text.get(run..self.at)?);
                    self.at += 1;
                    let escaped = self.peek()?;
                    self.at += 1;
                    match escaped {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => out.push(self.unicode()?),
                        _ => return None,
                    }
                    run = self.at;
                }
                _ => self.at += 1,
            }
        }
    }

    /// The character of a `\uXXXX` escape whose `\u` was read (a surrogate pair is two
    /// escapes).
    fn unicode(&mut self) -> Option<char> {
        let first = self.hex4()?;
        if (0xD800..0xDC00).contains(&first) {
            if self.bytes.get(self.at..self.at + 2)? != b"\\u" {
                return None;
            }
            self.at += 2;
            let second = self.hex4()?;
            if !(0xDC00..0xE000).contains(&second) {
                return None;
            }
            return char::from_u32(0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00));
        }
        char::from_u32(first)
    }

    fn hex4(&mut self) -> Option<u32> {
        let digits = self.text.get(self.at..self.at + 4)?;
        let value = u32::from_str_radix(digits, 16).ok()?;
        if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        self.at += 4;
        Some(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{Value as J, json};

    /// (line, column) of the value, and of the key.
    type Place = (u32, u32, Option<(u32, u32)>);

    fn at(text: &str, pointer: &str) -> Option<Place> {
        locate(text, pointer).map(|f| (f.value.line, f.value.col, f.key.map(|k| (k.line, k.col))))
    }

    #[test]
    fn a_member_and_an_element_are_found_with_their_key() {
        let text = "{\n  \"Version\": \"2012-10-17\",\n  \"Statement\": [\n    {\"Effect\": \"Allow\", \"Action\": [\"s3:GetObject\", \"*\"]}\n  ]\n}\n";
        assert_eq!(at(text, ""), Some((1, 1, None)));
        assert_eq!(at(text, "/Version"), Some((2, 14, Some((2, 3)))));
        assert_eq!(at(text, "/Statement"), Some((3, 16, Some((3, 3)))));
        assert_eq!(at(text, "/Statement/0"), Some((4, 5, None)));
        assert_eq!(
            at(text, "/Statement/0/Action"),
            Some((4, 35, Some((4, 25))))
        );
        assert_eq!(at(text, "/Statement/0/Action/1"), Some((4, 52, None)));
        assert_eq!(at(text, "/Statement/0/Action/2"), None);
        assert_eq!(at(text, "/Statement/1"), None);
        assert_eq!(at(text, "/Statement/01"), None);
        assert_eq!(at(text, "/Statement/+0"), None);
        assert_eq!(at(text, "/Missing"), None);
        assert_eq!(at(text, "/Version/x"), None);
        assert_eq!(at(text, "no-slash"), None);
    }

    #[test]
    fn keys_are_compared_unescaped_and_columns_count_characters() {
        let text = r#"{"é": 1, "\u00e9x": 2, "a\"b": 3, "a/b": 4, "m~n": 5, "\ud83d\ude00": 6, "\/": 7, "b\bf\fr\rn\n\\": 8, "tab\t": {"ü": [true, null, -1.5e3]}}"#;
        let doc: J = serde_json::from_str(text).unwrap();
        for pointer in [
            "/é",
            "/éx",
            "/a\"b",
            "/a~1b",
            "/m~0n",
            "/😀",
            "/~1",
            "/b\u{8}f\u{c}r\rn\n\\",
            "/tab\t/ü/2",
        ] {
            let found = locate(text, pointer).unwrap_or_else(|| panic!("{pointer}"));
            let back: J = serde_json::Deserializer::from_str(&text[found.value.offset..])
                .into_iter()
                .next()
                .unwrap()
                .unwrap();
            assert_eq!(Some(&back), doc.pointer(pointer), "{pointer}");
        }
        // `{"é": ` is 6 characters but 7 bytes.
        assert_eq!(at(text, "/é"), Some((1, 7, Some((1, 2)))));
    }

    #[test]
    fn of_two_members_with_one_key_the_last_is_found_as_serde_json_keeps_it() {
        let text = "{\"a\": 1,\n \"a\": {\"b\": 2}}";
        let doc: J = serde_json::from_str(text).unwrap();
        assert_eq!(doc["a"], json!({"b": 2}));
        assert_eq!(at(text, "/a"), Some((2, 7, Some((2, 2)))));
        assert_eq!(at(text, "/a/b"), Some((2, 13, Some((2, 8)))));
    }

    #[test]
    fn nearest_climbs_to_what_exists() {
        let text = "{\"bucket\": {\"name\": \"x\"}}";
        let (found, pointer) = nearest(text, "/bucket/versioning").unwrap();
        assert_eq!(pointer, "/bucket");
        assert_eq!(found.value.col, 12);
        assert_eq!(nearest(text, "/nope/deeper").unwrap().1, "");
    }

    #[test]
    fn text_that_is_not_json_gives_none_not_a_panic() {
        for text in [
            "",
            "{",
            "[",
            "{\"a\"",
            "{\"a\":",
            "{\"a\": 1",
            "[1,",
            "\"",
            "\"\\u12",
            "{\"\\ud800\": 1}",
            "{\"\\u00zz\": 1}",
            "{\"a\" 1}",
            "]",
            "}",
            "{\"a\": 1]",
            "[[[[",
            "{\"é",
            "\u{0}",
        ] {
            for pointer in ["", "/a", "/0", "/a/0", "/0/0/0"] {
                let _ = locate(text, pointer);
            }
        }
        // Deep nesting is skipped without recursion.
        let deep = format!(
            "{{\"a\": {}1{}, \"b\": 2}}",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        assert_eq!(at(&deep, "/b"), Some((1, 200_015, Some((1, 200_010)))));
    }

    /// Every pointer into `value`, the whole document first.
    fn pointers(value: &J, prefix: String, out: &mut Vec<String>) {
        out.push(prefix.clone());
        match value {
            J::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    pointers(item, format!("{prefix}/{i}"), out);
                }
            }
            J::Object(map) => {
                for (k, v) in map {
                    let k = k.replace('~', "~0").replace('/', "~1");
                    pointers(v, format!("{prefix}/{k}"), out);
                }
            }
            _ => {}
        }
    }

    /// The byte offset of 1-based `line` and character `col`, found afresh.
    fn offset_of(text: &str, line: u32, col: u32) -> usize {
        let start: usize = text
            .split_inclusive('\n')
            .take(line as usize - 1)
            .map(str::len)
            .sum();
        start
            + text[start..]
                .char_indices()
                .nth(col as usize - 1)
                .map_or(text.len() - start, |(i, _)| i)
    }

    fn check(text: &str, doc: &J) -> std::result::Result<(), String> {
        let mut all = Vec::new();
        pointers(doc, String::new(), &mut all);
        for pointer in all {
            let found = locate(text, &pointer).ok_or(format!("{pointer} not found in {text}"))?;
            let offset = offset_of(text, found.value.line, found.value.col);
            if offset != found.value.offset {
                return Err(format!("{pointer}: line/col and offset disagree in {text}"));
            }
            let back: J = serde_json::Deserializer::from_str(&text[offset..])
                .into_iter()
                .next()
                .ok_or("nothing")?
                .map_err(|e| format!("{pointer}: {e} in {text}"))?;
            if Some(&back) != doc.pointer(&pointer) {
                return Err(format!("{pointer}: found {back} in {text}"));
            }
            if let Some(key) = found.key {
                let offset = offset_of(text, key.line, key.col);
                let name: String = serde_json::Deserializer::from_str(&text[offset..])
                    .into_iter()
                    .next()
                    .ok_or("no key")?
                    .map_err(|e| format!("{pointer} key: {e}"))?;
                let last = pointer.rsplit('/').next().unwrap_or_default();
                if name.replace('~', "~0").replace('/', "~1") != last {
                    return Err(format!("{pointer}: key {name:?} in {text}"));
                }
            }
        }
        Ok(())
    }

    fn scalar() -> impl Strategy<Value = J> {
        prop_oneof![
            Just(J::Null),
            any::<bool>().prop_map(J::Bool),
            any::<i64>().prop_map(|i| json!(i)),
            any::<u64>().prop_map(|i| json!(i)),
            // Quarters: exact in binary, so reading back gives the same number.
            (-1_000_000i64..1_000_000).prop_map(|i| json!(i as f64 / 4.0)),
            any::<String>().prop_map(J::String),
            "[\"\\\\/~a-z\\n\\t\\u{1}ü😀 ]{0,8}".prop_map(J::String),
        ]
    }

    fn value() -> impl Strategy<Value = J> {
        scalar().prop_recursive(5, 64, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(J::Array),
                prop::collection::vec(("[\"\\\\/~a-c\\n\\r\\t\\u{8}\\u{c}ü😀]{0,4}", inner), 0..6)
                    .prop_map(|entries| J::Object(entries.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        #[test]
        fn every_pointer_points_at_text_that_reads_back_as_its_value(doc in value()) {
            let compact = serde_json::to_string(&doc).unwrap();
            let pretty = serde_json::to_string_pretty(&doc).unwrap();
            let mut four = Vec::new();
            let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
            serde::Serialize::serialize(&doc, &mut serde_json::Serializer::with_formatter(&mut four, formatter)).unwrap();
            let four = String::from_utf8(four).unwrap();
            for text in [compact, pretty, four] {
                prop_assert!(check(&text, &doc).is_ok(), "{}", check(&text, &doc).unwrap_err());
            }
        }
    }
}

//! A fast writer for the YAML strata renders itself, byte for byte what serde-saphyr
//! writes with the options of [`crate::render::yaml_text`].
//!
//! At 1000 targets serde-saphyr's serializer was a quarter of all the instructions of a
//! render. Nearly everything strata writes is block mappings and sequences of short
//! one-line scalars; [`emit`] writes that shape directly and asks serde-saphyr itself
//! how to write any string scalar it is not sure about (so quoting, the subtle part,
//! is always serde-saphyr's own). Anything else — a float, a key that is not a plain
//! word, a string that serde-saphyr would not write on one line, a sequence directly
//! inside a sequence — answers `None`, and the caller uses serde-saphyr for the whole
//! document. A property test holds the two writers equal wherever [`emit`] answers.

use serde_json::Value as J;

/// The YAML of `value` (a mapping), or `None` when it is outside what this writer
/// handles.
pub fn emit(value: &J) -> Option<String> {
    let J::Object(map) = value else { return None };
    if map.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(256);
    mapping(map, 0, &mut out)?;
    Some(out)
}

fn indent(out: &mut String, n: usize) {
    for _ in 0..n {
        out.push(' ');
    }
}

/// The entries of a non-empty mapping, each on its own line at `at` spaces (the first
/// one's indentation already written by the caller when `first_written`).
fn mapping(map: &serde_json::Map<String, J>, at: usize, out: &mut String) -> Option<()> {
    entries(map, at, false, out)
}

fn entries(
    map: &serde_json::Map<String, J>,
    at: usize,
    first_written: bool,
    out: &mut String,
) -> Option<()> {
    for (i, (key, value)) in map.iter().enumerate() {
        if !(i == 0 && first_written) {
            indent(out, at);
        }
        if !plain_word(key) {
            return None;
        }
        out.push_str(key);
        out.push(':');
        match value {
            J::Object(m) if m.is_empty() => out.push_str(" {}\n"),
            J::Array(a) if a.is_empty() => out.push_str(" []\n"),
            J::Object(m) => {
                out.push('\n');
                mapping(m, at + 2, out)?;
            }
            J::Array(items) => {
                out.push('\n');
                sequence(items, at + 2, out)?;
            }
            scalar_value => {
                out.push(' ');
                scalar(scalar_value, out)?;
                out.push('\n');
            }
        }
    }
    Some(())
}

fn sequence(items: &[J], at: usize, out: &mut String) -> Option<()> {
    for item in items {
        indent(out, at);
        out.push_str("- ");
        match item {
            J::Object(m) if m.is_empty() => out.push_str("{}\n"),
            J::Array(a) if a.is_empty() => out.push_str("[]\n"),
            J::Object(m) => entries(m, at + 2, true, out)?,
            J::Array(_) => return None,
            scalar_value => {
                scalar(scalar_value, out)?;
                out.push('\n');
            }
        }
    }
    Some(())
}

fn scalar(value: &J, out: &mut String) -> Option<()> {
    match value {
        J::Null => out.push_str("null"),
        J::Bool(true) => out.push_str("true"),
        J::Bool(false) => out.push_str("false"),
        J::Number(n) if n.is_i64() || n.is_u64() => out.push_str(&n.to_string()),
        J::Number(_) => return None,
        J::String(s) if plain_word(s) => out.push_str(s),
        J::String(s) => out.push_str(&quoted(s)?),
        J::Array(_) | J::Object(_) => return None,
    }
    Some(())
}

/// serde-saphyr's own one-line answer for a string that is not a plain word; `None`
/// when it would not write it on one line. The same strings (`250m`, `2.4.1`, a URL)
/// come back in every target, and serde-saphyr's writer is costly for one scalar, so
/// each thread remembers the answers (the first few thousand strings).
fn quoted(s: &str) -> Option<std::rc::Rc<str>> {
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::rc::Rc;
    const REMEMBERED: usize = 4096;
    thread_local! {
        static SEEN: RefCell<HashMap<Box<str>, Option<Rc<str>>>> = RefCell::new(HashMap::new());
    }
    if let Some(known) = SEEN.with(|seen| seen.borrow().get(s).cloned()) {
        return known;
    }
    let answer = serde_saphyr::to_string(&s).ok().and_then(|text| {
        let line = text.strip_suffix('\n')?;
        if line.is_empty() || line.contains('\n') || line.starts_with(['|', '>']) {
            return None;
        }
        Some(Rc::from(line))
    });
    SEEN.with(|seen| {
        let mut seen = seen.borrow_mut();
        if seen.len() < REMEMBERED {
            seen.insert(Box::from(s), answer.clone());
        }
    });
    answer
}

/// A string any YAML reader takes as that string when written bare: a letter first,
/// then letters, digits, `_`, `-`, `.` and `/`, and none of the words YAML 1.1 reads
/// as a boolean or null, nor `nan` and `inf`, which some readers take for floats (and
/// serde-saphyr quotes).
fn plain_word(s: &str) -> bool {
    let mut bytes = s.bytes();
    let Some(first) = bytes.next() else {
        return false;
    };
    if !first.is_ascii_alphabetic() {
        return false;
    }
    if !bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'/')) {
        return false;
    }
    s.len() > 5
        || ![
            "y", "n", "yes", "no", "on", "off", "true", "false", "null", "nan", "inf",
        ]
        .iter()
        .any(|word| s.eq_ignore_ascii_case(word))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn saphyr(value: &J) -> String {
        let options = serde_saphyr::ser_options! {
            compact_list_indent: false,
            folded_wrap_chars: usize::MAX,
        };
        serde_saphyr::to_string_with_options(value, options).unwrap()
    }

    #[test]
    fn the_shapes_strata_writes_come_out_as_serde_saphyr_writes_them() {
        let value = json!({
            "global": {"target": "dev-aws", "tag": "2.4.1", "replicas": 2, "enabled": true},
            "resources": {"cpu": "250m", "memory": "512Mi", "limits": {"cpu": "1"}},
            "url": "https://example.com/a?b=c",
            "empty": {"map": {}, "list": []},
            "list": ["a", "b c", "yes", "No", "false", "False", "TRUE", "", " x", "#", "null", 3, null, false, "nan", "Inf", "nano"],
            "maps": [{"name": "a", "value": "1"}, {}, {"nested": {"k": ["v"]}}],
            "deeper": {"list": [{"k": "v", "j": "w"}, {"m": {"q": [{"o": 1, "p": 2}]}}]},
            "Sub.Key-with_odd/chars": "x",
        });
        let ours = emit(&value).expect("in the subset");
        assert_eq!(ours, saphyr(&value));
    }

    #[test]
    fn what_it_does_not_handle_it_hands_back() {
        for value in [
            json!({"a": 1.5}),
            json!({"a key": 1}),
            json!({"nan": 1}),
            json!({"a": {"Inf": 1}}),
            json!({"a": [[1]]}),
            json!({"a": "two\nlines"}),
            json!({}),
            json!([1]),
        ] {
            assert_eq!(emit(&value), None, "{value}");
        }
    }

    fn scalar() -> impl Strategy<Value = J> {
        prop_oneof![
            Just(J::Null),
            any::<bool>().prop_map(J::Bool),
            any::<i64>().prop_map(|i| json!(i)),
            any::<u64>().prop_map(|i| json!(i)),
            (-1e3f64..1e3).prop_map(|f| json!(f)),
            "[a-zA-Z0-9 ._/:#@'\"%*&!|>=,?{}\\[\\]~-]{0,10}".prop_map(J::String),
            "[a-z]{1,3}[0-9.]{0,4}".prop_map(J::String),
            "[0-9][0-9a-zA-Z.:_-]{0,8}".prop_map(J::String),
            prop::sample::select(vec![
                "yes",
                "No",
                "ON",
                "off",
                "y",
                "N",
                "~",
                "null",
                "NULL",
                "true",
                "False",
                "1e3",
                "0x10",
                "0o7",
                ".5",
                "-",
                "-1",
                "+1",
                "1_000",
                "12:30",
                "2001-12-14",
                ".inf",
                ".NaN",
                "nan",
                "NaN",
                "inf",
                "INF",
                "<<",
                "=",
                "---",
                "...",
                "a: b",
                "a #b",
                " lead",
                "trail ",
                "tab\there",
                "ünï",
                "x\ny",
                "é",
            ])
            .prop_map(|s| J::String(s.to_owned())),
        ]
    }

    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            12 => "[a-zA-Z][a-zA-Z0-9_./-]{0,8}",
            1 => "[a-zA-Z0-9 ._:-]{0,6}",
            1 => prop::sample::select(vec!["yes", "on", "null", "1", "a b", "global", "nan", "Inf", "NaN"]).prop_map(str::to_owned),
        ]
    }

    fn value() -> impl Strategy<Value = J> {
        scalar().prop_recursive(4, 40, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(J::Array),
                prop::collection::vec((key(), inner), 0..4)
                    .prop_map(|entries| J::Object(entries.into_iter().collect())),
            ]
        })
    }

    /// Wherever the fast writer answers, it answers exactly what serde-saphyr does; and
    /// it answers often enough over these documents that the property means something.
    #[test]
    fn the_fast_writer_agrees_with_serde_saphyr() {
        use proptest::test_runner::{Config, TestRunner};
        let answered = std::cell::Cell::new(0u32);
        let cases = 4096;
        let mut runner = TestRunner::new(Config {
            cases,
            ..Config::default()
        });
        let documents = prop::collection::vec((key(), value()), 1..6)
            .prop_map(|entries| J::Object(entries.into_iter().collect()));
        runner
            .run(&documents, |value| {
                if let Some(ours) = emit(&value) {
                    answered.set(answered.get() + 1);
                    prop_assert_eq!(ours, saphyr(&value));
                }
                Ok(())
            })
            .unwrap();
        assert!(
            answered.get() * 5 >= cases,
            "the fast writer answered only {} of {cases} documents",
            answered.get()
        );
    }

    /// The property above must not pass by answering `None`: over the same generator,
    /// most documents that have no float, odd key or nested list are written fast.
    #[test]
    fn the_fast_writer_answers_for_typical_values() {
        let typical = json!({
            "image": {"repository": "ghcr.io/example/app", "tag": "2.4.1", "pullPolicy": "IfNotPresent"},
            "replicas": 3,
            "env": {"URL": "https://x.example.com", "LEVEL": "debug", "COUNT": "30"},
            "ports": [{"name": "http", "port": 8080}],
        });
        assert!(emit(&typical).is_some());
    }
}

//! Integers a layer writes that strata cannot hold exactly.
//!
//! The YAML parser reads an integer outside 64 bits (`99999999999999999999999`, a
//! 21-digit id) as the nearest float: strata would then write `1e+23` where the file
//! said the digits, with no word. Such a plain integer is an error at its place: quote
//! it for the digits as a string.

use crate::config::{Loc, Node, Value, merge::join_path};
use crate::error::Located;

/// The plain integers of one layer (whose text is `text`) that the parser turned into
/// floats because they do not fit 64 bits.
pub fn check(layer: &Node, text: &str) -> Vec<Located> {
    let mut errors = Vec::new();
    let mut lines = None;
    walk(layer, &mut Vec::new(), text, &mut lines, &mut errors);
    errors
}

fn walk<'t>(
    node: &Node,
    path: &mut Vec<String>,
    text: &'t str,
    lines: &mut Option<Vec<&'t str>>,
    errors: &mut Vec<Located>,
) {
    match &node.value {
        Value::Map(entries) => {
            for (key, child) in entries.iter() {
                path.push(key.clone());
                walk(child, path, text, lines, errors);
                path.pop();
            }
        }
        Value::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                path.push(i.to_string());
                walk(item, path, text, lines, errors);
                path.pop();
            }
        }
        Value::Float(float) => {
            let lines = lines.get_or_insert_with(|| text.lines().collect());
            let Some(written) = token_at(lines, &node.loc).filter(|t| is_integer(t)) else {
                return;
            };
            let key_path = path
                .iter()
                .fold(String::new(), |at, segment| join_path(&at, segment));
            errors.push(
                Located::new(
                    node.loc.clone(),
                    key_path,
                    format!(
                        "the integer `{written}` does not fit 64 bits: strata would hold it as the float {float:e}"
                    ),
                )
                .hint(format!(
                    "quote it (\"{written}\") to keep the digits as a string; numbers strata takes lie between -9223372036854775808 and 9223372036854775807"
                )),
            );
        }
        _ => {}
    }
}

/// The plain scalar written at `loc` in `lines` (a layer's text): from there up to a
/// blank, `,`, `]`, `}` or `#`. A quoted scalar comes back with its quote.
pub(crate) fn token_at<'t>(lines: &[&'t str], loc: &Loc) -> Option<&'t str> {
    let line = lines.get((loc.line as usize).checked_sub(1)?)?;
    let line = line.strip_prefix('\u{feff}').unwrap_or(line);
    let (at, _) = line
        .char_indices()
        .nth((loc.col as usize).checked_sub(1)?)?;
    let rest = &line[at..];
    let end = rest
        .find(|c: char| c.is_whitespace() || matches!(c, ',' | ']' | '}' | '#'))
        .unwrap_or(rest.len());
    Some(&rest[..end])
}

/// Whether `token` is written as an integer (YAML 1.2: decimal, `0x`, `0o`; with a sign
/// and `_` separators as the parser takes them).
fn is_integer(token: &str) -> bool {
    let digits = token.strip_prefix(['-', '+']).unwrap_or(token);
    let (digits, radix) = if let Some(hex) = digits.strip_prefix("0x") {
        (hex, 16)
    } else if let Some(octal) = digits.strip_prefix("0o") {
        (octal, 8)
    } else {
        (digits, 10)
    };
    digits.bytes().any(|b| b.is_ascii_digit())
        && digits.chars().all(|c| c == '_' || c.is_digit(radix))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_layer;

    /// Each error of parsing `text` as a layer, as `line:col path: message`.
    fn found(text: &str) -> Vec<String> {
        let Err(error) = parse_layer(text.as_bytes(), "f.yaml") else {
            return Vec::new();
        };
        error
            .flatten()
            .iter()
            .map(|e| match e {
                crate::error::Error::Input(l) => {
                    format!("{}:{} {}: {}", l.loc.line, l.loc.col, l.key_path, l.message)
                }
                other => other.to_string(),
            })
            .collect()
    }

    #[test]
    fn an_integer_outside_64_bits_is_said_at_its_place() {
        let text = "vars:\n  id: 123456789012345678901\n  list: [1, -9223372036854775809, 9223372036854775807]\n  flow: {a: -99999999999999999999}\n  big: 18446744073709551616 # a comment\n";
        assert_eq!(
            found(text),
            [
                "2:7 vars.id: the integer `123456789012345678901` does not fit 64 bits: strata would hold it as the float 1.2345678901234568e20",
                "3:13 vars.list.1: the integer `-9223372036854775809` does not fit 64 bits: strata would hold it as the float -9.223372036854776e18",
                "4:13 vars.flow.a: the integer `-99999999999999999999` does not fit 64 bits: strata would hold it as the float -1e20",
                "5:8 vars.big: the integer `18446744073709551616` does not fit 64 bits: strata would hold it as the float 1.8446744073709552e19",
            ]
        );
    }

    #[test]
    fn floats_quoted_digits_and_integers_that_fit_are_what_they_say() {
        let text = "a: 1e30\nb: \"123456789012345678901\"\nc: '99999999999999999999'\nd: 9223372036854775807\ne: -9223372036854775808\nf: 1.5\ng: [.5, 12.0]\nh: |\n  99999999999999999999999\n";
        assert_eq!(found(text), Vec::<String>::new());
    }

    #[test]
    fn integer_spellings() {
        for yes in ["1", "-1", "+1", "1_000", "0x1F", "0o17", "-0x1"] {
            assert!(is_integer(yes), "{yes}");
        }
        for no in [
            "1.0", "1e3", ".5", "0x", "-", "_", "0o8", "0xG", "1.", "inf",
        ] {
            assert!(!is_integer(no), "{no}");
        }
    }
}

//! Words Helm reads as booleans and strata as strings.
//!
//! strata reads layers as YAML 1.2: a plain `no` is the string `"no"`, and strata writes
//! it quoted into the release's values file, so helm gets the string too. But Helm reads
//! its own values files as YAML 1.1, where a plain `no` is `false`: a team moving a
//! values file into a layer would turn every `enabled: no` into a string, which a
//! chart's `{{ if .Values.x.enabled }}` takes for true. So under a release's `values`, a
//! plain (unquoted) `y`, `yes`, `on`, `n`, `no` or `off` (in the spellings YAML 1.1
//! knows: `No`, `NO`, …) is an error at its place: write `true`/`false` for a switch,
//! or quote the word. Elsewhere in a layer (an env var, a tag) the string is what is
//! meant, and strata's own keys are typed.
//!
//! Numbers differ too: a plain `0644` (a file mode) is the string "0644" to YAML 1.2
//! and the octal number 420 to YAML 1.1; a plain `0o17` is 15 to YAML 1.2 and a string
//! to YAML 1.1. Each is said the same way, with both readings.

use crate::config::{Node, Value, merge::join_path};
use crate::error::Located;

/// What YAML 1.1 (Helm's values files) reads as `true` and as `false`, besides the
/// words YAML 1.2 reads the same.
const TRUE_WORDS: [&str; 8] = ["y", "Y", "yes", "Yes", "YES", "on", "On", "ON"];
const FALSE_WORDS: [&str; 8] = ["n", "N", "no", "No", "NO", "off", "Off", "OFF"];

/// The plain YAML 1.1 booleans under the `releases.<r>.values` of one layer file,
/// whose text is `text`.
pub fn check(layer: &Node, text: &str) -> Vec<Located> {
    let mut errors = Vec::new();
    let Some(releases) = layer.get("releases").and_then(Node::map) else {
        return errors;
    };
    let mut lines = None;
    for (key, release) in releases.iter() {
        if let Some(values) = release.get("values") {
            let path = format!("releases.{key}.values");
            walk(values, &path, text, &mut lines, &mut errors);
        }
    }
    errors
}

fn walk<'t>(
    node: &Node,
    path: &str,
    text: &'t str,
    lines: &mut Option<Vec<&'t str>>,
    errors: &mut Vec<Located>,
) {
    match &node.value {
        Value::Map(entries) => {
            for (key, child) in entries.iter() {
                walk(child, &join_path(path, key), text, lines, errors);
            }
        }
        Value::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                walk(item, &join_path(path, &i.to_string()), text, lines, errors);
            }
        }
        Value::Str(_) | Value::Int(_) => {
            let lines = lines.get_or_insert_with(|| text.lines().collect());
            let Some(written) = super::numbers::token_at(lines, &node.loc) else {
                return;
            };
            let Some((message, hint)) = read_otherwise(&node.value, written) else {
                return;
            };
            errors.push(Located::new(node.loc.clone(), path, message).hint(hint));
        }
        _ => {}
    }
}

/// What Helm's YAML 1.1 reads otherwise than strata's YAML 1.2, for a plain scalar
/// `written` that strata read as `value`: the message and the hint, or `None`.
fn read_otherwise(value: &Value, written: &str) -> Option<(String, String)> {
    match value {
        // Written plain (a quoted one comes back with its quote, and differs).
        Value::Str(word) if word == written => {
            if let Some(helm) = TRUE_WORDS
                .contains(&written)
                .then_some(true)
                .or_else(|| FALSE_WORDS.contains(&written).then_some(false))
            {
                return Some((
                    format!(
                        "`{word}` is the string \"{word}\" to strata (YAML 1.2), but {helm} in a Helm values file (YAML 1.1)"
                    ),
                    format!(
                        "write `{helm}` for a switch, or quote it (`\"{word}\"`) for the word; strata passes a string to helm quoted"
                    ),
                ));
            }
            // `0644`, a file mode: an octal number to YAML 1.1.
            let digits = word
                .strip_prefix('0')
                .filter(|d| !d.is_empty() && d.bytes().all(|b| (b'0'..=b'7').contains(&b)))?;
            let number = i64::from_str_radix(digits, 8).ok()?;
            Some((
                format!(
                    "`{word}` is the string \"{word}\" to strata (YAML 1.2), but the octal number {number} in a Helm values file (YAML 1.1)"
                ),
                format!(
                    "write `{number}` (or `0o{digits}`) for the number, or quote it (`\"{word}\"`) for the text; strata passes a string to helm quoted"
                ),
            ))
        }
        // `0o17`: a number to YAML 1.2, a string to YAML 1.1.
        Value::Int(number) if written.starts_with("0o") || written.starts_with("+0o") => Some((
            format!(
                "`{written}` is the number {number} to strata (YAML 1.2), but the string \"{written}\" in a Helm values file (YAML 1.1)"
            ),
            format!("write `{number}` for the number, or quote it (`\"{written}\"`) for the text"),
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_layer;

    /// Each finding as `line:col path: word`.
    fn found(text: &str) -> Vec<String> {
        let node = parse_layer(text.as_bytes(), "environments/base.yaml").expect("parses");
        check(&node, text)
            .iter()
            .map(|l| {
                let word = l.message.split('`').nth(1).unwrap_or_default();
                format!("{}:{} {}: {word}", l.loc.line, l.loc.col, l.key_path)
            })
            .collect()
    }

    #[test]
    fn a_plain_yaml_1_1_boolean_under_release_values_is_found_at_its_place() {
        let text = "releases:\n  app:\n    chart: charts/app\n    values:\n      a: yes\n      b: 'no'\n      c: \"Off\"\n      d: {x: NO, y: noo, z: no-thanks}\n      e: [n, \"n\", On]\n      f: no # a comment\n      g: |\n        no\n      h: false\n      i: \"O\\x6e\"\n      j: 0644\n      k: \"0644\"\n      l: 0o17\n      m: 08\n      n: [0, 00]\n";
        assert_eq!(
            found(text),
            [
                "5:10 releases.app.values.a: yes",
                "8:14 releases.app.values.d.x: NO",
                "9:11 releases.app.values.e.0: n",
                "9:19 releases.app.values.e.2: On",
                "10:10 releases.app.values.f: no",
                "15:10 releases.app.values.j: 0644",
                "17:10 releases.app.values.l: 0o17",
                "19:14 releases.app.values.n.1: 00",
            ]
        );
    }

    #[test]
    fn the_words_elsewhere_in_a_layer_are_what_they_say() {
        // An env var's value, a tag, a release's own keys: strings meant as strings.
        let text = "workloads:\n  api:\n    env: {VERBOSE: yes}\nproject: {tags: {backup: no}}\nreleases:\n  app: {chart: charts/app, namespace: on}\n";
        assert_eq!(found(text), Vec::<String>::new());
    }

    #[test]
    fn the_first_line_after_a_byte_order_mark_and_crlf_lines_are_read_right() {
        let text = "\u{feff}releases: {app: {chart: charts/app, values: {a: off}}}\r\n";
        assert_eq!(found(text), ["1:49 releases.app.values.a: off"]);
        let text = "releases:\r\n  app:\r\n    values:\r\n      a: Y\r\n      b: 'Y'\r\n";
        assert_eq!(found(text), ["4:10 releases.app.values.a: Y"]);
    }
}

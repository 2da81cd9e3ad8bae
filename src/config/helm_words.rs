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

use crate::config::{Loc, Node, Value, merge::join_path};
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
        Value::Str(word) => {
            let helm = if TRUE_WORDS.contains(&word.as_str()) {
                true
            } else if FALSE_WORDS.contains(&word.as_str()) {
                false
            } else {
                return;
            };
            let lines = lines.get_or_insert_with(|| text.lines().collect());
            if !written_plain(lines, &node.loc, word) {
                return;
            }
            errors.push(
                Located::new(
                    node.loc.clone(),
                    path,
                    format!(
                        "`{word}` is the string \"{word}\" to strata (YAML 1.2), but {helm} in a Helm values file (YAML 1.1)"
                    ),
                )
                .hint(format!(
                    "write `{helm}` for a switch, or quote it (`\"{word}\"`) for the word; strata passes a string to helm quoted"
                )),
            );
        }
        _ => {}
    }
}

/// Whether the text at `loc` is `word` itself (a plain scalar), not a quote.
fn written_plain(lines: &[&str], loc: &Loc, word: &str) -> bool {
    super::numbers::token_at(lines, loc) == Some(word)
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
        let text = "releases:\n  app:\n    chart: charts/app\n    values:\n      a: yes\n      b: 'no'\n      c: \"Off\"\n      d: {x: NO, y: noo, z: no-thanks}\n      e: [n, \"n\", On]\n      f: no # a comment\n      g: |\n        no\n      h: false\n      i: \"O\\x6e\"\n";
        assert_eq!(
            found(text),
            [
                "5:10 releases.app.values.a: yes",
                "8:14 releases.app.values.d.x: NO",
                "9:11 releases.app.values.e.0: n",
                "9:19 releases.app.values.e.2: On",
                "10:10 releases.app.values.f: no",
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

//! Each release's values against its chart: the rendered `releases/<r>.values.yaml`
//! (what helm will be given) is checked against the chart's `values.schema.json` when
//! it has one, and every key is looked up in the chart's `values.yaml` (or the schema's
//! `properties`): an unknown key is an error with "did you mean" unless the release
//! says `strictValues: false`. A mapping that is empty (`podAnnotations: {}`) or null
//! in values.yaml takes any keys, and so does `global` (Helm shares it with subcharts).
//!
//! Every finding names the layer file:line:col that set the offending value (a
//! missing required key: the `values:` line), the JSON pointer and the schema rule.
//! When a template rendered the values file, the finding names the template line
//! that wrote the value instead ([`Rendered::source_of`]).

use std::collections::BTreeMap;

use serde_json::Value as J;

use super::{Finding, Findings, origin_loc};
use crate::config::{Loc, Node, Value};
use crate::desired::{Desired, ReleaseSpec};
use crate::render::{Origin, Rendered};

/// A chart as the checks need it, read by the caller.
pub struct Chart {
    /// `charts/app`.
    pub path: String,
    /// The parsed `values.yaml` (`None` when the chart has none).
    pub values: Option<J>,
    /// The compiled `values.schema.json`.
    pub schema: Option<jsonschema::Validator>,
    /// The raw schema, for its `properties`.
    pub schema_json: Option<J>,
    /// The chart's subcharts by the key of the values they take (a dependency's
    /// `alias`, else its name): Helm hands each the values under that key.
    pub subcharts: BTreeMap<String, Subchart>,
}

/// A subchart (a dependency of Chart.yaml, or a chart in the chart's `charts/`), as the
/// check of unknown keys needs it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Subchart {
    /// Where it is read from (`charts/app/charts/redis`); empty for one strata cannot
    /// read (packed as a `.tgz`, or not in `charts/`), whose keys are not checked.
    pub path: String,
    /// Its `values.yaml` with the parent chart's values for it over them, as Helm
    /// merges them (made once, when the chart is read); `None` when strata cannot read
    /// it (a dependency not vendored in `charts/`, or one packed as a `.tgz`): the keys
    /// under it are then not checked.
    pub values: Option<J>,
    /// Its own subcharts.
    pub subcharts: BTreeMap<String, Subchart>,
}

/// What the checks read from the project besides the targets: the charts the
/// releases use (by folder; an error for one that could not be read) and the
/// project's `vars.schema.json`.
#[derive(Default)]
pub struct Inputs {
    pub charts: BTreeMap<String, Result<Chart, crate::error::Error>>,
    pub vars_schema: Option<jsonschema::Validator>,
}

/// The file that types `vars:`.
pub const VARS_SCHEMA: &str = "vars.schema.json";

/// Compiles a chart's schema. A `$ref` to another document (`https://…`, `other.json`)
/// is not fetched, since validate reads nothing but the project: it is dropped, so
/// strata does not check the values under it (helm, which fetches it, does at apply),
/// and a chart whose schema has one can still be used.
pub fn compile_schema(schema: &J) -> Result<jsonschema::Validator, String> {
    let mut local = schema.clone();
    drop_remote_refs(&mut local);
    jsonschema::validator_for(&local).map_err(|e| e.to_string())
}

/// Removes every `$ref` that names another document (one not starting with `#`).
fn drop_remote_refs(schema: &mut J) {
    match schema {
        J::Object(map) => {
            if map
                .get("$ref")
                .and_then(J::as_str)
                .is_some_and(|r| !r.starts_with('#'))
            {
                map.shift_remove("$ref");
            }
            map.values_mut().for_each(drop_remote_refs);
        }
        J::Array(items) => items.iter_mut().for_each(drop_remote_refs),
        _ => {}
    }
}

pub(crate) fn check(f: &mut Findings, desired: &Desired, rendered: &Rendered, inputs: &Inputs) {
    vars(f, inputs);
    let t = f.target;
    for release in &desired.releases {
        let chart = match inputs.charts.get(&release.chart) {
            Some(Ok(chart)) => chart,
            Some(Err(e)) => {
                // Reported once per chart by the caller; here only what points at it.
                let _ = e;
                continue;
            }
            None => continue,
        };
        let rel = format!("releases/{}.values.yaml", release.key);
        let full = format!("{}/{rel}", t.name);
        let Some(bytes) = rendered.artifacts.get(&full) else {
            continue;
        };
        // strata's own file: the data it was written from (it round-trips); a
        // template's: what it rendered, parsed.
        let parsed;
        let values: &J = if let Some(values) = rendered.data.get(&full) {
            values
        } else {
            parsed = match parse_values(bytes) {
                Ok(v) => v,
                Err(e) => {
                    f.push(Finding {
                        rule: None,
                        path: format!("releases.{}.values", release.key),
                        loc: origin_loc(rendered, &full),
                        message: format!("rendered {rel} is not valid YAML: {e}"),
                        hint: String::new(),
                    });
                    continue;
                }
            };
            &parsed
        };
        let written = Written {
            release,
            rendered,
            full: &full,
            from_template: !matches!(rendered.origins.get(&full), Some(Origin::Strata(_))),
            nodes: std::cell::OnceCell::new(),
        };
        let before = f.errors.len();
        if release.strict_values && (chart.values.is_some() || chart.schema_json.is_some()) {
            let known = chart.values.as_ref().unwrap_or(&J::Null);
            let props = chart.schema_json.as_ref();
            unknown_keys(
                f,
                &written,
                chart,
                values,
                Level {
                    chart: &chart.path,
                    known: Some(known),
                    schema: props,
                    subcharts: Some(&chart.subcharts),
                },
                &mut String::new(),
            );
        }
        // Keys reported unknown above are not reported again by the schema.
        let unknown: Vec<String> = f.errors[before..]
            .iter()
            .filter_map(|e| match e {
                crate::error::Error::Input(l) => Some(l.key_path.clone()),
                _ => None,
            })
            .collect();
        if let Some(schema) = &chart.schema {
            // Helm checks the schema against the chart's defaults with the values over
            // them, not against the values alone.
            let merged = coalesce(chart.values.as_ref(), values);
            // The errors are collected only when there are some: `is_valid` stops at
            // the first and builds none, many times quicker on a valid document.
            let errors = if schema.is_valid(&merged) {
                None
            } else {
                Some(schema.iter_errors(&merged))
            };
            for error in errors.into_iter().flatten() {
                let mut pointer = error.instance_path().as_str().to_owned();
                let keyword = error.kind().keyword().to_owned();
                if keyword == "additionalProperties" {
                    // Point at the key that is not allowed, not at its mapping.
                    let text = error.to_string();
                    if let Some(key) = text.split('\'').nth(1) {
                        pointer =
                            format!("{pointer}/{}", key.replace('~', "~0").replace('/', "~1"));
                    }
                }
                // An extra key: point at the key, not its value.
                let (loc, at) = written.at(&pointer, keyword == "additionalProperties");
                if unknown.contains(&at) {
                    continue;
                }
                let message = error.masked().to_string();
                f.push(Finding {
                    rule: None,
                    path: at,
                    loc,
                    message: format!(
                        "{}/values.schema.json: {message} (at {}, rule `{keyword}`)",
                        chart.path,
                        if pointer.is_empty() { "/" } else { &pointer },
                    ),
                    hint: String::new(),
                });
            }
        }
    }
}

/// A values file a template rendered, as data (empty reads as an empty mapping, as
/// helm reads it).
fn parse_values(bytes: &[u8]) -> Result<J, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| e.to_string())?;
    match serde_saphyr::from_str::<J>(text).map_err(|e| e.to_string())? {
        J::Null => Ok(J::Object(Default::default())),
        v => Ok(v),
    }
}

/// The resolved `vars` against the project's `vars.schema.json`.
fn vars(f: &mut Findings, inputs: &Inputs) {
    let Some(schema) = &inputs.vars_schema else {
        return;
    };
    let t = f.target;
    let node = t.resolved_at("vars");
    let value = node.map_or(J::Object(Default::default()), Node::to_json);
    if schema.is_valid(&value) {
        return;
    }
    for error in schema.iter_errors(&value) {
        let pointer = error.instance_path().as_str().to_owned();
        let keyword = error.kind().keyword().to_owned();
        let mut path = "vars".to_owned();
        let mut loc = node.map_or_else(|| t.merged.tree.loc.clone(), |n| n.key_loc.clone());
        let mut at = node;
        for segment in pointer.split('/').skip(1) {
            let segment = segment.replace("~1", "/").replace("~0", "~");
            let Some(next) = at.and_then(|n| n.lookup([segment.as_str()])) else {
                break;
            };
            path = format!("{path}.{segment}");
            loc = next.loc.clone();
            at = Some(next);
        }
        f.push(Finding {
            rule: None,
            path,
            loc,
            message: format!(
                "{VARS_SCHEMA}: {} (at {}, rule `{keyword}`)",
                error.masked(),
                if pointer.is_empty() { "/" } else { &pointer }
            ),
            hint: String::new(),
        });
    }
}

/// Helm's coalescing of a chart's `values.yaml` with the given values: maps merge
/// key by key, anything else from the values replaces the default, and a null in the
/// values removes the default. Keys keep the defaults' order, then the values' own.
pub fn coalesce(defaults: Option<&J>, values: &J) -> J {
    match defaults {
        Some(defaults) if defaults.is_object() && values.is_object() => {
            // One copy of the defaults (a map's copy rehashes nothing), merged into in
            // place: only the values' keys are looked up.
            let mut out = defaults.clone();
            coalesce_into(&mut out, values);
            out
        }
        _ => values.clone(),
    }
}

/// [`coalesce`] of `values` over `target`, in place.
fn coalesce_into(target: &mut J, values: &J) {
    let (J::Object(out), J::Object(v)) = (&mut *target, values) else {
        *target = values.clone();
        return;
    };
    for (key, value) in v {
        if value.is_null() {
            out.shift_remove(key);
        } else if let Some(slot) = out.get_mut(key) {
            coalesce_into(slot, value);
        } else {
            out.insert(key.clone(), value.clone());
        }
    }
}

/// Where one release's values file was written, for its findings.
struct Written<'a> {
    release: &'a ReleaseSpec,
    rendered: &'a Rendered,
    /// The file's path under the output folder.
    full: &'a str,
    /// A file of `templates/` wrote it (else strata did, from the layers).
    from_template: bool,
    /// The file read with the location of each value, on the first finding.
    nodes: std::cell::OnceCell<Option<Node>>,
}

impl Written<'_> {
    /// The place of the value at JSON `pointer` (of its key when `key`), and its key
    /// path: the layer key that set it, or the template line that wrote it. A value
    /// that is not there (a missing required key) points at the nearest one above.
    fn at(&self, pointer: &str, key: bool) -> (Loc, String) {
        if !self.from_template {
            let (loc, path) = pointer_loc(self.release, pointer);
            let loc = if key {
                key_loc(self.release, pointer).unwrap_or(loc)
            } else {
                loc
            };
            return (loc, path);
        }
        let mut path = format!("releases.{}.values", self.release.key);
        for segment in pointer.split('/').skip(1) {
            path.push('.');
            path.push_str(&segment.replace("~1", "/").replace("~0", "~"));
        }
        let nodes = self.nodes.get_or_init(|| {
            let bytes = self.rendered.artifacts.get(self.full)?;
            crate::config::parse_mapping(bytes, self.full).ok()
        });
        let loc = nodes
            .as_ref()
            .and_then(|root| {
                let (node, whole) = walk(root, pointer);
                // A mapping or a list is named by its key (its value starts a line
                // further down), as in the layers.
                let nested = matches!(node.value, Value::Map(_) | Value::Seq(_));
                let at = if (key && whole) || nested {
                    &node.key_loc
                } else {
                    &node.loc
                };
                self.rendered
                    .source_of(self.full, at.line as usize, at.col as usize)
            })
            .unwrap_or_else(|| origin_loc(self.rendered, self.full));
        (loc, path)
    }
}

/// The node at a JSON pointer, or the nearest one above it that exists; and whether
/// it is the one the pointer names.
fn walk<'a>(root: &'a Node, pointer: &str) -> (&'a Node, bool) {
    let mut node = root;
    for segment in pointer.split('/').skip(1) {
        let segment = segment.replace("~1", "/").replace("~0", "~");
        let next = match &node.value {
            Value::Map(m) => m.get(&segment),
            Value::Seq(items) => segment.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        };
        match next {
            Some(next) => node = next,
            None => return (node, false),
        }
    }
    (node, true)
}

/// The node at a JSON pointer of the release's values, and its key path; for a
/// `required` error (which points at the object missing the key) the object's key.
fn pointer_loc(release: &ReleaseSpec, pointer: &str) -> (Loc, String) {
    let segments: Vec<String> = pointer
        .split('/')
        .skip(1)
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect();
    let base = format!("releases.{}.values", release.key);
    let mut node = &release.values;
    let mut path = base.clone();
    let mut loc = release.values_loc.clone();
    for segment in &segments {
        let next = match &node.value {
            Value::Map(m) => m.get(segment),
            Value::Seq(items) => segment.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        };
        let Some(next) = next else { break };
        node = next;
        path = format!("{path}.{segment}");
        loc = match &node.value {
            Value::Map(_) | Value::Seq(_) => node.key_loc.clone(),
            _ => node.loc.clone(),
        };
    }
    (loc, path)
}

/// Whether values.yaml (or the schema) leaves the keys below this value open.
fn open(known: Option<&J>) -> bool {
    match known {
        None | Some(J::Null) => true,
        Some(J::Object(m)) => m.is_empty(),
        Some(_) => true,
    }
}

/// The subschema a local `$ref` (`#/definitions/x`, `#/$defs/x`) of `schema` names in
/// `root`, followed until one has no `$ref` (at most 16 times: a cycle ends there);
/// `schema` itself when its `$ref` is not local or names nothing.
fn follow<'a>(root: Option<&'a J>, schema: &'a J) -> &'a J {
    let mut at = schema;
    for _ in 0..16 {
        let Some(pointer) = at
            .get("$ref")
            .and_then(J::as_str)
            .and_then(|r| r.strip_prefix('#'))
        else {
            break;
        };
        match root.and_then(|root| root.pointer(pointer)) {
            Some(next) => at = next,
            None => break,
        }
    }
    at
}

/// The `properties` of `schema`, or of the subschema its local `$ref` names.
fn schema_properties<'a>(
    root: Option<&'a J>,
    schema: Option<&'a J>,
) -> Option<&'a serde_json::Map<String, J>> {
    let schema = schema?;
    schema
        .get("properties")
        .or_else(|| follow(root, schema).get("properties"))
        .and_then(J::as_object)
}

fn schema_open(root: Option<&J>, schema: Option<&J>) -> bool {
    // A schema that says what extra keys may be (additionalProperties a schema, or
    // patternProperties) takes keys values.yaml does not list, also through a `$ref`.
    let open = |s: &J| {
        s.get("patternProperties").is_some()
            || s.get("additionalProperties")
                .is_some_and(|a| a.is_object() || *a == J::Bool(true))
    };
    schema.is_some_and(|s| open(s) || open(follow(root, s)))
}

/// What one level of a release's values is checked against.
#[derive(Clone, Copy)]
struct Level<'a> {
    /// The chart whose values these are (the release's chart, or a subchart's folder).
    chart: &'a str,
    /// The chart's values.yaml at this level.
    known: Option<&'a J>,
    /// The chart's schema at this level.
    schema: Option<&'a J>,
    /// At the top of a chart's values (the release's chart or a subchart's): that
    /// chart's subcharts; `None` below it.
    subcharts: Option<&'a BTreeMap<String, Subchart>>,
}

/// The keys of `values` (at JSON pointer `path`, a buffer restored on return) that
/// neither the chart's values.yaml (`known`) nor its schema declares. Under a
/// subchart's key the subchart's values.yaml is known too (the chart's own values
/// for it over the subchart's, as Helm merges them); `global` at the top of any
/// chart, and `tags` at the top of one with subcharts, are Helm's own keys.
fn unknown_keys(
    f: &mut Findings,
    written: &Written,
    chart: &Chart,
    values: &J,
    level: Level,
    path: &mut String,
) {
    let J::Object(map) = values else { return };
    let Level {
        chart: at_chart,
        known,
        schema,
        subcharts,
    } = level;
    let root = chart.schema_json.as_ref();
    let known_map = known.and_then(J::as_object);
    let props = schema_properties(root, schema);
    if open(known) && props.is_none() {
        return;
    }
    if schema_open(root, schema) {
        return;
    }
    for (key, value) in map {
        let subchart = subcharts.and_then(|s| s.get(key));
        if let Some(subcharts) = subcharts
            && (key == "global" || (key == "tags" && !subcharts.is_empty()))
        {
            continue;
        }
        let len = path.len();
        path.push('/');
        if key.contains(['~', '/']) {
            path.push_str(&key.replace('~', "~0").replace('/', "~1"));
        } else {
            path.push_str(key);
        }
        let child_path: &str = path;
        let in_values = known_map.and_then(|m| m.get(key));
        let in_schema = props.and_then(|p| p.get(key));
        if let Some(sub) = subchart {
            // A subchart strata cannot read takes any keys; one it can, its own.
            if let Some(sub_values) = &sub.values {
                unknown_keys(
                    f,
                    written,
                    chart,
                    value,
                    Level {
                        chart: &sub.path,
                        known: Some(sub_values),
                        schema: in_schema,
                        subcharts: Some(&sub.subcharts),
                    },
                    path,
                );
            }
            path.truncate(len);
            continue;
        }
        if in_values.is_none() && in_schema.is_none() {
            let mut candidates: Vec<&str> = known_map
                .map(|m| m.keys().map(String::as_str).collect())
                .unwrap_or_default();
            if let Some(p) = props {
                candidates.extend(p.keys().map(String::as_str));
            }
            if let Some(s) = subcharts {
                candidates.extend(s.keys().map(String::as_str));
            }
            let hint = match crate::suggest::closest(key, candidates.iter().copied()) {
                Some(close) => format!("did you mean `{close}`?"),
                None if candidates.is_empty() => {
                    "the chart's values.yaml has no keys here".to_owned()
                }
                None => {
                    let mut c = candidates.clone();
                    c.sort_unstable();
                    c.dedup();
                    format!("keys {at_chart}/values.yaml has here: {}", c.join(", "))
                }
            };
            // Point at the key, not its value.
            let (loc, at) = written.at(child_path, true);
            f.push(Finding {
                rule: None,
                path: at,
                loc,
                message: format!("`{key}` is not a value of {at_chart} (values.yaml has no such key)"),
                hint: format!("{hint}; `strictValues: false` on the release accepts keys the chart does not declare"),
            });
            path.truncate(len);
            continue;
        }
        unknown_keys(
            f,
            written,
            chart,
            value,
            Level {
                chart: level.chart,
                known: in_values,
                schema: in_schema,
                subcharts: None,
            },
            path,
        );
        path.truncate(len);
    }
}

fn key_loc(release: &ReleaseSpec, pointer: &str) -> Option<Loc> {
    let mut node: &Node = &release.values;
    for segment in pointer.split('/').skip(1) {
        let segment = segment.replace("~1", "/").replace("~0", "~");
        node = node.get(&segment)?;
    }
    Some(node.key_loc.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    /// Helm's rule written the plain way (a new map per level, every default copied):
    /// what `coalesce` did before it merged in place, kept as its oracle.
    fn plain(defaults: Option<&J>, values: &J) -> J {
        match (defaults, values) {
            (Some(J::Object(d)), J::Object(v)) => {
                let mut out = serde_json::Map::new();
                for (key, default) in d {
                    match v.get(key) {
                        None => {
                            out.insert(key.clone(), default.clone());
                        }
                        Some(J::Null) => {}
                        Some(value) => {
                            out.insert(key.clone(), plain(Some(default), value));
                        }
                    }
                }
                for (key, value) in v {
                    if !value.is_null() && !d.contains_key(key) {
                        out.insert(key.clone(), value.clone());
                    }
                }
                J::Object(out)
            }
            _ => values.clone(),
        }
    }

    #[test]
    fn values_merge_over_the_defaults_in_their_order() {
        let defaults =
            json!({"a": 1, "m": {"x": 1, "y": {"deep": true}}, "gone": 3, "list": [1, 2], "z": {}});
        let values = json!({"new": {"k": null}, "m": {"y": 2, "w": 5}, "gone": null, "list": [3], "a": {"now": "map"}});
        let merged = coalesce(Some(&defaults), &values);
        assert_eq!(
            serde_json::to_string(&merged).unwrap(),
            r#"{"a":{"now":"map"},"m":{"x":1,"y":2,"w":5},"list":[3],"z":{},"new":{"k":null}}"#
        );
        assert_eq!(coalesce(None, &values), values);
        assert_eq!(coalesce(Some(&json!("scalar")), &values), values);
        assert_eq!(coalesce(Some(&defaults), &json!(null)), json!(null));
    }

    fn value() -> impl Strategy<Value = J> {
        let leaf = prop_oneof![
            Just(J::Null),
            any::<bool>().prop_map(J::Bool),
            (0i64..5).prop_map(|i| json!(i)),
            "[ab]".prop_map(J::String),
        ];
        leaf.prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(J::Array),
                prop::collection::vec(("[a-e]", inner), 0..5)
                    .prop_map(|entries| J::Object(entries.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn coalesce_is_helms_rule_key_for_key_and_in_order(defaults in value(), values in value()) {
            let ours = coalesce(Some(&defaults), &values);
            let theirs = plain(Some(&defaults), &values);
            // Same keys in the same order, not only equal maps.
            prop_assert_eq!(serde_json::to_string(&ours).unwrap(), serde_json::to_string(&theirs).unwrap());
        }
    }
}

//! Reading a chart's values, schema and subcharts from the project, for the checks.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value as J;

use crate::check::{Chart, Subchart};
use crate::error::{Error, Result};
use crate::project::{Kind, Project};

/// What a chart is, for a release whose `chart:` names none.
const NO_CHART: &str = "a chart is a folder of the project with a Chart.yaml (`helm create` makes one; \
     `helm pull REPO/CHART --untar --untardir charts` copies one from a repository)";

/// The chart at `path`; `Error::Entry` when there is none there (outside the
/// project, or no Chart.yaml), any other error when one of its files does not read.
pub fn read(project: &Project, path: &str) -> Result<Chart> {
    let no_chart = |message: String| Error::Entry {
        path: path.to_owned(),
        message,
        hint: NO_CHART.to_owned(),
    };
    if path.contains("://") {
        return Err(Error::Entry {
            path: path.to_owned(),
            message: format!(
                "`{path}` is a chart in a repository or registry; a release's chart is a folder of the project"
            ),
            hint: format!(
                "strata renders and checks from the project alone, so it does not fetch charts: copy this one in with `helm pull {path} --version VERSION --untar --untardir charts` and name its folder (charts/NAME)"
            ),
        });
    }
    if path.trim().is_empty() {
        return Err(no_chart(
            "`chart:` is empty; a release's chart is a folder of the project".to_owned(),
        ));
    }
    let escapes = path
        .split('/')
        .try_fold(0usize, |depth, part| match part {
            ".." => depth.checked_sub(1),
            "" | "." => Some(depth),
            _ => Some(depth + 1),
        })
        .is_none();
    if path.starts_with('/') || escapes {
        return Err(no_chart(format!(
            "`{path}` is outside the project; a release's chart is a folder of the project"
        )));
    }
    if path.split('/').any(|s| s == "..") {
        return Err(no_chart(format!(
            "`{path}` has a `..` part; a release's chart is named by its folder's path from the project root (charts/NAME)"
        )));
    }
    if let Some(root) = project.root()
        && std::fs::metadata(root.join(path)).is_ok_and(|m| m.is_file())
    {
        let folder = path.rsplit_once('/').map_or(".", |(dir, _)| dir);
        return Err(no_chart(format!(
            "`{path}` is a file; a release's chart is the folder that holds Chart.yaml (`{folder}`?)"
        )));
    }
    let Some(meta) = read_file(project, &format!("{path}/Chart.yaml"))? else {
        return Err(no_chart(format!(
            "no chart at {path} (it has no Chart.yaml)"
        )));
    };
    let meta = parse_yaml(&meta, &format!("{path}/Chart.yaml"))?;
    let mut budget = MAX_SUBCHARTS;
    let mut subcharts = subcharts(project, path, &meta, 0, &mut budget)?;
    let values = match read_file(project, &format!("{path}/values.yaml"))? {
        Some(bytes) => Some(parse_yaml(&bytes, &format!("{path}/values.yaml"))?),
        None => None,
    };
    fold_parent_values(&mut subcharts, values.as_ref());
    let schema_file = format!("{path}/values.schema.json");
    let (schema, schema_json) = match read_file(project, &schema_file)? {
        Some(bytes) => {
            let json: serde_json::Value = serde_json::from_slice(&bytes)
                .map_err(|e| Error::Usage(format!("{schema_file} is not valid JSON: {e}")))?;
            let validator = crate::check::values::compile_schema(&json).map_err(|e| {
                Error::Usage(format!("{schema_file} is not a usable JSON Schema: {e}"))
            })?;
            (Some(validator), Some(json))
        }
        None => (None, None),
    };
    Ok(Chart {
        path: path.to_owned(),
        values,
        schema,
        schema_json,
        subcharts,
    })
}

/// The largest chart file strata reads (a `values.yaml` of a large chart is some
/// hundred kB, its schema a few MB at most).
const MAX_CHART_FILE: usize = 16 << 20;

/// One file of a chart (or `vars.schema.json`), at most [`MAX_CHART_FILE`] bytes;
/// `None` when it does not exist.
/// A FIFO or a device there is an error, not a read that waits for ever.
fn read_file(project: &Project, rel: &str) -> Result<Option<Vec<u8>>> {
    if let Some(root) = project.root()
        && let Ok(meta) = std::fs::metadata(root.join(rel))
        && !meta.is_file()
    {
        return Err(Error::Entry {
            path: rel.to_owned(),
            message: format!("{rel} is not a regular file"),
            hint: "a chart's Chart.yaml, values.yaml and values.schema.json are files".to_owned(),
        });
    }
    let bytes = project.read_at_most(rel, MAX_CHART_FILE)?;
    if bytes.as_ref().is_some_and(|b| b.len() > MAX_CHART_FILE) {
        return Err(Error::Entry {
            path: rel.to_owned(),
            message: format!("{rel} is larger than {} MiB", MAX_CHART_FILE >> 20),
            hint: "a chart's values, schema and Chart.yaml are text a person reviews; remove generated content from it".to_owned(),
        });
    }
    Ok(bytes)
}

/// How many subcharts (at any depth) one chart may have: `charts/` folders that link
/// back to their parent would otherwise be read without end.
const MAX_SUBCHARTS: usize = 1000;

/// The subcharts of the chart in folder `dir` (whose Chart.yaml is `meta`), keyed as
/// Helm keys their values: each dependency of Chart.yaml (or, for an `apiVersion: v1`
/// chart, of requirements.yaml) by its `alias`, else its name, and each chart in
/// `charts/` that no dependency names, by its name. A subchart folder is read with its
/// own subcharts; a packed one (`.tgz`) or a dependency not in `charts/` (not yet
/// fetched by `helm dependency build`) has no values strata can read.
fn subcharts(
    project: &Project,
    dir: &str,
    meta: &J,
    depth: usize,
    budget: &mut usize,
) -> Result<BTreeMap<String, Subchart>> {
    let mut vendored: BTreeMap<String, Subchart> = BTreeMap::new();
    for entry in project
        .entries(&format!("{dir}/charts"))?
        .unwrap_or_default()
    {
        let Some(name) = entry.name.as_deref() else {
            continue;
        };
        match entry.kind {
            Kind::Dir => {
                let file = format!("{}/Chart.yaml", entry.path);
                let Some(bytes) = read_file(project, &file)? else {
                    continue;
                };
                if *budget == 0 || depth >= 16 {
                    let what = if *budget == 0 {
                        format!("more than {MAX_SUBCHARTS} subcharts")
                    } else {
                        "subcharts nested more than 16 deep".to_owned()
                    };
                    return Err(Error::Entry {
                        path: dir.to_owned(),
                        message: format!(
                            "{what} (does a folder in charts/ link back to its chart?)"
                        ),
                        hint: "a chart's charts/ holds the charts it depends on, each once"
                            .to_owned(),
                    });
                }
                *budget -= 1;
                let sub_meta = parse_yaml(&bytes, &file)?;
                let values = match read_file(project, &format!("{}/values.yaml", entry.path))? {
                    Some(bytes) => {
                        Some(parse_yaml(&bytes, &format!("{}/values.yaml", entry.path))?)
                    }
                    None => None,
                };
                let subcharts = subcharts(project, &entry.path, &sub_meta, depth + 1, budget)?;
                let key = sub_meta
                    .get("name")
                    .and_then(J::as_str)
                    .unwrap_or(name)
                    .to_owned();
                vendored.insert(
                    key,
                    Subchart {
                        path: entry.path.clone(),
                        values,
                        subcharts,
                    },
                );
            }
            Kind::File if name.ends_with(".tgz") => {
                vendored.entry(packed_name(name).to_owned()).or_default();
            }
            _ => {}
        }
    }
    let mut dependencies: Vec<&J> = dependencies(meta).collect();
    let requirements;
    if dependencies.is_empty()
        && let Some(bytes) = read_file(project, &format!("{dir}/requirements.yaml"))?
    {
        requirements = parse_yaml(&bytes, &format!("{dir}/requirements.yaml"))?;
        dependencies = self::dependencies(&requirements).collect();
    }
    let mut out = BTreeMap::new();
    let mut named = BTreeSet::new();
    for dependency in dependencies {
        let Some(name) = dependency.get("name").and_then(J::as_str) else {
            continue;
        };
        let key = dependency
            .get("alias")
            .and_then(J::as_str)
            .filter(|alias| !alias.is_empty())
            .unwrap_or(name);
        named.insert(name);
        let mut subchart = vendored.get(name).cloned().unwrap_or_default();
        // The dependency's `condition` (`cache.enabled`, several by commas) names a key
        // of the values under the subchart's key, whether its values.yaml has it or not.
        if let (Some(values), Some(condition)) = (
            subchart.values.as_mut(),
            dependency.get("condition").and_then(J::as_str),
        ) {
            for path in condition.split(',') {
                let segments: Vec<&str> = path.trim().split('.').collect();
                // Deeper than a layer may nest, it names no value anyone sets (and a
                // value that deep would be dropped by a recursion that overflows).
                if segments.len() <= 64 && segments[0] == key {
                    add_known(values, &segments[1..]);
                }
            }
        }
        out.insert(key.to_owned(), subchart);
    }
    for (name, subchart) in vendored {
        if !named.contains(name.as_str()) {
            out.entry(name).or_insert(subchart);
        }
    }
    Ok(out)
}

/// Helm gives a subchart its own values.yaml with its parent's values for it over
/// them: each subchart's `values` become that merge, at every depth.
fn fold_parent_values(subcharts: &mut BTreeMap<String, Subchart>, parent: Option<&J>) {
    for (key, sub) in subcharts.iter_mut() {
        if let (Some(own), Some(theirs)) = (&sub.values, parent.and_then(|p| p.get(key))) {
            sub.values = Some(crate::check::values::coalesce(Some(own), theirs));
        }
        fold_parent_values(&mut sub.subcharts, sub.values.as_ref());
    }
}

/// Adds the key at `path` to a values.yaml (as `true`) when it is not there; a
/// values.yaml that takes any keys (empty) is left so.
fn add_known(values: &mut J, path: &[&str]) {
    if values.as_object().is_none_or(serde_json::Map::is_empty) {
        return;
    }
    let mut at = values;
    for (i, segment) in path.iter().enumerate() {
        let J::Object(map) = at else {
            return;
        };
        let last = i + 1 == path.len();
        at = map.entry(segment.to_string()).or_insert_with(|| {
            if last {
                J::Bool(true)
            } else {
                J::Object(serde_json::Map::new())
            }
        });
    }
}

/// The entries of a Chart.yaml's (or requirements.yaml's) `dependencies` list.
fn dependencies(meta: &J) -> impl Iterator<Item = &J> {
    meta.get("dependencies")
        .and_then(J::as_array)
        .into_iter()
        .flatten()
}

/// The chart name of a packed subchart, `redis-17.3.2.tgz` → `redis`: what comes
/// before the `-` that starts its version (`MAJOR.MINOR.PATCH`, perhaps with `-rc.1` or
/// `+build` after it), so a name with a digit after a dash (`k8s-3scale-1.0.0.tgz`)
/// is kept whole; else the whole stem.
fn packed_name(file: &str) -> &str {
    let stem = file.strip_suffix(".tgz").unwrap_or(file);
    let is_version = |v: &str| {
        let core = v.split(['-', '+']).next().unwrap_or_default();
        let parts: Vec<&str> = core.split('.').collect();
        parts.len() == 3
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    };
    stem.match_indices('-')
        .map(|(i, _)| i)
        .find(|&i| is_version(&stem[i + 1..]))
        .map_or(stem, |i| &stem[..i])
}

/// The project's `vars.schema.json`, compiled; `None` when there is none.
pub fn vars_schema(project: &Project) -> Result<Option<jsonschema::Validator>> {
    let file = crate::check::values::VARS_SCHEMA;
    let Some(bytes) = read_file(project, file)? else {
        return Ok(None);
    };
    let json: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| Error::Usage(format!("{file} is not valid JSON: {e}")))?;
    crate::check::values::compile_schema(&json)
        .map(Some)
        .map_err(|e| Error::Usage(format!("{file} is not a usable JSON Schema: {e}")))
}

/// A chart's values.yaml, its errors at their place in it (in the words a layer's
/// get: the parser's own are several lines of its source).
fn parse_yaml(bytes: &[u8], file: &str) -> Result<serde_json::Value> {
    let file: std::sync::Arc<str> = std::sync::Arc::from(file);
    let text = std::str::from_utf8(bytes).map_err(|e| {
        Error::from(
            crate::error::Located::new(
                crate::config::Loc::file(file.clone()),
                "",
                format!("the file is not valid UTF-8 (byte {})", e.valid_up_to()),
            )
            .hint("save the file as UTF-8"),
        )
    })?;
    if text.trim().is_empty() {
        return Ok(serde_json::Value::Null);
    }
    serde_saphyr::from_str(text).map_err(|e| crate::config::yaml_error(&e, &file))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_packed_charts_name_is_what_comes_before_its_version() {
        for (file, name) in [
            ("redis-17.3.2.tgz", "redis"),
            ("k8s-3scale-1.0.0.tgz", "k8s-3scale"),
            ("app-1.0.0-rc.1.tgz", "app"),
            ("app-1.0.0+build.5.tgz", "app"),
            ("app-2-1.10.0.tgz", "app-2"),
            ("app.tgz", "app"),
            ("app-latest.tgz", "app-latest"),
            ("app-1.0.tgz", "app-1.0"),
            ("app-1.0.x.tgz", "app-1.0.x"),
            ("app-1..0.tgz", "app-1..0"),
        ] {
            assert_eq!(super::packed_name(file), name, "{file}");
        }
    }
}

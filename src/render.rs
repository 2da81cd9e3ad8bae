//! Rendering: the project's minijinja templates, compiled once, applied to each target.
//!
//! `templates/` mirrors one target's output folder: `templates/values.yaml.j2` becomes
//! `<target>/values.yaml`. A path segment starting with `_` marks a partial (macros,
//! includes) that is not an output; files without `.j2` are copied as they are; a
//! template that renders to nothing but whitespace writes no file (that is how a
//! template is made cloud-conditional). Templates are added to the environment by
//! name, with no loader, so `include` cannot reach outside `templates/`.
//!
//! Undefined values are errors, auto-escaping is off (these are YAML and JSON files),
//! and every YAML/JSON/env artifact is parsed back, and scanned for secrets, before it
//! is accepted.

use std::collections::BTreeMap;
use std::sync::Arc;

use minijinja::value::Kwargs;
use minijinja::{AutoEscape, Environment, UndefinedBehavior, Value};
use serde::Serialize;

use crate::config::Loc;
use crate::desired::Desired;
use crate::error::{Error, Result, TemplateError};
use crate::model::Target;

mod lines;

pub(crate) const TEMPLATE_DIR: &str = "templates";
const EXTENSION: &str = ".j2";

/// One rendered file, relative to the output folder (`prod-aws/values.yaml`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    pub path: String,
    pub bytes: Arc<[u8]>,
}

/// What a template path produces.
#[derive(Debug, Clone)]
enum Output {
    /// Render the named template to this relative path.
    Template { name: String, out: String },
    /// Copy these bytes verbatim.
    Verbatim { out: String, bytes: Arc<[u8]> },
}

/// The compiled templates of a project.
pub struct Renderer {
    env: Environment<'static>,
    outputs: Vec<Output>,
    /// Every template's name (relative to `templates/`) and source, partials too, for
    /// naming the template line behind a line of output ([`Rendered::source_of`]).
    sources: Arc<[(String, String)]>,
}

/// The syntax every template is read with.
fn syntax() -> minijinja::syntax::SyntaxConfig {
    minijinja::syntax::SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .keep_trailing_newline(true)
        .build()
        .expect("default delimiters are valid")
}

/// The most instructions one render of one template may run. A template of a
/// thousand-line loop runs some tens of thousands; a loop that would never end (or
/// run for hours, `range(100000)` twice nested) is stopped instead of hanging CI.
pub(crate) const TEMPLATE_FUEL: u64 = 2_000_000;

/// The largest file one template may render: far above any manifest or values file
/// (Kubernetes stores an object in at most 1.5 MiB), far below what a loop printing a
/// long string could fill the memory with before the fuel runs out.
pub(crate) const MAX_RENDERED: usize = 16 << 20;

/// The text a template renders, refused (an error for minijinja to stop at) past
/// [`MAX_RENDERED`] bytes.
#[derive(Default)]
struct Capped {
    text: Vec<u8>,
    over: bool,
}

impl std::io::Write for Capped {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if self.text.len() + bytes.len() > MAX_RENDERED {
            self.over = true;
            return Err(std::io::Error::other("rendered file too large"));
        }
        self.text.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The environment templates render in, without templates.
fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_syntax(syntax());
    env.set_recursion_limit(64);
    env.set_fuel(Some(TEMPLATE_FUEL));
    env.add_filter("to_yaml", to_yaml);
    env.add_filter("to_json", to_json);
    env.add_filter("quote", quote);
    env
}

impl Renderer {
    /// Compiles every template; any syntax error is reported with its line.
    pub fn new(files: Vec<(String, Vec<u8>)>) -> Result<Renderer> {
        let mut env = environment();
        let mut sources = Vec::new();
        let mut outputs = Vec::new();
        let mut errors = Vec::new();
        for (rel, bytes) in files {
            let is_partial = rel.split('/').any(|segment| segment.starts_with('_'));
            let Some(out) = rel.strip_suffix(EXTENSION) else {
                if !is_partial {
                    outputs.push(Output::Verbatim {
                        out: rel,
                        bytes: bytes.into(),
                    });
                }
                continue;
            };
            let source = match String::from_utf8(bytes) {
                Ok(source) => source,
                Err(_) => {
                    errors.push(Error::from(TemplateError {
                        template: format!("{TEMPLATE_DIR}/{rel}"),
                        line: None,
                        col: None,
                        targets: Vec::new(),
                        message: "the template is not valid UTF-8".into(),
                        hint: None,
                    }));
                    continue;
                }
            };
            if let Err(e) = env.add_template_owned(rel.clone(), source.clone()) {
                errors.push(template_error(&e, None));
                continue;
            }
            sources.push((rel.clone(), source));
            if !is_partial {
                outputs.push(Output::Template {
                    name: rel.clone(),
                    out: out.to_owned(),
                });
            }
        }
        Error::from_list(errors)?;
        Ok(Renderer {
            env,
            outputs,
            sources: sources.into(),
        })
    }

    /// Renders every artifact of one target: strata's own (from the desired state),
    /// then the project's templates (a template at the path of one of strata's own
    /// artifacts replaces it; the checks judge whatever was rendered).
    pub fn render(&self, target: &Target, desired: &Desired) -> Result<Rendered> {
        let mut rendered = Rendered::default();
        for (out, bytes, loc, data) in builtin(target, desired) {
            let path = rendered.insert(&target.name, out, bytes, Origin::Strata(loc));
            if let Some(data) = data {
                rendered.data.insert(path, data);
            }
        }
        if self.outputs.is_empty() {
            return Ok(rendered);
        }
        let ctx = Value::from(minijinja::value::Serde(context(target, desired)));
        rendered.lines = Some(Arc::new(TemplateLines {
            sources: self.sources.clone(),
            ctx: ctx.clone(),
            marked: Default::default(),
        }));
        for output in &self.outputs {
            match output {
                Output::Verbatim { out, bytes } => {
                    rendered.insert(
                        &target.name,
                        out.clone(),
                        bytes.clone(),
                        Origin::Template(format!("{TEMPLATE_DIR}/{out}")),
                    );
                }
                Output::Template { name, out } => {
                    let template = self
                        .env
                        .get_template(name)
                        .map_err(|e| template_error(&e, Some(&target.name)))?;
                    let mut capped = Capped::default();
                    if let Err(e) = template.render_captured_to(ctx.clone(), &mut capped) {
                        let mut error = template_error(&e, Some(&target.name));
                        if capped.over
                            && let Error::Template(t) = &mut error
                        {
                            // minijinja's error for a failed write names no place.
                            t.template = format!("{TEMPLATE_DIR}/{name}");
                            t.message = format!(
                                "rendered {out} would be larger than {} MiB and was stopped",
                                MAX_RENDERED >> 20
                            );
                            t.hint = Some("a loop that prints more than any file needs: render less per template".to_owned());
                        }
                        return Err(error);
                    }
                    // minijinja writes what the template's text and values are: UTF-8.
                    let mut text = String::from_utf8(capped.text)
                        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
                    if text.trim().is_empty() {
                        continue;
                    }
                    if !text.ends_with('\n') {
                        text.push('\n');
                    }
                    if let Err(failure) = check_artifact(out, &text) {
                        let at = failure.output_line.and_then(|line| {
                            let marked = marked_render(&self.sources, name, &ctx, &text)?;
                            producer(&self.sources, &marked, line)
                        });
                        let (template, line) = match at {
                            Some((template, line)) => (template, Some(line)),
                            None => (name.clone(), None),
                        };
                        let mut message = failure.message;
                        if template != *name {
                            // A macro's or an included template's line: say which
                            // template was being rendered.
                            message = message.replacen(
                                &format!("rendered {out}"),
                                &format!("rendered {out} (from {TEMPLATE_DIR}/{name})"),
                                1,
                            );
                        }
                        return Err(TemplateError {
                            template: format!("{TEMPLATE_DIR}/{template}"),
                            line,
                            col: None,
                            targets: vec![target.name.clone()],
                            message,
                            hint: Some(failure.hint.to_owned()),
                        }
                        .into());
                    }
                    rendered.insert(
                        &target.name,
                        out.clone(),
                        Arc::from(text.into_bytes()),
                        Origin::Template(format!("{TEMPLATE_DIR}/{name}")),
                    );
                }
            }
        }
        Ok(rendered)
    }
}

/// The output of template `name` rendered from `ctx` with markers (see [`lines`] for
/// how, and why the answer is sound); `None` when the instrumented render does not
/// reproduce `text`, what the plain render gave, exactly.
fn marked_render(
    sources: &[(String, String)],
    name: &str,
    ctx: &Value,
    text: &str,
) -> Option<String> {
    let mut env = environment();
    env.add_filter(lines::FILTER, lines::at_filter);
    for (index, (rel, source)) in sources.iter().enumerate() {
        let marked = lines::instrument(source, index, syntax())?;
        env.add_template_owned(rel.clone(), marked).ok()?;
    }
    let mut marked = env.get_template(name).ok()?.render(ctx).ok()?;
    if !lines::strip(&marked).ends_with('\n') {
        marked.push('\n');
    }
    (lines::strip(&marked) == text).then_some(marked)
}

/// The template (relative to `templates/`) and line that produced line `line`
/// (1-based) of a marked render.
fn producer(sources: &[(String, String)], marked: &str, line: usize) -> Option<(String, u32)> {
    let (index, line) = lines::producer(marked, line)?;
    Some((sources.get(index)?.0.clone(), line))
}

/// What [`Rendered::source_of`] needs to name the template line behind a line of a
/// template's artifact: the templates and the context they were rendered from, and
/// each artifact's marked render once one was needed. Kept only until the checks
/// are done.
pub struct TemplateLines {
    sources: Arc<[(String, String)]>,
    ctx: Value,
    marked: std::sync::Mutex<BTreeMap<String, Option<Arc<str>>>>,
}

impl std::fmt::Debug for TemplateLines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TemplateLines").finish_non_exhaustive()
    }
}

/// Where an artifact came from, for errors about its content.
#[derive(Debug, Clone, PartialEq)]
pub enum Origin {
    /// strata built it from the layers; the location of what declared it.
    Strata(Loc),
    /// A project template (`templates/…`) rendered it.
    Template(String),
}

/// One target's artifacts, by path relative to the output folder.
#[derive(Debug, Clone, Default)]
pub struct Rendered {
    pub artifacts: BTreeMap<String, Arc<[u8]>>,
    pub origins: BTreeMap<String, Origin>,
    /// The data that an artifact strata wrote itself (a release's values file, a
    /// bucket or IAM document) was serialized from, by the artifact's path, so that the
    /// checks need not parse back what was just written: [`yaml_text`] round-trips (a
    /// test holds it), and so does `serde_json`'s writer. A template that replaces the
    /// file removes its entry, and the checks parse what the template rendered.
    pub data: BTreeMap<String, Arc<serde_json::Value>>,
    /// How to name the template line behind a line of a template's artifact, for the
    /// checks; `None` when the project has no templates.
    pub lines: Option<Arc<TemplateLines>>,
}

impl Rendered {
    /// Adds an artifact; returns its path relative to the output folder.
    fn insert(&mut self, target: &str, out: String, bytes: Arc<[u8]>, origin: Origin) -> String {
        let path = format!("{target}/{out}");
        self.data.remove(&path);
        self.artifacts.insert(path.clone(), bytes);
        self.origins.insert(path.clone(), origin);
        path
    }

    /// The place in the project that wrote line `line`, column `col` (1-based) of the
    /// artifact at `path`, when a file of `templates/` made it: for a file copied
    /// from there, that very place; for a template's output, the template (a macro's
    /// or an included one's when that wrote the line) and its line, with column 0
    /// (not known). `None` for strata's own artifacts, and when the instrumented
    /// render cannot say (see [`lines`]). It renders the template again, so it is for
    /// findings only, never for the happy path.
    pub fn source_of(&self, path: &str, line: usize, col: usize) -> Option<Loc> {
        let Some(Origin::Template(template)) = self.origins.get(path) else {
            return None;
        };
        let Some(name) = template
            .strip_prefix(TEMPLATE_DIR)
            .and_then(|t| t.strip_prefix('/'))
            .filter(|t| t.ends_with(EXTENSION))
        else {
            let line = u32::try_from(line).ok()?;
            let col = u32::try_from(col).ok()?;
            return Some(Loc::new(Arc::from(template.as_str()), line, col));
        };
        let lines = self.lines.as_ref()?;
        let marked = {
            let mut cache = lines.marked.lock().ok()?;
            cache
                .entry(path.to_owned())
                .or_insert_with(|| {
                    let text = std::str::from_utf8(self.artifacts.get(path)?).ok()?;
                    marked_render(&lines.sources, name, &lines.ctx, text).map(Arc::from)
                })
                .clone()?
        };
        let (template, line) = producer(&lines.sources, &marked, line)?;
        Some(Loc::new(
            Arc::from(format!("{TEMPLATE_DIR}/{template}").as_str()),
            line,
            0,
        ))
    }
}

/// The header of every artifact strata writes itself.
fn header(comment: &str, what: &str, target: &Target) -> String {
    format!(
        "{comment} {what}, target {}. Generated by strata; do not edit.\n",
        target.name
    )
}

fn json_bytes(value: &serde_json::Value) -> Arc<[u8]> {
    let mut text = serde_json::to_string_pretty(value).unwrap_or_default();
    text.push('\n');
    Arc::from(text.into_bytes())
}

/// A JSON document of strata's, as the artifact's bytes and the data they were
/// written from (for the checks).
fn json_artifact(value: &Arc<serde_json::Value>) -> (Arc<[u8]>, Option<Arc<serde_json::Value>>) {
    (json_bytes(value), Some(value.clone()))
}

/// YAML of a value: block style, keys in the order written, strings quoted where YAML
/// would read them as something else. Sequences are indented under their key, and a
/// long one-line string stays on one line (not folded with `>-`): the style yamllint's
/// defaults ask for, and the subset `yaml_check::simple` reads.
pub fn yaml_text(value: &serde_json::Value) -> String {
    if let Some(text) = crate::yaml_emit::emit(value) {
        return text;
    }
    let options = serde_saphyr::ser_options! {
        compact_list_indent: false,
        folded_wrap_chars: usize::MAX,
    };
    serde_saphyr::to_string_with_options(value, options).unwrap_or_default()
}

fn yaml_documents(docs: &[serde_json::Value]) -> String {
    docs.iter().map(yaml_text).collect::<Vec<_>>().join("---\n")
}

/// One of strata's own artifacts: its path under the target's folder, its bytes, where
/// it was declared and, for release values and JSON documents, the data it was
/// written from.
type Builtin = (String, Arc<[u8]>, Loc, Option<Arc<serde_json::Value>>);

/// strata's own artifacts.
fn builtin(target: &Target, desired: &Desired) -> Vec<Builtin> {
    let mut out = Vec::new();
    for release in &desired.releases {
        let mut text = header(
            "#",
            &format!("Helm values of release {} ({})", release.key, release.chart),
            target,
        );
        let values = release.values.to_json();
        let values = if values.as_object().is_some_and(|m| !m.is_empty()) {
            text.push_str(&yaml_text(&values));
            values
        } else {
            // What the YAML below reads as: an empty mapping (a null reads as one too).
            text.push_str("{}\n");
            serde_json::Value::Object(Default::default())
        };
        out.push((
            format!("releases/{}.values.yaml", release.key),
            Arc::from(text.into_bytes()),
            release.values_loc.clone(),
            Some(Arc::new(values)),
        ));
    }
    for (path, docs) in crate::desired::platform::files(target, desired) {
        let mut text = header("#", "Platform chart", target);
        text.push_str(&yaml_documents(&docs));
        out.push((
            format!("platform/{path}"),
            Arc::from(text.into_bytes()),
            target.merged.tree.loc.clone(),
            None,
        ));
    }
    for w in &desired.workloads {
        if let Some(policy) = &w.policy {
            let (bytes, data) = json_artifact(policy);
            out.push((
                format!("iam/{}.policy.json", w.key),
                bytes,
                w.loc.clone(),
                data,
            ));
        }
        if let Some(trust) = &w.trust {
            let (bytes, data) = json_artifact(trust);
            out.push((
                format!("iam/{}.trust.json", w.key),
                bytes,
                w.loc.clone(),
                data,
            ));
        }
        if let Some(gcp) = &w.gcp {
            let (bytes, data) = json_artifact(gcp);
            out.push((
                format!("iam/{}.gcp.json", w.key),
                bytes,
                w.loc.clone(),
                data,
            ));
        }
        let mut text = header("#", &format!("Environment of workload {}", w.key), target);
        text.push_str(
            "# Secret variables have no values here: they come from Kubernetes Secrets.\n",
        );
        for (name, value) in &w.env {
            text.push_str(&format!("{name}={}\n", env_value(value)));
        }
        for (name, secret) in &w.secrets {
            text.push_str(&format!(
                "# {name} from secret {}, key {}\n",
                secret.name, secret.key
            ));
        }
        out.push((
            format!("env/{}.env", w.key),
            Arc::from(text.into_bytes()),
            w.loc.clone(),
            None,
        ));
    }
    for b in &desired.buckets {
        let (bytes, data) = json_artifact(&b.document);
        out.push((
            format!("buckets/{}.json", b.key),
            bytes,
            b.loc.clone(),
            data,
        ));
    }
    out
}

/// A value in an env file: as written when it is plain, else double-quoted with `"`,
/// `\\`, `$` and newlines escaped (what docker and systemd read back).
fn env_value(value: &str) -> String {
    let plain = value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./:,@+=%".contains(c));
    if plain {
        return value.to_owned();
    }
    let mut out = String::from("\"");
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '$' => out.push_str("\\$"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// What templates see: the scope references reach (target, project, kube, aws/gcp,
/// dns, buckets, workloads), plus `vars`, `releases` (with their resolved values) and
/// `exceptions`. One model: `explain` shows the same values.
pub fn context(target: &Target, desired: &Desired) -> serde_json::Value {
    let mut ctx =
        crate::model::refs::scope(&target.config, &target.names, &target.layers, target.cloud);
    ctx["target"]["isProduction"] = serde_json::json!(target.is_production());
    ctx["vars"] = target
        .resolved_at("vars")
        .map_or(serde_json::json!({}), crate::config::Node::to_json);
    let releases: serde_json::Map<String, serde_json::Value> = desired
        .releases
        .iter()
        .map(|r| {
            (
                r.key.clone(),
                serde_json::json!({
                    "chart": r.chart,
                    "namespace": r.namespace,
                    "timeout": r.timeout,
                    "values": r.values.to_json(),
                }),
            )
        })
        .collect();
    ctx["releases"] = serde_json::Value::Object(releases);
    ctx["exceptions"] = serde_json::to_value(&target.config.exceptions).unwrap_or_default();
    ctx
}

/// Why a rendered artifact was refused, and on which line of the output.
struct Refused {
    output_line: Option<usize>,
    message: String,
    hint: &'static str,
}

/// Parses a rendered artifact back by its kind and scans it for secrets.
fn check_artifact(out: &str, text: &str) -> std::result::Result<(), Refused> {
    let fail = |line: usize, message: String, hint: &'static str| Refused {
        output_line: Some(line),
        message,
        hint,
    };
    if out.ends_with(".yaml") || out.ends_with(".yml") {
        if let Err((line, message)) = crate::yaml_check::check(text) {
            return Err(fail(
                line,
                format!("rendered {out} is not valid YAML (output line {line}): {message}"),
                "check indentation around the reported line; pipe structured values through `| to_yaml | indent(N)`",
            ));
        }
    } else if out.ends_with(".json") {
        if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(text) {
            return Err(fail(
                e.line(),
                format!(
                    "rendered {out} is not valid JSON (output line {}): {e}",
                    e.line()
                ),
                "build JSON with `| to_json` rather than by hand",
            ));
        }
    } else if out.ends_with(".env") {
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let valid = line.split_once('=').is_some_and(|(k, _)| {
                !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            });
            if !valid {
                return Err(fail(
                    i + 1,
                    format!("rendered {out} line {} is not NAME=value", i + 1),
                    "each line must be NAME=value or a # comment",
                ));
            }
        }
    }
    if let Some((line, what)) = crate::check::secrets::scan_artifact(text)
        .into_iter()
        .next()
    {
        return Err(fail(
            line,
            format!("rendered {out} line {line} contains what looks like {what} (value not shown)"),
            "artifacts are committed and reviewed: reference secrets with secretRef instead of writing them",
        ));
    }
    Ok(())
}

fn template_error(e: &minijinja::Error, target: Option<&str>) -> Error {
    let name = e.name().unwrap_or("?").to_owned();
    let col = match (e.template_source(), e.range()) {
        (Some(source), Some(range)) => {
            let start = range.start.min(source.len());
            let line_start = source[..start].rfind('\n').map_or(0, |p| p + 1);
            Some(source[line_start..start].chars().count() as u32 + 1)
        }
        _ => None,
    };
    let snippet = match (e.template_source(), e.range()) {
        (Some(source), Some(range)) if range.end <= source.len() => {
            // minijinja points at the failing attribute (`.nope`); show the whole
            // expression (`config.bucket.nope`) by walking back over its path.
            let start = source[..range.start]
                .rfind(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.'))
                .map_or(0, |p| p + 1);
            Some(source[start..range.end].trim().to_owned())
        }
        _ => None,
    };
    let (message, hint) = match e.kind() {
        minijinja::ErrorKind::UndefinedError => (
            match &snippet {
                Some(s) => format!("undefined value `{s}`"),
                None => "undefined value".to_owned(),
            },
            Some("templates see: target, project, kube, aws, gcp, dns, buckets, workloads, releases, vars, exceptions; check the spelling against the environment files".to_owned()),
        ),
        minijinja::ErrorKind::SyntaxError => (format!("syntax error: {}", e.detail().unwrap_or("invalid syntax")), None),
        minijinja::ErrorKind::OutOfFuel => (
            format!("the template ran more than {TEMPLATE_FUEL} steps and was stopped"),
            Some("a loop that never ends, or loops nested too deep: render less per template, or loop over data the layers give (vars, buckets) instead of over range()".to_owned()),
        ),
        _ => {
            let detail = e.detail().map(|d| format!(": {d}")).unwrap_or_default();
            (format!("{}{detail}", e.kind()), None)
        }
    };
    TemplateError {
        template: format!("{TEMPLATE_DIR}/{name}"),
        line: e.line().map(|l| l as u32),
        col,
        targets: target.map(str::to_owned).into_iter().collect(),
        message,
        hint,
    }
    .into()
}

/// `{{ value | to_yaml }}`: block-style YAML, no document marker, no trailing newline.
fn to_yaml(value: &Value) -> std::result::Result<String, minijinja::Error> {
    if value.is_undefined() {
        return Err(minijinja::Error::from(minijinja::ErrorKind::UndefinedError));
    }
    let text = serde_saphyr::to_string(value).map_err(|e| {
        minijinja::Error::new(
            minijinja::ErrorKind::InvalidOperation,
            format!("to_yaml: {e}"),
        )
    })?;
    Ok(text.trim_end_matches('\n').to_owned())
}

/// `{{ value | to_json }}` (two-space indent) or `| to_json(indent=0)` for one line.
fn to_json(value: &Value, kwargs: Kwargs) -> std::result::Result<String, minijinja::Error> {
    if value.is_undefined() {
        return Err(minijinja::Error::from(minijinja::ErrorKind::UndefinedError));
    }
    let indent: Option<usize> = kwargs.get("indent")?;
    kwargs.assert_all_used()?;
    let result = match indent.unwrap_or(2) {
        0 => serde_json::to_string(value),
        n => {
            let spaces = " ".repeat(n);
            let mut out = Vec::new();
            let formatter = serde_json::ser::PrettyFormatter::with_indent(spaces.as_bytes());
            let mut ser = serde_json::Serializer::with_formatter(&mut out, formatter);
            value
                .serialize(&mut ser)
                .map(|_| String::from_utf8(out).unwrap_or_default())
        }
    };
    result.map_err(|e| {
        minijinja::Error::new(
            minijinja::ErrorKind::InvalidOperation,
            format!("to_json: {e}"),
        )
    })
}

/// `{{ text | quote }}`: a double-quoted scalar, valid in both YAML and JSON.
fn quote(value: &Value) -> std::result::Result<String, minijinja::Error> {
    if value.is_undefined() {
        return Err(minijinja::Error::from(minijinja::ErrorKind::UndefinedError));
    }
    let text = value
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| value.to_string());
    serde_json::to_string(&text)
        .map_err(|e| minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{Value as J, json};

    /// What the checks rely on when they read `Rendered::values` instead of parsing the
    /// file: the YAML [`yaml_text`] writes reads back as the same data.
    fn round_trips(value: &J) -> std::result::Result<(), String> {
        let text = yaml_text(value);
        let back: J = serde_saphyr::from_str(&text).map_err(|e| format!("{e}\n{text}"))?;
        if &back == value {
            Ok(())
        } else {
            Err(format!(
                "{value} was written as\n{text}and read back as {back}"
            ))
        }
    }

    #[test]
    fn values_that_yaml_could_misread_round_trip() {
        let tricky = json!({
            "bools": ["yes", "no", "on", "off", "true", "False", "y", "n", "~", "null", "Null"],
            "numbers": ["1", "1.0", "0x1f", "0o17", "1e3", ".5", "+1", "-0", ".inf", ".nan", "1_000", "012"],
            "real": [0, -1, 1.5, 1e300, 9007199254740993_i64, true, false, null],
            "text": ["", " ", "a: b", "- x", "# no", "{a}", "[1]", "*alias", "&anchor", "!tag",
                     "%x", "@x", "`x", "'q'", "\"q\"", "multi\nline", "trailing\n", "tab\tin",
                     "ünïcödé", "key: value # comment", "{{ .Values.x }}", "${HOME}", "|", ">"],
            "a key: with colon": {"- dash": 1, "": 2, "null": 3, "1": 4},
            "empty": {"map": {}, "list": []},
            "nested": [[1, [2, {"k": [3]}]], {"x": null}],
        });
        round_trips(&tricky).unwrap();
    }

    fn scalar() -> impl Strategy<Value = J> {
        prop_oneof![
            Just(J::Null),
            any::<bool>().prop_map(J::Bool),
            any::<i64>().prop_map(|i| json!(i)),
            (-1e6f64..1e6).prop_map(|f| json!(f)),
            "[ -~\\n\\tü]{0,12}".prop_map(J::String),
            prop::sample::select(vec![
                "yes", "No", "ON", "~", "null", "1e3", "0x10", ".5", "-", "? x", ": y", "#", "'",
                "\"", "\\", "a #b", "a: b", "[", "{", "!!str", "<<", "=", "---", "...",
            ])
            .prop_map(|s| J::String(s.to_owned())),
        ]
    }

    fn value() -> impl Strategy<Value = J> {
        scalar().prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(J::Array),
                prop::collection::vec(("[ -~]{0,8}", inner), 0..5)
                    .prop_map(|entries| J::Object(entries.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        #[test]
        fn any_values_round_trip_through_the_yaml_strata_writes(entries in prop::collection::vec(("[a-zA-Z0-9 ._:-]{1,10}", value()), 1..6)) {
            let values = J::Object(entries.into_iter().collect());
            prop_assert!(round_trips(&values).is_ok(), "{}", round_trips(&values).unwrap_err());
        }
    }
}

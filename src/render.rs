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

use minijinja::value::{Kwargs, Serde};
use minijinja::{AutoEscape, Environment, UndefinedBehavior, Value};
use serde::Serialize;

use crate::error::{Error, Result, TemplateError};
use crate::model::{AuthProvider, Cloud, Target};

const TEMPLATE_DIR: &str = "templates";
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
}

impl Renderer {
    /// Compiles every template; any syntax error is reported with its line.
    pub fn new(files: Vec<(String, Vec<u8>)>) -> Result<Renderer> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_auto_escape_callback(|_| AutoEscape::None);
        env.set_syntax(
            minijinja::syntax::SyntaxConfig::builder()
                .trim_blocks(true)
                .lstrip_blocks(true)
                .keep_trailing_newline(true)
                .build()
                .expect("default delimiters are valid"),
        );
        env.set_recursion_limit(64);
        env.add_filter("to_yaml", to_yaml);
        env.add_filter("to_json", to_json);
        env.add_filter("quote", quote);
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
                        target: None,
                        message: "the template is not valid UTF-8".into(),
                        hint: None,
                    }));
                    continue;
                }
            };
            if let Err(e) = env.add_template_owned(rel.clone(), source) {
                errors.push(template_error(&e, None));
                continue;
            }
            if !is_partial {
                outputs.push(Output::Template {
                    name: rel.clone(),
                    out: out.to_owned(),
                });
            }
        }
        Error::from_list(errors)?;
        Ok(Renderer { env, outputs })
    }

    /// Renders every output of one target.
    pub fn render(&self, target: &Target) -> Result<Vec<Artifact>> {
        let ctx = Value::from(Serde(Context::new(target)));
        let mut artifacts = Vec::new();
        for output in &self.outputs {
            let (out, bytes): (&str, Arc<[u8]>) = match output {
                Output::Verbatim { out, bytes } => (out, bytes.clone()),
                Output::Template { name, out } => {
                    let template = self
                        .env
                        .get_template(name)
                        .map_err(|e| template_error(&e, Some(&target.name)))?;
                    let mut text = template
                        .render(&ctx)
                        .map_err(|e| template_error(&e, Some(&target.name)))?;
                    if text.trim().is_empty() {
                        continue;
                    }
                    if !text.ends_with('\n') {
                        text.push('\n');
                    }
                    check_artifact(name, out, &text, &target.name)?;
                    (out, Arc::from(text.into_bytes()))
                }
            };
            artifacts.push(Artifact {
                path: format!("{}/{out}", target.name),
                bytes,
            });
        }
        Ok(artifacts)
    }
}

/// What templates see. Keys are camelCase, as in the environment files.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Context<'a> {
    target: TargetInfo<'a>,
    config: &'a crate::model::Config,
    names: &'a crate::model::Names,
    /// The IAM policy (aws) or bucket bindings (gcp), as data.
    iam: serde_json::Value,
    /// The bucket's settings as apply converges them.
    bucket: serde_json::Value,
    /// Every plain environment variable of the application: strata's own, then config's.
    app_env: BTreeMap<String, String>,
    /// Secret environment variables: name → {name, key} of the Kubernetes Secret.
    secret_env: BTreeMap<String, &'a crate::model::SecretKey>,
    auth_provider: AuthProvider,
    exceptions: &'a [crate::model::Exception],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TargetInfo<'a> {
    name: &'a str,
    env: &'a str,
    cloud: Cloud,
    is_production: bool,
}

impl<'a> Context<'a> {
    fn new(target: &'a Target) -> Self {
        let c = &target.config;
        let mut secret_env: BTreeMap<String, &crate::model::SecretKey> = c
            .app
            .secrets
            .iter()
            .map(|(k, v)| (k.clone(), &v.secret_ref))
            .collect();
        secret_env.insert(
            "AUTH_CLIENT_SECRET".into(),
            &c.auth.client_secret.secret_ref,
        );
        Context {
            target: TargetInfo {
                name: &target.name,
                env: &target.env,
                cloud: target.cloud,
                is_production: crate::validate::is_production(&target.env),
            },
            config: c,
            names: &target.names,
            iam: crate::iam::document(target),
            bucket: crate::iam::bucket_spec(target),
            app_env: app_env(target),
            secret_env,
            auth_provider: target.auth_provider(),
            exceptions: &c.exceptions,
        }
    }
}

/// Variables strata sets for the application, derived from the target.
pub const DERIVED_ENV: &[&str] = &[
    "APP_ENV",
    "AUTH_CLIENT_ID",
    "AUTH_CLIENT_SECRET",
    "AUTH_ISSUER_URL",
    "AUTH_PROVIDER",
    "BUCKET_NAME",
    "CLOUD_PROVIDER",
    "DATA_MOUNT_PATH",
    "PUBLIC_URL",
    "AWS_REGION",
    "GOOGLE_CLOUD_PROJECT",
];

fn app_env(target: &Target) -> BTreeMap<String, String> {
    let c = &target.config;
    let mut env: BTreeMap<String, String> = c
        .app
        .env
        .iter()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect();
    let provider = target.auth_provider();
    let issuer = match (provider, target.cloud) {
        (AuthProvider::Cognito, Cloud::Aws) => {
            let pool = c
                .auth
                .cognito
                .as_ref()
                .map_or("", |p| p.user_pool_id.as_str());
            format!(
                "https://cognito-idp.{}.amazonaws.com/{pool}",
                target.aws().region
            )
        }
        _ => "https://accounts.google.com".to_owned(),
    };
    let scheme = if c.ingress.tls { "https" } else { "http" };
    env.insert("APP_ENV".into(), target.env.clone());
    env.insert("AUTH_CLIENT_ID".into(), c.auth.client_id.clone());
    env.insert("AUTH_ISSUER_URL".into(), issuer);
    env.insert(
        "AUTH_PROVIDER".into(),
        serde_json::to_value(provider)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
    );
    env.insert("BUCKET_NAME".into(), target.names.bucket.clone());
    env.insert("CLOUD_PROVIDER".into(), target.cloud.as_str().into());
    env.insert("DATA_MOUNT_PATH".into(), c.app.storage.mount_path.clone());
    env.insert(
        "PUBLIC_URL".into(),
        format!("{scheme}://{}", c.ingress.host),
    );
    match target.cloud {
        Cloud::Aws => {
            env.insert("AWS_REGION".into(), target.aws().region.clone());
        }
        Cloud::Gcp => {
            env.insert(
                "GOOGLE_CLOUD_PROJECT".into(),
                target.gcp().project_id.clone(),
            );
        }
    }
    env
}

/// Parses a rendered artifact back by its kind and scans it for secrets.
fn check_artifact(template: &str, out: &str, text: &str, target: &str) -> Result<()> {
    let fail = |line: Option<u32>, message: String, hint: &str| -> Error {
        TemplateError {
            template: format!("{TEMPLATE_DIR}/{template}"),
            line,
            col: None,
            target: Some(target.to_owned()),
            message,
            hint: Some(hint.to_owned()),
        }
        .into()
    };
    if out.ends_with(".yaml") || out.ends_with(".yml") {
        if let Err((line, message)) = crate::yaml_check::check(text) {
            return Err(fail(
                None,
                format!("rendered {out} is not valid YAML (output line {line}): {message}"),
                "check indentation around the reported line; pipe structured values through `| to_yaml | indent(N)`",
            ));
        }
    } else if out.ends_with(".json") {
        if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(text) {
            return Err(fail(
                None,
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
                    None,
                    format!("rendered {out} line {} is not NAME=value", i + 1),
                    "each line must be NAME=value or a # comment",
                ));
            }
        }
    }
    if let Some((line, what)) = crate::validate::scan_artifact(text).into_iter().next() {
        return Err(fail(
            None,
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
            Some("templates see: target, config, names, iam, bucket, appEnv, secretEnv, authProvider, exceptions; check the spelling against the environment files".to_owned()),
        ),
        minijinja::ErrorKind::SyntaxError => (format!("syntax error: {}", e.detail().unwrap_or("invalid syntax")), None),
        _ => {
            let detail = e.detail().map(|d| format!(": {d}")).unwrap_or_default();
            (format!("{}{detail}", e.kind()), None)
        }
    };
    TemplateError {
        template: format!("{TEMPLATE_DIR}/{name}"),
        line: e.line().map(|l| l as u32),
        col,
        target: target.map(str::to_owned),
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

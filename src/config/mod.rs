//! Loading the layer files and merging them into one tree per target.
//!
//! A project's `environments/` folder holds `base.yaml`, `clouds/<cloud>.yaml`, one
//! `<env>.yaml` per environment (which lists its clouds under `clouds:`), and optional
//! `<env>.<cloud>.yaml` layers. Each file is parsed once and shared by every target
//! that uses it; see [`merge`] for the merge rules.

pub mod helm_words;
pub mod listing;
pub mod lock;
pub mod merge;
pub mod node;
pub mod numbers;

use std::collections::BTreeMap;
use std::sync::Arc;

pub use merge::Removal;
pub use node::{Loc, Map, Node, Value};

use crate::error::{Error, Located, Result};
use crate::project::Project;

/// The clouds strata knows how to render and apply.
pub const CLOUDS: &[&str] = &["aws", "gcp"];

/// The key of an environment file that lists its clouds; it is not merged.
const CLOUDS_KEY: &str = "clouds";

/// Largest layer file accepted; real layers are a few kilobytes. A larger file is
/// read only this far ([`Project::read_at_most`]).
pub const MAX_LAYER_BYTES: usize = 4 << 20;

/// How many values a layer's aliases may expand to, in all (the parser's replay limit,
/// against alias bombs that stay under the alias count).
const MAX_REPLAYED: usize = 100_000;

/// Parses one layer file. The root must be a mapping (an empty file is an empty one),
/// and every plain integer must fit 64 bits ([`numbers`]).
pub fn parse_layer(bytes: &[u8], file: &str) -> Result<Node> {
    let node = parse_mapping(bytes, file)?;
    let text = std::str::from_utf8(bytes).unwrap_or_default();
    let inexact: Vec<Error> = numbers::check(&node, text)
        .into_iter()
        .map(Error::from)
        .collect();
    Error::from_list(inexact)?;
    Ok(node)
}

/// Parses YAML text whose root is a mapping into located nodes, under a layer's limits:
/// a layer, or a values file a template rendered (whose integers are written as the
/// template wrote them, and read by helm as by strata).
pub fn parse_mapping(bytes: &[u8], file: &str) -> Result<Node> {
    let file: Arc<str> = Arc::from(file);
    if bytes.len() > MAX_LAYER_BYTES {
        return Err(Located::new(
            Loc::file(file),
            "",
            format!(
                "the file is larger than {MAX_LAYER_BYTES} bytes (4 MiB), the limit for a layer"
            ),
        )
        .hint("split the configuration, or remove generated content from it")
        .into());
    }
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let (line, col) = line_col(bytes, e.valid_up_to());
        Located::new(
            Loc::new(file.clone(), line, col),
            "",
            "the file is not valid UTF-8",
        )
        .hint("save the file as UTF-8")
    })?;
    let has_content = text
        .lines()
        .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#') && l.trim() != "---");
    if !has_content {
        return Ok(empty_map(file));
    }
    // YAML 1.2 scalars: `yes`, `no`, `y` and `NO` stay strings (the "Norway problem"),
    // and `012345678901` keeps its leading zero (an AWS account id).
    let options = serde_saphyr::options! {
        with_snippet: false,
        strict_booleans: true,
        leading_zero_numbers_as_strings: true,
        budget: serde_saphyr::budget! {
            max_depth: 64,
            max_nodes: 200_000,
            max_aliases: 1_000,
            max_total_scalar_bytes: 8 << 20,
            max_documents: 1,
        },
        alias_limits: serde_saphyr::alias_limits! {
            max_total_replayed_events: MAX_REPLAYED,
        },
    };
    let raw: node::RawNode = serde_saphyr::from_str_with_options(text, options).map_err(|e| {
        let mut error = yaml_error(&e, &file);
        if let Error::Input(located) = &mut error {
            name_the_first_of_two_keys(located, text);
        }
        error
    })?;
    let node = Node::from_raw(raw, &file);
    if node.map().is_none() {
        return Err(Located::new(
            node.loc.clone(),
            "",
            format!(
                "a layer must be a mapping of keys, found {}",
                node.value.kind()
            ),
        )
        .into());
    }
    Ok(node)
}

fn empty_map(file: Arc<str>) -> Node {
    let loc = Loc::file(file);
    Node {
        value: Value::Map(Default::default()),
        key_loc: loc.clone(),
        loc,
    }
}

/// The limit a budget named in Rust terms was breached at: `Nodes { nodes: 250001 }`
/// is 250000 (a layer's budget and a chart's values.yaml's differ). Only the first
/// figure: places may follow it (`(defined at line 3, column 7) (used at …)`).
fn breached_at(what: &str) -> Option<u64> {
    let digits: String = what
        .chars()
        .skip_while(|c| !c.is_ascii_digit())
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse::<u64>().ok()?.checked_sub(1)
}

/// Turns a serde-saphyr error into one of ours, keeping its line and column.
pub(crate) fn yaml_error(error: &serde_saphyr::Error, file: &Arc<str>) -> Error {
    let loc = error
        .location()
        .filter(|l| l.line() > 0)
        .map(|l| Loc::new(file.clone(), l.line() as u32, l.column().max(1) as u32))
        .unwrap_or_else(|| Loc::file(file.clone()));
    let text = error.to_string();
    // serde-saphyr appends its own " at line X column Y"; ours is in front already.
    let first = text.lines().next().unwrap_or("invalid YAML");
    // Some of serde-saphyr's errors start with the place instead (`error: line 2
    // column 1: …`); ours is in front already.
    let first = first
        .strip_prefix("error: line ")
        .and_then(|rest| rest.split_once(": "))
        .map_or(first, |(_, message)| message);
    let message = strip_location_suffix(first)
        // Advice to serde-saphyr's caller, not to the user (our hint says what to do).
        .replace(", set DuplicateKeyPolicy in Options if acceptable", "");
    // The parser names its budget in Rust terms (`Depth { depth: 65 }`); say it plainly.
    const TOO_LARGE: &str =
        "the document is too large or too deeply nested (or expands aliases too often)";
    let (message, hint) = match message.strip_prefix("budget breached: ") {
        Some(what) if what.starts_with("Depth") => (
            format!(
                "the document is nested more than {} levels deep",
                breached_at(what).unwrap_or(64)
            ),
            Some(TOO_LARGE),
        ),
        Some(what) if what.starts_with("Nodes") => (
            format!(
                "the document has more than {} nodes",
                breached_at(what).unwrap_or(200_000)
            ),
            Some(TOO_LARGE),
        ),
        Some(what) if what.starts_with("Alias") => (
            "the document uses more than 1000 aliases".to_owned(),
            Some(TOO_LARGE),
        ),
        Some(what) if what.starts_with("ScalarBytes") || what.starts_with("TotalScalar") => (
            "the document's values add up to more than 8 MiB".to_owned(),
            Some(TOO_LARGE),
        ),
        // Not a size: a `---` between two halves of a layer.
        Some(what) if what.starts_with("Documents") => {
            return Located::new(
                loc,
                "",
                "a layer is one YAML document, and this `---` starts a second one",
            )
            .hint(
                "remove the `---` line (a layer's keys all belong to one mapping), or move what follows it to a layer file of its own",
            )
            .into();
        }
        Some(what) => (
            format!("the document exceeds a size limit ({what})"),
            Some(TOO_LARGE),
        ),
        // The alias replay limit, also in Rust terms (`total_replayed_events=100001 >
        // 100000 at line 3, column 7 (defined at …) (used at …)`): the error is already
        // at the alias that crossed it. (The parser's other alias limits are not
        // reached: expansions of one anchor are unlimited in these options, and the
        // replay stack's 64 levels come after the nesting limit's.)
        None if message.starts_with("alias replay limit exceeded") => (
            format!(
                "the document's aliases expand to more than {} values",
                MAX_REPLAYED
            ),
            Some(TOO_LARGE),
        ),
        None if message.starts_with("alias references unknown anchor") => (
            "this alias names no anchor defined before it".to_owned(),
            Some(
                "an alias (`*name`) repeats the value of an anchor (`&name VALUE`) written above it in the same file; define the anchor first, or check its spelling",
            ),
        ),
        // serde's words for a key that is not a string.
        None if message.starts_with("cannot deserialize null into string") => (
            "this key is null (`null`, `~`, or nothing before the `:`)".to_owned(),
            Some("a key is a name: quote it (`\"null\"`) if the word is meant"),
        ),
        None if message == "expected string scalar" => (
            "a key must be a name, not a list or a mapping".to_owned(),
            Some("write the key as text; YAML's complex keys (`? [a, b]`) are not taken"),
        ),
        None if message.starts_with("cannot deserialize tagged scalar") => (
            "strata does not read a value with this YAML tag".to_owned(),
            Some(
                "remove the tag (`!!timestamp`, `!!set`, …) and quote the value for a string; strata's own tags are `!ref PATH` and `!sub \"…${PATH}…\"`",
            ),
        ),
        None if message.contains("multiline quoted scalar") => (
            message,
            Some(
                "a quoted value goes on over the next lines until its closing quote: is a quote (`\"` or `'`) above this line left open?",
            ),
        ),
        None if message.starts_with("mapping values are not allowed in this context")
            && error.location().is_some_and(|l| l.column() > 1024) =>
        {
            (
                message,
                Some(
                    "YAML limits a plain key to 1024 characters; a longer key must be written \
                     as `? KEY` with `: VALUE` on the next line (and is most likely a mistake)",
                ),
            )
        }
        None if message.to_lowercase().contains("duplicate") => (
            message,
            Some("remove one of the two entries; YAML keys must be unique within a mapping"),
        ),
        None => match message.strip_prefix("unexpected character: `") {
            // The scanner quotes a control character as Rust debug text (`\u{0}').
            Some(rest) if rest.starts_with("\\u{") => {
                let code = rest
                    .trim_start_matches("\\u{")
                    .split('}')
                    .next()
                    .and_then(|hex| u32::from_str_radix(hex, 16).ok())
                    .unwrap_or(0);
                let name = if code == 0 { " (a NUL byte)" } else { "" };
                (
                    format!("the control character U+{code:04X}{name} is not allowed in YAML"),
                    None,
                )
            }
            // `.inf` and `.nan`: serde-saphyr's words are about its own options.
            _ if message.starts_with("non-finite float") => {
                let value = message.split('`').nth(1).unwrap_or(".inf");
                return Located::new(
                    loc,
                    "",
                    format!("`{value}` is not a number strata takes: numbers are finite"),
                )
                .hint(format!(
                    "write the number itself, or quote it (\"{value}\") for a string"
                ))
                .into();
            }
            _ => (message, None),
        },
    };
    let mut located = Located::new(loc, "", message);
    if let Some(hint) = hint {
        located = located.hint(hint);
    }
    located.into()
}

/// For a duplicate key of a block mapping, the line of its first entry, in the hint:
/// the parser names only the second, and in a long layer the first is the one to find.
/// Looks up from the second for the same key at the same column, and stops where the
/// mapping began (a line indented less).
fn name_the_first_of_two_keys(located: &mut Located, text: &str) {
    let Some(key) = located.message.strip_prefix("duplicate mapping key: ") else {
        return;
    };
    let (line, col) = (located.loc.line as usize, located.loc.col as usize);
    if line < 2 || col == 0 {
        return;
    }
    let lines: Vec<&str> = text.lines().take(line - 1).collect();
    for (i, above) in lines.iter().enumerate().rev() {
        let above = above.strip_prefix('\u{feff}').unwrap_or(above);
        let indent = above.len() - above.trim_start_matches([' ', '-']).len();
        let content = above.trim_start();
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        if indent + 1 < col {
            return;
        }
        if indent + 1 == col
            && above.get(col - 1..).is_some_and(|rest| {
                [
                    format!("{key}:"),
                    format!("\"{key}\":"),
                    format!("'{key}':"),
                ]
                .iter()
                .any(|written| rest.starts_with(written.as_str()))
            })
        {
            located.hint = Some(format!(
                "its first entry is on line {}; remove one of the two (YAML keys must be unique within a mapping)",
                i + 1
            ));
            return;
        }
    }
}

fn strip_location_suffix(message: &str) -> String {
    let mut message = message.trim().to_owned();
    if let Some(idx) = message.rfind(" at line ") {
        // Only a real suffix (" at line 3, column 7"), not a location inside the
        // message, such as "(used at line 6, column 8)".
        let rest = &message[idx + " at line ".len()..];
        if rest.contains("column")
            && rest
                .chars()
                .all(|c| c.is_ascii_digit() || ", column".contains(c))
        {
            message.truncate(idx);
        }
    }
    message
}

/// 1-based line and column of byte `offset` in `bytes`.
fn line_col(bytes: &[u8], offset: usize) -> (u32, u32) {
    let before = &bytes[..offset.min(bytes.len())];
    let line = before.iter().filter(|b| **b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |p| p + 1);
    let col = String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count()
        + 1;
    (line as u32, col as u32)
}

/// One environment × cloud combination, before typing.
#[derive(Debug, Clone)]
pub struct TargetLayers {
    pub name: String,
    pub env: String,
    pub cloud: String,
    /// Layer files in merge order.
    pub files: Vec<String>,
    /// Where the env file listed this cloud.
    pub declared_at: Loc,
}

impl TargetLayers {
    /// The target's lock file (`environments/discovered/<target>.yaml`), when it has one:
    /// always its last layer.
    pub fn lock_file(&self) -> Option<&String> {
        self.files.last().filter(|f| lock::target_of(f).is_some())
    }
}

/// Every layer file of the project, parsed once, and the targets they define.
#[derive(Debug, Clone)]
pub struct Layers {
    pub files: BTreeMap<String, Arc<Node>>,
    pub targets: Vec<TargetLayers>,
    /// By file: the plain words under release values that Helm would read as
    /// booleans ([`helm_words`]), said for the files the selected targets read.
    pub helm_words: BTreeMap<String, Vec<Located>>,
}

/// How many leading layers of a target (base, then `clouds/<cloud>`) every target of
/// its cloud shares.
const SHARED_LAYERS: usize = 2;

/// The shared leading layers, merged once per distinct list ([`Layers::shared`]).
pub struct SharedLayers(BTreeMap<Vec<String>, merge::Partial>);

/// The merged tree of one target, with what null removed.
#[derive(Debug, Clone)]
pub struct Merged {
    pub tree: Node,
    pub removals: Vec<Removal>,
}

impl Layers {
    /// Reads and parses `environments/`, and works out the targets.
    pub fn load(project: &Project) -> Result<Layers> {
        use rayon::prelude::*;
        const BASE: &str = "environments/base.yaml";
        // Every entry of environments/ is accounted for before any file is read.
        let listed = listing::layer_files(project)?;
        let mut names = vec![BASE.to_owned()];
        names.extend(
            listed
                .iter()
                .filter(|rel| {
                    rel.starts_with("environments/clouds/") || lock::target_of(rel).is_some()
                })
                .cloned(),
        );
        let mut envs = Vec::new();
        for rel in listed {
            let Some(stem) = rel
                .strip_prefix("environments/")
                .filter(|n| !n.contains('/'))
                .and_then(|n| n.strip_suffix(".yaml"))
            else {
                continue;
            };
            if stem == "base" {
                continue;
            }
            if !stem.contains('.') {
                envs.push(stem.to_owned());
            }
            names.push(rel);
        }
        // Each file is read and parsed once, in parallel; results keep the list's order
        // so that errors come in the same order every run.
        type Parsed = std::result::Result<(Node, Vec<Located>), Error>;
        let parsed: Vec<Result<Option<Parsed>>> = names
            .par_iter()
            .map(|rel| {
                Ok(project.read_at_most(rel, MAX_LAYER_BYTES)?.map(|bytes| {
                    parse_layer(&bytes, rel).map(|node| {
                        let text = std::str::from_utf8(&bytes).unwrap_or_default();
                        let words = helm_words::check(&node, text);
                        (node, words)
                    })
                }))
            })
            .collect();
        let mut files = BTreeMap::new();
        let mut helm_words = BTreeMap::new();
        let mut errors = Vec::new();
        for (rel, result) in names.into_iter().zip(parsed) {
            match result? {
                Some(Ok((node, words))) => {
                    if !words.is_empty() {
                        helm_words.insert(rel.clone(), words);
                    }
                    files.insert(rel, Arc::new(node));
                }
                Some(Err(e)) => errors.push(e),
                None if rel == BASE => {
                    return Err(Error::Usage(format!(
                        "environments/base.yaml is missing in {}\n  hint: every project needs a base layer; \
                         `strata init DIR` writes a complete example",
                        project.describe()
                    )));
                }
                None => {}
            }
        }
        for (rel, node) in &files {
            if lock::target_of(rel).is_some() {
                errors.extend(lock::check_content(node));
            }
        }
        Error::from_list(errors)?;
        let targets = targets_of(&envs, &mut files)?;
        Ok(Layers {
            files,
            targets,
            helm_words,
        })
    }

    pub fn target(&self, name: &str) -> Option<&TargetLayers> {
        self.targets.iter().find(|t| t.name == name)
    }

    /// The target's lock file against the layers below it: errors when it was
    /// discovered for a domain or host names the layers no longer say.
    pub fn lock_conflicts(&self, target: &TargetLayers) -> Vec<Error> {
        let Some(lock) = target.lock_file() else {
            return Vec::new();
        };
        let below = &target.files[..target.files.len() - 1];
        let before = self.merge_over(merge::Partial::default(), below, target);
        lock::check_against(&self.files[lock], &before.tree, &target.name)
    }

    /// Merges the layers of one target. A top-level section named after a cloud
    /// (`aws:`, `gcp:`) applies only to that cloud's targets, so an environment file can
    /// hold the settings of all its clouds side by side.
    pub fn merge(&self, target: &TargetLayers) -> Merged {
        self.merge_over(merge::Partial::default(), &target.files, target)
    }

    /// Merges the layers every target of a cloud shares (base, `clouds/<cloud>`), once
    /// per cloud, for [`Layers::merge_shared`].
    pub fn shared(&self, targets: &[&TargetLayers]) -> SharedLayers {
        let mut merged = BTreeMap::new();
        for target in targets {
            let prefix = &target.files[..SHARED_LAYERS.min(target.files.len())];
            merged.entry(prefix.to_vec()).or_insert_with(|| {
                let mut partial = merge::Partial::default();
                partial.fold(prefix.iter().map(|f| self.files[f].as_ref()));
                partial
            });
        }
        SharedLayers(merged)
    }

    /// [`Layers::merge`], starting from the shared layers merged already: the result is
    /// the same, for a copy of the shared tree instead of a merge of it.
    pub fn merge_shared(&self, target: &TargetLayers, shared: &SharedLayers) -> Merged {
        let split = SHARED_LAYERS.min(target.files.len());
        match shared.0.get(&target.files[..split]) {
            Some(partial) => self.merge_over(partial.clone(), &target.files[split..], target),
            None => self.merge(target),
        }
    }

    fn merge_over(
        &self,
        mut partial: merge::Partial,
        files: &[String],
        target: &TargetLayers,
    ) -> Merged {
        partial.fold(files.iter().map(|f| self.files[f].as_ref()));
        let (tree, removals) = partial.finish();
        let mut tree = tree.unwrap_or_else(|| empty_map(Arc::from("environments/base.yaml")));
        if let Value::Map(sections) = &mut tree.value {
            Arc::make_mut(sections)
                .retain(|key, _| key == &target.cloud || !CLOUDS.contains(&key.as_str()));
        }
        Merged { tree, removals }
    }
}

/// Reads each environment's `clouds:` list (and removes it from the layer), checks the
/// names, and pairs every env with its clouds.
fn targets_of(
    envs: &[String],
    files: &mut BTreeMap<String, Arc<Node>>,
) -> Result<Vec<TargetLayers>> {
    let mut targets = Vec::new();
    let mut errors: Vec<Error> = Vec::new();
    for env in envs {
        let rel = format!("environments/{env}.yaml");
        let node = Arc::make_mut(files.get_mut(&rel).expect("env file was read"));
        if !valid_name(env) {
            errors.push(
                Located::new(
                    Loc::file(Arc::from(rel.as_str())),
                    "",
                    format!("`{env}` is not a valid environment name"),
                )
                .hint("environment names use lowercase letters, digits and '-', and start with a letter")
                .into(),
            );
            continue;
        }
        let Value::Map(map) = &mut node.value else {
            continue;
        };
        let Some(clouds) = Arc::make_mut(map).shift_remove(CLOUDS_KEY) else {
            errors.push(
                Located::new(
                    node.loc.clone(),
                    CLOUDS_KEY,
                    "the environment does not list its clouds",
                )
                .hint("add `clouds: [aws, gcp]` (or the clouds this environment runs on)")
                .into(),
            );
            continue;
        };
        let Value::Seq(items) = &clouds.value else {
            errors.push(
                Located::new(
                    clouds.loc.clone(),
                    CLOUDS_KEY,
                    format!("expected a list of clouds, found {}", clouds.value.kind()),
                )
                .hint("write `clouds: [aws, gcp]`")
                .into(),
            );
            continue;
        };
        for (i, item) in items.iter().enumerate() {
            let path = format!("{CLOUDS_KEY}.{i}");
            let cloud = match &item.value {
                Value::Str(s) => s.as_str(),
                other => {
                    errors.push(
                        Located::new(
                            item.loc.clone(),
                            path,
                            format!("expected a cloud name, found {}", other.kind()),
                        )
                        .into(),
                    );
                    continue;
                }
            };
            if !CLOUDS.contains(&cloud) {
                let mut e = Located::new(
                    item.loc.clone(),
                    path,
                    format!(
                        "unknown cloud `{cloud}`; strata knows {}",
                        CLOUDS.join(", ")
                    ),
                );
                if let Some(close) = crate::suggest::closest(cloud, CLOUDS.iter().copied()) {
                    e = e.hint(format!("did you mean `{close}`?"));
                }
                errors.push(e.into());
                continue;
            }
            let cloud_file = format!("environments/clouds/{cloud}.yaml");
            if !files.contains_key(&cloud_file) {
                errors.push(
                    Located::new(
                        item.loc.clone(),
                        path,
                        format!("the cloud layer {cloud_file} is missing"),
                    )
                    .hint(format!(
                        "create {cloud_file} (it may be empty), or remove `{cloud}` from the list"
                    ))
                    .into(),
                );
                continue;
            }
            let mut layer_files =
                vec!["environments/base.yaml".to_owned(), cloud_file, rel.clone()];
            let overlay = format!("environments/{env}.{cloud}.yaml");
            if files.contains_key(&overlay) {
                layer_files.push(overlay);
            }
            let lock_file = lock::path(&format!("{env}-{cloud}"));
            if files.contains_key(&lock_file) {
                layer_files.push(lock_file);
            }
            targets.push(TargetLayers {
                name: format!("{env}-{cloud}"),
                env: env.clone(),
                cloud: cloud.to_owned(),
                files: layer_files,
                declared_at: item.loc.clone(),
            });
        }
    }
    // An env×cloud layer that no target uses is almost always a typo or a stale file.
    for rel in files.keys() {
        if let Some(target) = lock::target_of(rel) {
            if !targets.iter().any(|t| t.name == target) {
                errors.push(
                    Located::new(
                        Loc::file(Arc::from(rel.as_str())),
                        "",
                        format!("this lock file is for target `{target}`, which no environment defines"),
                    )
                    .hint("environments/discovered/ holds one <target>.yaml per existing target, written by `strata preflight TARGET --write`; delete this file")
                    .into(),
                );
            }
            continue;
        }
        let Some(stem) = rel
            .strip_prefix("environments/")
            .and_then(|n| n.strip_suffix(".yaml"))
            .filter(|n| !n.contains('/'))
        else {
            continue;
        };
        let Some((env, cloud)) = stem.split_once('.') else {
            continue;
        };
        let loc = Loc::file(Arc::from(rel.as_str()));
        if !CLOUDS.contains(&cloud) {
            // `dev..yaml`, `dev.aws.extra.yaml`, `dev.azure.yaml`: not a name of a layer.
            let close = crate::suggest::closest(cloud, CLOUDS.iter().copied())
                .map(|c| format!(" (did you mean {env}.{c}.yaml?)"))
                .unwrap_or_default();
            errors.push(
                Located::new(
                    loc,
                    "",
                    format!(
                        "`{stem}.yaml` is not a layer name: an environment's layer for one cloud is <env>.<cloud>.yaml, the cloud one of {}",
                        CLOUDS.join(", ")
                    ),
                )
                .hint(format!("rename it{close}, or move it out of environments/"))
                .into(),
            );
        } else if !targets.iter().any(|t| t.env == env && t.cloud == cloud) {
            let hint = if files.contains_key(&format!("environments/{env}.yaml")) {
                format!(
                    "list `{cloud}` under `clouds:` in environments/{env}.yaml, or delete this file"
                )
            } else {
                format!(
                    "there is no environments/{env}.yaml: create it with `clouds: [{cloud}]`, or delete this file"
                )
            };
            errors.push(
                Located::new(
                    loc,
                    "",
                    format!(
                        "this layer is for target `{env}-{cloud}`, which no environment defines"
                    ),
                )
                .hint(hint)
                .into(),
            );
        }
    }
    Error::from_list(errors)?;
    targets.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(targets)
}

/// Names that become folder names and cloud resource names: `[a-z][a-z0-9-]*`.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some('a'..='z'))
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && name.len() <= 32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_text(yaml: &str) -> String {
        parse_layer(yaml.as_bytes(), "f.yaml")
            .expect_err("the layer is refused")
            .to_string()
    }

    /// Merging the shared layers once per cloud is only a speed-up: every target's
    /// tree and removals are the same as from a whole merge, nulls included.
    #[test]
    fn merging_over_the_shared_layers_gives_the_whole_merge() {
        let dir = tempfile::tempdir().unwrap();
        let env = dir.path().join("environments");
        std::fs::create_dir_all(env.join("clouds")).unwrap();
        for (file, text) in [
            (
                "base.yaml",
                "a: {b: 1, c: 2}\nlist: [1, 2]\ngone: x\naws: {r: 1}\n",
            ),
            (
                "clouds/aws.yaml",
                "a: {c: null, e: {f: null, g: 1}}\ngone: null\n",
            ),
            ("clouds/gcp.yaml", "list: [3]\ngcp: {p: 1}\n"),
            ("dev.yaml", "clouds: [aws, gcp]\na: {c: 3, d: null}\n"),
            ("dev.aws.yaml", "gone: back\n"),
            ("prod.yaml", "clouds: [aws]\na: null\n"),
        ] {
            std::fs::write(env.join(file), text).unwrap();
        }
        let project = Project::Disk(dir.path().to_path_buf());
        let layers = Layers::load(&project).unwrap();
        let targets: Vec<&TargetLayers> = layers.targets.iter().collect();
        assert_eq!(targets.len(), 3);
        let shared = layers.shared(&targets);
        for target in targets {
            let whole = layers.merge(target);
            let resumed = layers.merge_shared(target, &shared);
            assert_eq!(whole.tree, resumed.tree, "{}", target.name);
            assert_eq!(whole.removals, resumed.removals, "{}", target.name);
        }
    }

    #[test]
    fn the_parsers_other_words_are_said_plainly_with_what_to_do() {
        let cases = [
            (
                "a: *nope\n",
                "f.yaml:1:4: this alias names no anchor defined before it\n  hint: an alias (`*name`) repeats the value of an anchor (`&name VALUE`) written above it in the same file; define the anchor first, or check its spelling",
            ),
            (
                "a:\n  null: x\n",
                "f.yaml:2:3: this key is null (`null`, `~`, or nothing before the `:`)\n  hint: a key is a name: quote it (`\"null\"`) if the word is meant",
            ),
            (
                "a:\n  ? [1, 2]\n  : x\n",
                "f.yaml:2:5: a key must be a name, not a list or a mapping\n  hint: write the key as text; YAML's complex keys (`? [a, b]`) are not taken",
            ),
            (
                "a: !!timestamp 2020-01-01\n",
                "f.yaml:1:16: strata does not read a value with this YAML tag\n  hint: remove the tag (`!!timestamp`, `!!set`, …) and quote the value for a string; strata's own tags are `!ref PATH` and `!sub \"…${PATH}…\"`",
            ),
            (
                "a: 'x''\nb: 1\n",
                "f.yaml:2:1: invalid indentation in multiline quoted scalar\n  hint: a quoted value goes on over the next lines until its closing quote: is a quote (`\"` or `'`) above this line left open?",
            ),
        ];
        for (yaml, said) in cases {
            assert_eq!(error_text(yaml), said, "{yaml}");
        }
    }

    #[test]
    fn a_duplicate_key_names_the_line_of_its_first_entry() {
        let hint = |yaml: &str| {
            error_text(yaml)
                .lines()
                .nth(1)
                .unwrap_or_default()
                .to_owned()
        };
        let first_at = |n: usize| {
            format!(
                "  hint: its first entry is on line {n}; remove one of the two (YAML keys must be unique within a mapping)"
            )
        };
        // At the top, among nested keys (the same key elsewhere is not it), in a list
        // item, quoted, and after comments and blank lines.
        assert_eq!(hint("aws:\n  region: x\nb: 1\naws: {}\n"), first_at(1));
        assert_eq!(
            hint("a:\n  name: x\nb:\n  name: y\n  c: 1\n  name: z\n"),
            first_at(4)
        );
        assert_eq!(hint("l:\n  - name: x\n    name: y\n"), first_at(2));
        assert_eq!(hint("\"k\": 1\n# c\n\nk: 2\n"), first_at(1));
        // In a flow mapping the first is not looked for: the general hint.
        assert_eq!(
            hint("a: {k: 1, k: 2}\n"),
            "  hint: remove one of the two entries; YAML keys must be unique within a mapping"
        );
    }

    #[test]
    fn a_yaml_error_message_is_not_cut_short() {
        // Only the parser's own place at the end goes, not a place inside the message.
        for (message, kept) in [
            ("unexpected x at line 3, column 7", "unexpected x"),
            (
                "limit (defined at line 5, column 7) (used at line 6, column 8)",
                "limit (defined at line 5, column 7) (used at line 6, column 8)",
            ),
            ("went on at line 3 of 7", "went on at line 3 of 7"),
        ] {
            assert_eq!(strip_location_suffix(message), kept);
        }
    }

    #[test]
    fn the_parsers_own_location_suffix_is_dropped() {
        let text = error_text("a: 1\na: 2\n");
        assert!(
            text.starts_with("f.yaml:2:1: duplicate mapping key: a\n  hint: "),
            "{text}"
        );
        assert!(
            !text.contains("DuplicateKeyPolicy"),
            "advice for the parser's caller: {text}"
        );
        assert!(
            !text.contains(" at line "),
            "the location is said twice: {text}"
        );
    }

    #[test]
    fn a_layer_of_exactly_the_size_limit_is_read_and_one_byte_more_is_refused() {
        let at_limit = format!("a: 1\n#{}\n", "x".repeat(MAX_LAYER_BYTES - 7));
        assert_eq!(at_limit.len(), MAX_LAYER_BYTES);
        let node = parse_layer(at_limit.as_bytes(), "f.yaml").expect("at the limit");
        assert!(node.get("a").is_some());
        let over = format!("{at_limit}#");
        assert_eq!(
            error_text(&over),
            "f.yaml:1:1: the file is larger than 4194304 bytes (4 MiB), the limit for a layer\n  \
             hint: split the configuration, or remove generated content from it"
        );
    }

    #[test]
    fn a_layer_of_comments_blank_lines_and_markers_is_an_empty_mapping() {
        for text in [
            "",
            "\n  \n",
            "# only a comment\n",
            "---\n# c\n\n---\n",
            "  # indented\n",
        ] {
            let node = parse_layer(text.as_bytes(), "f.yaml").expect(text);
            assert_eq!(node.map().map(|m| m.len()), Some(0), "{text:?}");
        }
        // A value after them is content: a scalar root is refused, a mapping read.
        assert_eq!(
            error_text("# c\nplain\n"),
            "f.yaml:2:1: a layer must be a mapping of keys, found a string"
        );
        let node = parse_layer(b"# c\n---\na: 1\n", "f.yaml").unwrap();
        assert!(node.get("a").is_some());
    }

    /// Runs `f` on a thread with the stack strata's workers have (the parser is
    /// recursive; a test thread has 2 MiB).
    fn on_a_worker_stack(f: impl FnOnce() + Send + 'static) {
        std::thread::Builder::new()
            .stack_size(crate::WORKER_STACK)
            .spawn(f)
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn each_parser_budget_is_named_plainly() {
        on_a_worker_stack(each_parser_budget_is_named_plainly_on_a_worker);
    }

    fn each_parser_budget_is_named_plainly_on_a_worker() {
        let first = |yaml: &str| error_text(yaml).lines().next().unwrap().to_owned();
        let hint =
            "hint: the document is too large or too deeply nested (or expands aliases too often)";
        // 65 levels of nesting; 64 are read.
        let deep = |levels: usize| format!("{}1{}\n", "[".repeat(levels), "]".repeat(levels));
        let text = error_text(&format!("a: {}", deep(64)));
        assert!(
            text.starts_with("f.yaml:1:")
                && text.contains("the document is nested more than 64 levels deep"),
            "{text}"
        );
        assert!(text.contains(hint), "{text}");
        parse_layer(format!("a: {}", deep(62)).as_bytes(), "f.yaml").expect("62 levels under a");
        // Nesting made by aliases, each anchor a mapping around the one before: the
        // parser's message then names where the alias was defined and used, whose
        // figures are not the limit.
        let mut text = String::from("x0: &a0 1\n");
        for i in 1..70 {
            text.push_str(&format!("x{i}: &a{i} {{k: *a{}}}\n", i - 1));
        }
        assert_eq!(
            first(&text),
            "f.yaml:65:15: the document is nested more than 64 levels deep"
        );
        // The node budget (200 000) is pinned by the error corpus
        // (`huge_list_million_items`): parsing that many nodes takes seconds in a
        // debug build, too slow for the lib's tests.
        // 1001 aliases.
        let aliases = format!("a: &x 1\nb: [{}]\n", "*x,".repeat(1_001));
        assert!(
            first(&aliases).contains("the document uses more than 1000 aliases"),
            "{}",
            first(&aliases)
        );
    }

    #[test]
    fn aliases_that_expand_past_the_replay_limit_are_said_plainly() {
        // Five anchors, each ten copies of the one before: 50 aliases, under the alias
        // count's limit (1000); the fifth anchor's copies cross the replay limit.
        let mut text = String::from("a0: &a0 [1,1,1,1,1,1,1,1,1,1]\n");
        for i in 1..=5 {
            let copies = vec![format!("*a{}", i - 1); 10].join(",");
            text.push_str(&format!("a{i}: &a{i} [{copies}]\n"));
        }
        assert_eq!(
            error_text(&text),
            "f.yaml:5:38: the document's aliases expand to more than 100000 values\n  \
             hint: the document is too large or too deeply nested (or expands aliases too often)"
        );
    }

    #[test]
    fn values_that_add_up_to_more_than_8_mib_through_aliases_are_refused() {
        // A 3 MiB value, read four times: the file is under the size limit, what it
        // expands to is not.
        let text = format!("a: &x {}\nb: [*x, *x, *x]\n", "x".repeat(3 << 20));
        assert_eq!(
            error_text(&text),
            "f.yaml:2:9: the document's values add up to more than 8 MiB\n  \
             hint: the document is too large or too deeply nested (or expands aliases too often)"
        );
    }

    #[test]
    fn a_second_document_in_a_layer_is_named_as_that() {
        for text in ["a: 1\n---\nb: 2\n", "---\na: 1\n---\nb: 2\n---\nc: 3\n"] {
            let error = error_text(text);
            assert!(
                error.contains(": a layer is one YAML document, and this `---` starts a second one\n  hint: remove the `---` line (a layer's keys all belong to one mapping), or move what follows it to a layer file of its own"),
                "{error}"
            );
        }
    }

    #[test]
    fn a_control_character_is_named_by_its_code_point() {
        assert_eq!(
            error_text("a: 1\nb: x\u{1}y\n").lines().next().unwrap(),
            "f.yaml:2:4: the control character U+0001 is not allowed in YAML"
        );
        assert!(
            error_text("a: 1\nb: \u{0}\n")
                .contains("the control character U+0000 (a NUL byte) is not allowed in YAML"),
        );
        // Another character YAML does not take there is left as the parser says it.
        assert_eq!(
            error_text("a: @x\n"),
            "f.yaml:1:4: unexpected character: `@'"
        );
    }

    #[test]
    fn a_plain_key_over_1024_characters_gets_the_long_key_hint_and_a_short_one_does_not() {
        let long = error_text(&format!("{}: 1\n", "k".repeat(1_100)));
        assert!(
            long.contains("YAML limits a plain key to 1024 characters"),
            "{long}"
        );
        let short = error_text("a: b: c\n");
        assert!(
            short.contains("mapping values are not allowed in this context")
                && !short.contains("1024"),
            "{short}"
        );
    }

    #[test]
    fn tags_and_numbers_the_parser_reads_its_own_way() {
        // YAML's own tags are the parser's: `!!str 5` is the string "5".
        let node = parse_layer(b"a: !!str 5\nb: !!int \"7\"\n", "f.yaml").unwrap();
        assert_eq!(node.to_json(), serde_json::json!({"a": "5", "b": 7}));
        // strata's tags take a plain string, and say what they found instead.
        for (yaml, found) in [
            ("a: !ref [x]\n", "a list"),
            ("a: !sub {b: 1}\n", "a mapping"),
            ("a: !ref 5\n", "a number"),
            ("a: !ref true\n", "a boolean"),
        ] {
            let tag = &yaml[3..7];
            let text = error_text(yaml);
            assert!(text.starts_with("f.yaml:1:"), "{text}");
            assert!(
                text.ends_with(&format!(": `{tag}` takes a plain string, found {found}")),
                "{text}"
            );
        }
        // Not a number strata can hold, said in strata's words (serde-saphyr's were
        // about its own options).
        assert_eq!(
            error_text("a:\n  b: .inf\n"),
            "f.yaml:2:6: `.inf` is not a number strata takes: numbers are finite\n  hint: write the number itself, or quote it (\".inf\") for a string"
        );
    }

    #[test]
    fn bytes_that_are_not_utf8_are_placed_at_their_line_and_character() {
        for (bytes, at) in [
            (&b"a: 1\nb: \xff\n"[..], "f.yaml:2:4:"),
            (&b"\xffa: 1\n"[..], "f.yaml:1:1:"),
            // Columns count characters, not bytes: `\xc3\xa9` is one (é).
            (&b"a: 1\nc: 2\nb\xc3\xa9: \xff\n"[..], "f.yaml:3:5:"),
        ] {
            let text = parse_layer(bytes, "f.yaml").unwrap_err().to_string();
            assert_eq!(
                text,
                format!("{at} the file is not valid UTF-8\n  hint: save the file as UTF-8"),
            );
        }
    }
}

//! References: `!ref PATH` (the value at PATH) and `!sub "text ${PATH} text"` (a string).
//!
//! The scope a reference reaches is built from the typed keys and the derived names
//! ([`scope`]); it is also what templates see, so a template and a reference can never
//! disagree. Roots: `target`, `project`, `kube`, `aws`, `gcp`, `dns`, `vars`,
//! `buckets.<b>.{name,arn,url}`, `workloads.<w>.{serviceAccount,namespace,roleArn,gsaEmail}`,
//! and a workload's `env` (resolved) and `secrets` (the references, never values).
//!
//! Inside `!sub`, `${PATH}` is replaced only when PATH starts with one of those roots;
//! anything else (`${HOME}`, Helm's `{{ .Values.x }}`) is left as written, and `$${`
//! writes a literal `${`. `vars` may refer to other `vars`; a cycle is an error naming
//! the chain, and a reference to nothing is an error at its line with "did you mean".
//!
//! References are resolved in the free-form parts only: each release's `values`, each
//! workload's `env` and `statements`, and `vars`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::Serialize;
use serde_json::{Value as J, json};

use super::names::Names;
use super::{Cloud, Config};
use crate::config::{Loc, Map, Merged, Node, TargetLayers, Value};
use crate::error::Located;

/// The roots a reference may start with.
pub const ROOTS: &[&str] = &[
    "target",
    "project",
    "kube",
    "aws",
    "gcp",
    "dns",
    "vars",
    "buckets",
    "workloads",
];

/// Where references are resolved (key path patterns; `*` is one key).
pub const FREE_FORM: &[&str] = &[
    "vars",
    "releases.*.values",
    "workloads.*.env",
    "workloads.*.statements",
];

/// Resolution stops after this many references in one target.
const MAX_STEPS: usize = 100_000;

/// Resolution stops once the references of one target have delivered this many values
/// (each scalar, list and mapping one). A value reached by reference is resolved once
/// and then copied to each use, so `vars` whose every entry refers twice to the next
/// double at each step: 24 such lines would make 16 million values and exhaust the
/// memory. The YAML parser's alias budget stops the same within one file.
const MAX_VALUES: u64 = 100_000;

/// One reference as written, for `explain`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reference {
    /// `!ref buckets.data.name` or `!sub "s3://${buckets.data.name}/raw"`.
    pub written: String,
    pub loc: Loc,
    /// The paths it reads.
    pub paths: Vec<String>,
    pub value: J,
}

/// The data a reference reaches (and templates see), without `vars`.
pub fn scope(config: &Config, names: &Names, layers: &TargetLayers, cloud: Cloud) -> J {
    let buckets: serde_json::Map<String, J> = names
        .buckets
        .iter()
        .map(|(key, b)| (key.clone(), serde_json::to_value(b).unwrap_or(J::Null)))
        .collect();
    let workloads: serde_json::Map<String, J> = names
        .workloads
        .iter()
        .map(|(key, w)| {
            let mut v = json!({
                "serviceAccount": w.service_account,
                "namespace": w.namespace,
            });
            if let Some(workload) = config.workloads.get(key)
                && !workload.secrets.is_empty()
            {
                v["secrets"] = serde_json::to_value(&workload.secrets).unwrap_or(J::Null);
            }
            if let Some(arn) = &w.role_arn {
                v["roleArn"] = json!(arn);
                v["role"] = json!(w.role);
            }
            if let Some(email) = &w.gsa_email {
                v["gsaEmail"] = json!(email);
                v["gsaId"] = json!(w.gsa_id);
            }
            (key.clone(), v)
        })
        .collect();
    let mut kube = serde_json::to_value(&config.kube).unwrap_or(J::Null);
    kube["namespace"] = json!(names.namespace);
    kube["context"] = json!(names.kube_context);
    let mut scope = json!({
        "target": {"name": layers.name, "env": layers.env, "cloud": cloud},
        "project": config.project,
        "kube": kube,
        "buckets": buckets,
        "workloads": workloads,
    });
    match cloud {
        Cloud::Aws => {
            if let Some(aws) = &config.aws {
                scope["aws"] = serde_json::to_value(aws).unwrap_or(J::Null);
                scope["aws"]["partition"] = json!(super::partition(&aws.region));
            }
        }
        Cloud::Gcp => {
            if let Some(gcp) = &config.gcp {
                scope["gcp"] = serde_json::to_value(gcp).unwrap_or(J::Null);
            }
        }
    }
    if let Some(dns) = &config.dns {
        scope["dns"] = serde_json::to_value(dns).unwrap_or(J::Null);
    }
    strip_nulls(&mut scope);
    scope
}

/// Unset optional keys are absent, so that a reference to one is "points at nothing".
fn strip_nulls(value: &mut J) {
    if let J::Object(map) = value {
        map.retain(|_, v| !v.is_null());
        map.values_mut().for_each(strip_nulls);
    }
}

/// Resolves every reference of a target: the free-form subtrees that hold a reference,
/// resolved (by their key path, e.g. `releases.app.values`; the others read as they
/// were merged), and each reference as written.
pub fn resolve_target(
    config: &Config,
    names: &Names,
    layers: &TargetLayers,
    merged: &Merged,
    cloud: Cloud,
) -> (Resolved, BTreeMap<String, Reference>, Unresolved) {
    let scope = scope(config, names, layers, cloud);
    let mut resolver = Resolver {
        scope: &scope,
        tree: &merged.tree,
        memo: HashMap::new(),
        stack: Vec::new(),
        delivered: 0,
        failed: Default::default(),
        steps: 0,
        references: BTreeMap::new(),
        errors: Vec::new(),
        unresolved: Vec::new(),
    };
    // Only what holds a reference is copied; the rest is read from the merged tree.
    let mut resolved = Resolved::default();
    for pattern in FREE_FORM {
        for path in expand(&merged.tree, pattern) {
            let Some(node) = merged.tree.lookup(path.split('.')) else {
                continue;
            };
            if !has_references(node) {
                continue;
            }
            let mut copy = node.clone();
            let mut at = path.clone();
            resolver.in_place(&mut copy, &mut at);
            resolved.subtrees.insert(path, copy);
        }
    }
    let mut errors = std::mem::take(&mut resolver.errors);
    errors.sort_by_key(|e| e.to_string());
    errors.dedup_by(|a, b| a.to_string() == b.to_string());
    let mut unresolved = resolver.unresolved;
    unresolved.extend(errors.iter().map(|e| e.loc.clone()));
    (
        resolved,
        resolver.references,
        Unresolved {
            errors,
            sites: unresolved,
            exhausted: resolver.steps > MAX_STEPS || resolver.delivered > MAX_VALUES,
        },
    )
}

/// What resolving a target's references could not do.
pub struct Unresolved {
    /// The references that reached nothing or went round in a cycle, each said once.
    pub errors: Vec<Located>,
    /// Every place a failed reference left a null: the errors' own, and those of a
    /// `!ref` to a value whose resolution failed (said at that value).
    pub sites: Vec<Loc>,
    /// Whether resolution stopped at a bound ([`MAX_STEPS`], [`MAX_VALUES`]): every
    /// reference after it failed without a word, so what the target holds is partial.
    pub exhausted: bool,
}

/// The free-form subtrees of a target that held references, resolved, by key path.
#[derive(Debug, Clone, Default)]
pub struct Resolved {
    subtrees: BTreeMap<String, Node>,
}

impl Resolved {
    /// The node at `path` with references resolved: from a resolved subtree that holds
    /// `path`, else from `tree` (the merged tree, where nothing needed resolving).
    pub fn lookup<'a>(&'a self, tree: &'a Node, path: &str) -> Option<&'a Node> {
        for (prefix, node) in &self.subtrees {
            if path == prefix {
                return Some(node);
            }
            if let Some(rest) = path.strip_prefix(prefix.as_str())
                && let Some(rest) = rest.strip_prefix('.')
            {
                return node.lookup(rest.split('.').filter(|s| !s.is_empty()));
            }
        }
        tree.lookup(path.split('.').filter(|s| !s.is_empty()))
    }

    /// A copy of the node at `path` with every reference below it resolved, also when
    /// `path` holds several resolved subtrees (`releases`, or the whole tree at `""`).
    pub fn materialize(&self, tree: &Node, path: &str) -> Option<Node> {
        let mut node = self.lookup(tree, path)?.clone();
        for (prefix, resolved) in &self.subtrees {
            let rest = if path.is_empty() {
                Some(prefix.as_str())
            } else {
                prefix
                    .strip_prefix(path)
                    .and_then(|rest| rest.strip_prefix('.'))
            };
            if let Some(slot) = rest.and_then(|rest| lookup_path_mut(&mut node, rest)) {
                *slot = resolved.clone();
            }
        }
        Some(node)
    }
}

/// The node at the dotted `path` of mappings below `node`. (The resolved subtrees are
/// found by [`FREE_FORM`]'s patterns, which go through mappings only.)
fn lookup_path_mut<'a>(node: &'a mut Node, path: &str) -> Option<&'a mut Node> {
    let mut node = node;
    for segment in path.split('.') {
        let Value::Map(entries) = &mut node.value else {
            return None;
        };
        node = Arc::make_mut(entries).get_mut(segment)?;
    }
    Some(node)
}

/// Whether `node` holds a `!ref` or `!sub` anywhere.
fn has_references(node: &Node) -> bool {
    match &node.value {
        Value::Ref(_) | Value::Sub(_) => true,
        Value::Map(entries) => entries.values().any(has_references),
        Value::Seq(items) => items.iter().any(has_references),
        _ => false,
    }
}

/// The concrete key paths a pattern such as `releases.*.values` names in `tree`.
fn expand(tree: &Node, pattern: &str) -> Vec<String> {
    let mut paths = vec![(String::new(), tree)];
    for segment in pattern.split('.') {
        let mut next = Vec::new();
        for (path, node) in paths {
            let Some(map) = node.map() else { continue };
            let join = |k: &str| {
                if path.is_empty() {
                    k.to_owned()
                } else {
                    format!("{path}.{k}")
                }
            };
            if segment == "*" {
                next.extend(map.iter().map(|(k, v)| (join(k), v)));
            } else if let Some(v) = map.get(segment) {
                next.push((join(segment), v));
            }
        }
        paths = next;
    }
    paths.into_iter().map(|(p, _)| p).collect()
}

struct Resolver<'a> {
    scope: &'a J,
    /// The merged tree: `vars` and each workload's `env` are read from it (and
    /// resolved) when a reference reaches them.
    tree: &'a Node,
    /// Resolved free-form paths, so a value used many times is resolved once, with
    /// how many values each holds.
    memo: HashMap<String, (Node, u64)>,
    /// How many values the references have delivered (see [`MAX_VALUES`]).
    delivered: u64,
    /// The free-form paths being resolved, to find cycles.
    stack: Vec<String>,
    /// Free-form paths whose resolution failed (the error is reported once; what
    /// refers to them gets nothing, not a null to complain about).
    failed: std::collections::HashSet<String>,
    steps: usize,
    references: BTreeMap<String, Reference>,
    errors: Vec<Located>,
    /// Where a `!ref` gave nothing: its own error, or one of a value it reached (a
    /// cycle in `vars`), says why; the null left there is not to be judged again.
    unresolved: Vec<Loc>,
}

impl Resolver<'_> {
    /// `node` (at key path `path`) with every reference in it resolved.
    /// Replaces every reference in `node` (at key path `path`) by its value.
    fn in_place(&mut self, node: &mut Node, path: &mut String) {
        let len = path.len();
        match &mut node.value {
            Value::Ref(_) | Value::Sub(_) => *node = self.node(node, path).0,
            Value::Map(entries) => {
                // Only the mappings on the way to a reference are copied (they may be
                // shared with the merged tree and other targets).
                if !entries.values().any(has_references) {
                    return;
                }
                for (key, value) in Arc::make_mut(entries).iter_mut() {
                    if !has_references(value) {
                        continue;
                    }
                    path.push('.');
                    path.push_str(key);
                    self.in_place(value, path);
                    path.truncate(len);
                }
            }
            Value::Seq(items) => {
                for (i, value) in items.iter_mut().enumerate() {
                    use std::fmt::Write;
                    let _ = write!(path, ".{i}");
                    self.in_place(value, path);
                    path.truncate(len);
                }
            }
            _ => {}
        }
    }

    /// `node` (at key path `path`) resolved, and how many values it holds.
    fn node(&mut self, node: &Node, path: &str) -> (Node, u64) {
        match &node.value {
            Value::Ref(target) => {
                let (value, count) = match self.reference(target, node, path) {
                    Some((value, count)) => (Some(value), count),
                    None => (None, 1),
                };
                let json = value.as_ref().map_or(J::Null, Node::to_json);
                self.references.insert(
                    path.to_owned(),
                    Reference {
                        written: format!("!ref {target}"),
                        loc: node.loc.clone(),
                        paths: vec![target.clone()],
                        value: json,
                    },
                );
                if value.is_none() {
                    self.unresolved.push(node.loc.clone());
                }
                let mut out = value.unwrap_or_else(|| with_loc(Value::Null, node));
                out.key_loc = node.key_loc.clone();
                (out, count)
            }
            Value::Sub(text) => {
                let (value, paths) = self.substitute(text, node, path);
                self.references.insert(
                    path.to_owned(),
                    Reference {
                        written: format!("!sub {text:?}"),
                        loc: node.loc.clone(),
                        paths,
                        value: J::String(value.clone()),
                    },
                );
                (with_loc(Value::Str(value), node), 1)
            }
            Value::Map(entries) => {
                let mut count = 1;
                let map: Map = entries
                    .iter()
                    .map(|(k, v)| {
                        let (v, n) = self.node(v, &format!("{path}.{k}"));
                        count += n;
                        (k.clone(), v)
                    })
                    .collect();
                (with_loc(Value::Map(Arc::new(map)), node), count)
            }
            Value::Seq(items) => {
                let mut count = 1;
                let items = items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| {
                        let (v, n) = self.node(v, &format!("{path}.{i}"));
                        count += n;
                        v
                    })
                    .collect();
                (with_loc(Value::Seq(items), node), count)
            }
            _ => (node.clone(), 1),
        }
    }

    /// The value at `target`, as a node located at the reference, and how many values it
    /// holds; `None` after an error.
    fn reference(&mut self, target: &str, site: &Node, path: &str) -> Option<(Node, u64)> {
        self.steps += 1;
        if self.steps > MAX_STEPS {
            if self.steps == MAX_STEPS + 1 {
                self.fail(
                    site,
                    path,
                    format!("more than {MAX_STEPS} references to resolve"),
                    "references that refer to each other multiply; simplify vars",
                );
            }
            return None;
        }
        let root = target.split('.').next().unwrap_or_default();
        if !ROOTS.contains(&root) {
            let hint = match crate::suggest::closest(root, ROOTS.iter().copied()) {
                Some(close) => format!(
                    "did you mean `{close}`? references start with one of: {}",
                    ROOTS.join(", ")
                ),
                None => format!("references start with one of: {}", ROOTS.join(", ")),
            };
            self.fail(
                site,
                path,
                format!("`{target}` is not something a reference can reach"),
                &hint,
            );
            return None;
        }
        if is_free_form(target) {
            return self.free_form(target, site, path);
        }
        match pointer(self.scope, target).map(|v| host_name(target, v)) {
            Some(value) => {
                let count = json_count(value);
                self.deliver(count, site, path)
                    .then(|| (from_json(value, site), count))
            }
            None => {
                let hint = self.suggest(target);
                self.fail(site, path, format!("`{target}` points at nothing"), &hint);
                None
            }
        }
    }

    /// A value of `vars` or of a workload's `env`, itself resolved first.
    fn free_form(&mut self, target: &str, site: &Node, path: &str) -> Option<(Node, u64)> {
        if let Some((_, count)) = self.memo.get(target) {
            // Counted before the copy: a copy of a value too large is what must not
            // be made.
            let count = *count;
            if !self.deliver(count, site, path) {
                return None;
            }
            let mut out = self.memo[target].0.clone();
            relocate(&mut out, site);
            return Some((out, count));
        }
        if self.failed.contains(target) {
            return None;
        }
        if let Some(at) = self.stack.iter().position(|p| p == target) {
            let mut chain: Vec<String> = self.stack[at..].to_vec();
            chain.push(target.to_owned());
            self.fail(
                site,
                path,
                format!("reference cycle: {}", chain.join(" -> ")),
                "break the cycle: one of these values must be written out",
            );
            return None;
        }
        let Some(found) = self.tree.lookup(target.split('.')).cloned() else {
            let hint = self.suggest(target);
            self.fail(site, path, format!("`{target}` points at nothing"), &hint);
            return None;
        };
        self.stack.push(target.to_owned());
        let errors = self.errors.len();
        let (resolved, count) = self.node(&found, target);
        self.stack.pop();
        if self.errors.len() > errors {
            self.failed.insert(target.to_owned());
            return None;
        }
        // Made of values written in the layers and of those its own references
        // delivered (each counted there): only its copies, above, are counted.
        self.memo
            .insert(target.to_owned(), (resolved.clone(), count));
        let mut out = resolved;
        relocate(&mut out, site);
        Some((out, count))
    }

    /// Counts `count` more values delivered by references; past [`MAX_VALUES`], says so
    /// (once) and answers false: the value is not to be copied.
    fn deliver(&mut self, count: u64, site: &Node, path: &str) -> bool {
        let before = self.delivered;
        self.delivered = self.delivered.saturating_add(count);
        if self.delivered <= MAX_VALUES {
            return true;
        }
        if before <= MAX_VALUES {
            self.fail(
                site,
                path,
                format!("the references of this target make more than {MAX_VALUES} values"),
                "a value of vars that refers more than once to another, itself made the same way, doubles at each step; refer to the value it is built from instead",
            );
        }
        false
    }

    /// `!sub`: the text with each `${PATH}` of a known root replaced.
    fn substitute(&mut self, text: &str, site: &Node, path: &str) -> (String, Vec<String>) {
        let mut out = String::with_capacity(text.len());
        let mut paths = Vec::new();
        let mut rest = text;
        while let Some(at) = rest.find("${") {
            // `$${` is a literal `${`.
            if rest[..at].ends_with('$') {
                out.push_str(&rest[..at - 1]);
                out.push_str("${");
                rest = &rest[at + 2..];
                continue;
            }
            out.push_str(&rest[..at]);
            let after = &rest[at + 2..];
            let end = after
                .find('}')
                .filter(|&end| after.find("${").is_none_or(|open| open > end));
            let Some(end) = end else {
                // No `}` before the next `${` or the end: this one is text. But
                // `${vars.region` is a reference left open, not text.
                let root = after.split('.').next().unwrap_or_default();
                if ROOTS.contains(&root) && after.len() > root.len() {
                    let written = after.split("${").next().unwrap_or(after).trim_end();
                    self.fail(
                        site,
                        path,
                        format!("`${{{written}` is not closed"),
                        "end the reference with `}`, or write `$${` for a `${` meant as text",
                    );
                }
                out.push_str("${");
                rest = after;
                continue;
            };
            let inner = after[..end].trim();
            let root = inner.split('.').next().unwrap_or_default();
            if !ROOTS.contains(&root) || !inner.contains('.') {
                // Not ours (`${HOME}`, `${1}`): written as it is.
                out.push_str(&rest[at..at + 2 + end + 1]);
            } else {
                paths.push(inner.to_owned());
                if let Some((node, _)) = self.reference(inner, site, path) {
                    match scalar_text(&node) {
                        Some(text) => out.push_str(&text),
                        None => self.fail(
                            site,
                            path,
                            format!("`${{{inner}}}` is {}, and !sub puts only strings, numbers and booleans into text", node.value.kind()),
                            "use !ref for a whole value, or reach a scalar inside it",
                        ),
                    }
                }
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        (out, paths)
    }

    fn suggest(&self, target: &str) -> String {
        let mut known = Vec::new();
        leaf_paths(self.scope, "", &mut known);
        if let Some(vars) = self.tree.get("vars") {
            node_paths(vars, "vars", &mut known);
        }
        for w in self
            .tree
            .get("workloads")
            .and_then(Node::map)
            .into_iter()
            .flatten()
        {
            if let Some(env) = w.1.get("env") {
                node_paths(env, &format!("workloads.{}.env", w.0), &mut known);
            }
        }
        match crate::suggest::closest(target, known.iter().map(String::as_str)) {
            // The path is there, spelt the same, but one of its keys has a dot in it
            // (`"a.b": 1`), which a reference reads as a step down.
            Some(close) if close == target => "a key on this path has a `.` in its name, and a reference reads each `.` as a step into a mapping: rename the key (`a.b` to `a_b`) to refer to it".to_owned(),
            Some(close) => format!("did you mean `{close}`?"),
            None => {
                let root = target.split('.').next().unwrap_or_default();
                let under: Vec<&str> = known
                    .iter()
                    .map(String::as_str)
                    .filter(|p| p.starts_with(&format!("{root}.")))
                    .take(8)
                    .collect();
                if under.is_empty() {
                    format!("this target has nothing under `{root}`")
                } else {
                    format!("under `{root}` there is: {}", under.join(", "))
                }
            }
        }
    }

    fn fail(&mut self, site: &Node, path: &str, message: String, hint: &str) {
        self.errors
            .push(Located::new(site.loc.clone(), path, message).hint(hint));
    }
}

/// `vars…` and `workloads.<w>.env…`: parts of the layers that may hold references
/// themselves, read when reached.
fn is_free_form(path: &str) -> bool {
    let segments: Vec<&str> = path.split('.').collect();
    segments[0] == "vars"
        || (segments.len() >= 3 && segments[0] == "workloads" && segments[2] == "env")
}

fn with_loc(value: Value, node: &Node) -> Node {
    Node {
        value,
        loc: node.loc.clone(),
        key_loc: node.key_loc.clone(),
    }
}

/// A resolved value used at another place keeps the place of its use.
fn relocate(node: &mut Node, site: &Node) {
    node.loc = site.loc.clone();
    node.key_loc = site.key_loc.clone();
    match &mut node.value {
        Value::Map(m) => Arc::make_mut(m)
            .values_mut()
            .for_each(|v| relocate(v, site)),
        Value::Seq(items) => items.iter_mut().for_each(|v| relocate(v, site)),
        _ => {}
    }
}

/// `dns.hosts.<h>` is the host name, also once the lock file has made the host a
/// `{name, certArn}` mapping: `!ref dns.hosts.app` keeps meaning the name, and
/// `!ref dns.hosts.app.certArn` reaches the certificate.
fn host_name<'a>(path: &str, value: &'a J) -> &'a J {
    let segments: Vec<&str> = path.split('.').collect();
    match (segments.as_slice(), value.get("name")) {
        (["dns", "hosts", _], Some(name)) if value.is_object() => name,
        _ => value,
    }
}

fn pointer<'a>(scope: &'a J, path: &str) -> Option<&'a J> {
    let mut value = scope;
    for segment in path.split('.') {
        value = match value {
            J::Object(m) => m.get(segment)?,
            J::Array(items) => items.get(segment.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(value)
}

/// How many values `value` holds (itself, and each item and member, recursively).
fn json_count(value: &J) -> u64 {
    1 + match value {
        J::Array(items) => items.iter().map(json_count).sum(),
        J::Object(m) => m.values().map(json_count).sum(),
        _ => 0,
    }
}

/// A JSON value as a node, every part located at the reference that produced it.
pub fn from_json(value: &J, site: &Node) -> Node {
    let v = match value {
        J::Null => Value::Null,
        J::Bool(b) => Value::Bool(*b),
        J::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(n.as_f64().unwrap_or_default()),
        },
        J::String(s) => Value::Str(s.clone()),
        J::Array(items) => Value::Seq(items.iter().map(|i| from_json(i, site)).collect()),
        J::Object(m) => Value::Map(Arc::new(
            m.iter()
                .map(|(k, v)| (k.clone(), from_json(v, site)))
                .collect(),
        )),
    };
    with_loc(v, site)
}

fn scalar_text(node: &Node) -> Option<String> {
    match &node.value {
        Value::Str(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        Value::Float(f) => Some(f.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn leaf_paths(value: &J, path: &str, out: &mut Vec<String>) {
    match value {
        J::Object(m) => {
            for (k, v) in m {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                leaf_paths(v, &p, out);
            }
        }
        _ => out.push(path.to_owned()),
    }
}

fn node_paths(node: &Node, path: &str, out: &mut Vec<String>) {
    match &node.value {
        Value::Map(m) => {
            for (k, v) in m.iter() {
                node_paths(v, &format!("{path}.{k}"), out);
            }
        }
        _ => out.push(path.to_owned()),
    }
}

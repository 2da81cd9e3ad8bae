//! Random layer trees, rendered: every run either renders (exit 0) or fails with exit 2
//! and an untouched output folder; it never panics (exit 101) or dies of a signal, and
//! never writes outside its output folder (the whole temporary folder, holding the
//! project and a sibling folder, is compared before and after).
//!
//! Each case adds random layers to a rendered copy of the lakehouse: env × cloud
//! overlays and a new environment, holding trees drawn over the real schema (bucket,
//! workload, release and variable keys with plausible values) and outside it (unknown
//! keys, keys that differ by case, wrong types, nulls, `!ref` and `!sub` to paths that
//! exist and that do not, deep lists), and now and then a stray file. Both outcomes
//! must occur in a run: the counts are asserted, so a generator that only ever
//! produces errors (or never does) fails instead of proving nothing.
//!
//! `STRATA_PROPTEST_CASES` sets the number of cases (default 32, about 30 s on two
//! loaded cores).

use std::fmt::Write as _;
use std::time::Duration;

use proptest::prelude::*;

use super::example::{Copy, tree};
use crate::support::fs::{Snapshot, assert_same};
use crate::support::{copy_dir, run_measured, text};

/// A YAML value, printed in flow style (JSON strings are YAML strings).
#[derive(Debug, Clone)]
enum Yaml {
    Null,
    Bool(bool),
    Int(i64),
    Str(String),
    Ref(String),
    Sub(String),
    Seq(Vec<Yaml>),
    Map(Vec<(String, Yaml)>),
}

impl Yaml {
    fn write(&self, out: &mut String) {
        match self {
            Yaml::Null => out.push_str("null"),
            Yaml::Bool(b) => write!(out, "{b}").unwrap(),
            Yaml::Int(i) => write!(out, "{i}").unwrap(),
            Yaml::Str(s) => out.push_str(&serde_json::to_string(s).unwrap()),
            Yaml::Ref(p) => write!(out, "!ref {}", serde_json::to_string(p).unwrap()).unwrap(),
            Yaml::Sub(s) => write!(out, "!sub {}", serde_json::to_string(s).unwrap()).unwrap(),
            Yaml::Seq(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    item.write(out);
                }
                out.push(']');
            }
            Yaml::Map(entries) => {
                out.push('{');
                for (i, (k, v)) in entries.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    out.push_str(&serde_json::to_string(k).unwrap());
                    out.push_str(": ");
                    v.write(out);
                }
                out.push('}');
            }
        }
    }

    /// A whole layer: one top-level key per line, so that errors have distinct lines.
    fn layer(entries: &[(String, Yaml)]) -> String {
        let mut out = String::new();
        for (k, v) in entries {
            out.push_str(&serde_json::to_string(k).unwrap());
            out.push_str(": ");
            v.write(&mut out);
            out.push('\n');
        }
        out
    }
}

fn map(entries: Vec<(&str, Yaml)>) -> Yaml {
    Yaml::Map(
        entries
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
    )
}

/// Paths a reference may name: real ones and ones that do not exist.
fn ref_path() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "buckets.data.name",
        "project.name",
        "target.env",
        "kube.namespace",
        "dns.hosts.app",
        "workloads.api.serviceAccount",
        "vars.nothing",
        "buckets.nope.name",
        "",
        "buckets",
        "a..b",
    ])
    .prop_map(str::to_owned)
}

/// Leaves: mostly harmless values, some of the wrong type or shape.
fn leaf() -> impl Strategy<Value = Yaml> {
    prop_oneof![
        2 => Just(Yaml::Null),
        2 => any::<bool>().prop_map(Yaml::Bool),
        2 => (-3i64..100_000).prop_map(Yaml::Int),
        3 => "[a-z][a-z0-9-]{0,12}".prop_map(Yaml::Str),
        1 => ".{0,20}".prop_map(Yaml::Str),
        1 => ref_path().prop_map(Yaml::Ref),
        1 => ref_path().prop_map(|p| Yaml::Sub(format!("x-${{{p}}}-y"))),
    ]
}

/// Keys of the real schema and beside it.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "buckets", "data", "versioning", "encryption", "tags", "lifecycle",
            "workloads", "api", "env", "access", "releases", "app", "values", "backend",
            "replicas", "frontend", "vars", "dns", "hosts", "kube", "namespace", "project",
            "name", "owner", "requireSse", "chart", "timeout", "exceptions",
        ])
        .prop_map(str::to_owned),
        1 => prop::sample::select(vec!["Buckets", "Versioning", "aws", "gcp", "clouds", "<<"])
            .prop_map(str::to_owned),
        1 => "[a-zA-Z_][a-zA-Z0-9_.-]{0,10}",
    ]
}

/// Any tree: random keys and values, nested a few levels.
fn wild() -> impl Strategy<Value = Yaml> {
    leaf().prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Yaml::Seq),
            prop::collection::vec((key(), inner), 0..4).prop_map(Yaml::Map),
        ]
    })
}

/// Settings of the real schema that a layer may well hold (most render).
fn plausible() -> impl Strategy<Value = (String, Yaml)> {
    prop_oneof![
        ("[A-Z][A-Z0-9_]{0,10}", "[a-z0-9.-]{1,12}").prop_map(|(k, v)| (
            "workloads".to_owned(),
            map(vec![(
                "api",
                map(vec![("env", map(vec![(&k, Yaml::Str(v))]))])
            )])
        )),
        (1i64..5).prop_map(|n| (
            "releases".to_owned(),
            map(vec![(
                "app",
                map(vec![(
                    "values",
                    map(vec![("backend", map(vec![("replicas", Yaml::Int(n))]))])
                )])
            )])
        )),
        ("[a-z][a-z0-9-]{0,10}", "[a-z0-9]{1,10}").prop_map(|(k, v)| (
            "buckets".to_owned(),
            map(vec![(
                "data",
                map(vec![("tags", map(vec![(&k, Yaml::Str(v))]))])
            )])
        )),
        ("[a-z][a-zA-Z0-9]{0,10}", leaf())
            .prop_map(|(k, v)| ("vars".to_owned(), map(vec![(&k, v)]))),
        any::<bool>().prop_map(|b| (
            "buckets".to_owned(),
            map(vec![("data", map(vec![("versioning", Yaml::Bool(b))]))])
        )),
    ]
}

/// One layer: mostly plausible settings, sometimes a wild one.
fn layer() -> impl Strategy<Value = Layer> {
    prop::collection::vec(
        prop_oneof![
            6 => plausible(),
            1 => (key(), wild()),
        ],
        0..4,
    )
}

/// A layer's top-level entries.
type Layer = Vec<(String, Yaml)>;

/// Where the random layers go. A new environment lists its clouds first.
#[derive(Debug, Clone)]
struct Case {
    dev_aws: Option<Layer>,
    staging_gcp: Option<Layer>,
    new_env: Option<(Vec<&'static str>, Layer)>,
    /// Raw bytes written as a further layer (mostly not YAML at all).
    raw: Option<Vec<u8>>,
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop::option::weighted(0.7, layer()),
        prop::option::weighted(0.4, layer()),
        prop::option::weighted(
            0.3,
            (
                prop::sample::subsequence(vec!["aws", "gcp"], 1..=2),
                layer(),
            ),
        ),
        prop::option::weighted(0.05, prop::collection::vec(any::<u8>(), 0..64)),
    )
        .prop_map(|(dev_aws, staging_gcp, new_env, raw)| Case {
            dev_aws,
            staging_gcp,
            new_env,
            raw,
        })
}

/// Writes the case into the project (the new environment copies dev's cloud settings,
/// so that it can render).
fn write(copy: &Copy, case: &Case) {
    if let Some(layer) = &case.dev_aws {
        copy.append("environments/dev.aws.yaml", &Yaml::layer(layer));
    }
    if let Some(layer) = &case.staging_gcp {
        copy.append("environments/staging.gcp.yaml", &Yaml::layer(layer));
    }
    if let Some((clouds, layer)) = &case.new_env {
        let dev = std::fs::read_to_string(copy.path("environments/dev.yaml")).unwrap();
        let dev = dev.replace(
            "clouds: [aws, gcp]",
            &format!("clouds: [{}]", clouds.join(", ")),
        );
        std::fs::write(
            copy.path("environments/qa.yaml"),
            format!("{dev}\n{}", Yaml::layer(layer)),
        )
        .unwrap();
    }
    if let Some(bytes) = &case.raw {
        std::fs::write(copy.path("environments/prod.gcp.yaml"), bytes).unwrap();
    }
}

#[test]
fn random_layers_render_or_fail_cleanly() {
    let cases: u32 = std::env::var("STRATA_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(32);
    // One rendered copy, copied for each case, with a sibling folder beside the project.
    let template = Copy::new();
    template.render_ok();
    std::fs::create_dir_all(template.tmp.path().join("sibling")).unwrap();
    std::fs::write(template.tmp.path().join("sibling/keep.txt"), "mine\n").unwrap();

    let outcomes = std::sync::Mutex::new((0u32, 0u32));
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases,
        max_shrink_iters: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let result = runner.run(&case(), |case| {
        let tmp = tempfile::Builder::new()
            .prefix("strata-random-")
            .tempdir()
            .unwrap();
        copy_dir(template.tmp.path(), tmp.path());
        let copy = Copy { tmp };
        write(&copy, &case);
        let out = copy.out();
        let before_out = tree(&out);
        let before = Snapshot::of(copy.tmp.path());

        let run = run_measured(
            copy.command(&["render", "--out", out.to_str().unwrap()]),
            Duration::from_secs(120),
        );
        let stderr = copy.redact(&text(&run.output.stderr));
        let after = Snapshot::of(copy.tmp.path());
        prop_assert!(
            run.cpu < Duration::from_secs(10),
            "took {:?} of CPU",
            run.cpu
        );
        match run.output.status.code() {
            Some(0) => {
                outcomes.lock().unwrap().0 += 1;
                // Only out/ changed (and the project folder, which the swap touches).
                assert_same(
                    &before.except("project/out").forget_mtime("project"),
                    &after.except("project/out").forget_mtime("project"),
                    "outside out/",
                );
            }
            Some(2) => {
                outcomes.lock().unwrap().1 += 1;
                prop_assert!(stderr.starts_with("error: "), "{}", stderr);
                prop_assert!(!stderr.contains("panicked"), "{}", stderr);
                assert_same(&before, &after, "a failed render");
                prop_assert!(tree(&out) == before_out, "out/ changed");
            }
            other => prop_assert!(false, "exit {:?} (101 is a panic)\n{}", other, stderr),
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let (rendered, refused) = *outcomes.lock().unwrap();
    eprintln!("random layers: {rendered} rendered, {refused} refused");
    assert!(
        rendered > 0 && refused > 0,
        "both outcomes must occur: {rendered} rendered, {refused} refused"
    );
}

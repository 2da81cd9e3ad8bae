//! Made for review: explain, machine-readable output, the editor schema, CI
//! annotations, completions, man page, colour. Each through the real binary.

use std::path::Path;

use crate::support::{repo_root, run_in, text};

/// A copy of the example project in a temp dir, rendered into `snapshots/`.
fn example_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let out = run_in(dir.path(), &["init", "proj"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let proj = dir.path().join("proj");
    let out = run_in(&proj, &["render", "--out", "snapshots"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    dir
}

fn edit(path: &Path, from: &str, to: &str) {
    let body = std::fs::read_to_string(path).unwrap();
    assert!(body.contains(from), "{} lacks {from:?}", path.display());
    std::fs::write(path, body.replacen(from, to, 1)).unwrap();
}

#[test]
fn explain_shows_every_layer_with_file_and_line() {
    let out = run_in(&repo_root(), &["explain", "prod-aws", "aws.region"]);
    assert_eq!(out.status.code(), Some(0));
    insta::assert_snapshot!(text(&out.stdout), @r#"
    prod-aws aws.region = "us-east-1"
      ├─ environments/clouds/aws.yaml:5:11  "eu-west-1"
      └─ environments/prod.aws.yaml:6:11  "us-east-1"  ← final
    "#);
}

#[test]
fn explain_shows_a_null_that_unsets_and_the_layer_that_sets_again() {
    let dir = example_copy();
    let proj = dir.path().join("proj");
    edit(
        &proj.join("environments/dev.yaml"),
        "      LOG_LEVEL: debug",
        "      LOG_LEVEL: null",
    );
    std::fs::write(
        proj.join("environments/dev.aws.yaml"),
        "workloads:\n  api:\n    env:\n      LOG_LEVEL: trace\n",
    )
    .unwrap();
    let out = run_in(
        &proj,
        &[
            "explain",
            "dev-aws",
            "workloads.api.env.LOG_LEVEL",
            "--format",
            "json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    insta::assert_snapshot!(text(&out.stdout));
    // Where no later layer sets it again, the key is gone, and explain says so.
    let out = run_in(
        &proj,
        &["explain", "dev-gcp", "workloads.api.env.LOG_LEVEL"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains(
            "`workloads.api.env.LOG_LEVEL` is not set for dev-gcp (a layer removed it with null)"
        ),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn explain_derived_names_list_their_inputs() {
    let mut all = String::new();
    for (target, key) in [
        ("staging-gcp", "buckets.data.name"),
        ("prod-aws", "buckets.data.name"),
        ("prod-aws", "workloads.api.serviceAccount"),
        ("prod-aws", "kube.context"),
        ("dev-gcp", "kube.context"),
    ] {
        let out = run_in(&repo_root(), &["explain", target, key]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        all.push_str(&text(&out.stdout));
    }
    insta::assert_snapshot!(all);
}

#[test]
fn explain_derived_name_as_json() {
    let out = run_in(
        &repo_root(),
        &[
            "explain",
            "prod-gcp",
            "buckets.data.name",
            "--format",
            "json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["value"], "lakehouse-prod-4821-prod-data");
    assert_eq!(doc["derived"], true);
    assert_eq!(doc["rule"], "convention");
    let inputs: Vec<&str> = doc["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["key"].as_str().unwrap())
        .collect();
    assert_eq!(inputs, ["gcp.projectId", "target.env"], "{doc:#}");
    assert_eq!(doc["inputs"][0]["setAt"], "environments/prod.yaml:12:14");
}

#[test]
fn explain_a_reference_shows_what_was_written_and_what_it_reads() {
    let mut all = String::new();
    for (target, key) in [
        ("prod-aws", "workloads.api.env.AUTH_ISSUER_URL"),
        ("dev-gcp", "releases.app.values.serviceAccount.name"),
        ("staging-aws", "releases.app.values.storage.bucket"),
    ] {
        let out = run_in(&repo_root(), &["explain", target, key]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        all.push_str(&text(&out.stdout));
    }
    insta::assert_snapshot!(all);
}

#[test]
fn explain_unknown_key_suggests_the_close_one() {
    let out = run_in(
        &repo_root(),
        &["explain", "dev-aws", "buckets.data.versoning"],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("did you mean `buckets.data.versioning`?"),
        "{err}"
    );
    // A derived name is a key too.
    let out = run_in(&repo_root(), &["explain", "dev-aws", "kube.contxt"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("did you mean `kube.context`?"), "{err}");
}

#[test]
fn committed_schemas_are_current_and_example_files_point_at_it() {
    let out = run_in(&repo_root(), &["schema"]);
    assert_eq!(out.status.code(), Some(0));
    let printed = text(&out.stdout);
    let mut committed = vec![repo_root().join("strata.schema.json")];
    for entry in std::fs::read_dir(repo_root().join("examples")).unwrap() {
        let dir = entry.unwrap().path();
        if dir.join("environments").is_dir() {
            committed.push(dir.join("strata.schema.json"));
        }
    }
    assert_eq!(committed.len(), 3, "{committed:?}");
    for file in &committed {
        assert_eq!(
            std::fs::read_to_string(file).unwrap_or_default(),
            printed,
            "{} is stale: run `strata schema > {}`",
            file.display(),
            file.display()
        );
    }
    let schema: serde_json::Value = serde_json::from_str(&printed).unwrap();
    assert_eq!(schema["additionalProperties"], serde_json::json!(false));
    for key in [
        "project",
        "kube",
        "protected",
        "aws",
        "gcp",
        "buckets",
        "workloads",
        "releases",
        "dns",
        "vars",
        "exceptions",
        "clouds",
    ] {
        assert!(schema["properties"][key].is_object(), "schema lacks {key}");
    }
    assert!(
        schema["properties"]["bucket"].is_null(),
        "v1's bucket: is gone"
    );
    for entry in walkdir::WalkDir::new(repo_root().join("environments")) {
        let entry = entry.unwrap();
        if entry.path().extension().is_some_and(|e| e == "yaml") {
            let body = std::fs::read_to_string(entry.path()).unwrap();
            assert!(
                body.lines()
                    .next()
                    .unwrap_or_default()
                    .starts_with("# yaml-language-server: $schema="),
                "{} lacks the schema line",
                entry.path().display()
            );
        }
    }
}

/// What an editor shows: every layer file of every example is valid against the
/// schema (`!ref`/`!sub` values read as the strings they are written as), and the
/// schema refuses a misspelt key, as strata does.
#[test]
fn every_layer_of_every_example_is_valid_against_the_schema() {
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("strata.schema.json")).unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).expect("the schema compiles");
    let mut checked = 0;
    for root in ["environments", "examples"] {
        for entry in walkdir::WalkDir::new(repo_root().join(root)) {
            let path = entry.unwrap().into_path();
            let rel = path
                .strip_prefix(repo_root())
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if !rel.contains("environments/") || path.extension().is_none_or(|e| e != "yaml") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let layer: serde_json::Value =
                serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{rel}: {e}"));
            let errors: Vec<String> = validator
                .iter_errors(&layer)
                .map(|e| format!("{}: {e}", e.instance_path()))
                .collect();
            assert!(errors.is_empty(), "{rel}: {errors:#?}");
            checked += 1;
        }
    }
    // lakehouse 7 layers, storage-only 5, three-tier 5.
    assert_eq!(checked, 7 + 5 + 5);
    let typo = serde_json::json!({"buckets": {"data": {"versoning": true}}});
    assert!(
        !validator.is_valid(&typo),
        "the schema takes a misspelt key"
    );
}

#[test]
fn check_reports_drift_as_json_and_github() {
    let dir = example_copy();
    let proj = dir.path().join("proj");
    edit(
        &proj.join("environments/prod.yaml"),
        "{archiveAfterDays: 90}",
        "{archiveAfterDays: 120}",
    );

    let out = run_in(
        &proj,
        &[
            "render",
            "--check",
            "--out",
            "snapshots",
            "--format",
            "json",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["ok"], false);
    let paths: Vec<&str> = doc["drift"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        ["prod-aws/buckets/data.json", "prod-gcp/buckets/data.json"]
    );
    assert_eq!(doc["drift"][0]["status"], "changed");
    assert_eq!(doc["drift"][0]["linesAdded"], 1);
    assert_eq!(doc["drift"][0]["linesRemoved"], 1);
    assert!(
        doc["drift"][0]["diff"]
            .as_str()
            .unwrap()
            .contains("-      \"afterDays\": 90,\n+      \"afterDays\": 120,\n"),
        "{}",
        doc["drift"][0]["diff"]
    );

    let out = run_in(
        &proj,
        &[
            "render",
            "--check",
            "--out",
            "snapshots",
            "--format",
            "github",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    insta::assert_snapshot!(text(&out.stdout));
}

#[test]
fn errors_as_json_and_github_annotations() {
    let dir = example_copy();
    let proj = dir.path().join("proj");
    edit(
        &proj.join("environments/base.yaml"),
        "versioning: true",
        "versioning: maybe",
    );
    let out = run_in(&proj, &["validate", "--format", "json"]);
    assert_eq!(out.status.code(), Some(2));
    insta::assert_snapshot!(text(&out.stdout), @r#"
    {
      "ok": false,
      "errors": [
        {
          "file": "environments/base.yaml",
          "line": 20,
          "column": 17,
          "keyPath": "buckets.data.versioning",
          "message": "expected a boolean, found \"maybe\"",
          "hint": null
        }
      ]
    }
    "#);
    let out = run_in(&proj, &["validate", "--format", "github"]);
    assert_eq!(out.status.code(), Some(2));
    insta::assert_snapshot!(text(&out.stdout), @r#"::error file=environments/base.yaml,line=20,col=17,title=buckets.data.versioning::expected a boolean, found "maybe""#);
}

#[test]
fn list_as_json_names_layers_in_merge_order() {
    let out = run_in(&repo_root(), &["list", "--format", "json"]);
    assert_eq!(out.status.code(), Some(0));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let prod_aws = doc
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "prod-aws")
        .unwrap();
    assert_eq!(
        prod_aws["layers"],
        serde_json::json!([
            "environments/base.yaml",
            "environments/clouds/aws.yaml",
            "environments/prod.yaml",
            "environments/prod.aws.yaml"
        ])
    );
    assert_eq!(doc.as_array().unwrap().len(), 6);
}

#[test]
fn completions_and_man_page_come_from_the_cli_definition() {
    let out = run_in(&repo_root(), &["completions", "bash"]);
    assert_eq!(out.status.code(), Some(0));
    let bash = text(&out.stdout);
    for word in ["render", "explain", "--check", "--approve"] {
        assert!(bash.contains(word), "bash completion lacks {word}");
    }
    let out = run_in(&repo_root(), &["man"]);
    assert_eq!(out.status.code(), Some(0));
    let man = text(&out.stdout);
    assert!(
        man.starts_with(".ie") || man.contains(".TH strata"),
        "not a man page: {}",
        &man[..80.min(man.len())]
    );
    assert!(man.contains("render"));
}

#[test]
fn colour_only_when_asked_or_on_a_terminal() {
    let dir = example_copy();
    let proj = dir.path().join("proj");
    edit(
        &proj.join("environments/prod.yaml"),
        "{archiveAfterDays: 90}",
        "{archiveAfterDays: 120}",
    );
    let always = run_in(
        &proj,
        &[
            "--color",
            "always",
            "render",
            "--check",
            "--out",
            "snapshots",
        ],
    );
    assert!(
        text(&always.stdout).contains("\x1b[32m+"),
        "no colour with --color always"
    );
    // Not a terminal: auto means no colour; NO_COLOR wins over auto as well.
    let auto = run_in(&proj, &["render", "--check", "--out", "snapshots"]);
    assert!(!text(&auto.stdout).contains('\x1b'));
    let no_color = crate::support::strata()
        .current_dir(&proj)
        .env("NO_COLOR", "1")
        .args(["render", "--check", "--out", "snapshots"])
        .output()
        .unwrap();
    assert!(!text(&no_color.stdout).contains('\x1b'));
    let never = run_in(
        &proj,
        &[
            "--color",
            "never",
            "render",
            "--check",
            "--out",
            "snapshots",
        ],
    );
    assert!(!text(&never.stdout).contains('\x1b'));
}

#[test]
fn check_diffs_iam_documents_semantically() {
    let dir = example_copy();
    let proj = dir.path().join("proj");
    // Someone hand-edited the snapshot: one action as a plain string, statements in
    // another order. Same policy, so the diff says so instead of showing every line.
    let policy = proj.join("snapshots/dev-aws/iam/api.policy.json");
    let mut doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&policy).unwrap()).unwrap();
    doc["Statement"].as_array_mut().unwrap().reverse();
    let objects = doc["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .position(|s| s["Sid"] == "ObjectsData")
        .unwrap();
    let resource = doc["Statement"][objects]["Resource"][0].clone();
    doc["Statement"][objects]["Resource"] = resource;
    let listed = doc["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .position(|s| s["Sid"] == "ListData")
        .unwrap();
    doc["Statement"][listed]["Action"] = serde_json::json!([
        "s3:ListBucketMultipartUploads",
        "s3:ListBucket",
        "s3:GetBucketLocation"
    ]);
    std::fs::write(&policy, serde_json::to_string(&doc).unwrap()).unwrap();

    let out = run_in(
        &proj,
        &[
            "render",
            "--check",
            "--out",
            "snapshots",
            "--format",
            "json",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "bytes differ, so the snapshot is still stale"
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let drift = &report["drift"][0];
    assert_eq!(drift["path"], "dev-aws/iam/api.policy.json");
    assert_eq!(report["drift"].as_array().unwrap().len(), 1);
    assert_eq!(drift["semantic"], true);
    assert_eq!(drift["linesAdded"], 0);
    assert!(
        drift["diff"]
            .as_str()
            .unwrap()
            .contains("same content, formatted differently")
    );

    // A real change among the noise is shown, and only it.
    doc["Statement"][listed]["Action"] =
        serde_json::json!(["s3:ListBucketMultipartUploads", "s3:ListBucket"]);
    std::fs::write(&policy, serde_json::to_string(&doc).unwrap()).unwrap();
    let out = run_in(
        &proj,
        &[
            "render",
            "--check",
            "--out",
            "snapshots",
            "--format",
            "json",
        ],
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let drift = &report["drift"][0];
    assert_eq!(drift["semantic"], true);
    assert_eq!(
        (drift["linesAdded"].as_u64(), drift["linesRemoved"].as_u64()),
        (Some(1), Some(0)),
        "{}",
        drift["diff"]
    );
    assert!(
        drift["diff"]
            .as_str()
            .unwrap()
            .contains("+        \"s3:GetBucketLocation\","),
        "{}",
        drift["diff"]
    );
}

#[test]
fn yaml_merge_keys_work_and_explain_points_at_the_merge() {
    let dir = example_copy();
    let proj = dir.path().join("proj");
    let mut staging = std::fs::read_to_string(proj.join("environments/staging.yaml")).unwrap();
    staging.push_str(
        "\nreleases:\n  app:\n    values:\n      backend: &tuned\n        replicas: 4\n      frontend:\n        <<: *tuned\n",
    );
    std::fs::write(proj.join("environments/staging.yaml"), staging).unwrap();
    let out = run_in(
        &proj,
        &[
            "explain",
            "staging-aws",
            "releases.app.values.frontend.replicas",
            "--format",
            "json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["value"], 4, "the merge brought the anchored value in");
    let last = doc["layers"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["file"], "environments/staging.yaml");
    assert_eq!(
        (last["line"].as_u64(), last["column"].as_u64()),
        (Some(30), Some(13)),
        "the alias of the merge, `<<: *tuned`: {doc:#}"
    );
    // And the release is rendered with it.
    let out = run_in(&proj, &["render", "staging-aws", "--out", "out"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let values =
        std::fs::read_to_string(proj.join("out/staging-aws/releases/app.values.yaml")).unwrap();
    let frontend = &values[values.find("\nfrontend:").unwrap()..];
    assert!(frontend.contains("\n  replicas: 4\n"), "{values}");
}

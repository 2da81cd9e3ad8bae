//! Every rule of docs/rules.md through the binary: a project made by `strata init`, one
//! thing broken, and the run refused with exit 2, nothing on stdout, the rule (or the
//! refusal) named at the file:line:col that set the value, no secret value echoed, and
//! not one byte of the project changed. Where a rule has an exception or a scope, the
//! same change is shown passing where the rule does not hold, so that a rule that
//! refused everything would fail here too.

use std::path::Path;
use std::process::Command;

use crate::support::fixture::{Fixture, write};
use crate::support::fs::assert_same;
use crate::support::{repo_root, text, venv_bin};

/// Replaces `from` (which must be there) with `to` in a project file.
fn replace(f: &Fixture, rel: &str, from: &str, to: &str) {
    let path = f.path(rel);
    let body = std::fs::read_to_string(&path).unwrap();
    assert!(body.contains(from), "{rel} has no {from:?}");
    std::fs::write(&path, body.replacen(from, to, 1)).unwrap();
}

/// Runs `strata <args>` and checks the refusal: exit 2, no stdout, every one of
/// `needles` on stderr, none of `hidden`, and the project exactly as it was. Returns
/// stderr.
#[track_caller]
fn refused(f: &Fixture, args: &[&str], needles: &[&str], hidden: &[&str]) -> String {
    let before = f.snapshot();
    let out = f.run(".", args);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "strata {args:?}:\n{stderr}");
    assert_eq!(text(&out.stdout), "", "strata {args:?} printed on stdout");
    for needle in needles {
        assert!(
            stderr.contains(needle),
            "strata {args:?}: {needle:?} missing from:\n{stderr}"
        );
    }
    for secret in hidden {
        assert!(
            !stderr.contains(secret),
            "strata {args:?} echoed a secret value:\n{stderr}"
        );
    }
    assert_same(&before, &f.snapshot(), &format!("strata {args:?}"));
    stderr
}

#[track_caller]
fn accepted(f: &Fixture, args: &[&str]) {
    let out = f.run(".", args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "strata {args:?}:\n{}",
        text(&out.stderr)
    );
}

/// The prod rules of docs/rules.md: (rule, key, line of the key in the edited
/// environments/prod.yaml, its column).
const PROD_RULES: &[(&str, &str, u32, u32)] = &[
    ("prod.versioning", "versioning", 23, 17),
    ("prod.encryption", "encryption", 23, 17),
    ("prod.public-access-block", "publicAccessBlock", 23, 24),
    ("prod.tls-only", "tlsOnly", 23, 14),
    ("prod.require-sse", "requireSse", 22, 17),
];

/// Turns one bucket setting off for `env`'s targets: in prod.yaml (which sets
/// requireSse on; the others are added after it), elsewhere in a new `<env>.aws.yaml`.
fn turn_off(f: &Fixture, env: &str, key: &str) {
    let rel = format!("environments/{env}.yaml");
    if env == "prod" {
        let to = if key == "requireSse" {
            "    requireSse: false".to_owned()
        } else {
            format!("    requireSse: true\n    {key}: false")
        };
        replace(f, &rel, "    requireSse: true", &to);
    } else {
        write(
            &f.path(&format!("environments/{env}.aws.yaml")),
            &format!("buckets:\n  data:\n    {key}: false\n"),
        );
    }
}

#[test]
fn each_prod_rule_refuses_its_setting_off_in_prod_only_and_an_exception_relaxes_it() {
    for (rule, key, line, col) in PROD_RULES {
        let f = Fixture::init();
        turn_off(&f, "prod", key);
        for command in ["validate", "render"] {
            let stderr = refused(
                &f,
                &[command],
                &[
                    &format!(
                        "error: environments/prod.yaml:{line}:{col}: buckets.data.{key}: production policy `{rule}`"
                    ),
                    &format!("[{rule}]"),
                    &format!("exceptions: [{{rule: {rule}, path: buckets.data.{key}"),
                ],
                &[],
            );
            assert_eq!(
                stderr.matches("error: ").count(),
                1,
                "{rule}: one finding only:\n{stderr}"
            );
        }
        // The same setting outside production is no finding.
        let staging = Fixture::init();
        turn_off(&staging, "staging", key);
        accepted(&staging, &["validate"]);
        // An exception with a reason relaxes exactly this rule (base.yaml's list is
        // replaced, so its exception comes along).
        let body = std::fs::read_to_string(f.path("environments/prod.yaml")).unwrap();
        write(
            &f.path("environments/prod.yaml"),
            &format!(
                "{body}\nexceptions:\n  - rule: {rule}\n    path: buckets.data.{key}\n    reason: the archive copy is kept elsewhere, reviewed by the data team\n  - rule: secret-literal\n    path: releases.app.values.ingress.tlsSecretName\n    reason: the name of the Secret that holds the certificate, not a secret value\n"
            ),
        );
        accepted(&f, &["validate"]);
    }
}

#[test]
fn a_workload_statement_with_iam_power_or_every_resource_is_refused_at_its_line() {
    let f = Fixture::init();
    write(
        &f.path("environments/dev.aws.yaml"),
        "workloads:\n  api:\n    statements:\n      - {Effect: Allow, Action: \"iam:PassRole\", Resource: \"*\"}\n",
    );
    refused(
        &f,
        &["validate"],
        &[
            "error: environments/dev.aws.yaml:4:9: workloads.api.statements.0: iam/api.policy.json statement 3: allows `iam:PassRole`, with which a workload can give itself any permission [iam.escalation]",
            "error: environments/dev.aws.yaml:4:9: workloads.api.statements.0: iam/api.policy.json statement 3: allows its actions on every resource (`*`) [iam.wildcard-resource]",
            "2 errors in 1 file",
        ],
        &[],
    );
    // A statement naming its action and resource is fine.
    write(
        &f.path("environments/dev.aws.yaml"),
        "workloads:\n  api:\n    statements:\n      - {Effect: Allow, Action: \"kms:Decrypt\", Resource: \"arn:aws:kms:eu-west-1:111111111111:key/abc\"}\n",
    );
    accepted(&f, &["validate"]);
    write(
        &f.path("environments/dev.aws.yaml"),
        "workloads:\n  api:\n    statements:\n      - {Effect: Allow, Action: \"s3:Get*\", Resource: \"arn:aws:s3:::x/*\"}\n      - {Effect: Allow, Action: \"s3:GetObject\", Resource: \"bucket-x\"}\n",
    );
    refused(
        &f,
        &["validate"],
        &[
            "environments/dev.aws.yaml:4:9: workloads.api.statements.0: iam/api.policy.json statement 3: allows `s3:Get*`: a wildcard grants actions nobody reviewed [iam.wildcard-action]",
            "environments/dev.aws.yaml:5:9: workloads.api.statements.1: iam/api.policy.json statement 4: `bucket-x` is not an ARN",
        ],
        &[],
    );
}

#[test]
fn a_gcp_binding_of_a_basic_or_project_admin_role_or_to_a_stranger_is_refused() {
    let f = Fixture::init();
    write(
        &f.path("templates/iam/api.gcp.json.j2"),
        r#"{% if target.cloud == "gcp" %}{% set w = workloads.api %}{% set me = "serviceAccount:" ~ w.gsaEmail %}
{"serviceAccount": {"accountId": {{ w.gsaId | to_json }}, "email": {{ w.gsaEmail | to_json }}, "project": {{ gcp.projectId | to_json }}, "displayName": "lakehouse api"},
 "workloadIdentity": {"role": "roles/iam.workloadIdentityUser", "members": [{{ ("serviceAccount:" ~ gcp.projectId ~ ".svc.id.goog[" ~ w.namespace ~ "/" ~ w.serviceAccount ~ "]") | to_json }}]},
 "bucketBindings": [{"bucket": {{ buckets.data.name | to_json }}, "role": "roles/editor", "members": [{{ me | to_json }}]},
                    {"bucket": {{ buckets.data.name | to_json }}, "role": "roles/storage.objectViewer", "members": ["user:someone@example.com"]}],
 "projectBindings": [{"role": "roles/resourcemanager.projectIamAdmin", "members": [{{ me | to_json }}]}]}
{% endif %}"#,
    );
    refused(
        &f,
        &["validate", "dev-gcp"],
        // Each at the template line that wrote the role or the member.
        &[
            "error: templates/iam/api.gcp.json.j2:4: workloads.api.roles: iam/api.gcp.json: grants the basic role roles/editor [gcp.primitive-role]",
            "error: templates/iam/api.gcp.json.j2:6: workloads.api.roles: iam/api.gcp.json: grants roles/resourcemanager.projectIamAdmin on the whole project [gcp.project-admin]",
            "error: templates/iam/api.gcp.json.j2:5: workloads.api.roles: iam/api.gcp.json: grants roles/storage.objectViewer to `user:someone@example.com`; a workload's document grants to its own service account only",
        ],
        &[],
    );
}

/// A policy template that grants a wildcard in production only, and one statement
/// from a macro that allows every resource. Line 11 writes the actions, line 2 of the
/// partial the macro's resource.
const POLICY_TEMPLATE: &str = r#"{% from "iam/_statements.j2" import everything %}
{% if target.cloud == "aws" %}
{% set actions = ["s3:GetObject"] %}
{% if target.isProduction %}
{% set actions = actions + ["s3:*"] %}
{% endif %}
{
  "Version": "2012-10-17",
  "Statement": [
    {"Effect": "Allow",
     "Action": {{ actions | to_json }},
     "Resource": "arn:aws:s3:::{{ buckets.data.name }}/*"},
{{ everything() }}
  ]
}
{% endif %}
"#;

const STATEMENTS_PARTIAL: &str = r#"{% macro everything() %}
    {"Effect": "Allow", "Action": "kms:Decrypt", "Resource": "*"}
{%- endmacro %}
"#;

#[test]
fn a_finding_on_a_template_made_policy_names_the_template_line_in_text_json_and_github() {
    let f = Fixture::init();
    write(&f.path("templates/iam/api.policy.json.j2"), POLICY_TEMPLATE);
    write(&f.path("templates/iam/_statements.j2"), STATEMENTS_PARTIAL);
    let action = "iam/api.policy.json statement 1: allows `s3:*`: a wildcard grants actions nobody reviewed [iam.wildcard-action]";
    let resource = "iam/api.policy.json statement 2: allows its actions on every resource (`*`) [iam.wildcard-resource]";
    let stderr = refused(
        &f,
        &["validate", "prod-aws"],
        &[
            &format!(
                "error: templates/iam/api.policy.json.j2:11: workloads.api: {action} (in target prod-aws)"
            ),
            &format!(
                "error: templates/iam/_statements.j2:2: workloads.api: {resource} (in target prod-aws)"
            ),
            "2 errors in 2 files",
        ],
        &[],
    );
    assert_eq!(stderr.matches("error: ").count(), 2, "{stderr}");
    // Outside production only the macro's statement is found, at the same line.
    refused(
        &f,
        &["validate", "dev-aws"],
        &[&format!(
            "error: templates/iam/_statements.j2:2: workloads.api: {resource} (in target dev-aws)"
        )],
        &[],
    );

    // A template line is every target's: the finding says which one broke the rule.
    let action = format!("{action} (in target prod-aws)");
    let resource = format!("{resource} (in target prod-aws)");
    let out = f.run(".", &["validate", "prod-aws", "--format", "json"]);
    assert_eq!(out.status.code(), Some(2));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        doc["errors"],
        serde_json::json!([
            {
                "file": "templates/iam/_statements.j2",
                "line": 2,
                "column": null,
                "keyPath": "workloads.api",
                "message": resource,
                "hint": "name the resources (ARNs) the workload needs; or, if this is deliberate, add `exceptions: [{rule: iam.wildcard-resource, path: workloads.api, reason: \"…\"}]`",
            },
            {
                "file": "templates/iam/api.policy.json.j2",
                "line": 11,
                "column": null,
                "keyPath": "workloads.api",
                "message": action,
                "hint": "list the actions the workload needs; or, if this is deliberate, add `exceptions: [{rule: iam.wildcard-action, path: workloads.api, reason: \"…\"}]`",
            },
        ])
    );

    let out = f.run(".", &["validate", "prod-aws", "--format", "github"]);
    assert_eq!(out.status.code(), Some(2));
    let annotations: Vec<String> = text(&out.stdout)
        .lines()
        .map(|l| l.split("%0A").next().unwrap().to_owned())
        .collect();
    assert_eq!(
        annotations,
        [
            format!(
                "::error file=templates/iam/_statements.j2,line=2,title=workloads.api::{resource}"
            ),
            format!(
                "::error file=templates/iam/api.policy.json.j2,line=11,title=workloads.api::{action}"
            ),
        ]
    );
}

#[test]
fn a_finding_on_a_template_made_bucket_or_values_file_or_a_copied_policy_names_its_line() {
    let f = Fixture::init();
    // A production bucket document: versioning off (line 5), requireSse missing (the
    // object that lacks it opens on line 2).
    write(
        &f.path("templates/buckets/data.json.j2"),
        r#"{% set b = buckets.data %}
{
  "name": {{ b.name | to_json }},
  "region": {{ aws.region | to_json }},
  "versioning": false,
  "encryption": "aws:kms",
  "publicAccessBlock": true,
  "tlsOnly": true,
  "tags": {"managed-by": "strata", "strata-target": {{ target.name | to_json }}}
}
"#,
    );
    refused(
        &f,
        &["validate", "prod-aws"],
        &[
            "error: templates/buckets/data.json.j2:2: buckets.data.requireSse: production policy `prod.require-sse`",
            "error: templates/buckets/data.json.j2:5: buckets.data.versioning: production policy `prod.versioning`",
            "2 errors in 1 file",
        ],
        &[],
    );
    std::fs::remove_file(f.path("templates/buckets/data.json.j2")).unwrap();

    // A values file with a key the chart does not have (line 5), a value of the
    // wrong type (line 9), and an integer past 64 bits (line 10: it is the template's
    // text, which helm reads as strata does, and still has its line).
    write(
        &f.path("templates/releases/app.values.yaml.j2"),
        r#"{% set v = releases.app.values %}
global: {{ v.global | to_json }}
app:
  name: {{ v.app.name }}
  nmae: typo
serviceAccount: {{ v.serviceAccount | to_json }}
backend:
  image: {{ v.backend.image | to_json }}
  replicas: "many"
  port: 112233445566778899001
  resources: {{ v.backend.resources | to_json }}
  probes: {{ v.backend.probes | to_json }}
frontend: {{ v.frontend | to_json }}
env: {{ v.env | to_json }}
"#,
    );
    refused(
        &f,
        &["validate", "dev-aws"],
        &[
            "error: templates/releases/app.values.yaml.j2:5: releases.app.values.app.nmae: `nmae` is not a value of charts/app",
            "error: templates/releases/app.values.yaml.j2:9: releases.app.values.backend.replicas: charts/app/values.schema.json: value is not of type \"integer\" (at /backend/replicas, rule `type`)",
            "error: templates/releases/app.values.yaml.j2:10: releases.app.values.backend.port: charts/app/values.schema.json: ",
            "3 errors in 1 file",
        ],
        &[],
    );
    std::fs::remove_file(f.path("templates/releases/app.values.yaml.j2")).unwrap();

    // A policy copied as it is (no `.j2`): the very line and column of the value.
    write(
        &f.path("templates/iam/api.policy.json"),
        "{\"Version\": \"2012-10-17\",\n \"Statement\": [{\"Effect\": \"Allow\",\n   \"Action\": [\"s3:GetObject\", \"sts:AssumeRole\"], \"Resource\": \"arn:aws:s3:::x/*\"}]}\n",
    );
    refused(
        &f,
        &["validate", "dev-aws"],
        &[
            "error: templates/iam/api.policy.json:3:31: workloads.api: iam/api.policy.json statement 1: allows `sts:AssumeRole`, with which a workload can give itself any permission [iam.escalation]",
        ],
        &[],
    );
}

#[test]
fn account_project_and_service_account_ids_are_checked_at_the_key_that_sets_them() {
    let f = Fixture::init();
    replace(
        &f,
        "environments/dev.yaml",
        "accountId: \"111111111111\"",
        "accountId: \"11111\"",
    );
    replace(
        &f,
        "environments/dev.yaml",
        "projectId: lakehouse-dev-4821",
        "projectId: lakehouse_dev",
    );
    refused(
        &f,
        &["validate"],
        &[
            "error: environments/dev.yaml:5:14: aws.accountId: an AWS account id is 12 digits",
            "error: environments/dev.yaml:10:14: gcp.projectId: `lakehouse_dev` is not a valid GCP project id",
        ],
        &[],
    );

    let f = Fixture::init();
    write(
        &f.path("environments/dev.gcp.yaml"),
        "workloads:\n  api:\n    gcpServiceAccount: Bad_SA\n",
    );
    refused(
        &f,
        &["validate"],
        &["Google service account id `Bad_SA` is invalid: must start with a lowercase letter"],
        &[],
    );
    write(
        &f.path("environments/dev.gcp.yaml"),
        "workloads:\n  api:\n    gcpServiceAccount: lakehouse-api-sa\n",
    );
    accepted(&f, &["validate"]);
}

/// A made-up credential of each kind docs/rules.md lists, and how strata names it.
fn credentials() -> Vec<(String, &'static str)> {
    let run = "a1".repeat(20);
    vec![
        ("AKIAABCDEFGHIJKLMNOP".to_owned(), "an AWS access key id"),
        (
            "ASIAABCDEFGHIJKLMNOP".to_owned(),
            "an AWS temporary access key id",
        ),
        (format!("ghp_{run}"), "a GitHub token"),
        (format!("gho_{run}"), "a GitHub token"),
        (format!("ghs_{run}"), "a GitHub token"),
        (format!("github_pat_{run}"), "a GitHub token"),
        (format!("glpat-{run}"), "a GitLab token"),
        (format!("xoxb-{run}"), "a Slack token"),
        (format!("xoxp-{run}"), "a Slack token"),
        (format!("AIza{run}"), "a Google API key"),
        (format!("ya29.{run}"), "a Google OAuth access token"),
        (format!("sk_live_{run}"), "a Stripe secret key"),
    ]
}

#[test]
fn each_credential_pattern_in_a_layer_is_refused_under_any_key_without_the_value() {
    for (value, what) in credentials() {
        let f = Fixture::init();
        write(
            &f.path("environments/dev.aws.yaml"),
            &format!("workloads:\n  api:\n    env:\n      NOTE: {value}\n"),
        );
        refused(
            &f,
            &["render"],
            &[&format!(
                "error: environments/dev.aws.yaml:4:13: workloads.api.env.NOTE: this value looks like {what} (value not shown)"
            )],
            &[&value],
        );
        assert!(!f.path("out").exists(), "{what}: nothing rendered");
    }
}

#[test]
fn each_credential_pattern_in_a_rendered_artifact_is_refused_by_file_and_line() {
    let mut cases = credentials();
    cases.push((
        "-----BEGIN RSA PRIVATE KEY-----".to_owned(),
        "a private key",
    ));
    for (value, what) in cases {
        let f = Fixture::init();
        write(
            &f.path("templates/notes.txt.j2"),
            &format!("harmless\nnote = {value}\n"),
        );
        refused(
            &f,
            &["render"],
            &[&format!(
                "error: templates/notes.txt.j2:2: rendered notes.txt line 2 contains what looks like {what} (value not shown)"
            )],
            &[&value],
        );
    }
    // A long random value under a secret-like key, from a template.
    let f = Fixture::init();
    let value = "Xq9vLm2Rt8Kp4Wz7Ns3Bd6";
    write(
        &f.path("templates/notes.yaml.j2"),
        &format!("clientSecret: {value}\n"),
    );
    refused(
        &f,
        &["render"],
        &[
            "error: templates/notes.yaml.j2:1: rendered notes.yaml line 1 contains what looks like a high-entropy value under a secret-like key (value not shown)",
        ],
        &[value],
    );
    // A short, plain value under the same key is no finding.
    write(&f.path("templates/notes.yaml.j2"), "clientSecret: none\n");
    accepted(&f, &["validate"]);
}

#[test]
fn a_layer_over_the_size_limit_is_refused() {
    let f = Fixture::init();
    let mut body = String::from("vars:\n");
    let mut i = 0;
    while body.len() <= 4 << 20 {
        body.push_str(&format!("  k{i}: {}\n", "x".repeat(100)));
        i += 1;
    }
    write(&f.path("environments/dev.aws.yaml"), &body);
    refused(
        &f,
        &["validate"],
        // Read only up to the limit (a 50 MB layer is not read whole): the message says
        // "larger than", not the size.
        &[
            "error: environments/dev.aws.yaml:1:1: the file is larger than 4194304 bytes (4 MiB), the limit for a layer",
        ],
        &[],
    );
    // Just under the limit is read.
    body.truncate(body[..4 << 20].rfind("\n  k").unwrap() + 1);
    write(&f.path("environments/dev.aws.yaml"), &body);
    accepted(&f, &["validate"]);
}

#[test]
fn a_template_that_renders_invalid_json_is_refused_with_its_output_line() {
    let f = Fixture::init();
    write(
        &f.path("templates/iam/api.policy.json.j2"),
        "{\"Version\": \"2012-10-17\", \"Statement\": [\n",
    );
    refused(
        &f,
        &["render"],
        &[
            "error: templates/iam/api.policy.json.j2: rendered iam/api.policy.json is not valid JSON (output line 2)",
            "hint: build JSON with `| to_json`",
        ],
        &[],
    );
}

#[test]
fn an_env_cloud_layer_no_target_uses_is_refused() {
    let f = Fixture::init();
    replace(
        &f,
        "environments/staging.yaml",
        "clouds: [aws, gcp]",
        "clouds: [aws]",
    );
    write(
        &f.path("environments/staging.gcp.yaml"),
        "buckets:\n  data:\n    versioning: true\n",
    );
    refused(
        &f,
        &["validate"],
        &[
            "error: environments/staging.gcp.yaml:1:1: this layer is for target `staging-gcp`, which no environment defines",
            "hint: list `gcp` under `clouds:` in environments/staging.yaml, or delete this file",
        ],
        &[],
    );
    std::fs::remove_file(f.path("environments/staging.gcp.yaml")).unwrap();
    accepted(&f, &["validate"]);
}

/// The image-tag rule lives in the example chart (docs/migrating-from-v1.md): strata
/// renders the values, and Helm's own engine refuses an empty tag or `latest`.
#[test]
fn the_chart_refuses_a_latest_or_empty_image_tag_when_helm_renders_it() {
    for tag in ["latest", ""] {
        let f = Fixture::init();
        replace(
            &f,
            "environments/base.yaml",
            "repository: ghcr.io/example/lakehouse-api\n          tag: \"2.4.1\"",
            &format!("repository: ghcr.io/example/lakehouse-api\n          tag: \"{tag}\""),
        );
        f.render_ok();
        let dest = f.tmp.path().join("rendered.yaml");
        let out = helm_render(&f, &dest);
        assert_eq!(
            out.status.code(),
            Some(1),
            "helm rendered tag {tag:?}:\n{}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stderr).contains(&format!(
                "backend.image.tag must be a pinned version, found \"{tag}\""
            )),
            "{}",
            text(&out.stderr)
        );
        assert!(!dest.exists());
    }
    // The pinned tag renders.
    let f = Fixture::init();
    f.render_ok();
    let dest = f.tmp.path().join("rendered.yaml");
    let out = helm_render(&f, &dest);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(std::fs::read_to_string(&dest).unwrap().contains("2.4.1"));
}

/// tests/py/helm_render.py (Helm's engine, lint then render) on the project's chart
/// with dev-aws's rendered values.
fn helm_render(f: &Fixture, dest: &Path) -> std::process::Output {
    Command::new(venv_bin().join("python"))
        .arg(repo_root().join("tests/py/helm_render.py"))
        .arg(f.path("charts/app"))
        .arg(f.path("out/dev-aws/releases/app.values.yaml"))
        .arg("lakehouse")
        .arg(dest)
        .args(["--release", "app"])
        .output()
        .unwrap()
}

/// The exceptions of dev-aws in a new environments/dev.aws.yaml: base.yaml's (lists
/// replace, so it comes along) and `extra`.
fn dev_aws_exceptions(f: &Fixture, extra: &str) {
    write(
        &f.path("environments/dev.aws.yaml"),
        &format!(
            "exceptions:\n  - rule: secret-literal\n    path: releases.app.values.ingress.tlsSecretName\n    reason: the name of the Secret that holds the certificate, not a secret value\n{extra}"
        ),
    );
}

#[test]
fn an_exception_names_a_known_rule_and_gives_a_reason_of_ten_characters_or_more() {
    let f = Fixture::init();
    // Nine characters once trimmed: refused at the reason.
    dev_aws_exceptions(
        &f,
        "  - rule: iam.wildcard-action\n    reason: \"  123456789  \"\n",
    );
    refused(
        &f,
        &["validate"],
        &[
            "error: environments/dev.aws.yaml:6:13: exceptions.1.reason: an exception needs a reason a reviewer can judge\n  hint: explain why the rule does not apply, in a sentence\n",
        ],
        &[],
    );
    // Ten are enough.
    dev_aws_exceptions(
        &f,
        "  - rule: iam.wildcard-action\n    reason: \"1234567890\"\n",
    );
    accepted(&f, &["validate"]);
    // A misspelt rule is refused with the rule it probably means; an unknown one with
    // the list of rules.
    dev_aws_exceptions(
        &f,
        "  - rule: prod.versoning\n    reason: versions are kept by the replication\n  - rule: prod.no-delete\n    reason: a v1 rule that v2 does not have\n",
    );
    let stderr = refused(
        &f,
        &["validate"],
        &[
            "error: environments/dev.aws.yaml:5:11: exceptions.1.rule: unknown rule `prod.versoning`\n  hint: did you mean `prod.versioning`?\n",
            "error: environments/dev.aws.yaml:7:11: exceptions.2.rule: unknown rule `prod.no-delete`\n",
        ],
        &[],
    );
    assert_eq!(stderr.matches("error: ").count(), 2, "{stderr}");
}

#[test]
fn a_lifecycle_rule_needs_an_action_and_expires_after_it_archives() {
    let f = Fixture::init();
    let lifecycle = |rules: &str| {
        write(
            &f.path("environments/dev.aws.yaml"),
            &format!("buckets:\n  data:\n    lifecycle:\n{rules}"),
        );
    };
    lifecycle("      - {prefix: tmp/}\n");
    refused(
        &f,
        &["validate"],
        &[
            "error: environments/dev.aws.yaml:4:9: buckets.data.lifecycle.0: a lifecycle rule needs an action\n  hint: set archiveAfterDays, expireAfterDays or noncurrentExpireAfterDays\n",
        ],
        &[],
    );
    // Expiring on the day of archiving (or before) is refused at expireAfterDays.
    for expire in [30, 10] {
        lifecycle(&format!(
            "      - {{archiveAfterDays: 30, expireAfterDays: {expire}}}\n"
        ));
        refused(
            &f,
            &["validate"],
            &[&format!(
                "error: environments/dev.aws.yaml:4:49: buckets.data.lifecycle.0.expireAfterDays: objects expire after {expire} days, before they would be archived after 30\n"
            )],
            &[],
        );
    }
    // A day later is fine, and so is each action alone.
    lifecycle(
        "      - {archiveAfterDays: 30, expireAfterDays: 31}\n      - {expireAfterDays: 7, prefix: tmp/}\n      - {archiveAfterDays: 7}\n      - {noncurrentExpireAfterDays: 7}\n",
    );
    accepted(&f, &["validate"]);
}

/// The rule across targets (`check::across`, which runs beside the render) through the
/// binary: one bucket name set in `base.yaml` is claimed by every environment of a
/// cloud. Each later target is named with the first, at the line that set the name;
/// the folder a render wrote before is left as it was (`refused` compares it).
#[test]
fn two_targets_that_claim_one_bucket_name_are_refused_naming_both() {
    let f = Fixture::init();
    accepted(&f, &["render"]);
    replace(
        &f,
        "environments/base.yaml",
        "buckets:\n  data:\n",
        "buckets:\n  data:\n    name: lakehouse-shared-data\n",
    );
    for command in ["validate", "render"] {
        let stderr = refused(
            &f,
            &[command],
            &[
                "error: environments/base.yaml:20:11: buckets.data: aws bucket `lakehouse-shared-data` of target prod-aws is also the one of target dev-aws (environments/base.yaml:20:11)",
                "gcp bucket `lakehouse-shared-data` of target staging-gcp is also the one of target dev-gcp",
                "give one of them another name",
                "4 errors in 1 file",
            ],
            &[],
        );
        assert!(!stderr.contains("of target dev-aws is also"), "{stderr}");
    }
    // Without the shared name each target derives its own again.
    replace(
        &f,
        "environments/base.yaml",
        "    name: lakehouse-shared-data\n",
        "",
    );
    accepted(&f, &["validate"]);
}

//! `strata preflight` through the binary against moto (STS, IAM, S3, EKS DescribeCluster,
//! Route53, ACM), the EKS stand-in in front of it for the add-ons moto lacks, and the
//! GKE / Cloud DNS stand-in (`tests/standins/gcp_preflight.py`) next to the GCS emulator.
//! Every request strata sends goes through a recording proxy or a stand-in's own log, so
//! "preflight writes nothing to the cloud" is read from what the servers saw.
//!
//! moto is shared by the whole test process: each test uses its own project name,
//! cluster, domain and region-free names, so no test sees another's zones or buckets.
//! Certificates are per region; each test's domain is its own.

use std::path::Path;
use std::process::Output;

use serde_json::{Value, json};

use crate::identity::{block_on, create_cluster, project};
use crate::support::standins::Standin;
use crate::support::{self, FaultyProxy, RecordingProxy, assert_loopback, moto, text, venv_bin};

const REGION: &str = "eu-west-1";

/// strata against the recording proxy (everything but EKS) and the EKS stand-in.
fn command(dir: &Path, proxy: &RecordingProxy, eks: &Standin) -> std::process::Command {
    command_at(dir, &proxy.url, eks)
}

/// strata against `url` (a proxy in front of moto) for everything but EKS.
fn command_at(dir: &Path, url: &str, eks: &Standin) -> std::process::Command {
    let mut cmd = moto::command(dir);
    assert_loopback(url);
    assert_loopback(&eks.url);
    cmd.arg("-C")
        .arg(dir.join("p"))
        .env("AWS_ENDPOINT_URL", url)
        .env("AWS_ENDPOINT_URL_EKS", &eks.url);
    cmd
}

fn run(cmd: &mut std::process::Command, args: &[&str]) -> Output {
    cmd.args(args).output().expect("strata runs")
}

fn exit(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// The JSON report of one target, after checking the exit code.
fn report(out: &Output, code: i32) -> Value {
    exit(out, code);
    let all: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", text(&out.stdout)));
    all[0].clone()
}

/// `(check, status)` of every check, in order.
fn statuses(report: &Value) -> Vec<(String, String)> {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["check"].as_str().unwrap().to_owned(),
                c["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == name)
        .unwrap_or_else(|| panic!("no check {name}: {report:#}"))
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

fn field<'a>(report: &'a Value, name: &str, key: &str) -> &'a str {
    check(report, name)[key]
        .as_str()
        .unwrap_or_else(|| panic!("check {name} has no {key}: {report:#}"))
}

/// Replaces the test's own layer, `environments/dev.aws.yaml` (or `dev.gcp.yaml`).
fn set_layer(dir: &Path, file: &str, text: &str) {
    std::fs::write(dir.join("p/environments").join(file), text).unwrap();
}

/// A self-signed certificate for `names`, imported into ACM (imported ones are ISSUED).
fn import_certificate(names: &[&str]) -> String {
    let script = r#"
import datetime, json, sys
import boto3
from cryptography import x509
from cryptography.x509.oid import NameOID
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
url, region, names = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
now = datetime.datetime.now(datetime.timezone.utc)
cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=90))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
        .sign(key, hashes.SHA256()))
acm = boto3.client("acm", region_name=region, endpoint_url=url, aws_access_key_id="test", aws_secret_access_key="test")
arn = acm.import_certificate(
    Certificate=cert.public_bytes(serialization.Encoding.PEM),
    PrivateKey=key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()),
)["CertificateArn"]
print(arn)
"#;
    let url = moto::url();
    assert_loopback(url);
    let out = std::process::Command::new(venv_bin().join("python"))
        .args(["-c", script, url, REGION, &json!(names).to_string()])
        .output()
        .expect("python runs");
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout).trim().to_owned()
}

async fn acm() -> aws_sdk_acm::Client {
    aws_sdk_acm::Client::new(&moto::sdk_config(REGION).await)
}

/// A requested certificate: PENDING_VALIDATION until its DNS record is there.
async fn request_certificate(name: &str) -> String {
    acm()
        .await
        .request_certificate()
        .domain_name(name)
        .send()
        .await
        .expect("moto requests the certificate")
        .certificate_arn()
        .unwrap()
        .to_owned()
}

async fn create_zone(name: &str) -> String {
    let r53 = aws_sdk_route53::Client::new(&moto::sdk_config("us-east-1").await);
    let out = r53
        .create_hosted_zone()
        .name(name)
        .caller_reference(format!("strata-test-{name}"))
        .send()
        .await
        .expect("moto creates the zone");
    out.hosted_zone()
        .unwrap()
        .id()
        .trim_start_matches("/hostedzone/")
        .to_owned()
}

/// The lakehouse example with dev-aws moved to its own names: project `name`, cluster
/// `name-dev`, domain `name.test` with hosts app, docs and shop.
fn aws_project(name: &str, aws: &str) -> tempfile::TempDir {
    let layer = format!(
        "project: {{name: {name}}}\n\
         aws: {{accountId: \"{account}\", cluster: {name}-dev, {aws}}}\n\
         dns:\n  domain: {name}.test\n  hosts:\n    app: app.{name}.test\n    docs: docs.{name}.test\n    shop: shop.store.{name}.test\n\
         workloads:\n  api:\n    env:\n      CERT_ARN: !ref dns.hosts.app.certArn\n      ZONE: !ref dns.zoneId\n",
        account = moto::ACCOUNT
    );
    project(&[("dev.aws.yaml", layer)])
}

fn lock_path(dir: &Path, target: &str) -> std::path::PathBuf {
    dir.join(format!("p/environments/discovered/{target}.yaml"))
}

#[test]
fn aws_every_check_found_then_the_lock_file_feeds_render() {
    let issuer = block_on(create_cluster(REGION, "pfa-dev"));
    let zone = block_on(create_zone("pfa.test"));
    block_on(create_zone("deep.pfa.test"));
    let wildcard = import_certificate(&["*.pfa.test"]);
    let exact = import_certificate(&["pfa.test", "app.pfa.test"]);
    let pending = block_on(request_certificate("shop.store.pfa.test"));
    block_on(request_certificate("app.pfa.test"));
    let dir = aws_project(
        "pfa",
        &format!("oidcIssuer: \"{issuer}\", createOidcProvider: true"),
    );
    let proxy = RecordingProxy::start(moto::url());
    let eks = Standin::eks_with_addons(
        moto::url(),
        &[("pfa-dev", "aws-mountpoint-s3-csi-driver", "ACTIVE")],
    );

    let first = report(
        &run(
            &mut command(dir.path(), &proxy, &eks),
            &["--format", "json", "preflight", "dev-aws"],
        ),
        0,
    );
    assert_eq!(
        statuses(&first),
        [
            ("credentials", "found"),
            ("cluster", "found"),
            ("oidc-issuer", "found"),
            ("oidc-provider", "found"),
            ("addon aws-mountpoint-s3-csi-driver", "found"),
            ("bucket data", "found"),
            ("dns zone", "found"),
            ("certificate app", "found"),
            ("certificate docs", "found"),
            ("certificate shop", "missing"),
        ]
        .map(|(a, b)| (a.to_owned(), b.to_owned())),
        "{first:#}"
    );
    // The exact name wins over the wildcard; the wildcard covers what has no exact one;
    // a requested (not issued) certificate is named, but not taken.
    assert_eq!(first["discovered"]["zoneId"], json!(zone));
    assert_eq!(first["discovered"]["hosts"]["app"]["certArn"], json!(exact));
    assert_eq!(
        first["discovered"]["hosts"]["docs"]["certArn"],
        json!(wildcard)
    );
    assert_eq!(first["discovered"]["hosts"]["shop"].get("certArn"), None);
    let shop = check(&first, "certificate shop");
    assert!(
        shop["evidence"].as_str().unwrap().contains(&pending)
            && shop["evidence"]
                .as_str()
                .unwrap()
                .contains("PENDING_VALIDATION"),
        "{shop:#}"
    );
    assert!(
        shop["fix"].as_str().unwrap().contains("aws acm"),
        "{shop:#}"
    );
    assert_eq!(first["lock"], "absent");
    assert!(!lock_path(dir.path(), "dev-aws").exists());

    // Before the lock file exists, the references to it do not resolve.
    let before = run(
        &mut command(dir.path(), &proxy, &eks),
        &["render", "dev-aws"],
    );
    exit(&before, 2);
    assert!(
        text(&before.stderr).contains("`dns.hosts.app.certArn` points at nothing"),
        "{}",
        text(&before.stderr)
    );

    let written = run(
        &mut command(dir.path(), &proxy, &eks),
        &["preflight", "dev-aws", "--write"],
    );
    exit(&written, 0);
    assert!(
        text(&written.stdout).contains("environments/discovered/dev-aws.yaml written"),
        "{}",
        text(&written.stdout)
    );
    let lock = std::fs::read_to_string(lock_path(dir.path(), "dev-aws")).unwrap();
    assert!(
        lock.starts_with("# Generated by `strata preflight dev-aws --write`"),
        "{lock}"
    );
    assert!(lock.contains(&exact) && lock.contains(&wildcard) && lock.contains(&zone));
    assert!(
        !lock.contains("shop"),
        "a host without a certificate is left out: {lock}"
    );

    // Again: nothing changed, so the file is not rewritten.
    let mtime = std::fs::metadata(lock_path(dir.path(), "dev-aws"))
        .unwrap()
        .modified()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let again = report(
        &run(
            &mut command(dir.path(), &proxy, &eks),
            &["--format", "json", "preflight", "dev-aws", "--write"],
        ),
        0,
    );
    assert_eq!(again["lock"], "same");
    assert_eq!(
        std::fs::metadata(lock_path(dir.path(), "dev-aws"))
            .unwrap()
            .modified()
            .unwrap(),
        mtime
    );

    // Nothing was written to the cloud: not through the proxy, not to the stand-in.
    let writes = proxy.writes();
    assert!(writes.is_empty(), "preflight wrote: {writes:?}");
    assert!(eks.writes().is_empty(), "{:?}", eks.writes());
    let actions: Vec<String> = proxy
        .requests()
        .iter()
        .filter_map(|r| r.action.clone())
        .collect();
    assert!(actions.contains(&"GetCallerIdentity".to_owned()));
    assert!(actions.contains(&"DescribeCertificate".to_owned()));
    assert!(
        eks.requests()
            .iter()
            .any(|r| r["op"] == "DescribeAddon" && r["status"] == 200)
    );

    // Render reads the discovered values through the references; `!ref dns.hosts.app`
    // is still the host name.
    let rendered = run(
        &mut command(dir.path(), &proxy, &eks),
        &["render", "dev-aws"],
    );
    exit(&rendered, 0);
    let env = std::fs::read_to_string(dir.path().join("p/out/dev-aws/env/api.env")).unwrap();
    assert!(env.contains(&format!("CERT_ARN={exact}")), "{env}");
    assert!(env.contains(&format!("ZONE={zone}")), "{env}");
    assert!(env.contains("PUBLIC_URL=https://app.pfa.test"), "{env}");
    let explained = run(
        &mut command(dir.path(), &proxy, &eks),
        &["explain", "dev-aws", "dns.zoneId"],
    );
    exit(&explained, 0);
    assert!(
        text(&explained.stdout).contains("environments/discovered/dev-aws.yaml:5:"),
        "{}",
        text(&explained.stdout)
    );
}

#[test]
fn aws_a_blocking_check_stops_the_rest_and_writes_no_lock() {
    let issuer = block_on(create_cluster(REGION, "pfb-dev"));
    block_on(create_zone("pfb.test"));
    let dir = aws_project("pfb", "identity: podIdentity");
    let proxy = RecordingProxy::start(moto::url());
    let eks = Standin::eks_with_addons(moto::url(), &[]);
    let preflight = |dir: &Path| {
        run(
            &mut command(dir, &proxy, &eks),
            &["--format", "json", "preflight", "dev-aws", "--write"],
        )
    };

    // No Pod Identity agent: pods would get no role.
    let missing = report(&preflight(dir.path()), 2);
    assert_eq!(
        statuses(&missing),
        [
            ("credentials", "found"),
            ("cluster", "found"),
            ("addon eks-pod-identity-agent", "blocking"),
        ]
        .map(|(a, b)| (a.to_owned(), b.to_owned())),
        "{missing:#}"
    );
    let agent = check(&missing, "addon eks-pod-identity-agent");
    assert!(
        agent["fix"].as_str().unwrap().contains(
            "aws eks create-addon --cluster-name pfb-dev --addon-name eks-pod-identity-agent"
        ),
        "{agent:#}"
    );
    assert_eq!(missing["blocked"], true);
    assert_eq!(missing["lock"], "not-written");
    assert!(!lock_path(dir.path(), "dev-aws").exists());

    // Installed but not healthy is not enough.
    eks.configure(&json!({"addons": {"pfb-dev": {
        "eks-pod-identity-agent": "DEGRADED",
        "aws-mountpoint-s3-csi-driver": "ACTIVE",
    }}}));
    let degraded = report(&preflight(dir.path()), 2);
    assert!(
        check(&degraded, "addon eks-pod-identity-agent")["evidence"]
            .as_str()
            .unwrap()
            .contains("DEGRADED")
    );

    eks.configure(&json!({"addons": {"pfb-dev": {
        "eks-pod-identity-agent": "ACTIVE",
        "aws-mountpoint-s3-csi-driver": "ACTIVE",
    }}}));
    let healthy = report(&preflight(dir.path()), 0);
    assert_eq!(healthy["lock"], "written");
    let lock = std::fs::read_to_string(lock_path(dir.path(), "dev-aws")).unwrap();
    assert_eq!(
        check(&healthy, "addon eks-pod-identity-agent")["status"],
        "found"
    );
    assert_eq!(check(&healthy, "dns zone")["status"], "found");
    // No certificate for any host: missing, not blocking (render says so when a
    // reference needs one).
    assert_eq!(check(&healthy, "certificate app")["status"], "missing");

    // IRSA with another issuer than the cluster's.
    let layer = dir.path().join("p/environments/dev.aws.yaml");
    let text_of = std::fs::read_to_string(&layer).unwrap();
    std::fs::write(
        &layer,
        text_of.replace(
            "identity: podIdentity",
            "identity: irsa, oidcIssuer: \"https://oidc.eks.eu-west-1.amazonaws.com/id/OTHER\"",
        ),
    )
    .unwrap();
    let other = report(&preflight(dir.path()), 2);
    let issuer_check = check(&other, "oidc-issuer");
    assert_eq!(issuer_check["status"], "blocking");
    assert!(
        issuer_check["fix"].as_str().unwrap().contains(&issuer),
        "{issuer_check:#}"
    );
    assert_eq!(statuses(&other).last().unwrap().0, "oidc-issuer");

    // A cluster that does not exist.
    std::fs::write(&layer, text_of.replace("pfb-dev", "pfb-gone")).unwrap();
    let gone = report(&preflight(dir.path()), 2);
    assert_eq!(
        statuses(&gone),
        [("credentials", "found"), ("cluster", "blocking")]
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
    );

    // Credentials of another account: nothing else is asked.
    std::fs::write(&layer, text_of.replace(moto::ACCOUNT, "999999999999")).unwrap();
    proxy.clear();
    let wrong = report(&preflight(dir.path()), 2);
    assert_eq!(
        statuses(&wrong),
        [("credentials", "blocking")].map(|(a, b)| (a.to_owned(), b.to_owned()))
    );
    assert_eq!(proxy.requests().len(), 1, "{:?}", proxy.requests());

    assert!(proxy.writes().is_empty(), "{:?}", proxy.writes());
    assert!(eks.writes().is_empty(), "{:?}", eks.writes());
    // The blocked runs left the lock file as the healthy one wrote it.
    assert_eq!(
        std::fs::read_to_string(lock_path(dir.path(), "dev-aws")).unwrap(),
        lock
    );
}

#[test]
fn aws_bucket_names_must_be_free_or_ours() {
    block_on(create_cluster(REGION, "pfc-dev"));
    let dir = aws_project("pfc", "identity: podIdentity");
    let proxy = RecordingProxy::start(moto::url());
    let eks = Standin::eks_with_addons(
        moto::url(),
        &[
            ("pfc-dev", "eks-pod-identity-agent", "ACTIVE"),
            ("pfc-dev", "aws-mountpoint-s3-csi-driver", "ACTIVE"),
        ],
    );
    let name = format!("pfc-dev-data-{}", moto::ACCOUNT);
    block_on(async {
        let s3 = moto::s3(REGION).await;
        s3.create_bucket()
            .bucket(&name)
            .create_bucket_configuration(
                aws_sdk_s3::types::CreateBucketConfiguration::builder()
                    .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::EuWest1)
                    .build(),
            )
            .send()
            .await
            .expect("moto creates the bucket");
        let tags = aws_sdk_s3::types::Tagging::builder()
            .tag_set(
                aws_sdk_s3::types::Tag::builder()
                    .key("managed-by")
                    .value("strata")
                    .build()
                    .unwrap(),
            )
            .tag_set(
                aws_sdk_s3::types::Tag::builder()
                    .key("strata-target")
                    .value("prod-aws")
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        s3.put_bucket_tagging()
            .bucket(&name)
            .tagging(tags)
            .send()
            .await
            .unwrap();
    });
    let out = run(
        &mut command(dir.path(), &proxy, &eks),
        &["preflight", "dev-aws"],
    );
    exit(&out, 2);
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!(
            "BLOCKING bucket data: s3 bucket {name} belongs to strata target prod-aws"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("fix: set buckets.data.name to another name"),
        "{stdout}"
    );

    // Once it is this target's, it is found.
    block_on(async {
        let s3 = moto::s3(REGION).await;
        let tags = aws_sdk_s3::types::Tagging::builder()
            .tag_set(
                aws_sdk_s3::types::Tag::builder()
                    .key("managed-by")
                    .value("strata")
                    .build()
                    .unwrap(),
            )
            .tag_set(
                aws_sdk_s3::types::Tag::builder()
                    .key("strata-target")
                    .value("dev-aws")
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        s3.put_bucket_tagging()
            .bucket(&name)
            .tagging(tags)
            .send()
            .await
            .unwrap();
    });
    let ours = report(
        &run(
            &mut command(dir.path(), &proxy, &eks),
            &["--format", "json", "preflight", "dev-aws"],
        ),
        0,
    );
    assert!(
        check(&ours, "bucket data")["evidence"]
            .as_str()
            .unwrap()
            .contains("exists and is this target's")
    );
    assert!(proxy.writes().is_empty(), "{:?}", proxy.writes());
}

#[test]
fn plan_reports_a_lock_file_the_live_world_left_behind() {
    let issuer = block_on(create_cluster(REGION, "pfd-dev"));
    block_on(create_zone("pfd.test"));
    let exact = import_certificate(&["app.pfd.test"]);
    import_certificate(&["*.pfd.test"]);
    let dir = aws_project(
        "pfd",
        &format!("oidcIssuer: \"{issuer}\", createOidcProvider: true"),
    );
    let proxy = RecordingProxy::start(moto::url());
    let eks = Standin::eks_with_addons(
        moto::url(),
        &[("pfd-dev", "aws-mountpoint-s3-csi-driver", "ACTIVE")],
    );
    exit(
        &run(
            &mut command(dir.path(), &proxy, &eks),
            &["preflight", "dev-aws", "--write"],
        ),
        0,
    );
    let plan = run(&mut command(dir.path(), &proxy, &eks), &["plan", "dev-aws"]);
    exit(&plan, 1);
    assert!(
        !text(&plan.stdout).contains("stale lock"),
        "{}",
        text(&plan.stdout)
    );

    // The certificate the lock names is deleted: plan says so and counts it.
    block_on(async {
        acm()
            .await
            .delete_certificate()
            .certificate_arn(&exact)
            .send()
            .await
            .unwrap()
    });
    let plan = run(&mut command(dir.path(), &proxy, &eks), &["plan", "dev-aws"]);
    exit(&plan, 1);
    let stdout = text(&plan.stdout);
    assert!(
        stdout.contains("! stale lock environments/discovered/dev-aws.yaml: the live world moved; `strata preflight dev-aws --write` renews it"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "dns.hosts.app.certArn: certificate {exact} no longer exists"
        )),
        "{stdout}"
    );
    assert!(stdout.contains(", 1 stale lock file\n"), "{stdout}");
    let json_plan = run(
        &mut command(dir.path(), &proxy, &eks),
        &["--format", "json", "plan", "dev-aws"],
    );
    exit(&json_plan, 1);
    let plan: Value = serde_json::from_slice(&json_plan.stdout).unwrap();
    assert_eq!(plan["staleLock"].as_array().unwrap().len(), 1, "{plan:#}");

    // Preflight finds the wildcard now, and --write renews the lock.
    let renewed = report(
        &run(
            &mut command(dir.path(), &proxy, &eks),
            &["--format", "json", "preflight", "dev-aws", "--write"],
        ),
        0,
    );
    assert_eq!(renewed["lock"], "written");
    let plan = run(&mut command(dir.path(), &proxy, &eks), &["plan", "dev-aws"]);
    assert!(
        !text(&plan.stdout).contains("stale lock"),
        "{}",
        text(&plan.stdout)
    );
}

/// The lock file is a layer with rules of its own; none of this needs a cloud.
#[test]
fn the_lock_file_is_checked_like_a_layer() {
    let dir = project(&[]);
    let root = dir.path().join("p");
    let discovered = root.join("environments/discovered");
    std::fs::create_dir_all(&discovered).unwrap();
    let validate = || {
        support::strata()
            .arg("-C")
            .arg(&root)
            .arg("validate")
            .output()
            .unwrap()
    };

    // A lock discovered for the layers' names merges last, and is used.
    std::fs::write(
        discovered.join("dev-aws.yaml"),
        "# Generated by `strata preflight dev-aws --write` from the live cloud; do not edit.\n\
         dns:\n  domain: \"dev.example.com\"\n  zoneId: \"Z1\"\n  hosts:\n    app:\n      name: \"lakehouse.dev.example.com\"\n      certArn: \"arn:aws:acm:eu-west-1:111111111111:certificate/1\"\n",
    )
    .unwrap();
    exit(&validate(), 0);

    // The layers moved on: the lock is stale until preflight runs again.
    let dev = root.join("environments/dev.yaml");
    let original = std::fs::read_to_string(&dev).unwrap();
    std::fs::write(
        &dev,
        original.replace(
            "app: lakehouse.dev.example.com",
            "app: shop.dev.example.com",
        ),
    )
    .unwrap();
    let stale = validate();
    exit(&stale, 2);
    assert!(
        text(&stale.stderr).contains(
            "environments/discovered/dev-aws.yaml:7:13: dns.hosts.app.name: the lock file was discovered for \"lakehouse.dev.example.com\", but the layers now say \"shop.dev.example.com\""
        ),
        "{}",
        text(&stale.stderr)
    );
    assert!(text(&stale.stderr).contains("strata preflight dev-aws --write"));
    std::fs::write(&dev, original).unwrap();

    // Only what preflight writes.
    std::fs::write(
        discovered.join("dev-aws.yaml"),
        "dns:\n  zoneId: Z1\nbuckets: {data: {versioning: false}}\n",
    )
    .unwrap();
    let foreign = validate();
    exit(&foreign, 2);
    assert!(
        text(&foreign.stderr).contains(
            "environments/discovered/dev-aws.yaml:3:1: buckets: `buckets` does not belong in a lock file"
        ),
        "{}",
        text(&foreign.stderr)
    );
    std::fs::remove_file(discovered.join("dev-aws.yaml")).unwrap();

    // Only for targets that exist.
    std::fs::write(discovered.join("qa-aws.yaml"), "dns: {zoneId: Z1}\n").unwrap();
    let orphan = validate();
    exit(&orphan, 2);
    assert!(
        text(&orphan.stderr).contains(
            "environments/discovered/qa-aws.yaml:1:1: this lock file is for target `qa-aws`, which no environment defines"
        ),
        "{}",
        text(&orphan.stderr)
    );
}

/// strata against the GCS emulator, the GKE / Cloud DNS stand-in and the IAM stand-in
/// (plan reads service accounts): every Google endpoint strata may call is loopback.
fn gcp_command(dir: &Path, google: &Standin, iam: &Standin) -> std::process::Command {
    let mut cmd = support::strata();
    cmd.arg("-C").arg(dir.join("p"));
    gcp_env(&mut cmd, google, iam);
    cmd
}

/// The Google endpoints of [`gcp_command`], added to `cmd`.
fn gcp_env(cmd: &mut std::process::Command, google: &Standin, iam: &Standin) {
    let host = crate::support::gcs_emulator::host();
    assert_loopback(host);
    assert_loopback(&google.url);
    assert_loopback(&iam.url);
    cmd.env("STORAGE_EMULATOR_HOST", host)
        .env("CLOUDSDK_API_ENDPOINT_OVERRIDES_IAM", &iam.url)
        .env(
            "CLOUDSDK_API_ENDPOINT_OVERRIDES_CONTAINER",
            format!("{}/", google.url),
        )
        .env(
            "CLOUDSDK_API_ENDPOINT_OVERRIDES_DNS",
            format!("{}/dns/v1/", google.url),
        )
        .env("GOOGLE_OAUTH_ACCESS_TOKEN", "test-token")
        .env_remove("GOOGLE_APPLICATION_CREDENTIALS");
}

#[test]
fn gcp_cluster_workload_pool_fuse_driver_and_cloud_dns_zone() {
    let project_id = "pfg-dev-4821";
    let layer = format!(
        "project: {{name: pfg}}\n\
         gcp: {{projectId: {project_id}, cluster: pfg-dev, clusterLocation: europe-west1}}\n\
         dns: {{domain: app.pfg.test, hosts: {{app: app.pfg.test}}}}\n\
         workloads:\n  api:\n    env:\n      ZONE: !ref dns.zoneId\n"
    );
    let dir = project(&[("dev.gcp.yaml", layer)]);
    let google = Standin::gcp_preflight(
        project_id,
        &["europe-west1/pfg-dev"],
        &[
            "pfg/pfg.test",
            "corp/app.pfg.test/private",
            "other/other.test",
        ],
    );
    let iam = Standin::gcp_iam(project_id);
    let preflight = |args: &[&str]| run(&mut gcp_command(dir.path(), &google, &iam), args);

    let found = report(
        &preflight(&["--format", "json", "preflight", "dev-gcp", "--write"]),
        0,
    );
    assert_eq!(
        statuses(&found),
        [
            ("credentials", "found"),
            ("cluster", "found"),
            ("workload-pool", "found"),
            ("addon gcs-fuse-csi-driver", "found"),
            ("bucket data", "found"),
            ("dns zone", "found"),
        ]
        .map(|(a, b)| (a.to_owned(), b.to_owned())),
        "{found:#}"
    );
    // The private zone is longer but does not serve the public site.
    assert_eq!(found["discovered"]["zoneId"], "pfg");
    assert_eq!(found["lock"], "written");
    let rendered = preflight(&["render", "dev-gcp"]);
    exit(&rendered, 0);
    let env = std::fs::read_to_string(dir.path().join("p/out/dev-gcp/env/api.env")).unwrap();
    assert!(env.contains("ZONE=pfg\n"), "{env}");

    // Workload Identity off and the FUSE driver disabled: the first stops the run.
    google.configure(&json!({"clusters": [{
        "project": project_id, "location": "europe-west1", "name": "pfg-dev",
        "workloadPool": null, "gcsFuse": false,
    }]}));
    let off = report(&preflight(&["--format", "json", "preflight", "dev-gcp"]), 2);
    assert_eq!(
        statuses(&off).last().unwrap(),
        &("workload-pool".to_owned(), "blocking".to_owned())
    );
    assert!(
        check(&off, "workload-pool")["fix"]
            .as_str()
            .unwrap()
            .contains("--workload-pool=pfg-dev-4821.svc.id.goog")
    );
    google.configure(&json!({"clusters": [{
        "project": project_id, "location": "europe-west1", "name": "pfg-dev", "gcsFuse": false,
    }]}));
    let fuse = report(&preflight(&["--format", "json", "preflight", "dev-gcp"]), 2);
    assert_eq!(
        check(&fuse, "addon gcs-fuse-csi-driver")["status"],
        "blocking"
    );

    // A cluster still provisioning; then none at all.
    google.configure(&json!({"clusters": [{
        "project": project_id, "location": "europe-west1", "name": "pfg-dev", "status": "PROVISIONING",
    }]}));
    let provisioning = report(&preflight(&["--format", "json", "preflight", "dev-gcp"]), 2);
    assert!(
        check(&provisioning, "cluster")["evidence"]
            .as_str()
            .unwrap()
            .contains("PROVISIONING, not RUNNING")
    );
    google.configure(&json!({"clusters": []}));
    let gone = report(&preflight(&["--format", "json", "preflight", "dev-gcp"]), 2);
    assert_eq!(statuses(&gone).len(), 2, "{gone:#}");

    // No zone holds the domain: missing, with what to do.
    google.configure(&json!({
        "clusters": [{"project": project_id, "location": "europe-west1", "name": "pfg-dev"}],
        "zones": [{"project": project_id, "name": "other", "dnsName": "other.test."}],
    }));
    let no_zone = report(&preflight(&["--format", "json", "preflight", "dev-gcp"]), 0);
    let zone = check(&no_zone, "dns zone");
    assert_eq!(zone["status"], "missing");
    assert!(
        zone["fix"]
            .as_str()
            .unwrap()
            .contains("gcloud dns managed-zones create")
    );
    assert_eq!(no_zone["lock"], "differs");

    // The zone the lock names is gone: plan says the lock is stale.
    let plan = preflight(&["plan", "dev-gcp"]);
    assert!(
        text(&plan.stdout).contains("dns.zoneId: managed zone pfg no longer exists"),
        "stdout:\n{}\nstderr:\n{}",
        text(&plan.stdout),
        text(&plan.stderr)
    );

    assert!(google.writes().is_empty(), "{:?}", google.writes());
    assert!(iam.writes().is_empty(), "{:?}", iam.writes());
}

/// moto's clusters are always ACTIVE and all of a region share one OIDC issuer: the EKS
/// stand-in puts the status and issuer a test needs into moto's DescribeCluster answer
/// (`cluster_overrides`, tests/standins/README.md).
#[test]
fn aws_a_cluster_not_active_or_without_its_issuer_blocks_with_what_to_do() {
    block_on(create_cluster(REGION, "pfe-dev"));
    let issuer = "https://oidc.eks.eu-west-1.amazonaws.com/id/PFE0000000000000000000000000000E";
    let dir = aws_project("pfe", "identity: irsa, oidcIssuer: null");
    let proxy = RecordingProxy::start(moto::url());
    let eks = Standin::eks_with_addons(moto::url(), &[]);
    let preflight = || {
        report(
            &run(
                &mut command(dir.path(), &proxy, &eks),
                &["--format", "json", "preflight", "dev-aws", "--write"],
            ),
            2,
        )
    };

    eks.configure(&json!({"cluster_overrides": {"pfe-dev": {"status": "CREATING"}}}));
    let creating = preflight();
    assert_eq!(
        statuses(&creating),
        pairs(&[("credentials", "found"), ("cluster", "blocking")]),
        "{creating:#}"
    );
    assert_eq!(
        field(&creating, "cluster", "evidence"),
        "EKS cluster pfe-dev is CREATING, not ACTIVE"
    );
    assert_eq!(
        field(&creating, "cluster", "fix"),
        "wait until it is ACTIVE: `aws eks wait cluster-active --name pfe-dev --region eu-west-1`"
    );
    assert_eq!(creating["lock"], "not-written");

    // ACTIVE, but without an OIDC issuer: IRSA cannot work on it.
    eks.configure(&json!({"cluster_overrides": {"pfe-dev": {"identity": null}}}));
    let no_issuer = preflight();
    assert_eq!(
        statuses(&no_issuer),
        pairs(&[
            ("credentials", "found"),
            ("cluster", "found"),
            ("oidc-issuer", "blocking"),
        ]),
        "{no_issuer:#}"
    );
    assert_eq!(
        field(&no_issuer, "oidc-issuer", "evidence"),
        "EKS cluster pfe-dev has no OIDC issuer (IRSA needs one)"
    );
    assert!(field(&no_issuer, "oidc-issuer", "fix").contains("use `aws.identity: podIdentity`"));

    // Its own issuer, aws.oidcIssuer unset: missing, and the fix names the live one.
    // No IAM OIDC provider for it, and apply may not make one: blocking.
    eks.configure(
        &json!({"cluster_overrides": {"pfe-dev": {"identity": {"oidc": {"issuer": issuer}}}}}),
    );
    let no_provider = preflight();
    assert_eq!(
        statuses(&no_provider),
        pairs(&[
            ("credentials", "found"),
            ("cluster", "found"),
            ("oidc-issuer", "missing"),
            ("oidc-provider", "blocking"),
        ]),
        "{no_provider:#}"
    );
    assert_eq!(
        field(&no_provider, "oidc-issuer", "fix"),
        format!("set aws.oidcIssuer: {issuer}")
    );
    let fix = field(&no_provider, "oidc-provider", "fix");
    assert!(
        fix.contains("eksctl utils associate-iam-oidc-provider --cluster pfe-dev --region eu-west-1 --approve")
            && fix.contains("aws.createOidcProvider: true"),
        "{fix}"
    );

    // The provider made outside strata is found; next the data mount needs the
    // Mountpoint driver, which is not installed.
    block_on(async {
        moto::iam()
            .await
            .create_open_id_connect_provider()
            .url(issuer)
            .client_id_list("sts.amazonaws.com")
            .send()
            .await
            .expect("moto creates the OIDC provider")
    });
    let no_driver = preflight();
    assert_eq!(
        statuses(&no_driver),
        pairs(&[
            ("credentials", "found"),
            ("cluster", "found"),
            ("oidc-issuer", "missing"),
            ("oidc-provider", "found"),
            ("addon aws-mountpoint-s3-csi-driver", "blocking"),
        ]),
        "{no_driver:#}"
    );
    assert!(field(&no_driver, "oidc-provider", "evidence").ends_with(" exists"));
    let fix = field(&no_driver, "addon aws-mountpoint-s3-csi-driver", "fix");
    assert!(
        fix.contains("`aws eks create-addon --cluster-name pfe-dev --addon-name aws-mountpoint-s3-csi-driver --region eu-west-1`")
            && fix.contains("list it in aws.selfManagedAddons"),
        "{fix}"
    );

    assert!(!lock_path(dir.path(), "dev-aws").exists());
    assert!(proxy.writes().is_empty(), "{:?}", proxy.writes());
    assert!(eks.writes().is_empty(), "{:?}", eks.writes());
    let overridden: Vec<Value> = eks
        .requests()
        .iter()
        .filter(|r| r["path"] == "/clusters/pfe-dev")
        .map(|r| r["overridden"].clone())
        .collect();
    assert_eq!(
        overridden,
        [
            json!(["status"]),
            json!(["identity"]),
            json!(["identity"]),
            json!(["identity"]),
        ]
    );
}

/// An add-on installed with Helm (not as an EKS add-on) is invisible to EKS: listed in
/// `aws.selfManagedAddons` it is assumed, said so, with how to make sure, and not read.
#[test]
fn aws_self_managed_addons_are_assumed_not_blocking() {
    block_on(create_cluster(REGION, "pfs-dev"));
    block_on(create_zone("pfs.test"));
    let aws = "identity: podIdentity";
    let dir = aws_project("pfs", aws);
    let layer = std::fs::read_to_string(dir.path().join("p/environments/dev.aws.yaml")).unwrap();
    let proxy = RecordingProxy::start(moto::url());
    let eks = Standin::eks_with_addons(moto::url(), &[]);
    let preflight = |args: &[&str]| run(&mut command(dir.path(), &proxy, &eks), args);

    let blocked = report(&preflight(&["--format", "json", "preflight", "dev-aws"]), 2);
    assert_eq!(
        statuses(&blocked).last().unwrap(),
        &(
            "addon eks-pod-identity-agent".to_owned(),
            "blocking".to_owned()
        )
    );
    assert!(
        field(&blocked, "addon eks-pod-identity-agent", "fix").contains(
            "or, when it is installed with Helm or manifests instead, list it in aws.selfManagedAddons"
        )
    );

    set_layer(
        dir.path(),
        "dev.aws.yaml",
        &layer.replace(
            aws,
            "identity: podIdentity, selfManagedAddons: [eks-pod-identity-agent, aws-mountpoint-s3-csi-driver]",
        ),
    );
    eks.reset();
    let assumed = report(&preflight(&["--format", "json", "preflight", "dev-aws"]), 0);
    assert_eq!(
        statuses(&assumed)[..4].to_vec(),
        pairs(&[
            ("credentials", "found"),
            ("cluster", "found"),
            ("addon eks-pod-identity-agent", "assumed"),
            ("addon aws-mountpoint-s3-csi-driver", "assumed"),
        ]),
        "{assumed:#}"
    );
    for addon in ["eks-pod-identity-agent", "aws-mountpoint-s3-csi-driver"] {
        assert_eq!(
            field(&assumed, &format!("addon {addon}"), "evidence"),
            "assumed installed (aws.selfManagedAddons: installed outside EKS add-ons, which preflight cannot see)"
        );
    }
    assert_eq!(
        field(&assumed, "addon eks-pod-identity-agent", "fix"),
        "`kubectl --context arn:aws:eks:eu-west-1:123456789012:cluster/pfs-dev get daemonsets --all-namespaces -l app.kubernetes.io/name=eks-pod-identity-agent` lists it with every pod ready"
    );
    assert_eq!(
        field(&assumed, "addon aws-mountpoint-s3-csi-driver", "fix"),
        "`kubectl --context arn:aws:eks:eu-west-1:123456789012:cluster/pfs-dev get csidriver s3.csi.aws.com` finds the driver"
    );
    assert_eq!(assumed["blocked"], false);
    // Not read: EKS could only say "not an EKS add-on".
    assert!(
        !eks.requests().iter().any(|r| r["op"] == "DescribeAddon"),
        "{:?}",
        eks.requests()
    );
    let text_out = preflight(&["preflight", "dev-aws"]);
    exit(&text_out, 0);
    let stdout = text(&text_out.stdout);
    assert!(
        stdout.contains(
            "   assumed addon eks-pod-identity-agent: assumed installed (aws.selfManagedAddons: "
        ) && stdout.contains("           verify: `kubectl --context "),
        "{stdout}"
    );

    // Only the agent outside EKS add-ons: the driver is read as an EKS add-on.
    set_layer(
        dir.path(),
        "dev.aws.yaml",
        &layer.replace(
            aws,
            "identity: podIdentity, selfManagedAddons: [eks-pod-identity-agent]",
        ),
    );
    eks.configure(&json!({"addons": {"pfs-dev": {"aws-mountpoint-s3-csi-driver": "ACTIVE"}}}));
    let mixed = report(&preflight(&["--format", "json", "preflight", "dev-aws"]), 0);
    assert_eq!(
        check(&mixed, "addon eks-pod-identity-agent")["status"],
        "assumed"
    );
    assert_eq!(
        check(&mixed, "addon aws-mountpoint-s3-csi-driver")["status"],
        "found"
    );

    // The list is closed: a misspelt add-on is an error at its place.
    set_layer(
        dir.path(),
        "dev.aws.yaml",
        &layer.replace(
            aws,
            "identity: podIdentity, selfManagedAddons: [eks-pod-identity-agnet]",
        ),
    );
    let typo = preflight(&["preflight", "dev-aws"]);
    exit(&typo, 2);
    let stderr = text(&typo.stderr);
    assert!(
        stderr.contains("environments/dev.aws.yaml:2:")
            && stderr.contains("aws.selfManagedAddons")
            && stderr.contains("eks-pod-identity-agnet"),
        "{stderr}"
    );

    assert!(proxy.writes().is_empty(), "{:?}", proxy.writes());
    assert!(eks.writes().is_empty(), "{:?}", eks.writes());
}

/// No hosted zone for the domain and no certificate for a host are missing facts, each
/// with the step to fix it; a bucket name strata did not make blocks unless adopted,
/// and one of another account blocks.
#[test]
fn aws_a_domain_without_zone_and_buckets_that_are_not_ours() {
    block_on(create_cluster(REGION, "pfz-dev"));
    let aws = "identity: podIdentity";
    let dir = aws_project("pfz", aws);
    let layer = std::fs::read_to_string(dir.path().join("p/environments/dev.aws.yaml")).unwrap();
    let proxy = RecordingProxy::start(moto::url());
    let eks = Standin::eks_with_addons(
        moto::url(),
        &[
            ("pfz-dev", "eks-pod-identity-agent", "ACTIVE"),
            ("pfz-dev", "aws-mountpoint-s3-csi-driver", "ACTIVE"),
        ],
    );
    let preflight = |url: &str| {
        run(
            &mut command_at(dir.path(), url, &eks),
            &["--format", "json", "preflight", "dev-aws"],
        )
    };

    // No cluster named: the cluster, its issuer and add-ons are not checked.
    set_layer(
        dir.path(),
        "dev.aws.yaml",
        &layer.replace("cluster: pfz-dev", "cluster: null"),
    );
    let no_cluster = report(&preflight(&proxy.url), 0);
    assert_eq!(check(&no_cluster, "cluster")["status"], "missing");
    assert_eq!(
        field(&no_cluster, "cluster", "fix"),
        "set aws.cluster to the EKS cluster's name"
    );
    assert!(
        !statuses(&no_cluster)
            .iter()
            .any(|(c, _)| c.starts_with("addon"))
    );
    set_layer(dir.path(), "dev.aws.yaml", &layer);

    let found = report(&preflight(&proxy.url), 0);
    assert_eq!(
        statuses(&found),
        pairs(&[
            ("credentials", "found"),
            ("cluster", "found"),
            ("addon eks-pod-identity-agent", "found"),
            ("addon aws-mountpoint-s3-csi-driver", "found"),
            ("bucket data", "found"),
            ("dns zone", "missing"),
            ("certificate app", "missing"),
            ("certificate docs", "missing"),
            ("certificate shop", "missing"),
        ]),
        "{found:#}"
    );
    assert_eq!(
        field(&found, "dns zone", "evidence"),
        "no public Route53 hosted zone holds pfz.test"
    );
    assert_eq!(
        field(&found, "dns zone", "fix"),
        "create one (`aws route53 create-hosted-zone --name pfz.test --caller-reference strata-pfz.test`) and delegate pfz.test to its name servers"
    );
    assert_eq!(
        field(&found, "certificate app", "evidence"),
        "no ACM certificate in eu-west-1 covers app.pfz.test"
    );
    assert!(
        field(&found, "certificate app", "fix").starts_with(
            "request one: `aws acm request-certificate --domain-name app.pfz.test --validation-method DNS --region eu-west-1`"
        )
    );
    assert_eq!(found["discovered"]["zoneId"], Value::Null, "{found:#}");

    // A bucket of that name, made by hand in this account: blocking unless adopted.
    let name = format!("pfz-dev-data-{}", moto::ACCOUNT);
    block_on(async {
        moto::s3(REGION)
            .await
            .create_bucket()
            .bucket(&name)
            .create_bucket_configuration(
                aws_sdk_s3::types::CreateBucketConfiguration::builder()
                    .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::EuWest1)
                    .build(),
            )
            .send()
            .await
            .expect("moto creates the bucket")
    });
    let by_hand = report(&preflight(&proxy.url), 2);
    assert_eq!(
        statuses(&by_hand).last().unwrap(),
        &("bucket data".to_owned(), "blocking".to_owned())
    );
    assert_eq!(
        field(&by_hand, "bucket data", "evidence"),
        format!("s3 bucket {name} exists in this account but strata did not make it")
    );
    assert!(
        field(&by_hand, "bucket data", "fix")
            .starts_with("set `adopt: true` on buckets.data to take it over")
    );
    set_layer(
        dir.path(),
        "dev.aws.yaml",
        &format!("{layer}buckets:\n  data:\n    adopt: true\n"),
    );
    let adopted = report(&preflight(&proxy.url), 0);
    assert_eq!(
        field(&adopted, "bucket data", "evidence"),
        format!("s3 bucket {name} exists, not made by strata; `adopt: true` takes it over")
    );

    // Real S3 answers HeadBucket with 403 for a bucket of another account; moto
    // answers 200, so a proxy answers that HEAD as S3 would.
    // It sits in front of the recording proxy, which sees every request it forwards.
    let foreign = FaultyProxy::start(&proxy.url, &format!("HEAD /{name}"), 403, None);
    let taken = report(&preflight(&foreign.url), 2);
    assert_eq!(
        statuses(&taken).last().unwrap(),
        &("bucket data".to_owned(), "blocking".to_owned())
    );
    assert_eq!(
        field(&taken, "bucket data", "evidence"),
        format!("s3 bucket {name} exists and belongs to another account")
    );
    assert_eq!(
        field(&taken, "bucket data", "fix"),
        "set buckets.data.name to another name (bucket names are global)"
    );
    let requests = foreign.requests();
    assert!(requests.iter().any(|r| r.injected), "{requests:#?}");

    assert!(proxy.writes().is_empty(), "{:?}", proxy.writes());
    assert!(eks.writes().is_empty(), "{:?}", eks.writes());
}

/// The GCS emulator, the GKE stand-in and a fault proxy: the other pool, no cluster
/// location, and a bucket name that is not this target's.
#[test]
fn gcp_the_wrong_pool_no_location_and_buckets_that_are_not_ours() {
    let project_id = "pfh-dev-4821";
    let base = format!(
        "project: {{name: pfh}}\n\
         gcp: {{projectId: {project_id}, cluster: pfh-dev, clusterLocation: europe-west1}}\n\
         dns: {{domain: app.pfh.test, hosts: {{app: app.pfh.test}}}}\n"
    );
    let dir = project(&[("dev.gcp.yaml", base.clone())]);
    let google = Standin::gcp_preflight(project_id, &["europe-west1/pfh-dev"], &[]);
    let iam = Standin::gcp_iam(project_id);
    let emulator = crate::support::gcs_emulator::host();
    let preflight = |host: &str| {
        let mut cmd = gcp_command(dir.path(), &google, &iam);
        assert_loopback(host);
        cmd.env("STORAGE_EMULATOR_HOST", host);
        run(&mut cmd, &["--format", "json", "preflight", "dev-gcp"])
    };

    // The cluster's pool is another project's: the service accounts' bindings name
    // this project's pool, so pods would get no identity.
    google.configure(&json!({"clusters": [{
        "project": project_id, "location": "europe-west1", "name": "pfh-dev",
        "workloadPool": "other-project.svc.id.goog",
    }]}));
    let other_pool = report(&preflight(emulator), 2);
    assert_eq!(
        statuses(&other_pool),
        pairs(&[
            ("credentials", "found"),
            ("cluster", "found"),
            ("workload-pool", "blocking"),
        ]),
        "{other_pool:#}"
    );
    assert_eq!(
        field(&other_pool, "workload-pool", "evidence"),
        "the cluster's workload pool is other-project.svc.id.goog, not pfh-dev-4821.svc.id.goog"
    );
    assert_eq!(
        field(&other_pool, "workload-pool", "fix"),
        "`gcloud container clusters update pfh-dev --location europe-west1 --project pfh-dev-4821 --workload-pool=pfh-dev-4821.svc.id.goog`"
    );
    google.configure(&json!({"clusters": [{
        "project": project_id, "location": "europe-west1", "name": "pfh-dev",
    }]}));

    // Without a location the cluster cannot be read; without a cluster it is not checked.
    set_layer(
        dir.path(),
        "dev.gcp.yaml",
        &base.replace("clusterLocation: europe-west1", "clusterLocation: null"),
    );
    let no_location = report(&preflight(emulator), 2);
    assert_eq!(
        statuses(&no_location),
        pairs(&[("credentials", "found"), ("cluster", "blocking")])
    );
    assert_eq!(
        field(&no_location, "cluster", "fix"),
        "set gcp.clusterLocation to the cluster's region or zone"
    );
    set_layer(
        dir.path(),
        "dev.gcp.yaml",
        &base.replace("cluster: pfh-dev, ", "cluster: null, "),
    );
    let no_cluster = report(&preflight(emulator), 0);
    assert_eq!(check(&no_cluster, "cluster")["status"], "missing");
    set_layer(dir.path(), "dev.gcp.yaml", &base);

    // A bucket of that name made by hand, then one of another strata target.
    let name = "pfh-dev-4821-dev-data";
    let storage = format!("{emulator}/storage/v1");
    assert_loopback(&storage);
    block_on(async {
        let http = reqwest::Client::new();
        let made = http
            .post(format!("{storage}/b?project={project_id}"))
            .json(&json!({"name": name}))
            .send()
            .await
            .expect("the emulator answers");
        assert!(made.status().is_success(), "{}", made.status());
    });
    let by_hand = report(&preflight(emulator), 2);
    assert_eq!(
        field(&by_hand, "bucket data", "evidence"),
        format!("gcs bucket {name} exists but strata did not make it")
    );
    assert!(field(&by_hand, "bucket data", "fix").starts_with("set `adopt: true` on buckets.data"));
    let label = |target: &str| {
        block_on(async {
            let labelled = reqwest::Client::new()
                .patch(format!("{storage}/b/{name}"))
                .json(&json!({"labels": {"managed-by": "strata", "strata-target": target}}))
                .send()
                .await
                .expect("the emulator answers");
            assert!(labelled.status().is_success(), "{}", labelled.status());
        })
    };
    label("prod-gcp");
    let theirs = report(&preflight(emulator), 2);
    assert_eq!(
        field(&theirs, "bucket data", "evidence"),
        format!("gcs bucket {name} belongs to strata target prod-gcp")
    );
    label("dev-gcp");
    let ours = report(&preflight(emulator), 0);
    assert_eq!(
        field(&ours, "bucket data", "evidence"),
        format!("gcs bucket {name} exists and is this target's")
    );

    // GCS answers 403 for a bucket of a project these credentials cannot read.
    let foreign = FaultyProxy::start(emulator, &format!("GET /storage/v1/b/{name} "), 403, None);
    let taken = report(&preflight(&foreign.url), 2);
    assert_eq!(
        field(&taken, "bucket data", "evidence"),
        format!("gcs bucket {name} exists and belongs to another project")
    );
    assert_eq!(
        field(&taken, "bucket data", "fix"),
        "set buckets.data.name to another name (bucket names are global)"
    );
    let requests = foreign.requests();
    assert!(requests.iter().any(|r| r.injected), "{requests:#?}");
    assert!(requests.iter().all(|r| !r.is_write()), "{requests:#?}");

    assert!(google.writes().is_empty(), "{:?}", google.writes());
    assert!(iam.writes().is_empty(), "{:?}", iam.writes());
}

/// Preflight of several targets tells what it does as it goes: one `strata: ` line per
/// check on stderr, in order; none with `--quiet` or `--format json`; stdout the same.
#[test]
fn preflight_reports_progress_on_stderr_unless_quiet_or_json() {
    block_on(create_cluster(REGION, "pfp-dev"));
    let project_id = "pfp-dev-4821";
    let dir = project(&[
        (
            "dev.aws.yaml",
            format!(
                "project: {{name: pfp}}\naws: {{accountId: \"{}\", cluster: pfp-dev, identity: podIdentity}}\n",
                moto::ACCOUNT
            ),
        ),
        (
            "dev.gcp.yaml",
            format!(
                "project: {{name: pfp}}\ngcp: {{projectId: {project_id}, cluster: pfp-dev, clusterLocation: europe-west1}}\n"
            ),
        ),
    ]);
    let proxy = RecordingProxy::start(moto::url());
    let eks = Standin::eks_with_addons(
        moto::url(),
        &[
            ("pfp-dev", "eks-pod-identity-agent", "ACTIVE"),
            ("pfp-dev", "aws-mountpoint-s3-csi-driver", "CREATING"),
        ],
    );
    let google = Standin::gcp_preflight(project_id, &["europe-west1/pfp-dev"], &[]);
    let iam = Standin::gcp_iam(project_id);
    let preflight = |flags: &[&str]| {
        let mut cmd = command(dir.path(), &proxy, &eks);
        gcp_env(&mut cmd, &google, &iam);
        cmd.args(flags).args(["preflight", "dev-aws", "dev-gcp"]);
        cmd.output().expect("strata runs")
    };

    let loud = preflight(&[]);
    exit(&loud, 2);
    let lines: Vec<String> = text(&loud.stderr)
        .lines()
        .filter(|l| l.starts_with("strata: "))
        .map(|l| {
            // `strata: dev-aws cluster: found (0.4 s)`, without the time.
            let (line, time) = l.rsplit_once(" (").unwrap_or_else(|| panic!("{l}"));
            assert!(time.ends_with(" s)"), "{l}");
            line.to_owned()
        })
        .collect();
    assert_eq!(
        lines,
        [
            "strata: dev-aws credentials: found",
            "strata: dev-aws cluster: found",
            "strata: dev-aws addon eks-pod-identity-agent: found",
            "strata: dev-aws addon aws-mountpoint-s3-csi-driver: blocking",
            "strata: dev-gcp credentials: found",
            "strata: dev-gcp cluster: found",
            "strata: dev-gcp workload-pool: found",
            "strata: dev-gcp addon gcs-fuse-csi-driver: found",
            "strata: dev-gcp bucket data: found",
            "strata: dev-gcp dns zone: missing",
        ],
        "{}",
        text(&loud.stderr)
    );
    for flags in [&["--quiet"][..], &["-q"], &["--format", "json"]] {
        let quiet = preflight(flags);
        exit(&quiet, 2);
        assert!(
            !text(&quiet.stderr).contains("strata: "),
            "{flags:?}: {}",
            text(&quiet.stderr)
        );
    }
    assert_eq!(text(&preflight(&["--quiet"]).stdout), text(&loud.stdout));
}

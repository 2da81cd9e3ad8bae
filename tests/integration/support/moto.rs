//! One moto server (S3, IAM, STS) per test process, on a free loopback port: moto's
//! own server with the one S3 behaviour it lacks that strata relies on (the tags of a
//! CreateBucket), from tests/py/moto_server.py.
//!
//! Started from a thread that lives as long as the process, with a parent-death
//! signal, so the server goes away with the test binary.

use std::sync::OnceLock;

use super::{assert_loopback, free_port, start_server};

/// moto's default account: credentials without an assumed role belong to it.
pub const ACCOUNT: &str = "123456789012";

static URL: OnceLock<String> = OnceLock::new();

/// The URL of the shared moto server, started on first use.
pub fn url() -> &'static str {
    URL.get_or_init(|| {
        let port = free_port();
        // moto with the tags of a CreateBucket applied as S3 applies them
        // (tests/py/moto_server.py; moto itself drops them).
        let args = [
            super::repo_root()
                .join("tests/py/moto_server.py")
                .display()
                .to_string(),
            "-H".to_owned(),
            "127.0.0.1".to_owned(),
            "-p".to_owned(),
            port.to_string(),
        ];
        start_server("python", &args, port, "/moto-api/")
    })
}

/// An SDK config for moto, in `region`, as the default account.
pub async fn sdk_config(region: &str) -> aws_config::SdkConfig {
    let url = url();
    assert_loopback(url);
    strata::resources::http::aws_config()
        .region(aws_config::Region::new(region.to_owned()))
        .endpoint_url(url)
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "test", "test", None, None, "moto",
        ))
        .load()
        .await
}

pub async fn s3(region: &str) -> aws_sdk_s3::Client {
    let conf = sdk_config(region).await;
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&conf)
            .force_path_style(true)
            .build(),
    )
}

pub async fn iam() -> aws_sdk_iam::Client {
    aws_sdk_iam::Client::new(&sdk_config("us-east-1").await)
}

/// strata run against this moto (and nothing else): moto's test credentials, every
/// per-service endpoint and profile setting cleared, files of `dir` standing in for the
/// AWS config files (there are none).
pub fn command(dir: &std::path::Path) -> std::process::Command {
    let url = url();
    assert_loopback(url);
    let mut cmd = super::strata();
    cmd.env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_ENDPOINT_URL", url)
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_REGION")
        .env_remove("AWS_DEFAULT_REGION")
        .env_remove("AWS_ENDPOINT_URL_EKS")
        .env_remove("AWS_ENDPOINT_URL_IAM")
        .env_remove("AWS_ENDPOINT_URL_S3")
        .env_remove("AWS_ENDPOINT_URL_STS")
        .env("AWS_CONFIG_FILE", dir.join("no-aws-config"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            dir.join("no-aws-credentials"),
        )
        .env("AWS_EC2_METADATA_DISABLED", "true");
    cmd
}

//! One moto server (S3, IAM, STS) per test process, on a free loopback port.
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
        let args = [
            "-H".to_owned(),
            "127.0.0.1".to_owned(),
            "-p".to_owned(),
            port.to_string(),
        ];
        start_server("moto_server", &args, port, "/moto-api/")
    })
}

/// An SDK config for moto, in `region`, as the default account.
pub async fn sdk_config(region: &str) -> aws_config::SdkConfig {
    let url = url();
    assert_loopback(url);
    aws_config::defaults(aws_config::BehaviorVersion::latest())
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

//! The one HTTPS stack every cloud call goes through: rustls with the `ring` crypto
//! provider, for the AWS SDK (its hyper 1.x client) and for the Google APIs (reqwest,
//! gcp_auth).
//!
//! Why not the SDK's default client: it is rustls with `aws-lc-rs`, whose C library
//! (aws-lc-sys, built with cmake) was the costliest unit of a fresh build after the SDK
//! crates themselves and strata, and the SDK crates' default features also compiled a
//! second, legacy stack (hyper 0.14, rustls 0.21) that strata never used. `ring` is
//! already needed by gcp_auth. So the SDK crates are built without their default HTTPS
//! client and strata hands them this one,
//! configured as the SDK's own default is (proxy settings from the environment, the
//! SDK's timeouts, the system's trusted certificates, which `SSL_CERT_FILE` replaces:
//! tested in `aws::plan_over_https_checks_the_servers_certificate`).

use std::sync::Once;

use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use aws_smithy_http_client::{Builder, ConnectorBuilder};

/// `aws_config::defaults(BehaviorVersion::latest())` with strata's HTTPS client. Every
/// AWS SDK config strata loads starts here: without it the SDK has no HTTP client.
pub fn aws_config() -> aws_config::ConfigLoader {
    // The SDK's default HTTPS client (aws-smithy-runtime's `default_https_client` for
    // the latest behavior version), with `ring` in place of `aws-lc-rs`.
    let client = Builder::new().build_with_connector_fn(|settings, runtime_components| {
        let mut conn =
            ConnectorBuilder::default().tls_provider(tls::Provider::Rustls(CryptoMode::Ring));
        conn.set_connector_settings(settings.cloned());
        if let Some(components) = runtime_components {
            conn.set_sleep_impl(components.sleep_impl());
        }
        conn.set_proxy_config(Some(ProxyConfig::from_env()));
        conn.build()
    });
    aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(client)
}

/// A reqwest client builder whose TLS uses `ring`. reqwest is built without a crypto
/// provider of its own (`rustls-no-provider`), so this installs `ring` as the process's
/// default first; every reqwest client strata (or a test) makes must come after it.
pub fn reqwest_builder() -> reqwest::ClientBuilder {
    install_crypto_provider();
    reqwest::Client::builder()
}

/// Makes `ring` the process-wide rustls crypto provider, once. Idempotent; harmless if
/// one is installed already.
pub fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

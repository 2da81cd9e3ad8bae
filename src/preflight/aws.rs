//! Preflight on AWS, read calls only: STS GetCallerIdentity, IAM
//! GetOpenIDConnectProvider (irsa), EKS DescribeCluster /
//! ListAddons / DescribeAddon, S3 HeadBucket / GetBucketTagging, Route53
//! ListHostedZones, ACM ListCertificates / DescribeCertificate.

use std::collections::BTreeMap;

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::error::SdkError;

use super::{Blocked, Certificate, Check, Checks, Zone, pick_certificate, pick_zone};
use crate::config::lock::{Facts, HostFacts};
use crate::model::{AwsIdentity, EksAddon, Target};

struct Clients {
    sts: aws_sdk_sts::Client,
    iam: aws_sdk_iam::Client,
    eks: aws_sdk_eks::Client,
    s3: aws_sdk_s3::Client,
    route53: aws_sdk_route53::Client,
    acm: aws_sdk_acm::Client,
}

async fn clients(region: &str) -> Clients {
    let conf = crate::resources::http::aws_config()
        .region(aws_config::Region::new(region.to_owned()))
        .load()
        .await;
    let s3_conf = aws_sdk_s3::config::Builder::from(&conf)
        .force_path_style(conf.endpoint_url().is_some())
        .build();
    Clients {
        sts: aws_sdk_sts::Client::new(&conf),
        iam: aws_sdk_iam::Client::new(&conf),
        eks: aws_sdk_eks::Client::new(&conf),
        s3: aws_sdk_s3::Client::from_conf(s3_conf),
        route53: aws_sdk_route53::Client::new(&conf),
        acm: aws_sdk_acm::Client::new(&conf),
    }
}

/// `Code: message` of a failed call (or the transport error).
fn why<E, R>(e: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    match (e.code(), e.message()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.to_owned(),
        _ => {
            let mut parts = Vec::new();
            let mut current: Option<&(dyn std::error::Error + 'static)> = Some(e);
            while let Some(err) = current {
                let text = err.to_string();
                if !text.is_empty() && !parts.iter().any(|p: &String| p.contains(&text)) {
                    parts.push(text);
                }
                current = err.source();
            }
            parts.join(": ")
        }
    }
}

/// Runs every check of an AWS target, in order, until one blocks.
pub async fn run(target: &Target) -> (Vec<Check>, Facts) {
    let c = clients(&target.aws().region).await;
    let mut checks = Checks::new(&target.name);
    let mut facts = Facts::default();
    let _ = checks_in_order(&c, target, &mut checks, &mut facts).await;
    (checks.into_vec(), facts)
}

async fn checks_in_order(
    c: &Clients,
    target: &Target,
    checks: &mut Checks,
    facts: &mut Facts,
) -> Result<(), Blocked> {
    let aws = target.aws();
    let region = &aws.region;
    checks.push(account(c, target).await)?;
    if let Some(cluster) = &aws.cluster {
        let issuer = cluster_check(c, target, cluster, checks).await?;
        if aws.identity == AwsIdentity::Irsa {
            checks.push(issuer_check(target, cluster, issuer.as_deref()))?;
            if let Some(issuer) = &issuer {
                checks.push(oidc_provider_check(c, target, cluster, issuer).await)?;
            }
        }
        for addon in needed_addons(target) {
            let check = if aws.self_managed_addons.contains(&addon) {
                self_managed_addon(target, addon)
            } else {
                addon_check(c, cluster, region, addon.as_str()).await
            };
            checks.push(check)?;
        }
    } else if !target.config.workloads.is_empty() {
        checks.push(Check::missing(
            "cluster",
            "aws.cluster is not set: the cluster, its issuer and add-ons were not checked",
            "set aws.cluster to the EKS cluster's name",
        ))?;
    }
    for (key, names) in &target.names.buckets {
        let adopt = target.config.buckets.get(key).is_some_and(|b| b.adopt);
        checks.push(bucket_check(c, target, key, &names.name, adopt).await)?;
    }
    discover(c, target, checks, facts).await
}

async fn account(c: &Clients, target: &Target) -> Check {
    let want = &target.aws().account_id;
    match c.sts.get_caller_identity().send().await {
        Ok(out) => {
            let account = out.account().unwrap_or_default();
            if account == want {
                Check::found(
                    "credentials",
                    format!("the credentials belong to account {account} (aws.accountId)"),
                )
            } else {
                Check::blocking(
                    "credentials",
                    format!(
                        "the credentials belong to account {account}, but aws.accountId is {want}"
                    ),
                    format!("use credentials (AWS_PROFILE, `aws sso login`) for account {want}"),
                )
            }
        }
        Err(e) => Check::blocking(
            "credentials",
            format!("STS GetCallerIdentity failed: {}", why(&e)),
            format!(
                "give strata AWS credentials for account {want} (AWS_PROFILE, `aws sso login`, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
            ),
        ),
    }
}

/// DescribeCluster: the cluster exists and is ACTIVE; its OIDC issuer, for the irsa check.
async fn cluster_check(
    c: &Clients,
    target: &Target,
    cluster: &str,
    checks: &mut Checks,
) -> Result<Option<String>, Blocked> {
    let region = &target.aws().region;
    let described = c.eks.describe_cluster().name(cluster).send().await;
    let live = match described {
        Ok(out) => out.cluster().cloned(),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            None
        }
        Err(e) => {
            checks.push(Check::blocking(
                "cluster",
                format!("EKS DescribeCluster {cluster} failed: {}", why(&e)),
                "allow eks:DescribeCluster to these credentials, or check aws.region",
            ))?;
            None
        }
    };
    let Some(live) = live else {
        checks.push(Check::blocking(
            "cluster",
            format!("EKS cluster {cluster} does not exist in {region}"),
            format!(
                "create it (`eksctl create cluster --name {cluster} --region {region}`), or set aws.cluster / aws.region to the cluster's"
            ),
        ))?;
        return Ok(None);
    };
    let status = live
        .status()
        .map(|s| s.as_str().to_owned())
        .unwrap_or_default();
    if status != "ACTIVE" {
        checks.push(Check::blocking(
            "cluster",
            format!("EKS cluster {cluster} is {status}, not ACTIVE"),
            format!("wait until it is ACTIVE: `aws eks wait cluster-active --name {cluster} --region {region}`"),
        ))?;
    }
    checks.push(Check::found(
        "cluster",
        format!("EKS cluster {cluster} is ACTIVE in {region}"),
    ))?;
    Ok(live
        .identity()
        .and_then(|i| i.oidc())
        .and_then(|o| o.issuer())
        .map(str::to_owned))
}

fn issuer_check(target: &Target, cluster: &str, live: Option<&str>) -> Check {
    let want = target.aws().oidc_issuer.as_deref();
    match (want, live) {
        (_, None) => Check::blocking(
            "oidc-issuer",
            format!("EKS cluster {cluster} has no OIDC issuer (IRSA needs one)"),
            format!(
                "use `aws.identity: podIdentity`, or give the cluster an issuer (`eksctl utils associate-iam-oidc-provider --cluster {cluster} --approve`)"
            ),
        ),
        (Some(want), Some(live)) if want.trim_end_matches('/') == live.trim_end_matches('/') => {
            Check::found(
                "oidc-issuer",
                format!("the cluster's issuer is aws.oidcIssuer ({live})"),
            )
        }
        (Some(want), Some(live)) => Check::blocking(
            "oidc-issuer",
            format!("the cluster's issuer is {live}, but aws.oidcIssuer is {want}"),
            format!("set aws.oidcIssuer: {live}"),
        ),
        (None, Some(live)) => Check::missing(
            "oidc-issuer",
            format!("aws.oidcIssuer is not set; the cluster's issuer is {live}"),
            format!("set aws.oidcIssuer: {live}"),
        ),
    }
}

/// IRSA needs the IAM OIDC provider of the cluster's issuer; apply makes it only when
/// `aws.createOidcProvider: true`.
async fn oidc_provider_check(c: &Clients, target: &Target, cluster: &str, issuer: &str) -> Check {
    let aws = target.aws();
    let arn = format!(
        "arn:{}:iam::{}:oidc-provider/{}",
        crate::model::partition(&aws.region),
        aws.account_id,
        crate::desired::iam::issuer_host_path(issuer)
    );
    let check = "oidc-provider";
    match c
        .iam
        .get_open_id_connect_provider()
        .open_id_connect_provider_arn(&arn)
        .send()
        .await
    {
        Ok(_) => Check::found(check, format!("IAM OIDC provider {arn} exists")),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_no_such_entity_exception()) =>
        {
            if aws.create_oidc_provider {
                Check::found(
                    check,
                    format!(
                        "IAM OIDC provider {arn} does not exist; apply creates it (aws.createOidcProvider: true)"
                    ),
                )
            } else {
                Check::blocking(
                    check,
                    format!(
                        "IAM OIDC provider {arn} does not exist; IRSA roles cannot be assumed without it"
                    ),
                    format!(
                        "`eksctl utils associate-iam-oidc-provider --cluster {cluster} --region {} --approve`, or set aws.createOidcProvider: true",
                        aws.region
                    ),
                )
            }
        }
        Err(e) => Check::blocking(
            check,
            format!("IAM GetOpenIDConnectProvider failed: {}", why(&e)),
            "allow iam:GetOpenIDConnectProvider to these credentials",
        ),
    }
}

/// The EKS add-ons the layers need: the Pod Identity agent when workloads use Pod
/// Identity, the Mountpoint CSI driver when a workload mounts a bucket.
pub fn needed_addons(target: &Target) -> Vec<EksAddon> {
    let mut addons = Vec::new();
    let workloads = &target.config.workloads;
    if target.aws().identity == AwsIdentity::PodIdentity && !workloads.is_empty() {
        addons.push(EksAddon::EksPodIdentityAgent);
    }
    if workloads.values().any(|w| !w.mounts.is_empty()) {
        addons.push(EksAddon::AwsMountpointS3CsiDriver);
    }
    addons
}

/// An add-on the layers say is installed outside EKS add-ons (Helm, manifests): EKS
/// does not know it, so preflight cannot see it; it is assumed, with how to make sure.
fn self_managed_addon(target: &Target, addon: EksAddon) -> Check {
    let kubectl = match &target.names.kube_context {
        Some(context) => format!("kubectl --context {context}"),
        None => "kubectl".to_owned(),
    };
    let verify = match addon {
        EksAddon::EksPodIdentityAgent => format!(
            "`{kubectl} get daemonsets --all-namespaces -l app.kubernetes.io/name=eks-pod-identity-agent` lists it with every pod ready"
        ),
        EksAddon::AwsMountpointS3CsiDriver => {
            format!("`{kubectl} get csidriver s3.csi.aws.com` finds the driver")
        }
    };
    Check::assumed(
        format!("addon {}", addon.as_str()),
        "assumed installed (aws.selfManagedAddons: installed outside EKS add-ons, which preflight cannot see)",
        verify,
    )
}

async fn addon_check(c: &Clients, cluster: &str, region: &str, addon: &str) -> Check {
    let name = format!("addon {addon}");
    let install = format!(
        "install it: `aws eks create-addon --cluster-name {cluster} --addon-name {addon} --region {region}`; or, when it is installed with Helm or manifests instead, list it in aws.selfManagedAddons"
    );
    let described = c
        .eks
        .describe_addon()
        .cluster_name(cluster)
        .addon_name(addon)
        .send()
        .await;
    match described {
        Ok(out) => {
            let status = out
                .addon()
                .and_then(|a| a.status())
                .map(|s| s.as_str().to_owned())
                .unwrap_or_default();
            let version = out.addon().and_then(|a| a.addon_version()).unwrap_or("?");
            if status == "ACTIVE" {
                Check::found(name, format!("installed on {cluster} ({version}, ACTIVE)"))
            } else {
                Check::blocking(
                    name,
                    format!("installed on {cluster} but {status}"),
                    format!(
                        "see `aws eks describe-addon --cluster-name {cluster} --addon-name {addon} --region {region}` (health.issues)"
                    ),
                )
            }
        }
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            Check::blocking(
                name,
                format!("not installed on {cluster}; pods would not get their identity or mounts"),
                install,
            )
        }
        Err(e) => Check::blocking(
            name,
            format!("EKS DescribeAddon {addon} failed: {}", why(&e)),
            "allow eks:DescribeAddon to these credentials",
        ),
    }
}

async fn bucket_check(c: &Clients, target: &Target, key: &str, name: &str, adopt: bool) -> Check {
    let check = format!("bucket {key}");
    let other_name = format!("set buckets.{key}.name to another name (bucket names are global)");
    let head =
        c.s3.head_bucket()
            .bucket(name)
            .expected_bucket_owner(&target.aws().account_id)
            .send()
            .await;
    let status = match &head {
        Ok(_) => 200,
        Err(e) => e.raw_response().map_or(0, |r| r.status().as_u16()),
    };
    match status {
        404 => Check::found(check, format!("s3 bucket {name} is free")),
        200 => {
            let tags: BTreeMap<String, String> =
                match c.s3.get_bucket_tagging().bucket(name).send().await {
                    Ok(out) => out
                        .tag_set()
                        .iter()
                        .map(|t| (t.key().to_owned(), t.value().to_owned()))
                        .collect(),
                    Err(_) => BTreeMap::new(),
                };
            let managed = tags.get("managed-by").is_some_and(|v| v == "strata");
            match tags.get("strata-target") {
                Some(owner) if managed && owner == &target.name => Check::found(
                    check,
                    format!("s3 bucket {name} exists and is this target's"),
                ),
                Some(owner) if managed => Check::blocking(
                    check,
                    format!("s3 bucket {name} belongs to strata target {owner}"),
                    other_name,
                ),
                _ if adopt => Check::found(
                    check,
                    format!(
                        "s3 bucket {name} exists, not made by strata; `adopt: true` takes it over"
                    ),
                ),
                _ => Check::blocking(
                    check,
                    format!("s3 bucket {name} exists in this account but strata did not make it"),
                    format!("set `adopt: true` on buckets.{key} to take it over, or {other_name}"),
                ),
            }
        }
        403 => Check::blocking(
            check,
            format!("s3 bucket {name} exists and belongs to another account"),
            other_name,
        ),
        301 => Check::blocking(
            check,
            format!(
                "s3 bucket {name} exists in another region than {}",
                target.aws().region
            ),
            other_name,
        ),
        _ => Check::blocking(
            check,
            format!(
                "S3 HeadBucket {name} failed: {}",
                head.err().map(|e| why(&e)).unwrap_or_default()
            ),
            "allow s3:ListBucket on the bucket to these credentials",
        ),
    }
}

async fn discover(
    c: &Clients,
    target: &Target,
    checks: &mut Checks,
    facts: &mut Facts,
) -> Result<(), Blocked> {
    let region = &target.aws().region;
    let domain = target.config.dns.as_ref().and_then(|d| d.domain.clone());
    if let Some(domain) = &domain {
        facts.domain = Some(domain.clone());
        let zones = match list_zones(c).await {
            Ok(zones) => zones,
            Err(e) => {
                return checks.push(Check::blocking(
                    "dns zone",
                    format!("Route53 ListHostedZones failed: {e}"),
                    "allow route53:ListHostedZones to these credentials",
                ));
            }
        };
        match pick_zone(domain, &zones) {
            Some(zone) => {
                facts.zone_id = Some(zone.id.clone());
                checks.push(Check::found(
                    "dns zone",
                    format!("Route53 hosted zone {} ({}) holds {domain}", zone.id, zone.name.trim_end_matches('.')),
                ))?;
            }
            None => checks.push(Check::missing(
                "dns zone",
                format!("no public Route53 hosted zone holds {domain}"),
                format!("create one (`aws route53 create-hosted-zone --name {domain} --caller-reference strata-{domain}`) and delegate {domain} to its name servers"),
            ))?,
        }
    }
    let hosts = super::hosts(target);
    if hosts.is_empty() {
        return Ok(());
    }
    let certificates = match list_certificates(c).await {
        Ok(certs) => certs,
        Err(e) => {
            return checks.push(Check::blocking(
                "certificates",
                format!("ACM ListCertificates failed: {e}"),
                "allow acm:ListCertificates and acm:DescribeCertificate to these credentials",
            ));
        }
    };
    for (key, host) in hosts {
        let check = format!("certificate {key}");
        let (issued, other) = pick_certificate(&host, &certificates);
        let cert_arn = issued.map(|c| c.arn.clone());
        match (issued, other) {
            (Some(cert), _) => checks.push(Check::found(
                check,
                format!(
                    "{} covers {host} (ISSUED, {})",
                    cert.arn,
                    cert.names.join(", ")
                ),
            ))?,
            (None, Some(cert)) => checks.push(Check::missing(
                check,
                format!("no ISSUED ACM certificate in {region} covers {host}; {} does but is {}", cert.arn, cert.status),
                format!("complete its validation (`aws acm describe-certificate --certificate-arn {} --region {region}` shows the DNS record), or request one", cert.arn),
            ))?,
            (None, None) => checks.push(Check::missing(
                check,
                format!("no ACM certificate in {region} covers {host}"),
                format!("request one: `aws acm request-certificate --domain-name {host} --validation-method DNS --region {region}`, and add its validation record"),
            ))?,
        }
        facts.hosts.insert(
            key,
            HostFacts {
                name: host,
                cert_arn,
            },
        );
    }
    Ok(())
}

async fn list_zones(c: &Clients) -> Result<Vec<Zone>, String> {
    let mut zones = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let out = c
            .route53
            .list_hosted_zones()
            .set_marker(marker.clone())
            .send()
            .await
            .map_err(|e| why(&e))?;
        for z in out.hosted_zones() {
            zones.push(Zone {
                id: z.id().trim_start_matches("/hostedzone/").to_owned(),
                name: z.name().to_owned(),
                private: z.config().is_some_and(|c| c.private_zone()),
            });
        }
        match out.next_marker() {
            Some(next) if out.is_truncated() => marker = Some(next.to_owned()),
            _ => return Ok(zones),
        }
    }
}

/// Every certificate of the region, every key type (ListCertificates gives RSA 2048 only
/// unless asked), with its names and status read from DescribeCertificate.
async fn list_certificates(c: &Clients) -> Result<Vec<Certificate>, String> {
    use aws_sdk_acm::types::{Filters, KeyAlgorithm};
    let key_types = [
        KeyAlgorithm::Rsa1024,
        KeyAlgorithm::Rsa2048,
        KeyAlgorithm::Rsa3072,
        KeyAlgorithm::Rsa4096,
        KeyAlgorithm::EcPrime256v1,
        KeyAlgorithm::EcSecp384r1,
        KeyAlgorithm::EcSecp521r1,
    ];
    let includes = Filters::builder()
        .set_key_types(Some(key_types.to_vec()))
        .build();
    let mut arns = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let out = c
            .acm
            .list_certificates()
            .includes(includes.clone())
            .set_next_token(token.clone())
            .send()
            .await
            .map_err(|e| why(&e))?;
        arns.extend(
            out.certificate_summary_list()
                .iter()
                .filter_map(|s| s.certificate_arn().map(str::to_owned)),
        );
        match out.next_token() {
            Some(next) if !next.is_empty() => token = Some(next.to_owned()),
            _ => break,
        }
    }
    let mut certificates = Vec::new();
    for arn in arns {
        let out = c
            .acm
            .describe_certificate()
            .certificate_arn(&arn)
            .send()
            .await
            .map_err(|e| why(&e))?;
        let Some(detail) = out.certificate() else {
            continue;
        };
        let mut names: Vec<String> = detail
            .domain_name()
            .into_iter()
            .map(str::to_owned)
            .collect();
        for san in detail.subject_alternative_names() {
            if !names.contains(san) {
                names.push(san.clone());
            }
        }
        certificates.push(Certificate {
            arn,
            names,
            status: detail
                .status()
                .map(|s| s.as_str().to_owned())
                .unwrap_or_default(),
        });
    }
    Ok(certificates)
}

/// What no longer holds of a lock file's facts, read cheaply: the zone by its id and
/// each certificate by its ARN (one call each). Empty when the lock still matches.
pub async fn stale_facts(target: &Target, facts: &Facts) -> Vec<String> {
    let c = clients(&target.aws().region).await;
    let mut stale = Vec::new();
    if let (Some(zone), Some(domain)) = (&facts.zone_id, &facts.domain) {
        match c.route53.get_hosted_zone().id(zone).send().await {
            Ok(out) => {
                let name = out
                    .hosted_zone()
                    .map(|z| z.name().to_owned())
                    .unwrap_or_default();
                let holds = pick_zone(
                    domain,
                    &[Zone {
                        id: zone.clone(),
                        name: name.clone(),
                        private: false,
                    }],
                )
                .is_some();
                if !holds {
                    stale.push(format!(
                        "dns.zoneId: hosted zone {zone} is {name}, which does not hold {domain}"
                    ));
                }
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_no_such_hosted_zone()) =>
            {
                stale.push(format!("dns.zoneId: hosted zone {zone} no longer exists"));
            }
            Err(e) => stale.push(format!(
                "dns.zoneId: Route53 GetHostedZone {zone} failed: {}",
                why(&e)
            )),
        }
    }
    for (key, host) in &facts.hosts {
        let Some(arn) = &host.cert_arn else { continue };
        let path = format!("dns.hosts.{key}.certArn");
        match c
            .acm
            .describe_certificate()
            .certificate_arn(arn)
            .send()
            .await
        {
            Ok(out) => {
                let Some(cert) = out.certificate() else {
                    continue;
                };
                let status = cert.status().map(|s| s.as_str()).unwrap_or_default();
                let mut names: Vec<&str> = cert.domain_name().into_iter().collect();
                names.extend(cert.subject_alternative_names().iter().map(String::as_str));
                if status != "ISSUED" {
                    stale.push(format!("{path}: certificate {arn} is {status}"));
                } else if !names.iter().any(|n| super::covers(n, &host.name).is_some()) {
                    stale.push(format!(
                        "{path}: certificate {arn} no longer covers {}",
                        host.name
                    ));
                }
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                stale.push(format!("{path}: certificate {arn} no longer exists"));
            }
            Err(e) => stale.push(format!(
                "{path}: ACM DescribeCertificate {arn} failed: {}",
                why(&e)
            )),
        }
    }
    stale
}

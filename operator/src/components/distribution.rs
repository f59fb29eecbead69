//! The CloudFront distribution serving the renditions.
//!
//! Three S3 origins (one per output bucket, regional domain names) signed by
//! the stack's origin access control; behaviours `/webp/*`, `/jpeg/*`,
//! `/png/*` (from [`Format::cdn_path_pattern`]) route to their bucket and the
//! default behaviour to the WebP one; HTTPS redirect, GET/HEAD/OPTIONS
//! allowed, GET/HEAD cached, compression, HTTP/2 and HTTP/3, IPv6, price class
//! and TTLs from the spec, no default root object, the stack's tags and a
//! comment naming the stack. Custom domains: the spec's aliases with its ACM
//! certificate (SNI, minimum protocol [`MIN_PROTOCOL`]), or none with
//! CloudFront's default certificate — both managed, so aliases added by hand
//! are removed (put them in `spec.cdn.aliases`).
//!
//! Caching: every behaviour uses a cache policy (`CachePolicyId`), never the
//! legacy cache settings (`ForwardedValues`, `MinTTL`/`DefaultTTL`/`MaxTTL`).
//! With the spec's default TTLs it is AWS's managed `CachingOptimized`
//! ([`CACHING_OPTIMIZED`]; the renditions' own `Cache-Control` decides how
//! long they stay); with other TTLs it is the stack's own policy
//! ([`super::cache_policy`]: the same cache key with the spec's TTLs), whose
//! id the graph hands over ([`CachePolicy::Owned`]). A distribution written
//! by an older version with the legacy settings reads back fine: its
//! behaviours have no cache policy, which is drift, and the update replaces
//! the legacy settings by the cache policy.
//!
//! Identity: the `CallerReference` is deterministic per stack
//! ([`caller_reference`]). The distribution is read by the id the stack's
//! status last reported ([`DesiredDistribution::known_id`]); without one it is
//! found by listing (prefiltered on comment/origin domains) and matching the
//! `CallerReference`. A crash after `CreateDistributionWithTags` and a retry
//! gets `DistributionAlreadyExists` naming the existing distribution, which
//! is adopted. Ownership is the stack's owner and cluster tags
//! (`ListTagsForResource`, read only for a distribution found).
//!
//! Updates: only when the normalized configuration of the managed fields
//! differs ([`diff`]); the config and a fresh ETag are read
//! (`GetDistributionConfig`) right before `UpdateDistribution`, the managed
//! fields are replaced and every other field (logging, restrictions, WAF,
//! error responses, …) is sent back unchanged; one retry on
//! `PreconditionFailed`. Tag drift is one more change (`tags`), repaired with
//! `TagResource`/`UntagResource`. CloudFront accepts updates while a
//! distribution is `InProgress`, so nothing waits for it; but the component is
//! `Progressing` with reason [`DEPLOYING_REASON`] until it is `Deployed`.
//!
//! Deletion is a state machine over several passes (the `delete` of
//! [`DesiredDistribution`]'s [`Component`] implementation): disable → wait
//! until the disabled configuration is `Deployed` → delete with the new ETag.
//! The origin access control and the stack's own cache policy are deleted
//! after that.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use aws_sdk_cloudfront::types::{
    Aliases, AllowedMethods, CacheBehavior, CacheBehaviors, CachedMethods, DefaultCacheBehavior,
    DistributionConfig, DistributionConfigWithTags, EventType, FunctionAssociation,
    FunctionAssociations, HttpVersion, LambdaFunctionAssociations, Method, MinimumProtocolVersion,
    Origin, Origins, PriceClass, S3OriginConfig, SslSupportMethod, Tag, TagKeys, Tags,
    TrustedKeyGroups, TrustedSigners, ViewerCertificate, ViewerProtocolPolicy,
};
use imagestack_contract::Format;

use super::{
    Change, Component, ComponentName, Created, Ctx, Deletion, Output, Progress, Resolved, Updated,
    changed_concurrently, code_of, extra_tag_keys, missing_tags, owner_from_tags, tag_change,
};
use crate::aws::partition;
use crate::error::{Error, ErrorClass, Result};
use crate::naming::{NAME_PREFIX, Ownership, StackId, cut};

/// The kind of resource, as errors and events name it.
const KIND: &str = "CloudFront distribution";

/// Condition/state reason while CloudFront deploys a change to its edge locations.
pub const DEPLOYING_REASON: &str = "CloudFrontDeploying";
/// `Status` of a distribution whose last change reached every edge location.
pub const DEPLOYED: &str = "Deployed";
/// CloudFront's limit on `Comment`.
pub const MAX_COMMENT_LEN: usize = 128;
/// Seed defaults (seconds): minimum, default and maximum TTL.
pub const DEFAULT_TTLS: (i64, i64, i64) = (0, 30 * 24 * 3600, 30 * 24 * 3600);
/// AWS's managed cache policy `Managed-CachingOptimized` (same id in every
/// account): cache key = path (+ gzip/brotli), no cookies, headers or query
/// strings; TTLs 1 s / 1 day / 1 year, so the renditions' own
/// `Cache-Control: max-age=31536000, immutable` decides.
pub const CACHING_OPTIMIZED: &str = "658327ea-f89d-4fab-a63d-7e88639e58f6";
/// The field name of tag drift among the changes.
const TAGS_FIELD: &str = "tags";
/// The behaviour whose viewer requests the stack's CloudFront Function
/// rewrites to a rendition (one URL per image: format and width picked per
/// viewer).
pub const EDGE_PATH_PATTERN: &str = imagestack_contract::edge::PATH_PATTERN;

/// What the distribution should look like (built by [`desired`]; the plan
/// then sets [`DesiredDistribution::known_id`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredDistribution {
    /// Deterministic per stack: a retried create finds the existing distribution.
    pub caller_reference: String,
    /// Names the stack (≤ 128 characters).
    pub comment: String,
    /// One S3 origin per output format: format, bucket name, regional domain
    /// (`<bucket>.s3.<region>.amazonaws.com`).
    pub origins: Vec<(Format, String, String)>,
    /// `PriceClass_100`, `PriceClass_200` or `PriceClass_All`.
    pub price_class: String,
    /// The cache policy of every behaviour.
    pub cache_policy: CachePolicy,
    /// Resource tags, including the ownership tags.
    pub tags: BTreeMap<String, String>,
    /// Serve traffic.
    pub enabled: bool,
    /// Custom domains (CNAMEs); sorted, no duplicates.
    pub aliases: Vec<String>,
    /// ACM certificate (us-east-1) for the aliases; `None`: CloudFront's default certificate.
    pub certificate_arn: Option<String>,
    /// The stack's CloudFront Function (ARN): the `/i/*` behaviour runs it
    /// on viewer requests. `None`: no `/i/*` behaviour.
    pub edge_function_arn: Option<String>,
    /// The distribution id the stack's status last reported, read first
    /// (`None`: found by caller reference).
    pub known_id: Option<String>,
    /// The id `DistributionAlreadyExists` named in this pass (adopted).
    adopted_id: OnceLock<String>,
}

/// Which cache policy the behaviours use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CachePolicy {
    /// An existing policy by id (AWS's managed `CachingOptimized`).
    Managed(String),
    /// The stack's own policy (custom TTLs): its id comes from the
    /// `cache-policy` component in the same pass.
    Owned,
}

impl DesiredDistribution {
    /// The cache policy id the behaviours use in this pass.
    pub fn cache_policy_id<'a>(&'a self, inputs: &'a Resolved) -> Result<&'a str> {
        match &self.cache_policy {
            CachePolicy::Managed(id) => Ok(id),
            CachePolicy::Owned => inputs.require_cache_policy_id(),
        }
    }

    /// The configuration of this pass (OAC and cache policy from `inputs`).
    fn config_for(&self, inputs: &Resolved) -> Result<DistributionConfig> {
        config(
            self,
            inputs.require_oac_id()?,
            self.cache_policy_id(inputs)?,
        )
    }
}

/// What dependants and status need once the distribution exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DistributionOutputs {
    /// Distribution id (`E…`).
    pub id: String,
    /// Distribution ARN (the output buckets' grants are conditioned on it).
    pub arn: String,
    /// `dxxxx.cloudfront.net`.
    pub domain: String,
}

/// Deterministic `CallerReference`: `imagestack-<env>-<hash24>` of the
/// stack's identity (unique per namespace/name/environment, ≤ 56 characters).
pub fn caller_reference(id: &StackId) -> String {
    format!(
        "{NAME_PREFIX}-{}-{}",
        id.environment,
        id.hash("distribution", 24)
    )
}

/// Comment naming the stack: `imagestack <namespace>/<name> (<env>)`, cut to 128 characters.
pub fn comment(id: &StackId) -> String {
    cut(
        &format!(
            "{NAME_PREFIX} {} ({})",
            id.owner_tag_value(),
            id.environment
        ),
        MAX_COMMENT_LEN,
    )
    .to_string()
}

/// Regional REST endpoint of a bucket, the origin domain CloudFront needs
/// for OAC signing: `<bucket>.s3.<region>.amazonaws.com` (`.com.cn` in China).
pub fn s3_regional_domain(bucket: &str, region: &str) -> String {
    let suffix = if partition(region) == "aws-cn" {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    };
    format!("{bucket}.s3.{region}.{suffix}")
}

/// Origin id of a format's bucket inside the distribution.
pub fn origin_id(format: Format) -> String {
    format!("s3-{}", format.as_str())
}

/// The desired distribution of a stack. `buckets` lists the output bucket of
/// each format (normally all three); `ttls` = (min, default, max) seconds.
/// `known_id` is `None`: set it to the id on status.
pub fn desired(
    id: &StackId,
    region: &str,
    buckets: &[(Format, String)],
    price_class: &str,
    ttls: (i64, i64, i64),
    tags: BTreeMap<String, String>,
) -> DesiredDistribution {
    DesiredDistribution {
        caller_reference: caller_reference(id),
        comment: comment(id),
        origins: buckets
            .iter()
            .map(|(f, b)| (*f, b.clone(), s3_regional_domain(b, region)))
            .collect(),
        price_class: price_class.to_string(),
        cache_policy: if ttls == DEFAULT_TTLS {
            CachePolicy::Managed(CACHING_OPTIMIZED.to_string())
        } else {
            CachePolicy::Owned
        },
        tags,
        enabled: true,
        aliases: Vec::new(),
        certificate_arn: None,
        edge_function_arn: None,
        known_id: None,
        adopted_id: OnceLock::new(),
    }
}

fn build_err(what: &str) -> impl Fn(aws_smithy_types::error::operation::BuildError) -> Error + '_ {
    move |e| Error::InvalidSpec(format!("distribution {what}: {e}"))
}

fn allowed_methods() -> Result<AllowedMethods> {
    AllowedMethods::builder()
        .quantity(3)
        .items(Method::Get)
        .items(Method::Head)
        .items(Method::Options)
        .cached_methods(
            CachedMethods::builder()
                .quantity(2)
                .items(Method::Get)
                .items(Method::Head)
                .build()
                .map_err(build_err("cached methods"))?,
        )
        .build()
        .map_err(build_err("allowed methods"))
}

/// The behaviour's CloudFront Functions: `viewer_request` on viewer requests, or none.
fn function_associations(viewer_request: Option<&str>) -> Result<FunctionAssociations> {
    let items = viewer_request
        .map(|arn| {
            FunctionAssociation::builder()
                .function_arn(arn)
                .event_type(EventType::ViewerRequest)
                .build()
                .map_err(build_err("function association"))
        })
        .transpose()?;
    FunctionAssociations::builder()
        .quantity(i32::from(items.is_some()))
        .set_items(items.map(|a| vec![a]))
        .build()
        .map_err(build_err("function associations"))
}

/// The same settings on the default and on every path behaviour (the two
/// builder types share method names but no trait).
macro_rules! behavior_settings {
    ($builder:expr, $target:expr, $cache_policy_id:expr) => {{ behavior_settings!($builder, $target, $cache_policy_id, None::<&str>) }};
    ($builder:expr, $target:expr, $cache_policy_id:expr, $viewer_request:expr) => {{
        $builder
            .target_origin_id($target)
            .viewer_protocol_policy(ViewerProtocolPolicy::RedirectToHttps)
            .allowed_methods(allowed_methods()?)
            .compress(true)
            .smooth_streaming(false)
            .trusted_signers(
                TrustedSigners::builder()
                    .enabled(false)
                    .quantity(0)
                    .build()
                    .map_err(build_err("trusted signers"))?,
            )
            .trusted_key_groups(
                TrustedKeyGroups::builder()
                    .enabled(false)
                    .quantity(0)
                    .build()
                    .map_err(build_err("trusted key groups"))?,
            )
            .lambda_function_associations(
                LambdaFunctionAssociations::builder()
                    .quantity(0)
                    .build()
                    .map_err(build_err("lambda function associations"))?,
            )
            .function_associations(function_associations($viewer_request)?)
            .cache_policy_id($cache_policy_id)
    }};
}

/// The full `DistributionConfig` for create (and the managed fields for
/// update): origins signed by the OAC `oac_id`, every behaviour on the cache
/// policy `cache_policy_id`.
pub fn config(
    d: &DesiredDistribution,
    oac_id: &str,
    cache_policy_id: &str,
) -> Result<DistributionConfig> {
    if d.origins.is_empty() {
        return Err(Error::InvalidSpec(
            "the distribution needs at least one output bucket".into(),
        ));
    }
    let mut origins = Vec::with_capacity(d.origins.len());
    for (format, _bucket, domain) in &d.origins {
        origins.push(
            Origin::builder()
                .id(origin_id(*format))
                .domain_name(domain)
                .origin_path("")
                .origin_access_control_id(oac_id)
                // OAC replaces the legacy origin access identity: empty, but present
                // (it marks the origin as an S3 REST origin).
                .s3_origin_config(S3OriginConfig::builder().origin_access_identity("").build())
                .build()
                .map_err(build_err("origin"))?,
        );
    }
    let default_target = d
        .origins
        .iter()
        .find(|(f, _, _)| *f == Format::Webp)
        .or_else(|| d.origins.first())
        .map(|(f, _, _)| origin_id(*f))
        .unwrap_or_default();
    let default_behavior = behavior_settings!(
        DefaultCacheBehavior::builder(),
        &default_target,
        cache_policy_id
    )
    .build()
    .map_err(build_err("default cache behavior"))?;
    let mut behaviors = Vec::with_capacity(d.origins.len() + 1);
    if let Some(arn) = &d.edge_function_arn {
        // The function picks the origin per request; the target is only where a
        // request would go if it did not (it always does, or answers itself).
        behaviors.push(
            behavior_settings!(
                CacheBehavior::builder().path_pattern(EDGE_PATH_PATTERN),
                &default_target,
                cache_policy_id,
                Some(arn.as_str())
            )
            .build()
            .map_err(build_err("cache behavior"))?,
        );
    }
    for (format, _, _) in &d.origins {
        behaviors.push(
            behavior_settings!(
                CacheBehavior::builder().path_pattern(format.cdn_path_pattern()),
                origin_id(*format),
                cache_policy_id
            )
            .build()
            .map_err(build_err("cache behavior"))?,
        );
    }
    DistributionConfig::builder()
        .caller_reference(&d.caller_reference)
        .comment(&d.comment)
        .enabled(d.enabled)
        .origins(
            Origins::builder()
                .quantity(origins.len() as i32)
                .set_items(Some(origins))
                .build()
                .map_err(build_err("origins"))?,
        )
        .default_cache_behavior(default_behavior)
        .cache_behaviors(
            CacheBehaviors::builder()
                .quantity(behaviors.len() as i32)
                .set_items(Some(behaviors))
                .build()
                .map_err(build_err("cache behaviors"))?,
        )
        .price_class(PriceClass::from(d.price_class.as_str()))
        .http_version(HttpVersion::Http2and3)
        .is_ipv6_enabled(true)
        // Empty element: no default root object (an image CDN has no index page).
        .default_root_object("")
        .aliases(aliases(d)?)
        .viewer_certificate(viewer_certificate(d))
        .build()
        .map_err(build_err("config"))
}

/// Minimum TLS version viewers must speak on a custom domain.
pub const MIN_PROTOCOL: &str = "TLSv1.2_2021";

fn aliases(d: &DesiredDistribution) -> Result<Aliases> {
    let mut items = d.aliases.clone();
    items.sort();
    items.dedup();
    Aliases::builder()
        .quantity(items.len() as i32)
        .set_items((!items.is_empty()).then_some(items))
        .build()
        .map_err(build_err("aliases"))
}

/// The ACM certificate with SNI and TLS 1.2 (2021 ciphers) when the spec
/// names one, else CloudFront's default certificate.
fn viewer_certificate(d: &DesiredDistribution) -> ViewerCertificate {
    match &d.certificate_arn {
        Some(arn) => ViewerCertificate::builder()
            .cloud_front_default_certificate(false)
            .acm_certificate_arn(arn)
            .ssl_support_method(SslSupportMethod::SniOnly)
            .minimum_protocol_version(MinimumProtocolVersion::from(MIN_PROTOCOL))
            .build(),
        None => ViewerCertificate::builder()
            .cloud_front_default_certificate(true)
            .build(),
    }
}

/// Replace the managed fields of `observed` by those of `desired`, keeping
/// everything else (caller reference, logging, restrictions, web ACL, error
/// responses, origin groups, …) as it is.
pub fn merge(mut observed: DistributionConfig, desired: &DistributionConfig) -> DistributionConfig {
    observed.origins = desired.origins.clone();
    observed.default_cache_behavior = desired.default_cache_behavior.clone();
    observed.cache_behaviors = desired.cache_behaviors.clone();
    observed.comment = desired.comment.clone();
    observed.price_class = desired.price_class.clone();
    observed.enabled = desired.enabled;
    observed.http_version = desired.http_version.clone();
    observed.is_ipv6_enabled = desired.is_ipv6_enabled;
    observed.default_root_object = desired.default_root_object.clone();
    observed.aliases = desired.aliases.clone();
    observed.viewer_certificate = desired.viewer_certificate.clone();
    observed
}

fn s(v: Option<&str>) -> String {
    v.unwrap_or_default().to_string()
}

fn b(v: Option<bool>) -> String {
    v.unwrap_or(false).to_string()
}

fn list<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    let mut v: Vec<&str> = items.into_iter().collect();
    v.sort_unstable();
    v.join(",")
}

/// Flatten one behaviour's settings under `p` (both behaviour types have the
/// same accessors but no common trait).
macro_rules! flatten_behavior {
    ($out:expr, $p:expr, $b:expr) => {{
        let out: &mut BTreeMap<String, String> = $out;
        let p: &str = $p;
        let bh = $b;
        let mut put = |k: &str, v: String| {
            out.insert(format!("{p}.{k}"), v);
        };
        put("targetOriginId", bh.target_origin_id().to_string());
        put(
            "viewerProtocolPolicy",
            bh.viewer_protocol_policy().as_str().to_string(),
        );
        put(
            "allowedMethods",
            bh.allowed_methods()
                .map(|m| list(m.items().iter().map(|x| x.as_str())))
                .unwrap_or_default(),
        );
        put(
            "cachedMethods",
            bh.allowed_methods()
                .and_then(|m| m.cached_methods())
                .map(|c| list(c.items().iter().map(|x| x.as_str())))
                .unwrap_or_default(),
        );
        put("compress", b(bh.compress()));
        put("smoothStreaming", b(bh.smooth_streaming()));
        put("cachePolicyId", s(bh.cache_policy_id()));
        put("originRequestPolicyId", s(bh.origin_request_policy_id()));
        put(
            "responseHeadersPolicyId",
            s(bh.response_headers_policy_id()),
        );
        put("fieldLevelEncryptionId", s(bh.field_level_encryption_id()));
        put("realtimeLogConfigArn", s(bh.realtime_log_config_arn()));
        put(
            "trustedSigners",
            bh.trusted_signers()
                .filter(|t| t.enabled() || !t.items().is_empty())
                .map(|t| list(t.items().iter().map(String::as_str)))
                .unwrap_or_else(|| "none".into()),
        );
        put(
            "trustedKeyGroups",
            bh.trusted_key_groups()
                .filter(|t| t.enabled() || !t.items().is_empty())
                .map(|t| list(t.items().iter().map(String::as_str)))
                .unwrap_or_else(|| "none".into()),
        );
        put(
            "functionAssociations",
            bh.function_associations()
                .map(|f| {
                    let v: Vec<String> = f
                        .items()
                        .iter()
                        .map(|a| format!("{}={}", a.event_type().as_str(), a.function_arn()))
                        .collect();
                    list(v.iter().map(String::as_str))
                })
                .unwrap_or_default(),
        );
        put(
            "lambdaFunctionAssociations",
            bh.lambda_function_associations()
                .map(|f| {
                    let v: Vec<String> = f
                        .items()
                        .iter()
                        .map(|a| format!("{}={}", a.event_type().as_str(), a.lambda_function_arn()))
                        .collect();
                    list(v.iter().map(String::as_str))
                })
                .unwrap_or_default(),
        );
        // The desired behaviours always have a cache policy. Without one (a
        // distribution written by an older version) the legacy cache settings
        // are listed, so the repair names them.
        if bh.cache_policy_id().is_none_or(str::is_empty) {
            let fv = bh.forwarded_values();
            put(
                "forwardedValues.queryString",
                fv.map(|f| f.query_string().to_string())
                    .unwrap_or_else(|| "unset".into()),
            );
            put(
                "forwardedValues.cookies",
                fv.and_then(|f| f.cookies())
                    .map(|c| {
                        let names = c
                            .whitelisted_names()
                            .map(|n| list(n.items().iter().map(String::as_str)))
                            .unwrap_or_default();
                        if names.is_empty() {
                            c.forward().as_str().to_string()
                        } else {
                            format!("{}:{names}", c.forward().as_str())
                        }
                    })
                    .unwrap_or_else(|| "unset".into()),
            );
            put(
                "forwardedValues.headers",
                fv.and_then(|f| f.headers())
                    .map(|h| list(h.items().iter().map(String::as_str)))
                    .unwrap_or_default(),
            );
            put(
                "forwardedValues.queryStringCacheKeys",
                fv.and_then(|f| f.query_string_cache_keys())
                    .map(|h| list(h.items().iter().map(String::as_str)))
                    .unwrap_or_default(),
            );
            let ttl = |v: Option<i64>| v.map(|t| t.to_string()).unwrap_or_else(|| "unset".into());
            put("minTTL", ttl(bh.min_ttl()));
            put("defaultTTL", ttl(bh.default_ttl()));
            put("maxTTL", ttl(bh.max_ttl()));
        }
    }};
}

/// The managed fields of a configuration as `field path → value`, with AWS's
/// representational noise removed (list order where it carries no meaning,
/// quantities, `""` vs absent). Behaviour order is kept: CloudFront matches
/// path patterns in order. Unmanaged fields are not included.
#[allow(deprecated)] // reads the legacy cache settings of older distributions
pub fn normalize(cfg: &DistributionConfig) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    out.insert("comment".into(), cfg.comment().to_string());
    out.insert("enabled".into(), cfg.enabled().to_string());
    out.insert(
        "priceClass".into(),
        cfg.price_class()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "PriceClass_All".into()),
    );
    out.insert(
        "httpVersion".into(),
        cfg.http_version()
            .map(|h| h.as_str().to_string())
            .unwrap_or_else(|| "http2".into()),
    );
    out.insert("isIPV6Enabled".into(), b(cfg.is_ipv6_enabled()));
    out.insert("defaultRootObject".into(), s(cfg.default_root_object()));
    out.insert(
        "aliases".into(),
        list(
            cfg.aliases()
                .map(|a| a.items())
                .unwrap_or_default()
                .iter()
                .map(String::as_str),
        ),
    );
    // CloudFront's default certificate is one setting (AWS fills in its own
    // protocol version for it); an ACM certificate is the ARN, SNI and the
    // minimum protocol.
    let cert = cfg.viewer_certificate();
    let acm = cert
        .and_then(|c| c.acm_certificate_arn())
        .unwrap_or_default();
    let iam = cert
        .and_then(|c| c.iam_certificate_id())
        .unwrap_or_default();
    let viewer_certificate = if !acm.is_empty() || !iam.is_empty() {
        let c = cert.map(|c| {
            (
                c.ssl_support_method()
                    .map(|m| m.as_str())
                    .unwrap_or("unset"),
                c.minimum_protocol_version()
                    .map(|m| m.as_str())
                    .unwrap_or("unset"),
            )
        });
        let (method, protocol) = c.unwrap_or(("unset", "unset"));
        let source = if acm.is_empty() {
            format!("iam:{iam}")
        } else {
            format!("acm:{acm}")
        };
        format!("{source} {method} {protocol}")
    } else {
        "cloudfront-default".to_string()
    };
    out.insert("viewerCertificate".into(), viewer_certificate);
    let origins = cfg.origins().map(|o| o.items()).unwrap_or_default();
    out.insert("origins".into(), list(origins.iter().map(|o| o.id())));
    for o in origins {
        let p = format!("origins[{}]", o.id());
        out.insert(format!("{p}.domainName"), o.domain_name().to_string());
        out.insert(format!("{p}.originPath"), s(o.origin_path()));
        out.insert(
            format!("{p}.originAccessControlId"),
            s(o.origin_access_control_id()),
        );
        let kind = match (o.s3_origin_config(), o.custom_origin_config()) {
            (Some(c), _) => format!("s3(originAccessIdentity={})", c.origin_access_identity()),
            (None, Some(_)) => "custom".to_string(),
            (None, None) if o.vpc_origin_config().is_some() => "vpc".to_string(),
            (None, None) => "unset".to_string(),
        };
        out.insert(format!("{p}.type"), kind);
    }
    if let Some(d) = cfg.default_cache_behavior() {
        flatten_behavior!(&mut out, "defaultCacheBehavior", d);
    }
    let behaviors = cfg.cache_behaviors().map(|c| c.items()).unwrap_or_default();
    out.insert(
        "cacheBehaviors".into(),
        behaviors
            .iter()
            .map(|bh| bh.path_pattern())
            .collect::<Vec<_>>()
            .join(","),
    );
    for bh in behaviors {
        let p = format!("cacheBehaviors[{}]", bh.path_pattern());
        flatten_behavior!(&mut out, &p, bh);
    }
    out
}

/// Every managed field where `observed` differs from `desired`, named by its
/// path (`cacheBehaviors[/webp/*].viewerProtocolPolicy: allow-all → redirect-to-https`).
pub fn diff(desired: &DistributionConfig, observed: &DistributionConfig) -> Vec<Change> {
    let want = normalize(desired);
    let have = normalize(observed);
    let mut keys: Vec<&String> = want.keys().chain(have.keys()).collect();
    keys.sort();
    keys.dedup();
    let show = |v: Option<&String>| match v {
        None => "absent".to_string(),
        Some(v) if v.is_empty() => "\"\"".to_string(),
        Some(v) => v.clone(),
    };
    keys.into_iter()
        .filter(|k| want.get(*k) != have.get(*k))
        .map(|k| Change::new(k.as_str(), show(have.get(k)), show(want.get(k))))
        .collect()
}
/// The distribution as read from AWS.
#[derive(Debug, Clone)]
pub struct ObservedDistribution {
    /// Distribution id (`E…`).
    pub id: String,
    /// Distribution ARN.
    pub arn: String,
    /// `dxxxx.cloudfront.net`.
    pub domain: String,
    /// `InProgress` or `Deployed`.
    pub status: String,
    /// ETag of this read (for `IfMatch`).
    pub etag: String,
    /// The configuration as read.
    pub config: DistributionConfig,
    /// The distribution's tags (ownership and drift).
    pub tags: BTreeMap<String, String>,
}

impl ObservedDistribution {
    /// Id, ARN and domain for dependants and status.
    pub fn outputs(&self) -> DistributionOutputs {
        DistributionOutputs {
            id: self.id.clone(),
            arn: self.arn.clone(),
            domain: self.domain.clone(),
        }
    }
}

fn missing(action: &str, what: &str) -> Error {
    Error::Aws {
        action: action.into(),
        code: "IncompleteResponse".into(),
        message: format!("the response carries no {what}"),
        class: ErrorClass::Retryable,
    }
}

/// `GetDistribution` (without tags); `None` when it does not exist.
async fn get(cx: &Ctx<'_>, id: &str) -> Result<Option<ObservedDistribution>> {
    const ACTION: &str = "cloudfront:GetDistribution";
    let out = match cx.aws.cloudfront.get_distribution().id(id).send().await {
        Ok(o) => o,
        Err(e) if code_of(&e) == Some("NoSuchDistribution") => return Ok(None),
        Err(e) => return Err(Error::aws(ACTION, e)),
    };
    let dist = out
        .distribution()
        .ok_or_else(|| missing(ACTION, "distribution"))?;
    let config = dist
        .distribution_config()
        .cloned()
        .ok_or_else(|| missing(ACTION, "distribution config"))?;
    Ok(Some(ObservedDistribution {
        id: dist.id().to_string(),
        arn: dist.arn().to_string(),
        domain: dist.domain_name().to_string(),
        status: dist.status().to_string(),
        etag: out.e_tag().unwrap_or_default().to_string(),
        config,
        tags: BTreeMap::new(),
    }))
}

/// `GetDistributionConfig`: the config and a fresh ETag; `None` when gone.
async fn get_config(cx: &Ctx<'_>, id: &str) -> Result<Option<(DistributionConfig, String)>> {
    const ACTION: &str = "cloudfront:GetDistributionConfig";
    match cx
        .aws
        .cloudfront
        .get_distribution_config()
        .id(id)
        .send()
        .await
    {
        Ok(out) => {
            let cfg = out
                .distribution_config()
                .cloned()
                .ok_or_else(|| missing(ACTION, "distribution config"))?;
            Ok(Some((cfg, out.e_tag().unwrap_or_default().to_string())))
        }
        Err(e) if code_of(&e) == Some("NoSuchDistribution") => Ok(None),
        Err(e) => Err(Error::aws(ACTION, e)),
    }
}

/// Find the stack's distribution without a known id: list (prefiltered on the
/// comment or an origin domain of ours), then match the `CallerReference`.
async fn find_by_caller_reference(cx: &Ctx<'_>, d: &DesiredDistribution) -> Result<Option<String>> {
    let domains: Vec<&str> = d.origins.iter().map(|(_, _, dom)| dom.as_str()).collect();
    let mut marker: Option<String> = None;
    loop {
        let out = cx
            .aws
            .cloudfront
            .list_distributions()
            .set_marker(marker.clone())
            .send()
            .await
            .map_err(|e| Error::aws("cloudfront:ListDistributions", e))?;
        let Some(page) = out.distribution_list() else {
            return Ok(None);
        };
        for summary in page.items() {
            let candidate = summary.comment() == d.comment
                || summary
                    .origins()
                    .is_some_and(|o| o.items().iter().any(|o| domains.contains(&o.domain_name())));
            if !candidate {
                continue;
            }
            if let Some((cfg, _)) = get_config(cx, summary.id()).await?
                && cfg.caller_reference() == d.caller_reference
            {
                return Ok(Some(summary.id().to_string()));
            }
        }
        match page.next_marker() {
            Some(m) if page.is_truncated() && !m.is_empty() && marker.as_deref() != Some(m) => {
                marker = Some(m.to_string());
            }
            _ => return Ok(None),
        }
    }
}

/// Read the distribution without its tags: by the known id (from status) or
/// the id adopted in this pass when it still exists, else by
/// `CallerReference`. `None` when the stack has none.
async fn find(cx: &Ctx<'_>, d: &DesiredDistribution) -> Result<Option<ObservedDistribution>> {
    let mut tried: Vec<&str> = Vec::new();
    for id in [
        d.known_id.as_deref(),
        d.adopted_id.get().map(String::as_str),
    ]
    .into_iter()
    .flatten()
    .filter(|i| !i.is_empty())
    {
        if tried.contains(&id) {
            continue;
        }
        tried.push(id);
        if let Some(o) = get(cx, id).await? {
            return Ok(Some(o));
        }
    }
    match find_by_caller_reference(cx, d).await? {
        Some(id) => get(cx, &id).await,
        None => Ok(None),
    }
}

/// The distribution's tags (`ListTagsForResource`).
async fn tags_of(cx: &Ctx<'_>, arn: &str) -> Result<BTreeMap<String, String>> {
    let out = cx
        .aws
        .cloudfront
        .list_tags_for_resource()
        .resource(arn)
        .send()
        .await
        .map_err(|e| Error::aws("cloudfront:ListTagsForResource", e))?;
    Ok(out
        .tags()
        .map(|t| t.items())
        .unwrap_or_default()
        .iter()
        .map(|t| {
            (
                t.key().to_string(),
                t.value().unwrap_or_default().to_string(),
            )
        })
        .collect())
}

fn cf_tags(tags: &BTreeMap<String, String>) -> Result<Tags> {
    let items = tags
        .iter()
        .map(|(k, v)| {
            Tag::builder()
                .key(k)
                .value(v)
                .build()
                .map_err(|e| Error::InvalidSpec(format!("tag {k}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Tags::builder().set_items(Some(items)).build())
}

/// Parse the id out of `DistributionAlreadyExists`' message
/// ("… associated with another distribution. Already exists: E2QWRUHEXAMPLE").
pub fn existing_id_from_message(message: &str) -> Option<String> {
    let rest = message.rsplit_once("Already exists:")?.1.trim();
    let id: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect();
    (!id.is_empty()).then_some(id)
}

/// Read the config with a fresh ETag, let `edit` produce the new config
/// (`None`: nothing to change any more), send it with `IfMatch`; on
/// `PreconditionFailed` read again and retry once. Returns the configuration
/// that was replaced (the last fresh read), `None` when nothing was written.
async fn read_modify_write<F>(cx: &Ctx<'_>, id: &str, edit: F) -> Result<Option<DistributionConfig>>
where
    F: Fn(&DistributionConfig) -> Option<DistributionConfig>,
{
    const ACTION: &str = "cloudfront:UpdateDistribution";
    for attempt in 0..2 {
        let Some((current, etag)) = get_config(cx, id).await? else {
            return Err(Error::Aws {
                action: ACTION.into(),
                code: "NoSuchDistribution".into(),
                message: format!("distribution {id} disappeared during the update"),
                class: ErrorClass::Retryable,
            });
        };
        let Some(new) = edit(&current) else {
            return Ok(None);
        };
        match cx
            .aws
            .cloudfront
            .update_distribution()
            .id(id)
            .if_match(etag)
            .distribution_config(new)
            .send()
            .await
        {
            Ok(_) => return Ok(Some(current)),
            Err(e) if code_of(&e) == Some("PreconditionFailed") && attempt == 0 => {
                tracing::info!(
                    id,
                    "distribution changed since it was read (PreconditionFailed); reading again"
                );
            }
            Err(e) if code_of(&e) == Some("PreconditionFailed") => {
                return Err(changed_concurrently(ACTION, &format!("distribution {id}")));
            }
            Err(e) => return Err(Error::aws(ACTION, e)),
        }
    }
    Err(changed_concurrently(ACTION, &format!("distribution {id}")))
}

async fn repair_tags(
    cx: &Ctx<'_>,
    arn: &str,
    desired: &BTreeMap<String, String>,
    observed: &BTreeMap<String, String>,
) -> Result<()> {
    let extra = extra_tag_keys(desired, observed);
    if !extra.is_empty() {
        cx.aws
            .cloudfront
            .untag_resource()
            .resource(arn)
            .tag_keys(TagKeys::builder().set_items(Some(extra)).build())
            .send()
            .await
            .map_err(|e| Error::aws("cloudfront:UntagResource", e))?;
    }
    let missing: BTreeMap<String, String> = missing_tags(desired, observed);
    if !missing.is_empty() {
        cx.aws
            .cloudfront
            .tag_resource()
            .resource(arn)
            .tags(cf_tags(&missing)?)
            .send()
            .await
            .map_err(|e| Error::aws("cloudfront:TagResource", e))?;
    }
    Ok(())
}

fn deploying(seen: &ObservedDistribution) -> Progress {
    Progress::new(
        DEPLOYING_REASON,
        format!(
            "distribution {} is {}; waiting for {DEPLOYED}",
            seen.id, seen.status
        ),
    )
}

impl Component for DesiredDistribution {
    type Observed = ObservedDistribution;

    fn name(&self) -> ComponentName {
        ComponentName::Distribution
    }
    fn kind(&self) -> &'static str {
        KIND
    }
    /// The caller reference (the ARN once observed).
    fn id(&self) -> String {
        self.caller_reference.clone()
    }
    fn observed_id(&self, seen: &ObservedDistribution) -> Option<String> {
        Some(seen.arn.clone())
    }

    /// The distribution and, when there is one, its tags.
    async fn observe(&self, cx: &Ctx<'_>) -> Result<Option<ObservedDistribution>> {
        let Some(mut seen) = find(cx, self).await? else {
            return Ok(None);
        };
        seen.tags = tags_of(cx, &seen.arn).await?;
        Ok(Some(seen))
    }

    fn ownership(&self, cx: &Ctx<'_>, seen: &ObservedDistribution) -> Ownership {
        owner_from_tags(cx, &seen.tags)
    }

    /// The managed configuration fields (against the origin access control of
    /// this pass) and the tags.
    fn diff(&self, cx: &Ctx<'_>, seen: &ObservedDistribution) -> Result<Vec<Change>> {
        let want = self.config_for(cx.inputs)?;
        let mut changes = diff(&want, &seen.config);
        changes.extend(tag_change(&self.tags, &seen.tags));
        Ok(changes)
    }

    /// `CreateDistributionWithTags`. A taken caller reference
    /// (`DistributionAlreadyExists`: an earlier pass created it and crashed
    /// before status was written) is adopted: the driver observes again,
    /// reading the id the error names first.
    async fn create(&self, cx: &Ctx<'_>) -> Result<Created> {
        const ACTION: &str = "cloudfront:CreateDistributionWithTags";
        let with_tags = DistributionConfigWithTags::builder()
            .distribution_config(self.config_for(cx.inputs)?)
            .tags(cf_tags(&self.tags)?)
            .build();
        match cx
            .aws
            .cloudfront
            .create_distribution_with_tags()
            .distribution_config_with_tags(with_tags)
            .send()
            .await
        {
            Ok(out) => {
                let dist = out
                    .distribution()
                    .ok_or_else(|| missing(ACTION, "distribution"))?;
                tracing::info!(id = %dist.id(), domain = %dist.domain_name(), "created CloudFront distribution");
                Ok(Created::progressing(
                    DEPLOYING_REASON,
                    format!(
                        "distribution {} created; CloudFront is deploying it ({})",
                        dist.id(),
                        dist.status()
                    ),
                ))
            }
            Err(e) if code_of(&e) == Some("DistributionAlreadyExists") => {
                let message = aws_smithy_types::error::metadata::ProvideErrorMetadata::message(&e)
                    .unwrap_or_default()
                    .to_string();
                let existing = existing_id_from_message(&message);
                tracing::info!(caller_reference = %self.caller_reference, ?existing,
                    "distribution already exists for this caller reference; adopting it");
                if let Some(id) = existing {
                    // Set at most once per pass; a second value changes nothing.
                    let _ = self.adopted_id.set(id);
                }
                Ok(Created::done())
            }
            Err(e) => Err(Error::aws(ACTION, e)),
        }
    }

    /// Write the configuration changes (read-modify-write with a fresh ETag)
    /// and repair the tags. Reports what the write actually changed: the
    /// fresh read may differ from the observation.
    async fn update(
        &self,
        cx: &Ctx<'_>,
        seen: &ObservedDistribution,
        changes: &[Change],
    ) -> Result<Updated> {
        let mut applied = Vec::new();
        let mut written = false;
        if changes.iter().any(|c| c.field != TAGS_FIELD) {
            let want = self.config_for(cx.inputs)?;
            let replaced = read_modify_write(cx, &seen.id, |current| {
                (!diff(&want, current).is_empty()).then(|| merge(current.clone(), &want))
            })
            .await?;
            if let Some(previous) = replaced {
                written = true;
                applied = diff(&want, &previous);
            }
        }
        if let Some(tags) = changes.iter().find(|c| c.field == TAGS_FIELD) {
            repair_tags(cx, &seen.arn, &self.tags, &seen.tags).await?;
            applied.push(tags.clone());
        }
        let updated = Updated {
            changes: applied,
            progress: None,
        };
        Ok(if written {
            updated.progressing(
                DEPLOYING_REASON,
                format!(
                    "distribution {} updated; CloudFront is deploying the change",
                    seen.id
                ),
            )
        } else {
            updated
        })
    }

    /// In sync but not live at every edge location yet.
    fn settling(&self, seen: &ObservedDistribution) -> Option<Progress> {
        (seen.status != DEPLOYED).then(|| deploying(seen))
    }

    fn outputs(&self, _cx: &Ctx<'_>, seen: &ObservedDistribution) -> Vec<Output> {
        vec![Output::Distribution(seen.outputs())]
    }

    /// One step per call (requeue until `Gone`):
    /// 1. enabled → update with `Enabled=false` (fresh ETag) → `InProgress`;
    /// 2. disabled but `InProgress` → `InProgress` (waiting for `Deployed`);
    /// 3. disabled and `Deployed` → `DeleteDistribution` with the current
    ///    ETag → `Gone` (a stale ETag is read again once).
    ///
    /// The message of `InProgress` names the step.
    async fn delete(&self, cx: &Ctx<'_>, seen: &ObservedDistribution) -> Result<Deletion> {
        const ACTION: &str = "cloudfront:DeleteDistribution";
        let mut o = seen.clone();
        for attempt in 0..2 {
            if o.config.enabled() {
                read_modify_write(cx, &o.id, |current| {
                    current.enabled().then(|| {
                        let mut c = current.clone();
                        c.enabled = false;
                        c
                    })
                })
                .await?;
                tracing::info!(id = %o.id, "disabled CloudFront distribution before deleting it");
                return Ok(Deletion::InProgress(format!(
                    "step 1/3: disabling distribution {}",
                    o.id
                )));
            }
            if o.status != DEPLOYED {
                return Ok(Deletion::InProgress(format!(
                    "step 2/3: waiting for the disabled distribution {} to deploy (status {})",
                    o.id, o.status
                )));
            }
            match cx
                .aws
                .cloudfront
                .delete_distribution()
                .id(&o.id)
                .if_match(&o.etag)
                .send()
                .await
            {
                Ok(_) => return Ok(Deletion::Gone),
                Err(e) if code_of(&e) == Some("NoSuchDistribution") => return Ok(Deletion::Absent),
                Err(e) if code_of(&e) == Some("DistributionNotDisabled") => {
                    return Ok(Deletion::InProgress(format!(
                        "step 2/3: waiting for the disabled distribution {} to deploy",
                        o.id
                    )));
                }
                Err(e) if code_of(&e) == Some("PreconditionFailed") && attempt == 0 => {
                    // Changed since our read: read again (enabled/status/ETag) and retry once.
                    match get(cx, &o.id).await? {
                        Some(fresh) => o = fresh,
                        None => return Ok(Deletion::Absent),
                    }
                }
                Err(e) if code_of(&e) == Some("PreconditionFailed") => {
                    return Err(changed_concurrently(
                        ACTION,
                        &format!("distribution {}", o.id),
                    ));
                }
                Err(e) => return Err(Error::aws(ACTION, e)),
            }
        }
        Err(changed_concurrently(
            ACTION,
            &format!("distribution {}", o.id),
        ))
    }
}

#[cfg(test)]
#[allow(deprecated)] // builds and asserts the legacy cache settings of older versions
mod tests {
    use super::*;

    fn id() -> StackId {
        StackId::new("team-a", "images", "dev")
    }

    fn buckets() -> Vec<(Format, String)> {
        Format::ALL
            .iter()
            .map(|f| (*f, format!("bucket-{}", f.as_str())))
            .collect()
    }

    fn desired_dist() -> DesiredDistribution {
        desired(
            &id(),
            "eu-west-1",
            &buckets(),
            "PriceClass_100",
            DEFAULT_TTLS,
            id().tags(&BTreeMap::new()),
        )
    }

    #[test]
    fn the_edge_behaviour_runs_the_function_and_its_loss_is_drift() {
        let arn = "arn:aws:cloudfront::123456789012:function/imagestack-dev-edge-0123";
        let plain = config(&desired_dist(), "OAC1", CACHING_OPTIMIZED).unwrap();
        let mut d = desired_dist();
        d.edge_function_arn = Some(arn.into());
        let c = config(&d, "OAC1", CACHING_OPTIMIZED).unwrap();
        let behaviours = c.cache_behaviors().unwrap().items();
        // First, so no other pattern can take its requests; the per-format ones stay.
        assert_eq!(behaviours[0].path_pattern(), EDGE_PATH_PATTERN);
        let assoc = behaviours[0].function_associations().unwrap();
        assert_eq!(assoc.quantity(), 1);
        assert_eq!(assoc.items()[0].function_arn(), arn);
        assert_eq!(assoc.items()[0].event_type(), &EventType::ViewerRequest);
        assert_eq!(behaviours[0].cache_policy_id(), Some(CACHING_OPTIMIZED));
        let patterns: Vec<&str> = behaviours.iter().map(|b| b.path_pattern()).collect();
        assert_eq!(
            patterns,
            ["/i/*", "/webp/*", "/jpeg/*", "/png/*", "/avif/*"]
        );
        for b in &behaviours[1..] {
            assert_eq!(b.function_associations().unwrap().quantity(), 0);
        }
        // A distribution without the behaviour, or whose association was
        // removed by hand, differs.
        let text: Vec<String> = diff(&c, &plain).iter().map(ToString::to_string).collect();
        assert!(
            text.iter()
                .any(|t| t.starts_with("cacheBehaviors: /webp/*,") && t.contains("→ /i/*,")),
            "{text:?}"
        );
        let mut cut_off = c.clone();
        let mut bs = cut_off.cache_behaviors.clone().unwrap();
        let mut items = bs.items.clone().unwrap();
        items[0].function_associations = Some(function_associations(None).unwrap());
        bs.items = Some(items);
        cut_off.cache_behaviors = Some(bs);
        let text: Vec<String> = diff(&c, &cut_off).iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [format!(
                "cacheBehaviors[/i/*].functionAssociations: \"\" → viewer-request={arn}"
            )]
        );
    }

    #[test]
    fn identity_is_deterministic_and_bounded() {
        assert_eq!(caller_reference(&id()), caller_reference(&id()));
        assert_ne!(
            caller_reference(&id()),
            caller_reference(&StackId::new("team-a", "images", "prod"))
        );
        let long = StackId::new("n".repeat(63), "x".repeat(253), "e".repeat(20));
        assert!(caller_reference(&long).len() <= 56);
        assert!(comment(&long).len() <= MAX_COMMENT_LEN);
        assert_eq!(comment(&id()), "imagestack team-a/images (dev)");
        assert_eq!(
            s3_regional_domain("b", "eu-west-1"),
            "b.s3.eu-west-1.amazonaws.com"
        );
        assert_eq!(
            s3_regional_domain("b", "cn-north-1"),
            "b.s3.cn-north-1.amazonaws.com.cn"
        );
    }

    #[test]
    fn config_has_every_required_setting() {
        let d = desired_dist();
        let c = config(&d, "OAC1", CACHING_OPTIMIZED).unwrap();
        assert_eq!(c.caller_reference(), d.caller_reference);
        assert_eq!(c.comment(), "imagestack team-a/images (dev)");
        assert!(c.enabled());
        assert_eq!(c.price_class(), Some(&PriceClass::PriceClass100));
        assert_eq!(c.http_version(), Some(&HttpVersion::Http2and3));
        assert_eq!(c.is_ipv6_enabled(), Some(true));
        assert_eq!(c.default_root_object(), Some(""));
        let origins = c.origins().unwrap().items();
        assert_eq!(origins.len(), 4);
        for (o, f) in origins.iter().zip(Format::ALL) {
            assert_eq!(o.id(), origin_id(f));
            assert_eq!(
                o.domain_name(),
                format!("bucket-{}.s3.eu-west-1.amazonaws.com", f.as_str())
            );
            assert_eq!(o.origin_access_control_id(), Some("OAC1"));
            assert_eq!(
                o.s3_origin_config().map(|s| s.origin_access_identity()),
                Some("")
            );
        }
        let def = c.default_cache_behavior().unwrap();
        assert_eq!(def.target_origin_id(), "s3-webp");
        assert_eq!(
            def.viewer_protocol_policy(),
            &ViewerProtocolPolicy::RedirectToHttps
        );
        assert_eq!(def.compress(), Some(true));
        // Default TTLs: AWS's managed CachingOptimized policy, no legacy settings.
        assert_eq!(def.cache_policy_id(), Some(CACHING_OPTIMIZED));
        assert!(def.forwarded_values().is_none());
        assert_eq!(
            (def.min_ttl(), def.default_ttl(), def.max_ttl()),
            (None, None, None)
        );
        let am = def.allowed_methods().unwrap();
        assert_eq!(am.items(), [Method::Get, Method::Head, Method::Options]);
        assert_eq!(
            am.cached_methods().unwrap().items(),
            [Method::Get, Method::Head]
        );
        let cbs = c.cache_behaviors().unwrap().items();
        let routes: Vec<(&str, &str)> = cbs
            .iter()
            .map(|b| (b.path_pattern(), b.target_origin_id()))
            .collect();
        assert_eq!(
            routes,
            [
                ("/webp/*", "s3-webp"),
                ("/jpeg/*", "s3-jpeg"),
                ("/png/*", "s3-png"),
                ("/avif/*", "s3-avif")
            ]
        );
        for cb in cbs {
            assert_eq!(
                cb.viewer_protocol_policy(),
                &ViewerProtocolPolicy::RedirectToHttps
            );
            assert_eq!(cb.compress(), Some(true));
            assert_eq!(cb.cache_policy_id(), Some(CACHING_OPTIMIZED));
            assert!(cb.forwarded_values().is_none());
        }
    }

    #[test]
    fn custom_ttls_use_the_stacks_own_cache_policy() {
        let d = desired(
            &id(),
            "eu-west-1",
            &buckets(),
            "PriceClass_100",
            (60, 3600, 86400),
            id().tags(&BTreeMap::new()),
        );
        assert_eq!(d.cache_policy, CachePolicy::Owned);
        // Its id comes from the cache-policy component of the same pass.
        assert!(d.cache_policy_id(&Resolved::default()).is_err());
        let inputs = Resolved {
            cache_policy_id: Some("OWNED1".into()),
            ..Resolved::default()
        };
        assert_eq!(d.cache_policy_id(&inputs).unwrap(), "OWNED1");
        let c = config(&d, "OAC1", "OWNED1").unwrap();
        let def = c.default_cache_behavior().unwrap();
        let behaviours = std::iter::once((
            def.cache_policy_id(),
            def.forwarded_values().is_some(),
            (def.min_ttl(), def.default_ttl(), def.max_ttl()),
        ))
        .chain(c.cache_behaviors().unwrap().items().iter().map(|b| {
            (
                b.cache_policy_id(),
                b.forwarded_values().is_some(),
                (b.min_ttl(), b.default_ttl(), b.max_ttl()),
            )
        }));
        for b in behaviours {
            assert_eq!(b, (Some("OWNED1"), false, (None, None, None)));
        }
        // Going from custom TTLs back to the defaults is a change of every behaviour.
        let want = config(&desired_dist(), "OAC1", CACHING_OPTIMIZED).unwrap();
        let fields: Vec<String> = diff(&want, &c).into_iter().map(|c| c.field).collect();
        assert_eq!(fields.len(), 1 + Format::ALL.len(), "{fields:?}");
        assert!(
            fields.iter().all(|f| f.ends_with(".cachePolicyId")),
            "{fields:?}"
        );
    }

    /// What an older version wrote: the legacy cache settings, no cache policy.
    fn legacy(cfg: &DistributionConfig) -> DistributionConfig {
        use aws_sdk_cloudfront::types::{
            CookiePreference, ForwardedValues, Headers, ItemSelection, QueryStringCacheKeys,
        };
        let fv = ForwardedValues::builder()
            .query_string(false)
            .cookies(
                CookiePreference::builder()
                    .forward(ItemSelection::None)
                    .build()
                    .unwrap(),
            )
            .headers(Headers::builder().quantity(0).build().unwrap())
            .query_string_cache_keys(QueryStringCacheKeys::builder().quantity(0).build().unwrap())
            .build()
            .unwrap();
        let mut c = cfg.clone();
        let mut def = c.default_cache_behavior.clone().unwrap();
        def.cache_policy_id = None;
        def.forwarded_values = Some(fv.clone());
        (def.min_ttl, def.default_ttl, def.max_ttl) = (Some(60), Some(3600), Some(86400));
        c.default_cache_behavior = Some(def);
        let mut cbs = c.cache_behaviors.clone().unwrap();
        for b in cbs.items.as_mut().unwrap() {
            b.cache_policy_id = None;
            b.forwarded_values = Some(fv.clone());
            (b.min_ttl, b.default_ttl, b.max_ttl) = (Some(60), Some(3600), Some(86400));
        }
        c.cache_behaviors = Some(cbs);
        c
    }

    #[test]
    fn legacy_cache_settings_of_older_versions_are_drift_replaced_by_the_policy() {
        let want = config(&desired_dist(), "OAC1", "OWNED1").unwrap();
        let old = legacy(&want);
        let changes = diff(&want, &old);
        let text: Vec<String> = changes.iter().map(ToString::to_string).collect();
        assert!(
            text.contains(&"defaultCacheBehavior.cachePolicyId: \"\" → OWNED1".to_string()),
            "{text:?}"
        );
        assert!(
            text.contains(&"defaultCacheBehavior.minTTL: 60 → absent".to_string()),
            "{text:?}"
        );
        assert!(
            text.contains(
                &"cacheBehaviors[/png/*].forwardedValues.queryString: false → absent".to_string()
            ),
            "{text:?}"
        );
        // The merged update carries the policy and no legacy settings at all.
        let merged = merge(old, &want);
        assert!(diff(&want, &merged).is_empty());
        let def = merged.default_cache_behavior().unwrap();
        assert!(def.forwarded_values().is_none() && def.min_ttl().is_none());
    }

    #[test]
    fn every_cdn_path_resolves_to_its_format_bucket() {
        // The contract: a rendition key's CDN path matches exactly the
        // behaviour whose origin is the format's bucket.
        let d = desired_dist();
        let c = config(&d, "OAC1", CACHING_OPTIMIZED).unwrap();
        for f in Format::ALL {
            let path =
                imagestack_contract::cdn_path(&imagestack_contract::rendition_key(f, "a", "x"));
            let hit = c
                .cache_behaviors()
                .unwrap()
                .items()
                .iter()
                .find(|b| path.starts_with(b.path_pattern().trim_end_matches('*')))
                .unwrap();
            let origin = c
                .origins()
                .unwrap()
                .items()
                .iter()
                .find(|o| o.id() == hit.target_origin_id())
                .unwrap();
            assert!(
                origin
                    .domain_name()
                    .starts_with(&format!("bucket-{}.", f.as_str())),
                "{path} → {}",
                origin.domain_name()
            );
        }
    }

    #[test]
    fn default_goes_to_first_origin_without_webp() {
        let mut d = desired_dist();
        d.origins.remove(0);
        let c = config(&d, "O", CACHING_OPTIMIZED).unwrap();
        assert_eq!(
            c.default_cache_behavior().unwrap().target_origin_id(),
            "s3-jpeg"
        );
        d.origins.clear();
        assert!(config(&d, "O", CACHING_OPTIMIZED).is_err());
    }

    #[test]
    fn in_sync_has_no_diff_and_noise_is_ignored() {
        let want = config(&desired_dist(), "OAC1", CACHING_OPTIMIZED).unwrap();
        assert!(diff(&want, &want).is_empty());
        // AWS/moto noise: reordered methods, "" policy ids, unmanaged fields set.
        let mut have = want.clone();
        let mut def = have.default_cache_behavior.clone().unwrap();
        let mut am = def.allowed_methods.clone().unwrap();
        am.items.reverse();
        def.allowed_methods = Some(am);
        def.origin_request_policy_id = Some(String::new());
        def.realtime_log_config_arn = Some(String::new());
        def.field_level_encryption_id = Some(String::new());
        have.default_cache_behavior = Some(def);
        have.web_acl_id = Some("arn:aws:wafv2::acl".into());
        have.caller_reference = "someone-else".into();
        assert!(diff(&want, &have).is_empty(), "{:?}", diff(&want, &have));
    }

    #[test]
    fn drift_is_named_field_by_field() {
        let want = config(&desired_dist(), "OAC1", CACHING_OPTIMIZED).unwrap();
        let mut have = want.clone();
        have.price_class = Some(PriceClass::PriceClassAll);
        let mut cbs = have.cache_behaviors.clone().unwrap();
        let items = cbs.items.as_mut().unwrap();
        items[1].viewer_protocol_policy = ViewerProtocolPolicy::AllowAll;
        items[2].viewer_protocol_policy = ViewerProtocolPolicy::AllowAll;
        // Legacy TTLs beside the cache policy are ignored by CloudFront: not drift.
        items[2].max_ttl = Some(60);
        have.cache_behaviors = Some(cbs);
        let mut origins = have.origins.clone().unwrap();
        origins.items[0].origin_access_control_id = Some(String::new());
        have.origins = Some(origins);
        have.http_version = Some(HttpVersion::Http2);
        let text: Vec<String> = diff(&want, &have).iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "cacheBehaviors[/jpeg/*].viewerProtocolPolicy: allow-all → redirect-to-https",
                "cacheBehaviors[/png/*].viewerProtocolPolicy: allow-all → redirect-to-https",
                "httpVersion: http2 → http2and3",
                "origins[s3-webp].originAccessControlId: \"\" → OAC1",
                "priceClass: PriceClass_All → PriceClass_100",
            ]
        );
    }

    #[test]
    fn behaviour_order_and_extra_origins_count() {
        let want = config(&desired_dist(), "OAC1", CACHING_OPTIMIZED).unwrap();
        let mut have = want.clone();
        let mut cbs = have.cache_behaviors.clone().unwrap();
        cbs.items.as_mut().unwrap().swap(0, 1);
        have.cache_behaviors = Some(cbs);
        let fields: Vec<String> = diff(&want, &have).into_iter().map(|c| c.field).collect();
        assert_eq!(fields, ["cacheBehaviors"]);
        let mut have = want.clone();
        let mut origins = have.origins.clone().unwrap();
        let mut extra = origins.items[0].clone();
        extra.id = "legacy".into();
        origins.items.push(extra);
        have.origins = Some(origins);
        let fields: Vec<String> = diff(&want, &have).into_iter().map(|c| c.field).collect();
        assert!(fields.contains(&"origins".to_string()), "{fields:?}");
        assert!(
            fields.contains(&"origins[legacy].domainName".to_string()),
            "{fields:?}"
        );
    }

    #[test]
    fn merge_keeps_unmanaged_fields() {
        let want = config(&desired_dist(), "OAC1", CACHING_OPTIMIZED).unwrap();
        let mut have = want.clone();
        have.caller_reference = "original".into();
        have.web_acl_id = Some("acl".into());
        have.price_class = Some(PriceClass::PriceClassAll);
        have.enabled = false;
        let merged = merge(have, &want);
        assert_eq!(merged.caller_reference(), "original");
        assert_eq!(merged.web_acl_id(), Some("acl"));
        assert!(diff(&want, &merged).is_empty());
    }

    const CERT: &str = "arn:aws:acm:us-east-1:123456789012:certificate/abc-123";

    #[test]
    fn custom_domain_uses_the_certificate_with_sni_and_tls12() {
        let mut d = desired_dist();
        d.aliases = vec!["img.example.com".into(), "cdn.example.com".into()];
        d.certificate_arn = Some(CERT.into());
        let c = config(&d, "OAC1", CACHING_OPTIMIZED).unwrap();
        assert_eq!(
            c.aliases().unwrap().items(),
            ["cdn.example.com", "img.example.com"]
        );
        assert_eq!(c.aliases().unwrap().quantity(), 2);
        let vc = c.viewer_certificate().unwrap();
        assert_eq!(vc.acm_certificate_arn(), Some(CERT));
        assert_eq!(vc.ssl_support_method(), Some(&SslSupportMethod::SniOnly));
        assert_eq!(
            vc.minimum_protocol_version().map(|v| v.as_str()),
            Some("TLSv1.2_2021")
        );
        assert_eq!(vc.cloud_front_default_certificate(), Some(false));
        // Without: CloudFront's certificate, no aliases.
        let c = config(&desired_dist(), "OAC1", CACHING_OPTIMIZED).unwrap();
        assert_eq!(c.aliases().unwrap().quantity(), 0);
        assert_eq!(
            c.viewer_certificate()
                .unwrap()
                .cloud_front_default_certificate(),
            Some(true)
        );
    }

    #[test]
    fn aliases_and_certificate_drift_is_named_and_merged() {
        let mut d = desired_dist();
        d.aliases = vec!["img.example.com".into()];
        d.certificate_arn = Some(CERT.into());
        let want = config(&d, "OAC1", CACHING_OPTIMIZED).unwrap();
        // What AWS returned before: no aliases, the default certificate (with its own
        // protocol version, which is not drift for the default certificate).
        let plain = config(&desired_dist(), "OAC1", CACHING_OPTIMIZED).unwrap();
        let mut have = plain.clone();
        have.viewer_certificate = Some(
            ViewerCertificate::builder()
                .cloud_front_default_certificate(true)
                .minimum_protocol_version(MinimumProtocolVersion::TlSv1)
                .ssl_support_method(SslSupportMethod::SniOnly)
                .acm_certificate_arn("")
                .build(),
        );
        assert!(diff(&plain, &have).is_empty(), "{:?}", diff(&plain, &have));
        let text: Vec<String> = diff(&want, &have).iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "aliases: \"\" → img.example.com",
                &format!(
                    "viewerCertificate: cloudfront-default → acm:{CERT} sni-only TLSv1.2_2021"
                ),
            ]
        );
        assert!(diff(&want, &merge(have, &want)).is_empty());
        // A weaker protocol set out of band is drift.
        let mut weak = want.clone();
        let mut vc = weak.viewer_certificate.clone().unwrap();
        vc.minimum_protocol_version = Some(MinimumProtocolVersion::TlSv1);
        weak.viewer_certificate = Some(vc);
        assert_eq!(diff(&want, &weak).len(), 1);
    }

    #[test]
    fn existing_id_is_parsed_from_the_aws_message() {
        assert_eq!(
            existing_id_from_message(
                "The caller reference that you are using to create a distribution is associated with another distribution. Already exists: E2QWRUHEXAMPLE"
            )
            .as_deref(),
            Some("E2QWRUHEXAMPLE")
        );
        assert_eq!(existing_id_from_message("something else"), None);
        assert_eq!(existing_id_from_message("Already exists: "), None);
    }
}

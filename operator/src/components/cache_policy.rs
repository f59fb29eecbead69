//! The CloudFront cache policy owned by a stack whose TTLs are not the
//! defaults. Its cache key is the one of AWS's managed `CachingOptimized`
//! policy (path only: no cookies, headers or query strings; `Accept-Encoding`
//! normalised for gzip and brotli); its minimum, default and maximum TTL are
//! the spec's. Every behaviour of the distribution uses it. With the default
//! TTLs the stack has none (the plan switches it off): the behaviours use
//! `CachingOptimized` itself ([`super::distribution::CACHING_OPTIMIZED`]) and
//! a policy left from before is deleted once nothing uses it.
//!
//! Cache policies cannot be tagged. Ownership is therefore the deterministic
//! name ([`policy_name`], a hash of the stack's identity) plus the comment
//! naming the stack and the installation ([`policy_comment`],
//! `imagestack <namespace>/<name> cluster=<cluster id>`, at most 128
//! characters), judged like an origin access control's description
//! ([`OwnerNote`]). A same-named policy whose comment
//! names another stack, another installation or nothing of ours is a
//! `NameConflict`: it is never updated or deleted, and the distribution is
//! not pointed at it (it waits for this component).
//!
//! Found by listing the account's own policies (`ListCachePolicies`
//! `Type=custom`) and matching the name. Updated only when the normalised
//! configuration differs ([`diff`]): the configuration and a fresh ETag are
//! read (`GetCachePolicyConfig`) right before `UpdateCachePolicy` with
//! `IfMatch`, ownership is checked again on that read, and a
//! `PreconditionFailed` is retried once. Deleted the same way; while a
//! distribution still uses it (`CachePolicyInUse`) the deletion is
//! `InProgress`, not an error (the distribution goes first).

use aws_sdk_cloudfront::types::{
    CachePolicyConfig, CachePolicyCookieBehavior, CachePolicyCookiesConfig,
    CachePolicyHeaderBehavior, CachePolicyHeadersConfig, CachePolicyQueryStringBehavior,
    CachePolicyQueryStringsConfig, CachePolicyType, ParametersInCacheKeyAndForwardedToOrigin,
};

use super::{
    Change, Component, ComponentName, Created, Ctx, Deletion, GuardedDelete, Output, Updated,
    changed_concurrently, code_of, delete_with_etag,
};
use crate::error::{Error, ErrorClass, Result};
use crate::naming::{NAME_PREFIX, OwnerNote, Ownership, StackId, cut};

/// The kind of resource, as errors and events name it.
const KIND: &str = "CloudFront cache policy";
/// Our bound on cache policy names (AWS allows letters, digits, `-` and `_`;
/// the generated name uses only lowercase letters, digits and `-`).
pub const MAX_NAME_LEN: usize = 64;
/// CloudFront's limit on a cache policy's comment.
pub const MAX_COMMENT_LEN: usize = 128;
/// The cache key, normalised (what [`cache_key`] returns for an in-sync policy).
pub const CACHE_KEY: &str = "gzip=true brotli=true headers=none cookies=none queryStrings=none";

/// Deterministic name: `imagestack-<env>-cache-<hash16>` (at most
/// 11 + 20 + 7 + 16 = 54 characters; cut to [`MAX_NAME_LEN`] anyway).
pub fn policy_name(id: &StackId) -> String {
    cut(
        &format!(
            "{NAME_PREFIX}-{}-cache-{}",
            id.environment,
            id.hash("cache-policy", 16)
        ),
        MAX_NAME_LEN,
    )
    .to_string()
}

/// How the comment names the owner.
const NOTE: OwnerNote = OwnerNote {
    max_len: MAX_COMMENT_LEN,
    salt: "cache-policy-owner",
};

/// The comment naming the owning stack and installation (≤ 128 characters).
pub fn policy_comment(id: &StackId) -> String {
    NOTE.text(id)
}

/// Who owns a cache policy with this comment, from the point of view of `id`.
pub fn comment_ownership(id: &StackId, comment: &str) -> Ownership {
    NOTE.ownership(id, comment)
}

/// What the stack's cache policy should look like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredCachePolicy {
    /// Deterministic name ([`policy_name`]).
    pub name: String,
    /// Names the stack and installation ([`policy_comment`]).
    pub comment: String,
    /// Seconds.
    pub min_ttl: i64,
    /// Seconds.
    pub default_ttl: i64,
    /// Seconds.
    pub max_ttl: i64,
}

/// The desired cache policy of a stack with TTLs (min, default, max) in seconds.
pub fn desired(id: &StackId, ttls: (i64, i64, i64)) -> DesiredCachePolicy {
    DesiredCachePolicy {
        name: policy_name(id),
        comment: policy_comment(id),
        min_ttl: ttls.0,
        default_ttl: ttls.1,
        max_ttl: ttls.2,
    }
}

/// A cache policy as read from AWS.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObservedCachePolicy {
    /// The policy's id (what behaviours reference).
    pub id: String,
    pub name: String,
    /// Ownership: [`comment_ownership`].
    pub comment: String,
    pub min_ttl: i64,
    /// `None` when AWS returns none.
    pub default_ttl: Option<i64>,
    pub max_ttl: Option<i64>,
    /// Normalised cache key ([`cache_key`]).
    pub cache_key: String,
}

/// The cache key settings of a configuration as one comparable string.
pub fn cache_key(cfg: &CachePolicyConfig) -> String {
    let Some(p) = cfg.parameters_in_cache_key_and_forwarded_to_origin() else {
        return "unset".into();
    };
    let names = |items: Option<&[String]>| {
        let mut v: Vec<&str> = items
            .unwrap_or_default()
            .iter()
            .map(String::as_str)
            .collect();
        v.sort_unstable();
        if v.is_empty() {
            String::new()
        } else {
            format!(":{}", v.join(","))
        }
    };
    let headers = p
        .headers_config()
        .map(|h| {
            format!(
                "{}{}",
                h.header_behavior().as_str(),
                names(h.headers().map(|x| x.items()))
            )
        })
        .unwrap_or_else(|| "unset".into());
    let cookies = p
        .cookies_config()
        .map(|c| {
            format!(
                "{}{}",
                c.cookie_behavior().as_str(),
                names(c.cookies().map(|x| x.items()))
            )
        })
        .unwrap_or_else(|| "unset".into());
    let query = p
        .query_strings_config()
        .map(|q| {
            format!(
                "{}{}",
                q.query_string_behavior().as_str(),
                names(q.query_strings().map(|x| x.items()))
            )
        })
        .unwrap_or_else(|| "unset".into());
    format!(
        "gzip={} brotli={} headers={headers} cookies={cookies} queryStrings={query}",
        p.enable_accept_encoding_gzip(),
        p.enable_accept_encoding_brotli().unwrap_or(false)
    )
}

fn observed_from(id: &str, cfg: &CachePolicyConfig) -> ObservedCachePolicy {
    ObservedCachePolicy {
        id: id.to_string(),
        name: cfg.name().to_string(),
        comment: cfg.comment().unwrap_or_default().to_string(),
        min_ttl: cfg.min_ttl(),
        default_ttl: cfg.default_ttl(),
        max_ttl: cfg.max_ttl(),
        cache_key: cache_key(cfg),
    }
}

fn show(v: Option<i64>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "unset".into())
}

/// Every differing setting (pure). The name is identity and never differs;
/// the comment differs only for a legacy marker of this stack (ownership is
/// judged before).
pub fn diff(d: &DesiredCachePolicy, o: &ObservedCachePolicy) -> Vec<Change> {
    let mut out = Vec::new();
    if o.comment != d.comment {
        out.push(Change::new("comment", &o.comment, &d.comment));
    }
    if o.min_ttl != d.min_ttl {
        out.push(Change::new("minTTL", o.min_ttl, d.min_ttl));
    }
    if o.default_ttl != Some(d.default_ttl) {
        out.push(Change::new(
            "defaultTTL",
            show(o.default_ttl),
            d.default_ttl,
        ));
    }
    if o.max_ttl != Some(d.max_ttl) {
        out.push(Change::new("maxTTL", show(o.max_ttl), d.max_ttl));
    }
    if o.cache_key != CACHE_KEY {
        out.push(Change::new("cacheKey", &o.cache_key, CACHE_KEY));
    }
    out
}

fn build_err(
    what: &'static str,
) -> impl Fn(aws_smithy_types::error::operation::BuildError) -> Error {
    move |e| Error::InvalidSpec(format!("cache policy {what}: {e}"))
}

/// The full configuration: CachingOptimized's cache key with the spec's TTLs.
pub fn config(d: &DesiredCachePolicy) -> Result<CachePolicyConfig> {
    let key = ParametersInCacheKeyAndForwardedToOrigin::builder()
        .enable_accept_encoding_gzip(true)
        .enable_accept_encoding_brotli(true)
        .headers_config(
            CachePolicyHeadersConfig::builder()
                .header_behavior(CachePolicyHeaderBehavior::None)
                .build()
                .map_err(build_err("headers"))?,
        )
        .cookies_config(
            CachePolicyCookiesConfig::builder()
                .cookie_behavior(CachePolicyCookieBehavior::None)
                .build()
                .map_err(build_err("cookies"))?,
        )
        .query_strings_config(
            CachePolicyQueryStringsConfig::builder()
                .query_string_behavior(CachePolicyQueryStringBehavior::None)
                .build()
                .map_err(build_err("query strings"))?,
        )
        .build()
        .map_err(build_err("cache key"))?;
    CachePolicyConfig::builder()
        .name(&d.name)
        .comment(&d.comment)
        .min_ttl(d.min_ttl)
        .default_ttl(d.default_ttl)
        .max_ttl(d.max_ttl)
        .parameters_in_cache_key_and_forwarded_to_origin(key)
        .build()
        .map_err(build_err("config"))
}

/// Find the account's own cache policy named `name`; `None` when there is none.
pub async fn observe(cx: &Ctx<'_>, name: &str) -> Result<Option<ObservedCachePolicy>> {
    let mut marker: Option<String> = None;
    loop {
        let out = cx
            .aws
            .cloudfront
            .list_cache_policies()
            .r#type(CachePolicyType::Custom)
            .set_marker(marker.clone())
            .send()
            .await
            .map_err(|e| Error::aws("cloudfront:ListCachePolicies", e))?;
        let Some(list) = out.cache_policy_list() else {
            return Ok(None);
        };
        for item in list.items() {
            if let Some(p) = item.cache_policy()
                && let Some(cfg) = p.cache_policy_config()
                && cfg.name() == name
            {
                return Ok(Some(observed_from(p.id(), cfg)));
            }
        }
        match list.next_marker() {
            Some(m) if !m.is_empty() && marker.as_deref() != Some(m) => {
                marker = Some(m.to_string());
            }
            _ => return Ok(None),
        }
    }
}

/// `GetCachePolicyConfig`: the policy as it is now and its ETag; `None` when gone.
async fn fresh(cx: &Ctx<'_>, policy_id: &str) -> Result<Option<(ObservedCachePolicy, String)>> {
    const ACTION: &str = "cloudfront:GetCachePolicyConfig";
    match cx
        .aws
        .cloudfront
        .get_cache_policy_config()
        .id(policy_id)
        .send()
        .await
    {
        Ok(out) => {
            let cfg = out.cache_policy_config().ok_or_else(|| Error::Aws {
                action: ACTION.into(),
                code: "IncompleteResponse".into(),
                message: "the response carries no cache policy config".into(),
                class: ErrorClass::Retryable,
            })?;
            Ok(Some((
                observed_from(policy_id, cfg),
                out.e_tag().unwrap_or_default().to_string(),
            )))
        }
        Err(e) if code_of(&e) == Some("NoSuchCachePolicy") => Ok(None),
        Err(e) => Err(Error::aws(ACTION, e)),
    }
}

impl Component for DesiredCachePolicy {
    type Observed = ObservedCachePolicy;

    fn name(&self) -> ComponentName {
        ComponentName::CachePolicy
    }
    fn kind(&self) -> &'static str {
        KIND
    }
    /// The policy's name.
    fn id(&self) -> String {
        self.name.clone()
    }
    /// The policy's id.
    fn observed_id(&self, seen: &ObservedCachePolicy) -> Option<String> {
        Some(seen.id.clone())
    }

    async fn observe(&self, cx: &Ctx<'_>) -> Result<Option<ObservedCachePolicy>> {
        observe(cx, &self.name).await
    }

    /// Cache policies cannot be tagged: the comment names the owner.
    fn ownership(&self, cx: &Ctx<'_>, seen: &ObservedCachePolicy) -> Ownership {
        comment_ownership(cx.id, &seen.comment)
    }

    fn diff(&self, _cx: &Ctx<'_>, seen: &ObservedCachePolicy) -> Result<Vec<Change>> {
        Ok(diff(self, seen))
    }

    /// `CreateCachePolicy`. A taken name (created by an interrupted earlier
    /// pass, or by someone else) is no error: the driver observes again and
    /// judges ownership by the comment.
    async fn create(&self, cx: &Ctx<'_>) -> Result<Created> {
        match cx
            .aws
            .cloudfront
            .create_cache_policy()
            .cache_policy_config(config(self)?)
            .send()
            .await
        {
            Ok(out) => {
                let id = out.cache_policy().map(|p| p.id()).unwrap_or_default();
                tracing::info!(name = %self.name, id, "created CloudFront cache policy");
                Ok(Created::done())
            }
            Err(e) if code_of(&e) == Some("CachePolicyAlreadyExists") => {
                tracing::info!(name = %self.name, "cache policy already exists; observing it");
                Ok(Created::done())
            }
            Err(e) => Err(Error::aws("cloudfront:CreateCachePolicy", e)),
        }
    }

    /// Write the whole configuration with a fresh ETag (one retry on
    /// `PreconditionFailed`); nothing when the fresh read is already in sync.
    /// Ownership is checked again on the fresh read.
    async fn update(
        &self,
        cx: &Ctx<'_>,
        seen: &ObservedCachePolicy,
        _changes: &[Change],
    ) -> Result<Updated> {
        const ACTION: &str = "cloudfront:UpdateCachePolicy";
        for attempt in 0..2 {
            let Some((now, etag)) = fresh(cx, &seen.id).await? else {
                return Err(Error::Aws {
                    action: ACTION.into(),
                    code: "NoSuchCachePolicy".into(),
                    message: format!("cache policy {} disappeared during the update", seen.id),
                    class: ErrorClass::Retryable,
                });
            };
            if let Some(owner) = comment_ownership(cx.id, &now.comment).owner() {
                return Err(Error::NameConflict {
                    kind: KIND,
                    name: self.name.clone(),
                    owner: format!("{owner}; comment changed to {:?}", now.comment),
                });
            }
            let changes = diff(self, &now);
            if changes.is_empty() {
                return Ok(Updated::all(&[]));
            }
            match cx
                .aws
                .cloudfront
                .update_cache_policy()
                .id(&seen.id)
                .if_match(etag)
                .cache_policy_config(config(self)?)
                .send()
                .await
            {
                Ok(_) => return Ok(Updated::all(&changes)),
                Err(e) if code_of(&e) == Some("PreconditionFailed") && attempt == 0 => continue,
                Err(e) if code_of(&e) == Some("PreconditionFailed") => {
                    return Err(changed_concurrently(ACTION, "the cache policy"));
                }
                Err(e) => return Err(Error::aws(ACTION, e)),
            }
        }
        Err(changed_concurrently(ACTION, "the cache policy"))
    }

    fn outputs(&self, _cx: &Ctx<'_>, seen: &ObservedCachePolicy) -> Vec<Output> {
        vec![Output::CachePolicyId(seen.id.clone())]
    }

    /// Delete with a fresh ETag (one retry on `PreconditionFailed`). While a
    /// distribution still uses it (`CachePolicyInUse`) the deletion is
    /// `InProgress`: the distribution moves off it (or is deleted) first.
    async fn delete(&self, cx: &Ctx<'_>, seen: &ObservedCachePolicy) -> Result<Deletion> {
        let guard = GuardedDelete {
            action: "cloudfront:DeleteCachePolicy",
            what: "the cache policy",
            absent: "NoSuchCachePolicy",
            in_use: "CachePolicyInUse",
            in_use_message: format!(
                "cache policy {} is still used by a distribution; waiting for the distribution to stop using it",
                seen.id
            ),
        };
        let current_etag = || async {
            let Some((now, etag)) = fresh(cx, &seen.id).await? else {
                return Ok(None);
            };
            if comment_ownership(cx.id, &now.comment).owner().is_some() {
                // Its comment changed since it was observed: no longer ours to delete.
                tracing::warn!(id = %seen.id, comment = %now.comment, "cache policy is no longer this stack's; leaving it");
                return Ok(None);
            }
            Ok(Some(etag))
        };
        delete_with_etag(guard, current_etag, |etag| {
            cx.aws
                .cloudfront
                .delete_cache_policy()
                .id(&seen.id)
                .if_match(etag)
                .send()
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> StackId {
        StackId::new("team-a", "images", "dev").in_cluster("cluster-a")
    }

    fn in_sync() -> ObservedCachePolicy {
        let d = desired(&id(), (60, 3600, 86400));
        let cfg = config(&d).unwrap();
        observed_from("CP1", &cfg)
    }

    #[test]
    fn names_are_deterministic_bounded_and_distinct() {
        assert_eq!(policy_name(&id()), policy_name(&id()));
        assert!(policy_name(&id()).starts_with("imagestack-dev-cache-"));
        assert_ne!(
            policy_name(&StackId::new("a-b", "c", "dev")),
            policy_name(&StackId::new("a", "b-c", "dev"))
        );
        assert_eq!(
            policy_name(&id()),
            policy_name(&StackId::new("team-a", "images", "dev")),
            "the installation is part of ownership, not of the name"
        );
        let long = StackId::new("n".repeat(63), "x".repeat(253), "e".repeat(20))
            .in_cluster("0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0");
        let name = policy_name(&long);
        assert!(name.len() <= MAX_NAME_LEN, "{name}");
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "{name}"
        );
        let comment = policy_comment(&long);
        assert!(comment.len() <= MAX_COMMENT_LEN, "{comment}");
        assert!(comment.ends_with(" cluster=0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"));
        assert_eq!(comment_ownership(&long, &comment), Ownership::Ours);
        assert_eq!(
            policy_comment(&id()),
            "imagestack team-a/images cluster=cluster-a"
        );
    }

    #[test]
    fn config_is_caching_optimized_key_with_the_spec_ttls() {
        let d = desired(&id(), (60, 3600, 86400));
        let c = config(&d).unwrap();
        assert_eq!(c.name(), d.name);
        assert_eq!(c.comment(), Some(d.comment.as_str()));
        assert_eq!(
            (c.min_ttl(), c.default_ttl(), c.max_ttl()),
            (60, Some(3600), Some(86400))
        );
        assert_eq!(cache_key(&c), CACHE_KEY);
        assert!(diff(&d, &in_sync()).is_empty());
    }

    #[test]
    fn drift_is_named_field_by_field() {
        let d = desired(&id(), (60, 3600, 86400));
        let mut o = in_sync();
        o.default_ttl = Some(10);
        o.max_ttl = None;
        o.cache_key = "gzip=true brotli=false headers=none cookies=all queryStrings=none".into();
        let text: Vec<String> = diff(&d, &o).iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "defaultTTL: 10 → 3600",
                "maxTTL: unset → 86400",
                "cacheKey: gzip=true brotli=false headers=none cookies=all queryStrings=none → \
                 gzip=true brotli=true headers=none cookies=none queryStrings=none",
            ]
        );
        // New TTLs in the spec: the same policy, changed in place.
        let d2 = desired(&id(), (0, 7200, 86400));
        assert_eq!(d2.name, d.name);
        let fields: Vec<String> = diff(&d2, &in_sync()).into_iter().map(|c| c.field).collect();
        assert_eq!(fields, ["minTTL", "defaultTTL"]);
    }

    #[test]
    fn ownership_by_comment() {
        let me = id();
        assert_eq!(
            comment_ownership(&me, &policy_comment(&me)),
            Ownership::Ours
        );
        assert_eq!(
            comment_ownership(&me, "imagestack team-a/images cluster=cluster-b"),
            Ownership::OtherCluster("cluster-b".into())
        );
        assert_eq!(
            comment_ownership(&me, "imagestack other/stack cluster=cluster-a"),
            Ownership::OtherStack("other/stack".into())
        );
        for foreign in ["", "made by hand", "imagestack "] {
            assert_eq!(
                comment_ownership(&me, foreign),
                Ownership::Foreign,
                "{foreign:?}"
            );
        }
    }
}

//! The stack's CloudFront Function (runtime `cloudfront-js-2.0`, viewer
//! request) behind the `/i/*` cache behaviour: it picks the format and width
//! of each request and rewrites the URI to the stored rendition (the code is
//! generated from the spec by [`crate::edge`]).
//!
//! A function has two stages: `DEVELOPMENT` (what `CreateFunction` and
//! `UpdateFunction` write) and `LIVE` (what `PublishFunction` copies from it,
//! and what distributions run). What serves is `LIVE`, so that is what is
//! observed and compared: its code byte for byte, its runtime and comment.
//! Steady state costs two reads (`DescribeFunction` + `GetFunction`, both
//! `Stage=LIVE`); a function never published costs one more
//! (`DescribeFunction` of `DEVELOPMENT`).
//!
//! Writes: create = `CreateFunction` then `PublishFunction` with the ETag it
//! returned; a repair = `UpdateFunction` with the `DEVELOPMENT` ETag read right
//! before (ownership re-checked on that fresh read) then `PublishFunction`
//! with the ETag the update returned; one retry on `PreconditionFailed`. A
//! crash between the two leaves `LIVE` as it was (still serving); the next
//! pass finds `DEVELOPMENT` already holding the desired code and only
//! publishes, so each write makes progress.
//!
//! Functions cannot be tagged: ownership is the deterministic name
//! ([`function_name`]) plus the comment naming the stack and installation
//! ([`comment`], an [`OwnerNote`]). A same-named function with another
//! comment is a `NameConflict` and is never written.
//!
//! Deletion: `DeleteFunction` with the current ETag. While a distribution
//! still associates it (`FunctionInUse`) the deletion is `InProgress`: the
//! distribution, which depends on the function, is disassociated or deleted
//! first.

use aws_sdk_cloudfront::primitives::Blob;
use aws_sdk_cloudfront::types::{FunctionConfig, FunctionRuntime, FunctionStage, FunctionSummary};
use sha2::{Digest, Sha256};

use super::{
    Change, Component, ComponentName, Created, Ctx, Deletion, GuardedDelete, Updated,
    changed_concurrently, code_of, delete_with_etag,
};
use crate::error::{Error, ErrorClass, Result};
use crate::naming::{NAME_PREFIX, OwnerNote, Ownership, StackId, cut};

/// The kind of resource, as errors and events name it.
const KIND: &str = "CloudFront function";
/// CloudFront's limit on function names (`[a-zA-Z0-9-_]{1,64}`).
pub const MAX_NAME_LEN: usize = 64;
/// The limit this component keeps function comments to.
pub const MAX_COMMENT_LEN: usize = 128;
/// The runtime the generated code is written for ([`crate::edge`]'s).
pub const RUNTIME: &str = crate::edge::FUNCTION_RUNTIME;
/// The field name of a function that exists but was never published.
const PUBLISHED_FIELD: &str = "published";

/// How the comment names the owner.
const NOTE: OwnerNote = OwnerNote {
    max_len: MAX_COMMENT_LEN,
    salt: "edge-function-owner",
};

/// Deterministic function name: `imagestack-<env>-edge-<hash16>` (at most
/// 11 + 20 + 6 + 16 = 53 characters).
pub fn function_name(id: &StackId) -> String {
    cut(
        &format!(
            "{NAME_PREFIX}-{}-edge-{}",
            id.environment,
            id.hash("edge-function", 16)
        ),
        MAX_NAME_LEN,
    )
    .to_string()
}

/// The function's ARN (`arn:<partition>:cloudfront::<account>:function/<name>`):
/// it names the function, not a version, so the distribution's association is
/// planned with it and survives every code update.
pub fn function_arn(partition: &str, account: &str, name: &str) -> String {
    format!("arn:{partition}:cloudfront::{account}:function/{name}")
}

/// The comment naming the owning stack and installation.
pub fn comment(id: &StackId) -> String {
    NOTE.text(id)
}

/// What the function should look like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredEdgeFunction {
    /// Deterministic name ([`function_name`]).
    pub name: String,
    /// Names the stack and installation ([`comment`]).
    pub comment: String,
    /// The generated JavaScript ([`crate::edge::viewer_request_code`]).
    pub code: String,
}

/// The desired function of a stack running `code`.
pub fn desired(id: &StackId, code: String) -> DesiredEdgeFunction {
    DesiredEdgeFunction {
        name: function_name(id),
        comment: comment(id),
        code,
    }
}

/// One stage of the function as AWS has it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObservedStage {
    /// The stage's comment (ownership).
    pub comment: String,
    /// `cloudfront-js-1.0` or `cloudfront-js-2.0`.
    pub runtime: String,
}

/// What the function looks like on AWS.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObservedEdgeFunction {
    /// The function's ARN (what cache behaviours associate).
    pub arn: String,
    /// The `LIVE` stage when published, else the `DEVELOPMENT` one.
    pub config: ObservedStage,
    /// The `LIVE` code; `None`: never published.
    pub live_code: Option<Vec<u8>>,
}

/// `sha256:<first 12 hex digits> (<n> bytes)`: how changes name code.
pub fn fingerprint(code: &[u8]) -> String {
    let digest = Sha256::digest(code);
    let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex} ({} bytes)", code.len())
}

/// Every differing field of the `LIVE` stage.
pub fn diff(d: &DesiredEdgeFunction, o: &ObservedEdgeFunction) -> Vec<Change> {
    let mut out = Vec::new();
    match &o.live_code {
        None => out.push(Change::new(PUBLISHED_FIELD, "no", "yes")),
        Some(code) if code.as_slice() != d.code.as_bytes() => out.push(Change::new(
            "code",
            fingerprint(code),
            fingerprint(d.code.as_bytes()),
        )),
        Some(_) => {}
    }
    if o.live_code.is_some() {
        if o.config.runtime != RUNTIME {
            out.push(Change::new("runtime", &o.config.runtime, RUNTIME));
        }
        if o.config.comment != d.comment {
            out.push(Change::new("comment", &o.config.comment, &d.comment));
        }
    }
    out
}

fn stage_of(summary: Option<&FunctionSummary>) -> (String, ObservedStage) {
    let arn = summary
        .and_then(|s| s.function_metadata())
        .map(|m| m.function_arn().to_string())
        .unwrap_or_default();
    let config = summary.and_then(|s| s.function_config());
    (
        arn,
        ObservedStage {
            comment: config.map(|c| c.comment().to_string()).unwrap_or_default(),
            runtime: config
                .map(|c| c.runtime().as_str().to_string())
                .unwrap_or_default(),
        },
    )
}

/// `DescribeFunction` of one stage: ARN, config and ETag; `None` when the
/// function (or that stage) does not exist.
async fn describe(
    cx: &Ctx<'_>,
    name: &str,
    stage: FunctionStage,
) -> Result<Option<(String, ObservedStage, String)>> {
    match cx
        .aws
        .cloudfront
        .describe_function()
        .name(name)
        .stage(stage)
        .send()
        .await
    {
        Ok(out) => {
            let (arn, config) = stage_of(out.function_summary());
            Ok(Some((
                arn,
                config,
                out.e_tag().unwrap_or_default().to_string(),
            )))
        }
        Err(e) if code_of(&e) == Some("NoSuchFunctionExists") => Ok(None),
        Err(e) => Err(Error::aws("cloudfront:DescribeFunction", e)),
    }
}

/// `GetFunction` of one stage: its code; `None` when it does not exist.
async fn code_of_stage(cx: &Ctx<'_>, name: &str, stage: FunctionStage) -> Result<Option<Vec<u8>>> {
    match cx
        .aws
        .cloudfront
        .get_function()
        .name(name)
        .stage(stage)
        .send()
        .await
    {
        Ok(out) => Ok(Some(
            out.function_code()
                .map(|b| b.as_ref().to_vec())
                .unwrap_or_default(),
        )),
        Err(e) if code_of(&e) == Some("NoSuchFunctionExists") => Ok(None),
        Err(e) => Err(Error::aws("cloudfront:GetFunction", e)),
    }
}

fn function_config(d: &DesiredEdgeFunction) -> Result<FunctionConfig> {
    FunctionConfig::builder()
        .comment(&d.comment)
        .runtime(FunctionRuntime::from(RUNTIME))
        .build()
        .map_err(|e| Error::Internal(format!("CloudFront function config: {e}")))
}

fn vanished(action: &str, name: &str) -> Error {
    Error::Aws {
        action: action.into(),
        code: "NoSuchFunctionExists".into(),
        message: format!("CloudFront function {name} disappeared during the update"),
        class: ErrorClass::Retryable,
    }
}

impl DesiredEdgeFunction {
    /// `PublishFunction` with `etag` (the `DEVELOPMENT` stage's).
    async fn publish(&self, cx: &Ctx<'_>, etag: &str) -> std::result::Result<(), PublishError> {
        match cx
            .aws
            .cloudfront
            .publish_function()
            .name(&self.name)
            .if_match(etag)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if code_of(&e) == Some("PreconditionFailed") => Err(PublishError::Stale),
            Err(e) => Err(PublishError::Other(Error::aws(
                "cloudfront:PublishFunction",
                e,
            ))),
        }
    }
}

/// Why a publish did not go through.
enum PublishError {
    /// Someone wrote the function in between: read again.
    Stale,
    Other(Error),
}

impl Component for DesiredEdgeFunction {
    type Observed = ObservedEdgeFunction;

    fn name(&self) -> ComponentName {
        ComponentName::EdgeFunction
    }
    fn kind(&self) -> &'static str {
        KIND
    }
    /// The function's name.
    fn id(&self) -> String {
        self.name.clone()
    }
    /// The function's ARN.
    fn observed_id(&self, seen: &ObservedEdgeFunction) -> Option<String> {
        Some(seen.arn.clone())
    }

    /// `DescribeFunction` + `GetFunction` of `LIVE`; a function never
    /// published is read from `DEVELOPMENT`. The code is read only for a
    /// function whose comment says it is this stack's.
    async fn observe(&self, cx: &Ctx<'_>) -> Result<Option<ObservedEdgeFunction>> {
        let Some((arn, config, _)) = describe(cx, &self.name, FunctionStage::Live).await? else {
            return Ok(describe(cx, &self.name, FunctionStage::Development)
                .await?
                .map(|(arn, config, _)| ObservedEdgeFunction {
                    arn,
                    config,
                    live_code: None,
                }));
        };
        let mut seen = ObservedEdgeFunction {
            arn,
            config,
            live_code: Some(Vec::new()),
        };
        if NOTE.ownership(cx.id, &seen.config.comment) != Ownership::Ours {
            return Ok(Some(seen));
        }
        match code_of_stage(cx, &self.name, FunctionStage::Live).await? {
            Some(code) => {
                seen.live_code = Some(code);
                Ok(Some(seen))
            }
            None => Ok(None),
        }
    }

    /// Functions cannot be tagged: the comment names the owner.
    fn ownership(&self, cx: &Ctx<'_>, seen: &ObservedEdgeFunction) -> Ownership {
        NOTE.ownership(cx.id, &seen.config.comment)
    }

    fn diff(&self, _cx: &Ctx<'_>, seen: &ObservedEdgeFunction) -> Result<Vec<Change>> {
        Ok(diff(self, seen))
    }

    /// `CreateFunction`, then `PublishFunction` with the ETag it returned. A
    /// taken name (an interrupted earlier pass, or someone else's) is no
    /// error: the driver observes again and judges ownership by the comment;
    /// an unpublished function of ours is published by the next update.
    async fn create(&self, cx: &Ctx<'_>) -> Result<Created> {
        let out = match cx
            .aws
            .cloudfront
            .create_function()
            .name(&self.name)
            .function_config(function_config(self)?)
            .function_code(Blob::new(self.code.as_bytes()))
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if code_of(&e) == Some("FunctionAlreadyExists") => {
                tracing::info!(name = %self.name, "CloudFront function already exists; observing it");
                return Ok(Created::done());
            }
            Err(e) => return Err(Error::aws("cloudfront:CreateFunction", e)),
        };
        match self.publish(cx, out.e_tag().unwrap_or_default()).await {
            // Written in between: the next pass sees it unpublished and repairs.
            Ok(()) | Err(PublishError::Stale) => Ok(Created::done()),
            Err(PublishError::Other(e)) => Err(e),
        }
    }

    /// Bring `LIVE` to the desired code and config: `UpdateFunction` with the
    /// `DEVELOPMENT` ETag read right before — skipped when `DEVELOPMENT`
    /// already holds them (a pass that crashed between the two writes, or a
    /// create that was never published) — then `PublishFunction`. So every
    /// write makes progress that the next pass sees. One retry when either
    /// meets `PreconditionFailed`.
    async fn update(
        &self,
        cx: &Ctx<'_>,
        _seen: &ObservedEdgeFunction,
        changes: &[Change],
    ) -> Result<Updated> {
        const ACTION: &str = "cloudfront:UpdateFunction";
        for _attempt in 0..2 {
            let Some((_, dev, etag)) = describe(cx, &self.name, FunctionStage::Development).await?
            else {
                return Err(vanished(ACTION, &self.name));
            };
            if let Some(owner) = NOTE.ownership(cx.id, &dev.comment).owner() {
                return Err(Error::NameConflict {
                    kind: KIND,
                    name: self.name.clone(),
                    owner: format!("{owner}; comment changed to {:?}", dev.comment),
                });
            }
            let staged = dev.runtime == RUNTIME
                && dev.comment == self.comment
                && code_of_stage(cx, &self.name, FunctionStage::Development)
                    .await?
                    .is_some_and(|code| code == self.code.as_bytes());
            let etag = if staged {
                etag
            } else {
                let updated = match cx
                    .aws
                    .cloudfront
                    .update_function()
                    .name(&self.name)
                    .if_match(etag)
                    .function_config(function_config(self)?)
                    .function_code(Blob::new(self.code.as_bytes()))
                    .send()
                    .await
                {
                    Ok(out) => out,
                    Err(e) if code_of(&e) == Some("PreconditionFailed") => continue,
                    Err(e) => return Err(Error::aws(ACTION, e)),
                };
                match updated.e_tag() {
                    Some(t) if !t.is_empty() => t.to_string(),
                    _ => match describe(cx, &self.name, FunctionStage::Development).await? {
                        Some((_, _, t)) => t,
                        None => return Err(vanished(ACTION, &self.name)),
                    },
                }
            };
            match self.publish(cx, &etag).await {
                Ok(()) => return Ok(Updated::all(changes)),
                Err(PublishError::Stale) => continue,
                Err(PublishError::Other(e)) => return Err(e),
            }
        }
        Err(changed_concurrently(ACTION, "the CloudFront function"))
    }

    /// `DeleteFunction` with a fresh ETag (one retry on `PreconditionFailed`).
    /// While a distribution still associates it, `InProgress`.
    async fn delete(&self, cx: &Ctx<'_>, _seen: &ObservedEdgeFunction) -> Result<Deletion> {
        let guard = GuardedDelete {
            action: "cloudfront:DeleteFunction",
            what: "the CloudFront function",
            absent: "NoSuchFunctionExists",
            in_use: "FunctionInUse",
            in_use_message: format!(
                "CloudFront function {} is still associated with a distribution; waiting for the distribution to drop it",
                self.name
            ),
        };
        delete_with_etag(
            guard,
            || async {
                Ok(describe(cx, &self.name, FunctionStage::Development)
                    .await?
                    .map(|(_, _, etag)| etag))
            },
            |etag| {
                cx.aws
                    .cloudfront
                    .delete_function()
                    .name(&self.name)
                    .if_match(etag)
                    .send()
            },
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> StackId {
        StackId::new("team-a", "images", "dev").in_cluster("cluster-a")
    }

    fn in_sync() -> (DesiredEdgeFunction, ObservedEdgeFunction) {
        let d = desired(&id(), "function handler(e) { return e.request; }".into());
        let o = ObservedEdgeFunction {
            arn: format!("arn:aws:cloudfront::123456789012:function/{}", d.name),
            config: ObservedStage {
                comment: d.comment.clone(),
                runtime: RUNTIME.into(),
            },
            live_code: Some(d.code.as_bytes().to_vec()),
        };
        (d, o)
    }

    #[test]
    fn names_are_deterministic_valid_and_distinct() {
        let n = function_name(&id());
        assert_eq!(n, function_name(&id()));
        assert!(n.starts_with("imagestack-dev-edge-"), "{n}");
        assert!(
            n.len() <= MAX_NAME_LEN
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "{n}"
        );
        assert_ne!(
            function_name(&StackId::new("a-b", "c", "dev")),
            function_name(&StackId::new("a", "b-c", "dev"))
        );
        let long = StackId::new("n".repeat(63), "x".repeat(253), "e".repeat(20))
            .in_cluster("0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0");
        assert!(function_name(&long).len() <= MAX_NAME_LEN);
        assert!(comment(&long).len() <= MAX_COMMENT_LEN);
        assert_eq!(
            NOTE.ownership(&long, &comment(&long)),
            Ownership::Ours,
            "a shortened comment still proves ownership"
        );
        assert_eq!(comment(&id()), "imagestack team-a/images cluster=cluster-a");
    }

    #[test]
    fn in_sync_has_no_diff_and_each_drift_is_named() {
        let (d, o) = in_sync();
        assert!(diff(&d, &o).is_empty());

        let mut unpublished = o.clone();
        unpublished.live_code = None;
        assert_eq!(
            diff(&d, &unpublished),
            [Change::new("published", "no", "yes")]
        );

        let mut edited = o.clone();
        edited.live_code = Some(b"function handler(e) { return e.request; } // edited".to_vec());
        edited.config.runtime = "cloudfront-js-1.0".into();
        let text: Vec<String> = diff(&d, &edited).iter().map(ToString::to_string).collect();
        assert_eq!(text.len(), 2, "{text:?}");
        assert!(
            text[0].starts_with("code: sha256:") && text[0].contains("bytes) → sha256:"),
            "{text:?}"
        );
        assert_eq!(text[1], "runtime: cloudfront-js-1.0 → cloudfront-js-2.0");
    }

    #[test]
    fn ownership_from_the_comment() {
        let me = id();
        assert_eq!(NOTE.ownership(&me, &comment(&me)), Ownership::Ours);
        assert_eq!(
            NOTE.ownership(&me, "imagestack team-a/images cluster=cluster-b"),
            Ownership::OtherCluster("cluster-b".into())
        );
        assert_eq!(
            NOTE.ownership(&me, "imagestack other/stack cluster=cluster-a"),
            Ownership::OtherStack("other/stack".into())
        );
        assert_eq!(NOTE.ownership(&me, "made by hand"), Ownership::Foreign);
        assert_eq!(NOTE.ownership(&me, ""), Ownership::Foreign);
    }
}

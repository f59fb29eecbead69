//! AWS components of a stack, and the one interface they share.
//!
//! Each file holds one kind of resource and implements [`Component`]: the four
//! verbs of Crossplane's external client — `observe` (read the real thing,
//! `None` when missing), a pure `diff` (name every differing field as
//! [`Change`] data), `create`, `update` (only what differs) — plus `delete`
//! (idempotent; gone is success). Everything every component would otherwise
//! repeat lives once in [`crate::driver`]: the paused/dry-run rule, the
//! ownership check, gating on dependencies, the deletion preflight, reports.
//!
//! # Adding a component
//!
//! 1. A new file here with its desired-state struct and `impl Component`.
//!    Service quirks stay inside it (ETags, busy states, multi-pass deletes).
//! 2. A [`ComponentName`] variant in `api.rs` (it becomes part of the CRD).
//! 3. One entry in [`crate::plan::plan`]: the node, what it depends on, and
//!    (for a part of another resource, like a bucket's notification rules)
//!    its host.
//!
//! If it hands something to its dependants (an id, an ARN), add an [`Output`]
//! variant and read it back from [`Ctx::inputs`] in the dependant.

pub mod alarm;
pub mod bucket;
pub mod cache_policy;
pub mod cdn_grant;
pub mod dashboard;
pub mod distribution;
pub mod edge_function;
pub mod function;
pub mod notification;
pub mod origin_access;
pub mod permission;
pub mod queue;
pub mod role;
pub mod table;

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_runtime_api::http::Response as HttpResponse;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use serde_json::Value;

pub use crate::api::ComponentName;
use crate::aws::AwsClients;
use crate::error::{Error, Result};
use crate::naming::{Ownership, StackId, ownership};

/// One differing field: what it is, what AWS has, what the spec wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub field: String,
    pub from: String,
    pub to: String,
}

impl Change {
    pub fn new(field: impl Into<String>, from: impl fmt::Display, to: impl fmt::Display) -> Self {
        Self {
            field: field.into(),
            from: from.to_string(),
            to: to.to_string(),
        }
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} → {}", self.field, self.from, self.to)
    }
}

/// Join changes for an event or status message.
pub fn describe(changes: &[Change]) -> String {
    changes
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// AWS is still working on a resource: why, and what it is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// PascalCase reason for the `Reconciling` condition (`TableCreating`, …).
    pub reason: String,
    pub message: String,
}

impl Progress {
    pub fn new(reason: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// Where a component stands after one reconcile pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Exists and matches the spec.
    Ready,
    /// On its way (creating, updating, waiting for AWS): reason and message.
    Progressing { reason: String, message: String },
    /// Differs from the spec but writes are paused.
    Paused { message: String },
}

impl From<Progress> for State {
    fn from(p: Progress) -> Self {
        State::Progressing {
            reason: p.reason,
            message: p.message,
        }
    }
}

/// Result of reconciling one component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Component name on status, e.g. `upload-bucket`.
    pub name: String,
    /// ARN or name of the AWS resource.
    pub id: String,
    pub state: State,
    /// Created in this pass.
    pub created: bool,
    /// Fields updated in this pass (drift repairs when the resource existed).
    pub changes: Vec<Change>,
}

/// Result of deleting one component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deletion {
    /// Deleted now.
    Gone,
    /// Was not there (nothing of this stack's to delete).
    Absent,
    /// Deleting takes more passes (emptying a bucket, waiting for AWS).
    InProgress(String),
}

/// What `create` did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Created {
    /// `None`: the resource is usable now; the driver observes it again and
    /// applies whatever the create call could not set (same pass).
    /// `Some`: AWS is still bringing it up (the component is `Creating`).
    pub progress: Option<Progress>,
}

impl Created {
    /// Usable right away.
    pub fn done() -> Self {
        Self::default()
    }
    /// AWS is still bringing it up.
    pub fn progressing(reason: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            progress: Some(Progress::new(reason, message)),
        }
    }
}

/// What `update` did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Updated {
    /// The changes actually applied (a component may apply some per pass).
    pub changes: Vec<Change>,
    /// AWS is applying them (table updating, distribution deploying…).
    pub progress: Option<Progress>,
}

impl Updated {
    /// Every change applied, nothing left to wait for.
    pub fn all(changes: &[Change]) -> Self {
        Self {
            changes: changes.to_vec(),
            progress: None,
        }
    }
    /// And AWS is still applying them.
    pub fn progressing(mut self, reason: impl Into<String>, message: impl Into<String>) -> Self {
        self.progress = Some(Progress::new(reason, message));
        self
    }
}

/// What a component hands to its dependants (typed, never re-derived by them).
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// The origin access control's id (→ distribution).
    OriginAccessControlId(String),
    /// The id of the stack's own cache policy (→ distribution's behaviours).
    CachePolicyId(String),
    /// The distribution's id, ARN and domain (→ CDN grants, dashboard, status).
    Distribution(distribution::DistributionOutputs),
    /// A bucket's policy document as it stands after this pass (→ the CDN
    /// grant in the same document, which then needs no read of its own).
    BucketPolicy { bucket: String, policy: Value },
    /// The role's ARN (→ function).
    RoleArn(String),
    /// The function's ARN (→ permission, notifications).
    FunctionArn(String),
}

/// The outputs of the components walked so far in this pass.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resolved {
    pub oac_id: Option<String>,
    /// The stack's own cache policy (custom TTLs only).
    pub cache_policy_id: Option<String>,
    pub distribution: Option<distribution::DistributionOutputs>,
    pub bucket_policies: BTreeMap<String, Value>,
    pub role_arn: Option<String>,
    pub function_arn: Option<String>,
}

impl Resolved {
    pub fn put(&mut self, output: Output) {
        match output {
            Output::OriginAccessControlId(id) => self.oac_id = Some(id),
            Output::CachePolicyId(id) => self.cache_policy_id = Some(id),
            Output::Distribution(d) => self.distribution = Some(d),
            Output::BucketPolicy { bucket, policy } => {
                self.bucket_policies.insert(bucket, policy);
            }
            Output::RoleArn(a) => self.role_arn = Some(a),
            Output::FunctionArn(a) => self.function_arn = Some(a),
        }
    }

    /// The origin access control id (the graph orders the OAC first).
    pub fn require_oac_id(&self) -> Result<&str> {
        self.oac_id
            .as_deref()
            .ok_or_else(|| missing_input("origin access control id"))
    }

    /// The stack's own cache policy id (the graph orders the policy first
    /// whenever the distribution uses it).
    pub fn require_cache_policy_id(&self) -> Result<&str> {
        self.cache_policy_id
            .as_deref()
            .ok_or_else(|| missing_input("cache policy id"))
    }

    /// The distribution's outputs (the graph orders the distribution first).
    pub fn require_distribution(&self) -> Result<&distribution::DistributionOutputs> {
        self.distribution
            .as_ref()
            .ok_or_else(|| missing_input("distribution"))
    }
}

fn missing_input(what: &str) -> Error {
    Error::Internal(format!(
        "{what} is not known in this pass although the graph orders it first"
    ))
}

/// What every component gets to work with.
pub struct Ctx<'a> {
    pub aws: &'a AwsClients,
    pub id: &'a StackId,
    /// Observe and diff only: the stack is paused.
    pub dry_run: bool,
    /// Outputs of the components walked before this one in this pass.
    pub inputs: &'a Resolved,
}

static NO_INPUTS: std::sync::LazyLock<Resolved> = std::sync::LazyLock::new(Resolved::default);

impl<'a> Ctx<'a> {
    /// A context with no upstream outputs (single-component use, tests).
    pub fn new(aws: &'a AwsClients, id: &'a StackId, dry_run: bool) -> Self {
        Self {
            aws,
            id,
            dry_run,
            inputs: &NO_INPUTS,
        }
    }

    /// The same context with `inputs`.
    pub fn with_inputs<'b>(&'b self, inputs: &'b Resolved) -> Ctx<'b> {
        Ctx {
            aws: self.aws,
            id: self.id,
            dry_run: self.dry_run,
            inputs,
        }
    }
}

/// One AWS component of a stack. Per pass the driver ([`crate::driver`])
/// calls `observe` → ownership (must be ours) → `wait` (AWS busy: write
/// nothing) → `diff` → `create` or `update` with the diff → `settling` (in
/// sync but not live yet) → `outputs`. On deletion: `observe` and
/// `preflight_delete` for every component first, then `delete` in reverse
/// dependency order.
pub trait Component: Send + Sync {
    /// What `observe` reads.
    type Observed: Send + Sync;

    /// The component's name on status.
    fn name(&self) -> ComponentName;
    /// The kind of resource, as messages name it (`S3 bucket`).
    fn kind(&self) -> &'static str;
    /// ARN or name of the resource before it is observed.
    fn id(&self) -> String;
    /// ARN or name as observed, when it says more than [`Component::id`].
    fn observed_id(&self, _seen: &Self::Observed) -> Option<String> {
        None
    }

    /// Read the real resource; `None` when it does not exist. Stops reading
    /// once it is clear that the resource is not this stack's.
    fn observe(&self, cx: &Ctx<'_>) -> impl Future<Output = Result<Option<Self::Observed>>> + Send;
    /// Who owns what was observed. A part of another resource (a bucket's
    /// notification rules) is ours by construction: the driver checks its host.
    fn ownership(&self, cx: &Ctx<'_>, seen: &Self::Observed) -> Ownership;
    /// For a part of another resource (notification rules, a policy
    /// statement), which `observe` always sees: whether any of it exists. The
    /// first write of a part that did not exist is its creation (events,
    /// status), not a drift repair.
    fn exists(&self, _seen: &Self::Observed) -> bool {
        true
    }
    /// AWS is still working on it (creating, updating): write nothing yet.
    fn wait(&self, _seen: &Self::Observed) -> Option<Progress> {
        None
    }
    /// Every field that differs from the spec (pure). `Err` when it cannot be
    /// repaired in place (`Immutable`).
    fn diff(&self, cx: &Ctx<'_>, seen: &Self::Observed) -> Result<Vec<Change>>;
    /// Create the missing resource.
    fn create(&self, cx: &Ctx<'_>) -> impl Future<Output = Result<Created>> + Send;
    /// Repair the fields of `changes` (as [`Component::diff`] returned them).
    fn update(
        &self,
        cx: &Ctx<'_>,
        seen: &Self::Observed,
        changes: &[Change],
    ) -> impl Future<Output = Result<Updated>> + Send;
    /// In sync, but not fully live yet (a distribution still deploying).
    fn settling(&self, _seen: &Self::Observed) -> Option<Progress> {
        None
    }
    /// What dependants need from it, as it stands after this pass.
    fn outputs(&self, _cx: &Ctx<'_>, _seen: &Self::Observed) -> Vec<Output> {
        Vec::new()
    }
    /// Before anything of the stack is deleted: `Err` when deleting this
    /// component would stop half-way (a non-empty bucket that may not be
    /// emptied, deletion protection). Called only for resources that are ours.
    fn preflight_delete(
        &self,
        _cx: &Ctx<'_>,
        _seen: &Self::Observed,
    ) -> impl Future<Output = Result<()>> + Send {
        async { Ok(()) }
    }
    /// Delete what was observed (ours). Idempotent; several passes allowed.
    fn delete(
        &self,
        cx: &Ctx<'_>,
        seen: &Self::Observed,
    ) -> impl Future<Output = Result<Deletion>> + Send;
}

/// Ownership from a resource's tags.
pub fn owner_from_tags(ctx: &Ctx<'_>, tags: &BTreeMap<String, String>) -> Ownership {
    ownership(ctx.id, tags.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

/// Whether a resource with these tags belongs to this stack.
pub fn is_ours(ctx: &Ctx<'_>, tags: &BTreeMap<String, String>) -> bool {
    owner_from_tags(ctx, tags) == Ownership::Ours
}

/// `Ok` when the resource's tags say it belongs to this stack; otherwise a
/// `NameConflict` naming the `kind` of resource, its name and who owns it.
pub fn check_owner(
    ctx: &Ctx<'_>,
    kind: &'static str,
    name: &str,
    tags: &BTreeMap<String, String>,
) -> Result<()> {
    match owner_from_tags(ctx, tags).owner() {
        None => Ok(()),
        Some(owner) => Err(Error::NameConflict {
            kind,
            name: name.to_string(),
            owner,
        }),
    }
}

/// Compare tags: keys under `aws:` belong to AWS and are ignored. The desired
/// set is authoritative for everything else.
pub fn tag_change(
    desired: &BTreeMap<String, String>,
    observed: &BTreeMap<String, String>,
) -> Option<Change> {
    let observed: BTreeMap<&String, &String> = observed
        .iter()
        .filter(|(k, _)| !k.starts_with("aws:"))
        .collect();
    let desired_ref: BTreeMap<&String, &String> = desired.iter().collect();
    if observed == desired_ref {
        return None;
    }
    let missing: Vec<String> = desired
        .iter()
        .filter(|(k, v)| observed.get(k) != Some(v))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let extra: Vec<String> = observed
        .keys()
        .filter(|k| !desired.contains_key(**k))
        .map(|k| k.to_string())
        .collect();
    let mut from = Vec::new();
    if !extra.is_empty() {
        from.push(format!("extra {}", extra.join(",")));
    }
    if !missing.is_empty() {
        from.push(format!("missing {}", missing.join(",")));
    }
    Some(Change::new("tags", from.join(" "), "as spec"))
}

/// Desired tags the resource lacks or has with another value (to tag with).
pub fn missing_tags<C: FromIterator<(String, String)>>(
    desired: &BTreeMap<String, String>,
    observed: &BTreeMap<String, String>,
) -> C {
    desired
        .iter()
        .filter(|(k, v)| observed.get(*k) != Some(v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Tag keys present on the resource but not desired (excluding `aws:` keys).
pub fn extra_tag_keys(
    desired: &BTreeMap<String, String>,
    observed: &BTreeMap<String, String>,
) -> Vec<String> {
    observed
        .keys()
        .filter(|k| !k.starts_with("aws:") && !desired.contains_key(*k))
        .cloned()
        .collect()
}

/// `PreconditionFailed` twice in a row on an ETag-guarded write of `what`
/// (someone else wrote in between both times): retried on a later pass.
pub fn changed_concurrently(action: &str, what: &str) -> Error {
    Error::Aws {
        action: action.into(),
        code: "PreconditionFailed".into(),
        message: format!("{what} changed concurrently twice in a row; retrying later"),
        class: crate::error::ErrorClass::Retryable,
    }
}

/// An ETag-guarded delete (CloudFront's untaggable resources): what the
/// errors name and the codes that mean "gone" and "still in use".
pub struct GuardedDelete<'a> {
    /// `service:Operation`.
    pub action: &'static str,
    /// The resource, for messages (`the cache policy`).
    pub what: &'a str,
    /// Error code of a resource that does not exist.
    pub absent: &'static str,
    /// Error code of a resource something still uses: the deletion waits.
    pub in_use: &'static str,
    /// The `InProgress` message while it is in use.
    pub in_use_message: String,
}

/// Delete with a fresh ETag (`fresh`: `None` when the resource is gone or no
/// longer ours to delete; `send` the delete with that ETag as `IfMatch`),
/// one retry on `PreconditionFailed`.
pub async fn delete_with_etag<T, E, FE, FutE, FS, FutS>(
    g: GuardedDelete<'_>,
    mut fresh: FE,
    mut send: FS,
) -> Result<Deletion>
where
    FE: FnMut() -> FutE,
    FutE: Future<Output = Result<Option<String>>>,
    FS: FnMut(String) -> FutS,
    FutS: Future<Output = std::result::Result<T, SdkError<E, HttpResponse>>>,
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    for attempt in 0..2 {
        let Some(etag) = fresh().await? else {
            return Ok(Deletion::Absent);
        };
        match send(etag).await {
            Ok(_) => return Ok(Deletion::Gone),
            Err(e) => match code_of(&e) {
                Some(c) if c == g.absent => return Ok(Deletion::Absent),
                Some(c) if c == g.in_use => return Ok(Deletion::InProgress(g.in_use_message)),
                Some("PreconditionFailed") if attempt == 0 => continue,
                Some("PreconditionFailed") => break,
                _ => return Err(Error::aws(g.action, e)),
            },
        }
    }
    Err(changed_concurrently(g.action, g.what))
}

/// The AWS error code of an SDK error, if it is a service error.
pub fn code_of<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> Option<&str> {
    crate::error::sdk_code(err)
}

/// HTTP status of a service error.
pub fn status_of<E>(err: &SdkError<E, HttpResponse>) -> Option<u16> {
    match err {
        SdkError::ServiceError(se) => Some(se.raw().status().as_u16()),
        _ => None,
    }
}

/// Turn "not configured" errors (`absent` codes) into `None`.
pub fn optional<T, E>(
    action: &str,
    result: std::result::Result<T, SdkError<E, HttpResponse>>,
    absent: &[&str],
) -> Result<Option<T>>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match result {
        Ok(v) => Ok(Some(v)),
        Err(e) if code_of(&e).is_some_and(|c| absent.contains(&c)) => Ok(None),
        Err(e) => Err(Error::aws(action, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type DeleteErr = aws_sdk_cloudfront::operation::delete_function::DeleteFunctionError;

    fn failed(code: &str, status: u16) -> SdkError<DeleteErr, HttpResponse> {
        let meta = aws_smithy_types::error::ErrorMetadata::builder()
            .code(code)
            .build();
        SdkError::service_error(
            DeleteErr::generic(meta),
            HttpResponse::new(
                status.try_into().unwrap(),
                aws_smithy_types::body::SdkBody::empty(),
            ),
        )
    }

    /// Run a guarded delete whose sends answer `answers` in turn; returns
    /// its outcome and the ETags it sent.
    async fn guarded(answers: &[Option<(&str, u16)>]) -> (Result<Deletion>, Vec<String>) {
        let etags = std::sync::Mutex::new(vec!["E1".to_string(), "E2".to_string()]);
        let sent = std::sync::Mutex::new(Vec::new());
        let guard = GuardedDelete {
            action: "cloudfront:DeleteFunction",
            what: "the CloudFront function",
            absent: "NoSuchFunctionExists",
            in_use: "FunctionInUse",
            in_use_message: "in use".into(),
        };
        let out = delete_with_etag(
            guard,
            || {
                let next = etags.lock().unwrap().drain(..1).next();
                async move { Ok(next) }
            },
            |etag| {
                let mut sent = sent.lock().unwrap();
                let answer = answers[sent.len()];
                sent.push(etag);
                async move {
                    match answer {
                        None => Ok(()),
                        Some((code, status)) => Err(failed(code, status)),
                    }
                }
            },
        )
        .await;
        (out, sent.into_inner().unwrap())
    }

    #[tokio::test]
    async fn a_guarded_delete_retries_once_with_a_fresh_etag() {
        // Stale once: read again, sent with the new ETag, gone.
        let (out, sent) = guarded(&[Some(("PreconditionFailed", 412)), None]).await;
        assert_eq!(out.unwrap(), Deletion::Gone);
        assert_eq!(sent, ["E1", "E2"]);
        // Stale twice: a retryable error naming the action, nothing more sent.
        let (out, sent) = guarded(&[
            Some(("PreconditionFailed", 412)),
            Some(("PreconditionFailed", 412)),
        ])
        .await;
        let err = out.unwrap_err();
        assert_eq!(err.aws_code(), Some("PreconditionFailed"), "{err}");
        assert!(
            err.to_string().contains("cloudfront:DeleteFunction"),
            "{err}"
        );
        assert_eq!(sent.len(), 2);
        // In use: the deletion waits; gone already: absent; anything else: the error.
        let (out, _) = guarded(&[Some(("FunctionInUse", 409))]).await;
        assert_eq!(out.unwrap(), Deletion::InProgress("in use".into()));
        let (out, _) = guarded(&[Some(("NoSuchFunctionExists", 404))]).await;
        assert_eq!(out.unwrap(), Deletion::Absent);
        let (out, _) = guarded(&[Some(("AccessDenied", 403))]).await;
        assert_eq!(out.unwrap_err().aws_code(), Some("AccessDenied"));
    }

    #[test]
    fn tags_compare_ignoring_aws_keys() {
        let desired = BTreeMap::from([("a".to_string(), "1".to_string())]);
        let mut observed = desired.clone();
        observed.insert("aws:cloudformation:stack-name".into(), "x".into());
        assert_eq!(tag_change(&desired, &observed), None);
        observed.insert("extra".into(), "y".into());
        observed.remove("a");
        let c = tag_change(&desired, &observed).unwrap();
        assert!(c.from.contains("extra extra"), "{c}");
        assert!(c.from.contains("missing a=1"), "{c}");
        assert_eq!(
            extra_tag_keys(&desired, &observed),
            vec!["extra".to_string()]
        );
    }
}

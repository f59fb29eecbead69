//! The reconciler: one function that reads top to bottom.
//!
//! finalizer → plan (pure) → walk the components in dependency order →
//! events for what changed → status (server-side apply, one field manager,
//! written only when it changed) → requeue (resync, poll, or backoff).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{self, Event as Finalizer, finalizer};
use kube::runtime::reflector;
use kube::runtime::utils::{WatchStreamExt, predicates};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use tracing::{Instrument, info, warn};

use crate::api::{
    ComponentStatus, DeletionPolicy, FINALIZER, ImageOptimizationStack,
    ImageOptimizationStackStatus, PAUSED_ANNOTATION,
};
use crate::aws::AwsFactory;
use crate::components::{self, Ctx, Deletion, Report, State};
use crate::error::{Error, ErrorClass, Result};
use crate::metrics::Metrics;
use crate::plan::{self, AwsEnv};
use crate::status::{self, Phase};

/// Field manager of every status write.
pub const FIELD_MANAGER: &str = "imagestack-operator";

/// How often a stack that is on its way (table CREATING, deleting…) is polled.
pub const POLL_INTERVAL: Duration = Duration::from_secs(5);

/// Shared state of the reconciler.
pub struct Context {
    pub client: Client,
    pub aws: AwsFactory,
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
    pub resync_interval: Duration,
    pub plan_options: plan::PlanOptions,
    failures: Mutex<HashMap<String, u32>>,
    events_unavailable: AtomicBool,
}

impl Context {
    pub fn new(
        client: Client,
        aws: AwsFactory,
        metrics: Arc<Metrics>,
        resync_interval: Duration,
        reporter: Reporter,
        plan_options: plan::PlanOptions,
    ) -> Self {
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            aws,
            metrics,
            resync_interval,
            plan_options,
            failures: Mutex::new(HashMap::new()),
            events_unavailable: AtomicBool::new(false),
        }
    }

    /// Publish a Kubernetes Event about `stack`. Best effort: a failure is
    /// logged (once at warn level, then at debug) and never fails the reconcile.
    async fn publish(
        &self,
        stack: &ImageOptimizationStack,
        type_: EventType,
        reason: &str,
        note: String,
    ) {
        let event = KubeEvent {
            type_,
            reason: reason.to_string(),
            note: Some(truncate(&note, 1000)),
            action: reason.to_string(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &stack.object_ref(&())).await {
            if self.events_unavailable.swap(true, Ordering::SeqCst) {
                tracing::debug!(error = %e, reason, "could not publish event");
            } else {
                warn!(error = %e, reason, "could not publish event (events are best effort; further failures logged at debug)");
            }
        }
    }

    fn failures(&self, key: &str) -> u32 {
        self.failures
            .lock()
            .map(|m| m.get(key).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    fn set_failures(&self, key: &str, n: Option<u32>) {
        if let Ok(mut m) = self.failures.lock() {
            match n {
                Some(n) => m.insert(key.to_string(), n),
                None => m.remove(key),
            };
        }
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

fn key_of(stack: &ImageOptimizationStack) -> String {
    format!(
        "{}/{}",
        stack.namespace().unwrap_or_default(),
        stack.name_any()
    )
}

/// Error-policy backoff: 2 s doubling per consecutive failure, capped at 5 min,
/// with ±10 % jitter so that many failing stacks do not retry in lockstep.
pub fn backoff(failures: u32) -> Duration {
    let base = 2f64 * 2f64.powi(failures.saturating_sub(1).min(16) as i32);
    let capped = base.min(300.0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let jitter = 0.9 + 0.2 * (f64::from(nanos % 1000) / 1000.0);
    Duration::from_secs_f64(capped * jitter)
}

/// Reconcile one stack (the controller calls this).
pub async fn reconcile(stack: Arc<ImageOptimizationStack>, ctx: Arc<Context>) -> Result<Action> {
    let key = key_of(&stack);
    let span = tracing::info_span!(
        "reconcile",
        namespace = %stack.namespace().unwrap_or_default(),
        stack = %stack.name_any(),
        generation = stack.metadata.generation.unwrap_or_default()
    );
    let started = Instant::now();
    let ns = stack.namespace().unwrap_or_default();
    let api: Api<ImageOptimizationStack> = Api::namespaced(ctx.client.clone(), &ns);
    let result = finalizer(&api, FINALIZER, stack, |event| async {
        match event {
            Finalizer::Apply(s) => apply(&s, &ctx, &api).await,
            Finalizer::Cleanup(s) => cleanup(&s, &ctx, &api).await,
        }
    })
    .instrument(span)
    .await
    .map_err(|e| match e {
        finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => e,
        finalizer::Error::AddFinalizer(e) | finalizer::Error::RemoveFinalizer(e) => Error::Kube(e),
        other => Error::Finalizer(other.to_string()),
    });
    let outcome = match &result {
        Ok(_) => "success",
        Err(Error::Pending(_)) => "requeue",
        Err(_) => "error",
    };
    ctx.metrics
        .reconciled(outcome, started.elapsed().as_secs_f64());
    if result.is_ok() {
        ctx.set_failures(&key, None);
    }
    result
}

/// What the controller does after a failed reconcile.
pub fn error_policy(stack: Arc<ImageOptimizationStack>, err: &Error, ctx: Arc<Context>) -> Action {
    let key = key_of(&stack);
    if let Error::Pending(step) = err {
        tracing::debug!(stack = %key, step, "waiting");
        ctx.set_failures(&key, None);
        return Action::requeue(POLL_INTERVAL);
    }
    let n = ctx.failures(&key) + 1;
    ctx.set_failures(&key, Some(n));
    let delay = backoff(n);
    warn!(stack = %key, error = %err, reason = %err.reason(), attempt = n, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// Resolve account and region for a stack.
async fn aws_env(stack: &ImageOptimizationStack, ctx: &Context) -> Result<AwsEnv> {
    Ok(AwsEnv {
        account_id: ctx.aws.account_id().await?,
        region: plan::region(&stack.spec, &ctx.aws.default_region()),
    })
}

fn component_status(r: &Report) -> ComponentStatus {
    let (state, message) = match &r.state {
        State::Ready if r.created => ("Ready", Some("created".to_string())),
        State::Ready if !r.changes.is_empty() => ("Ready", Some(components::describe(&r.changes))),
        State::Ready => ("Ready", None),
        State::Progressing { reason, message } => (
            if r.created { "Creating" } else { "Progressing" },
            Some(format!("{reason}: {message}")),
        ),
        State::Paused { message } => ("Paused", Some(message.clone())),
    };
    ComponentStatus {
        name: r.name.clone(),
        id: Some(r.id.clone()),
        state: state.to_string(),
        message,
    }
}

fn pending(name: &str, id: &str, waiting_for: &str) -> ComponentStatus {
    ComponentStatus {
        name: name.to_string(),
        id: Some(id.to_string()),
        state: "Pending".to_string(),
        message: Some(format!("waiting for {waiting_for}")),
    }
}

fn error_component(name: &str, id: &str, e: &Error) -> ComponentStatus {
    let state = match e {
        Error::NameConflict { .. } => "Conflict",
        _ => "Error",
    };
    ComponentStatus {
        name: name.to_string(),
        id: Some(id.to_string()),
        state: state.to_string(),
        message: Some(e.to_string()),
    }
}

/// Write `status` with server-side apply, unless it is what the object already has.
async fn write_status(
    api: &Api<ImageOptimizationStack>,
    stack: &ImageOptimizationStack,
    status: ImageOptimizationStackStatus,
) -> Result<()> {
    if stack.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let patch = serde_json::json!({
        "apiVersion": "imagestack.dev/v1alpha1",
        "kind": "ImageOptimizationStack",
        "status": status,
    });
    api.patch_status(
        &stack.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}

fn now() -> k8s_openapi::jiff::Timestamp {
    k8s_openapi::jiff::Timestamp::now()
}

fn phase_of_error(e: &Error) -> Phase {
    match e.class() {
        ErrorClass::Stalled => Phase::Stalled {
            reason: e.reason(),
            message: e.to_string(),
        },
        ErrorClass::Retryable => Phase::Progressing {
            reason: e.reason(),
            message: e.to_string(),
        },
    }
}

/// Build and write the status for `phase`.
async fn set_status(
    api: &Api<ImageOptimizationStack>,
    stack: &ImageOptimizationStack,
    phase: &Phase,
    components: Option<Vec<ComponentStatus>>,
    outputs: Option<crate::api::StackOutputs>,
    ctx: &Context,
) -> Result<()> {
    let previous = stack.status.clone().unwrap_or_default();
    let generation = stack.metadata.generation;
    let status = ImageOptimizationStackStatus {
        observed_generation: generation,
        conditions: status::conditions(phase, generation, &previous.conditions, now()),
        outputs: outputs.or(previous.outputs.clone()),
        components: components.unwrap_or(previous.components.clone()),
    };
    // Keep transition times stable when nothing but time changed.
    let status = if status::same_conditions(&status.conditions, &previous.conditions)
        && status.outputs == previous.outputs
        && status.components == previous.components
        && status.observed_generation == previous.observed_generation
    {
        previous
    } else {
        status
    };
    let condition = match phase {
        Phase::Ready => status::READY,
        Phase::Progressing { .. } => status::RECONCILING,
        Phase::Stalled { .. } => status::STALLED,
    };
    ctx.metrics
        .set_stack_condition(&key_of(stack), Some(condition));
    write_status(api, stack, status).await
}

/// Bring AWS in line with the spec.
async fn apply(
    stack: &ImageOptimizationStack,
    ctx: &Context,
    api: &Api<ImageOptimizationStack>,
) -> Result<Action> {
    let spec_changed =
        stack.status.as_ref().and_then(|s| s.observed_generation) != stack.metadata.generation;
    // First reconcile: say so before any AWS call.
    if stack
        .status
        .as_ref()
        .is_none_or(|s| s.conditions.is_empty())
    {
        set_status(
            api,
            stack,
            &Phase::Progressing {
                reason: "Initializing".into(),
                message: "creating the stack's AWS resources".into(),
            },
            None,
            None,
            ctx,
        )
        .await?;
    }
    let env = match aws_env(stack, ctx).await {
        Ok(env) => env,
        Err(e) => {
            set_status(api, stack, &phase_of_error(&e), None, None, ctx).await?;
            return Err(e);
        }
    };
    let mut desired = match plan::plan_with(stack, &env, &ctx.plan_options) {
        Ok(d) => d,
        Err(e) => {
            set_status(api, stack, &phase_of_error(&e), None, None, ctx).await?;
            // Only a spec change can fix this: wait for one.
            return Ok(Action::await_change());
        }
    };
    let paused = stack.is_paused();
    let aws = ctx.aws.clients(Some(&env.region));
    let stack_id = desired.id.clone();
    let cctx = Ctx {
        aws: &aws,
        id: &stack_id,
        dry_run: paused,
    };
    let mut outputs = desired.outputs();

    let mut walk = Walk::default();
    // Delivery first: the output buckets' policies name the distribution.
    let cdn = &stack.spec.cdn;
    let known_distribution = known_distribution_id(stack);
    let distribution = desired_distribution(stack, &desired, &env.region);
    let oac = components::origin_access::desired(&stack_id);
    if cdn.enabled {
        let oac_id = match components::origin_access::reconcile(&cctx, &oac).await {
            Ok((r, id)) => {
                walk.record(components::origin_access::COMPONENT, &oac.name, Ok(r));
                id
            }
            Err(e) => {
                walk.record(components::origin_access::COMPONENT, &oac.name, Err(e));
                None
            }
        };
        match oac_id {
            Some(oac_id) => {
                match components::distribution::reconcile(
                    &cctx,
                    &distribution,
                    &oac_id,
                    known_distribution.as_deref(),
                )
                .await
                {
                    Ok((r, out)) => {
                        if let Some(out) = out {
                            desired.grant_cloudfront(&out.arn);
                            outputs.distribution_id = Some(out.id);
                            outputs.cdn_domain = Some(out.domain);
                        }
                        walk.record(
                            components::distribution::COMPONENT,
                            &distribution.caller_reference,
                            Ok(r),
                        );
                    }
                    Err(e) => walk.record(
                        components::distribution::COMPONENT,
                        &distribution.caller_reference,
                        Err(e),
                    ),
                }
            }
            None => walk.statuses.push(pending(
                components::distribution::COMPONENT,
                &distribution.caller_reference,
                components::origin_access::COMPONENT,
            )),
        }
    } else {
        // CDN disabled (or switched off): the distribution and OAC go, over several passes.
        let r =
            components::distribution::delete(&cctx, &distribution, known_distribution.as_deref())
                .await;
        let gone = matches!(r, Ok(Deletion::Gone));
        walk.disabled(
            components::distribution::COMPONENT,
            &distribution.caller_reference,
            r,
        );
        if gone {
            let r = components::origin_access::delete(&cctx, &oac).await;
            walk.disabled(components::origin_access::COMPONENT, &oac.name, r);
        }
    }
    for b in &desired.buckets {
        let r = components::bucket::reconcile(&cctx, b).await;
        walk.record(&b.component, &b.arn(), r);
    }
    let r = components::table::reconcile(&cctx, &desired.table).await;
    walk.record("metadata-table", &desired.table.name, r);
    let r = components::role::reconcile(&cctx, &desired.role).await;
    walk.record("processor-role", &desired.role.arn, r);

    // Compute and delivery, each gated on what it needs existing.
    let exists = |statuses: &[ComponentStatus], name: &str| {
        statuses.iter().any(|c| {
            c.name == name
                && !matches!(
                    c.state.as_str(),
                    "Error" | "Conflict" | "Pending" | "Paused"
                )
        })
    };
    if exists(&walk.statuses, "processor-role") {
        let r = components::function::reconcile(&cctx, &desired.function).await;
        walk.record("processor-function", &desired.function.arn, r);
    } else {
        walk.statuses.push(pending(
            "processor-function",
            &desired.function.arn,
            "processor-role",
        ));
    }
    if exists(&walk.statuses, "processor-function") {
        let r = components::permission::reconcile(&cctx, &desired.permission).await;
        walk.record("s3-invoke-permission", &desired.function.arn, r);
    } else {
        walk.statuses.push(pending(
            "s3-invoke-permission",
            &desired.function.arn,
            "processor-function",
        ));
    }
    if exists(&walk.statuses, "s3-invoke-permission") && exists(&walk.statuses, plan::UPLOAD) {
        let r = components::notification::reconcile(&cctx, &desired.notification).await;
        walk.record("upload-notifications", &desired.notification.bucket, r);
    } else {
        walk.statuses.push(pending(
            "upload-notifications",
            &desired.notification.bucket,
            "s3-invoke-permission and upload-bucket",
        ));
    }
    let dashboard = components::dashboard::desired(
        &stack_id,
        &components::dashboard::DashboardInput {
            region: env.region.clone(),
            stack: stack_id.owner_tag_value(),
            function_name: desired.function.name.clone(),
            environment: stack_id.environment.clone(),
            table_name: desired.table.name.clone(),
            distribution_id: outputs.distribution_id.clone(),
            formats: stack
                .spec
                .processor
                .formats
                .iter()
                .map(|f| (*f).into())
                .collect(),
        },
    );
    if stack.spec.dashboard.enabled {
        let r = components::dashboard::reconcile(&cctx, &dashboard).await;
        walk.record(components::dashboard::COMPONENT, &dashboard.name, r);
        outputs.dashboard_name = Some(dashboard.name.clone());
        outputs.dashboard_url = Some(components::dashboard::console_url(
            &env.region,
            &dashboard.name,
        ));
    } else {
        let r = components::dashboard::delete(&cctx, &dashboard.name).await;
        walk.disabled(components::dashboard::COMPONENT, &dashboard.name, r);
    }

    for r in &walk.reports {
        if r.created {
            let note = if r.changes.is_empty() {
                format!("created {} {}", r.name, r.id)
            } else {
                format!(
                    "created {} {} ({})",
                    r.name,
                    r.id,
                    components::describe(&r.changes)
                )
            };
            ctx.publish(stack, EventType::Normal, "Created", note).await;
        } else if !r.changes.is_empty() {
            let reason = if spec_changed {
                "Updated"
            } else {
                "DriftRepaired"
            };
            if !spec_changed {
                ctx.metrics.drift_repaired(&r.name, r.changes.len() as u64);
            }
            info!(component = %r.name, changes = %components::describe(&r.changes), reason, "repaired");
            ctx.publish(
                stack,
                EventType::Normal,
                reason,
                format!("{}: {}", r.name, components::describe(&r.changes)),
            )
            .await;
        }
    }

    let progressing = walk.reports.iter().find_map(|r| match &r.state {
        State::Progressing { reason, message } => {
            Some((reason.clone(), format!("{}: {message}", r.name)))
        }
        _ => None,
    });
    let progressing = progressing.or_else(|| {
        walk.statuses
            .iter()
            .find(|c| c.state == "Pending")
            .map(|c| {
                (
                    "WaitingForDependency".to_string(),
                    format!("{}: {}", c.name, c.message.clone().unwrap_or_default()),
                )
            })
    });
    let paused_diff = walk.reports.iter().find_map(|r| match &r.state {
        State::Paused { message } => Some(format!("{}: {message}", r.name)),
        _ => None,
    });
    let phase = if let Some(e) = &walk.first_error {
        if let Error::Aws { .. } | Error::NameConflict { .. } = e {
            ctx.publish(stack, EventType::Warning, &e.reason(), e.to_string())
                .await;
        }
        phase_of_error(e)
    } else if let Some(message) = paused_diff {
        // Paused differences outrank progress: nothing moves until the stack is unpaused.
        Phase::Progressing {
            reason: "Paused".into(),
            message: format!(
                "{PAUSED_ANNOTATION}=true: AWS writes are suspended; differences: {message}"
            ),
        }
    } else if let Some((reason, message)) = progressing {
        Phase::Progressing { reason, message }
    } else {
        Phase::Ready
    };
    set_status(api, stack, &phase, Some(walk.statuses), Some(outputs), ctx).await?;
    if let Some(e) = walk.first_error {
        return Err(e);
    }
    Ok(match phase {
        Phase::Ready => Action::requeue(ctx.resync_interval),
        Phase::Progressing { reason, .. } if reason == "Paused" => {
            Action::requeue(ctx.resync_interval)
        }
        _ => Action::requeue(POLL_INTERVAL),
    })
}

fn price_class(p: crate::api::PriceClass) -> &'static str {
    match p {
        crate::api::PriceClass::PriceClass_100 => "PriceClass_100",
        crate::api::PriceClass::PriceClass_200 => "PriceClass_200",
        crate::api::PriceClass::PriceClass_All => "PriceClass_All",
    }
}

/// What one pass found: component statuses, reports and the most important error.
#[derive(Default)]
struct Walk {
    statuses: Vec<ComponentStatus>,
    reports: Vec<Report>,
    first_error: Option<Error>,
}

impl Walk {
    fn error(&mut self, e: Error) {
        // A human-needed error outranks a retryable one.
        let replace = match &self.first_error {
            None => true,
            Some(prev) => prev.class() == ErrorClass::Retryable && e.class() == ErrorClass::Stalled,
        };
        if replace {
            self.first_error = Some(e);
        }
    }

    fn record(&mut self, name: &str, id: &str, r: Result<Report>) {
        match r {
            Ok(r) => {
                self.statuses.push(component_status(&r));
                self.reports.push(r);
            }
            Err(e) => {
                warn!(component = name, error = %e, "component failed");
                self.statuses.push(error_component(name, id, &e));
                self.error(e);
            }
        }
    }

    /// A component the spec switched off (being removed).
    fn disabled(&mut self, name: &str, id: &str, r: Result<Deletion>) {
        let (state, message) = match r {
            Ok(Deletion::Gone) => ("Disabled", None),
            Ok(Deletion::InProgress(m)) => ("Deleting", Some(m)),
            Err(e) => {
                let m = e.to_string();
                self.error(e);
                ("Error", Some(m))
            }
        };
        self.statuses.push(ComponentStatus {
            name: name.to_string(),
            id: Some(id.to_string()),
            state: state.to_string(),
            message,
        });
    }
}

/// Delete (or retain) the stack's AWS resources before the finalizer goes.
/// Returning `Ok` removes the finalizer; `Err(Pending)` keeps it and polls.
/// The distribution the spec asks for (used by reconcile and cleanup alike).
fn desired_distribution(
    stack: &ImageOptimizationStack,
    desired: &plan::DesiredStack,
    region: &str,
) -> components::distribution::DesiredDistribution {
    let cdn = &stack.spec.cdn;
    components::distribution::desired(
        &desired.id,
        region,
        &desired.output_buckets(),
        price_class(cdn.price_class),
        (
            cdn.min_ttl_seconds,
            cdn.default_ttl_seconds,
            cdn.max_ttl_seconds,
        ),
        desired.function.tags.clone(),
    )
}

/// The distribution id the status last reported, if any.
fn known_distribution_id(stack: &ImageOptimizationStack) -> Option<String> {
    stack
        .status
        .as_ref()
        .and_then(|s| s.outputs.as_ref())
        .and_then(|o| o.distribution_id.clone())
}

async fn cleanup(
    stack: &ImageOptimizationStack,
    ctx: &Context,
    api: &Api<ImageOptimizationStack>,
) -> Result<Action> {
    let key = key_of(stack);
    if stack.spec.deletion_policy == DeletionPolicy::Retain {
        info!("deletionPolicy Retain: leaving AWS resources in place");
        ctx.publish(
            stack,
            EventType::Normal,
            "Retained",
            "deletionPolicy is Retain: AWS resources are left in place".into(),
        )
        .await;
        ctx.metrics.set_stack_condition(&key, None);
        return Ok(Action::await_change());
    }
    if stack.is_paused() {
        let phase = Phase::Progressing {
            reason: "Paused".into(),
            message: format!(
                "{PAUSED_ANNOTATION}=true: deletion waits until the stack is unpaused"
            ),
        };
        set_status(api, stack, &phase, None, None, ctx).await?;
        return Err(Error::Pending("paused".into()));
    }
    let env = aws_env(stack, ctx).await?;
    let desired = match plan::plan_with(stack, &env, &ctx.plan_options) {
        Ok(d) => d,
        Err(e) => {
            set_status(api, stack, &phase_of_error(&e), None, None, ctx).await?;
            return Err(e);
        }
    };
    let aws = ctx.aws.clients(Some(&env.region));
    let cctx = Ctx {
        aws: &aws,
        id: &desired.id,
        dry_run: false,
    };
    let mut statuses = Vec::new();
    let mut pending: Option<String> = None;
    let mut first_error: Option<Error> = None;
    let mut note =
        |name: &str, id: &str, r: Result<Deletion>, statuses: &mut Vec<ComponentStatus>| {
            let (state, message) = match r {
                Ok(Deletion::Gone) => ("Deleted", None),
                Ok(Deletion::InProgress(m)) => {
                    pending.get_or_insert(m.clone());
                    ("Deleting", Some(m))
                }
                Err(e) => {
                    let m = e.to_string();
                    if first_error.is_none() {
                        first_error = Some(e);
                    }
                    ("Error", Some(m))
                }
            };
            statuses.push(ComponentStatus {
                name: name.to_string(),
                id: Some(id.to_string()),
                state: state.to_string(),
                message,
            });
        };
    // Reverse dependency order: notifications, permission, function, role, table, dashboard,
    // distribution, origin access control, then the buckets.
    let r = components::notification::delete(&cctx, &desired.notification).await;
    note(
        "upload-notifications",
        &desired.notification.bucket,
        r,
        &mut statuses,
    );
    let r = components::permission::delete(&cctx, &desired.permission).await;
    note(
        "s3-invoke-permission",
        &desired.function.arn,
        r,
        &mut statuses,
    );
    let r = components::function::delete(&cctx, &desired.function).await;
    note(
        "processor-function",
        &desired.function.arn,
        r,
        &mut statuses,
    );
    let r = components::role::delete(&cctx, &desired.role).await;
    note("processor-role", &desired.role.arn, r, &mut statuses);
    let r = components::table::delete(&cctx, &desired.table).await;
    note("metadata-table", &desired.table.name, r, &mut statuses);
    let dashboard = components::dashboard::dashboard_name(&desired.id);
    let r = components::dashboard::delete(&cctx, &dashboard).await;
    note(
        components::dashboard::COMPONENT,
        &dashboard,
        r,
        &mut statuses,
    );
    let distribution = desired_distribution(stack, &desired, &env.region);
    let known_distribution = known_distribution_id(stack);
    // Disable → wait until Deployed → delete (over several passes), then the OAC.
    let r =
        components::distribution::delete(&cctx, &distribution, known_distribution.as_deref()).await;
    let distribution_gone = matches!(r, Ok(Deletion::Gone));
    note(
        components::distribution::COMPONENT,
        &distribution.caller_reference,
        r,
        &mut statuses,
    );
    let oac = components::origin_access::desired(&desired.id);
    let mut cdn_gone = false;
    if distribution_gone {
        let r = components::origin_access::delete(&cctx, &oac).await;
        cdn_gone = matches!(r, Ok(Deletion::Gone));
        note(
            components::origin_access::COMPONENT,
            &oac.name,
            r,
            &mut statuses,
        );
    } else {
        note(
            components::origin_access::COMPONENT,
            &oac.name,
            Ok(Deletion::InProgress(
                "waiting for the distribution to be deleted".into(),
            )),
            &mut statuses,
        );
    }
    // The buckets (the data, and what the distribution reads from) go last.
    for b in desired.buckets.iter().rev() {
        let r = if cdn_gone {
            components::bucket::delete(&cctx, b, desired.empty_buckets_on_delete).await
        } else {
            Ok(Deletion::InProgress(
                "waiting for the distribution and its origin access control to be deleted".into(),
            ))
        };
        note(&b.component, &b.arn(), r, &mut statuses);
    }
    statuses.reverse();

    if let Some(e) = first_error {
        set_status(api, stack, &phase_of_error(&e), Some(statuses), None, ctx).await?;
        ctx.publish(stack, EventType::Warning, &e.reason(), e.to_string())
            .await;
        return Err(e);
    }
    if let Some(step) = pending {
        let phase = Phase::Progressing {
            reason: "Deleting".into(),
            message: step.clone(),
        };
        set_status(api, stack, &phase, Some(statuses), None, ctx).await?;
        return Err(Error::Pending(step));
    }
    ctx.publish(
        stack,
        EventType::Normal,
        "Deleted",
        "deleted every AWS resource of the stack".into(),
    )
    .await;
    ctx.metrics.set_stack_condition(&key, None);
    info!("all AWS resources deleted");
    Ok(Action::await_change())
}

/// Hash of what should trigger a reconcile: the spec (generation), the
/// finalizers, deletion, and the pause annotation — not status writes.
pub fn change_hash(stack: &ImageOptimizationStack) -> Option<u64> {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    predicates::generation(stack).hash(&mut h);
    predicates::finalizers(stack).hash(&mut h);
    stack.metadata.deletion_timestamp.is_some().hash(&mut h);
    stack.annotations().get(PAUSED_ANNOTATION).hash(&mut h);
    Some(h.finish())
}

/// Options of the controller loop.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub namespace: Option<String>,
    pub concurrency: u16,
}

/// Run the controller until a shutdown signal.
pub async fn run(ctx: Arc<Context>, opts: RunOptions) -> Result<()> {
    let api: Api<ImageOptimizationStack> = match &opts.namespace {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    };
    if let Err(e) = api.list(&ListParams::default().limit(1)).await {
        return Err(Error::Config(format!(
            "cannot list ImageOptimizationStacks ({e}); is the CRD installed? `kubectl apply -f crds/`"
        )));
    }
    let (reader, writer) = reflector::store();
    let stream = watcher(api, watcher::Config::default().any_semantic())
        .default_backoff()
        .reflect(writer)
        .applied_objects()
        .predicate_filter(change_hash, Default::default());
    ctx.metrics.set_ready(true);
    info!(
        namespace = opts.namespace.as_deref().unwrap_or("(all)"),
        concurrency = opts.concurrency,
        "controller started"
    );
    Controller::for_stream(stream, reader)
        .with_config(controller::Config::default().concurrency(opts.concurrency))
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx.clone())
        .for_each(|res| async move {
            match res {
                Ok((obj, _)) => tracing::debug!(stack = %obj.name, "reconciled"),
                Err(controller::Error::ReconcilerFailed(e, obj)) => {
                    tracing::debug!(stack = %obj.name, error = %e, "reconcile failed")
                }
                Err(e) => warn!(error = %e, "controller error"),
            }
        })
        .await;
    ctx.metrics.set_ready(false);
    info!("controller stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        let a = backoff(1).as_secs_f64();
        let b = backoff(2).as_secs_f64();
        let c = backoff(5).as_secs_f64();
        let z = backoff(50).as_secs_f64();
        assert!((1.8..=2.2).contains(&a), "{a}");
        assert!((3.6..=4.4).contains(&b), "{b}");
        assert!((28.8..=35.2).contains(&c), "{c}");
        assert!((270.0..=330.0).contains(&z), "{z}");
    }

    #[test]
    fn status_writes_do_not_change_the_hash() {
        let spec: crate::api::ImageOptimizationStackSpec =
            serde_norway::from_str("environment: dev").unwrap();
        let mut s = ImageOptimizationStack::new("a", spec);
        s.metadata.generation = Some(1);
        let h1 = change_hash(&s);
        s.status = Some(ImageOptimizationStackStatus {
            observed_generation: Some(1),
            ..Default::default()
        });
        s.metadata.resource_version = Some("42".into());
        assert_eq!(change_hash(&s), h1);
        s.metadata.generation = Some(2);
        assert_ne!(change_hash(&s), h1);
        let h2 = change_hash(&s);
        s.metadata
            .annotations
            .get_or_insert_default()
            .insert(PAUSED_ANNOTATION.into(), "true".into());
        assert_ne!(change_hash(&s), h2);
    }
}

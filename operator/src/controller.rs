//! The reconciler: finalizer → plan (pure: spec → the stack's graph) → the
//! driver walks the graph (forwards to apply, preflight + reverse to delete)
//! → events for what changed → status (server-side apply, one field manager,
//! written only when it changed) → requeue (resync, poll, or backoff).
//!
//! Nothing here knows any AWS service or component: those live in
//! [`crate::components`], their order in [`crate::plan`], the rules every
//! component follows in [`crate::driver`].

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
    ImageOptimizationStackStatus, PAUSED_ANNOTATION, StackOutputs,
};
use crate::aws::AwsFactory;
use crate::components::Ctx;
use crate::driver::Graph;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::outputs;
use crate::plan::{self, AwsEnv};
use crate::status::{self, Phase};

/// Field manager of every status write.
pub const FIELD_MANAGER: &str = "imagestack-operator";

/// Event action of everything published while applying the spec.
pub const ACTION_RECONCILE: &str = "Reconcile";
/// Event action of everything published while deleting the stack.
pub const ACTION_DELETE: &str = "Delete";

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
        action: &str,
        note: String,
    ) {
        let event = KubeEvent {
            type_,
            reason: reason.to_string(),
            note: Some(status::truncate(&note, 1000)),
            action: action.to_string(),
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

/// Build and write the status for `phase`.
async fn set_status(
    api: &Api<ImageOptimizationStack>,
    stack: &ImageOptimizationStack,
    phase: &Phase,
    components: Option<Vec<ComponentStatus>>,
    outputs: Option<StackOutputs>,
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

/// The region recorded on status at the first reconcile (the stack lives there).
fn recorded_region(stack: &ImageOptimizationStack) -> Option<&str> {
    stack.status.as_ref()?.outputs.as_ref()?.region.as_deref()
}

/// Where the stack lives, its desired state and its graph (pure once the
/// account is known).
async fn prepare(
    stack: &ImageOptimizationStack,
    ctx: &Context,
) -> Result<(AwsEnv, plan::DesiredStack, Graph)> {
    let region = plan::stack_region(
        &stack.spec,
        recorded_region(stack),
        &ctx.aws.default_region(),
    )?;
    let env = AwsEnv {
        account_id: ctx.aws.account_id().await?,
        region,
    };
    let desired = plan::plan_with(stack, &env, &ctx.plan_options)?;
    let graph = desired.graph()?;
    Ok((env, desired, graph))
}

/// Report an error found before the walk; only a spec change fixes a spec error.
async fn failed_to_prepare(
    api: &Api<ImageOptimizationStack>,
    stack: &ImageOptimizationStack,
    ctx: &Context,
    e: Error,
) -> Result<Action> {
    set_status(api, stack, &Phase::of_error(&e), None, None, ctx).await?;
    match e {
        Error::InvalidSpec(_) | Error::Immutable(_) => Ok(Action::await_change()),
        e => Err(e),
    }
}

/// Errors that deserve a Warning event (a human should look).
fn warn_about(e: &Error) -> bool {
    matches!(
        e,
        Error::Aws { .. }
            | Error::NameConflict { .. }
            | Error::BucketNotEmpty { .. }
            | Error::DeletionBlocked { .. }
    )
}

/// Bring AWS in line with the spec: plan the graph, walk it, report.
async fn apply(
    stack: &ImageOptimizationStack,
    ctx: &Context,
    api: &Api<ImageOptimizationStack>,
) -> Result<Action> {
    let (env, desired, graph) = match prepare(stack, ctx).await {
        Ok(p) => p,
        Err(e) => return failed_to_prepare(api, stack, ctx, e).await,
    };
    let mut outputs = desired.outputs();
    if stack
        .status
        .as_ref()
        .is_none_or(|s| s.conditions.is_empty())
    {
        // First reconcile: say so, and record the region, before any AWS write.
        let initializing = Phase::Progressing {
            reason: "Initializing".into(),
            message: "creating the stack's AWS resources".into(),
        };
        let first = StackOutputs {
            region: outputs.region.clone(),
            ..Default::default()
        };
        set_status(api, stack, &initializing, None, Some(first), ctx).await?;
    }
    let aws = ctx.aws.clients(Some(&env.region));
    let cx = Ctx::new(&aws, &desired.id, stack.is_paused());
    let pass = graph.apply(&cx).await;

    if let Some(d) = &pass.resolved.distribution {
        outputs.distribution_id = Some(d.id.clone());
        outputs.cdn_domain = Some(d.domain.clone());
        if !outputs.cdn_aliases.is_empty() {
            outputs.cname_target = Some(d.domain.clone());
        }
        outputs.image_url_prefix = crate::plan::image_host(&outputs.cdn_aliases, Some(&d.domain))
            .map(|host| format!("{host}{}", imagestack_contract::edge::PATH_PREFIX));
    }
    let spec_changed =
        stack.status.as_ref().and_then(|s| s.observed_generation) != stack.metadata.generation;
    for (reason, note) in pass.changes(spec_changed) {
        ctx.publish(stack, EventType::Normal, reason, ACTION_RECONCILE, note)
            .await;
    }
    if !spec_changed {
        for (component, n) in pass.drift_repairs() {
            ctx.metrics.drift_repaired(component.as_str(), n as u64);
        }
    }
    let published = publish_outputs(stack, ctx, &mut outputs).await;
    let mut phase = pass.phase();
    let error = pass.error().or(published.as_ref().err());
    if let Some(e) = error.filter(|e| warn_about(e)) {
        let (reason, note) = (e.reason(), e.status_message());
        ctx.publish(stack, EventType::Warning, &reason, ACTION_RECONCILE, note)
            .await;
    }
    if pass.error().is_none()
        && let Err(e) = &published
    {
        phase = Phase::of_error(e);
    }
    let statuses = Some(pass.statuses());
    set_status(api, stack, &phase, statuses, Some(outputs), ctx).await?;
    if let Some(e) = pass.into_error() {
        return Err(e);
    }
    published?;
    Ok(match phase {
        Phase::Ready => Action::requeue(ctx.resync_interval),
        Phase::Progressing { reason, .. } if reason == "Paused" => {
            Action::requeue(ctx.resync_interval)
        }
        _ => Action::requeue(POLL_INTERVAL),
    })
}

/// Publish the outputs to `spec.writeOutputsTo` (and remove the ConfigMap a
/// previous spec named); records the name in `outputs`.
async fn publish_outputs(
    stack: &ImageOptimizationStack,
    ctx: &Context,
    outputs: &mut StackOutputs,
) -> Result<()> {
    let previous = stack
        .status
        .as_ref()
        .and_then(|s| s.outputs.as_ref())
        .and_then(|o| o.config_map.clone());
    let wanted = stack
        .spec
        .write_outputs_to
        .as_ref()
        .map(|t| t.config_map_name.clone());
    if let Some(old) = previous.filter(|p| Some(p) != wanted.as_ref()) {
        outputs::remove(&ctx.client, stack, &old).await?;
    }
    let Some(name) = wanted else {
        return Ok(());
    };
    if outputs::sync(&ctx.client, stack, &name, outputs).await? {
        let note = format!("outputs written to ConfigMap {name}");
        ctx.publish(
            stack,
            EventType::Normal,
            "OutputsPublished",
            ACTION_RECONCILE,
            note,
        )
        .await;
    }
    outputs.config_map = Some(name);
    Ok(())
}

/// Remove the outputs ConfigMap when the stack goes.
async fn unpublish_outputs(stack: &ImageOptimizationStack, ctx: &Context) -> Result<()> {
    let names = [
        stack
            .spec
            .write_outputs_to
            .as_ref()
            .map(|t| t.config_map_name.clone()),
        stack
            .status
            .as_ref()
            .and_then(|s| s.outputs.as_ref())
            .and_then(|o| o.config_map.clone()),
    ];
    let mut names: Vec<String> = names.into_iter().flatten().collect();
    names.dedup();
    for name in names {
        outputs::remove(&ctx.client, stack, &name).await?;
    }
    Ok(())
}

/// Delete (or retain) the stack's AWS resources before the finalizer goes:
/// a preflight over every component, then the graph in reverse. Returning
/// `Ok` removes the finalizer; `Err(Pending)` keeps it and polls.
async fn cleanup(
    stack: &ImageOptimizationStack,
    ctx: &Context,
    api: &Api<ImageOptimizationStack>,
) -> Result<Action> {
    let key = key_of(stack);
    if stack.spec.deletion_policy == DeletionPolicy::Retain {
        unpublish_outputs(stack, ctx).await?;
        info!("deletionPolicy Retain: leaving AWS resources in place");
        ctx.publish(
            stack,
            EventType::Normal,
            "Retained",
            ACTION_DELETE,
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
    let (env, desired, graph) = match prepare(stack, ctx).await {
        Ok(p) => p,
        Err(e) => {
            set_status(api, stack, &Phase::of_error(&e), None, None, ctx).await?;
            return Err(e);
        }
    };
    let aws = ctx.aws.clients(Some(&env.region));
    let cx = Ctx::new(&aws, &desired.id, false);
    let pass = graph.delete(&cx).await;
    let Some(phase) = pass.deletion_phase() else {
        unpublish_outputs(stack, ctx).await?;
        ctx.publish(
            stack,
            EventType::Normal,
            "Deleted",
            ACTION_DELETE,
            "deleted every AWS resource of the stack".into(),
        )
        .await;
        ctx.metrics.set_stack_condition(&key, None);
        info!("all AWS resources deleted");
        return Ok(Action::await_change());
    };
    if let Some(e) = pass.error().filter(|e| warn_about(e)) {
        let (reason, note) = (e.reason(), e.status_message());
        ctx.publish(stack, EventType::Warning, &reason, ACTION_DELETE, note)
            .await;
    }
    set_status(api, stack, &phase, Some(pass.statuses()), None, ctx).await?;
    match pass.into_error() {
        Some(e) => Err(e),
        None => Err(Error::Pending(match phase {
            Phase::Progressing { message, .. } => message,
            _ => "deleting".into(),
        })),
    }
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

//! Lease-based leader election (coordination.k8s.io/v1 Lease), so that
//! several replicas can run and at most one writes to AWS at any time.
//!
//! The semantics are client-go's `leaderelection` package's:
//!
//! - **Lease duration** (default 15 s): how long a Lease whose holder stopped
//!   renewing it keeps the other replicas out. A candidate measures it from the
//!   moment *it* last observed a change of the Lease (holder, renewTime,
//!   resourceVersion, …), on its own monotonic clock. It never compares the
//!   holder's `renewTime` with its own wall clock, so clock skew between nodes
//!   does not matter (only a difference in clock *rate* beyond the ratio of
//!   lease duration to renew deadline would).
//! - **Renew deadline** (default 10 s, shorter than the lease duration): a
//!   leader that has not renewed successfully within this time of sending its
//!   last successful renewal stops writing to AWS: the write fence
//!   ([`crate::aws::WriteFence`], checked by the SDK interceptor before every
//!   transmission) carries that deadline and refuses every mutating call from
//!   that instant on, even if the renewing task is starved; then the fence is
//!   closed for good, the controller stopped and the process exits non-zero
//!   (the Deployment restarts it as a standby). The renewal the others last saw reached
//!   the API server after it was sent, and they wait a whole lease duration
//!   from seeing it, so the leader has stopped writing at least
//!   `lease duration − renew deadline` before anyone else may start.
//! - **Retry period** (default 2 s): how often the leader renews, and how
//!   often a standby looks at the Lease.
//! - On a graceful shutdown the leader stops its controller, closes the fence
//!   and then releases the Lease (holder cleared, `leaseDurationSeconds: 1`,
//!   like client-go's `ReleaseOnCancel`), so a standby takes over within one
//!   retry period instead of a lease duration.
//!
//! Every write of the Lease carries the `resourceVersion` that was read, so
//! two candidates can never both take over the same record.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio::sync::oneshot;

use crate::aws::WriteFence;
use crate::error::{Error, Result};
use crate::metrics::Metrics;

/// Default lease duration (client-go's core components use the same).
pub const DEFAULT_LEASE_DURATION: Duration = Duration::from_secs(15);
/// Default renew deadline.
pub const DEFAULT_RENEW_DEADLINE: Duration = Duration::from_secs(10);
/// Default retry period.
pub const DEFAULT_RETRY_PERIOD: Duration = Duration::from_secs(2);

/// The three durations of leader election.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timings {
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl Default for Timings {
    fn default() -> Self {
        Self {
            lease_duration: DEFAULT_LEASE_DURATION,
            renew_deadline: DEFAULT_RENEW_DEADLINE,
            retry_period: DEFAULT_RETRY_PERIOD,
        }
    }
}

impl Timings {
    /// Check lease duration > renew deadline > retry period > 0, with the
    /// lease duration in whole seconds (the Lease stores it as an integer).
    pub fn validate(&self) -> std::result::Result<(), String> {
        let Self {
            lease_duration: ld,
            renew_deadline: rd,
            retry_period: rp,
        } = *self;
        if ld < Duration::from_secs(1) || ld.subsec_nanos() != 0 {
            return Err(format!(
                "--leader-election-lease-duration must be a whole number of seconds, at least 1s \
                 (it is written to the Lease's spec.leaseDurationSeconds); got {ld:?}"
            ));
        }
        if rd >= ld {
            return Err(format!(
                "--leader-election-renew-deadline ({rd:?}) must be shorter than \
                 --leader-election-lease-duration ({ld:?}): a leader that cannot renew stops \
                 writing at its renew deadline, and the difference is the margin before another \
                 replica may take over"
            ));
        }
        if rp.is_zero() || rp >= rd {
            return Err(format!(
                "--leader-election-retry-period ({rp:?}) must be greater than zero and shorter \
                 than --leader-election-renew-deadline ({rd:?}): the leader retries a failed \
                 renewal every retry period and needs at least one retry before its deadline"
            ));
        }
        Ok(())
    }

    fn lease_duration_seconds(&self) -> i32 {
        i32::try_from(self.lease_duration.as_secs()).unwrap_or(i32::MAX)
    }
}

/// Leader election settings.
#[derive(Debug, Clone)]
pub struct ElectionConfig {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease (`--leader-election-id`).
    pub name: String,
    /// This process's identity (`holderIdentity` while it leads).
    pub identity: String,
    pub timings: Timings,
}

// ---------------------------------------------------------------------------
// Pure decision logic

/// The parts of a Lease a candidate compares between two reads. Any
/// difference (a renewal changes `renewTime` and `resourceVersion`) is a sign
/// of life of the holder.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Record {
    /// `None` when the Lease is free (never held, or released).
    pub holder: Option<String>,
    pub lease_duration_seconds: Option<i32>,
    pub renew_time: Option<Timestamp>,
    pub resource_version: Option<String>,
}

impl Record {
    /// The record of a Lease object.
    pub fn of(lease: &Lease) -> Self {
        let spec = lease.spec.as_ref();
        Self {
            holder: spec
                .and_then(|s| s.holder_identity.clone())
                .filter(|h| !h.is_empty()),
            lease_duration_seconds: spec.and_then(|s| s.lease_duration_seconds),
            renew_time: spec.and_then(|s| s.renew_time.as_ref()).map(|t| t.0),
            resource_version: lease.metadata.resource_version.clone(),
        }
    }

    /// The duration the holder promised; `fallback` if the Lease has none.
    fn duration(&self, fallback: Duration) -> Duration {
        match self.lease_duration_seconds {
            Some(s) if s > 0 => Duration::from_secs(u64::try_from(s).unwrap_or(0)),
            _ => fallback,
        }
    }
}

/// What this process has seen of the Lease, and when (on its monotonic
/// clock) it last saw it change.
#[derive(Debug, Default, Clone)]
pub struct Observer {
    last: Option<(Record, Instant)>,
}

impl Observer {
    /// Record a read of the Lease completed at `at`. Returns whether it
    /// changed since the previous read (the first read always counts as a
    /// change: a new candidate waits a whole lease duration).
    pub fn observe(&mut self, record: Record, at: Instant) -> bool {
        match &self.last {
            Some((r, _)) if *r == record => false,
            _ => {
                self.last = Some((record, at));
                true
            }
        }
    }

    /// The last record seen.
    pub fn record(&self) -> Option<&Record> {
        self.last.as_ref().map(|(r, _)| r)
    }

    /// When the Lease expires for this process: its last observed change
    /// plus the lease duration the record carries (`fallback` if none).
    pub fn expires_at(&self, fallback: Duration) -> Option<Instant> {
        self.last
            .as_ref()
            .map(|(r, since)| *since + r.duration(fallback))
    }
}

/// What a candidate should do after reading the Lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// No Lease seen: create it.
    Create,
    /// Free or expired: take it over (with the resourceVersion read).
    Acquire,
    /// This process's identity holds it: renew.
    Renew,
    /// Another holder's Lease, not expired for this process yet.
    Wait { holder: String, remaining: Duration },
}

/// Decide from what `observer` has seen, at `now`.
pub fn decide(observer: &Observer, me: &str, now: Instant, fallback: Duration) -> Decision {
    let Some(record) = observer.record() else {
        return Decision::Create;
    };
    match &record.holder {
        None => Decision::Acquire,
        Some(h) if h == me => Decision::Renew,
        Some(h) => match observer.expires_at(fallback) {
            Some(at) if at > now => Decision::Wait {
                holder: h.clone(),
                remaining: at - now,
            },
            _ => Decision::Acquire,
        },
    }
}

/// The leader's clock: its right to write ends `renew_deadline` after it
/// *sent* its last successful write of the Lease (sent, not answered: the
/// write reached the API server at or after that instant, and the others
/// count their lease duration from when they saw it).
#[derive(Debug, Clone, Copy)]
pub struct Term {
    renewed: Instant,
    renew_deadline: Duration,
}

impl Term {
    /// A term that began with a write of the Lease sent at `sent`.
    pub fn new(sent: Instant, renew_deadline: Duration) -> Self {
        Self {
            renewed: sent,
            renew_deadline,
        }
    }

    /// A renewal sent at `sent` succeeded.
    pub fn renewed(&mut self, sent: Instant) {
        self.renewed = self.renewed.max(sent);
    }

    /// When the leader must stop writing unless it renews before.
    pub fn deadline(&self) -> Instant {
        self.renewed + self.renew_deadline
    }

    /// True once the deadline has passed.
    pub fn expired(&self, now: Instant) -> bool {
        now >= self.deadline()
    }
}

/// Up to +20 % jitter (client-go's JitterFactor 1.2), so that standbys do not
/// poll in lockstep.
fn jittered(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    d.mul_f64(1.0 + 0.2 * f64::from(nanos % 1000) / 1000.0)
}

// ---------------------------------------------------------------------------
// Talking to the API server

/// Result of one acquire-or-renew attempt.
#[derive(Debug)]
enum Attempt {
    /// This process holds the Lease; the successful write was sent at `sent`.
    Held { sent: Instant },
    /// Someone else holds it.
    Waiting { holder: String, remaining: Duration },
}

struct Elector {
    api: Api<Lease>,
    cfg: ElectionConfig,
    observer: Observer,
    /// The Lease as this process last wrote it while holding it.
    held: Option<Lease>,
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

impl Elector {
    fn new(api: Api<Lease>, cfg: ElectionConfig) -> Self {
        Self {
            api,
            cfg,
            observer: Observer::default(),
            held: None,
        }
    }

    fn fallback(&self) -> Duration {
        self.cfg.timings.lease_duration
    }

    fn wrote(&mut self, lease: Lease) {
        self.observer.observe(Record::of(&lease), Instant::now());
        self.held = Some(lease);
    }

    /// client-go's tryAcquireOrRenew: renew optimistically from the Lease we
    /// last wrote; otherwise read it, and create, take over, renew or wait.
    async fn try_acquire_or_renew(&mut self) -> std::result::Result<Attempt, kube::Error> {
        let secs = self.cfg.timings.lease_duration_seconds();
        if let Some(mut lease) = self.held.clone() {
            let spec = lease.spec.get_or_insert_default();
            spec.renew_time = Some(MicroTime(Timestamp::now()));
            spec.lease_duration_seconds = Some(secs);
            let sent = Instant::now();
            match self
                .api
                .replace(&self.cfg.name, &PostParams::default(), &lease)
                .await
            {
                Ok(new) => {
                    self.wrote(new);
                    return Ok(Attempt::Held { sent });
                }
                // Changed since we wrote it: read it again below.
                Err(e) if is_conflict(&e) => self.held = None,
                Err(e) => return Err(e),
            }
        }

        let current = self.api.get_opt(&self.cfg.name).await?;
        let seen = Instant::now();
        let Some(mut lease) = current else {
            let now = MicroTime(Timestamp::now());
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.cfg.name.clone()),
                    namespace: Some(self.cfg.namespace.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.cfg.identity.clone()),
                    lease_duration_seconds: Some(secs),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            let sent = Instant::now();
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(new) => {
                    self.wrote(new);
                    Ok(Attempt::Held { sent })
                }
                Err(e) if is_conflict(&e) => Ok(Attempt::Waiting {
                    holder: "another replica (created it just now)".into(),
                    remaining: self.fallback(),
                }),
                Err(e) => Err(e),
            };
        };
        self.observer.observe(Record::of(&lease), seen);
        let decision = decide(&self.observer, &self.cfg.identity, seen, self.fallback());
        if let Decision::Wait { holder, remaining } = decision {
            self.held = None;
            return Ok(Attempt::Waiting { holder, remaining });
        }
        let previous = Record::of(&lease).holder;
        let now = MicroTime(Timestamp::now());
        let spec = lease.spec.get_or_insert_default();
        if previous.as_deref() != Some(self.cfg.identity.as_str()) {
            spec.acquire_time = Some(now.clone());
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        spec.holder_identity = Some(self.cfg.identity.clone());
        spec.lease_duration_seconds = Some(secs);
        spec.renew_time = Some(now);
        let sent = Instant::now();
        // The resourceVersion read above makes this a 409 if anyone wrote in between.
        match self
            .api
            .replace(&self.cfg.name, &PostParams::default(), &lease)
            .await
        {
            Ok(new) => {
                self.wrote(new);
                Ok(Attempt::Held { sent })
            }
            Err(e) if is_conflict(&e) => {
                self.held = None;
                Ok(Attempt::Waiting {
                    holder: previous.unwrap_or_else(|| "another replica".into()),
                    remaining: self.fallback(),
                })
            }
            Err(e) => Err(e),
        }
    }

    /// Give the Lease up if this process still holds it: holder cleared and a
    /// one-second duration, so the others may take it at once.
    async fn release(&mut self) -> std::result::Result<bool, kube::Error> {
        let mut lease = match self.held.take() {
            Some(l) => l,
            None => return Ok(false),
        };
        for _ in 0..2 {
            let now = MicroTime(Timestamp::now());
            let spec = lease.spec.get_or_insert_default();
            spec.holder_identity = None;
            spec.lease_duration_seconds = Some(1);
            spec.acquire_time = Some(now.clone());
            spec.renew_time = Some(now);
            match self
                .api
                .replace(&self.cfg.name, &PostParams::default(), &lease)
                .await
            {
                Ok(_) => return Ok(true),
                Err(e) if is_conflict(&e) => {
                    // An interrupted renewal may have landed: release what is there if still ours.
                    match self.api.get_opt(&self.cfg.name).await? {
                        Some(l) if Record::of(&l).holder.as_deref() == Some(&self.cfg.identity) => {
                            lease = l;
                        }
                        _ => return Ok(false),
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(false)
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Handle of a held Lease: `lost` resolves when leadership ends (the renew
/// deadline passed or another replica holds the Lease); by then the AWS write
/// fence is already closed.
pub struct Leadership {
    pub lost: oneshot::Receiver<String>,
    release: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Leadership {
    /// Graceful shutdown, after the controller has stopped: close the AWS
    /// write fence, then give the Lease up so that a standby takes over at once.
    pub async fn release(mut self) {
        if let Some(tx) = self.release.take() {
            let _ = tx.send(());
        }
        let _ = self.task.await;
    }
}

/// Wait until this process holds the Lease, then keep renewing it in the
/// background. `Ok(None)`: a shutdown signal arrived while waiting.
pub async fn acquire(
    client: Client,
    cfg: ElectionConfig,
    fence: Arc<WriteFence>,
    metrics: Arc<Metrics>,
) -> Result<Option<Leadership>> {
    let timings = cfg.timings;
    let (namespace, name, identity) = (
        cfg.namespace.clone(),
        cfg.name.clone(),
        cfg.identity.clone(),
    );
    let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
    let mut elector = Elector::new(api, cfg);
    metrics.set_leader(false);
    // No AWS write from a standby.
    fence.open_until(
        Instant::now(),
        "this replica is a standby: it does not hold the leader-election Lease",
    );
    tracing::info!(
        lease = %format!("{namespace}/{name}"),
        identity = %identity,
        lease_duration = ?timings.lease_duration,
        renew_deadline = ?timings.renew_deadline,
        retry_period = ?timings.retry_period,
        "waiting for leadership"
    );
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    let mut last_holder = String::new();
    let sent = loop {
        let attempt = tokio::select! {
            _ = &mut shutdown => {
                tracing::info!("shutdown signal while standing by");
                return Ok(None);
            }
            r = tokio::time::timeout(timings.lease_duration, elector.try_acquire_or_renew()) => r,
        };
        match attempt {
            Ok(Ok(Attempt::Held { sent })) => break sent,
            Ok(Ok(Attempt::Waiting { holder, remaining })) => {
                if holder != last_holder {
                    tracing::info!(holder = %holder, expires_in = ?remaining, "the Lease is held by another replica; standing by");
                    last_holder = holder;
                }
            }
            Ok(Err(kube::Error::Api(s))) if s.code == 404 => {
                return Err(Error::Config(format!(
                    "leader election needs the coordination.k8s.io/v1 Lease API and the namespace {namespace} ({}); \
                     run with --leader-election=false on API servers without it",
                    s.message
                )));
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "leader election attempt failed; retrying"),
            Err(_) => tracing::warn!("leader election attempt timed out; retrying"),
        }
        tokio::select! {
            _ = &mut shutdown => {
                tracing::info!("shutdown signal while standing by");
                return Ok(None);
            }
            _ = tokio::time::sleep(jittered(timings.retry_period)) => {}
        }
    };
    metrics.set_leader(true);
    tracing::info!(identity = %identity, lease = %format!("{namespace}/{name}"), "acquired leadership");
    let (lost_tx, lost_rx) = oneshot::channel();
    let (release_tx, release_rx) = oneshot::channel::<()>();
    let term = Term::new(sent, timings.renew_deadline);
    fence.open_until(term.deadline(), &deadline_passed(timings));
    let task = tokio::spawn(hold(elector, term, fence, metrics, release_rx, lost_tx));
    Ok(Some(Leadership {
        lost: lost_rx,
        release: Some(release_tx),
        task,
    }))
}

fn deadline_passed(timings: Timings) -> String {
    format!(
        "no successful renewal of the Lease within the renew deadline ({:?})",
        timings.renew_deadline
    )
}

/// The leader's loop: renew every retry period, moving the write fence's
/// deadline forward; at the renew deadline, close it for good and report the
/// loss (the fence has shut itself at that instant already, even if this task
/// runs late).
async fn hold(
    mut elector: Elector,
    mut term: Term,
    fence: Arc<WriteFence>,
    metrics: Arc<Metrics>,
    mut release_rx: oneshot::Receiver<()>,
    lost_tx: oneshot::Sender<String>,
) {
    let timings = elector.cfg.timings;
    let stop = |reason: String| {
        // Fence first: from here on no AWS write leaves this process.
        fence.close(&reason);
        metrics.set_leader(false);
        tracing::error!(reason = %reason, "stopped leading: AWS writes fenced; exiting so that the Deployment restarts this replica as a standby");
        reason
    };
    loop {
        let deadline = tokio::time::Instant::from_std(term.deadline());
        tokio::select! {
            biased;
            _ = &mut release_rx => {
                fence.close("shutting down: the Lease is being released");
                metrics.set_leader(false);
                if term.expired(Instant::now()) {
                    return;
                }
                match tokio::time::timeout(timings.renew_deadline, elector.release()).await {
                    Ok(Ok(true)) => tracing::info!("released the Lease"),
                    Ok(Ok(false)) => tracing::info!("the Lease was no longer ours to release"),
                    Ok(Err(e)) => tracing::warn!(error = %e, "could not release the Lease; the others take over when it expires"),
                    Err(_) => tracing::warn!("releasing the Lease timed out; the others take over when it expires"),
                }
                return;
            }
            _ = tokio::time::sleep_until(deadline) => {
                let reason = stop(deadline_passed(timings));
                let _ = lost_tx.send(reason);
                return;
            }
            r = async {
                tokio::time::sleep(timings.retry_period).await;
                elector.try_acquire_or_renew().await
            } => match r {
                Ok(Attempt::Held { sent }) => {
                    term.renewed(sent);
                    fence.open_until(term.deadline(), &deadline_passed(timings));
                }
                Ok(Attempt::Waiting { holder, .. }) => {
                    let reason = stop(format!("the Lease is now held by {holder}"));
                    let _ = lost_tx.send(reason);
                    return;
                }
                Err(e) => {
                    let left = term.deadline().saturating_duration_since(Instant::now());
                    tracing::warn!(error = %e, fence_in = ?left, "renewing the Lease failed; retrying");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(holder: Option<&str>, rv: &str) -> Record {
        Record {
            holder: holder.map(str::to_string),
            lease_duration_seconds: Some(6),
            renew_time: Some(Timestamp::from_second(1_000).unwrap()),
            resource_version: Some(rv.to_string()),
        }
    }

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn expiry_counts_from_the_last_observed_change_on_the_local_clock() {
        let t0 = Instant::now();
        let mut o = Observer::default();
        assert_eq!(decide(&o, "me", t0, 15 * S), Decision::Create);
        assert!(o.observe(rec(Some("a"), "1"), t0));
        assert!(matches!(
            decide(&o, "me", t0 + 5 * S, 15 * S),
            Decision::Wait { ref holder, remaining } if holder == "a" && remaining == S
        ));
        // The same record read again is no sign of life: it expires 6 s after first seen.
        assert!(!o.observe(rec(Some("a"), "1"), t0 + 5 * S));
        assert_eq!(decide(&o, "me", t0 + 6 * S, 15 * S), Decision::Acquire);
        // A renewal (new resourceVersion) restarts the wait from when it is seen.
        assert!(o.observe(rec(Some("a"), "2"), t0 + 5 * S));
        assert!(matches!(
            decide(&o, "me", t0 + 10 * S, 15 * S),
            Decision::Wait { .. }
        ));
        assert_eq!(decide(&o, "me", t0 + 11 * S, 15 * S), Decision::Acquire);
    }

    #[test]
    fn renew_time_in_the_past_or_future_does_not_matter() {
        // A holder whose clock is an hour behind (or ahead): its renewTime says nothing.
        let t0 = Instant::now();
        for renew in [0, 2_000_000_000] {
            let mut o = Observer::default();
            let mut r = rec(Some("a"), "7");
            r.renew_time = Some(Timestamp::from_second(renew).unwrap());
            o.observe(r, t0);
            assert!(matches!(
                decide(&o, "me", t0 + S, 15 * S),
                Decision::Wait { .. }
            ));
            assert_eq!(decide(&o, "me", t0 + 6 * S, 15 * S), Decision::Acquire);
        }
    }

    #[test]
    fn any_change_is_a_sign_of_life() {
        let t0 = Instant::now();
        let mut o = Observer::default();
        o.observe(rec(Some("a"), "1"), t0);
        let mut r = rec(Some("a"), "1");
        r.renew_time = Some(Timestamp::from_second(1_001).unwrap());
        assert!(o.observe(r.clone(), t0 + 4 * S));
        let mut r2 = r.clone();
        r2.holder = Some("b".into());
        assert!(o.observe(r2, t0 + 5 * S));
        assert!(matches!(
            decide(&o, "me", t0 + 10 * S, 15 * S),
            Decision::Wait { ref holder, .. } if holder == "b"
        ));
    }

    #[test]
    fn released_free_and_own_leases() {
        let t0 = Instant::now();
        let mut o = Observer::default();
        o.observe(rec(None, "3"), t0);
        assert_eq!(decide(&o, "me", t0, 15 * S), Decision::Acquire);
        o.observe(rec(Some("me"), "4"), t0);
        assert_eq!(decide(&o, "me", t0, 15 * S), Decision::Renew);
        // Holder written as "" (client-go's release) is free too.
        let lease = Lease {
            spec: Some(LeaseSpec {
                holder_identity: Some(String::new()),
                lease_duration_seconds: Some(1),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(Record::of(&lease).holder, None);
    }

    #[test]
    fn record_duration_wins_over_the_local_default() {
        let t0 = Instant::now();
        let mut o = Observer::default();
        let mut r = rec(Some("a"), "1");
        r.lease_duration_seconds = Some(30);
        o.observe(r, t0);
        assert!(matches!(
            decide(&o, "me", t0 + 20 * S, 15 * S),
            Decision::Wait { .. }
        ));
        let mut r = rec(Some("a"), "2");
        r.lease_duration_seconds = None;
        o.observe(r, t0);
        assert_eq!(decide(&o, "me", t0 + 15 * S, 15 * S), Decision::Acquire);
    }

    #[test]
    fn the_leader_fences_before_anyone_may_take_over() {
        // Leader sends a renewal at t0; it reaches the server at t0+δ; a standby
        // sees it at t0+δ+ε. The leader fences at t0+RD, the standby may take
        // over at t0+δ+ε+LD: always later, by at least LD−RD.
        let t = Timings {
            lease_duration: 6 * S,
            renew_deadline: 4 * S,
            retry_period: S,
        };
        t.validate().unwrap();
        let t0 = Instant::now();
        let mut term = Term::new(t0, t.renew_deadline);
        assert!(!term.expired(t0 + 3 * S));
        assert!(term.expired(t0 + 4 * S));
        let mut standby = Observer::default();
        let mut r = rec(Some("leader"), "9");
        r.lease_duration_seconds = Some(t.lease_duration_seconds());
        standby.observe(r, t0 + Duration::from_millis(30));
        let takeover = standby.expires_at(t.lease_duration).unwrap();
        assert!(takeover >= term.deadline() + (t.lease_duration - t.renew_deadline));
        // A renewal moves the deadline; an older (reordered) one never moves it back.
        term.renewed(t0 + 2 * S);
        term.renewed(t0 + S);
        assert_eq!(term.deadline(), t0 + 6 * S);
    }

    #[test]
    fn timings_are_validated() {
        Timings::default().validate().unwrap();
        let t = |ld, rd, rp| Timings {
            lease_duration: Duration::from_millis(ld),
            renew_deadline: Duration::from_millis(rd),
            retry_period: Duration::from_millis(rp),
        };
        t(6000, 4000, 1000).validate().unwrap();
        let e = t(10_000, 10_000, 2000).validate().unwrap_err();
        assert!(
            e.contains("renew-deadline") && e.contains("shorter than"),
            "{e}"
        );
        let e = t(15_000, 10_000, 10_000).validate().unwrap_err();
        assert!(e.contains("retry-period"), "{e}");
        let e = t(15_000, 10_000, 0).validate().unwrap_err();
        assert!(e.contains("retry-period"), "{e}");
        let e = t(1500, 1000, 500).validate().unwrap_err();
        assert!(e.contains("whole number of seconds"), "{e}");
    }

    #[test]
    fn jitter_is_bounded() {
        for _ in 0..100 {
            let j = jittered(Duration::from_secs(2));
            assert!(j >= Duration::from_secs(2) && j <= Duration::from_millis(2400));
        }
    }
}

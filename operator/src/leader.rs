//! Lease-based leader election (coordination.k8s.io/v1), so that several
//! replicas can run and exactly one reconciles.
//!
//! The holder renews the Lease every `renew_every`; a Lease not renewed for
//! `lease_duration` may be taken over. A leader that fails to renew for a
//! whole lease duration stops (the process exits and restarts as a follower),
//! so two replicas never write AWS for the same stack at once for longer than
//! that window.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio::sync::oneshot;

use crate::error::{Error, Result};

/// Leader election settings.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_every: Duration,
    pub retry_every: Duration,
}

impl LeaseConfig {
    pub fn new(namespace: String, name: String, identity: String) -> Self {
        Self {
            namespace,
            name,
            identity,
            lease_duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(5),
            retry_every: Duration::from_secs(2),
        }
    }
}

/// Outcome of one acquire/renew attempt.
#[derive(Debug, PartialEq, Eq)]
enum Attempt {
    Held,
    HeldByOther(String),
}

fn expired(spec: &LeaseSpec, now: Timestamp) -> bool {
    let Some(renew) = spec.renew_time.as_ref().map(|t| t.0) else {
        return true;
    };
    let secs = i64::from(spec.lease_duration_seconds.unwrap_or(15));
    renew + SignedDuration::from_secs(secs) < now
}

async fn try_acquire(api: &Api<Lease>, cfg: &LeaseConfig) -> Result<Attempt> {
    let now = Timestamp::now();
    let duration = i32::try_from(cfg.lease_duration.as_secs()).unwrap_or(15);
    match api.get_opt(&cfg.name).await? {
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(cfg.name.clone()),
                    namespace: Some(cfg.namespace.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(cfg.identity.clone()),
                    lease_duration_seconds: Some(duration),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(Attempt::Held),
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    Ok(Attempt::HeldByOther("unknown".into()))
                }
                Err(e) => Err(e.into()),
            }
        }
        Some(mut lease) => {
            let spec = lease.spec.clone().unwrap_or_default();
            let holder = spec.holder_identity.clone().unwrap_or_default();
            let ours = holder == cfg.identity;
            if !ours && !holder.is_empty() && !expired(&spec, now) {
                return Ok(Attempt::HeldByOther(holder));
            }
            let mut new_spec = spec.clone();
            new_spec.holder_identity = Some(cfg.identity.clone());
            new_spec.lease_duration_seconds = Some(duration);
            new_spec.renew_time = Some(MicroTime(now));
            if !ours {
                new_spec.acquire_time = Some(MicroTime(now));
                new_spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            }
            lease.spec = Some(new_spec);
            // resourceVersion is kept: a concurrent writer makes this a 409.
            match api.replace(&cfg.name, &PostParams::default(), &lease).await {
                Ok(_) => Ok(Attempt::Held),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::HeldByOther(holder)),
                Err(e) => Err(e.into()),
            }
        }
    }
}

/// Handle of a held lease: `lost` resolves if leadership is lost.
pub struct Leadership {
    pub lost: oneshot::Receiver<String>,
    release: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Leadership {
    /// Give the lease up (on shutdown) so another replica takes over at once.
    pub async fn release(mut self) {
        if let Some(tx) = self.release.take() {
            let _ = tx.send(());
        }
        let _ = self.task.await;
    }
}

/// Wait until this process holds the lease, then keep renewing it in the background.
pub async fn acquire(client: Client, cfg: LeaseConfig) -> Result<Leadership> {
    let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
    let mut last_holder = String::new();
    loop {
        match try_acquire(&api, &cfg).await {
            Ok(Attempt::Held) => break,
            Ok(Attempt::HeldByOther(h)) => {
                if h != last_holder {
                    tracing::info!(holder = %h, lease = %cfg.name, "waiting for leadership");
                    last_holder = h;
                }
            }
            Err(Error::Kube(kube::Error::Api(s))) if s.code == 404 => {
                return Err(Error::Config(format!(
                    "leader election needs the coordination.k8s.io Lease API in namespace {} ({}); run with --leader-election=false on API servers without it",
                    cfg.namespace, s.message
                )));
            }
            Err(e) => tracing::warn!(error = %e, "leader election attempt failed"),
        }
        tokio::time::sleep(cfg.retry_every).await;
    }
    tracing::info!(identity = %cfg.identity, lease = %cfg.name, "acquired leadership");
    let (lost_tx, lost_rx) = oneshot::channel();
    let (release_tx, mut release_rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let mut last_renewed = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = &mut release_rx => {
                    if let Ok(Some(mut lease)) = api.get_opt(&cfg.name).await
                        && let Some(spec) = lease.spec.as_mut()
                        && spec.holder_identity.as_deref() == Some(cfg.identity.as_str())
                    {
                        spec.holder_identity = None;
                        let _ = api.replace(&cfg.name, &PostParams::default(), &lease).await;
                    }
                    return;
                }
                _ = tokio::time::sleep(cfg.renew_every) => {}
            }
            match try_acquire(&api, &cfg).await {
                Ok(Attempt::Held) => last_renewed = tokio::time::Instant::now(),
                Ok(Attempt::HeldByOther(h)) => {
                    let _ = lost_tx.send(format!("lease taken over by {h}"));
                    return;
                }
                Err(e) => tracing::warn!(error = %e, "lease renewal failed"),
            }
            if last_renewed.elapsed() > cfg.lease_duration {
                let _ = lost_tx.send("could not renew the lease within its duration".into());
                return;
            }
        }
    });
    Ok(Leadership {
        lost: lost_rx,
        release: Some(release_tx),
        task,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry() {
        let now = Timestamp::from_second(1_000).unwrap();
        let mut spec = LeaseSpec {
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(Timestamp::from_second(990).unwrap())),
            ..Default::default()
        };
        assert!(!expired(&spec, now));
        spec.renew_time = Some(MicroTime(Timestamp::from_second(980).unwrap()));
        assert!(expired(&spec, now));
        spec.renew_time = None;
        assert!(expired(&spec, now));
    }
}

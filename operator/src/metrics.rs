//! Prometheus metrics and the `/metrics`, `/healthz`, `/readyz` endpoints.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State as AxState;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::aws::CallStats;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AwsCallLabels {
    pub service: String,
    pub operation: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ComponentLabels {
    pub component: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConditionLabels {
    pub condition: String,
}

/// Every metric the operator exports.
pub struct Metrics {
    registry: Registry,
    pub reconciles: Family<ResultLabels, Counter>,
    pub reconcile_duration: Histogram,
    pub aws_calls: Family<AwsCallLabels, Counter>,
    pub drift_repairs: Family<ComponentLabels, Counter>,
    pub stacks: Family<ConditionLabels, Gauge>,
    pub leader: Gauge,
    stack_conditions: Mutex<HashMap<String, &'static str>>,
    stats: Arc<CallStats>,
    aws_seen: Mutex<HashMap<AwsCallLabels, u64>>,
    ready: AtomicBool,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    pub fn new(stats: Arc<CallStats>) -> Self {
        let mut registry = Registry::with_prefix("imagestack");
        let reconciles = Family::<ResultLabels, Counter>::default();
        registry.register(
            "reconciles",
            "Stack reconciles by result (success, requeue, error)",
            reconciles.clone(),
        );
        let reconcile_duration = Histogram::new(exponential_buckets(0.01, 2.0, 14));
        registry.register(
            "reconcile_duration_seconds",
            "Duration of one stack reconcile",
            reconcile_duration.clone(),
        );
        let aws_calls = Family::<AwsCallLabels, Counter>::default();
        registry.register(
            "aws_calls",
            "AWS API calls by service, operation and outcome",
            aws_calls.clone(),
        );
        let drift_repairs = Family::<ComponentLabels, Counter>::default();
        registry.register(
            "drift_repairs",
            "Out-of-band changes repaired, by component",
            drift_repairs.clone(),
        );
        let stacks = Family::<ConditionLabels, Gauge>::default();
        registry.register(
            "stacks",
            "Stacks by condition (Ready, Reconciling, Stalled)",
            stacks.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica holds the leader-election Lease (or runs with leader election off) and may write to AWS, 0 otherwise",
            leader.clone(),
        );
        Self {
            registry,
            leader,
            reconciles,
            reconcile_duration,
            aws_calls,
            drift_repairs,
            stacks,
            stack_conditions: Mutex::new(HashMap::new()),
            stats,
            aws_seen: Mutex::new(HashMap::new()),
            ready: AtomicBool::new(false),
        }
    }

    /// Count one reconcile.
    pub fn reconciled(&self, result: &str, seconds: f64) {
        self.reconciles
            .get_or_create(&ResultLabels {
                result: result.to_string(),
            })
            .inc();
        self.reconcile_duration.observe(seconds);
    }

    /// Count drift repairs of a component.
    pub fn drift_repaired(&self, component: &str, n: u64) {
        self.drift_repairs
            .get_or_create(&ComponentLabels {
                component: component.to_string(),
            })
            .inc_by(n);
    }

    /// Record which condition a stack is in (`None` when the stack is gone).
    pub fn set_stack_condition(&self, key: &str, condition: Option<&'static str>) {
        let Ok(mut map) = self.stack_conditions.lock() else {
            return;
        };
        match condition {
            Some(c) => map.insert(key.to_string(), c),
            None => map.remove(key),
        };
        for c in [
            crate::status::READY,
            crate::status::RECONCILING,
            crate::status::STALLED,
        ] {
            let n = map.values().filter(|v| **v == c).count();
            self.stacks
                .get_or_create(&ConditionLabels {
                    condition: c.to_string(),
                })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// Whether this replica leads (and may write to AWS).
    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    /// Mark the operator ready: the controller runs, or this replica is a
    /// healthy standby waiting for the leader-election Lease.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    /// Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        self.sync_aws_calls();
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            return String::new();
        }
        out
    }

    /// Fold the SDK interceptor's counts into the counter family.
    fn sync_aws_calls(&self) {
        let Ok(mut seen) = self.aws_seen.lock() else {
            return;
        };
        for (k, v) in self.stats.snapshot() {
            let labels = AwsCallLabels {
                service: k.service,
                operation: k.operation,
                outcome: k.outcome.to_string(),
            };
            let prev = seen.insert(labels.clone(), v).unwrap_or(0);
            if v > prev {
                self.aws_calls.get_or_create(&labels).inc_by(v - prev);
            }
        }
    }
}

async fn metrics_handler(AxState(m): AxState<Arc<Metrics>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        m.render(),
    )
}

async fn healthz() -> impl IntoResponse {
    (StatusCode::OK, "ok")
}

async fn readyz(AxState(m): AxState<Arc<Metrics>>) -> impl IntoResponse {
    if m.ready.load(Ordering::SeqCst) {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}

/// Serve `/metrics`, `/healthz` and `/readyz` on `addr` until the process ends.
pub async fn serve(addr: SocketAddr, metrics: Arc<Metrics>) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(metrics);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "serving /metrics /healthz /readyz");
    axum::serve(listener, app).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_all_families() {
        let stats = Arc::new(CallStats::default());
        let m = Metrics::new(stats.clone());
        m.reconciled("success", 0.5);
        m.drift_repaired("upload-bucket", 2);
        m.set_stack_condition("ns/a", Some(crate::status::READY));
        m.set_stack_condition("ns/b", Some(crate::status::STALLED));
        let text = m.render();
        assert!(
            text.contains("imagestack_reconciles_total{result=\"success\"} 1"),
            "{text}"
        );
        assert!(text.contains("imagestack_drift_repairs_total{component=\"upload-bucket\"} 2"));
        assert!(text.contains("imagestack_stacks{condition=\"Ready\"} 1"));
        assert!(text.contains("imagestack_stacks{condition=\"Stalled\"} 1"));
        assert!(text.contains("imagestack_reconcile_duration_seconds_count 1"));
        assert!(text.contains("imagestack_leader 0"), "{text}");
        m.set_leader(true);
        assert!(m.render().contains("imagestack_leader 1"));
        m.set_stack_condition("ns/b", None);
        assert!(
            m.render()
                .contains("imagestack_stacks{condition=\"Stalled\"} 0")
        );
    }
}

//! Shared harness of the emulator-backed component tests
//! (`components.rs`, `cloudfront_emulator.rs`): SDK clients that count calls,
//! pointed at the emulator from `AWS_ENDPOINT_URL`, and a planned stack in a
//! namespace of its own.

#![allow(dead_code)] // each test binary uses a different part of it

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use imagestack_operator::api::{ImageOptimizationStack, ImageOptimizationStackSpec};
use imagestack_operator::aws::{AwsClients, AwsFactory, CallStats};
use imagestack_operator::components::{Ctx, Resolved};
use imagestack_operator::naming::StackId;
use imagestack_operator::plan::{self, AwsEnv, DesiredStack};

pub struct Harness {
    pub factory: AwsFactory,
    pub stats: Arc<CallStats>,
    pub aws: AwsClients,
    pub desired: DesiredStack,
    /// What upstream components hand on in a full pass (the role's ARN).
    pub inputs: Resolved,
}

/// A name no other test (or earlier run against the same emulator) uses.
pub fn unique(prefix: &str) -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let c = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    format!("{prefix}-{}-{}-{c}", n % 100_000_000, std::process::id())
}

/// Clients for the emulator and the plan of a stack with this spec.
pub async fn harness(spec_yaml: &str) -> Harness {
    harness_in(spec_yaml, "").await
}

/// The same, for the installation (cluster id) `cluster`.
pub async fn harness_in(spec_yaml: &str, cluster: &str) -> Harness {
    assert!(
        std::env::var("AWS_ENDPOINT_URL").is_ok(),
        "AWS_ENDPOINT_URL is not set: these tests need the AWS emulator. Run ./scripts/test, or \
         `. $(scripts/emulator/start.sh)` first."
    );
    let stats = Arc::new(CallStats::default());
    let factory = AwsFactory::load(None, stats.clone())
        .await
        .expect("aws config");
    let aws = factory.clients(None);
    let spec: ImageOptimizationStackSpec = serde_norway::from_str(spec_yaml).expect("spec");
    let mut stack = ImageOptimizationStack::new(&unique("stack"), spec);
    // A unique namespace per test: moto maps every key to one account.
    stack.metadata.namespace = Some(unique("ns"));
    let env = AwsEnv {
        account_id: factory.account_id().await.expect("account"),
        region: factory.default_region(),
    };
    let opts = plan::PlanOptions {
        cluster_id: cluster.to_string(),
        ..Default::default()
    };
    let desired = plan::plan_with(&stack, &env, &opts).expect("plan");
    let inputs = Resolved {
        role_arn: Some(desired.role.arn.clone()),
        ..Default::default()
    };
    Harness {
        factory,
        stats,
        aws,
        desired,
        inputs,
    }
}

impl Harness {
    pub fn ctx(&self) -> Ctx<'_> {
        self.ctx_for(&self.desired.id)
    }
    pub fn ctx_for<'a>(&'a self, id: &'a StackId) -> Ctx<'a> {
        Ctx {
            aws: &self.aws,
            id,
            dry_run: false,
            inputs: &self.inputs,
        }
    }
    /// Mutating AWS calls made so far.
    pub fn writes(&self) -> u64 {
        self.stats.writes()
    }
}

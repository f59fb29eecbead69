//! AWS SDK configuration: credentials, region, endpoint, retries, and the
//! interceptor that sees every call: it counts them (for metrics and the
//! zero-writes tests), logs every write, and refuses writes once the
//! [`WriteFence`] is closed (leader election lost or given up).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeTransmitInterceptorContextRef, FinalizerInterceptorContextRef,
};
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::{ConfigBag, Storable, StoreReplace};
use aws_types::SdkConfig;
use aws_types::region::Region;

use crate::error::{Error, Result};

/// Environment variable: abort the process after this many successful AWS
/// writes. A test hook for crash-safety tests (kill after each write, restart,
/// converge with exactly one of everything). Compiled only with the
/// `crash-hook` cargo feature, which the `tests` crate enables; the shipped
/// binary (`cargo build -p imagestack-operator`) has no such hook.
#[cfg(feature = "crash-hook")]
pub const CRASH_AFTER_WRITES_ENV: &str = "IMAGESTACK_CRASH_AFTER_WRITES";

/// Key of one counter: service, operation, outcome.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallKey {
    pub service: String,
    pub operation: String,
    /// `success`, `error`, or `refused` (a write the [`WriteFence`] stopped before it was sent).
    pub outcome: &'static str,
}

/// Stops this process's AWS writes when it may no longer change anything on
/// AWS because it does not hold the leader-election Lease: every mutating call
/// made through the SDK clients then fails locally, before it is transmitted,
/// with a [`FencedWrite`] error. Reads still pass.
///
/// Two ways to shut it: [`WriteFence::close`] (for good: leadership lost or
/// given up), and a deadline ([`WriteFence::open_until`]) that the leader
/// moves forward with every successful renewal of its Lease. The deadline is
/// checked by the interceptor itself at every transmission, so writes stop at
/// the renew deadline even if the task that renews the Lease is starved.
/// Without either (leader election off) it is open.
#[derive(Debug, Default)]
pub struct WriteFence {
    closed: AtomicBool,
    reason: Mutex<Option<String>>,
    until: Mutex<Option<(Instant, String)>>,
}

impl WriteFence {
    /// Close the fence for good (the first reason given is kept).
    pub fn close(&self, reason: &str) {
        if let Ok(mut r) = self.reason.lock()
            && r.is_none()
        {
            *r = Some(reason.to_string());
        }
        self.closed.store(true, Ordering::SeqCst);
    }

    /// Let writes through until `deadline` only; after it they are refused
    /// with `reason_after`.
    pub fn open_until(&self, deadline: Instant, reason_after: &str) {
        if let Ok(mut u) = self.until.lock() {
            *u = Some((deadline, reason_after.to_string()));
        }
    }

    /// Why writes are refused now, if they are.
    pub fn closed(&self) -> Option<String> {
        if self.closed.load(Ordering::SeqCst) {
            return Some(
                self.reason
                    .lock()
                    .ok()
                    .and_then(|r| r.clone())
                    .unwrap_or_else(|| "fenced".into()),
            );
        }
        let until = self.until.lock().ok()?;
        match &*until {
            Some((deadline, reason)) if Instant::now() >= *deadline => Some(reason.clone()),
            _ => None,
        }
    }
}

/// The error of a mutating AWS call refused by the closed [`WriteFence`].
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "{service}:{operation} not sent: this replica may no longer write to AWS ({reason}); another replica takes over"
)]
pub struct FencedWrite {
    pub service: String,
    pub operation: String,
    pub reason: String,
}

/// Config-bag marker: the fence refused this call (it never reached AWS).
#[derive(Debug, Clone)]
struct Refused;

impl Storable for Refused {
    type Storer = StoreReplace<Self>;
}

/// Counts of AWS calls made through the SDK clients, and the write fence
/// they all check.
#[derive(Debug, Default)]
pub struct CallStats {
    counts: Mutex<HashMap<CallKey, u64>>,
    writes: AtomicU64,
    #[cfg(feature = "crash-hook")]
    crash_after_writes: Option<u64>,
    fence: Arc<WriteFence>,
}

impl CallStats {
    /// New counters (with the `crash-hook` feature: reads the hook from the environment).
    pub fn new() -> Self {
        Self {
            #[cfg(feature = "crash-hook")]
            crash_after_writes: std::env::var(CRASH_AFTER_WRITES_ENV)
                .ok()
                .and_then(|v| v.parse().ok()),
            ..Default::default()
        }
    }

    /// The write fence every client built with these stats checks.
    pub fn fence(&self) -> Arc<WriteFence> {
        self.fence.clone()
    }

    fn record_refused(&self, service: &str, operation: &str) {
        let key = CallKey {
            service: service.to_string(),
            operation: operation.to_string(),
            outcome: "refused",
        };
        if let Ok(mut m) = self.counts.lock() {
            *m.entry(key).or_default() += 1;
        }
    }

    fn record(&self, service: &str, operation: &str, ok: bool) {
        let key = CallKey {
            service: service.to_string(),
            operation: operation.to_string(),
            outcome: if ok { "success" } else { "error" },
        };
        if let Ok(mut m) = self.counts.lock() {
            *m.entry(key).or_default() += 1;
        }
        if is_mutating(operation) {
            tracing::debug!(service, operation, ok, "AWS write");
            let n = self.writes.fetch_add(1, Ordering::SeqCst) + 1;
            if ok {
                self.crash_hook(n, operation);
            }
        }
    }

    /// The crash-safety test hook: abort once `n` successful writes reach
    /// [`CRASH_AFTER_WRITES_ENV`].
    #[cfg(feature = "crash-hook")]
    fn crash_hook(&self, n: u64, operation: &str) {
        if let Some(limit) = self.crash_after_writes
            && n >= limit
        {
            tracing::error!(
                writes = n,
                operation,
                "{CRASH_AFTER_WRITES_ENV} reached: aborting the process (crash-safety test hook)"
            );
            std::process::abort();
        }
    }

    /// Without the `crash-hook` feature there is no hook.
    #[cfg(not(feature = "crash-hook"))]
    fn crash_hook(&self, _n: u64, _operation: &str) {}

    /// Snapshot of all counters.
    pub fn snapshot(&self) -> BTreeMap<CallKey, u64> {
        self.counts
            .lock()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), *v)).collect())
            .unwrap_or_default()
    }

    /// Total mutating calls (attempted) so far.
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::SeqCst)
    }

    /// Total calls so far.
    pub fn total(&self) -> u64 {
        self.snapshot().values().sum()
    }

    /// Mutating operations called so far, with counts (for test diagnostics).
    pub fn write_operations(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for (k, v) in self.snapshot() {
            if is_mutating(&k.operation) {
                *out.entry(format!("{}:{}", k.service, k.operation))
                    .or_default() += v;
            }
        }
        out
    }
}

/// True for operations that change AWS state (everything but reads).
pub fn is_mutating(operation: &str) -> bool {
    const READ_PREFIXES: &[&str] = &["Get", "List", "Head", "Describe", "Query", "Scan"];
    !READ_PREFIXES.iter().any(|p| operation.starts_with(p))
}

/// SDK interceptor feeding [`CallStats`] and enforcing its [`WriteFence`].
#[derive(Debug, Clone)]
pub struct CallCounter(pub Arc<CallStats>);

impl Intercept for CallCounter {
    fn name(&self) -> &'static str {
        "imagestack-call-counter"
    }

    /// Runs before every attempt (retries included) is put on the wire: the
    /// last moment a write can still be stopped.
    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(meta) = cfg.load::<Metadata>().cloned() else {
            return Ok(());
        };
        let (service, operation) = (meta.service(), meta.name());
        if !is_mutating(operation) {
            return Ok(());
        }
        if let Some(reason) = self.0.fence.closed() {
            tracing::warn!(service, operation, reason = %reason, "AWS write refused: fenced");
            cfg.interceptor_state().store_put(Refused);
            return Err(Box::new(FencedWrite {
                service: service.to_string(),
                operation: operation.to_string(),
                reason,
            }));
        }
        tracing::debug!(service, operation, "AWS write sent");
        Ok(())
    }

    fn read_after_execution(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(meta) = cfg.load::<Metadata>() {
            if cfg.load::<Refused>().is_some() {
                self.0.record_refused(meta.service(), meta.name());
                return Ok(());
            }
            let ok = matches!(context.output_or_error(), Some(Ok(_)));
            self.0.record(meta.service(), meta.name(), ok);
        }
        Ok(())
    }
}

/// Clients for one region, plus the global services.
#[derive(Clone, Debug)]
pub struct AwsClients {
    pub region: String,
    pub s3: aws_sdk_s3::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub iam: aws_sdk_iam::Client,
    pub sts: aws_sdk_sts::Client,
    pub lambda: aws_sdk_lambda::Client,
    /// CloudFront is global; its API lives in us-east-1.
    pub cloudfront: aws_sdk_cloudfront::Client,
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    /// CloudWatch in us-east-1, where CloudFront's metrics (and so the CDN
    /// alarm) live.
    pub cloudwatch_global: aws_sdk_cloudwatch::Client,
    pub logs: aws_sdk_cloudwatchlogs::Client,
    pub sqs: aws_sdk_sqs::Client,
}

impl AwsClients {
    /// Clients of every service from one configuration, without call
    /// counting: for tools and tests that swap one client for a mock (the
    /// operator itself uses [`AwsFactory::clients`]).
    pub fn from_sdk_config(cfg: &SdkConfig) -> Self {
        Self {
            region: cfg
                .region()
                .map(|r| r.to_string())
                .unwrap_or_else(|| "us-east-1".into()),
            s3: aws_sdk_s3::Client::new(cfg),
            dynamodb: aws_sdk_dynamodb::Client::new(cfg),
            iam: aws_sdk_iam::Client::new(cfg),
            sts: aws_sdk_sts::Client::new(cfg),
            lambda: aws_sdk_lambda::Client::new(cfg),
            cloudfront: aws_sdk_cloudfront::Client::new(cfg),
            cloudwatch: aws_sdk_cloudwatch::Client::new(cfg),
            cloudwatch_global: aws_sdk_cloudwatch::Client::from_conf(
                aws_sdk_cloudwatch::config::Builder::from(cfg)
                    .region(Region::new("us-east-1"))
                    .build(),
            ),
            logs: aws_sdk_cloudwatchlogs::Client::new(cfg),
            sqs: aws_sdk_sqs::Client::new(cfg),
        }
    }
}

/// Loads SDK configuration once and hands out per-region clients.
pub struct AwsFactory {
    base: SdkConfig,
    stats: Arc<CallStats>,
    clients: Mutex<HashMap<String, AwsClients>>,
    account: tokio::sync::OnceCell<String>,
}

impl std::fmt::Debug for AwsFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsFactory")
            .field("region", &self.base.region())
            .field("endpoint", &self.base.endpoint_url())
            .finish()
    }
}

impl AwsFactory {
    /// Load configuration with the default credential chain (environment,
    /// web identity/IRSA, EKS Pod Identity, profiles, IMDS), the region from
    /// `region` or the environment, `AWS_ENDPOINT_URL` honoured, standard
    /// retries with bounded attempts and timeouts.
    pub async fn load(region: Option<String>, stats: Arc<CallStats>) -> Result<Self> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .retry_config(RetryConfig::standard().with_max_attempts(4))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .operation_attempt_timeout(Duration::from_secs(30))
                    .operation_timeout(Duration::from_secs(90))
                    .build(),
            );
        if let Some(r) = region {
            loader = loader.region(Region::new(r));
        }
        let base = loader.load().await;
        if base.region().is_none() {
            return Err(Error::Config(
                "no AWS region: set AWS_REGION, --aws-region, a profile region, or spec.region"
                    .into(),
            ));
        }
        Ok(Self {
            base,
            stats,
            clients: Mutex::new(HashMap::new()),
            account: tokio::sync::OnceCell::new(),
        })
    }

    /// The operator's default region.
    pub fn default_region(&self) -> String {
        self.base
            .region()
            .map(|r| r.to_string())
            .unwrap_or_else(|| "us-east-1".into())
    }

    /// The endpoint override, if any (`AWS_ENDPOINT_URL`).
    pub fn endpoint_url(&self) -> Option<&str> {
        self.base.endpoint_url()
    }

    /// The call counters shared by every client.
    pub fn stats(&self) -> &Arc<CallStats> {
        &self.stats
    }

    /// Clients for `region` (default region when `None`).
    pub fn clients(&self, region: Option<&str>) -> AwsClients {
        let region = region
            .map(str::to_string)
            .unwrap_or_else(|| self.default_region());
        let mut map = match self.clients.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        map.entry(region.clone())
            .or_insert_with(|| self.build(&region))
            .clone()
    }

    fn build(&self, region: &str) -> AwsClients {
        let cfg = self
            .base
            .to_builder()
            .region(Region::new(region.to_string()))
            .build();
        let counter = CallCounter(self.stats.clone());
        let s3 = aws_sdk_s3::config::Builder::from(&cfg)
            // Path-style addressing when an endpoint override is set (emulators,
            // LocalStack); virtual-hosted style on real AWS.
            .force_path_style(cfg.endpoint_url().is_some())
            .interceptor(counter.clone())
            .build();
        let dynamodb = aws_sdk_dynamodb::config::Builder::from(&cfg)
            .interceptor(counter.clone())
            .build();
        let iam = aws_sdk_iam::config::Builder::from(&cfg)
            .interceptor(counter.clone())
            .build();
        let sts = aws_sdk_sts::config::Builder::from(&cfg)
            .interceptor(counter.clone())
            .build();
        let lambda = aws_sdk_lambda::config::Builder::from(&cfg)
            .interceptor(counter.clone())
            .build();
        let cloudfront = aws_sdk_cloudfront::config::Builder::from(&cfg)
            .region(Region::new("us-east-1"))
            .interceptor(counter.clone())
            .build();
        let cloudwatch = aws_sdk_cloudwatch::config::Builder::from(&cfg)
            .interceptor(counter.clone())
            .build();
        let cloudwatch_global = aws_sdk_cloudwatch::config::Builder::from(&cfg)
            .region(Region::new("us-east-1"))
            .interceptor(counter.clone())
            .build();
        let logs = aws_sdk_cloudwatchlogs::config::Builder::from(&cfg)
            .interceptor(counter.clone())
            .build();
        let sqs = aws_sdk_sqs::config::Builder::from(&cfg)
            .interceptor(counter)
            .build();
        AwsClients {
            region: region.to_string(),
            s3: aws_sdk_s3::Client::from_conf(s3),
            dynamodb: aws_sdk_dynamodb::Client::from_conf(dynamodb),
            iam: aws_sdk_iam::Client::from_conf(iam),
            sts: aws_sdk_sts::Client::from_conf(sts),
            lambda: aws_sdk_lambda::Client::from_conf(lambda),
            cloudfront: aws_sdk_cloudfront::Client::from_conf(cloudfront),
            cloudwatch: aws_sdk_cloudwatch::Client::from_conf(cloudwatch),
            cloudwatch_global: aws_sdk_cloudwatch::Client::from_conf(cloudwatch_global),
            logs: aws_sdk_cloudwatchlogs::Client::from_conf(logs),
            sqs: aws_sdk_sqs::Client::from_conf(sqs),
        }
    }

    /// The AWS account id of the credentials (STS GetCallerIdentity, cached).
    pub async fn account_id(&self) -> Result<String> {
        let clients = self.clients(None);
        self.account
            .get_or_try_init(|| async move {
                let out = clients
                    .sts
                    .get_caller_identity()
                    .send()
                    .await
                    .map_err(|e| Error::aws("sts:GetCallerIdentity", e))?;
                out.account()
                    .map(str::to_string)
                    .ok_or_else(|| Error::Config("STS returned no account id".into()))
            })
            .await
            .cloned()
    }
}

/// The ARN partition of a region.
pub fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else if region.starts_with("us-iso-") {
        "aws-iso"
    } else if region.starts_with("us-isob-") {
        "aws-iso-b"
    } else {
        "aws"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutating_operations() {
        for op in [
            "GetBucketPolicy",
            "ListRolePolicies",
            "HeadBucket",
            "DescribeTable",
        ] {
            assert!(!is_mutating(op), "{op}");
        }
        for op in [
            "PutBucketPolicy",
            "CreateTable",
            "TagResource",
            "DeleteRole",
            "UpdateTable",
        ] {
            assert!(is_mutating(op), "{op}");
        }
    }

    #[test]
    fn partitions() {
        assert_eq!(partition("eu-west-1"), "aws");
        assert_eq!(partition("cn-north-1"), "aws-cn");
        assert_eq!(partition("us-gov-west-1"), "aws-us-gov");
    }

    /// An HTTP client that answers 200 with an empty body and counts what it
    /// was given to send.
    #[derive(Debug, Clone, Default)]
    struct CountingHttp(Arc<AtomicU64>);

    impl aws_smithy_runtime_api::client::http::HttpConnector for CountingHttp {
        fn call(
            &self,
            _request: aws_smithy_runtime_api::client::orchestrator::HttpRequest,
        ) -> aws_smithy_runtime_api::client::http::HttpConnectorFuture {
            self.0.fetch_add(1, Ordering::SeqCst);
            let response = aws_smithy_runtime_api::client::orchestrator::HttpResponse::new(
                aws_smithy_runtime_api::http::StatusCode::try_from(200).unwrap(),
                aws_smithy_types::body::SdkBody::empty(),
            );
            aws_smithy_runtime_api::client::http::HttpConnectorFuture::ready(Ok(response))
        }
    }

    impl aws_smithy_runtime_api::client::http::HttpClient for CountingHttp {
        fn http_connector(
            &self,
            _settings: &aws_smithy_runtime_api::client::http::HttpConnectorSettings,
            _components: &RuntimeComponents,
        ) -> aws_smithy_runtime_api::client::http::SharedHttpConnector {
            aws_smithy_runtime_api::client::http::SharedHttpConnector::new(self.clone())
        }
    }

    #[tokio::test]
    async fn a_closed_fence_stops_writes_before_they_are_sent() {
        let stats = Arc::new(CallStats::default());
        let sent = CountingHttp::default();
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("eu-west-1"))
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                "AKID", "SECRET", None, None, "test",
            ))
            .http_client(sent.clone())
            .interceptor(CallCounter(stats.clone()))
            .build();
        let s3 = aws_sdk_s3::Client::from_conf(conf);
        let tagging = || {
            aws_sdk_s3::types::Tagging::builder()
                .set_tag_set(Some(vec![]))
                .build()
                .unwrap()
        };
        s3.put_bucket_tagging()
            .bucket("b")
            .tagging(tagging())
            .send()
            .await
            .unwrap();
        assert_eq!(sent.0.load(Ordering::SeqCst), 1);
        assert_eq!(stats.writes(), 1);

        stats.fence().close("lost the Lease");
        let err = s3
            .put_bucket_tagging()
            .bucket("b")
            .tagging(tagging())
            .send()
            .await
            .unwrap_err();
        assert_eq!(sent.0.load(Ordering::SeqCst), 1, "a fenced write went out");
        let e = Error::aws("s3:PutBucketTagging", err);
        assert_eq!(e.aws_code(), Some("Fenced"), "{e:?}");
        let text = e.to_string();
        assert!(
            text.contains("S3:PutBucketTagging not sent") && text.contains("lost the Lease"),
            "{text}"
        );
        assert_eq!(stats.writes(), 1, "a refused write is not a write");
        let refused = CallKey {
            service: "S3".into(),
            operation: "PutBucketTagging".into(),
            outcome: "refused",
        };
        assert_eq!(stats.snapshot().get(&refused), Some(&1));

        // Reads still go out.
        let _ = s3.get_bucket_tagging().bucket("b").send().await;
        assert_eq!(sent.0.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn the_fence_shuts_itself_at_the_deadline() {
        let fence = WriteFence::default();
        assert_eq!(fence.closed(), None, "open without a deadline");
        fence.open_until(Instant::now() + Duration::from_secs(60), "deadline passed");
        assert_eq!(fence.closed(), None);
        fence.open_until(Instant::now(), "deadline passed");
        assert_eq!(fence.closed().as_deref(), Some("deadline passed"));
        // A renewal opens it again; closing is for good.
        fence.open_until(Instant::now() + Duration::from_secs(60), "deadline passed");
        assert_eq!(fence.closed(), None);
        fence.close("lost the Lease");
        fence.open_until(Instant::now() + Duration::from_secs(60), "deadline passed");
        assert_eq!(fence.closed().as_deref(), Some("lost the Lease"));
    }

    #[test]
    fn stats_count() {
        let s = CallStats::default();
        s.record("S3", "GetBucketTagging", true);
        s.record("S3", "PutBucketTagging", true);
        s.record("S3", "PutBucketTagging", false);
        assert_eq!(s.writes(), 2);
        assert_eq!(s.total(), 3);
        assert_eq!(s.write_operations().get("S3:PutBucketTagging"), Some(&2));
    }
}

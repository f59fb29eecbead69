//! Pure planning: a stack's spec (plus where it runs) → the desired state of
//! every component, and the stack as a graph: every component with what it
//! depends on, in the order the driver walks it (forwards to apply, in
//! reverse to delete). No I/O here, so all of it is unit-tested.
//!
//! ```text
//! buckets, metadata-table ─► processor-role ─► processor-function ─► s3-invoke-permission ─► upload-notifications
//! origin-access-control, output buckets ─► distribution ─► webp/jpeg/png-cdn-grant (in each output bucket's policy)
//! cache-policy (only with non-default TTLs) ─► distribution
//! distribution ─► dashboard
//! ```

use std::collections::BTreeMap;

use imagestack_contract::Format;

use crate::api::CodeSpec;
use crate::api::{
    ComponentName, ImageOptimizationStack, ImageOptimizationStackSpec, PriceClass, StackOutputs,
};
use crate::aws::partition;
use crate::components::alarm::{DesiredAlarm, MetricSpec, Watched};
use crate::components::bucket::{Cors, DesiredBucket};
use crate::components::cache_policy::{self, DesiredCachePolicy};
use crate::components::cdn_grant::DesiredCdnGrant;
use crate::components::dashboard::{self, DashboardInput, DesiredDashboard};
use crate::components::distribution::{self, DesiredDistribution};
use crate::components::edge_function::{self, DesiredEdgeFunction};
use crate::components::function::{CodeSource, DesiredFunction};
use crate::components::notification::DesiredNotification;
use crate::components::origin_access::{self, DesiredOriginAccess};
use crate::components::permission::DesiredPermission;
use crate::components::queue::DesiredQueue;
use crate::components::role::DesiredRole;
use crate::components::table::DesiredTable;
use crate::driver::{Entry, Graph};
use crate::error::{Error, Result};
use crate::lifecycle::StackRule;
use crate::naming::{StackId, is_valid_bucket_name};
use crate::policy;

/// Where the stack runs: resolved from STS and the spec/operator region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsEnv {
    pub account_id: String,
    pub region: String,
}

impl AwsEnv {
    pub fn partition(&self) -> &'static str {
        partition(&self.region)
    }
}

/// Operator-level inputs of the plan (from flags).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanOptions {
    /// Directory with `x86_64.zip` and `arm64.zip` (`--processor-artifact-dir`).
    pub artifact_dir: std::path::PathBuf,
    /// The installation's id (`--cluster-id`): part of every ownership tag.
    pub cluster_id: String,
}

impl Default for PlanOptions {
    fn default() -> Self {
        Self {
            artifact_dir: "/opt/imagestack/processor".into(),
            cluster_id: String::new(),
        }
    }
}

/// Desired state of every component of one stack.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredStack {
    pub id: StackId,
    pub env: AwsEnv,
    /// Upload bucket first, then webp, jpeg, png.
    pub buckets: Vec<DesiredBucket>,
    pub table: DesiredTable,
    pub role: DesiredRole,
    pub function: DesiredFunction,
    pub permission: DesiredPermission,
    /// The failed-event queue (the function's on-failure destination).
    pub queue: DesiredQueue,
    pub notification: DesiredNotification,
    pub origin_access: DesiredOriginAccess,
    /// The stack's own cache policy (used only with non-default TTLs).
    pub cache_policy: DesiredCachePolicy,
    /// The CDN is on and the TTLs are not the defaults: the stack owns a
    /// cache policy (else the behaviours use `CachingOptimized`).
    pub cache_policy_enabled: bool,
    pub distribution: DesiredDistribution,
    /// The CloudFront Function behind the distribution's `/i/*` behaviour.
    pub edge_function: DesiredEdgeFunction,
    /// One CloudFront read grant per output bucket.
    pub grants: Vec<DesiredCdnGrant>,
    pub dashboard: DesiredDashboard,
    /// `spec.cdn.enabled`: the OAC, distribution and grants exist.
    pub cdn_enabled: bool,
    /// `spec.dashboard.enabled`.
    pub dashboard_enabled: bool,
    /// The CloudWatch alarms (the CDN's last).
    pub alarms: Vec<DesiredAlarm>,
    /// `spec.alarms.enabled`.
    pub alarms_enabled: bool,
}

impl DesiredStack {
    /// Names known from the plan alone (status outputs).
    pub fn outputs(&self) -> StackOutputs {
        let bucket = |c: ComponentName| self.bucket(c).map(|b| b.name.clone());
        StackOutputs {
            region: Some(self.env.region.clone()),
            upload_bucket: bucket(ComponentName::UploadBucket),
            webp_bucket: bucket(ComponentName::WebpBucket),
            jpeg_bucket: bucket(ComponentName::JpegBucket),
            png_bucket: bucket(ComponentName::PngBucket),
            avif_bucket: bucket(ComponentName::AvifBucket),
            table_name: Some(self.table.name.clone()),
            role_arn: Some(self.role.arn.clone()),
            function_name: Some(self.function.name.clone()),
            function_arn: Some(self.function.arn.clone()),
            failed_event_queue: Some(self.queue.name.clone()),
            cdn_aliases: if self.cdn_enabled {
                self.distribution.aliases.clone()
            } else {
                Vec::new()
            },
            dashboard_name: self.dashboard_enabled.then(|| self.dashboard.name.clone()),
            dashboard_url: self
                .dashboard_enabled
                .then(|| dashboard::console_url(&self.env.region, &self.dashboard.name)),
            ..Default::default()
        }
    }

    /// Output buckets by format.
    pub fn output_buckets(&self) -> Vec<(Format, String)> {
        Format::ALL
            .iter()
            .filter_map(|f| {
                self.bucket(ComponentName::bucket_of(*f))
                    .map(|b| (*f, b.name.clone()))
            })
            .collect()
    }

    /// The bucket of a component name.
    pub fn bucket(&self, component: ComponentName) -> Option<&DesiredBucket> {
        self.buckets.iter().find(|b| b.component == component)
    }

    /// The stack as a graph: every component, what it depends on, what it is
    /// a part of, and whether the spec switches it on. The driver writes a
    /// component only when everything it depends on is ours and ready.
    pub fn graph(&self) -> Result<Graph> {
        use ComponentName as N;
        let buckets: Vec<N> = self.buckets.iter().map(|b| b.component).collect();
        let outputs: Vec<N> = Format::ALL.iter().map(|f| N::bucket_of(*f)).collect();
        let mut entries: Vec<Entry> = self.buckets.iter().cloned().map(Entry::new).collect();
        entries.push(Entry::new(self.table.clone()));
        entries.push(Entry::new(self.queue.clone()));
        // The role's policy and the function's environment name every bucket and
        // the table; the policy and the function's on-failure destination the queue.
        let data: Vec<N> = buckets
            .iter()
            .copied()
            .chain([N::MetadataTable, N::FailedEventQueue])
            .collect();
        entries.push(Entry::new(self.role.clone()).after(data.clone()));
        entries.push(
            Entry::new(self.function.clone())
                .after([N::ProcessorRole])
                .after(data),
        );
        entries.push(
            Entry::new(self.permission.clone())
                .inside(N::ProcessorFunction)
                .after([N::UploadBucket]),
        );
        entries.push(
            Entry::new(self.notification.clone())
                .inside(N::UploadBucket)
                .after([N::S3InvokePermission]),
        );
        entries.push(Entry::new(self.origin_access.clone()).enabled(self.cdn_enabled));
        entries.push(Entry::new(self.edge_function.clone()).enabled(self.cdn_enabled));
        // The distribution waits for its own cache policy only while it uses one:
        // switched off (default TTLs again), the policy is removed after the
        // distribution has moved its behaviours to CachingOptimized (a removal
        // waits for every dependant to be gone, which the distribution is not).
        entries.push(Entry::new(self.cache_policy.clone()).enabled(self.cache_policy_enabled));
        let cache_policy_dep = self
            .cache_policy_enabled
            .then_some(N::CachePolicy)
            .into_iter();
        entries.push(
            Entry::new(self.distribution.clone())
                .after([N::OriginAccessControl, N::EdgeFunction])
                .after(cache_policy_dep)
                .after(outputs)
                .enabled(self.cdn_enabled),
        );
        for g in &self.grants {
            let host = self
                .buckets
                .iter()
                .find(|b| b.name == g.bucket)
                .map(|b| b.component)
                .ok_or_else(|| {
                    Error::Internal(format!("grant on unplanned bucket {}", g.bucket))
                })?;
            entries.push(
                Entry::new(g.clone())
                    .inside(host)
                    .after([N::Distribution])
                    .enabled(self.cdn_enabled),
            );
        }
        // The dashboard shows the distribution's metrics: written only once the
        // distribution is known, so it is never rewritten without them.
        let mut board = Entry::new(self.dashboard.clone()).enabled(self.dashboard_enabled);
        if self.cdn_enabled {
            board = board.after([N::Distribution]);
        }
        entries.push(board);
        for a in &self.alarms {
            let entry = Entry::new(a.clone());
            entries.push(match a.component {
                N::CdnErrorsAlarm => entry
                    .after([N::Distribution])
                    .enabled(self.alarms_enabled && self.cdn_enabled),
                N::FunctionErrorsAlarm | N::FunctionThrottlesAlarm => entry
                    .after([N::ProcessorFunction])
                    .enabled(self.alarms_enabled),
                N::FailedEventsAlarm => entry
                    .after([N::FailedEventQueue])
                    .enabled(self.alarms_enabled),
                _ => entry.enabled(self.alarms_enabled),
            });
        }
        Graph::new(entries)
    }
}

/// Where viewers reach the stack's images: `https://<first alias>` when the
/// spec names custom domains, else `https://<CloudFront domain>` once known;
/// no trailing slash.
pub fn image_host(aliases: &[String], cdn_domain: Option<&str>) -> Option<String> {
    aliases
        .first()
        .map(String::as_str)
        .or(cdn_domain)
        .filter(|h| !h.is_empty())
        .map(|h| format!("https://{h}"))
}

/// CloudFront's name of a price class.
pub fn price_class(p: PriceClass) -> &'static str {
    match p {
        PriceClass::PriceClass_100 => "PriceClass_100",
        PriceClass::PriceClass_200 => "PriceClass_200",
        PriceClass::PriceClass_All => "PriceClass_All",
    }
}

/// The stack's identity, owned by installation `cluster`.
pub fn stack_id_in(stack: &ImageOptimizationStack, cluster: &str) -> Result<StackId> {
    Ok(stack_id(stack)?.in_cluster(cluster))
}

/// The stack's identity (without an installation: names only).
pub fn stack_id(stack: &ImageOptimizationStack) -> Result<StackId> {
    let ns = stack
        .metadata
        .namespace
        .clone()
        .ok_or_else(|| Error::InvalidSpec("stack has no namespace".into()))?;
    let name = stack
        .metadata
        .name
        .clone()
        .ok_or_else(|| Error::InvalidSpec("stack has no name".into()))?;
    Ok(StackId::new(ns, name, stack.spec.environment.clone()))
}

/// The region a stack lives in.
pub fn region(spec: &ImageOptimizationStackSpec, default_region: &str) -> String {
    spec.region
        .clone()
        .unwrap_or_else(|| default_region.to_string())
}

/// The region of a stack: the one recorded on status at its first reconcile
/// (a stack never moves, whatever happens to the spec or to the operator's
/// default region), else the spec's, else the operator's default. A spec
/// naming another region than the recorded one is refused (the CRD already
/// refuses the change; this guards stacks admitted before that rule).
pub fn stack_region(
    spec: &ImageOptimizationStackSpec,
    recorded: Option<&str>,
    default_region: &str,
) -> Result<String> {
    match (recorded, spec.region.as_deref()) {
        (Some(r), Some(s)) if r != s => Err(Error::Immutable(format!(
            "spec.region is {s} but the stack was created in {r}: the region cannot change; restore spec.region: {r} (or remove it), or create a new stack"
        ))),
        (Some(r), _) => Ok(r.to_string()),
        (None, _) => Ok(region(spec, default_region)),
    }
}

/// The processor's environment: the contract between operator and processor.
pub fn function_environment(
    spec: &ImageOptimizationStackSpec,
    stack: &str,
    environment: &str,
    upload: &str,
    outputs: &[(Format, String)],
    table: &str,
) -> BTreeMap<String, String> {
    use imagestack_contract::env;
    let mut m = BTreeMap::new();
    m.insert(env::ENVIRONMENT.to_string(), environment.to_string());
    m.insert(env::STACK.to_string(), stack.to_string());
    m.insert(env::UPLOAD_BUCKET.to_string(), upload.to_string());
    for (f, name) in outputs {
        m.insert(env::bucket_var(*f).to_string(), name.clone());
    }
    m.insert(env::METADATA_TABLE.to_string(), table.to_string());
    let formats: Vec<&str> = spec
        .processor
        .formats
        .iter()
        .map(|f| Format::from(*f).as_str())
        .collect();
    m.insert(env::FORMATS.to_string(), formats.join(","));
    m.insert(
        env::WEBP_QUALITY.to_string(),
        spec.processor.quality.webp.to_string(),
    );
    m.insert(
        env::JPEG_QUALITY.to_string(),
        spec.processor.quality.jpeg.to_string(),
    );
    m.insert(
        env::AVIF_QUALITY.to_string(),
        spec.processor.quality.avif.to_string(),
    );
    m.insert(
        env::WEBP_METHOD.to_string(),
        spec.processor.webp_method.to_string(),
    );
    m.insert(
        env::MAX_INPUT_BYTES.to_string(),
        spec.processor.max_input_bytes.to_string(),
    );
    m.insert(
        env::MAX_INPUT_PIXELS.to_string(),
        spec.processor.max_input_pixels.to_string(),
    );
    let widths: Vec<String> = spec
        .processor
        .widths
        .iter()
        .map(|w| w.to_string())
        .collect();
    m.insert(env::WIDTHS.to_string(), widths.join(","));
    m
}

/// Plan every component of `stack` with default operator options.
pub fn plan(stack: &ImageOptimizationStack, env: &AwsEnv) -> Result<DesiredStack> {
    plan_with(stack, env, &PlanOptions::default())
}

/// `memoryMb` must hold an image of `maxInputPixels` (the admission rule,
/// checked again here for objects stored before it existed).
fn check_memory(p: &crate::api::ProcessorSpec) -> Result<()> {
    use imagestack_contract::memory;
    let pixels = u64::try_from(p.max_input_pixels).unwrap_or(0);
    let need = memory::required_mb(pixels);
    if u64::try_from(p.memory_mb).unwrap_or(0) < need {
        return Err(Error::InvalidSpec(format!(
            "spec.processor.memoryMb: {} MB cannot hold an image of maxInputPixels {} (about {} bytes per pixel + {} MB): raise memoryMb to at least {need} or lower maxInputPixels",
            p.memory_mb,
            p.max_input_pixels,
            memory::BYTES_PER_PIXEL,
            memory::BASELINE_MB
        )));
    }
    Ok(())
}

/// Plan every component of `stack`.
pub fn plan_with(
    stack: &ImageOptimizationStack,
    env: &AwsEnv,
    opts: &PlanOptions,
) -> Result<DesiredStack> {
    let id = stack_id_in(stack, &opts.cluster_id)?;
    let spec = &stack.spec;
    check_memory(&spec.processor)?;
    let p = env.partition();
    let tags = id.tags(&spec.tags);

    let name_for = |purpose: &str, override_: &Option<String>| -> Result<String> {
        let name = override_
            .clone()
            .unwrap_or_else(|| id.bucket_name(purpose, &env.account_id));
        if !is_valid_bucket_name(&name) {
            return Err(Error::InvalidSpec(format!(
                "bucket name {name:?} is not a valid dot-free S3 bucket name"
            )));
        }
        Ok(name)
    };
    let upload_name = name_for("upload", &spec.buckets.upload.name)?;
    let outputs = [
        (Format::Webp, name_for("webp", &spec.buckets.outputs.webp)?),
        (Format::Jpeg, name_for("jpeg", &spec.buckets.outputs.jpeg)?),
        (Format::Png, name_for("png", &spec.buckets.outputs.png)?),
        (Format::Avif, name_for("avif", &spec.buckets.outputs.avif)?),
    ];
    let mut all_names: Vec<&str> = vec![&upload_name];
    all_names.extend(outputs.iter().map(|(_, n)| n.as_str()));
    let mut dedup = all_names.clone();
    dedup.sort();
    dedup.dedup();
    if dedup.len() != all_names.len() {
        return Err(Error::InvalidSpec(
            "spec.buckets: upload and output bucket names must all be different".into(),
        ));
    }

    let cors = &spec.buckets.upload.cors;
    let lc = &spec.buckets.upload.lifecycle;
    let abort_multipart = StackRule::abort_multipart(lc.abort_incomplete_multipart_upload_days);
    let empty_on_delete = spec.buckets.empty_on_delete;
    let upload = DesiredBucket {
        component: ComponentName::UploadBucket,
        name: upload_name.clone(),
        region: env.region.clone(),
        partition: p.to_string(),
        tags: tags.clone(),
        versioning: Some(spec.buckets.upload.versioning),
        acceleration: Some(spec.buckets.upload.transfer_acceleration),
        cors: Some(vec![Cors {
            allowed_origins: cors.allowed_origins.clone(),
            allowed_methods: cors
                .allowed_methods
                .iter()
                .map(|m| m.as_str().to_string())
                .collect(),
            allowed_headers: cors.allowed_headers.clone(),
            expose_headers: cors.expose_headers.clone(),
            max_age_seconds: cors.max_age_seconds,
        }]),
        tls_statement: policy::deny_insecure_transport(p, &upload_name),
        lifecycle: vec![
            StackRule::expire_noncurrent(lc.noncurrent_version_expiration_days),
            abort_multipart.clone(),
        ],
        empty_on_delete,
    };
    let mut buckets = vec![upload];
    for (format, name) in &outputs {
        buckets.push(DesiredBucket {
            component: ComponentName::bucket_of(*format),
            name: name.clone(),
            region: env.region.clone(),
            partition: p.to_string(),
            tags: tags.clone(),
            versioning: None,
            acceleration: None,
            cors: None,
            tls_statement: policy::deny_insecure_transport(p, name),
            lifecycle: vec![abort_multipart.clone()],
            empty_on_delete,
        });
    }

    let table_name = spec.table.name.clone().unwrap_or_else(|| id.table_name());
    let table = DesiredTable {
        name: table_name.clone(),
        tags: tags.clone(),
        point_in_time_recovery: spec.table.point_in_time_recovery,
    };

    let function_name = id.function_name();
    let enabled: Vec<Format> = spec.processor.formats.iter().map(|f| (*f).into()).collect();
    let policy_outputs: Vec<(&str, String)> = outputs
        .iter()
        .filter(|(f, _)| enabled.contains(f))
        .map(|(f, n)| (n.as_str(), f.key_prefix()))
        .collect();
    let queue_name = id.queue_name();
    let queue_arn = format!("arn:{p}:sqs:{}:{}:{queue_name}", env.region, env.account_id);
    let queue = DesiredQueue {
        name: queue_name,
        tls_statement: policy::deny_insecure_transport_queue(&queue_arn),
        arn: queue_arn.clone(),
        tags: tags.clone(),
    };
    let role_name = id.role_name();
    let role = DesiredRole {
        arn: format!("arn:{p}:iam::{}:role/{role_name}", env.account_id),
        name: role_name,
        trust_policy: policy::lambda_trust_policy(&env.account_id),
        policy_name: id.role_policy_name(),
        policy: policy::processor_policy(&policy::ProcessorPolicyInput {
            partition: p,
            region: &env.region,
            account: &env.account_id,
            function_name: &function_name,
            upload_bucket: &upload_name,
            outputs: policy_outputs,
            table_name: &table_name,
            failed_event_queue: Some(&queue_arn),
        }),
        tags,
        description: format!(
            "imagestack processor for {}/{} ({})",
            id.namespace, id.name, id.environment
        ),
    };

    let arch = spec.processor.architecture.as_str();
    let code = match &spec.processor.code {
        Some(CodeSpec { s3 }) => CodeSource::S3 {
            bucket: s3.bucket.clone(),
            key: s3.key.clone(),
            sha256: s3.sha256.clone(),
        },
        None => CodeSource::Zip {
            path: opts.artifact_dir.join(format!("{arch}.zip")),
        },
    };
    let function_arn = format!(
        "arn:{p}:lambda:{}:{}:function:{function_name}",
        env.region, env.account_id
    );
    let function = DesiredFunction {
        name: function_name.clone(),
        arn: function_arn.clone(),
        architecture: arch.to_string(),
        memory_mb: spec.processor.memory_mb,
        timeout_seconds: spec.processor.timeout_seconds,
        environment: {
            let mut vars = function_environment(
                spec,
                &id.owner_tag_value(),
                &id.environment,
                &upload_name,
                &outputs,
                &table_name,
            );
            // Where the metadata items' edge URLs point: the custom domain, else
            // the CloudFront domain the last pass reported (none on the first
            // pass: the items then record paths without a host until the next).
            let cdn_domain = stack
                .status
                .as_ref()
                .and_then(|s| s.outputs.as_ref())
                .and_then(|o| o.cdn_domain.as_deref());
            if let Some(host) =
                image_host(&spec.cdn.aliases, cdn_domain).filter(|_| spec.cdn.enabled)
            {
                vars.insert(imagestack_contract::env::IMAGE_URL_PREFIX.to_string(), host);
            }
            vars
        },
        tags: role.tags.clone(),
        description: role.description.clone(),
        code,
        log_retention_days: 30,
        max_retry_attempts: 2,
        max_event_age_seconds: 6 * 3600,
        reserved_concurrency: spec.processor.reserved_concurrency,
        on_failure_destination: Some(queue_arn),
    };
    let upload_arn = format!("arn:{p}:s3:::{upload_name}");
    let permission = DesiredPermission {
        function_name: function_name.clone(),
        function_arn: function_arn.clone(),
        source_bucket_arn: upload_arn,
        source_account: env.account_id.clone(),
    };
    let notification = DesiredNotification {
        bucket: upload_name.clone(),
        function_arn,
    };

    let cdn = &spec.cdn;
    let ttls = (
        cdn.min_ttl_seconds,
        cdn.default_ttl_seconds,
        cdn.max_ttl_seconds,
    );
    let cache_policy = cache_policy::desired(&id, ttls);
    let mut distribution = distribution::desired(
        &id,
        &env.region,
        &outputs,
        price_class(cdn.price_class),
        ttls,
        function.tags.clone(),
    );
    distribution.aliases = cdn.aliases.clone();
    distribution.certificate_arn = cdn.certificate_arn.clone();
    let widths: Vec<u32> = spec
        .processor
        .widths
        .iter()
        .filter_map(|w| u32::try_from(*w).ok())
        .collect();
    let edge_function =
        edge_function::desired(&id, crate::edge::viewer_request_code(&widths, &enabled));
    distribution.edge_function_arn = Some(edge_function::function_arn(
        p,
        &env.account_id,
        &edge_function.name,
    ));
    distribution.known_id = stack
        .status
        .as_ref()
        .and_then(|s| s.outputs.as_ref())
        .and_then(|o| o.distribution_id.clone());
    let grants = outputs
        .iter()
        .map(|(f, name)| DesiredCdnGrant {
            component: ComponentName::grant_of(*f),
            bucket: name.clone(),
            partition: p.to_string(),
            prefix: f.key_prefix(),
        })
        .collect();
    let dashboard = dashboard::desired(
        &id,
        &DashboardInput {
            region: env.region.clone(),
            stack: id.owner_tag_value(),
            function_name: function.name.clone(),
            environment: id.environment.clone(),
            table_name: table.name.clone(),
            distribution_id: None,
            formats: enabled.clone(),
        },
    );

    let alarms = alarms(
        &id,
        env,
        &function.name,
        &queue.name,
        &spec.alarms.actions,
        &function.tags,
    );

    Ok(DesiredStack {
        origin_access: origin_access::desired(&id),
        id,
        env: env.clone(),
        buckets,
        table,
        role,
        function,
        permission,
        queue,
        notification,
        cache_policy,
        cache_policy_enabled: cdn.enabled && ttls != distribution::DEFAULT_TTLS,
        distribution,
        edge_function,
        grants,
        dashboard,
        cdn_enabled: cdn.enabled,
        dashboard_enabled: spec.dashboard.enabled,
        alarms,
        alarms_enabled: spec.alarms.enabled,
    })
}

/// The stack's alarms: function errors and throttles (> 0 in 5 minutes), the
/// processor's ProcessingErrors rate (> 5 % of the images of 5 minutes, by
/// the `Stack` and `Environment` dimensions) and the distribution's 5xx
/// error rate (> 1 %, in us-east-1). No data (no traffic) is not an alarm.
pub fn alarms(
    id: &StackId,
    env: &AwsEnv,
    function: &str,
    queue: &str,
    actions: &[String],
    tags: &BTreeMap<String, String>,
) -> Vec<DesiredAlarm> {
    use ComponentName as N;
    use imagestack_contract::metrics as m;
    let p = env.partition();
    let who = format!("imagestack {} ({})", id.owner_tag_value(), id.environment);
    let metric = |namespace: &str, name: &str, statistic: &str, dims: &[(&str, &str)]| MetricSpec {
        namespace: namespace.into(),
        name: name.into(),
        statistic: statistic.into(),
        dimensions: dims
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    let stack = id.owner_tag_value();
    let scope = [
        (m::DIMENSION_STACK, stack.as_str()),
        (m::DIMENSION_ENVIRONMENT, id.environment.as_str()),
    ];
    let make = |component: N,
                purpose: &str,
                global: bool,
                description: String,
                watched: Watched,
                threshold: f64| {
        let name = id.alarm_name(purpose);
        let region = if global {
            "us-east-1"
        } else {
            env.region.as_str()
        };
        DesiredAlarm {
            component,
            arn: format!(
                "arn:{p}:cloudwatch:{region}:{}:alarm:{name}",
                env.account_id
            ),
            name,
            global,
            description,
            distribution_dimensions: component == N::CdnErrorsAlarm,
            watched,
            threshold,
            comparison: "GreaterThanThreshold".into(),
            evaluation_periods: 1,
            treat_missing_data: "notBreaching".into(),
            // An alarm notifies topics of its own region only.
            actions: actions
                .iter()
                .filter(|a| a.split(':').nth(3) == Some(region))
                .cloned()
                .collect(),
            tags: tags.clone(),
        }
    };
    vec![
        make(
            N::FunctionErrorsAlarm,
            "function-errors",
            false,
            format!(
                "{who}: the processor function {function} failed (Lambda Errors > 0 in 5 minutes)"
            ),
            Watched::Metric(metric(
                "AWS/Lambda",
                "Errors",
                "Sum",
                &[("FunctionName", function)],
            )),
            0.0,
        ),
        make(
            N::FunctionThrottlesAlarm,
            "function-throttles",
            false,
            format!(
                "{who}: the processor function {function} was throttled (Lambda Throttles > 0 in 5 minutes)"
            ),
            Watched::Metric(metric(
                "AWS/Lambda",
                "Throttles",
                "Sum",
                &[("FunctionName", function)],
            )),
            0.0,
        ),
        make(
            N::ProcessingErrorsAlarm,
            "processing-errors",
            false,
            format!("{who}: more than 5 % of the images of 5 minutes failed (ProcessingErrors)"),
            Watched::Expression {
                expression: "100 * FILL(errors, 0) / (FILL(errors, 0) + FILL(processed, 0))".into(),
                metrics: vec![
                    (
                        "errors".into(),
                        metric(m::NAMESPACE, m::PROCESSING_ERRORS, "Sum", &scope),
                    ),
                    (
                        "processed".into(),
                        metric(m::NAMESPACE, m::PROCESSED_IMAGES, "Sum", &scope),
                    ),
                ],
            },
            5.0,
        ),
        make(
            N::FailedEventsAlarm,
            "failed-events",
            false,
            format!(
                "{who}: events failed for good and wait in the failed-event queue {queue} (run `operator redrive` once the cause is fixed)"
            ),
            Watched::Metric(metric(
                "AWS/SQS",
                "ApproximateNumberOfMessagesVisible",
                "Maximum",
                &[("QueueName", queue)],
            )),
            0.0,
        ),
        make(
            N::CdnErrorsAlarm,
            "cdn-5xx",
            true,
            format!("{who}: more than 1 % of the CDN's responses were 5xx errors in 5 minutes"),
            Watched::Metric(metric("AWS/CloudFront", "5xxErrorRate", "Average", &[])),
            1.0,
        ),
    ]
}

/// User tags merged with ownership tags (exposed for tests and docs).
pub fn tags_of(stack: &ImageOptimizationStack) -> Result<BTreeMap<String, String>> {
    Ok(stack_id(stack)?.tags(&stack.spec.tags))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ImageOptimizationStackSpec, OutputFormat};

    fn stack(yaml: &str) -> ImageOptimizationStack {
        let spec: ImageOptimizationStackSpec = serde_norway::from_str(yaml).unwrap();
        let mut s = ImageOptimizationStack::new("images", spec);
        s.metadata.namespace = Some("team-a".into());
        s
    }

    fn env() -> AwsEnv {
        AwsEnv {
            account_id: "123456789012".into(),
            region: "eu-west-1".into(),
        }
    }

    #[test]
    fn memory_must_hold_the_largest_image() {
        // The defaults fit; 100 MP at the default 2048 MB does not.
        assert!(plan(&stack("environment: dev"), &env()).is_ok());
        let err = plan(
            &stack("environment: dev\nprocessor: {maxInputPixels: 100000000}"),
            &env(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("at least 3943"), "{err}");
        assert!(
            plan(
                &stack("environment: dev\nprocessor: {maxInputPixels: 100000000, memoryMb: 3943}"),
                &env()
            )
            .is_ok()
        );
    }

    #[test]
    fn defaults_plan_everything() {
        let d = plan(&stack("environment: dev"), &env()).unwrap();
        assert_eq!(d.buckets.len(), 5);
        let up = d.bucket(ComponentName::UploadBucket).unwrap();
        assert_eq!(up.versioning, Some(true));
        assert_eq!(up.acceleration, Some(true));
        let cors = &up.cors.as_ref().unwrap()[0];
        assert_eq!(cors.allowed_methods, vec!["PUT", "POST"]);
        assert_eq!(cors.expose_headers, vec!["ETag"]);
        for b in &d.buckets {
            assert_eq!(
                b.tags.get(crate::naming::OWNER_TAG).unwrap(),
                "team-a/images"
            );
            let stmt = &b.tls_statement;
            assert_eq!(stmt["Condition"]["Bool"]["aws:SecureTransport"], "false");
            assert_eq!(stmt["Effect"], "Deny");
        }
        let out = d.outputs();
        assert!(
            out.upload_bucket
                .unwrap()
                .starts_with("imagestack-dev-upload-")
        );
        assert!(
            d.role
                .arn
                .starts_with("arn:aws:iam::123456789012:role/imagestack-dev-processor-")
        );
        assert!(!d.table.point_in_time_recovery);
        // Lifecycle defaults: noncurrent versions 30 days, multipart uploads 7, on every bucket.
        assert_eq!(
            up.lifecycle,
            vec![
                StackRule::expire_noncurrent(30),
                StackRule::abort_multipart(7)
            ]
        );
        for b in &d.buckets[1..] {
            assert_eq!(
                b.lifecycle,
                vec![StackRule::abort_multipart(7)],
                "{}",
                b.name
            );
        }
        let d = plan(
            &stack("environment: dev\nbuckets: {upload: {lifecycle: {noncurrentVersionExpirationDays: 5, abortIncompleteMultipartUploadDays: 2}}}"),
            &env(),
        )
        .unwrap();
        assert_eq!(
            d.buckets[0].lifecycle,
            vec![
                StackRule::expire_noncurrent(5),
                StackRule::abort_multipart(2)
            ]
        );
        assert_eq!(d.buckets[3].lifecycle, vec![StackRule::abort_multipart(2)]);
    }

    #[test]
    fn overrides_and_formats() {
        let d = plan(
            &stack(
                r#"
environment: prod
tags: {team: media}
buckets:
  upload: {name: my-uploads, versioning: false, transferAcceleration: false}
  outputs: {webp: my-webp}
table: {name: my-table, pointInTimeRecovery: true}
processor: {formats: [webp]}
"#,
            ),
            &env(),
        )
        .unwrap();
        assert_eq!(
            d.bucket(ComponentName::UploadBucket).unwrap().name,
            "my-uploads"
        );
        assert_eq!(d.bucket(ComponentName::WebpBucket).unwrap().name, "my-webp");
        assert_eq!(d.table.name, "my-table");
        assert!(d.table.point_in_time_recovery);
        assert_eq!(d.table.tags.get("team").unwrap(), "media");
        let res = policy::resources(&d.role.policy);
        assert!(res.contains(&"arn:aws:s3:::my-webp/webp/*".to_string()));
        assert!(
            !res.iter()
                .any(|r| r.contains("/jpeg/") || r.contains("/png/")),
            "{res:?}"
        );
        let s = stack("environment: prod");
        assert_eq!(s.spec.processor.formats.len(), 3);
        assert_eq!(s.spec.processor.formats[0], OutputFormat::Webp);
    }

    #[test]
    fn function_environment_follows_the_contract() {
        let d = plan(
            &stack("environment: dev\nprocessor: {formats: [webp, png], quality: {jpeg: 70}}"),
            &env(),
        )
        .unwrap();
        let e = &d.function.environment;
        for var in imagestack_contract::env::ALL {
            assert!(e.contains_key(var), "missing {var}");
        }
        assert_eq!(e[imagestack_contract::env::FORMATS], "webp,png");
        // The processor's Stack metric dimension is the one the dashboard selects by.
        assert_eq!(e[imagestack_contract::env::STACK], "team-a/images");
        assert_eq!(d.dashboard.input.stack, "team-a/images");
        assert_eq!(e[imagestack_contract::env::JPEG_QUALITY], "70");
        assert_eq!(e[imagestack_contract::env::WIDTHS], "320,640,1280,1920");
        assert_eq!(
            e[imagestack_contract::env::UPLOAD_BUCKET],
            d.bucket(ComponentName::UploadBucket).unwrap().name
        );
        assert_eq!(e[imagestack_contract::env::METADATA_TABLE], d.table.name);
        assert!(
            matches!(&d.function.code, CodeSource::Zip { path } if path.ends_with("x86_64.zip"))
        );
        assert_eq!(
            d.permission.source_bucket_arn,
            format!(
                "arn:aws:s3:::{}",
                d.bucket(ComponentName::UploadBucket).unwrap().name
            )
        );
    }

    #[test]
    fn cloudfront_grant_is_per_prefix() {
        let d = plan(&stack("environment: dev"), &env()).unwrap();
        let arn = "arn:aws:cloudfront::123456789012:distribution/E1";
        let webp = d.bucket(ComponentName::WebpBucket).unwrap();
        let g = d.grants.iter().find(|g| g.bucket == webp.name).unwrap();
        assert_eq!(g.component, ComponentName::WebpCdnGrant);
        let st = g.statement(arn);
        assert_eq!(st["Sid"], policy::CLOUDFRONT_READ_SID);
        assert_eq!(st["Principal"]["Service"], "cloudfront.amazonaws.com");
        assert_eq!(st["Resource"], format!("arn:aws:s3:::{}/webp/*", webp.name));
        assert_eq!(st["Condition"]["StringEquals"]["AWS:SourceArn"], arn);
        // The upload bucket gets no CloudFront grant.
        let up = d.bucket(ComponentName::UploadBucket).unwrap();
        assert!(d.grants.iter().all(|g| g.bucket != up.name));
        assert_eq!(d.grants.len(), 4);
    }

    #[test]
    fn edge_urls_point_at_the_custom_domain_else_the_reported_cdn_domain() {
        use imagestack_contract::env::IMAGE_URL_PREFIX;
        let var = |d: &DesiredStack| d.function.environment.get(IMAGE_URL_PREFIX).cloned();
        // First pass: no domain known yet.
        let mut s = stack("environment: dev");
        assert_eq!(var(&plan(&s, &env()).unwrap()), None);
        // Then the one the last pass reported.
        s.status = Some(crate::api::ImageOptimizationStackStatus {
            outputs: Some(StackOutputs {
                cdn_domain: Some("d111.cloudfront.net".into()),
                ..Default::default()
            }),
            ..Default::default()
        });
        let d = plan(&s, &env()).unwrap();
        assert_eq!(var(&d).as_deref(), Some("https://d111.cloudfront.net"));
        // The function's association is planned with the function's real ARN.
        assert_eq!(
            d.distribution.edge_function_arn.as_deref(),
            Some(
                format!(
                    "arn:aws:cloudfront::123456789012:function/{}",
                    d.edge_function.name
                )
                .as_str()
            )
        );
        // A custom domain wins; without a CDN there is no edge URL host.
        let mut aliased = stack(
            "environment: dev\ncdn: {aliases: [img.example.com], certificateArn: 'arn:aws:acm:us-east-1:123456789012:certificate/x'}",
        );
        aliased.status = s.status.clone();
        assert_eq!(
            var(&plan(&aliased, &env()).unwrap()).as_deref(),
            Some("https://img.example.com")
        );
        let mut off = stack("environment: dev\ncdn: {enabled: false}");
        off.status = s.status.clone();
        assert_eq!(var(&plan(&off, &env()).unwrap()), None);
    }

    fn entry_depends(g: &Graph, node: ComponentName, on: ComponentName) -> bool {
        g.entries()
            .iter()
            .any(|e| e.node.name() == node && e.depends_on.contains(&on))
    }

    #[test]
    fn custom_ttls_switch_on_the_stacks_cache_policy_before_the_distribution() {
        use ComponentName as N;
        let entry = |g: &Graph, n: N| {
            let e = g.entries().iter().find(|e| e.node.name() == n).unwrap();
            (e.enabled, e.depends_on.clone())
        };
        // Default TTLs: CachingOptimized, no policy of our own, no dependency on it.
        let d = plan(&stack("environment: dev"), &env()).unwrap();
        assert!(!d.cache_policy_enabled);
        assert_eq!(
            d.distribution.cache_policy,
            distribution::CachePolicy::Managed(distribution::CACHING_OPTIMIZED.into())
        );
        let g = d.graph().unwrap();
        assert!(!entry(&g, N::CachePolicy).0);
        assert!(!entry(&g, N::Distribution).1.contains(&N::CachePolicy));
        // Custom TTLs: the stack's own policy with them, first.
        let d = plan(
            &stack("environment: dev\ncdn: {minTtlSeconds: 60, defaultTtlSeconds: 3600, maxTtlSeconds: 86400}"),
            &env(),
        )
        .unwrap();
        assert!(d.cache_policy_enabled);
        assert_eq!(
            d.distribution.cache_policy,
            distribution::CachePolicy::Owned
        );
        assert_eq!(
            (
                d.cache_policy.min_ttl,
                d.cache_policy.default_ttl,
                d.cache_policy.max_ttl
            ),
            (60, 3600, 86400)
        );
        assert_eq!(d.cache_policy.name, cache_policy::policy_name(&d.id));
        let g = d.graph().unwrap();
        assert!(entry(&g, N::CachePolicy).0);
        assert!(entry(&g, N::Distribution).1.contains(&N::CachePolicy));
        let names = g.names();
        let pos = |n: N| names.iter().position(|x| *x == n).unwrap();
        assert!(pos(N::CachePolicy) < pos(N::Distribution));
        // Custom TTLs without a CDN: nothing of CloudFront.
        let d = plan(
            &stack("environment: dev\ncdn: {enabled: false, defaultTtlSeconds: 10}"),
            &env(),
        )
        .unwrap();
        assert!(!d.cache_policy_enabled);
    }

    #[test]
    fn the_graph_orders_every_dependency_first() {
        use ComponentName as N;
        let d = plan(&stack("environment: dev"), &env()).unwrap();
        let g = d.graph().unwrap();
        let names = g.names();
        let pos = |n: N| names.iter().position(|x| *x == n).unwrap();
        assert_eq!(names.len(), 25, "{names:?}");
        assert!(pos(N::FailedEventQueue) < pos(N::ProcessorRole));
        assert!(pos(N::FailedEventQueue) < pos(N::ProcessorFunction));
        for b in [
            N::UploadBucket,
            N::WebpBucket,
            N::JpegBucket,
            N::PngBucket,
            N::AvifBucket,
        ] {
            assert!(pos(b) < pos(N::ProcessorRole));
        }
        assert!(pos(N::MetadataTable) < pos(N::ProcessorRole));
        assert!(pos(N::ProcessorRole) < pos(N::ProcessorFunction));
        assert!(pos(N::ProcessorFunction) < pos(N::S3InvokePermission));
        assert!(pos(N::S3InvokePermission) < pos(N::UploadNotifications));
        assert!(pos(N::OriginAccessControl) < pos(N::Distribution));
        // The `/i/*` behaviour associates the function: published first,
        // disassociated before it is deleted.
        assert!(pos(N::EdgeFunction) < pos(N::Distribution));
        assert!(entry_depends(&g, N::Distribution, N::EdgeFunction));
        assert!(pos(N::Distribution) < pos(N::WebpCdnGrant));
        assert!(pos(N::Distribution) < pos(N::AvifCdnGrant));
        assert!(pos(N::Distribution) < pos(N::Dashboard));
        let entry = |n: N| g.entries().iter().find(|e| e.node.name() == n).unwrap();
        // Writes through a name the stack does not own are gated: the role's
        // policy and the function's environment wait for every bucket and the table.
        for b in [N::WebpBucket, N::MetadataTable] {
            assert!(entry(N::ProcessorRole).depends_on.contains(&b));
            assert!(entry(N::ProcessorFunction).depends_on.contains(&b));
        }
        assert_eq!(entry(N::UploadNotifications).host, Some(N::UploadBucket));
        assert_eq!(entry(N::WebpCdnGrant).host, Some(N::WebpBucket));
        assert_eq!(
            entry(N::S3InvokePermission).host,
            Some(N::ProcessorFunction)
        );
        // Switching the CDN off switches off its three kinds of component, and
        // the dashboard no longer waits for a distribution.
        let d = plan(&stack("environment: dev\ncdn: {enabled: false}"), &env()).unwrap();
        let g = d.graph().unwrap();
        for e in g.entries() {
            let cdn = matches!(
                e.node.name(),
                N::OriginAccessControl
                    | N::EdgeFunction
                    | N::CachePolicy
                    | N::Distribution
                    | N::WebpCdnGrant
                    | N::JpegCdnGrant
                    | N::PngCdnGrant
                    | N::AvifCdnGrant
                    | N::CdnErrorsAlarm
            );
            assert_eq!(e.enabled, !cdn, "{}", e.node.name());
        }
        let board = g
            .entries()
            .iter()
            .find(|e| e.node.name() == N::Dashboard)
            .unwrap();
        assert!(board.depends_on.is_empty());
    }

    #[test]
    fn alarms_watch_this_stack_and_notify_the_actions() {
        use ComponentName as N;
        let topic = "arn:aws:sns:eu-west-1:123456789012:ops";
        let global_topic = "arn:aws:sns:us-east-1:123456789012:ops";
        let d = plan(
            &stack(&format!(
                "environment: dev\nalarms: {{actions: ['{topic}', '{global_topic}']}}"
            )),
            &env(),
        )
        .unwrap();
        let names: Vec<N> = d.alarms.iter().map(|a| a.component).collect();
        assert_eq!(
            names,
            [
                N::FunctionErrorsAlarm,
                N::FunctionThrottlesAlarm,
                N::ProcessingErrorsAlarm,
                N::FailedEventsAlarm,
                N::CdnErrorsAlarm
            ]
        );
        for a in &d.alarms {
            assert!(a.name.starts_with("imagestack-dev-"), "{}", a.name);
            // Each alarm notifies the topics of its own region.
            let want = if a.global { global_topic } else { topic };
            assert_eq!(a.actions, [want], "{}", a.name);
            assert_eq!(a.tags, d.function.tags);
            assert_eq!(a.treat_missing_data, "notBreaching");
        }
        let errors = &d.alarms[0];
        assert!(
            errors
                .arn
                .starts_with("arn:aws:cloudwatch:eu-west-1:123456789012:alarm:")
        );
        assert!(matches!(&errors.watched, Watched::Metric(m)
            if m.name == "Errors" && m.dimensions["FunctionName"] == d.function.name));
        // The rate: by the Stack and Environment dimensions the processor emits.
        let Watched::Expression { metrics, .. } = &d.alarms[2].watched else {
            panic!("ProcessingErrors is a rate")
        };
        for (_, m) in metrics {
            assert_eq!(m.dimensions["Stack"], "team-a/images");
            assert_eq!(m.dimensions["Environment"], "dev");
        }
        assert_eq!(d.alarms[2].threshold, 5.0);
        // CloudFront's metrics are in us-east-1.
        let failed = &d.alarms[3];
        assert!(matches!(&failed.watched, Watched::Metric(m)
            if m.name == "ApproximateNumberOfMessagesVisible" && m.dimensions["QueueName"] == d.queue.name));
        let cdn = &d.alarms[4];
        assert!(cdn.global && cdn.distribution_dimensions);
        assert!(
            cdn.arn.starts_with("arn:aws:cloudwatch:us-east-1:"),
            "{}",
            cdn.arn
        );
        assert_eq!(cdn.threshold, 1.0);
        // Switched off: every alarm is disabled in the graph.
        let d = plan(&stack("environment: dev\nalarms: {enabled: false}"), &env()).unwrap();
        let g = d.graph().unwrap();
        for e in g.entries() {
            if d.alarms.iter().any(|a| a.component == e.node.name()) {
                assert!(!e.enabled, "{}", e.node.name());
            }
        }
    }

    #[test]
    fn duplicate_bucket_names_rejected() {
        let e = plan(
            &stack(
                "environment: dev\nbuckets: {upload: {name: same-name}, outputs: {png: same-name}}",
            ),
            &env(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("must all be different"), "{e}");
    }

    #[test]
    fn a_stack_never_moves_region() {
        let s = stack("environment: dev");
        // Recorded at the first reconcile: a new operator default does not move it.
        assert_eq!(
            stack_region(&s.spec, Some("eu-west-1"), "us-east-1").unwrap(),
            "eu-west-1"
        );
        assert_eq!(
            stack_region(&s.spec, None, "us-east-1").unwrap(),
            "us-east-1"
        );
        let s = stack("environment: dev\nregion: eu-central-1");
        let e = stack_region(&s.spec, Some("eu-west-1"), "us-east-1").unwrap_err();
        assert_eq!(e.reason(), "ImmutableField");
        assert!(e.to_string().contains("eu-west-1"), "{e}");
        assert_eq!(
            stack_region(&s.spec, Some("eu-central-1"), "x").unwrap(),
            "eu-central-1"
        );
    }

    #[test]
    fn region_defaults_to_operator() {
        let s = stack("environment: dev");
        assert_eq!(region(&s.spec, "us-west-2"), "us-west-2");
        let s = stack("environment: dev\nregion: eu-central-1");
        assert_eq!(region(&s.spec, "us-west-2"), "eu-central-1");
    }
}

//! The `imagestack.dev/v1alpha1` API: `ImageOptimizationStack`.
//!
//! Doc comments on these types become the CRD's OpenAPI descriptions, which is
//! what `kubectl explain imagestack.spec…` prints: write them for users.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// API group of every imagestack resource.
pub const GROUP: &str = "imagestack.dev";
/// Finalizer the operator puts on every stack it manages.
pub const FINALIZER: &str = "imagestack.dev/cleanup";
/// Annotation that pauses all AWS writes for one stack when set to `"true"`.
pub const PAUSED_ANNOTATION: &str = "imagestack.dev/paused";

/// An image-optimization stack for one environment: upload and output buckets, a
/// metadata table, the processor Lambda and its IAM role, the S3 trigger, a
/// CloudFront distribution and a CloudWatch dashboard, reconciled on AWS by the
/// imagestack operator.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq)]
// Each printcolumn repeats `type_ = "string"`: not a duplicate, clippy misreads the derive's arguments.
#[allow(clippy::duplicated_attributes)]
#[kube(
    group = "imagestack.dev",
    version = "v1alpha1",
    kind = "ImageOptimizationStack",
    plural = "imagestacks",
    singular = "imagestack",
    shortname = "ios",
    category = "imagestack",
    namespaced,
    status = "ImageOptimizationStackStatus",
    derive = "PartialEq",
    doc = "An image-optimization stack for one environment, reconciled on AWS by the imagestack operator.",
    printcolumn(
        name = "Env",
        type_ = "string",
        json_path = ".spec.environment",
        description = "Environment name"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether every component is in sync"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason",
        description = "Why the stack is (not) ready"
    ),
    printcolumn(
        name = "CDN",
        type_ = "string",
        json_path = ".status.outputs.cdnDomain",
        description = "CloudFront domain serving the renditions"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(
        name = "Upload",
        type_ = "string",
        json_path = ".status.outputs.uploadBucket",
        priority = "1",
        description = "Upload bucket"
    ),
    printcolumn(
        name = "Table",
        type_ = "string",
        json_path = ".status.outputs.tableName",
        priority = "1",
        description = "Metadata table"
    ),
    printcolumn(
        name = "Function",
        type_ = "string",
        json_path = ".status.outputs.functionName",
        priority = "1",
        description = "Processor function"
    ),
    printcolumn(
        name = "Policy",
        type_ = "string",
        json_path = ".spec.deletionPolicy",
        priority = "1",
        description = "What happens to AWS resources on delete"
    ),
    printcolumn(
        name = "Message",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].message",
        priority = "1",
        description = "Details of the Ready condition"
    )
)]
#[serde(rename_all = "camelCase")]
// Immutable optional fields: a transition rule on an optional field itself does not
// run when the field is added or removed, so these rules sit on the spec, which
// always exists on update (one rule per field, so the message names it).
#[x_kube(
    validation = immutable_field("region", " (create a new stack in the new region)"),
    validation = immutable_field("buckets.upload.name", " (create a new stack to use another bucket)"),
    validation = immutable_field("buckets.outputs.webp", " (create a new stack to use another bucket)"),
    validation = immutable_field("buckets.outputs.jpeg", " (create a new stack to use another bucket)"),
    validation = immutable_field("buckets.outputs.png", " (create a new stack to use another bucket)"),
    validation = immutable_field("buckets.outputs.avif", " (create a new stack to use another bucket)"),
    validation = immutable_field("table.name", " (create a new stack to use another table)")
)]
pub struct ImageOptimizationStackSpec {
    /// Environment name, e.g. `dev`, `staging` or `prod`: a lowercase DNS label of
    /// 1–20 characters. It is part of every AWS resource name, so it cannot be
    /// changed after creation (create a new stack instead).
    #[schemars(
        length(min = 1, max = 20),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.environment is immutable: create a new stack for a new environment"))]
    pub environment: String,

    /// AWS region for every regional resource (e.g. `eu-west-1`). Defaults to the
    /// operator's region. Immutable: cannot be added, removed or changed after
    /// creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-[0-9]+$"))]
    pub region: Option<String>,

    /// Tags applied to every AWS resource of the stack, in addition to the
    /// operator's ownership tags (`imagestack.dev/…`, reserved).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 40))]
    #[x_kube(
        validation = Rule::new("self.all(k, size(k) >= 1 && size(k) <= 128 && !k.startsWith('aws:') && !k.startsWith('imagestack.dev/'))").message("spec.tags: keys must be 1-128 characters and must not start with 'aws:' or 'imagestack.dev/'"),
        validation = Rule::new("self.all(k, size(self[k]) <= 256)").message("spec.tags: values must be at most 256 characters")
    )]
    pub tags: BTreeMap<String, String>,

    /// What happens to the AWS resources when the stack is deleted: `Retain`
    /// (default) leaves them in place and only releases the stack; `Delete`
    /// removes everything the stack owns (buckets only when empty, or when
    /// `buckets.emptyOnDelete` is true).
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,

    /// The upload bucket and the three output buckets.
    #[serde(default)]
    pub buckets: BucketsSpec,

    /// The DynamoDB metadata table (one item per processed image).
    #[serde(default)]
    pub table: TableSpec,

    /// The processor Lambda function.
    #[serde(default)]
    pub processor: ProcessorSpec,

    /// The CloudFront distribution serving the renditions.
    #[serde(default)]
    pub cdn: CdnSpec,

    /// The CloudWatch dashboard of the stack.
    #[serde(default)]
    pub dashboard: DashboardSpec,

    /// CloudWatch alarms on the processor and the CDN.
    #[serde(default)]
    pub alarms: AlarmsSpec,

    /// Publish the stack's outputs (bucket names, table, CDN domain and URL
    /// prefix, region, dashboard URL) into a ConfigMap in the stack's
    /// namespace, so that an app's Deployment can `envFrom` it. The ConfigMap
    /// is owned by the stack (deleted with it) and kept in sync; a ConfigMap of
    /// that name that is not this stack's is never overwritten (`Stalled`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_outputs_to: Option<OutputsTarget>,
}

/// Where the stack publishes its outputs.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct OutputsTarget {
    /// Name of the ConfigMap (in the stack's namespace) holding the outputs as
    /// `IMAGESTACK_*` keys, e.g. `IMAGESTACK_CDN_URL`.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub config_map_name: String,
}

/// Transition rule for the spec that keeps the optional field at `path`
/// (relative to the spec, e.g. `buckets.upload.name`) as it was at creation:
/// present in both the old and the new spec or in neither, and equal when present.
/// `has()` is checked at every level, so missing intermediate objects count as
/// the field being absent. `hint` ends the message (e.g. what to do instead).
/// `memoryMb` must hold an image of `maxInputPixels` pixels
/// ([`imagestack_contract::memory`]); the message says how much it needs.
fn memory_rule() -> kube::core::Rule {
    use imagestack_contract::memory::{BASELINE_MB, BYTES_PER_PIXEL, required_mb};
    // A static message: the API server refuses a messageExpression that
    // concatenates strings (its estimated cost is unbounded).
    kube::core::Rule::new(format!(
        "self.memoryMb >= {BASELINE_MB} + (self.maxInputPixels * {BYTES_PER_PIXEL} + 1048575) / 1048576"
    ))
    .message(kube::core::Message::Message(format!(
        "spec.processor.memoryMb must hold an image of maxInputPixels: at least {BASELINE_MB} + maxInputPixels x {BYTES_PER_PIXEL} / 1048576 MB ({} MB for 50 MP, {} MB for 100 MP); raise memoryMb or lower maxInputPixels",
        required_mb(50_000_000),
        required_mb(100_000_000)
    )))
}

fn immutable_field(path: &str, hint: &str) -> kube::core::Rule {
    let segments: Vec<&str> = path.split('.').collect();
    let present = |root: &str| {
        let chain = (1..=segments.len())
            .map(|i| format!("has({root}.{})", segments[..i].join(".")))
            .collect::<Vec<_>>()
            .join(" && ");
        if segments.len() > 1 {
            format!("({chain})")
        } else {
            chain
        }
    };
    let (now, before) = (present("self"), present("oldSelf"));
    kube::core::Rule::new(format!(
        "{now} == {before} && (!{now} || self.{path} == oldSelf.{path})"
    ))
    .message(kube::core::Message::Message(format!(
        "spec.{path} is immutable: it cannot be added, removed or changed after creation{hint}"
    )))
    .field_path(format!(".{path}"))
}

/// What happens to AWS resources when the stack is deleted.
#[derive(
    Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default, schemars::JsonSchema,
)]
pub enum DeletionPolicy {
    /// Remove every AWS resource the stack owns.
    Delete,
    /// Leave every AWS resource in place; only the stack object goes away.
    #[default]
    Retain,
}

/// The stack's S3 buckets.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("[has(self.upload.name) ? self.upload.name : '', has(self.outputs.webp) ? self.outputs.webp : '', has(self.outputs.jpeg) ? self.outputs.jpeg : '', has(self.outputs.png) ? self.outputs.png : '', has(self.outputs.avif) ? self.outputs.avif : ''].filter(n, n != '').all(n, [has(self.upload.name) ? self.upload.name : '', has(self.outputs.webp) ? self.outputs.webp : '', has(self.outputs.jpeg) ? self.outputs.jpeg : '', has(self.outputs.png) ? self.outputs.png : '', has(self.outputs.avif) ? self.outputs.avif : ''].filter(m, m == n).size() == 1)").message("spec.buckets: upload and output bucket names must all be different"))]
pub struct BucketsSpec {
    /// The bucket clients upload originals to (the processor's trigger).
    #[serde(default)]
    pub upload: UploadBucketSpec,
    /// Optional name overrides of the private output buckets.
    #[serde(default)]
    pub outputs: OutputBucketsSpec,
    /// On delete (policy `Delete`), remove every object version and delete
    /// marker before deleting a bucket. When false (default) a non-empty bucket
    /// blocks deletion and the stack reports `Stalled`/`BucketNotEmpty`.
    #[serde(default)]
    pub empty_on_delete: bool,
}

/// The upload bucket.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct UploadBucketSpec {
    /// Bucket name override (3–63 lowercase letters, digits and hyphens; no dots,
    /// since transfer acceleration forbids them). Default: derived from the
    /// stack's namespace, name, environment and AWS account. Immutable: cannot be
    /// added, removed or changed after creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$"))]
    pub name: Option<String>,
    /// Keep every version of every upload (default true).
    #[serde(default = "default_true")]
    pub versioning: bool,
    /// Enable S3 Transfer Acceleration for uploads from far away (default true).
    #[serde(default = "default_true")]
    pub transfer_acceleration: bool,
    /// CORS rule for browser uploads.
    #[serde(default)]
    pub cors: CorsSpec,
    /// Lifecycle rules the stack owns on the upload bucket (rule ids
    /// `imagestack-*`; your own lifecycle rules on the bucket are kept).
    #[serde(default)]
    pub lifecycle: LifecycleSpec,
}

impl Default for UploadBucketSpec {
    fn default() -> Self {
        Self {
            name: None,
            versioning: true,
            transfer_acceleration: true,
            cors: CorsSpec::default(),
            lifecycle: LifecycleSpec::default(),
        }
    }
}

/// Retention of the upload bucket. The output buckets get the same
/// `abortIncompleteMultipartUploadDays`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct LifecycleSpec {
    /// Days after an upload is overwritten or deleted before S3 removes the
    /// old (noncurrent) version, 1–36500 (default 30). Rule
    /// `imagestack-expire-noncurrent-versions`.
    #[serde(default = "default_noncurrent_days")]
    #[schemars(range(min = 1, max = 36500))]
    pub noncurrent_version_expiration_days: i32,
    /// Days after a multipart upload started before S3 aborts it if it is
    /// still incomplete (and deletes its parts), 1–36500 (default 7). Applies
    /// to the upload bucket and the output buckets. Rule
    /// `imagestack-abort-incomplete-multipart-uploads`.
    #[serde(default = "default_abort_multipart_days")]
    #[schemars(range(min = 1, max = 36500))]
    pub abort_incomplete_multipart_upload_days: i32,
}

impl Default for LifecycleSpec {
    fn default() -> Self {
        Self {
            noncurrent_version_expiration_days: default_noncurrent_days(),
            abort_incomplete_multipart_upload_days: default_abort_multipart_days(),
        }
    }
}

/// CORS rule of the upload bucket.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct CorsSpec {
    /// Origins allowed to upload from a browser (default `["*"]`).
    #[serde(default = "default_star")]
    #[schemars(length(min = 1, max = 100))]
    pub allowed_origins: Vec<String>,
    /// HTTP methods allowed (default `[PUT, POST]`).
    #[serde(default = "default_cors_methods")]
    #[schemars(length(min = 1, max = 5))]
    pub allowed_methods: Vec<CorsMethod>,
    /// Request headers allowed (default `["*"]`).
    #[serde(default = "default_star")]
    #[schemars(length(max = 100))]
    pub allowed_headers: Vec<String>,
    /// Response headers exposed to the browser (default `["ETag"]`).
    #[serde(default = "default_expose_headers")]
    #[schemars(length(max = 100))]
    pub expose_headers: Vec<String>,
    /// How long browsers may cache the preflight response, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 86400))]
    pub max_age_seconds: Option<i32>,
}

impl Default for CorsSpec {
    fn default() -> Self {
        Self {
            allowed_origins: default_star(),
            allowed_methods: default_cors_methods(),
            allowed_headers: default_star(),
            expose_headers: default_expose_headers(),
            max_age_seconds: None,
        }
    }
}

/// HTTP method allowed by the CORS rule.
#[derive(
    Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, schemars::JsonSchema,
)]
#[allow(clippy::upper_case_acronyms)]
pub enum CorsMethod {
    GET,
    PUT,
    POST,
    DELETE,
    HEAD,
}

impl CorsMethod {
    /// The method as S3 spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            CorsMethod::GET => "GET",
            CorsMethod::PUT => "PUT",
            CorsMethod::POST => "POST",
            CorsMethod::DELETE => "DELETE",
            CorsMethod::HEAD => "HEAD",
        }
    }
}

/// Name overrides of the output buckets (each private, read by the CDN only).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct OutputBucketsSpec {
    /// Name of the WebP bucket. Default: derived like the upload bucket's.
    /// Immutable: cannot be added, removed or changed after creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$"))]
    pub webp: Option<String>,
    /// Name of the JPEG bucket. Default: derived like the upload bucket's.
    /// Immutable: cannot be added, removed or changed after creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$"))]
    pub jpeg: Option<String>,
    /// Name of the PNG bucket. Default: derived like the upload bucket's.
    /// Immutable: cannot be added, removed or changed after creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$"))]
    pub png: Option<String>,
    /// Name of the AVIF bucket (created with the others whether or not `avif`
    /// is among `processor.formats`, so enabling it later adds no bucket).
    /// Default: derived like the upload bucket's. Immutable: cannot be added,
    /// removed or changed after creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$"))]
    pub avif: Option<String>,
}

/// The DynamoDB metadata table.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct TableSpec {
    /// Table name override (3–255 of `a-z A-Z 0-9 _ - .`). Default: derived from
    /// the stack's namespace, name and environment. Immutable: cannot be added,
    /// removed or changed after creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-zA-Z0-9_.-]{3,255}$"))]
    pub name: Option<String>,
    /// Enable point-in-time recovery (continuous backups) on the table (default false).
    #[serde(default)]
    pub point_in_time_recovery: bool,
}

/// The processor Lambda function.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = memory_rule())]
pub struct ProcessorSpec {
    /// Memory of the function in MB, 128–10240 (default 2048). Lambda gives CPU
    /// in proportion: 1769 MB is one full vCPU. Must hold the largest image
    /// accepted: at least 128 + maxInputPixels × 40 / 2^20 (2036 MB for the
    /// default 50 MP; checked at admission).
    #[serde(default = "default_memory_mb")]
    #[schemars(range(min = 128, max = 10240))]
    pub memory_mb: i32,
    /// Function timeout in seconds, 1–900 (default 300).
    #[serde(default = "default_timeout_seconds")]
    #[schemars(range(min = 1, max = 900))]
    pub timeout_seconds: i32,
    /// CPU architecture of the function: `x86_64` (default) or `arm64`.
    #[serde(default)]
    pub architecture: Architecture,
    /// Renditions to produce: a non-empty subset of `webp`, `jpeg`, `png`,
    /// `avif` (default `webp`, `jpeg`, `png`; AVIF is opt-in: an AV1 encode
    /// costs about as much CPU as the other three together).
    #[serde(default = "default_formats")]
    #[schemars(length(min = 1, max = 4), extend("x-kubernetes-list-type" = "set"))]
    pub formats: Vec<OutputFormat>,
    /// Encoder quality settings.
    #[serde(default)]
    pub quality: QualitySpec,
    /// libwebp compression effort 0–6 (default 4; higher is smaller and slower).
    /// The processor steps down for images with complex alpha to stay in its time budget.
    #[serde(default = "default_webp_method")]
    #[schemars(range(min = 0, max = 6))]
    pub webp_method: i32,
    /// Largest accepted upload in bytes (default 52428800 = 50 MiB); larger
    /// uploads get a failed metadata record with reason `TooLarge`.
    #[serde(default = "default_max_input_bytes")]
    #[schemars(range(min = 1, max = 5368709120_i64))]
    pub max_input_bytes: i64,
    /// Largest accepted image in pixels, width × height (default 50000000);
    /// checked from the header before decoding (reason `TooManyPixels`).
    /// `memoryMb` must hold it (about 40 bytes per pixel, see `memoryMb`).
    #[serde(default = "default_max_input_pixels")]
    #[schemars(range(min = 1, max = 1000000000_i64))]
    pub max_input_pixels: i64,
    /// Pixel widths of the responsive variants written beside each full-size
    /// rendition (default 320, 640, 1280, 1920): 1–16 distinct widths, each
    /// 16–8192. A variant is made only when narrower than the image (never
    /// upscaled); keys `<format>/<stem>-<id>-w<width>.<ext>`.
    #[serde(default = "default_widths")]
    #[schemars(length(min = 1, max = 16), inner(range(min = 16, max = 8192)))]
    #[x_kube(validation = Rule::new("self.all(w, self.exists_one(v, v == w))").message("spec.processor.widths: every width must appear once"))]
    pub widths: Vec<i32>,
    /// Concurrent executions reserved for the function (≥ 0): at most this
    /// many run at once, and no other function of the account can take them.
    /// Keeps a burst of uploads in one stack from starving the account's
    /// other functions (another environment's processor). `0` stops all
    /// processing. Unset (default): no reservation, the function shares the
    /// account's unreserved pool. AWS refuses a reservation that would leave
    /// the account fewer than 100 unreserved executions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000000))]
    pub reserved_concurrency: Option<i32>,
    /// Where the function code comes from. Default: the processor artifact
    /// shipped with the operator for the chosen architecture.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<CodeSpec>,
}

impl Default for ProcessorSpec {
    fn default() -> Self {
        Self {
            memory_mb: default_memory_mb(),
            timeout_seconds: default_timeout_seconds(),
            architecture: Architecture::default(),
            formats: default_formats(),
            quality: QualitySpec::default(),
            webp_method: default_webp_method(),
            max_input_bytes: default_max_input_bytes(),
            max_input_pixels: default_max_input_pixels(),
            widths: default_widths(),
            reserved_concurrency: None,
            code: None,
        }
    }
}

/// CPU architecture of the processor function.
#[derive(
    Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default, schemars::JsonSchema,
)]
#[allow(non_camel_case_types)]
pub enum Architecture {
    /// 64-bit x86.
    #[default]
    x86_64,
    /// 64-bit ARM (Graviton).
    arm64,
}

impl Architecture {
    /// The architecture as Lambda spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Architecture::x86_64 => "x86_64",
            Architecture::arm64 => "arm64",
        }
    }
}

/// An output format of the processor.
#[derive(
    Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    Webp,
    Jpeg,
    Png,
    Avif,
}

impl From<OutputFormat> for imagestack_contract::Format {
    fn from(f: OutputFormat) -> Self {
        match f {
            OutputFormat::Webp => imagestack_contract::Format::Webp,
            OutputFormat::Jpeg => imagestack_contract::Format::Jpeg,
            OutputFormat::Png => imagestack_contract::Format::Png,
            OutputFormat::Avif => imagestack_contract::Format::Avif,
        }
    }
}

/// Encoder quality settings (1–100; WebP and JPEG default to 85 as in the
/// reference, AVIF to the quality that matches WebP's perceptually).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct QualitySpec {
    /// WebP quality 1–100 (default 85).
    #[serde(default = "default_quality")]
    #[schemars(range(min = 1, max = 100))]
    pub webp: i32,
    /// JPEG quality 1–100 (default 85).
    #[serde(default = "default_quality")]
    #[schemars(range(min = 1, max = 100))]
    pub jpeg: i32,
    /// AVIF quality 1–100 (default 62: about WebP 85's perceptual quality at
    /// fewer bytes; AVIF's scale is not WebP's).
    #[serde(default = "default_avif_quality")]
    #[schemars(range(min = 1, max = 100))]
    pub avif: i32,
}

impl Default for QualitySpec {
    fn default() -> Self {
        Self {
            webp: default_quality(),
            jpeg: default_quality(),
            avif: default_avif_quality(),
        }
    }
}

/// Function code source.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct CodeSpec {
    /// A `bootstrap.zip` (provided.al2023) in S3, in the stack's region.
    pub s3: S3CodeSpec,
}

/// A function zip in S3.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct S3CodeSpec {
    /// Bucket holding the zip.
    #[schemars(length(min = 3, max = 63))]
    pub bucket: String,
    /// Key of the zip.
    #[schemars(length(min = 1, max = 1024))]
    pub key: String,
    /// SHA-256 of the zip, base64 (as Lambda reports `CodeSha256`) or hex; used
    /// to detect code drift. Optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([A-Fa-f0-9]{64}|[A-Za-z0-9+/]{43}=)$"))]
    pub sha256: Option<String>,
}

/// The CloudFront distribution. With the default TTLs every behaviour uses
/// AWS's managed `CachingOptimized` cache policy (the renditions' own
/// `Cache-Control` decides); other TTLs are set on the behaviours.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.minTtlSeconds <= self.defaultTtlSeconds && self.defaultTtlSeconds <= self.maxTtlSeconds").message("spec.cdn: minTtlSeconds <= defaultTtlSeconds <= maxTtlSeconds must hold"),
    validation = Rule::new("!has(self.aliases) || size(self.aliases) == 0 || has(self.certificateArn)").message("spec.cdn.aliases require spec.cdn.certificateArn: CloudFront serves a custom domain only with a certificate covering it")
)]
pub struct CdnSpec {
    /// Create the distribution (default true).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// CloudFront price class (default `PriceClass_100`).
    #[serde(default)]
    pub price_class: PriceClass,
    /// Minimum time objects stay cached, seconds (default 0).
    #[serde(default)]
    #[schemars(range(min = 0, max = 31536000))]
    pub min_ttl_seconds: i64,
    /// Default cache time when the origin sends no Cache-Control, seconds (default 2592000 = 30 days).
    #[serde(default = "default_ttl")]
    #[schemars(range(min = 0, max = 31536000))]
    pub default_ttl_seconds: i64,
    /// Maximum cache time, seconds (default 2592000 = 30 days).
    #[serde(default = "default_ttl")]
    #[schemars(range(min = 0, max = 31536000))]
    pub max_ttl_seconds: i64,
    /// Custom domains (CNAMEs) the distribution answers for, e.g.
    /// `images.example.com` (lowercase host names; a leading `*.` wildcard is
    /// allowed). Requires `certificateArn`. Point each name's DNS at
    /// `status.outputs.cnameTarget` (a CNAME, or a Route 53 alias record).
    /// Default: none (the `*.cloudfront.net` domain only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100), inner(length(min = 1, max = 253)), extend("x-kubernetes-list-type" = "set"))]
    #[x_kube(validation = Rule::new("self.all(a, a.matches('^([*][.])?([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?[.])+[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$'))").message("spec.cdn.aliases: every alias must be a lowercase host name such as images.example.com (a leading '*.' is allowed)"))]
    pub aliases: Vec<String>,
    /// ARN of the ACM certificate covering every alias. CloudFront requires
    /// the certificate in us-east-1, whatever the stack's region. Served with
    /// SNI and minimum protocol `TLSv1.2_2021`. Default: CloudFront's own
    /// certificate for `*.cloudfront.net`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    #[x_kube(validation = Rule::new("self.matches('^arn:aws[a-z-]*:acm:us-east-1:[0-9]{12}:certificate/[A-Za-z0-9-]+$')").message("spec.cdn.certificateArn must be an ACM certificate in us-east-1 (arn:aws:acm:us-east-1:<account>:certificate/<id>): CloudFront uses certificates from us-east-1 only"))]
    pub certificate_arn: Option<String>,
}

impl Default for CdnSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            price_class: PriceClass::default(),
            min_ttl_seconds: 0,
            default_ttl_seconds: default_ttl(),
            max_ttl_seconds: default_ttl(),
            aliases: Vec::new(),
            certificate_arn: None,
        }
    }
}

/// CloudFront price class.
#[derive(
    Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default, schemars::JsonSchema,
)]
#[allow(non_camel_case_types)]
pub enum PriceClass {
    /// North America and Europe edge locations.
    #[default]
    PriceClass_100,
    /// Adds Asia, the Middle East and Africa.
    PriceClass_200,
    /// Every edge location.
    PriceClass_All,
}

/// The CloudWatch dashboard.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct DashboardSpec {
    /// Create the dashboard (default true).
    #[serde(default = "default_true")]
    pub enabled: bool,
}

impl Default for DashboardSpec {
    fn default() -> Self {
        Self { enabled: true }
    }
}

/// The stack's CloudWatch alarms: the processor function's errors (> 0 in 5
/// minutes) and throttles (> 0), the processor's ProcessingErrors rate (> 5 %
/// of the images in 5 minutes), failed events waiting in the failed-event
/// queue (> 0) and the distribution's 5xx error rate (> 1 %, in us-east-1
/// where CloudFront's metrics are).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlarmsSpec {
    /// Create the alarms (default true).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// SNS topic ARNs notified when an alarm fires and when it recovers
    /// (default none: the alarms only change state). Each alarm notifies the
    /// topics of its own region: the CDN alarm lives in us-east-1, so list a
    /// topic there too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 5), inner(length(max = 1024)), extend("x-kubernetes-list-type" = "set"))]
    #[x_kube(validation = Rule::new("self.all(a, a.matches('^arn:aws[a-z-]*:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_-]{1,256}$'))").message("spec.alarms.actions: every action must be an SNS topic ARN (arn:aws:sns:<region>:<account>:<topic>)"))]
    pub actions: Vec<String>,
}

impl Default for AlarmsSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            actions: Vec::new(),
        }
    }
}

/// Observed state of the stack, written by the operator.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageOptimizationStackStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Reconciling` and `Stalled` (kstatus conventions).
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Names and identifiers of the stack's AWS resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs: Option<StackOutputs>,
    /// Every component with its state, in reconcile order.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub components: Vec<ComponentStatus>,
}

/// Names and identifiers of the stack's AWS resources.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct StackOutputs {
    /// AWS region of the stack.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Upload bucket name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_bucket: Option<String>,
    /// WebP output bucket name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webp_bucket: Option<String>,
    /// JPEG output bucket name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jpeg_bucket: Option<String>,
    /// PNG output bucket name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub png_bucket: Option<String>,
    /// AVIF output bucket name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avif_bucket: Option<String>,
    /// Metadata table name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table_name: Option<String>,
    /// ARN of the processor's IAM role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    /// Processor function name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function_name: Option<String>,
    /// Processor function ARN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function_arn: Option<String>,
    /// CloudFront distribution id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distribution_id: Option<String>,
    /// CloudFront domain serving `/webp/*`, `/jpeg/*`, `/png/*` and `/avif/*`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cdn_domain: Option<String>,
    /// The custom domains (`spec.cdn.aliases`) the distribution answers for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cdn_aliases: Vec<String>,
    /// Where to point the DNS of every alias: a CNAME record to this name
    /// (or a Route 53 alias record to the distribution). Set when
    /// `spec.cdn.aliases` is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cname_target: Option<String>,
    /// Prefix of the one-URL-per-image addresses (`<prefix><width>/<stem>-<id>`,
    /// see the metadata items' `url` and `srcset`): `https://<first alias or
    /// CDN domain>/i/`. The CDN picks each viewer's format and width there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_url_prefix: Option<String>,
    /// The failed-event queue (SQS): events whose processing kept failing;
    /// `operator redrive` sends them back to the function.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_event_queue: Option<String>,
    /// CloudWatch dashboard name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dashboard_name: Option<String>,
    /// CloudWatch console URL of the dashboard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dashboard_url: Option<String>,
    /// The ConfigMap the outputs are published to (`spec.writeOutputsTo`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<String>,
}

/// State of one AWS component of the stack.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComponentStatus {
    /// The component: `upload-bucket`, `webp-bucket`, `jpeg-bucket`,
    /// `png-bucket`, `avif-bucket` (S3 buckets); `metadata-table` (DynamoDB);
    /// `processor-role`, `processor-function` (IAM, Lambda);
    /// `s3-invoke-permission` (lets S3 invoke the function);
    /// `upload-notifications` (the stack's event rules on the upload bucket);
    /// `origin-access-control`, `distribution` (CloudFront); `webp-cdn-grant`,
    /// `jpeg-cdn-grant`, `png-cdn-grant`, `avif-cdn-grant` (the statement in each
    /// output bucket's policy that lets the distribution read it); `dashboard`
    /// (CloudWatch); `function-errors-alarm`, `function-throttles-alarm`,
    /// `processing-errors-alarm`, `cdn-errors-alarm`, `failed-events-alarm`
    /// (CloudWatch alarms); `failed-event-queue` (SQS, the function's
    /// on-failure destination); `edge-function` (the CloudFront Function
    /// behind `/i/*` that picks each viewer's format and width).
    pub name: ComponentName,
    /// AWS identifier: ARN or name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Where the component stands after the last pass. `Ready`: exists, is
    /// this stack's and matches the spec. `Creating`: created in this pass,
    /// AWS is still bringing it up. `Progressing`: AWS is applying a change
    /// (table or function updating, distribution deploying). `Pending`: not
    /// written because a component it depends on is not ready (the message
    /// names it). `Paused`: differs from the spec but the stack is paused.
    /// `Conflict`: a resource with this name exists and is not this stack's.
    /// `Error`: the last AWS call failed (the message says which and why).
    /// `Disabled`: switched off in the spec and removed. `Deleting`,
    /// `Deleted`: while the stack (or a switched-off component) is deleted.
    pub state: ComponentState,
    /// Details: the last change, what it waits for, or the error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A component of a stack: one AWS resource, or one part of a resource that the
/// stack shares (the upload bucket's notification rules, an output bucket's
/// CloudFront read grant). `upload-bucket`, `webp-bucket`, `jpeg-bucket`,
/// `png-bucket`, `avif-bucket`: the S3 buckets; `metadata-table`: the DynamoDB table;
/// `processor-role` and `processor-function`: the Lambda and its IAM role;
/// `s3-invoke-permission`: the statement that lets S3 invoke the function;
/// `upload-notifications`: the upload bucket's event rules;
/// `origin-access-control`, `distribution`: CloudFront; `cache-policy`: the
/// stack's own CloudFront cache policy (only with non-default TTLs); `webp-cdn-grant`,
/// `jpeg-cdn-grant`, `png-cdn-grant`, `avif-cdn-grant`: the statement in each output bucket's
/// policy that lets the distribution read it; `dashboard`: CloudWatch;
/// `function-errors-alarm`, `function-throttles-alarm`,
/// `processing-errors-alarm`, `cdn-errors-alarm`, `failed-events-alarm`:
/// CloudWatch alarms; `failed-event-queue`: the function's on-failure
/// destination (SQS).
#[derive(
    Serialize,
    Deserialize,
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum ComponentName {
    UploadBucket,
    WebpBucket,
    JpegBucket,
    PngBucket,
    AvifBucket,
    MetadataTable,
    ProcessorRole,
    ProcessorFunction,
    S3InvokePermission,
    UploadNotifications,
    OriginAccessControl,
    CachePolicy,
    Distribution,
    WebpCdnGrant,
    JpegCdnGrant,
    PngCdnGrant,
    AvifCdnGrant,
    Dashboard,
    FunctionErrorsAlarm,
    FunctionThrottlesAlarm,
    ProcessingErrorsAlarm,
    CdnErrorsAlarm,
    FailedEventQueue,
    FailedEventsAlarm,
    EdgeFunction,
}

impl ComponentName {
    /// The name as status shows it (`upload-bucket`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            ComponentName::UploadBucket => "upload-bucket",
            ComponentName::WebpBucket => "webp-bucket",
            ComponentName::JpegBucket => "jpeg-bucket",
            ComponentName::PngBucket => "png-bucket",
            ComponentName::AvifBucket => "avif-bucket",
            ComponentName::MetadataTable => "metadata-table",
            ComponentName::ProcessorRole => "processor-role",
            ComponentName::ProcessorFunction => "processor-function",
            ComponentName::S3InvokePermission => "s3-invoke-permission",
            ComponentName::UploadNotifications => "upload-notifications",
            ComponentName::OriginAccessControl => "origin-access-control",
            ComponentName::CachePolicy => "cache-policy",
            ComponentName::Distribution => "distribution",
            ComponentName::WebpCdnGrant => "webp-cdn-grant",
            ComponentName::JpegCdnGrant => "jpeg-cdn-grant",
            ComponentName::PngCdnGrant => "png-cdn-grant",
            ComponentName::AvifCdnGrant => "avif-cdn-grant",
            ComponentName::Dashboard => "dashboard",
            ComponentName::FunctionErrorsAlarm => "function-errors-alarm",
            ComponentName::FunctionThrottlesAlarm => "function-throttles-alarm",
            ComponentName::ProcessingErrorsAlarm => "processing-errors-alarm",
            ComponentName::CdnErrorsAlarm => "cdn-errors-alarm",
            ComponentName::FailedEventQueue => "failed-event-queue",
            ComponentName::FailedEventsAlarm => "failed-events-alarm",
            ComponentName::EdgeFunction => "edge-function",
        }
    }

    /// The output bucket of a format.
    pub fn bucket_of(f: imagestack_contract::Format) -> Self {
        match f {
            imagestack_contract::Format::Webp => ComponentName::WebpBucket,
            imagestack_contract::Format::Jpeg => ComponentName::JpegBucket,
            imagestack_contract::Format::Png => ComponentName::PngBucket,
            imagestack_contract::Format::Avif => ComponentName::AvifBucket,
        }
    }

    /// The CloudFront read grant in the output bucket of a format.
    pub fn grant_of(f: imagestack_contract::Format) -> Self {
        match f {
            imagestack_contract::Format::Webp => ComponentName::WebpCdnGrant,
            imagestack_contract::Format::Jpeg => ComponentName::JpegCdnGrant,
            imagestack_contract::Format::Png => ComponentName::PngCdnGrant,
            imagestack_contract::Format::Avif => ComponentName::AvifCdnGrant,
        }
    }
}

impl std::fmt::Display for ComponentName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a component stands. `Ready`: exists, is ours and matches the spec.
/// `Creating`: created in this pass, AWS is still bringing it up. `Progressing`:
/// AWS is applying a change (table or function updating, distribution
/// deploying). `Pending`: not written because a component it depends on is not
/// ready (the message names it). `Paused`: differs from the spec but the stack
/// is paused. `Conflict`: a resource with this name exists and is not this
/// stack's. `Error`: the last AWS call failed (the message says which and why).
/// `Disabled`: switched off in the spec and removed. `Deleting` / `Deleted`:
/// during deletion of the stack (or of a switched-off component).
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, schemars::JsonSchema)]
pub enum ComponentState {
    Ready,
    Creating,
    Progressing,
    Pending,
    Paused,
    Conflict,
    Error,
    Disabled,
    Deleting,
    Deleted,
}

fn default_true() -> bool {
    true
}
fn default_star() -> Vec<String> {
    vec!["*".to_string()]
}
fn default_cors_methods() -> Vec<CorsMethod> {
    vec![CorsMethod::PUT, CorsMethod::POST]
}
fn default_expose_headers() -> Vec<String> {
    vec!["ETag".to_string()]
}
fn default_memory_mb() -> i32 {
    imagestack_contract::defaults::MEMORY_MB as i32
}
fn default_timeout_seconds() -> i32 {
    300
}
fn default_formats() -> Vec<OutputFormat> {
    vec![OutputFormat::Webp, OutputFormat::Jpeg, OutputFormat::Png]
}
fn default_quality() -> i32 {
    i32::from(imagestack_contract::defaults::WEBP_QUALITY)
}
fn default_avif_quality() -> i32 {
    i32::from(imagestack_contract::defaults::AVIF_QUALITY)
}
fn default_webp_method() -> i32 {
    i32::from(imagestack_contract::defaults::WEBP_METHOD)
}
fn default_max_input_bytes() -> i64 {
    imagestack_contract::defaults::MAX_INPUT_BYTES as i64
}
fn default_max_input_pixels() -> i64 {
    imagestack_contract::defaults::MAX_INPUT_PIXELS as i64
}
fn default_widths() -> Vec<i32> {
    imagestack_contract::widths::DEFAULT
        .iter()
        .map(|w| *w as i32)
        .collect()
}
fn default_noncurrent_days() -> i32 {
    30
}
fn default_abort_multipart_days() -> i32 {
    7
}
fn default_ttl() -> i64 {
    30 * 24 * 3600
}

impl ImageOptimizationStack {
    /// True when the pause annotation is set to `"true"`.
    pub fn is_paused(&self) -> bool {
        self.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(PAUSED_ANNOTATION))
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }
}

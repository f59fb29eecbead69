//! S3 buckets: the upload bucket and the three private output buckets.
//!
//! Every bucket gets: the ownership tags, Block Public Access (all four),
//! SSE-S3 default encryption with a bucket key, object ownership
//! `BucketOwnerEnforced` (ACLs off) and a bucket policy that denies non-TLS
//! requests. The upload bucket adds versioning, transfer acceleration and CORS.
//! Every bucket gets the stack's lifecycle rules: incomplete multipart
//! uploads are aborted, and on the upload bucket noncurrent versions expire.
//!
//! The bucket policy is shared configuration: this component owns only the
//! TLS-only statement (`Sid` [`policy::TLS_ONLY_SID`]); the CloudFront read
//! grant is the CDN grant component's ([`super::cdn_grant`]), and any other
//! statement a user adds (with another `Sid`) is kept on every write. The
//! lifecycle configuration is shared the same way: the stack owns the rules
//! with ids `imagestack-*` ([`crate::lifecycle`]), every other rule is kept.
//!
//! A `HeadBucket` 403 is `AccessDenied` (the operator lacks `s3:ListBucket`,
//! or the bucket belongs to another account): never "not ours", never "gone".

use std::collections::BTreeMap;

use aws_sdk_s3::types::{
    AccelerateConfiguration, BucketAccelerateStatus, BucketLocationConstraint,
    BucketVersioningStatus, CorsConfiguration, CorsRule, CreateBucketConfiguration, Delete,
    ObjectIdentifier, ObjectOwnership, OwnershipControls, OwnershipControlsRule,
    PublicAccessBlockConfiguration, ServerSideEncryption, ServerSideEncryptionByDefault,
    ServerSideEncryptionConfiguration, ServerSideEncryptionRule, Tag, Tagging,
    TransitionDefaultMinimumObjectSize, VersioningConfiguration,
};
use serde_json::Value;

use super::{
    Change, Component, ComponentName, Created, Ctx, Deletion, Output, Updated, code_of, is_ours,
    optional, owner_from_tags, status_of, tag_change,
};
use crate::error::{Error, ErrorClass, Result};
use crate::lifecycle::{self, StackRule};
use crate::naming::Ownership;
use crate::policy;

/// The kind of resource, as errors and events name it.
const KIND: &str = "S3 bucket";

/// One CORS rule in comparable form (lists sorted).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Cors {
    pub allowed_origins: Vec<String>,
    pub allowed_methods: Vec<String>,
    pub allowed_headers: Vec<String>,
    pub expose_headers: Vec<String>,
    pub max_age_seconds: Option<i32>,
}

impl Cors {
    /// Sort every list so that order does not count as drift.
    pub fn normalized(mut self) -> Self {
        for v in [
            &mut self.allowed_origins,
            &mut self.allowed_methods,
            &mut self.allowed_headers,
            &mut self.expose_headers,
        ] {
            v.sort();
            v.dedup();
        }
        self
    }
}

/// What a bucket should look like.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredBucket {
    /// Component name on status (`upload-bucket`, `webp-bucket`, …).
    pub component: ComponentName,
    pub name: String,
    pub region: String,
    pub partition: String,
    pub tags: BTreeMap<String, String>,
    /// `None`: not managed (left as it is).
    pub versioning: Option<bool>,
    /// `None`: not managed.
    pub acceleration: Option<bool>,
    /// `None`: not managed; `Some(rules)`: exactly these rules.
    pub cors: Option<Vec<Cors>>,
    /// The statement of the bucket policy this component owns (TLS only).
    pub tls_statement: Value,
    /// The lifecycle rules this component owns (ids `imagestack-*`); any
    /// other rule of the bucket is kept.
    pub lifecycle: Vec<StackRule>,
    /// On deletion, remove every object version first; when false a
    /// non-empty bucket blocks the stack's deletion (preflight).
    pub empty_on_delete: bool,
}

impl DesiredBucket {
    pub fn arn(&self) -> String {
        format!("arn:{}:s3:::{}", self.partition, self.name)
    }
}

/// Block Public Access flags: block ACLs, ignore ACLs, block policy, restrict buckets.
pub type PublicAccessBlock = [bool; 4];
const ALL_BLOCKED: PublicAccessBlock = [true; 4];
const ENCRYPTION: (&str, bool) = ("AES256", true);
const OWNERSHIP: &str = "BucketOwnerEnforced";

/// What a bucket looks like on AWS.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ObservedBucket {
    pub tags: BTreeMap<String, String>,
    /// `Enabled`, `Suspended`, or `None` when never enabled.
    pub versioning: Option<String>,
    /// `Enabled`, `Suspended`, or `None` when never set.
    pub acceleration: Option<String>,
    pub cors: Vec<Cors>,
    pub public_access_block: Option<PublicAccessBlock>,
    /// Default encryption algorithm and bucket-key flag.
    pub encryption: Option<(String, bool)>,
    pub ownership: Option<String>,
    pub policy: Option<Value>,
    /// Every lifecycle rule of the bucket (ours and others).
    pub lifecycle: Vec<aws_sdk_s3::types::LifecycleRule>,
    /// The lifecycle configuration's default minimum object size for
    /// transitions, written back as read (it belongs to every rule).
    pub lifecycle_min_size: Option<TransitionDefaultMinimumObjectSize>,
}

/// A field of a bucket that can differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Tags,
    PublicAccessBlock,
    Encryption,
    Ownership,
    Versioning,
    Acceleration,
    Cors,
    Policy,
    Lifecycle,
}

fn on_off(v: Option<&str>) -> String {
    v.unwrap_or("unset").to_string()
}

/// Every field where `observed` differs from `desired`, in the order they are repaired.
pub fn diff(desired: &DesiredBucket, observed: &ObservedBucket) -> Vec<(Field, Change)> {
    let mut out = Vec::new();
    if let Some(c) = tag_change(&desired.tags, &observed.tags) {
        out.push((Field::Tags, c));
    }
    if observed.public_access_block != Some(ALL_BLOCKED) {
        let from = match observed.public_access_block {
            None => "unset".to_string(),
            Some(p) => format!("{p:?}"),
        };
        out.push((
            Field::PublicAccessBlock,
            Change::new("publicAccessBlock", from, "all blocked"),
        ));
    }
    let want_enc = (ENCRYPTION.0.to_string(), ENCRYPTION.1);
    if observed.encryption.as_ref() != Some(&want_enc) {
        let from = match &observed.encryption {
            None => "unset".to_string(),
            Some((a, k)) => format!("{a} bucketKey={k}"),
        };
        out.push((
            Field::Encryption,
            Change::new("encryption", from, "AES256 bucketKey=true"),
        ));
    }
    if observed.ownership.as_deref() != Some(OWNERSHIP) {
        out.push((
            Field::Ownership,
            Change::new(
                "objectOwnership",
                on_off(observed.ownership.as_deref()),
                OWNERSHIP,
            ),
        ));
    }
    if let Some(want) = desired.versioning {
        let is_on = observed.versioning.as_deref() == Some("Enabled");
        if want != is_on {
            out.push((
                Field::Versioning,
                Change::new(
                    "versioning",
                    on_off(observed.versioning.as_deref()),
                    if want { "Enabled" } else { "Suspended" },
                ),
            ));
        }
    }
    if let Some(want) = desired.acceleration {
        let is_on = observed.acceleration.as_deref() == Some("Enabled");
        if want != is_on {
            out.push((
                Field::Acceleration,
                Change::new(
                    "transferAcceleration",
                    on_off(observed.acceleration.as_deref()),
                    if want { "Enabled" } else { "Suspended" },
                ),
            ));
        }
    }
    if let Some(want) = &desired.cors {
        let mut have: Vec<Cors> = observed
            .cors
            .iter()
            .cloned()
            .map(Cors::normalized)
            .collect();
        let mut want: Vec<Cors> = want.iter().cloned().map(Cors::normalized).collect();
        have.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
        want.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
        if have != want {
            let from = if have.is_empty() {
                "unset".to_string()
            } else {
                format!("{} rule(s) differing", have.len())
            };
            out.push((
                Field::Cors,
                Change::new("cors", from, format!("{} rule(s) from spec", want.len())),
            ));
        }
    }
    let have = observed
        .policy
        .as_ref()
        .and_then(|p| policy::statement(p, policy::TLS_ONLY_SID));
    if !have
        .as_ref()
        .is_some_and(|h| policy::same_statement(h, &desired.tls_statement))
    {
        let from = if have.is_some() { "differs" } else { "missing" };
        out.push((
            Field::Policy,
            Change::new(
                format!("bucketPolicy[{}]", policy::TLS_ONLY_SID),
                from,
                "deny non-TLS requests",
            ),
        ));
    }
    if let Some(from) = lifecycle::drift(&desired.lifecycle, &observed.lifecycle) {
        out.push((
            Field::Lifecycle,
            Change::new(
                format!("lifecycle[{}*]", lifecycle::RULE_PREFIX),
                from,
                lifecycle::describe(&desired.lifecycle),
            ),
        ));
    }
    out
}

/// The bucket policy after this component's write: what was observed with
/// the TLS-only statement in place (every other statement kept).
pub fn merged_policy(desired: &DesiredBucket, observed: Option<&Value>) -> Value {
    policy::with_statement(observed, desired.tls_statement.clone())
}

/// Read everything about the bucket; `None` when it does not exist.
pub async fn observe(ctx: &Ctx<'_>, name: &str) -> Result<Option<ObservedBucket>> {
    let s3 = &ctx.aws.s3;
    match s3.head_bucket().bucket(name).send().await {
        Ok(_) => {}
        Err(e) => {
            return match status_of(&e) {
                Some(404) => Ok(None),
                Some(403) => Err(Error::Aws {
                    action: "s3:ListBucket".into(),
                    code: "AccessDenied".into(),
                    message: format!(
                        "HeadBucket {name} was denied: the operator lacks s3:ListBucket on it, or the bucket belongs to another AWS account"
                    ),
                    class: ErrorClass::Stalled,
                }),
                Some(301) => Err(Error::NameConflict {
                    kind: "S3 bucket",
                    name: name.to_string(),
                    owner: "exists in another region".into(),
                }),
                _ => Err(Error::aws("s3:HeadBucket", e)),
            };
        }
    }
    let tags = optional(
        "s3:GetBucketTagging",
        s3.get_bucket_tagging().bucket(name).send().await,
        &["NoSuchTagSet"],
    )?
    .map(|o| {
        o.tag_set()
            .iter()
            .map(|t| (t.key().to_string(), t.value().to_string()))
            .collect()
    })
    .unwrap_or_default();
    let mut observed = ObservedBucket {
        tags,
        ..Default::default()
    };
    // Ownership first: nothing else is read (or later written) on a bucket that is not ours.
    if !is_ours(ctx, &observed.tags) {
        return Ok(Some(observed));
    }
    let v = s3
        .get_bucket_versioning()
        .bucket(name)
        .send()
        .await
        .map_err(|e| Error::aws("s3:GetBucketVersioning", e))?;
    observed.versioning = v.status().map(|s| s.as_str().to_string());
    let a = s3
        .get_bucket_accelerate_configuration()
        .bucket(name)
        .send()
        .await
        .map_err(|e| Error::aws("s3:GetBucketAccelerateConfiguration", e))?;
    observed.acceleration = a.status().map(|s| s.as_str().to_string());
    observed.cors = optional(
        "s3:GetBucketCors",
        s3.get_bucket_cors().bucket(name).send().await,
        &["NoSuchCORSConfiguration"],
    )?
    .map(|o| {
        o.cors_rules()
            .iter()
            .map(|r| Cors {
                allowed_origins: r.allowed_origins().to_vec(),
                allowed_methods: r.allowed_methods().to_vec(),
                allowed_headers: r.allowed_headers().to_vec(),
                expose_headers: r.expose_headers().to_vec(),
                max_age_seconds: r.max_age_seconds(),
            })
            .collect()
    })
    .unwrap_or_default();
    observed.public_access_block = optional(
        "s3:GetPublicAccessBlock",
        s3.get_public_access_block().bucket(name).send().await,
        &["NoSuchPublicAccessBlockConfiguration"],
    )?
    .and_then(|o| {
        o.public_access_block_configuration().map(|c| {
            [
                c.block_public_acls().unwrap_or(false),
                c.ignore_public_acls().unwrap_or(false),
                c.block_public_policy().unwrap_or(false),
                c.restrict_public_buckets().unwrap_or(false),
            ]
        })
    });
    observed.encryption = optional(
        "s3:GetBucketEncryption",
        s3.get_bucket_encryption().bucket(name).send().await,
        &["ServerSideEncryptionConfigurationNotFoundError"],
    )?
    .and_then(|o| {
        let rule = o
            .server_side_encryption_configuration()?
            .rules()
            .first()?
            .clone();
        let algo = rule
            .apply_server_side_encryption_by_default()
            .map(|d| d.sse_algorithm().as_str().to_string())?;
        Some((algo, rule.bucket_key_enabled().unwrap_or(false)))
    });
    observed.ownership = optional(
        "s3:GetBucketOwnershipControls",
        s3.get_bucket_ownership_controls().bucket(name).send().await,
        &["OwnershipControlsNotFoundError"],
    )?
    .and_then(|o| {
        o.ownership_controls()
            .and_then(|c| c.rules().first())
            .map(|r| r.object_ownership().as_str().to_string())
    });
    observed.policy = optional(
        "s3:GetBucketPolicy",
        s3.get_bucket_policy().bucket(name).send().await,
        &["NoSuchBucketPolicy"],
    )?
    .and_then(|o| o.policy().and_then(|p| policy::parse(p).ok()));
    if let Some(lc) = optional(
        "s3:GetLifecycleConfiguration",
        s3.get_bucket_lifecycle_configuration()
            .bucket(name)
            .send()
            .await,
        &["NoSuchLifecycleConfiguration"],
    )? {
        observed.lifecycle = lc.rules().to_vec();
        observed.lifecycle_min_size = lc.transition_default_minimum_object_size().cloned();
    }
    Ok(Some(observed))
}

fn s3_tags(tags: &BTreeMap<String, String>) -> Result<Vec<Tag>> {
    tags.iter()
        .map(|(k, v)| {
            Tag::builder()
                .key(k)
                .value(v)
                .build()
                .map_err(|e| Error::InvalidSpec(format!("tag {k}: {e}")))
        })
        .collect()
}

fn build_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::InvalidSpec(format!("{what}: {e}"))
}

async fn create(ctx: &Ctx<'_>, d: &DesiredBucket) -> Result<()> {
    let mut cfg = CreateBucketConfiguration::builder().set_tags(Some(s3_tags(&d.tags)?));
    // us-east-1 must not send a location constraint; every other region must.
    if d.region != "us-east-1" {
        cfg = cfg.location_constraint(BucketLocationConstraint::from(d.region.as_str()));
    }
    let res = ctx
        .aws
        .s3
        .create_bucket()
        .bucket(&d.name)
        .object_ownership(ObjectOwnership::BucketOwnerEnforced)
        .create_bucket_configuration(cfg.build())
        .send()
        .await;
    match res {
        Ok(_) => {
            tracing::info!(bucket = %d.name, region = %d.region, "created S3 bucket");
            Ok(())
        }
        // Ours from an earlier pass (possibly interrupted): the tags decide.
        Err(e) if code_of(&e) == Some("BucketAlreadyOwnedByYou") => Ok(()),
        Err(e) if code_of(&e) == Some("BucketAlreadyExists") => Err(Error::NameConflict {
            kind: "S3 bucket",
            name: d.name.clone(),
            owner: "the name is taken by another AWS account".into(),
        }),
        Err(e) => Err(Error::aws("s3:CreateBucket", e)),
    }
}

async fn apply_field(
    ctx: &Ctx<'_>,
    d: &DesiredBucket,
    observed: &ObservedBucket,
    field: Field,
) -> Result<()> {
    let s3 = &ctx.aws.s3;
    let b = d.name.as_str();
    match field {
        Field::Tags => {
            // PutBucketTagging replaces the set; keep AWS-reserved tags as they are.
            let mut tags = d.tags.clone();
            for (k, v) in &observed.tags {
                if k.starts_with("aws:") {
                    tags.insert(k.clone(), v.clone());
                }
            }
            let tagging = Tagging::builder()
                .set_tag_set(Some(s3_tags(&tags)?))
                .build()
                .map_err(|e| build_err("tagging", e))?;
            s3.put_bucket_tagging()
                .bucket(b)
                .tagging(tagging)
                .send()
                .await
                .map_err(|e| Error::aws("s3:PutBucketTagging", e))?;
        }
        Field::PublicAccessBlock => {
            let cfg = PublicAccessBlockConfiguration::builder()
                .block_public_acls(true)
                .ignore_public_acls(true)
                .block_public_policy(true)
                .restrict_public_buckets(true)
                .build();
            s3.put_public_access_block()
                .bucket(b)
                .public_access_block_configuration(cfg)
                .send()
                .await
                .map_err(|e| Error::aws("s3:PutPublicAccessBlock", e))?;
        }
        Field::Encryption => {
            let by_default = ServerSideEncryptionByDefault::builder()
                .sse_algorithm(ServerSideEncryption::Aes256)
                .build()
                .map_err(|e| build_err("encryption", e))?;
            let rule = ServerSideEncryptionRule::builder()
                .apply_server_side_encryption_by_default(by_default)
                .bucket_key_enabled(true)
                .build();
            let cfg = ServerSideEncryptionConfiguration::builder()
                .rules(rule)
                .build()
                .map_err(|e| build_err("encryption", e))?;
            s3.put_bucket_encryption()
                .bucket(b)
                .server_side_encryption_configuration(cfg)
                .send()
                .await
                .map_err(|e| Error::aws("s3:PutBucketEncryption", e))?;
        }
        Field::Ownership => {
            let rule = OwnershipControlsRule::builder()
                .object_ownership(ObjectOwnership::BucketOwnerEnforced)
                .build()
                .map_err(|e| build_err("ownership", e))?;
            let cfg = OwnershipControls::builder()
                .rules(rule)
                .build()
                .map_err(|e| build_err("ownership", e))?;
            s3.put_bucket_ownership_controls()
                .bucket(b)
                .ownership_controls(cfg)
                .send()
                .await
                .map_err(|e| Error::aws("s3:PutBucketOwnershipControls", e))?;
        }
        Field::Versioning => {
            let status = if d.versioning == Some(true) {
                BucketVersioningStatus::Enabled
            } else {
                BucketVersioningStatus::Suspended
            };
            s3.put_bucket_versioning()
                .bucket(b)
                .versioning_configuration(VersioningConfiguration::builder().status(status).build())
                .send()
                .await
                .map_err(|e| Error::aws("s3:PutBucketVersioning", e))?;
        }
        Field::Acceleration => {
            let status = if d.acceleration == Some(true) {
                BucketAccelerateStatus::Enabled
            } else {
                BucketAccelerateStatus::Suspended
            };
            s3.put_bucket_accelerate_configuration()
                .bucket(b)
                .accelerate_configuration(AccelerateConfiguration::builder().status(status).build())
                .send()
                .await
                .map_err(|e| Error::aws("s3:PutBucketAccelerateConfiguration", e))?;
        }
        Field::Cors => {
            let rules = d.cors.clone().unwrap_or_default();
            if rules.is_empty() {
                s3.delete_bucket_cors()
                    .bucket(b)
                    .send()
                    .await
                    .map_err(|e| Error::aws("s3:DeleteBucketCors", e))?;
            } else {
                let mut cfg = CorsConfiguration::builder();
                for r in rules {
                    let rule = CorsRule::builder()
                        .id("imagestack")
                        .set_allowed_origins(Some(r.allowed_origins))
                        .set_allowed_methods(Some(r.allowed_methods))
                        .set_allowed_headers(Some(r.allowed_headers))
                        .set_expose_headers(Some(r.expose_headers))
                        .set_max_age_seconds(r.max_age_seconds)
                        .build()
                        .map_err(|e| build_err("cors", e))?;
                    cfg = cfg.cors_rules(rule);
                }
                s3.put_bucket_cors()
                    .bucket(b)
                    .cors_configuration(cfg.build().map_err(|e| build_err("cors", e))?)
                    .send()
                    .await
                    .map_err(|e| Error::aws("s3:PutBucketCors", e))?;
            }
        }
        Field::Policy => {
            s3.put_bucket_policy()
                .bucket(b)
                .policy(merged_policy(d, observed.policy.as_ref()).to_string())
                .send()
                .await
                .map_err(|e| Error::aws("s3:PutBucketPolicy", e))?;
        }
        Field::Lifecycle => {
            let rules = lifecycle::merged(&d.lifecycle, &observed.lifecycle)?;
            match lifecycle::configuration(rules)? {
                Some(cfg) => {
                    s3.put_bucket_lifecycle_configuration()
                        .bucket(b)
                        .lifecycle_configuration(cfg)
                        .set_transition_default_minimum_object_size(
                            observed.lifecycle_min_size.clone(),
                        )
                        .send()
                        .await
                        .map_err(|e| Error::aws("s3:PutLifecycleConfiguration", e))?;
                }
                None => {
                    s3.delete_bucket_lifecycle()
                        .bucket(b)
                        .send()
                        .await
                        .map_err(|e| Error::aws("s3:PutLifecycleConfiguration", e))?;
                }
            }
        }
    }
    Ok(())
}

/// At most this many `DeleteObjects` batches per reconcile pass, so a huge
/// bucket is emptied over several passes instead of blocking a worker.
const MAX_DELETE_BATCHES_PER_PASS: usize = 20;

/// Object versions and delete markers of the bucket (at most 1000), and
/// whether there are more.
async fn some_versions(
    ctx: &Ctx<'_>,
    bucket: &str,
) -> Result<(Vec<(String, Option<String>)>, bool)> {
    let page = ctx
        .aws
        .s3
        .list_object_versions()
        .bucket(bucket)
        .max_keys(1000)
        .send()
        .await
        .map_err(|e| Error::aws("s3:ListObjectVersions", e))?;
    let mut ids = Vec::new();
    for v in page.versions() {
        if let Some(k) = v.key() {
            ids.push((k.to_string(), v.version_id().map(str::to_string)));
        }
    }
    for m in page.delete_markers() {
        if let Some(k) = m.key() {
            ids.push((k.to_string(), m.version_id().map(str::to_string)));
        }
    }
    Ok((ids, page.is_truncated().unwrap_or(false)))
}

impl Component for DesiredBucket {
    type Observed = ObservedBucket;

    fn name(&self) -> ComponentName {
        self.component
    }
    fn kind(&self) -> &'static str {
        KIND
    }
    fn id(&self) -> String {
        self.arn()
    }

    async fn observe(&self, cx: &Ctx<'_>) -> Result<Option<ObservedBucket>> {
        observe(cx, &self.name).await
    }

    fn ownership(&self, cx: &Ctx<'_>, seen: &ObservedBucket) -> Ownership {
        owner_from_tags(cx, &seen.tags)
    }

    fn diff(&self, _cx: &Ctx<'_>, seen: &ObservedBucket) -> Result<Vec<Change>> {
        Ok(diff(self, seen).into_iter().map(|(_, c)| c).collect())
    }

    async fn create(&self, cx: &Ctx<'_>) -> Result<Created> {
        create(cx, self).await?;
        Ok(Created::done())
    }

    async fn update(
        &self,
        cx: &Ctx<'_>,
        seen: &ObservedBucket,
        _changes: &[Change],
    ) -> Result<Updated> {
        let mut applied = Vec::new();
        for (field, change) in diff(self, seen) {
            apply_field(cx, self, seen, field).await?;
            applied.push(change);
        }
        Ok(Updated::all(&applied))
    }

    fn outputs(&self, _cx: &Ctx<'_>, seen: &ObservedBucket) -> Vec<Output> {
        vec![Output::BucketPolicy {
            bucket: self.name.clone(),
            policy: merged_policy(self, seen.policy.as_ref()),
        }]
    }

    /// With `emptyOnDelete: false`, a bucket holding any object version or
    /// delete marker blocks the deletion of the whole stack, before anything
    /// of it is deleted.
    async fn preflight_delete(&self, cx: &Ctx<'_>, _seen: &ObservedBucket) -> Result<()> {
        if self.empty_on_delete {
            return Ok(());
        }
        let (ids, truncated) = some_versions(cx, &self.name).await?;
        if ids.is_empty() {
            return Ok(());
        }
        Err(Error::BucketNotEmpty {
            bucket: self.name.clone(),
            count: ids.len(),
            more: if truncated { " or more" } else { "" },
        })
    }

    /// Empty the bucket (when allowed; in batches, over several passes for a
    /// huge one) and delete it.
    async fn delete(&self, cx: &Ctx<'_>, _seen: &ObservedBucket) -> Result<Deletion> {
        let s3 = &cx.aws.s3;
        let mut batches = 0;
        loop {
            let (ids, truncated) = some_versions(cx, &self.name).await?;
            if ids.is_empty() {
                break;
            }
            if !self.empty_on_delete {
                return Err(Error::BucketNotEmpty {
                    bucket: self.name.clone(),
                    count: ids.len(),
                    more: if truncated { " or more" } else { "" },
                });
            }
            if batches >= MAX_DELETE_BATCHES_PER_PASS {
                return Ok(Deletion::InProgress(format!(
                    "emptying bucket {}",
                    self.name
                )));
            }
            let objects = ids
                .into_iter()
                .map(|(k, v)| {
                    ObjectIdentifier::builder()
                        .key(k)
                        .set_version_id(v)
                        .build()
                        .map_err(|e| build_err("delete objects", e))
                })
                .collect::<Result<Vec<_>>>()?;
            let n = objects.len();
            let del = Delete::builder()
                .set_objects(Some(objects))
                .quiet(true)
                .build()
                .map_err(|e| build_err("delete objects", e))?;
            let out = s3
                .delete_objects()
                .bucket(&self.name)
                .delete(del)
                .send()
                .await
                .map_err(|e| Error::aws("s3:DeleteObjects", e))?;
            if let Some(err) = out.errors().first() {
                return Err(Error::Aws {
                    action: "s3:DeleteObjects".into(),
                    code: err.code().unwrap_or("Unknown").to_string(),
                    message: format!(
                        "{} of {n} objects not deleted, e.g. {}: {}",
                        out.errors().len(),
                        err.key().unwrap_or("?"),
                        err.message().unwrap_or("")
                    ),
                    class: ErrorClass::Retryable,
                });
            }
            tracing::info!(bucket = %self.name, deleted = n, "emptied a batch of object versions");
            batches += 1;
        }
        match s3.delete_bucket().bucket(&self.name).send().await {
            Ok(_) => Ok(Deletion::Gone),
            Err(e) if code_of(&e) == Some("NoSuchBucket") => Ok(Deletion::Gone),
            Err(e) => Err(Error::aws("s3:DeleteBucket", e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desired() -> DesiredBucket {
        DesiredBucket {
            component: ComponentName::UploadBucket,
            name: "b".into(),
            region: "eu-west-1".into(),
            partition: "aws".into(),
            tags: BTreeMap::from([("k".to_string(), "v".to_string())]),
            versioning: Some(true),
            acceleration: Some(true),
            cors: Some(vec![Cors {
                allowed_origins: vec!["*".into()],
                allowed_methods: vec!["PUT".into(), "POST".into()],
                allowed_headers: vec!["*".into()],
                expose_headers: vec!["ETag".into()],
                max_age_seconds: None,
            }]),
            tls_statement: policy::deny_insecure_transport("aws", "b"),
            lifecycle: vec![
                StackRule::expire_noncurrent(30),
                StackRule::abort_multipart(7),
            ],
            empty_on_delete: false,
        }
    }

    fn in_sync(d: &DesiredBucket) -> ObservedBucket {
        ObservedBucket {
            tags: d.tags.clone(),
            versioning: Some("Enabled".into()),
            acceleration: Some("Enabled".into()),
            cors: d.cors.clone().unwrap(),
            public_access_block: Some([true; 4]),
            encryption: Some(("AES256".into(), true)),
            ownership: Some("BucketOwnerEnforced".into()),
            policy: Some(policy::bucket_policy(vec![d.tls_statement.clone()])),
            lifecycle: d.lifecycle.iter().map(|r| r.to_sdk().unwrap()).collect(),
            lifecycle_min_size: None,
        }
    }

    #[test]
    fn in_sync_has_no_diff() {
        let d = desired();
        assert!(diff(&d, &in_sync(&d)).is_empty());
    }

    #[test]
    fn cors_order_is_not_drift() {
        let d = desired();
        let mut o = in_sync(&d);
        o.cors[0].allowed_methods.reverse();
        assert!(diff(&d, &o).is_empty());
    }

    #[test]
    fn every_drift_is_named() {
        let d = desired();
        let mut o = in_sync(&d);
        o.versioning = Some("Suspended".into());
        o.cors.clear();
        o.public_access_block = Some([true, true, false, true]);
        o.policy = None;
        o.tags.clear();
        o.encryption = None;
        o.lifecycle.pop();
        let fields: Vec<Field> = diff(&d, &o).into_iter().map(|(f, _)| f).collect();
        assert_eq!(
            fields,
            vec![
                Field::Tags,
                Field::PublicAccessBlock,
                Field::Encryption,
                Field::Versioning,
                Field::Cors,
                Field::Policy,
                Field::Lifecycle
            ]
        );
        let text: Vec<String> = diff(&d, &o)
            .into_iter()
            .map(|(_, c)| c.to_string())
            .collect();
        assert!(
            text.iter().any(|t| t == "versioning: Suspended → Enabled"),
            "{text:?}"
        );
    }

    #[test]
    fn other_statements_are_not_drift_and_survive_the_repair() {
        let d = desired();
        let mut o = in_sync(&d);
        let user = serde_json::json!({"Sid": "UserAudit", "Effect": "Allow",
            "Principal": {"AWS": "arn:aws:iam::1:root"}, "Action": "s3:GetObject",
            "Resource": "arn:aws:s3:::b/*"});
        o.policy = Some(policy::bucket_policy(vec![
            user.clone(),
            d.tls_statement.clone(),
        ]));
        assert!(diff(&d, &o).is_empty(), "another Sid is not ours to judge");
        // Our statement drifted: the repair writes it back and keeps the user's.
        o.policy = Some(policy::bucket_policy(vec![user.clone()]));
        assert_eq!(diff(&d, &o).len(), 1);
        let written = merged_policy(&d, o.policy.as_ref());
        let st = policy::statements(&written);
        assert_eq!(st.len(), 2);
        assert!(st.contains(&user));
        assert!(policy::statement(&written, policy::TLS_ONLY_SID).is_some());
    }

    #[test]
    fn unmanaged_fields_are_ignored() {
        let mut d = desired();
        let mut o = in_sync(&d);
        d.versioning = None;
        d.acceleration = None;
        d.cors = None;
        o.versioning = None;
        o.acceleration = Some("Suspended".into());
        o.cors.clear();
        assert!(diff(&d, &o).is_empty());
    }

    #[test]
    fn never_enabled_versioning_counts_as_off() {
        let mut d = desired();
        d.versioning = Some(false);
        let mut o = in_sync(&d);
        o.versioning = None;
        assert!(diff(&d, &o).is_empty());
        o.versioning = Some("Enabled".into());
        assert_eq!(diff(&d, &o).len(), 1);
    }
}

//! The CloudFront read grant in an output bucket's policy: the statement
//! (`Sid` [`policy::CLOUDFRONT_READ_SID`]) that lets the stack's distribution,
//! through origin access control, `GetObject` under the format's prefix.
//!
//! It is a component of its own, a part of the bucket (its host) that depends
//! on the distribution: when the distribution cannot be read or written in a
//! pass, the grant is simply not written — the bucket keeps the grant it has
//! and the CDN keeps serving (the rule "never degrade what serves"). The
//! bucket component owns only the TLS-only statement, so neither overwrites
//! the other, and a user's own statements survive both.
//!
//! The policy document is read once per pass: the bucket component hands the
//! document as it stands after its own write to this one ([`Output::BucketPolicy`]).

use serde_json::Value;

use super::{
    Change, Component, ComponentName, Created, Ctx, Deletion, Output, Updated, code_of, optional,
};
use crate::error::{Error, Result};
use crate::naming::Ownership;
use crate::policy;

/// What the grant should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredCdnGrant {
    /// `webp-cdn-grant`, …
    pub component: ComponentName,
    pub bucket: String,
    pub partition: String,
    /// Key prefix the distribution may read (`webp/`).
    pub prefix: String,
}

impl DesiredCdnGrant {
    /// The statement, for the distribution of this pass.
    pub fn statement(&self, distribution_arn: &str) -> Value {
        policy::cloudfront_read(
            &self.partition,
            &self.bucket,
            &self.prefix,
            distribution_arn,
        )
    }
}

/// The bucket policy as it stands (`None`: the bucket has no policy).
#[derive(Debug, Clone, PartialEq)]
pub struct ObservedGrant {
    pub policy: Option<Value>,
}

impl ObservedGrant {
    fn statement(&self) -> Option<Value> {
        self.policy
            .as_ref()
            .and_then(|p| policy::statement(p, policy::CLOUDFRONT_READ_SID))
    }
}

async fn read_policy(cx: &Ctx<'_>, bucket: &str) -> Result<Option<Value>> {
    Ok(optional(
        "s3:GetBucketPolicy",
        cx.aws.s3.get_bucket_policy().bucket(bucket).send().await,
        &["NoSuchBucketPolicy"],
    )?
    .and_then(|o| o.policy().and_then(|p| policy::parse(p).ok())))
}

async fn write_policy(cx: &Ctx<'_>, bucket: &str, doc: Option<Value>) -> Result<()> {
    let s3 = &cx.aws.s3;
    match doc {
        Some(doc) => s3
            .put_bucket_policy()
            .bucket(bucket)
            .policy(doc.to_string())
            .send()
            .await
            .map(|_| ())
            .map_err(|e| Error::aws("s3:PutBucketPolicy", e)),
        None => match s3.delete_bucket_policy().bucket(bucket).send().await {
            Ok(_) => Ok(()),
            Err(e) if code_of(&e) == Some("NoSuchBucket") => Ok(()),
            Err(e) => Err(Error::aws("s3:DeleteBucketPolicy", e)),
        },
    }
}

impl Component for DesiredCdnGrant {
    type Observed = ObservedGrant;

    fn name(&self) -> ComponentName {
        self.component
    }
    fn kind(&self) -> &'static str {
        "bucket policy statement"
    }
    fn id(&self) -> String {
        format!(
            "arn:{}:s3:::{}#{}",
            self.partition,
            self.bucket,
            policy::CLOUDFRONT_READ_SID
        )
    }

    async fn observe(&self, cx: &Ctx<'_>) -> Result<Option<ObservedGrant>> {
        let policy = match cx.inputs.bucket_policies.get(&self.bucket) {
            Some(p) => Some(p.clone()),
            None => read_policy(cx, &self.bucket).await?,
        };
        Ok(Some(ObservedGrant { policy }))
    }

    /// A statement inside a bucket of the stack: the graph makes the bucket
    /// its host, so it is only ever touched when the bucket is ours.
    fn ownership(&self, _cx: &Ctx<'_>, _seen: &ObservedGrant) -> Ownership {
        Ownership::Ours
    }

    fn exists(&self, seen: &ObservedGrant) -> bool {
        seen.statement().is_some()
    }

    fn diff(&self, cx: &Ctx<'_>, seen: &ObservedGrant) -> Result<Vec<Change>> {
        let arn = &cx.inputs.require_distribution()?.arn;
        let want = self.statement(arn);
        Ok(match seen.statement() {
            Some(have) if policy::same_statement(&have, &want) => vec![],
            have => vec![Change::new(
                format!("bucketPolicy[{}]", policy::CLOUDFRONT_READ_SID),
                if have.is_some() { "differs" } else { "missing" },
                format!("GetObject on {}* for {arn}", self.prefix),
            )],
        })
    }

    async fn create(&self, _cx: &Ctx<'_>) -> Result<Created> {
        // `observe` always sees the policy (possibly without our statement).
        Err(Error::Internal(
            "a CDN grant is written by update, never created".into(),
        ))
    }

    async fn update(
        &self,
        cx: &Ctx<'_>,
        seen: &ObservedGrant,
        changes: &[Change],
    ) -> Result<Updated> {
        let arn = &cx.inputs.require_distribution()?.arn;
        let doc = policy::with_statement(seen.policy.as_ref(), self.statement(arn));
        write_policy(cx, &self.bucket, Some(doc)).await?;
        Ok(Updated::all(changes))
    }

    fn outputs(&self, _cx: &Ctx<'_>, _seen: &ObservedGrant) -> Vec<Output> {
        Vec::new()
    }

    /// Remove the statement (the CDN was switched off, or the stack is deleted).
    async fn delete(&self, cx: &Ctx<'_>, seen: &ObservedGrant) -> Result<Deletion> {
        let Some(doc) = &seen.policy else {
            return Ok(Deletion::Gone);
        };
        if seen.statement().is_none() {
            return Ok(Deletion::Gone);
        }
        write_policy(
            cx,
            &self.bucket,
            policy::without_statement(doc, policy::CLOUDFRONT_READ_SID),
        )
        .await?;
        Ok(Deletion::Gone)
    }
}

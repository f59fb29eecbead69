//! The failed-event queue: an SQS queue that is the processor function's
//! on-failure destination. Lambda puts there every S3 event whose processing
//! still failed after its asynchronous retries (or grew older than the
//! maximum event age), with the original event under `requestPayload`;
//! `operator redrive` sends them back to the function.
//!
//! The queue keeps messages 14 days (SQS's maximum), is encrypted with
//! SQS-managed keys (or a KMS key someone set: also encrypted, left alone)
//! and its policy denies every request not made over TLS. Like a bucket
//! policy, the queue policy is shared: the stack owns only its statement
//! (`Sid` [`policy::TLS_ONLY_SID`]) and keeps every other one. The function's
//! role may `sqs:SendMessage` to exactly this queue (the role's policy).
//!
//! Ownership from the queue's tags (`ListQueueTags`).

use std::collections::{BTreeMap, HashMap};

use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::Value;

use super::{
    Change, Component, ComponentName, Created, Ctx, Deletion, Updated, code_of, extra_tag_keys,
    is_ours, missing_tags, owner_from_tags, tag_change,
};
use crate::error::{Error, Result};
use crate::naming::Ownership;
use crate::policy;

/// The kind of resource, as errors and events name it.
const KIND: &str = "SQS queue";
/// 14 days, SQS's maximum.
pub const RETENTION_SECONDS: i64 = 14 * 24 * 3600;
/// The error codes SQS answers for a queue that does not exist.
const NO_QUEUE: [&str; 2] = [
    "AWS.SimpleQueueService.NonExistentQueue",
    "QueueDoesNotExist",
];

/// What the queue should look like.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredQueue {
    pub name: String,
    pub arn: String,
    pub tags: BTreeMap<String, String>,
    /// The statement of the queue policy this component owns (TLS only).
    pub tls_statement: Value,
}

/// The queue as SQS describes it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ObservedQueue {
    pub url: String,
    pub arn: String,
    pub tags: BTreeMap<String, String>,
    pub retention_seconds: Option<i64>,
    /// `SqsManagedSseEnabled` is true or a KMS key is set.
    pub encrypted: bool,
    pub policy: Option<Value>,
    /// `ApproximateNumberOfMessages` (for status and redrive).
    pub messages: Option<i64>,
}

/// A field of the queue that can differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Tags,
    Retention,
    Encryption,
    Policy,
}

/// Every differing field.
pub fn diff(d: &DesiredQueue, o: &ObservedQueue) -> Vec<(Field, Change)> {
    let mut out = Vec::new();
    if let Some(c) = tag_change(&d.tags, &o.tags) {
        out.push((Field::Tags, c));
    }
    if o.retention_seconds != Some(RETENTION_SECONDS) {
        out.push((
            Field::Retention,
            Change::new(
                "messageRetentionSeconds",
                o.retention_seconds
                    .map_or_else(|| "unset".to_string(), |s| s.to_string()),
                RETENTION_SECONDS,
            ),
        ));
    }
    if !o.encrypted {
        out.push((
            Field::Encryption,
            Change::new("encryption", "off", "SQS-managed (SSE-SQS)"),
        ));
    }
    let have = o
        .policy
        .as_ref()
        .and_then(|p| policy::statement(p, policy::TLS_ONLY_SID));
    if !have
        .as_ref()
        .is_some_and(|h| policy::same_statement(h, &d.tls_statement))
    {
        out.push((
            Field::Policy,
            Change::new(
                format!("queuePolicy[{}]", policy::TLS_ONLY_SID),
                if have.is_some() { "differs" } else { "missing" },
                "deny non-TLS requests",
            ),
        ));
    }
    out
}

/// The queue's URL, or `None` when it does not exist.
pub async fn url(cx: &Ctx<'_>, name: &str) -> Result<Option<String>> {
    match cx.aws.sqs.get_queue_url().queue_name(name).send().await {
        Ok(o) => Ok(o.queue_url().map(str::to_string)),
        Err(e) if code_of(&e).is_some_and(|c| NO_QUEUE.contains(&c)) => Ok(None),
        Err(e) => Err(Error::aws("sqs:GetQueueUrl", e)),
    }
}

fn merged_policy(d: &DesiredQueue, o: &ObservedQueue) -> Value {
    let mut doc = policy::with_statement(o.policy.as_ref(), d.tls_statement.clone());
    if let Value::Object(m) = &mut doc {
        m.entry("Id")
            .or_insert_with(|| Value::String(d.arn.clone()));
    }
    doc
}

impl Component for DesiredQueue {
    type Observed = ObservedQueue;

    fn name(&self) -> ComponentName {
        ComponentName::FailedEventQueue
    }
    fn kind(&self) -> &'static str {
        KIND
    }
    fn id(&self) -> String {
        self.arn.clone()
    }

    async fn observe(&self, cx: &Ctx<'_>) -> Result<Option<ObservedQueue>> {
        let sqs = &cx.aws.sqs;
        let Some(url) = url(cx, &self.name).await? else {
            return Ok(None);
        };
        let tags = sqs
            .list_queue_tags()
            .queue_url(&url)
            .send()
            .await
            .map_err(|e| Error::aws("sqs:ListQueueTags", e))?
            .tags()
            .map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        let mut o = ObservedQueue {
            url: url.clone(),
            arn: self.arn.clone(),
            tags,
            ..Default::default()
        };
        if !is_ours(cx, &o.tags) {
            return Ok(Some(o));
        }
        let attrs = sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::All)
            .send()
            .await
            .map_err(|e| Error::aws("sqs:GetQueueAttributes", e))?;
        let attrs = attrs.attributes().cloned().unwrap_or_default();
        let get = |k: QueueAttributeName| attrs.get(&k).cloned();
        if let Some(arn) = get(QueueAttributeName::QueueArn) {
            o.arn = arn;
        }
        o.retention_seconds =
            get(QueueAttributeName::MessageRetentionPeriod).and_then(|v| v.parse().ok());
        o.encrypted = get(QueueAttributeName::SqsManagedSseEnabled).as_deref() == Some("true")
            || get(QueueAttributeName::KmsMasterKeyId).is_some_and(|k| !k.is_empty());
        o.policy = get(QueueAttributeName::Policy).and_then(|p| policy::parse(&p).ok());
        o.messages =
            get(QueueAttributeName::ApproximateNumberOfMessages).and_then(|v| v.parse().ok());
        Ok(Some(o))
    }

    fn ownership(&self, cx: &Ctx<'_>, seen: &ObservedQueue) -> Ownership {
        owner_from_tags(cx, &seen.tags)
    }

    fn observed_id(&self, seen: &ObservedQueue) -> Option<String> {
        Some(seen.arn.clone())
    }

    fn diff(&self, _cx: &Ctx<'_>, seen: &ObservedQueue) -> Result<Vec<Change>> {
        Ok(diff(self, seen).into_iter().map(|(_, c)| c).collect())
    }

    async fn create(&self, cx: &Ctx<'_>) -> Result<Created> {
        let policy = merged_policy(self, &ObservedQueue::default());
        let res = cx
            .aws
            .sqs
            .create_queue()
            .queue_name(&self.name)
            .attributes(
                QueueAttributeName::MessageRetentionPeriod,
                RETENTION_SECONDS.to_string(),
            )
            .attributes(QueueAttributeName::SqsManagedSseEnabled, "true")
            .attributes(QueueAttributeName::Policy, policy.to_string())
            .set_tags(Some(self.tags.clone().into_iter().collect()))
            .send()
            .await;
        match res {
            Ok(_) => {
                tracing::info!(queue = %self.name, "created SQS queue");
                Ok(Created::done())
            }
            // Exists with other attributes: the driver reads it again (and
            // judges its ownership) before anything else is written.
            Err(e) if code_of(&e).is_some_and(|c| c.ends_with("QueueAlreadyExists")) => {
                Ok(Created::done())
            }
            Err(e) => Err(Error::aws("sqs:CreateQueue", e)),
        }
    }

    async fn update(
        &self,
        cx: &Ctx<'_>,
        seen: &ObservedQueue,
        _changes: &[Change],
    ) -> Result<Updated> {
        let sqs = &cx.aws.sqs;
        let mut applied = Vec::new();
        let mut attrs: HashMap<QueueAttributeName, String> = HashMap::new();
        for (field, change) in diff(self, seen) {
            match field {
                Field::Tags => {
                    let extra = extra_tag_keys(&self.tags, &seen.tags);
                    if !extra.is_empty() {
                        sqs.untag_queue()
                            .queue_url(&seen.url)
                            .set_tag_keys(Some(extra))
                            .send()
                            .await
                            .map_err(|e| Error::aws("sqs:UntagQueue", e))?;
                    }
                    let missing: HashMap<String, String> = missing_tags(&self.tags, &seen.tags);
                    if !missing.is_empty() {
                        sqs.tag_queue()
                            .queue_url(&seen.url)
                            .set_tags(Some(missing))
                            .send()
                            .await
                            .map_err(|e| Error::aws("sqs:TagQueue", e))?;
                    }
                }
                Field::Retention => {
                    attrs.insert(
                        QueueAttributeName::MessageRetentionPeriod,
                        RETENTION_SECONDS.to_string(),
                    );
                }
                Field::Encryption => {
                    attrs.insert(QueueAttributeName::SqsManagedSseEnabled, "true".into());
                }
                Field::Policy => {
                    attrs.insert(
                        QueueAttributeName::Policy,
                        merged_policy(self, seen).to_string(),
                    );
                }
            }
            applied.push(change);
        }
        if !attrs.is_empty() {
            sqs.set_queue_attributes()
                .queue_url(&seen.url)
                .set_attributes(Some(attrs))
                .send()
                .await
                .map_err(|e| Error::aws("sqs:SetQueueAttributes", e))?;
        }
        Ok(Updated::all(&applied))
    }

    async fn delete(&self, cx: &Ctx<'_>, seen: &ObservedQueue) -> Result<Deletion> {
        match cx.aws.sqs.delete_queue().queue_url(&seen.url).send().await {
            Ok(_) => Ok(Deletion::Gone),
            Err(e) if code_of(&e).is_some_and(|c| NO_QUEUE.contains(&c)) => Ok(Deletion::Gone),
            Err(e) => Err(Error::aws("sqs:DeleteQueue", e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desired() -> DesiredQueue {
        let arn = "arn:aws:sqs:eu-west-1:1:q".to_string();
        DesiredQueue {
            name: "q".into(),
            tls_statement: policy::deny_insecure_transport_queue(&arn),
            arn,
            tags: BTreeMap::from([("k".to_string(), "v".to_string())]),
        }
    }

    fn in_sync(d: &DesiredQueue) -> ObservedQueue {
        ObservedQueue {
            url: "https://q".into(),
            arn: d.arn.clone(),
            tags: d.tags.clone(),
            retention_seconds: Some(RETENTION_SECONDS),
            encrypted: true,
            policy: Some(merged_policy(d, &ObservedQueue::default())),
            messages: Some(0),
        }
    }

    #[test]
    fn in_sync_has_no_diff_and_every_drift_is_named() {
        let d = desired();
        assert!(diff(&d, &in_sync(&d)).is_empty());
        let mut o = in_sync(&d);
        o.retention_seconds = Some(345_600);
        o.encrypted = false;
        o.policy = None;
        let fields: Vec<Field> = diff(&d, &o).into_iter().map(|(f, _)| f).collect();
        assert_eq!(fields, [Field::Retention, Field::Encryption, Field::Policy]);
    }

    #[test]
    fn a_users_policy_statement_is_kept() {
        let d = desired();
        let mut o = in_sync(&d);
        let theirs = serde_json::json!({"Sid": "Audit", "Effect": "Allow",
            "Principal": {"AWS": "arn:aws:iam::1:root"}, "Action": "sqs:ReceiveMessage",
            "Resource": d.arn});
        o.policy = Some(policy::bucket_policy(vec![theirs.clone()]));
        let merged = merged_policy(&d, &o);
        assert!(policy::statement(&merged, "Audit").is_some());
        assert!(policy::statement(&merged, policy::TLS_ONLY_SID).is_some());
    }
}

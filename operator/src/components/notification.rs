//! S3 → Lambda event notifications on the upload bucket: `s3:ObjectCreated:*`
//! for `.jpg`, `.jpeg`, `.png` and `.webp` in lower and upper case (suffix
//! filters are case-sensitive: the reference missed `.JPG`). Must be written
//! after the invoke permission exists, or S3 rejects the destination.
//!
//! The notification configuration is shared by everything that listens to
//! the bucket. The stack owns only its own rules — Lambda configurations whose
//! id starts with [`RULE_PREFIX`] — and every write is read-modify-write:
//! other Lambda, SQS, SNS and EventBridge configuration survives creation,
//! repair and deletion. The graph makes these rules a part of the upload
//! bucket, so nothing is written on a bucket that is not this stack's.

use std::collections::BTreeSet;

use aws_sdk_s3::operation::get_bucket_notification_configuration::GetBucketNotificationConfigurationOutput;
use aws_sdk_s3::types::{
    Event, FilterRule, FilterRuleName, LambdaFunctionConfiguration, NotificationConfiguration,
    NotificationConfigurationFilter, S3KeyFilter,
};

use super::{Change, Component, ComponentName, Created, Ctx, Deletion, Updated};
use crate::error::{Error, Result};
use crate::naming::Ownership;

/// Extensions that trigger processing (each also in upper case).
pub const SUFFIXES: [&str; 4] = [".jpg", ".jpeg", ".png", ".webp"];
/// The event type.
pub const EVENT: &str = "s3:ObjectCreated:*";
/// Id prefix of the rules the stack owns (`imagestack-jpg`, `imagestack-JPG`, …).
pub const RULE_PREFIX: &str = "imagestack-";

/// What the upload bucket's notification rules should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredNotification {
    pub bucket: String,
    pub function_arn: String,
}

/// One Lambda configuration in comparable form: (id, function, events, suffix).
pub type Rule = (String, String, Vec<String>, String);

/// The desired rules: one per suffix and case.
pub fn rules(d: &DesiredNotification) -> BTreeSet<Rule> {
    let mut out = BTreeSet::new();
    for s in SUFFIXES {
        for suffix in [s.to_string(), s.to_uppercase()] {
            let id = format!("imagestack{}", suffix.replace('.', "-"));
            out.insert((id, d.function_arn.clone(), vec![EVENT.to_string()], suffix));
        }
    }
    out
}

/// Whether a rule id is one the stack owns.
pub fn is_ours(id: &str) -> bool {
    id.starts_with(RULE_PREFIX)
}

/// The bucket's notification configuration, split into the stack's rules and
/// everything else (kept as it is on every write).
#[derive(Debug, Clone, PartialEq)]
pub struct ObservedNotifications {
    pub ours: BTreeSet<Rule>,
    pub others: NotificationConfiguration,
}

fn rule_of(c: &LambdaFunctionConfiguration) -> Rule {
    let mut events: Vec<String> = c.events().iter().map(|e| e.as_str().to_string()).collect();
    events.sort();
    let suffix = c
        .filter()
        .and_then(|f| f.key())
        .and_then(|k| {
            k.filter_rules().iter().find(|r| {
                r.name()
                    .is_some_and(|n| n.as_str().eq_ignore_ascii_case("suffix"))
            })
        })
        .and_then(|r| r.value())
        .unwrap_or_default()
        .to_string();
    (
        c.id().unwrap_or_default().to_string(),
        c.lambda_function_arn().to_string(),
        events,
        suffix,
    )
}

/// Split a configuration as S3 returns it.
pub fn split(out: &GetBucketNotificationConfigurationOutput) -> ObservedNotifications {
    let (ours, theirs): (Vec<_>, Vec<_>) = out
        .lambda_function_configurations()
        .iter()
        .cloned()
        .partition(|c| c.id().is_some_and(is_ours));
    let others = NotificationConfiguration::builder()
        .set_lambda_function_configurations(Some(theirs))
        .set_queue_configurations(Some(out.queue_configurations().to_vec()))
        .set_topic_configurations(Some(out.topic_configurations().to_vec()))
        .set_event_bridge_configuration(out.event_bridge_configuration().cloned())
        .build();
    ObservedNotifications {
        ours: ours.iter().map(rule_of).collect(),
        others,
    }
}

/// Read the bucket's notification configuration.
pub async fn observe(ctx: &Ctx<'_>, bucket: &str) -> Result<ObservedNotifications> {
    let out = ctx
        .aws
        .s3
        .get_bucket_notification_configuration()
        .bucket(bucket)
        .send()
        .await
        .map_err(|e| Error::aws("s3:GetBucketNotificationConfiguration", e))?;
    Ok(split(&out))
}

fn lambda_configuration(rule: &Rule) -> Result<LambdaFunctionConfiguration> {
    let (id, arn, events, suffix) = rule;
    let filter = NotificationConfigurationFilter::builder()
        .key(
            S3KeyFilter::builder()
                .filter_rules(
                    FilterRule::builder()
                        .name(FilterRuleName::Suffix)
                        .value(suffix)
                        .build(),
                )
                .build(),
        )
        .build();
    let mut c = LambdaFunctionConfiguration::builder()
        .id(id)
        .lambda_function_arn(arn)
        .filter(filter);
    for e in events {
        c = c.events(Event::from(e.as_str()));
    }
    c.build()
        .map_err(|e| Error::InvalidSpec(format!("notification: {e}")))
}

/// Everything that is not ours, plus `ours`.
pub fn configuration(
    others: &NotificationConfiguration,
    ours: &BTreeSet<Rule>,
) -> Result<NotificationConfiguration> {
    let mut cfg = others.clone();
    let mut lambdas = cfg
        .lambda_function_configurations
        .take()
        .unwrap_or_default();
    for rule in ours {
        lambdas.push(lambda_configuration(rule)?);
    }
    cfg.lambda_function_configurations = Some(lambdas);
    Ok(cfg)
}

async fn put(ctx: &Ctx<'_>, bucket: &str, cfg: NotificationConfiguration) -> Result<()> {
    ctx.aws
        .s3
        .put_bucket_notification_configuration()
        .bucket(bucket)
        .notification_configuration(cfg)
        .send()
        .await
        .map_err(|e| Error::aws("s3:PutBucketNotificationConfiguration", e))?;
    Ok(())
}

impl Component for DesiredNotification {
    type Observed = ObservedNotifications;

    fn name(&self) -> ComponentName {
        ComponentName::UploadNotifications
    }
    fn kind(&self) -> &'static str {
        "S3 notification rules"
    }
    fn id(&self) -> String {
        format!("{}#notifications", self.bucket)
    }

    async fn observe(&self, cx: &Ctx<'_>) -> Result<Option<ObservedNotifications>> {
        Ok(Some(observe(cx, &self.bucket).await?))
    }

    /// Rules inside the upload bucket (the host, checked by the driver) with
    /// the stack's id prefix.
    fn ownership(&self, _cx: &Ctx<'_>, _seen: &ObservedNotifications) -> Ownership {
        Ownership::Ours
    }

    fn exists(&self, seen: &ObservedNotifications) -> bool {
        !seen.ours.is_empty()
    }

    fn diff(&self, _cx: &Ctx<'_>, seen: &ObservedNotifications) -> Result<Vec<Change>> {
        let want = rules(self);
        if seen.ours == want {
            return Ok(vec![]);
        }
        Ok(vec![Change::new(
            "notifications",
            if seen.ours.is_empty() {
                "none".to_string()
            } else {
                format!("{} rule(s) differing", seen.ours.len())
            },
            format!("{} ObjectCreated rules → {}", want.len(), self.function_arn),
        )])
    }

    async fn create(&self, _cx: &Ctx<'_>) -> Result<Created> {
        // `observe` always sees the configuration (possibly without our rules).
        Err(Error::Internal(
            "notification rules are written by update, never created".into(),
        ))
    }

    async fn update(
        &self,
        cx: &Ctx<'_>,
        seen: &ObservedNotifications,
        changes: &[Change],
    ) -> Result<Updated> {
        put(cx, &self.bucket, configuration(&seen.others, &rules(self))?).await?;
        Ok(Updated::all(changes))
    }

    /// Remove the stack's rules; everybody else's stay.
    async fn delete(&self, cx: &Ctx<'_>, seen: &ObservedNotifications) -> Result<Deletion> {
        if seen.ours.is_empty() {
            return Ok(Deletion::Gone);
        }
        put(
            cx,
            &self.bucket,
            configuration(&seen.others, &BTreeSet::new())?,
        )
        .await?;
        Ok(Deletion::Gone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_cases_of_every_suffix() {
        let r = rules(&DesiredNotification {
            bucket: "b".into(),
            function_arn: "arn:f".into(),
        });
        let suffixes: Vec<&str> = r.iter().map(|x| x.3.as_str()).collect();
        for s in [
            ".jpg", ".JPG", ".jpeg", ".JPEG", ".png", ".PNG", ".webp", ".WEBP",
        ] {
            assert!(suffixes.contains(&s), "{s}");
        }
        assert_eq!(r.len(), 8);
        let ids: BTreeSet<&str> = r.iter().map(|x| x.0.as_str()).collect();
        assert_eq!(ids.len(), 8, "ids unique");
        assert!(r.iter().all(|x| x.2 == vec![EVENT.to_string()]));
        assert!(r.iter().all(|x| is_ours(&x.0)), "every rule id is ours");
    }

    #[test]
    fn other_configuration_survives() {
        use aws_sdk_s3::types::QueueConfiguration;
        let d = DesiredNotification {
            bucket: "b".into(),
            function_arn: "arn:f".into(),
        };
        let foreign_lambda = lambda_configuration(&(
            "audit".to_string(),
            "arn:other".to_string(),
            vec![EVENT.to_string()],
            ".tif".to_string(),
        ))
        .unwrap();
        let queue = QueueConfiguration::builder()
            .id("to-sqs")
            .queue_arn("arn:aws:sqs:eu-west-1:1:q")
            .events(Event::from("s3:ObjectRemoved:*"))
            .build()
            .unwrap();
        let ours_stale = lambda_configuration(&(
            "imagestack-jpg".to_string(),
            "arn:old".to_string(),
            vec![EVENT.to_string()],
            ".jpg".to_string(),
        ))
        .unwrap();
        let out = GetBucketNotificationConfigurationOutput::builder()
            .lambda_function_configurations(foreign_lambda.clone())
            .lambda_function_configurations(ours_stale)
            .queue_configurations(queue.clone())
            .build();
        let seen = split(&out);
        assert_eq!(seen.ours.len(), 1);
        let cfg = configuration(&seen.others, &rules(&d)).unwrap();
        assert_eq!(cfg.lambda_function_configurations().len(), 9);
        assert!(
            cfg.lambda_function_configurations()
                .contains(&foreign_lambda)
        );
        assert_eq!(cfg.queue_configurations(), std::slice::from_ref(&queue));
        // Deletion keeps theirs.
        let cfg = configuration(&seen.others, &BTreeSet::new()).unwrap();
        assert_eq!(cfg.lambda_function_configurations(), &[foreign_lambda]);
        assert_eq!(cfg.queue_configurations(), &[queue]);
    }
}

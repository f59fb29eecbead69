//! S3 → Lambda event notifications on the upload bucket: `s3:ObjectCreated:*`
//! for `.jpg`, `.jpeg`, `.png` and `.webp` in lower and upper case (suffix
//! filters are case-sensitive: the reference missed `.JPG`). Must be written
//! after the invoke permission exists, or S3 rejects the destination.

use std::collections::BTreeSet;

use aws_sdk_s3::types::{
    Event, FilterRule, FilterRuleName, LambdaFunctionConfiguration, NotificationConfiguration,
    NotificationConfigurationFilter, S3KeyFilter,
};

use super::{Change, Ctx, Deletion, Report, State};
use crate::error::{Error, Result};

/// Extensions that trigger processing (each also in upper case).
pub const SUFFIXES: [&str; 4] = [".jpg", ".jpeg", ".png", ".webp"];
/// The event type.
pub const EVENT: &str = "s3:ObjectCreated:*";

/// What the upload bucket's notification configuration should be.
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

/// Read the bucket's Lambda notification rules.
pub async fn observe(ctx: &Ctx<'_>, bucket: &str) -> Result<BTreeSet<Rule>> {
    let out = ctx
        .aws
        .s3
        .get_bucket_notification_configuration()
        .bucket(bucket)
        .send()
        .await
        .map_err(|e| Error::aws("s3:GetBucketNotificationConfiguration", e))?;
    Ok(out
        .lambda_function_configurations()
        .iter()
        .map(|c| {
            let mut events: Vec<String> =
                c.events().iter().map(|e| e.as_str().to_string()).collect();
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
        })
        .collect())
}

fn configuration(rules: &BTreeSet<Rule>) -> Result<NotificationConfiguration> {
    let mut cfg = NotificationConfiguration::builder();
    for (id, arn, events, suffix) in rules {
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
        cfg = cfg.lambda_function_configurations(
            c.build()
                .map_err(|e| Error::InvalidSpec(format!("notification: {e}")))?,
        );
    }
    Ok(cfg.build())
}

async fn put(ctx: &Ctx<'_>, bucket: &str, rules: &BTreeSet<Rule>) -> Result<()> {
    ctx.aws
        .s3
        .put_bucket_notification_configuration()
        .bucket(bucket)
        .notification_configuration(configuration(rules)?)
        .send()
        .await
        .map_err(|e| Error::aws("s3:PutBucketNotificationConfiguration", e))?;
    Ok(())
}

/// Write the rules when they differ (the stack owns the upload bucket's notifications).
pub async fn reconcile(ctx: &Ctx<'_>, d: &DesiredNotification) -> Result<Report> {
    let mut report = Report::ready(
        "upload-notifications",
        format!("{}#notifications", d.bucket),
    );
    let want = rules(d);
    let have = observe(ctx, &d.bucket).await?;
    if have == want {
        return Ok(report);
    }
    let change = Change::new(
        "notifications",
        if have.is_empty() {
            "none".to_string()
        } else {
            format!("{} rule(s) differing", have.len())
        },
        format!("{} ObjectCreated rules → {}", want.len(), d.function_arn),
    );
    if ctx.dry_run {
        report.state = State::Paused {
            message: change.to_string(),
        };
        return Ok(report);
    }
    put(ctx, &d.bucket, &want).await?;
    if have.is_empty() {
        report.created = true;
    } else {
        report.changes.push(change);
    }
    Ok(report)
}

/// Remove the notifications (the bucket may already be gone).
pub async fn delete(ctx: &Ctx<'_>, d: &DesiredNotification) -> Result<Deletion> {
    match observe(ctx, &d.bucket).await {
        Ok(have) if have.is_empty() => Ok(Deletion::Gone),
        Ok(_) => {
            put(ctx, &d.bucket, &BTreeSet::new()).await?;
            Ok(Deletion::Gone)
        }
        Err(Error::Aws { code, .. }) if code == "NoSuchBucket" => Ok(Deletion::Gone),
        Err(e) => Err(e),
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
    }
}

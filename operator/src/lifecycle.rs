//! S3 lifecycle rules of a bucket: which ones the stack owns, how they are
//! compared, and the configuration written back.
//!
//! A bucket's lifecycle configuration is shared: a user may add rules of
//! their own (archive to Glacier, expire a prefix). The stack owns only the
//! rules whose id starts with [`RULE_PREFIX`]; every write is
//! read-modify-write and keeps every other rule exactly as S3 returned it
//! (and the configuration's `TransitionDefaultMinimumObjectSize`), like the
//! notification rules and the bucket-policy statements.

use std::collections::BTreeSet;

use aws_sdk_s3::types::{
    AbortIncompleteMultipartUpload, BucketLifecycleConfiguration, ExpirationStatus, LifecycleRule,
    LifecycleRuleFilter, NoncurrentVersionExpiration,
};

use crate::error::{Error, Result};

/// Id prefix of the lifecycle rules the stack owns.
pub const RULE_PREFIX: &str = "imagestack-";
/// Rule expiring noncurrent versions (upload bucket).
pub const NONCURRENT_RULE_ID: &str = "imagestack-expire-noncurrent-versions";
/// Rule aborting incomplete multipart uploads (every bucket).
pub const ABORT_MULTIPART_RULE_ID: &str = "imagestack-abort-incomplete-multipart-uploads";

/// Whether a rule id is one the stack owns.
pub fn is_ours(id: Option<&str>) -> bool {
    id.is_some_and(|i| i.starts_with(RULE_PREFIX))
}

/// A rule the stack wants: enabled, on the whole bucket, with these actions only.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct StackRule {
    pub id: String,
    pub noncurrent_version_expiration_days: Option<i32>,
    pub abort_incomplete_multipart_upload_days: Option<i32>,
}

impl StackRule {
    /// Expire noncurrent versions after `days`.
    pub fn expire_noncurrent(days: i32) -> Self {
        Self {
            id: NONCURRENT_RULE_ID.into(),
            noncurrent_version_expiration_days: Some(days),
            abort_incomplete_multipart_upload_days: None,
        }
    }
    /// Abort incomplete multipart uploads after `days`.
    pub fn abort_multipart(days: i32) -> Self {
        Self {
            id: ABORT_MULTIPART_RULE_ID.into(),
            noncurrent_version_expiration_days: None,
            abort_incomplete_multipart_upload_days: Some(days),
        }
    }

    /// The rule as S3 takes it.
    pub fn to_sdk(&self) -> Result<LifecycleRule> {
        let mut b = LifecycleRule::builder()
            .id(&self.id)
            .status(ExpirationStatus::Enabled)
            .filter(LifecycleRuleFilter::builder().prefix("").build());
        if let Some(d) = self.noncurrent_version_expiration_days {
            b = b.noncurrent_version_expiration(
                NoncurrentVersionExpiration::builder()
                    .noncurrent_days(d)
                    .build(),
            );
        }
        if let Some(d) = self.abort_incomplete_multipart_upload_days {
            b = b.abort_incomplete_multipart_upload(
                AbortIncompleteMultipartUpload::builder()
                    .days_after_initiation(d)
                    .build(),
            );
        }
        b.build()
            .map_err(|e| Error::InvalidSpec(format!("lifecycle rule {}: {e}", self.id)))
    }
}

/// An observed rule of ours in the same form, when it is exactly of that
/// shape (enabled, whole bucket, no other action); `None` when anything else
/// was added or changed, which is drift too.
// `LifecycleRule::prefix` is the legacy whole-rule prefix (deprecated for
// `Filter`): S3 still returns it for rules written that way, and such a rule
// with a non-empty prefix is narrower than ours.
#[allow(deprecated)]
pub fn stack_rule_of(r: &LifecycleRule) -> Option<StackRule> {
    let id = r.id()?.to_string();
    let whole_bucket = r.prefix().is_none_or(str::is_empty)
        && r.filter().is_none_or(|f| {
            f.prefix().is_none_or(str::is_empty)
                && f.tag().is_none()
                && f.and().is_none()
                && f.object_size_greater_than().is_none()
                && f.object_size_less_than().is_none()
        });
    let only_ours = r.expiration().is_none()
        && r.transitions().is_empty()
        && r.noncurrent_version_transitions().is_empty()
        && r.noncurrent_version_expiration()
            .is_none_or(|n| n.newer_noncurrent_versions().is_none());
    if *r.status() != ExpirationStatus::Enabled || !whole_bucket || !only_ours {
        return None;
    }
    Some(StackRule {
        id,
        noncurrent_version_expiration_days: r
            .noncurrent_version_expiration()
            .and_then(|n| n.noncurrent_days()),
        abort_incomplete_multipart_upload_days: r
            .abort_incomplete_multipart_upload()
            .and_then(|a| a.days_after_initiation()),
    })
}

/// What differs between the stack's rules as observed and as wanted: `None`
/// when in sync, else a short description of what is there now.
pub fn drift(want: &[StackRule], observed: &[LifecycleRule]) -> Option<String> {
    let ours: Vec<&LifecycleRule> = observed.iter().filter(|r| is_ours(r.id())).collect();
    let have: Option<BTreeSet<StackRule>> = ours.iter().map(|r| stack_rule_of(r)).collect();
    let want_set: BTreeSet<StackRule> = want.iter().cloned().collect();
    if have.as_ref() == Some(&want_set) && ours.len() == want.len() {
        return None;
    }
    Some(if ours.is_empty() {
        "missing".to_string()
    } else {
        let mut ids: Vec<&str> = ours.iter().filter_map(|r| r.id()).collect();
        ids.sort();
        format!("differs ({})", ids.join(","))
    })
}

/// How the wanted rules read in a change message.
pub fn describe(want: &[StackRule]) -> String {
    if want.is_empty() {
        return "none".into();
    }
    want.iter()
        .map(|r| {
            let mut parts = Vec::new();
            if let Some(d) = r.noncurrent_version_expiration_days {
                parts.push(format!("noncurrent versions expire after {d}d"));
            }
            if let Some(d) = r.abort_incomplete_multipart_upload_days {
                parts.push(format!("incomplete multipart uploads aborted after {d}d"));
            }
            parts.join(", ")
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Every rule that is not ours, as observed, followed by `want`: the rules to
/// write (empty: delete the configuration).
pub fn merged(want: &[StackRule], observed: &[LifecycleRule]) -> Result<Vec<LifecycleRule>> {
    let mut rules: Vec<LifecycleRule> = observed
        .iter()
        .filter(|r| !is_ours(r.id()))
        .cloned()
        .collect();
    for r in want {
        rules.push(r.to_sdk()?);
    }
    Ok(rules)
}

/// The configuration to put (`None` when no rule is left).
pub fn configuration(rules: Vec<LifecycleRule>) -> Result<Option<BucketLifecycleConfiguration>> {
    if rules.is_empty() {
        return Ok(None);
    }
    BucketLifecycleConfiguration::builder()
        .set_rules(Some(rules))
        .build()
        .map(Some)
        .map_err(|e| Error::InvalidSpec(format!("lifecycle configuration: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_s3::types::{LifecycleExpiration, Transition, TransitionStorageClass};

    fn want() -> Vec<StackRule> {
        vec![
            StackRule::expire_noncurrent(30),
            StackRule::abort_multipart(7),
        ]
    }

    fn users_rule() -> LifecycleRule {
        LifecycleRule::builder()
            .id("archive-raw")
            .status(ExpirationStatus::Enabled)
            .filter(LifecycleRuleFilter::builder().prefix("raw/").build())
            .transitions(
                Transition::builder()
                    .days(90)
                    .storage_class(TransitionStorageClass::Glacier)
                    .build(),
            )
            .build()
            .unwrap()
    }

    fn sdk(want: &[StackRule]) -> Vec<LifecycleRule> {
        want.iter().map(|r| r.to_sdk().unwrap()).collect()
    }

    #[test]
    fn in_sync_with_a_users_rule_beside() {
        let mut seen = sdk(&want());
        seen.insert(0, users_rule());
        assert_eq!(drift(&want(), &seen), None);
        // An empty filter reads the same as an empty prefix (S3 returns either).
        let mut bare = StackRule::abort_multipart(7).to_sdk().unwrap();
        bare.filter = Some(LifecycleRuleFilter::builder().build());
        let seen = vec![StackRule::expire_noncurrent(30).to_sdk().unwrap(), bare];
        assert_eq!(drift(&want(), &seen), None);
    }

    #[test]
    fn every_change_to_our_rules_is_drift() {
        assert_eq!(drift(&want(), &[users_rule()]).unwrap(), "missing");
        // Other days.
        assert!(
            drift(
                &want(),
                &sdk(&[
                    StackRule::expire_noncurrent(31),
                    StackRule::abort_multipart(7)
                ])
            )
            .is_some()
        );
        // One missing.
        assert!(drift(&want(), &sdk(&[StackRule::abort_multipart(7)])).is_some());
        // Disabled.
        let mut seen = sdk(&want());
        seen[0].status = ExpirationStatus::Disabled;
        assert!(drift(&want(), &seen).is_some());
        // An action added to ours.
        let mut seen = sdk(&want());
        seen[1].expiration = Some(LifecycleExpiration::builder().days(1).build());
        assert!(drift(&want(), &seen).is_some());
        // Narrowed to a prefix.
        let mut seen = sdk(&want());
        seen[1].filter = Some(LifecycleRuleFilter::builder().prefix("x/").build());
        assert!(drift(&want(), &seen).is_some());
        // A stray rule with our prefix.
        let mut seen = sdk(&want());
        seen.push(
            StackRule {
                id: "imagestack-old".into(),
                ..StackRule::abort_multipart(1)
            }
            .to_sdk()
            .unwrap(),
        );
        assert!(drift(&want(), &seen).unwrap().contains("imagestack-old"));
    }

    #[test]
    fn merge_keeps_theirs_and_replaces_ours() {
        let seen = vec![
            users_rule(),
            StackRule::expire_noncurrent(90).to_sdk().unwrap(),
        ];
        let out = merged(&want(), &seen).unwrap();
        assert_eq!(out.len(), 3);
        assert_eq!(out[0], users_rule());
        assert_eq!(drift(&want(), &out), None);
        // Nothing wanted and nothing of theirs: no configuration at all.
        assert_eq!(
            configuration(merged(&[], &sdk(&want())).unwrap()).unwrap(),
            None
        );
        assert_eq!(merged(&[], &seen).unwrap(), vec![users_rule()]);
    }
}

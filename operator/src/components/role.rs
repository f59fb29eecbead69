//! The processor's IAM role: trust for Lambda limited to this account, one
//! least-privilege inline policy, nothing attached, ownership tags.

use std::collections::BTreeMap;

use aws_sdk_iam::types::Tag;
use serde_json::Value;

use super::{
    Change, Ctx, Deletion, Report, State, check_owner, code_of, extra_tag_keys, is_ours,
    missing_tags, tag_change,
};
use crate::error::{Error, Result};
use crate::policy;

/// The kind of resource, as errors and events name it.
const KIND: &str = "IAM role";

/// What the role should look like.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredRole {
    pub name: String,
    pub arn: String,
    pub trust_policy: Value,
    pub policy_name: String,
    pub policy: Value,
    pub tags: BTreeMap<String, String>,
    pub description: String,
}

/// What the role looks like on IAM.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ObservedRole {
    pub arn: String,
    pub trust_policy: Option<Value>,
    pub tags: BTreeMap<String, String>,
    /// Inline policies by name (documents decoded).
    pub inline: BTreeMap<String, Option<Value>>,
    /// Managed policies attached (ARNs).
    pub attached: Vec<String>,
}

/// A field of the role that can differ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    Tags,
    TrustPolicy,
    InlinePolicy,
    /// Inline policy not ours: removed (least privilege).
    ExtraInline(String),
    /// Managed policy attached out of band: detached.
    Attached(String),
}

/// Every difference, semantically (IAM returns documents URL-encoded and reordered).
pub fn diff(d: &DesiredRole, o: &ObservedRole) -> Vec<(Field, Change)> {
    let mut out = Vec::new();
    if let Some(c) = tag_change(&d.tags, &o.tags) {
        out.push((Field::Tags, c));
    }
    if !o
        .trust_policy
        .as_ref()
        .is_some_and(|p| policy::equivalent(p, &d.trust_policy))
    {
        out.push((
            Field::TrustPolicy,
            Change::new(
                "assumeRolePolicy",
                "differs",
                "lambda.amazonaws.com for this account",
            ),
        ));
    }
    match o.inline.get(&d.policy_name) {
        Some(Some(p)) if policy::equivalent(p, &d.policy) => {}
        Some(_) => out.push((
            Field::InlinePolicy,
            Change::new(
                format!("inlinePolicy[{}]", d.policy_name),
                "differs",
                "least-privilege policy",
            ),
        )),
        None => out.push((
            Field::InlinePolicy,
            Change::new(
                format!("inlinePolicy[{}]", d.policy_name),
                "missing",
                "least-privilege policy",
            ),
        )),
    }
    for name in o.inline.keys().filter(|n| **n != d.policy_name) {
        out.push((
            Field::ExtraInline(name.clone()),
            Change::new(format!("inlinePolicy[{name}]"), "present", "removed"),
        ));
    }
    for arn in &o.attached {
        out.push((
            Field::Attached(arn.clone()),
            Change::new("attachedPolicy", arn, "detached"),
        ));
    }
    out
}

/// Read the role; `None` when it does not exist.
pub async fn observe(ctx: &Ctx<'_>, name: &str) -> Result<Option<ObservedRole>> {
    let iam = &ctx.aws.iam;
    let out = match iam.get_role().role_name(name).send().await {
        Ok(o) => o,
        Err(e) if code_of(&e) == Some("NoSuchEntity") => return Ok(None),
        Err(e) => return Err(Error::aws("iam:GetRole", e)),
    };
    let Some(role) = out.role() else {
        return Ok(None);
    };
    let mut o = ObservedRole {
        arn: role.arn().to_string(),
        trust_policy: role
            .assume_role_policy_document()
            .and_then(|d| policy::parse(d).ok()),
        tags: role
            .tags()
            .iter()
            .map(|t| (t.key().to_string(), t.value().to_string()))
            .collect(),
        ..Default::default()
    };
    if !is_ours(ctx, &o.tags) {
        return Ok(Some(o));
    }
    let names = iam
        .list_role_policies()
        .role_name(name)
        .send()
        .await
        .map_err(|e| Error::aws("iam:ListRolePolicies", e))?;
    for pname in names.policy_names() {
        let doc = match iam
            .get_role_policy()
            .role_name(name)
            .policy_name(pname)
            .send()
            .await
        {
            Ok(p) => policy::parse(p.policy_document()).ok(),
            Err(e) if code_of(&e) == Some("NoSuchEntity") => continue,
            Err(e) => return Err(Error::aws("iam:GetRolePolicy", e)),
        };
        o.inline.insert(pname.clone(), doc);
    }
    let attached = iam
        .list_attached_role_policies()
        .role_name(name)
        .send()
        .await
        .map_err(|e| Error::aws("iam:ListAttachedRolePolicies", e))?;
    o.attached = attached
        .attached_policies()
        .iter()
        .filter_map(|p| p.policy_arn().map(str::to_string))
        .collect();
    Ok(Some(o))
}

fn iam_tags(tags: &BTreeMap<String, String>) -> Result<Vec<Tag>> {
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

/// Create the role if missing, then repair what differs.
pub async fn reconcile(ctx: &Ctx<'_>, d: &DesiredRole) -> Result<Report> {
    let mut report = Report::ready("processor-role", d.arn.clone());
    let o = match observe(ctx, &d.name).await? {
        Some(o) => o,
        None if ctx.dry_run => {
            report.state = State::Paused {
                message: "role does not exist; creation paused".into(),
            };
            return Ok(report);
        }
        None => {
            match ctx
                .aws
                .iam
                .create_role()
                .role_name(&d.name)
                .assume_role_policy_document(d.trust_policy.to_string())
                .description(&d.description)
                .set_tags(Some(iam_tags(&d.tags)?))
                .send()
                .await
            {
                Ok(_) => tracing::info!(role = %d.name, "created IAM role"),
                Err(e) if code_of(&e) == Some("EntityAlreadyExists") => {}
                Err(e) => return Err(Error::aws("iam:CreateRole", e)),
            }
            report.created = true;
            // The new role has no inline policy yet: that is the only difference.
            ObservedRole {
                arn: d.arn.clone(),
                trust_policy: Some(d.trust_policy.clone()),
                tags: d.tags.clone(),
                ..Default::default()
            }
        }
    };
    if !o.arn.is_empty() {
        report.id = o.arn.clone();
    }
    check_owner(ctx, KIND, &d.name, &o.tags)?;
    let changes = diff(d, &o);
    if changes.is_empty() {
        return Ok(report);
    }
    if ctx.dry_run {
        report.state = State::Paused {
            message: super::describe(&changes.iter().map(|(_, c)| c.clone()).collect::<Vec<_>>()),
        };
        return Ok(report);
    }
    for (field, change) in changes {
        apply_field(ctx, d, &o, &field).await?;
        if !report.created || field != Field::InlinePolicy {
            report.changes.push(change);
        }
    }
    Ok(report)
}

async fn apply_field(ctx: &Ctx<'_>, d: &DesiredRole, o: &ObservedRole, f: &Field) -> Result<()> {
    let iam = &ctx.aws.iam;
    match f {
        Field::Tags => {
            let extra = extra_tag_keys(&d.tags, &o.tags);
            if !extra.is_empty() {
                iam.untag_role()
                    .role_name(&d.name)
                    .set_tag_keys(Some(extra))
                    .send()
                    .await
                    .map_err(|e| Error::aws("iam:UntagRole", e))?;
            }
            let missing: BTreeMap<String, String> = missing_tags(&d.tags, &o.tags);
            if !missing.is_empty() {
                iam.tag_role()
                    .role_name(&d.name)
                    .set_tags(Some(iam_tags(&missing)?))
                    .send()
                    .await
                    .map_err(|e| Error::aws("iam:TagRole", e))?;
            }
        }
        Field::TrustPolicy => {
            iam.update_assume_role_policy()
                .role_name(&d.name)
                .policy_document(d.trust_policy.to_string())
                .send()
                .await
                .map_err(|e| Error::aws("iam:UpdateAssumeRolePolicy", e))?;
        }
        Field::InlinePolicy => {
            iam.put_role_policy()
                .role_name(&d.name)
                .policy_name(&d.policy_name)
                .policy_document(d.policy.to_string())
                .send()
                .await
                .map_err(|e| Error::aws("iam:PutRolePolicy", e))?;
        }
        Field::ExtraInline(name) => {
            delete_inline(ctx, &d.name, name).await?;
        }
        Field::Attached(arn) => {
            iam.detach_role_policy()
                .role_name(&d.name)
                .policy_arn(arn)
                .send()
                .await
                .map_err(|e| Error::aws("iam:DetachRolePolicy", e))?;
        }
    }
    Ok(())
}

async fn delete_inline(ctx: &Ctx<'_>, role: &str, name: &str) -> Result<()> {
    match ctx
        .aws
        .iam
        .delete_role_policy()
        .role_name(role)
        .policy_name(name)
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if code_of(&e) == Some("NoSuchEntity") => Ok(()),
        Err(e) => Err(Error::aws("iam:DeleteRolePolicy", e)),
    }
}

/// Delete the role (inline policies and attachments first) if it is ours.
pub async fn delete(ctx: &Ctx<'_>, d: &DesiredRole) -> Result<Deletion> {
    let Some(o) = observe(ctx, &d.name).await? else {
        return Ok(Deletion::Gone);
    };
    if check_owner(ctx, KIND, &d.name, &o.tags).is_err() {
        tracing::warn!(role = %d.name, "not deleting role without this stack's ownership tag");
        return Ok(Deletion::Gone);
    }
    for name in o.inline.keys() {
        delete_inline(ctx, &d.name, name).await?;
    }
    for arn in &o.attached {
        apply_field(ctx, d, &o, &Field::Attached(arn.clone())).await?;
    }
    match ctx.aws.iam.delete_role().role_name(&d.name).send().await {
        Ok(_) => Ok(Deletion::Gone),
        Err(e) if code_of(&e) == Some("NoSuchEntity") => Ok(Deletion::Gone),
        Err(e) => Err(Error::aws("iam:DeleteRole", e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desired() -> DesiredRole {
        DesiredRole {
            name: "r".into(),
            arn: "arn:aws:iam::1:role/r".into(),
            trust_policy: policy::lambda_trust_policy("1"),
            policy_name: "p".into(),
            policy: policy::bucket_policy(vec![policy::deny_insecure_transport("aws", "b")]),
            tags: BTreeMap::from([("k".to_string(), "v".to_string())]),
            description: "d".into(),
        }
    }

    #[test]
    fn in_sync_and_drift() {
        let d = desired();
        let mut o = ObservedRole {
            arn: d.arn.clone(),
            trust_policy: Some(d.trust_policy.clone()),
            tags: d.tags.clone(),
            inline: BTreeMap::from([("p".to_string(), Some(d.policy.clone()))]),
            attached: vec![],
        };
        assert!(diff(&d, &o).is_empty());
        o.inline
            .insert("p".into(), Some(serde_json::json!({"Statement": []})));
        o.inline.insert("sneaky".into(), None);
        o.attached
            .push("arn:aws:iam::aws:policy/AdministratorAccess".into());
        let fields: Vec<Field> = diff(&d, &o).into_iter().map(|(f, _)| f).collect();
        assert_eq!(
            fields,
            vec![
                Field::InlinePolicy,
                Field::ExtraInline("sneaky".into()),
                Field::Attached("arn:aws:iam::aws:policy/AdministratorAccess".into())
            ]
        );
    }
}

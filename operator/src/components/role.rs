//! The processor's IAM role: trust for Lambda limited to this account, one
//! least-privilege inline policy, nothing attached, ownership tags.
//!
//! `CreateRole` sets the trust policy and the tags; the inline policy is put by
//! the update that follows in the same pass (the driver observes the new role
//! again). The role hands its ARN to the function ([`Output::RoleArn`]).

use std::collections::BTreeMap;

use aws_sdk_iam::types::Tag;
use serde_json::Value;

use super::{
    Change, Component, ComponentName, Created, Ctx, Deletion, Output, Updated, code_of,
    extra_tag_keys, is_ours, missing_tags, owner_from_tags, tag_change,
};
use crate::error::{Error, Result};
use crate::naming::Ownership;
use crate::policy;

/// The kind of resource, as errors and events name it.
const KIND: &str = "IAM role";

/// What the role should look like.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredRole {
    /// Role name.
    pub name: String,
    /// The ARN the role gets (`arn:<partition>:iam::<account>:role/<name>`).
    pub arn: String,
    /// Who may assume it (Lambda, this account).
    pub trust_policy: Value,
    /// Name of the one inline policy.
    pub policy_name: String,
    /// The inline policy (least privilege over the stack's own resources).
    pub policy: Value,
    /// Ownership and user tags.
    pub tags: BTreeMap<String, String>,
    /// Role description.
    pub description: String,
}

/// What the role looks like on IAM.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ObservedRole {
    /// Role ARN.
    pub arn: String,
    /// The trust policy (decoded).
    pub trust_policy: Option<Value>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// Inline policies by name (documents decoded).
    pub inline: BTreeMap<String, Option<Value>>,
    /// Managed policies attached (ARNs).
    pub attached: Vec<String>,
}

/// A field of the role that can differ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    /// Ownership and user tags.
    Tags,
    /// The assume-role policy.
    TrustPolicy,
    /// Our inline policy.
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

/// Read the role; `None` when it does not exist. Stops after the role itself
/// when it is not this stack's.
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

impl Component for DesiredRole {
    type Observed = ObservedRole;

    fn name(&self) -> ComponentName {
        ComponentName::ProcessorRole
    }
    fn kind(&self) -> &'static str {
        KIND
    }
    fn id(&self) -> String {
        self.arn.clone()
    }
    fn observed_id(&self, seen: &ObservedRole) -> Option<String> {
        (!seen.arn.is_empty()).then(|| seen.arn.clone())
    }

    async fn observe(&self, cx: &Ctx<'_>) -> Result<Option<ObservedRole>> {
        observe(cx, &self.name).await
    }

    fn ownership(&self, cx: &Ctx<'_>, seen: &ObservedRole) -> Ownership {
        owner_from_tags(cx, &seen.tags)
    }

    fn diff(&self, _cx: &Ctx<'_>, seen: &ObservedRole) -> Result<Vec<Change>> {
        Ok(diff(self, seen).into_iter().map(|(_, c)| c).collect())
    }

    async fn create(&self, cx: &Ctx<'_>) -> Result<Created> {
        match cx
            .aws
            .iam
            .create_role()
            .role_name(&self.name)
            .assume_role_policy_document(self.trust_policy.to_string())
            .description(&self.description)
            .set_tags(Some(iam_tags(&self.tags)?))
            .send()
            .await
        {
            Ok(_) => {}
            // Created by an interrupted earlier pass (or concurrently).
            Err(e) if code_of(&e) == Some("EntityAlreadyExists") => {}
            Err(e) => return Err(Error::aws("iam:CreateRole", e)),
        }
        Ok(Created::done())
    }

    async fn update(
        &self,
        cx: &Ctx<'_>,
        seen: &ObservedRole,
        changes: &[Change],
    ) -> Result<Updated> {
        let mut applied = Vec::new();
        for (field, change) in diff(self, seen) {
            if changes.contains(&change) {
                apply_field(cx, self, seen, &field).await?;
                applied.push(change);
            }
        }
        Ok(Updated::all(&applied))
    }

    fn outputs(&self, _cx: &Ctx<'_>, seen: &ObservedRole) -> Vec<Output> {
        let arn = if seen.arn.is_empty() {
            &self.arn
        } else {
            &seen.arn
        };
        vec![Output::RoleArn(arn.clone())]
    }

    async fn delete(&self, cx: &Ctx<'_>, seen: &ObservedRole) -> Result<Deletion> {
        for name in seen.inline.keys() {
            delete_inline(cx, &self.name, name).await?;
        }
        for arn in &seen.attached {
            apply_field(cx, self, seen, &Field::Attached(arn.clone())).await?;
        }
        match cx.aws.iam.delete_role().role_name(&self.name).send().await {
            Ok(_) => Ok(Deletion::Gone),
            Err(e) if code_of(&e) == Some("NoSuchEntity") => Ok(Deletion::Gone),
            Err(e) => Err(Error::aws("iam:DeleteRole", e)),
        }
    }
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

//! The Lambda resource policy statement that lets S3 invoke the processor:
//! principal `s3.amazonaws.com`, source ARN = the upload bucket, source
//! account = this account. Observed through GetPolicy and repaired when
//! missing or different; never added twice (an existing statement id is
//! removed before it is re-added — our code never relies on AWS rejecting a
//! duplicate).
//!
//! The statement lives inside the function's resource policy: it is ours by
//! construction, and the graph makes it a part of the function (its host), so
//! it is never read or written unless the function is this stack's.

use serde_json::Value;

use super::{Change, Component, ComponentName, Created, Ctx, Deletion, Updated, code_of};
use crate::error::{Error, Result};
use crate::naming::Ownership;

/// Statement id of the permission.
pub const STATEMENT_ID: &str = "imagestack-s3-invoke";

/// What the permission should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredPermission {
    /// Name of the function whose resource policy holds the statement.
    pub function_name: String,
    /// The function's ARN (the component's id on status).
    pub function_arn: String,
    /// The upload bucket's ARN (`AWS:SourceArn`).
    pub source_bucket_arn: String,
    /// This account (`AWS:SourceAccount`).
    pub source_account: String,
}

/// The statement as observed (principal, action, source ARN, source account).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObservedPermission {
    /// Service principal.
    pub principal: Option<String>,
    /// Allowed action.
    pub action: Option<String>,
    /// `AWS:SourceArn` condition.
    pub source_arn: Option<String>,
    /// `AWS:SourceAccount` condition.
    pub source_account: Option<String>,
}

fn first_str(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Array(a) => a.first().and_then(|x| x.as_str()).map(str::to_string),
        _ => None,
    }
}

/// Find our statement in a resource policy document.
pub fn parse_statement(policy: &str) -> Option<ObservedPermission> {
    let doc: Value = serde_json::from_str(policy).ok()?;
    let stmts = match &doc["Statement"] {
        Value::Array(a) => a.clone(),
        s @ Value::Object(_) => vec![s.clone()],
        _ => vec![],
    };
    let s = stmts.into_iter().find(|s| s["Sid"] == STATEMENT_ID)?;
    let cond = |op: &str, key: &str| -> Option<String> {
        let m = s["Condition"][op].as_object()?;
        m.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .and_then(|(_, v)| first_str(v))
    };
    Some(ObservedPermission {
        principal: match &s["Principal"] {
            Value::Object(m) => m.get("Service").and_then(first_str),
            other => first_str(other),
        },
        action: first_str(&s["Action"]),
        source_arn: cond("ArnLike", "AWS:SourceArn").or_else(|| cond("ArnEquals", "AWS:SourceArn")),
        source_account: cond("StringEquals", "AWS:SourceAccount"),
    })
}

/// Differences between the statement and the desired permission.
pub fn diff(d: &DesiredPermission, o: &ObservedPermission) -> Option<Change> {
    let want = ObservedPermission {
        principal: Some("s3.amazonaws.com".into()),
        action: Some("lambda:InvokeFunction".into()),
        source_arn: Some(d.source_bucket_arn.clone()),
        source_account: Some(d.source_account.clone()),
    };
    (o != &want).then(|| {
        Change::new(
            format!("permission[{STATEMENT_ID}]"),
            format!("{:?}/{:?}", o.principal, o.source_arn),
            format!("s3.amazonaws.com from {}", d.source_bucket_arn),
        )
    })
}

/// Read our statement; `None` when the function (or its policy) does not
/// exist or has no such statement.
pub async fn observe(ctx: &Ctx<'_>, d: &DesiredPermission) -> Result<Option<ObservedPermission>> {
    match ctx
        .aws
        .lambda
        .get_policy()
        .function_name(&d.function_name)
        .send()
        .await
    {
        Ok(out) => Ok(out.policy().and_then(parse_statement)),
        Err(e) if code_of(&e) == Some("ResourceNotFoundException") => Ok(None),
        Err(e) => Err(Error::aws("lambda:GetPolicy", e)),
    }
}

async fn add(ctx: &Ctx<'_>, d: &DesiredPermission) -> Result<()> {
    ctx.aws
        .lambda
        .add_permission()
        .function_name(&d.function_name)
        .statement_id(STATEMENT_ID)
        .action("lambda:InvokeFunction")
        .principal("s3.amazonaws.com")
        .source_arn(&d.source_bucket_arn)
        .source_account(&d.source_account)
        .send()
        .await
        .map_err(|e| Error::aws("lambda:AddPermission", e))?;
    Ok(())
}

async fn remove(ctx: &Ctx<'_>, d: &DesiredPermission) -> Result<()> {
    match ctx
        .aws
        .lambda
        .remove_permission()
        .function_name(&d.function_name)
        .statement_id(STATEMENT_ID)
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if code_of(&e) == Some("ResourceNotFoundException") => Ok(()),
        Err(e) => Err(Error::aws("lambda:RemovePermission", e)),
    }
}

impl Component for DesiredPermission {
    type Observed = ObservedPermission;

    fn name(&self) -> ComponentName {
        ComponentName::S3InvokePermission
    }
    fn kind(&self) -> &'static str {
        "Lambda permission"
    }
    fn id(&self) -> String {
        format!("{}#{STATEMENT_ID}", self.function_arn)
    }

    async fn observe(&self, cx: &Ctx<'_>) -> Result<Option<ObservedPermission>> {
        observe(cx, self).await
    }

    /// A statement of the function's policy: ours by construction (the driver
    /// checks the function).
    fn ownership(&self, _cx: &Ctx<'_>, _seen: &ObservedPermission) -> Ownership {
        Ownership::Ours
    }

    fn diff(&self, _cx: &Ctx<'_>, seen: &ObservedPermission) -> Result<Vec<Change>> {
        Ok(diff(self, seen).into_iter().collect())
    }

    async fn create(&self, cx: &Ctx<'_>) -> Result<Created> {
        add(cx, self).await?;
        Ok(Created::done())
    }

    async fn update(
        &self,
        cx: &Ctx<'_>,
        _seen: &ObservedPermission,
        changes: &[Change],
    ) -> Result<Updated> {
        remove(cx, self).await?;
        add(cx, self).await?;
        Ok(Updated::all(changes))
    }

    async fn delete(&self, cx: &Ctx<'_>, _seen: &ObservedPermission) -> Result<Deletion> {
        remove(cx, self).await?;
        Ok(Deletion::Gone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desired() -> DesiredPermission {
        DesiredPermission {
            function_name: "f".into(),
            function_arn: "arn:aws:lambda:us-east-1:123456789012:function:f".into(),
            source_bucket_arn: "arn:aws:s3:::up".into(),
            source_account: "123456789012".into(),
        }
    }

    #[test]
    fn parses_aws_shaped_policy() {
        // As Lambda's GetPolicy returns it.
        let policy = r#"{"Version":"2012-10-17","Id":"default","Statement":[{"Sid":"imagestack-s3-invoke","Effect":"Allow","Principal":{"Service":"s3.amazonaws.com"},"Action":"lambda:InvokeFunction","Resource":"arn:aws:lambda:us-east-1:123456789012:function:f","Condition":{"StringEquals":{"AWS:SourceAccount":"123456789012"},"ArnLike":{"AWS:SourceArn":"arn:aws:s3:::up"}}}]}"#;
        let o = parse_statement(policy).unwrap();
        assert_eq!(diff(&desired(), &o), None);
        let other = policy.replace("arn:aws:s3:::up", "arn:aws:s3:::other");
        assert!(diff(&desired(), &parse_statement(&other).unwrap()).is_some());
        let no_sid = policy.replace("imagestack-s3-invoke", "someone-else");
        assert_eq!(parse_statement(&no_sid), None);
    }
}

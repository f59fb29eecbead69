//! The Lambda resource policy statement that lets S3 invoke the processor:
//! principal `s3.amazonaws.com`, source ARN = the upload bucket, source
//! account = this account. Observed through GetPolicy and repaired when
//! missing or different; never added twice (an existing statement id is
//! removed before it is re-added — our code never relies on AWS rejecting a
//! duplicate).

use serde_json::Value;

use super::{Change, Ctx, Deletion, Report, State, code_of};
use crate::error::{Error, Result};

/// Statement id of the permission.
pub const STATEMENT_ID: &str = "imagestack-s3-invoke";

/// What the permission should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredPermission {
    pub function_name: String,
    pub function_arn: String,
    pub source_bucket_arn: String,
    pub source_account: String,
}

/// The statement as observed (principal, action, source ARN, source account).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObservedPermission {
    pub principal: Option<String>,
    pub action: Option<String>,
    pub source_arn: Option<String>,
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

/// Read our statement; `None` when the function has no policy or no such statement.
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

/// Add the statement when missing, replace it when different.
pub async fn reconcile(ctx: &Ctx<'_>, d: &DesiredPermission) -> Result<Report> {
    let mut report = Report::ready(
        "s3-invoke-permission",
        format!("{}#{STATEMENT_ID}", d.function_arn),
    );
    let observed = observe(ctx, d).await?;
    let change = match &observed {
        None => None,
        Some(o) => diff(d, o),
    };
    if observed.is_some() && change.is_none() {
        return Ok(report);
    }
    if ctx.dry_run {
        report.state = State::Paused {
            message: change.map_or_else(|| "permission missing".to_string(), |c| c.to_string()),
        };
        return Ok(report);
    }
    match change {
        None => {
            add(ctx, d).await?;
            report.created = true;
        }
        Some(c) => {
            remove(ctx, d).await?;
            add(ctx, d).await?;
            report.changes.push(c);
        }
    }
    Ok(report)
}

/// Remove the statement (gone when the function or statement is gone).
pub async fn delete(ctx: &Ctx<'_>, d: &DesiredPermission) -> Result<Deletion> {
    if observe(ctx, d).await?.is_some() {
        remove(ctx, d).await?;
    }
    Ok(Deletion::Gone)
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

//! AWS components of a stack. Each file holds one kind of resource with the
//! same four verbs: `observe` (read the real thing, `None` when missing),
//! `diff` (pure: name every differing field), `apply` (create when missing,
//! update only what differs) and `delete` (idempotent; gone is success).

pub mod bucket;
pub mod dashboard;
pub mod distribution;
pub mod function;
pub mod notification;
pub mod origin_access;
pub mod permission;
pub mod role;
pub mod table;

use std::collections::BTreeMap;
use std::fmt;

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_runtime_api::http::Response as HttpResponse;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::aws::AwsClients;
use crate::error::{Error, Result};
use crate::naming::{Ownership, StackId, ownership};

/// One differing field: what it is, what AWS has, what the spec wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub field: String,
    pub from: String,
    pub to: String,
}

impl Change {
    pub fn new(field: impl Into<String>, from: impl fmt::Display, to: impl fmt::Display) -> Self {
        Self {
            field: field.into(),
            from: from.to_string(),
            to: to.to_string(),
        }
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} → {}", self.field, self.from, self.to)
    }
}

/// Join changes for an event or status message.
pub fn describe(changes: &[Change]) -> String {
    changes
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Where a component stands after one reconcile pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Exists and matches the spec.
    Ready,
    /// On its way (creating, updating, waiting for AWS): reason and message.
    Progressing { reason: String, message: String },
    /// Differs from the spec but writes are paused.
    Paused { message: String },
}

/// Result of reconciling one component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Component name on status, e.g. `upload-bucket`.
    pub name: String,
    /// ARN or name of the AWS resource.
    pub id: String,
    pub state: State,
    /// Created in this pass.
    pub created: bool,
    /// Fields updated in this pass (drift repairs when the resource existed).
    pub changes: Vec<Change>,
}

impl Report {
    pub fn ready(name: &str, id: impl Into<String>) -> Self {
        Self {
            name: name.to_string(),
            id: id.into(),
            state: State::Ready,
            created: false,
            changes: vec![],
        }
    }
}

/// Result of deleting one component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deletion {
    /// Gone (or never existed).
    Gone,
    /// Deleting takes more passes (emptying a bucket, waiting for AWS).
    InProgress(String),
}

/// What every component gets to work with.
pub struct Ctx<'a> {
    pub aws: &'a AwsClients,
    pub id: &'a StackId,
    /// Observe and diff only: the stack is paused.
    pub dry_run: bool,
}

/// Whether a resource with these tags belongs to this stack.
pub fn is_ours(ctx: &Ctx<'_>, tags: &BTreeMap<String, String>) -> bool {
    ownership(ctx.id, tags.iter().map(|(k, v)| (k.as_str(), v.as_str()))) == Ownership::Ours
}

/// `Ok` when the resource's tags say it belongs to this stack; otherwise a
/// `NameConflict` naming the `kind` of resource, its name and who owns it.
pub fn check_owner(
    ctx: &Ctx<'_>,
    kind: &'static str,
    name: &str,
    tags: &BTreeMap<String, String>,
) -> Result<()> {
    let owner = match ownership(ctx.id, tags.iter().map(|(k, v)| (k.as_str(), v.as_str()))) {
        Ownership::Ours => return Ok(()),
        Ownership::OtherStack(other) => format!("owned by stack {other}"),
        Ownership::Foreign => "not tagged by imagestack".to_string(),
    };
    Err(Error::NameConflict {
        kind,
        name: name.to_string(),
        owner,
    })
}

/// Compare tags: keys under `aws:` belong to AWS and are ignored. The desired
/// set is authoritative for everything else.
pub fn tag_change(
    desired: &BTreeMap<String, String>,
    observed: &BTreeMap<String, String>,
) -> Option<Change> {
    let observed: BTreeMap<&String, &String> = observed
        .iter()
        .filter(|(k, _)| !k.starts_with("aws:"))
        .collect();
    let desired_ref: BTreeMap<&String, &String> = desired.iter().collect();
    if observed == desired_ref {
        return None;
    }
    let missing: Vec<String> = desired
        .iter()
        .filter(|(k, v)| observed.get(k) != Some(v))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let extra: Vec<String> = observed
        .keys()
        .filter(|k| !desired.contains_key(**k))
        .map(|k| k.to_string())
        .collect();
    let mut from = Vec::new();
    if !extra.is_empty() {
        from.push(format!("extra {}", extra.join(",")));
    }
    if !missing.is_empty() {
        from.push(format!("missing {}", missing.join(",")));
    }
    Some(Change::new("tags", from.join(" "), "as spec"))
}

/// Desired tags the resource lacks or has with another value (to tag with).
pub fn missing_tags<C: FromIterator<(String, String)>>(
    desired: &BTreeMap<String, String>,
    observed: &BTreeMap<String, String>,
) -> C {
    desired
        .iter()
        .filter(|(k, v)| observed.get(*k) != Some(v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Tag keys present on the resource but not desired (excluding `aws:` keys).
pub fn extra_tag_keys(
    desired: &BTreeMap<String, String>,
    observed: &BTreeMap<String, String>,
) -> Vec<String> {
    observed
        .keys()
        .filter(|k| !k.starts_with("aws:") && !desired.contains_key(*k))
        .cloned()
        .collect()
}

/// The AWS error code of an SDK error, if it is a service error.
pub fn code_of<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> Option<&str> {
    crate::error::sdk_code(err)
}

/// HTTP status of a service error.
pub fn status_of<E>(err: &SdkError<E, HttpResponse>) -> Option<u16> {
    match err {
        SdkError::ServiceError(se) => Some(se.raw().status().as_u16()),
        _ => None,
    }
}

/// Turn "not configured" errors (`absent` codes) into `None`.
pub fn optional<T, E>(
    action: &str,
    result: std::result::Result<T, SdkError<E, HttpResponse>>,
    absent: &[&str],
) -> Result<Option<T>>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match result {
        Ok(v) => Ok(Some(v)),
        Err(e) if code_of(&e).is_some_and(|c| absent.contains(&c)) => Ok(None),
        Err(e) => Err(Error::aws(action, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_compare_ignoring_aws_keys() {
        let desired = BTreeMap::from([("a".to_string(), "1".to_string())]);
        let mut observed = desired.clone();
        observed.insert("aws:cloudformation:stack-name".into(), "x".into());
        assert_eq!(tag_change(&desired, &observed), None);
        observed.insert("extra".into(), "y".into());
        observed.remove("a");
        let c = tag_change(&desired, &observed).unwrap();
        assert!(c.from.contains("extra extra"), "{c}");
        assert!(c.from.contains("missing a=1"), "{c}");
        assert_eq!(
            extra_tag_keys(&desired, &observed),
            vec!["extra".to_string()]
        );
    }
}

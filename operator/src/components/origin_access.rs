//! The CloudFront origin access control (OAC) of a stack: SigV4, always sign,
//! origin type S3. The distribution's three S3 origins use it, and the output
//! buckets' policies grant `cloudfront.amazonaws.com` read access conditioned
//! on the distribution's ARN.
//!
//! OACs cannot be tagged. Ownership is therefore the deterministic name
//! ([`oac_name`], a hash of the stack's identity) plus a description naming
//! the stack ([`oac_description`]): a same-named OAC with another description
//! is a `NameConflict` and is never touched.
//!
//! Updates and deletes need the current ETag (`IfMatch`): it is read with
//! `GetOriginAccessControlConfig` right before the write, and a
//! `PreconditionFailed` (someone else wrote in between) is retried once.

use aws_sdk_cloudfront::types::{
    OriginAccessControlConfig, OriginAccessControlOriginTypes, OriginAccessControlSigningBehaviors,
    OriginAccessControlSigningProtocols,
};
use sha2::{Digest, Sha256};

use super::{Change, Ctx, Deletion, Report, State, code_of, describe};
use crate::error::{Error, ErrorClass, Result};
use crate::naming::{NAME_PREFIX, StackId};

/// Component name on status.
pub const COMPONENT: &str = "origin-access-control";
/// Signing protocol of the OAC.
pub const SIGNING_PROTOCOL: &str = "sigv4";
/// Signing behaviour of the OAC: CloudFront signs every origin request.
pub const SIGNING_BEHAVIOR: &str = "always";
/// Origin type of the OAC.
pub const ORIGIN_TYPE: &str = "s3";
/// Prefix of the description that marks an OAC as imagestack's.
pub const DESCRIPTION_PREFIX: &str = "imagestack ";
/// AWS limit on OAC names.
pub const MAX_NAME_LEN: usize = 64;
/// AWS limit on OAC descriptions.
pub const MAX_DESCRIPTION_LEN: usize = 256;

/// Short, stable hex hash of a stack's identity and `salt` (`len` ≤ 64).
///
/// The same construction as [`StackId`]'s private name hash (NUL-separated
/// parts), so names derived here never collide across namespaces, names and
/// environments. Shared by the CloudFront and dashboard components.
pub fn stack_hash(id: &StackId, salt: &str, len: usize) -> String {
    let mut h = Sha256::new();
    for part in [
        id.namespace.as_str(),
        id.name.as_str(),
        id.environment.as_str(),
        salt,
    ] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    let digest = hex::encode(h.finalize());
    digest[..len.min(digest.len())].to_string()
}

/// Cut `s` to at most `max` bytes on a character boundary.
pub(crate) fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// Deterministic OAC name: `imagestack-<env>-oac-<hash16>` (at most
/// 11 + 20 + 5 + 16 = 52 characters; cut to the 64-character limit anyway).
pub fn oac_name(id: &StackId) -> String {
    truncate(
        &format!(
            "{NAME_PREFIX}-{}-oac-{}",
            id.environment,
            stack_hash(id, "origin-access-control", 16)
        ),
        MAX_NAME_LEN,
    )
}

/// Description naming the owning stack: `imagestack <namespace>/<name>`
/// (cut to AWS's 256-character limit; still deterministic).
pub fn oac_description(id: &StackId) -> String {
    truncate(
        &format!("{DESCRIPTION_PREFIX}{}", id.owner_tag_value()),
        MAX_DESCRIPTION_LEN,
    )
}

/// What the OAC should look like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredOriginAccess {
    pub name: String,
    pub description: String,
}

/// The desired OAC of a stack.
pub fn desired(id: &StackId) -> DesiredOriginAccess {
    DesiredOriginAccess {
        name: oac_name(id),
        description: oac_description(id),
    }
}

/// What the OAC looks like on AWS (from `ListOriginAccessControls`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObservedOriginAccess {
    pub id: String,
    pub name: String,
    pub description: String,
    pub signing_protocol: String,
    pub signing_behavior: String,
    pub origin_type: String,
}

/// Every differing setting. Name and description are identity (they decide
/// ownership) and never show up here.
pub fn diff(observed: &ObservedOriginAccess) -> Vec<Change> {
    let mut out = Vec::new();
    for (field, have, want) in [
        (
            "signingProtocol",
            observed.signing_protocol.as_str(),
            SIGNING_PROTOCOL,
        ),
        (
            "signingBehavior",
            observed.signing_behavior.as_str(),
            SIGNING_BEHAVIOR,
        ),
        (
            "originAccessControlOriginType",
            observed.origin_type.as_str(),
            ORIGIN_TYPE,
        ),
    ] {
        if have != want {
            out.push(Change::new(field, or_unset(have), want));
        }
    }
    out
}

fn or_unset(s: &str) -> &str {
    if s.is_empty() { "unset" } else { s }
}

/// `Ok` when the observed OAC is this stack's; `NameConflict` otherwise.
pub fn check_owner(d: &DesiredOriginAccess, o: &ObservedOriginAccess) -> Result<()> {
    if o.description == d.description {
        return Ok(());
    }
    let owner = match o.description.strip_prefix(DESCRIPTION_PREFIX) {
        Some(other) if !other.is_empty() => format!("owned by stack {other}"),
        _ => format!("description {:?} does not name this stack", o.description),
    };
    Err(Error::NameConflict {
        kind: "CloudFront origin access control",
        name: o.name.clone(),
        owner,
    })
}

/// Find the OAC named `name`; `None` when there is none.
pub async fn observe(ctx: &Ctx<'_>, name: &str) -> Result<Option<ObservedOriginAccess>> {
    let cf = &ctx.aws.cloudfront;
    let mut marker: Option<String> = None;
    loop {
        let out = cf
            .list_origin_access_controls()
            .set_marker(marker.clone())
            .send()
            .await
            .map_err(|e| Error::aws("cloudfront:ListOriginAccessControls", e))?;
        let Some(list) = out.origin_access_control_list() else {
            return Ok(None);
        };
        if let Some(s) = list.items().iter().find(|s| s.name() == name) {
            return Ok(Some(ObservedOriginAccess {
                id: s.id().to_string(),
                name: s.name().to_string(),
                description: s.description().to_string(),
                signing_protocol: s.signing_protocol().as_str().to_string(),
                signing_behavior: s.signing_behavior().as_str().to_string(),
                origin_type: s.origin_access_control_origin_type().as_str().to_string(),
            }));
        }
        match list.next_marker() {
            Some(m) if list.is_truncated() && !m.is_empty() && marker.as_deref() != Some(m) => {
                marker = Some(m.to_string());
            }
            _ => return Ok(None),
        }
    }
}

fn oac_config(d: &DesiredOriginAccess) -> Result<OriginAccessControlConfig> {
    OriginAccessControlConfig::builder()
        .name(&d.name)
        .description(&d.description)
        .signing_protocol(OriginAccessControlSigningProtocols::from(SIGNING_PROTOCOL))
        .signing_behavior(OriginAccessControlSigningBehaviors::from(SIGNING_BEHAVIOR))
        .origin_access_control_origin_type(OriginAccessControlOriginTypes::from(ORIGIN_TYPE))
        .build()
        .map_err(|e| Error::InvalidSpec(format!("origin access control: {e}")))
}

/// `GetOriginAccessControlConfig`: the current description and ETag, `None` when gone.
async fn config_and_etag(ctx: &Ctx<'_>, oac_id: &str) -> Result<Option<(String, String)>> {
    match ctx
        .aws
        .cloudfront
        .get_origin_access_control_config()
        .id(oac_id)
        .send()
        .await
    {
        Ok(out) => {
            let etag = out.e_tag().unwrap_or_default().to_string();
            let description = out
                .origin_access_control_config()
                .and_then(|c| c.description())
                .unwrap_or_default()
                .to_string();
            Ok(Some((description, etag)))
        }
        Err(e) if code_of(&e) == Some("NoSuchOriginAccessControl") => Ok(None),
        Err(e) => Err(Error::aws("cloudfront:GetOriginAccessControlConfig", e)),
    }
}

fn precondition_failed(action: &str, what: &str) -> Error {
    Error::Aws {
        action: action.into(),
        code: "PreconditionFailed".into(),
        message: format!("{what} changed concurrently twice in a row; retrying later"),
        class: ErrorClass::Retryable,
    }
}

/// Create the OAC when missing, repair its signing settings when they differ.
/// Returns the report (`id` = the OAC id) and the OAC id for the distribution
/// (`None` only when it does not exist and the stack is paused).
pub async fn reconcile(ctx: &Ctx<'_>, d: &DesiredOriginAccess) -> Result<(Report, Option<String>)> {
    let mut report = Report::ready(COMPONENT, d.name.clone());
    let observed = match observe(ctx, &d.name).await? {
        Some(o) => o,
        None if ctx.dry_run => {
            report.state = State::Paused {
                message: "origin access control does not exist; creation paused".into(),
            };
            return Ok((report, None));
        }
        None => match create(ctx, d).await? {
            Some(id) => {
                report.created = true;
                report.id = id.clone();
                return Ok((report, Some(id)));
            }
            // Created concurrently or by an interrupted earlier pass: adopt it.
            None => observe(ctx, &d.name).await?.ok_or_else(|| Error::Aws {
                action: "cloudfront:ListOriginAccessControls".into(),
                code: "NotFoundAfterCreate".into(),
                message: format!(
                    "origin access control {} exists but is not listed yet",
                    d.name
                ),
                class: ErrorClass::Retryable,
            })?,
        },
    };
    check_owner(d, &observed)?;
    report.id = observed.id.clone();
    let changes = diff(&observed);
    if changes.is_empty() {
        return Ok((report, Some(observed.id)));
    }
    if ctx.dry_run {
        report.state = State::Paused {
            message: describe(&changes),
        };
        return Ok((report, Some(observed.id)));
    }
    update(ctx, d, &observed.id).await?;
    report.changes = changes;
    Ok((report, Some(observed.id)))
}

/// `CreateOriginAccessControl`; `Ok(None)` when the name is already taken
/// (the caller observes again and judges ownership).
async fn create(ctx: &Ctx<'_>, d: &DesiredOriginAccess) -> Result<Option<String>> {
    match ctx
        .aws
        .cloudfront
        .create_origin_access_control()
        .origin_access_control_config(oac_config(d)?)
        .send()
        .await
    {
        Ok(out) => {
            let id = out
                .origin_access_control()
                .map(|o| o.id().to_string())
                .ok_or_else(|| Error::Aws {
                    action: "cloudfront:CreateOriginAccessControl".into(),
                    code: "MissingId".into(),
                    message: "the response carries no origin access control id".into(),
                    class: ErrorClass::Retryable,
                })?;
            tracing::info!(name = %d.name, id = %id, "created CloudFront origin access control");
            Ok(Some(id))
        }
        Err(e) if code_of(&e) == Some("OriginAccessControlAlreadyExists") => Ok(None),
        Err(e) => Err(Error::aws("cloudfront:CreateOriginAccessControl", e)),
    }
}

/// Update with a fresh ETag; one retry on `PreconditionFailed`.
async fn update(ctx: &Ctx<'_>, d: &DesiredOriginAccess, oac_id: &str) -> Result<()> {
    const ACTION: &str = "cloudfront:UpdateOriginAccessControl";
    for attempt in 0..2 {
        let Some((description, etag)) = config_and_etag(ctx, oac_id).await? else {
            return Err(Error::Aws {
                action: ACTION.into(),
                code: "NoSuchOriginAccessControl".into(),
                message: format!("origin access control {oac_id} disappeared during the update"),
                class: ErrorClass::Retryable,
            });
        };
        // Ownership is re-checked on the fresh read: never overwrite someone else's OAC.
        if description != d.description {
            return Err(Error::NameConflict {
                kind: "CloudFront origin access control",
                name: d.name.clone(),
                owner: format!("description changed to {description:?}"),
            });
        }
        match ctx
            .aws
            .cloudfront
            .update_origin_access_control()
            .id(oac_id)
            .if_match(etag)
            .origin_access_control_config(oac_config(d)?)
            .send()
            .await
        {
            Ok(_) => {
                tracing::info!(name = %d.name, id = %oac_id, "updated CloudFront origin access control");
                return Ok(());
            }
            Err(e) if code_of(&e) == Some("PreconditionFailed") && attempt == 0 => continue,
            Err(e) if code_of(&e) == Some("PreconditionFailed") => {
                return Err(precondition_failed(ACTION, "the origin access control"));
            }
            Err(e) => return Err(Error::aws(ACTION, e)),
        }
    }
    Err(precondition_failed(ACTION, "the origin access control"))
}

/// Delete the OAC if it is this stack's. While a distribution still uses it
/// (`OriginAccessControlInUse`) the deletion is `InProgress`: the distribution
/// is deleted first, over several passes.
pub async fn delete(ctx: &Ctx<'_>, d: &DesiredOriginAccess) -> Result<Deletion> {
    const ACTION: &str = "cloudfront:DeleteOriginAccessControl";
    let Some(observed) = observe(ctx, &d.name).await? else {
        return Ok(Deletion::Gone);
    };
    if check_owner(d, &observed).is_err() {
        tracing::warn!(name = %d.name, description = %observed.description,
            "not deleting an origin access control that does not name this stack");
        return Ok(Deletion::Gone);
    }
    for attempt in 0..2 {
        let Some((_, etag)) = config_and_etag(ctx, &observed.id).await? else {
            return Ok(Deletion::Gone);
        };
        match ctx
            .aws
            .cloudfront
            .delete_origin_access_control()
            .id(&observed.id)
            .if_match(etag)
            .send()
            .await
        {
            Ok(_) => {
                tracing::info!(name = %d.name, id = %observed.id, "deleted CloudFront origin access control");
                return Ok(Deletion::Gone);
            }
            Err(e) if code_of(&e) == Some("NoSuchOriginAccessControl") => {
                return Ok(Deletion::Gone);
            }
            Err(e) if code_of(&e) == Some("OriginAccessControlInUse") => {
                return Ok(Deletion::InProgress(format!(
                    "origin access control {} is still used by a distribution; waiting for the distribution to be deleted",
                    observed.id
                )));
            }
            Err(e) if code_of(&e) == Some("PreconditionFailed") && attempt == 0 => continue,
            Err(e) if code_of(&e) == Some("PreconditionFailed") => {
                return Err(precondition_failed(ACTION, "the origin access control"));
            }
            Err(e) => return Err(Error::aws(ACTION, e)),
        }
    }
    Err(precondition_failed(ACTION, "the origin access control"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> StackId {
        StackId::new("team-a", "images", "dev")
    }

    fn in_sync() -> ObservedOriginAccess {
        let d = desired(&id());
        ObservedOriginAccess {
            id: "E1".into(),
            name: d.name,
            description: d.description,
            signing_protocol: "sigv4".into(),
            signing_behavior: "always".into(),
            origin_type: "s3".into(),
        }
    }

    #[test]
    fn names_are_deterministic_bounded_and_distinct() {
        assert_eq!(oac_name(&id()), oac_name(&id()));
        assert!(oac_name(&id()).starts_with("imagestack-dev-oac-"));
        assert_ne!(
            oac_name(&StackId::new("a-b", "c", "dev")),
            oac_name(&StackId::new("a", "b-c", "dev"))
        );
        let long = StackId::new("n".repeat(63), "x".repeat(253), "e".repeat(20));
        assert!(oac_name(&long).len() <= MAX_NAME_LEN);
        assert!(oac_description(&long).len() <= MAX_DESCRIPTION_LEN);
        assert_eq!(oac_description(&id()), "imagestack team-a/images");
    }

    #[test]
    fn in_sync_has_no_diff_and_drift_is_named() {
        assert!(diff(&in_sync()).is_empty());
        let mut o = in_sync();
        o.signing_behavior = "no-override".into();
        o.signing_protocol = String::new();
        let text: Vec<String> = diff(&o).iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "signingProtocol: unset → sigv4",
                "signingBehavior: no-override → always"
            ]
        );
    }

    #[test]
    fn ownership_by_description() {
        let d = desired(&id());
        assert!(check_owner(&d, &in_sync()).is_ok());
        let mut o = in_sync();
        o.description = "imagestack other/stack".into();
        let e = check_owner(&d, &o).unwrap_err();
        assert_eq!(e.reason(), "NameConflict");
        assert!(e.to_string().contains("owned by stack other/stack"), "{e}");
        o.description = "hand made".into();
        let e = check_owner(&d, &o).unwrap_err();
        assert!(e.to_string().contains("hand made"), "{e}");
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        assert_eq!(truncate("abcdef", 3), "abc");
        assert_eq!(truncate("aé", 2), "a");
        assert_eq!(truncate("ab", 5), "ab");
    }
}

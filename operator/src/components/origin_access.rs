//! The CloudFront origin access control (OAC) of a stack: SigV4, always sign,
//! origin type S3. The distribution's three S3 origins use it, and the output
//! buckets' policies grant `cloudfront.amazonaws.com` read access conditioned
//! on the distribution's ARN.
//!
//! OACs cannot be tagged. Ownership is therefore the deterministic name
//! ([`oac_name`], a hash of the stack's identity) plus a description naming
//! the stack and the installation ([`oac_description`]:
//! `imagestack <namespace>/<name> cluster=<cluster id>`), judged by
//! [`description_ownership`]. The description written by versions before
//! installation ids (`imagestack <namespace>/<name>`) is adopted and rewritten
//! with the cluster id; a same-named OAC describing another stack, another
//! installation or nothing of ours is a `NameConflict` and is never touched.
//!
//! Updates and deletes need the current ETag (`IfMatch`): it is read with
//! `GetOriginAccessControlConfig` right before the write, and a
//! `PreconditionFailed` (someone else wrote in between) is retried once.
//! While a distribution still uses the OAC, its deletion is `InProgress`.

use aws_sdk_cloudfront::types::{
    OriginAccessControlConfig, OriginAccessControlOriginTypes, OriginAccessControlSigningBehaviors,
    OriginAccessControlSigningProtocols,
};

use super::{
    Change, Component, ComponentName, Created, Ctx, Deletion, GuardedDelete, Output, Updated,
    changed_concurrently, code_of, delete_with_etag,
};
use crate::error::{Error, ErrorClass, Result};
use crate::naming::{NAME_PREFIX, OwnerNote, Ownership, StackId, cut};

/// The kind of resource, as errors and events name it.
const KIND: &str = "CloudFront origin access control";
/// Signing protocol of the OAC.
pub const SIGNING_PROTOCOL: &str = "sigv4";
/// Signing behaviour of the OAC: CloudFront signs every origin request.
pub const SIGNING_BEHAVIOR: &str = "always";
/// Origin type of the OAC.
pub const ORIGIN_TYPE: &str = "s3";
/// AWS limit on OAC names.
pub const MAX_NAME_LEN: usize = 64;
/// AWS limit on OAC descriptions.
pub const MAX_DESCRIPTION_LEN: usize = 256;

/// Deterministic OAC name: `imagestack-<env>-oac-<hash16>` (at most
/// 11 + 20 + 5 + 16 = 52 characters; cut to the 64-character limit anyway).
pub fn oac_name(id: &StackId) -> String {
    cut(
        &format!(
            "{NAME_PREFIX}-{}-oac-{}",
            id.environment,
            id.hash("origin-access-control", 16)
        ),
        MAX_NAME_LEN,
    )
    .to_string()
}

/// How an OAC's description names its owner.
const NOTE: OwnerNote = OwnerNote {
    max_len: MAX_DESCRIPTION_LEN,
    salt: "origin-access-control-owner",
};

/// The description written before installation ids existed:
/// `imagestack <namespace>/<name>` (cut to 256 characters). Still adopted.
pub fn legacy_description(id: &StackId) -> String {
    NOTE.legacy(id)
}

/// Description naming the owning stack and installation:
/// `imagestack <namespace>/<name> cluster=<cluster id>` (at most 256
/// characters; deterministic). Without a cluster id (unit tests) it is the
/// legacy form `imagestack <namespace>/<name>`.
pub fn oac_description(id: &StackId) -> String {
    NOTE.text(id)
}

/// Who owns an OAC with this description ([`OwnerNote::ownership`]).
pub fn description_ownership(id: &StackId, description: &str) -> Ownership {
    NOTE.ownership(id, description)
}

/// What the OAC should look like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredOriginAccess {
    /// Deterministic name ([`oac_name`]).
    pub name: String,
    /// Names the stack and installation ([`oac_description`]).
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
    /// The OAC's id (what origins reference).
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its description (ownership: [`description_ownership`]).
    pub description: String,
    /// `sigv4`.
    pub signing_protocol: String,
    /// `always`, `never` or `no-override`.
    pub signing_behavior: String,
    /// `s3`, `mediastore`, ….
    pub origin_type: String,
}

/// Every differing setting. The name is identity and never differs; the
/// description differs only when it is a legacy one of this stack (ownership
/// is judged before), and is then rewritten with the installation's id.
pub fn diff(d: &DesiredOriginAccess, observed: &ObservedOriginAccess) -> Vec<Change> {
    let mut out = Vec::new();
    if observed.description != d.description {
        out.push(Change::new(
            "description",
            or_unset(&observed.description),
            &d.description,
        ));
    }
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

/// Find the OAC named `name`; `None` when there is none.
pub async fn observe(cx: &Ctx<'_>, name: &str) -> Result<Option<ObservedOriginAccess>> {
    let cf = &cx.aws.cloudfront;
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
async fn config_and_etag(cx: &Ctx<'_>, oac_id: &str) -> Result<Option<(String, String)>> {
    match cx
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

impl Component for DesiredOriginAccess {
    type Observed = ObservedOriginAccess;

    fn name(&self) -> ComponentName {
        ComponentName::OriginAccessControl
    }
    fn kind(&self) -> &'static str {
        KIND
    }
    /// The OAC's name.
    fn id(&self) -> String {
        self.name.clone()
    }
    /// The OAC's id.
    fn observed_id(&self, seen: &ObservedOriginAccess) -> Option<String> {
        Some(seen.id.clone())
    }

    async fn observe(&self, cx: &Ctx<'_>) -> Result<Option<ObservedOriginAccess>> {
        observe(cx, &self.name).await
    }

    /// OACs cannot be tagged: the description names the owner.
    fn ownership(&self, cx: &Ctx<'_>, seen: &ObservedOriginAccess) -> Ownership {
        description_ownership(cx.id, &seen.description)
    }

    fn diff(&self, _cx: &Ctx<'_>, seen: &ObservedOriginAccess) -> Result<Vec<Change>> {
        Ok(diff(self, seen))
    }

    /// `CreateOriginAccessControl`. A taken name (created concurrently or by
    /// an interrupted earlier pass) is no error: the driver observes again
    /// and judges ownership by the description.
    async fn create(&self, cx: &Ctx<'_>) -> Result<Created> {
        match cx
            .aws
            .cloudfront
            .create_origin_access_control()
            .origin_access_control_config(oac_config(self)?)
            .send()
            .await
        {
            Ok(_) => Ok(Created::done()),
            Err(e) if code_of(&e) == Some("OriginAccessControlAlreadyExists") => {
                tracing::info!(name = %self.name, "origin access control already exists; observing it");
                Ok(Created::done())
            }
            Err(e) => Err(Error::aws("cloudfront:CreateOriginAccessControl", e)),
        }
    }

    /// Write the whole configuration with a fresh ETag; one retry on
    /// `PreconditionFailed`. Ownership is re-checked on the fresh read: never
    /// overwrite an OAC that stopped being this stack's in between.
    async fn update(
        &self,
        cx: &Ctx<'_>,
        seen: &ObservedOriginAccess,
        changes: &[Change],
    ) -> Result<Updated> {
        const ACTION: &str = "cloudfront:UpdateOriginAccessControl";
        for attempt in 0..2 {
            let Some((description, etag)) = config_and_etag(cx, &seen.id).await? else {
                return Err(Error::Aws {
                    action: ACTION.into(),
                    code: "NoSuchOriginAccessControl".into(),
                    message: format!(
                        "origin access control {} disappeared during the update",
                        seen.id
                    ),
                    class: ErrorClass::Retryable,
                });
            };
            if let Some(owner) = description_ownership(cx.id, &description).owner() {
                return Err(Error::NameConflict {
                    kind: KIND,
                    name: self.name.clone(),
                    owner: format!("{owner}; description changed to {description:?}"),
                });
            }
            match cx
                .aws
                .cloudfront
                .update_origin_access_control()
                .id(&seen.id)
                .if_match(etag)
                .origin_access_control_config(oac_config(self)?)
                .send()
                .await
            {
                Ok(_) => return Ok(Updated::all(changes)),
                Err(e) if code_of(&e) == Some("PreconditionFailed") && attempt == 0 => continue,
                Err(e) if code_of(&e) == Some("PreconditionFailed") => {
                    return Err(changed_concurrently(ACTION, "the origin access control"));
                }
                Err(e) => return Err(Error::aws(ACTION, e)),
            }
        }
        Err(changed_concurrently(ACTION, "the origin access control"))
    }

    fn outputs(&self, _cx: &Ctx<'_>, seen: &ObservedOriginAccess) -> Vec<Output> {
        vec![Output::OriginAccessControlId(seen.id.clone())]
    }

    /// Delete with a fresh ETag (one retry on `PreconditionFailed`). While a
    /// distribution still uses it (`OriginAccessControlInUse`) the deletion is
    /// `InProgress`: the distribution goes first, over several passes.
    async fn delete(&self, cx: &Ctx<'_>, seen: &ObservedOriginAccess) -> Result<Deletion> {
        let guard = GuardedDelete {
            action: "cloudfront:DeleteOriginAccessControl",
            what: "the origin access control",
            absent: "NoSuchOriginAccessControl",
            in_use: "OriginAccessControlInUse",
            in_use_message: format!(
                "origin access control {} is still used by a distribution; waiting for the distribution to be deleted",
                seen.id
            ),
        };
        delete_with_etag(
            guard,
            || async { Ok(config_and_etag(cx, &seen.id).await?.map(|(_, etag)| etag)) },
            |etag| {
                cx.aws
                    .cloudfront
                    .delete_origin_access_control()
                    .id(&seen.id)
                    .if_match(etag)
                    .send()
            },
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> StackId {
        StackId::new("team-a", "images", "dev").in_cluster("cluster-a")
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
        // The installation is part of ownership, not of the name.
        assert_eq!(
            oac_name(&id()),
            oac_name(&StackId::new("team-a", "images", "dev"))
        );
        let long = StackId::new("n".repeat(63), "x".repeat(253), "e".repeat(20))
            .in_cluster("0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0");
        assert!(oac_name(&long).len() <= MAX_NAME_LEN);
        assert!(oac_description(&long).len() <= MAX_DESCRIPTION_LEN);
        assert!(
            oac_description(&long).ends_with(" cluster=0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"),
            "{}",
            oac_description(&long)
        );
        assert_eq!(
            oac_description(&id()),
            "imagestack team-a/images cluster=cluster-a"
        );
        assert_eq!(
            oac_description(&StackId::new("team-a", "images", "dev")),
            "imagestack team-a/images"
        );
    }

    #[test]
    fn in_sync_has_no_diff_and_drift_is_named() {
        let d = desired(&id());
        assert!(diff(&d, &in_sync()).is_empty());
        let mut o = in_sync();
        o.signing_behavior = "no-override".into();
        o.signing_protocol = String::new();
        let text: Vec<String> = diff(&d, &o).iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "signingProtocol: unset → sigv4",
                "signingBehavior: no-override → always"
            ]
        );
    }

    #[test]
    fn ownership_ours_legacy_other_cluster_other_stack_foreign() {
        let me = id();
        assert_eq!(
            description_ownership(&me, &in_sync().description),
            Ownership::Ours
        );
        // Written by the version before installation ids: ours, and the
        // description is rewritten with the cluster id.
        let legacy = "imagestack team-a/images";
        assert_eq!(description_ownership(&me, legacy), Ownership::Ours);
        let mut o = in_sync();
        o.description = legacy.into();
        let text: Vec<String> = diff(&desired(&me), &o)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            text,
            ["description: imagestack team-a/images → imagestack team-a/images cluster=cluster-a"]
        );
        assert_eq!(
            description_ownership(&me, "imagestack team-a/images cluster=cluster-b"),
            Ownership::OtherCluster("cluster-b".into())
        );
        assert_eq!(
            description_ownership(&me, "imagestack other/stack"),
            Ownership::OtherStack("other/stack".into())
        );
        assert_eq!(
            description_ownership(&me, "imagestack other/stack cluster=cluster-a"),
            Ownership::OtherStack("other/stack".into())
        );
        // A prefix of our name is another stack, not ours.
        assert_eq!(
            description_ownership(&me, "imagestack team-a/images2 cluster=cluster-a"),
            Ownership::OtherStack("team-a/images2".into())
        );
        for foreign in ["hand made", "", "imagestack ", "imagestack made by hand"] {
            assert_eq!(
                description_ownership(&me, foreign),
                Ownership::Foreign,
                "{foreign:?}"
            );
        }
        let owner = description_ownership(&me, "imagestack other/stack")
            .owner()
            .unwrap_or_default();
        assert!(owner.contains("other/stack"), "{owner}");
    }

    #[test]
    fn long_identities_keep_ownership_distinct() {
        let a = StackId::new("n".repeat(63), "x".repeat(253), "dev").in_cluster("cluster-a");
        let b = a.clone().in_cluster("cluster-b");
        let other =
            StackId::new("n".repeat(63), "x".repeat(252) + "y", "dev").in_cluster("cluster-a");
        assert_eq!(
            description_ownership(&a, &oac_description(&a)),
            Ownership::Ours
        );
        assert_eq!(
            description_ownership(&a, &oac_description(&b)),
            Ownership::OtherCluster("cluster-b".into())
        );
        assert_ne!(
            description_ownership(&a, &oac_description(&other)),
            Ownership::Ours
        );
        assert_eq!(
            description_ownership(&a, &legacy_description(&a)),
            Ownership::Ours
        );
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        assert_eq!(cut("abcdef", 3), "abc");
        assert_eq!(cut("aé", 2), "a");
        assert_eq!(cut("ab", 5), "ab");
    }
}

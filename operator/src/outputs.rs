//! The stack's outputs as a ConfigMap apps can consume (`spec.writeOutputsTo`),
//! like Crossplane's connection details or ACK's FieldExport: an app's
//! Deployment `envFrom`s it and gets `IMAGESTACK_CDN_URL`, the bucket names …
//!
//! The ConfigMap is owned by the stack (a controller ownerReference, so a
//! cluster's garbage collector deletes it with the stack; the operator also
//! deletes it in cleanup, and when `writeOutputsTo` names another one). A
//! ConfigMap of that name without this stack's ownerReference is never
//! touched: `Stalled`/`NameConflict`. It is written only when its data differ.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams};
use kube::{Client, Resource, ResourceExt};

use crate::api::{ImageOptimizationStack, StackOutputs};
use crate::error::{Error, Result};

/// Prefix of every key.
pub const KEY_PREFIX: &str = "IMAGESTACK_";
/// Label naming the stack on the ConfigMap.
pub const STACK_LABEL: &str = "imagestack.dev/stack";

/// The ConfigMap's data: one `IMAGESTACK_*` key per known output.
pub fn data(o: &StackOutputs) -> BTreeMap<String, String> {
    let cdn_url = o.cdn_domain.as_ref().map(|d| format!("https://{d}"));
    [
        ("REGION", &o.region),
        ("UPLOAD_BUCKET", &o.upload_bucket),
        ("WEBP_BUCKET", &o.webp_bucket),
        ("JPEG_BUCKET", &o.jpeg_bucket),
        ("PNG_BUCKET", &o.png_bucket),
        ("AVIF_BUCKET", &o.avif_bucket),
        ("TABLE_NAME", &o.table_name),
        ("FUNCTION_NAME", &o.function_name),
        ("DISTRIBUTION_ID", &o.distribution_id),
        ("CDN_DOMAIN", &o.cdn_domain),
        ("CDN_URL", &cdn_url),
        ("IMAGE_URL_PREFIX", &o.image_url_prefix),
        ("DASHBOARD_NAME", &o.dashboard_name),
        ("DASHBOARD_URL", &o.dashboard_url),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.as_ref().map(|v| (format!("{KEY_PREFIX}{k}"), v.clone())))
    .collect()
}

/// Whether the ConfigMap carries this stack's ownerReference.
fn owned_by(cm: &ConfigMap, stack: &ImageOptimizationStack) -> bool {
    let Some(uid) = stack.meta().uid.as_deref() else {
        return false;
    };
    cm.owner_references().iter().any(|r| r.uid == uid)
}

fn conflict(name: &str, cm: &ConfigMap) -> Error {
    let owners: Vec<String> = cm
        .owner_references()
        .iter()
        .map(|r| format!("{}/{}", r.kind, r.name))
        .collect();
    Error::NameConflict {
        kind: "ConfigMap",
        name: name.to_string(),
        owner: if owners.is_empty() {
            "it has no ownerReference to this stack".to_string()
        } else {
            format!("owned by {}", owners.join(", "))
        },
    }
}

/// Create or update the ConfigMap `name`; `Ok(true)` when something was written.
pub async fn sync(
    client: &Client,
    stack: &ImageOptimizationStack,
    name: &str,
    outputs: &StackOutputs,
) -> Result<bool> {
    let ns = stack.namespace().unwrap_or_default();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let want = data(outputs);
    match api.get_opt(name).await? {
        None => {
            let owner = stack.controller_owner_ref(&()).ok_or_else(|| {
                Error::Internal("the stack has no uid for an ownerReference".into())
            })?;
            let cm = ConfigMap {
                metadata: ObjectMeta {
                    name: Some(name.to_string()),
                    namespace: Some(ns),
                    owner_references: Some(vec![owner]),
                    labels: Some(BTreeMap::from([
                        (STACK_LABEL.to_string(), stack.name_any()),
                        (
                            "app.kubernetes.io/managed-by".to_string(),
                            "imagestack-operator".to_string(),
                        ),
                    ])),
                    ..Default::default()
                },
                data: Some(want),
                ..Default::default()
            };
            api.create(&PostParams::default(), &cm).await?;
            Ok(true)
        }
        Some(cm) if !owned_by(&cm, stack) => Err(conflict(name, &cm)),
        Some(cm) if cm.data.as_ref() == Some(&want) => Ok(false),
        Some(mut cm) => {
            // resourceVersion kept: a concurrent writer makes this a 409, retried.
            cm.data = Some(want);
            api.replace(name, &PostParams::default(), &cm).await?;
            Ok(true)
        }
    }
}

/// Delete the ConfigMap `name` if it is this stack's (gone is fine).
pub async fn remove(client: &Client, stack: &ImageOptimizationStack, name: &str) -> Result<()> {
    let ns = stack.namespace().unwrap_or_default();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    match api.get_opt(name).await? {
        Some(cm) if owned_by(&cm, stack) => {
            match api.delete(name, &DeleteParams::default()).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
                Err(e) => Err(e.into()),
            }
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_env_var_names_and_only_known_outputs_appear() {
        let o = StackOutputs {
            region: Some("eu-west-1".into()),
            upload_bucket: Some("up".into()),
            cdn_domain: Some("d1.cloudfront.net".into()),
            ..Default::default()
        };
        let d = data(&o);
        assert_eq!(d["IMAGESTACK_REGION"], "eu-west-1");
        assert_eq!(d["IMAGESTACK_UPLOAD_BUCKET"], "up");
        assert_eq!(d["IMAGESTACK_CDN_URL"], "https://d1.cloudfront.net");
        assert!(!d.contains_key("IMAGESTACK_TABLE_NAME"));
        assert!(
            d.keys()
                .all(|k| k.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
        );
    }
}

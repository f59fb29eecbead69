//! The CloudFront components and the dashboard against the AWS emulator (moto
//! over HTTPS with our CloudFront patches, started by
//! scripts/emulator/start.sh), each driven on its own by the generic driver
//! (`driver::reconcile_one` / `driver::delete_one`): create → read every field
//! back with the SDK → poll until Ready → second pass makes zero writes →
//! out-of-band change repaired → ownership (legacy adopted, another stack or
//! installation left alone) → delete (distribution state machine, then the
//! origin access control).
//!
//! Run: `. $(scripts/emulator/start.sh) && cargo test -p imagestack-operator --test cloudfront_emulator`.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_cloudfront::types::{
    Method, OriginAccessControlConfig, OriginAccessControlOriginTypes,
    OriginAccessControlSigningBehaviors, OriginAccessControlSigningProtocols, PriceClass, TagKeys,
    ViewerProtocolPolicy,
};
use imagestack_contract::Format;
use imagestack_operator::aws::AwsClients;
use imagestack_operator::components::cache_policy;
use imagestack_operator::components::dashboard::{self, DashboardInput};
use imagestack_operator::components::distribution::{
    self, DEPLOYING_REASON, DesiredDistribution, DistributionOutputs,
};
use imagestack_operator::components::origin_access::{self, DesiredOriginAccess};
use imagestack_operator::components::{Component, Ctx, Deletion, Output, Resolved, State};
use imagestack_operator::driver::{self, Node};
use imagestack_operator::error::Error;
use imagestack_operator::naming::{OWNER_TAG, StackId};
use serde_json::{Value, json};

mod common;
use common::{Harness, harness, unique};

fn deploying(state: &State) -> bool {
    matches!(state, State::Progressing { reason, .. } if reason == DEPLOYING_REASON)
}

fn ctx<'a>(h: &'a Harness, id: &'a StackId, inputs: &'a Resolved, dry_run: bool) -> Ctx<'a> {
    Ctx {
        aws: &h.aws,
        id,
        dry_run,
        inputs,
    }
}

async fn cf_tags(aws: &AwsClients, arn: &str) -> BTreeMap<String, String> {
    let out = aws
        .cloudfront
        .list_tags_for_resource()
        .resource(arn)
        .send()
        .await
        .unwrap();
    out.tags()
        .map(|t| t.items())
        .unwrap_or_default()
        .iter()
        .map(|t| {
            (
                t.key().to_string(),
                t.value().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// Write an OAC configuration out of band (with the ETag the emulator enforces).
async fn put_oac(
    h: &Harness,
    oac_id: &str,
    d: &DesiredOriginAccess,
    description: &str,
    behavior: OriginAccessControlSigningBehaviors,
) {
    let cf = &h.aws.cloudfront;
    let etag = cf
        .get_origin_access_control_config()
        .id(oac_id)
        .send()
        .await
        .unwrap()
        .e_tag()
        .unwrap()
        .to_string();
    cf.update_origin_access_control()
        .id(oac_id)
        .if_match(etag)
        .origin_access_control_config(
            OriginAccessControlConfig::builder()
                .name(&d.name)
                .description(description)
                .signing_protocol(OriginAccessControlSigningProtocols::Sigv4)
                .signing_behavior(behavior)
                .origin_access_control_origin_type(OriginAccessControlOriginTypes::S3)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
}

async fn oac_description(h: &Harness, oac_id: &str) -> String {
    h.aws
        .cloudfront
        .get_origin_access_control()
        .id(oac_id)
        .send()
        .await
        .unwrap()
        .origin_access_control()
        .unwrap()
        .origin_access_control_config()
        .unwrap()
        .description()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn origin_access_control_create_read_back_drift_ownership_delete() {
    let h = harness("environment: dev").await;
    let id = h.desired.id.clone().in_cluster(unique("cluster"));
    let d = origin_access::desired(&id);
    let none = Resolved::default();
    let cx = ctx(&h, &id, &none, false);
    let cf = &h.aws.cloudfront;

    // Paused: observes only.
    let before = h.writes();
    let r = driver::reconcile_one(&ctx(&h, &id, &none, true), &d)
        .await
        .unwrap();
    assert!(matches!(r.state, State::Paused { .. }), "{r:?}");
    assert_eq!(h.writes(), before);

    let r = driver::reconcile_one(&cx, &d).await.unwrap();
    assert!(r.created, "{r:?}");
    assert_eq!(r.state, State::Ready);
    let oac_id = r.id.clone();
    assert_ne!(oac_id, d.name, "the report names the OAC's id");

    // Read back.
    let got = cf
        .get_origin_access_control()
        .id(&oac_id)
        .send()
        .await
        .unwrap();
    let c = got
        .origin_access_control()
        .unwrap()
        .origin_access_control_config()
        .unwrap();
    assert_eq!(c.name(), d.name);
    assert_eq!(c.description(), Some(d.description.as_str()));
    assert!(
        d.description.ends_with(&format!(" cluster={}", id.cluster)),
        "{}",
        d.description
    );
    assert_eq!(c.signing_protocol().as_str(), "sigv4");
    assert_eq!(c.signing_behavior().as_str(), "always");
    assert_eq!(c.origin_access_control_origin_type().as_str(), "s3");

    // Second pass: zero writes; the id is handed to the distribution.
    let before = h.writes();
    let (_, again, outputs) = Node::reconcile(&d, &cx).await;
    assert_eq!(again, oac_id);
    assert_eq!(outputs, [Output::OriginAccessControlId(oac_id.clone())]);
    assert_eq!(h.writes(), before, "{:?}", h.stats.write_operations());

    // Out of band: signing behaviour changed.
    put_oac(
        &h,
        &oac_id,
        &d,
        &d.description,
        OriginAccessControlSigningBehaviors::NoOverride,
    )
    .await;
    let r = driver::reconcile_one(&cx, &d).await.unwrap();
    let text: Vec<String> = r.changes.iter().map(ToString::to_string).collect();
    assert_eq!(text, ["signingBehavior: no-override → always"], "{r:?}");
    let got = cf
        .get_origin_access_control()
        .id(&oac_id)
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.origin_access_control()
            .unwrap()
            .origin_access_control_config()
            .unwrap()
            .signing_behavior()
            .as_str(),
        "always"
    );
    let before = h.writes();
    driver::reconcile_one(&cx, &d).await.unwrap();
    assert_eq!(h.writes(), before);

    // Written by the version before installation ids: adopted, and the
    // description is rewritten with the cluster id.
    let legacy = origin_access::legacy_description(&id);
    put_oac(
        &h,
        &oac_id,
        &d,
        &legacy,
        OriginAccessControlSigningBehaviors::Always,
    )
    .await;
    let r = driver::reconcile_one(&cx, &d).await.unwrap();
    let fields: Vec<&str> = r.changes.iter().map(|c| c.field.as_str()).collect();
    assert_eq!(fields, ["description"], "{r:?}");
    assert_eq!(oac_description(&h, &oac_id).await, d.description);

    // The same namespace/name in another installation: a conflict, never touched.
    let other_cluster = id.clone().in_cluster(unique("cluster"));
    let od = origin_access::desired(&other_cluster);
    assert_eq!(od.name, d.name, "names do not depend on the installation");
    let ocx = ctx(&h, &other_cluster, &none, false);
    let before = h.writes();
    let err = driver::reconcile_one(&ocx, &od).await.unwrap_err();
    assert!(matches!(err, Error::NameConflict { .. }), "{err}");
    assert!(err.to_string().contains(&id.cluster), "{err}");
    assert_eq!(
        driver::delete_one(&ocx, &od).await.unwrap(),
        Deletion::Absent
    );
    assert_eq!(
        h.writes(),
        before,
        "nothing written by the other installation"
    );
    assert_eq!(oac_description(&h, &oac_id).await, d.description);

    // A same-named OAC describing another stack is a conflict, never touched.
    let other = StackId::new(unique("ns"), "other", "dev");
    let od = origin_access::desired(&other);
    let theirs = cf
        .create_origin_access_control()
        .origin_access_control_config(
            OriginAccessControlConfig::builder()
                .name(&od.name)
                .description("imagestack someone/else")
                .signing_protocol(OriginAccessControlSigningProtocols::Sigv4)
                .signing_behavior(OriginAccessControlSigningBehaviors::Never)
                .origin_access_control_origin_type(OriginAccessControlOriginTypes::S3)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let theirs = theirs.origin_access_control().unwrap().id().to_string();
    let before = h.writes();
    let err = driver::reconcile_one(&h.ctx_for(&other), &od)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NameConflict { .. }), "{err}");
    assert!(err.to_string().contains("someone/else"), "{err}");
    assert_eq!(
        driver::delete_one(&h.ctx_for(&other), &od).await.unwrap(),
        Deletion::Absent
    );
    assert_eq!(h.writes(), before, "nothing written to a foreign OAC");
    assert!(
        cf.get_origin_access_control()
            .id(&theirs)
            .send()
            .await
            .is_ok()
    );
    let etag = cf
        .get_origin_access_control_config()
        .id(&theirs)
        .send()
        .await
        .unwrap()
        .e_tag()
        .unwrap()
        .to_string();
    cf.delete_origin_access_control()
        .id(&theirs)
        .if_match(etag)
        .send()
        .await
        .unwrap();

    // Delete: gone, idempotent.
    assert_eq!(driver::delete_one(&cx, &d).await.unwrap(), Deletion::Gone);
    assert!(
        cf.get_origin_access_control()
            .id(&oac_id)
            .send()
            .await
            .is_err()
    );
    let before = h.writes();
    assert_eq!(driver::delete_one(&cx, &d).await.unwrap(), Deletion::Absent);
    assert_eq!(h.writes(), before);
}

/// The cache policy as CloudFront returns it.
async fn cache_policy_config(
    h: &Harness,
    policy_id: &str,
) -> (aws_sdk_cloudfront::types::CachePolicyConfig, String) {
    let out = h
        .aws
        .cloudfront
        .get_cache_policy_config()
        .id(policy_id)
        .send()
        .await
        .unwrap();
    (
        out.cache_policy_config().unwrap().clone(),
        out.e_tag().unwrap().to_string(),
    )
}

/// Custom cache policies named `name` in the account.
async fn cache_policies_named(h: &Harness, name: &str) -> Vec<String> {
    let out = h
        .aws
        .cloudfront
        .list_cache_policies()
        .r#type(aws_sdk_cloudfront::types::CachePolicyType::Custom)
        .send()
        .await
        .unwrap();
    out.cache_policy_list()
        .unwrap()
        .items()
        .iter()
        .filter_map(|i| i.cache_policy())
        .filter(|p| p.cache_policy_config().is_some_and(|c| c.name() == name))
        .map(|p| p.id().to_string())
        .collect()
}

#[tokio::test]
async fn cache_policy_create_read_back_ttl_change_drift_ownership_delete() {
    let h = harness("environment: dev").await;
    let id = h.desired.id.clone().in_cluster(unique("cluster"));
    let none = Resolved::default();
    let cx = ctx(&h, &id, &none, false);
    let d = cache_policy::desired(&id, (60, 3600, 86400));
    let cf = &h.aws.cloudfront;

    // Paused: observes only.
    let before = h.writes();
    let r = driver::reconcile_one(&ctx(&h, &id, &none, true), &d)
        .await
        .unwrap();
    assert!(matches!(r.state, State::Paused { .. }), "{r:?}");
    assert_eq!(h.writes(), before);

    let r = driver::reconcile_one(&cx, &d).await.unwrap();
    assert!(r.created && r.state == State::Ready, "{r:?}");
    let policy_id = r.id.clone();
    assert_ne!(policy_id, d.name, "the report names the policy's id");
    let (c, _) = cache_policy_config(&h, &policy_id).await;
    assert_eq!(c.name(), d.name);
    assert_eq!(c.comment(), Some(d.comment.as_str()));
    assert!(d.comment.ends_with(&format!(" cluster={}", id.cluster)));
    assert_eq!(
        (c.min_ttl(), c.default_ttl(), c.max_ttl()),
        (60, Some(3600), Some(86400))
    );
    assert_eq!(cache_policy::cache_key(&c), cache_policy::CACHE_KEY);

    // Second pass: zero writes; the id is handed to the distribution.
    let before = h.writes();
    let (_, again, outputs) = Node::reconcile(&d, &cx).await;
    assert_eq!(again, policy_id);
    assert_eq!(outputs, [Output::CachePolicyId(policy_id.clone())]);
    assert_eq!(h.writes(), before, "{:?}", h.stats.write_operations());

    // New TTLs in the spec: the same policy, updated in place.
    let d2 = cache_policy::desired(&id, (0, 7200, 86400));
    let r = driver::reconcile_one(&cx, &d2).await.unwrap();
    let text: Vec<String> = r.changes.iter().map(ToString::to_string).collect();
    assert_eq!(text, ["minTTL: 60 → 0", "defaultTTL: 3600 → 7200"], "{r:?}");
    assert_eq!(r.id, policy_id);
    assert_eq!(
        cache_policies_named(&h, &d.name).await,
        vec![policy_id.clone()]
    );

    // Out of band: a TTL and the cache key edited; repaired.
    let (mut edited, etag) = cache_policy_config(&h, &policy_id).await;
    edited.max_ttl = Some(100);
    if let Some(p) = edited
        .parameters_in_cache_key_and_forwarded_to_origin
        .as_mut()
    {
        p.enable_accept_encoding_brotli = Some(false);
    }
    cf.update_cache_policy()
        .id(&policy_id)
        .if_match(etag)
        .cache_policy_config(edited)
        .send()
        .await
        .unwrap();
    let r = driver::reconcile_one(&cx, &d2).await.unwrap();
    let fields: Vec<&str> = r.changes.iter().map(|c| c.field.as_str()).collect();
    assert_eq!(fields, ["maxTTL", "cacheKey"], "{r:?}");
    let (c, _) = cache_policy_config(&h, &policy_id).await;
    assert_eq!(
        (c.min_ttl(), c.default_ttl(), c.max_ttl()),
        (0, Some(7200), Some(86400))
    );
    assert_eq!(cache_policy::cache_key(&c), cache_policy::CACHE_KEY);
    let before = h.writes();
    driver::reconcile_one(&cx, &d2).await.unwrap();
    assert_eq!(h.writes(), before, "{:?}", h.stats.write_operations());

    // The same namespace/name in another installation: a conflict, never touched.
    let other_cluster = id.clone().in_cluster(unique("cluster"));
    let od = cache_policy::desired(&other_cluster, (0, 7200, 86400));
    assert_eq!(od.name, d.name, "names do not depend on the installation");
    let ocx = ctx(&h, &other_cluster, &none, false);
    let before = h.writes();
    let err = driver::reconcile_one(&ocx, &od).await.unwrap_err();
    assert!(matches!(err, Error::NameConflict { .. }), "{err}");
    assert!(err.to_string().contains(&id.cluster), "{err}");
    assert_eq!(
        driver::delete_one(&ocx, &od).await.unwrap(),
        Deletion::Absent
    );
    assert_eq!(
        h.writes(),
        before,
        "nothing written by the other installation"
    );

    // A same-named policy that is not a stack's (made by hand): never updated
    // nor deleted, even with TTLs that differ from the spec.
    let other = StackId::new(unique("ns"), "other", "dev").in_cluster(unique("cluster"));
    let theirs_d = cache_policy::desired(&other, (5, 50, 500));
    let mut hand_made = cache_policy::desired(&other, (1, 2, 3));
    hand_made.comment = "made by hand".into();
    let theirs = cf
        .create_cache_policy()
        .cache_policy_config(cache_policy::config(&hand_made).unwrap())
        .send()
        .await
        .unwrap();
    let theirs = theirs.cache_policy().unwrap().id().to_string();
    let before = h.writes();
    let err = driver::reconcile_one(&h.ctx_for(&other), &theirs_d)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NameConflict { .. }), "{err}");
    assert_eq!(
        driver::delete_one(&h.ctx_for(&other), &theirs_d)
            .await
            .unwrap(),
        Deletion::Absent
    );
    assert_eq!(
        h.writes(),
        before,
        "nothing written to a foreign cache policy"
    );
    let (c, etag) = cache_policy_config(&h, &theirs).await;
    assert_eq!((c.min_ttl(), c.comment()), (1, Some("made by hand")));
    cf.delete_cache_policy()
        .id(&theirs)
        .if_match(etag)
        .send()
        .await
        .unwrap();

    // Delete: gone, idempotent.
    assert_eq!(driver::delete_one(&cx, &d2).await.unwrap(), Deletion::Gone);
    assert!(cf.get_cache_policy().id(&policy_id).send().await.is_err());
    let before = h.writes();
    assert_eq!(
        driver::delete_one(&cx, &d2).await.unwrap(),
        Deletion::Absent
    );
    assert_eq!(h.writes(), before);
}

/// Reconcile until Ready (bounded); returns the passes it took.
async fn until_ready(cx: &Ctx<'_>, d: &DesiredDistribution) -> usize {
    for pass in 1..=20 {
        let r = driver::reconcile_one(cx, d).await.unwrap();
        match &r.state {
            State::Ready => return pass,
            s if deploying(s) => tokio::time::sleep(Duration::from_millis(100)).await,
            other => panic!("unexpected state {other:?}"),
        }
    }
    panic!("distribution {:?} never became Ready", d.known_id);
}

#[tokio::test]
async fn distribution_create_read_back_drift_and_delete_state_machine() {
    let h = harness(
        "environment: dev\ntags: {team: media}\n\
         cdn: {minTtlSeconds: 60, defaultTtlSeconds: 3600, maxTtlSeconds: 86400}",
    )
    .await;
    let cf = &h.aws.cloudfront;
    let id = h.desired.id.clone();
    let none = Resolved::default();
    let oac_d = h.desired.origin_access.clone();
    let oac_cx = ctx(&h, &id, &none, false);
    let oac = driver::reconcile_one(&oac_cx, &oac_d).await.unwrap().id;
    // The `/i/*` behaviour can only associate a published function.
    let edge = h.desired.edge_function.clone();
    assert_eq!(
        driver::reconcile_one(&oac_cx, &edge).await.unwrap().state,
        State::Ready
    );
    // Custom TTLs: the stack's own cache policy, reconciled first.
    assert!(h.desired.cache_policy_enabled);
    let cp_d = h.desired.cache_policy.clone();
    let cp = driver::reconcile_one(&oac_cx, &cp_d).await.unwrap().id;
    let inputs = Resolved {
        oac_id: Some(oac.clone()),
        cache_policy_id: Some(cp.clone()),
        ..Resolved::default()
    };
    let cx = ctx(&h, &id, &inputs, false);
    // As planned: no id on status yet.
    let mut d = h.desired.distribution.clone();
    assert_eq!(d.known_id, None);

    // Paused and missing: nothing is created.
    let before = h.writes();
    let r = driver::reconcile_one(&ctx(&h, &id, &inputs, true), &d)
        .await
        .unwrap();
    assert!(matches!(r.state, State::Paused { .. }), "{r:?}");
    assert_eq!(h.writes(), before);

    // Create: Progressing while CloudFront deploys, never an error.
    let r = driver::reconcile_one(&cx, &d).await.unwrap();
    assert!(r.created, "{r:?}");
    assert!(deploying(&r.state), "{r:?}");
    let seen = Component::observe(&d, &cx).await.unwrap().unwrap();
    let out = seen.outputs();
    assert!(out.domain.ends_with(".cloudfront.net"), "{out:?}");
    // The plan passes on the id status reports.
    d.known_id = Some(out.id.clone());

    // Read every field back.
    let got = cf
        .get_distribution_config()
        .id(&out.id)
        .send()
        .await
        .unwrap();
    let c = got.distribution_config().unwrap();
    assert_eq!(c.caller_reference(), d.caller_reference);
    assert_eq!(c.comment(), d.comment);
    assert!(c.comment().contains(&id.owner_tag_value()));
    assert!(c.enabled());
    assert_eq!(c.price_class(), Some(&PriceClass::PriceClass100));
    assert_eq!(c.http_version().map(|v| v.as_str()), Some("http2and3"));
    assert_eq!(c.is_ipv6_enabled(), Some(true));
    assert_eq!(c.default_root_object().unwrap_or(""), "");
    let origins = c.origins().unwrap().items();
    assert_eq!(origins.len(), Format::ALL.len());
    assert_eq!(
        d.origins
            .iter()
            .map(|(f, b, _)| (*f, b.clone()))
            .collect::<Vec<_>>(),
        h.desired.output_buckets()
    );
    for ((f, bucket, domain), o) in d.origins.iter().zip(origins) {
        assert_eq!(o.id(), distribution::origin_id(*f));
        assert_eq!(o.domain_name(), domain);
        assert!(domain.starts_with(&format!("{bucket}.s3.")), "{domain}");
        assert_eq!(o.origin_access_control_id(), Some(oac.as_str()));
        assert_eq!(
            o.s3_origin_config().map(|s| s.origin_access_identity()),
            Some("")
        );
    }
    let check_behavior = |target: &str,
                          vpp: &ViewerProtocolPolicy,
                          allowed: Option<&aws_sdk_cloudfront::types::AllowedMethods>,
                          compress: Option<bool>,
                          policy: Option<&str>,
                          legacy: bool,
                          ttls: (Option<i64>, Option<i64>, Option<i64>)| {
        assert_eq!(vpp, &ViewerProtocolPolicy::RedirectToHttps, "{target}");
        let allowed = allowed.unwrap();
        let mut methods: Vec<&str> = allowed.items().iter().map(Method::as_str).collect();
        methods.sort();
        assert_eq!(methods, ["GET", "HEAD", "OPTIONS"], "{target}");
        let mut cached: Vec<&str> = allowed
            .cached_methods()
            .unwrap()
            .items()
            .iter()
            .map(Method::as_str)
            .collect();
        cached.sort();
        assert_eq!(cached, ["GET", "HEAD"], "{target}");
        assert_eq!(compress, Some(true), "{target}");
        // The stack's own policy carries the TTLs; no legacy cache settings.
        assert_eq!(policy, Some(cp.as_str()), "{target}");
        assert!(!legacy, "{target}");
        assert_eq!(ttls, (None, None, None), "{target}");
    };
    #[allow(deprecated)] // the legacy TTL fields must be absent
    {
        let def = c.default_cache_behavior().unwrap();
        assert_eq!(def.target_origin_id(), "s3-webp");
        check_behavior(
            def.target_origin_id(),
            def.viewer_protocol_policy(),
            def.allowed_methods(),
            def.compress(),
            def.cache_policy_id(),
            def.forwarded_values().is_some(),
            (def.min_ttl(), def.default_ttl(), def.max_ttl()),
        );
        let cbs = c.cache_behaviors().unwrap().items();
        let routes: Vec<(&str, &str)> = cbs
            .iter()
            .map(|b| (b.path_pattern(), b.target_origin_id()))
            .collect();
        assert_eq!(
            routes,
            [
                ("/i/*", "s3-webp"),
                ("/webp/*", "s3-webp"),
                ("/jpeg/*", "s3-jpeg"),
                ("/png/*", "s3-png"),
                ("/avif/*", "s3-avif")
            ]
        );
        // `/i/*` runs the stack's function on viewer requests; no other behaviour runs one.
        let assoc: Vec<Vec<(String, String)>> = cbs
            .iter()
            .map(|b| {
                b.function_associations()
                    .map(|f| f.items())
                    .unwrap_or_default()
                    .iter()
                    .map(|a| {
                        (
                            a.event_type().as_str().to_string(),
                            a.function_arn().to_string(),
                        )
                    })
                    .collect()
            })
            .collect();
        assert_eq!(
            assoc[0],
            [(
                "viewer-request".to_string(),
                d.edge_function_arn.clone().unwrap()
            )]
        );
        assert!(assoc[1..].iter().all(Vec::is_empty), "{assoc:?}");
        for b in cbs {
            check_behavior(
                b.target_origin_id(),
                b.viewer_protocol_policy(),
                b.allowed_methods(),
                b.compress(),
                b.cache_policy_id(),
                b.forwarded_values().is_some(),
                (b.min_ttl(), b.default_ttl(), b.max_ttl()),
            );
        }
    }
    let tags = cf_tags(&h.aws, &out.arn).await;
    assert_eq!(tags, d.tags);
    assert_eq!(tags.get("team").map(String::as_str), Some("media"));
    assert_eq!(tags.get(OWNER_TAG), Some(&id.owner_tag_value()));

    // Ready once Deployed; then a second pass makes zero writes and hands on
    // the id, ARN and domain.
    until_ready(&cx, &d).await;
    let before = h.writes();
    let (outcome, arn, outputs) = Node::reconcile(&d, &cx).await;
    assert!(
        matches!(outcome, driver::Outcome::Ready { created: false, ref changes } if changes.is_empty()),
        "{outcome:?}"
    );
    assert_eq!(arn, out.arn);
    assert_eq!(outputs, [Output::Distribution(out.clone())]);
    // Status lost (no known id): found by caller reference, not duplicated.
    let mut lost = d.clone();
    lost.known_id = None;
    let r = driver::reconcile_one(&cx, &lost).await.unwrap();
    assert!(!r.created && r.changes.is_empty(), "{r:?}");
    assert_eq!(r.id, out.arn);
    assert_eq!(h.writes(), before, "{:?}", h.stats.write_operations());

    // Out of band: price class, a behaviour's viewer protocol, a tag.
    let got = cf
        .get_distribution_config()
        .id(&out.id)
        .send()
        .await
        .unwrap();
    let mut changed = got.distribution_config().unwrap().clone();
    changed.price_class = Some(PriceClass::PriceClassAll);
    let mut cbs = changed.cache_behaviors.clone().unwrap();
    cbs.items.as_mut().unwrap()[2].viewer_protocol_policy = ViewerProtocolPolicy::AllowAll;
    changed.cache_behaviors = Some(cbs);
    cf.update_distribution()
        .id(&out.id)
        .if_match(got.e_tag().unwrap())
        .distribution_config(changed)
        .send()
        .await
        .unwrap();
    cf.untag_resource()
        .resource(&out.arn)
        .tag_keys(TagKeys::builder().items("team").build())
        .send()
        .await
        .unwrap();
    let r = driver::reconcile_one(&cx, &d).await.unwrap();
    let fields: Vec<&str> = r.changes.iter().map(|c| c.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "cacheBehaviors[/jpeg/*].viewerProtocolPolicy",
            "priceClass",
            "tags"
        ],
        "{r:?}"
    );
    assert!(deploying(&r.state), "{r:?}");
    let got = cf
        .get_distribution_config()
        .id(&out.id)
        .send()
        .await
        .unwrap();
    let c = got.distribution_config().unwrap();
    assert_eq!(c.price_class(), Some(&PriceClass::PriceClass100));
    assert_eq!(
        c.cache_behaviors().unwrap().items()[1].viewer_protocol_policy(),
        &ViewerProtocolPolicy::RedirectToHttps
    );
    assert!(distribution::diff(&distribution::config(&d, &oac, &cp).unwrap(), c).is_empty());
    assert_eq!(cf_tags(&h.aws, &out.arn).await, d.tags);
    until_ready(&cx, &d).await;
    let before = h.writes();
    driver::reconcile_one(&cx, &d).await.unwrap();
    assert_eq!(h.writes(), before, "{:?}", h.stats.write_operations());

    // Another installation with the same namespace/name: a conflict, never touched.
    let other = id.clone().in_cluster(unique("cluster"));
    let ocx = ctx(&h, &other, &inputs, false);
    let mut theirs_view = d.clone();
    theirs_view.tags = other.tags(&BTreeMap::new());
    let ours_tagged = cf_tags(&h.aws, &out.arn).await;
    cf.tag_resource()
        .resource(&out.arn)
        .tags(
            aws_sdk_cloudfront::types::Tags::builder()
                .items(
                    aws_sdk_cloudfront::types::Tag::builder()
                        .key(imagestack_operator::naming::CLUSTER_TAG)
                        .value(unique("cluster"))
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    let before = h.writes();
    let err = driver::reconcile_one(&ocx, &theirs_view).await.unwrap_err();
    assert_eq!(err.reason(), "NameConflict", "{err}");
    assert_eq!(
        driver::delete_one(&ocx, &theirs_view).await.unwrap(),
        Deletion::Absent,
        "left in place"
    );
    assert_eq!(h.writes(), before);
    // Back to ours (the cluster tag is repaired as tag drift by our pass).
    cf.untag_resource()
        .resource(&out.arn)
        .tag_keys(
            TagKeys::builder()
                .items(imagestack_operator::naming::CLUSTER_TAG)
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(cf_tags(&h.aws, &out.arn).await, ours_tagged);

    // The OAC and the function cannot go while the distribution uses them.
    match driver::delete_one(&oac_cx, &oac_d).await.unwrap() {
        Deletion::InProgress(msg) => assert!(msg.contains("still used"), "{msg}"),
        other => panic!("OAC deleted while in use: {other:?}"),
    }
    match driver::delete_one(&oac_cx, &edge).await.unwrap() {
        Deletion::InProgress(msg) => assert!(msg.contains("still associated"), "{msg}"),
        other => panic!("function deleted while associated: {other:?}"),
    }
    // Nor the cache policy (CachePolicyInUse is a wait, not an error).
    match driver::delete_one(&oac_cx, &cp_d).await.unwrap() {
        Deletion::InProgress(msg) => assert!(msg.contains("still used"), "{msg}"),
        other => panic!("cache policy deleted while in use: {other:?}"),
    }

    // Delete: disable → wait for Deployed → delete with the new ETag, one step per pass.
    let mut steps = Vec::new();
    let mut gone = false;
    for _ in 0..10 {
        match driver::delete_one(&cx, &d).await.unwrap() {
            Deletion::Gone => {
                gone = true;
                break;
            }
            Deletion::InProgress(msg) => steps.push(msg),
            Deletion::Absent => panic!("the distribution vanished after {steps:?}"),
        }
    }
    assert!(gone, "not gone after {steps:?}");
    eprintln!("distribution deletion steps: {steps:?}");
    assert!(
        steps
            .first()
            .is_some_and(|s| s.starts_with("step 1/3: disabling")),
        "{steps:?}"
    );
    assert!(steps.iter().all(|s| s.starts_with("step ")), "{steps:?}");
    assert!(cf.get_distribution().id(&out.id).send().await.is_err());
    assert_eq!(driver::delete_one(&cx, &d).await.unwrap(), Deletion::Absent);
    assert_eq!(
        driver::delete_one(&oac_cx, &oac_d).await.unwrap(),
        Deletion::Gone
    );
    assert_eq!(
        driver::delete_one(&oac_cx, &edge).await.unwrap(),
        Deletion::Gone
    );
    assert_eq!(
        driver::delete_one(&oac_cx, &cp_d).await.unwrap(),
        Deletion::Gone
    );
}

fn dashboard_input(h: &Harness) -> DashboardInput {
    DashboardInput {
        region: h.desired.env.region.clone(),
        stack: h.desired.id.owner_tag_value(),
        function_name: h.desired.id.function_name(),
        environment: h.desired.id.environment.clone(),
        table_name: h.desired.table.name.clone(),
        // Taken from the distribution's outputs in the pass.
        distribution_id: None,
        formats: Format::ALL.to_vec(),
    }
}

async fn dashboard_body(aws: &AwsClients, name: &str) -> Value {
    let out = aws
        .cloudwatch
        .get_dashboard()
        .dashboard_name(name)
        .send()
        .await
        .unwrap();
    serde_json::from_str(out.dashboard_body().unwrap()).unwrap()
}

async fn put_body(h: &Harness, name: &str, body: &str) {
    h.aws
        .cloudwatch
        .put_dashboard()
        .dashboard_name(name)
        .dashboard_body(body)
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn dashboard_create_read_back_drift_ownership_and_delete() {
    let h = harness("environment: dev").await;
    let id = h.desired.id.clone().in_cluster(unique("cluster"));
    let d = dashboard::desired(&id, &dashboard_input(&h));
    let inputs = Resolved {
        distribution: Some(DistributionOutputs {
            id: "E2QWRUHEXAMPLE".into(),
            arn: "arn:aws:cloudfront::123456789012:distribution/E2QWRUHEXAMPLE".into(),
            domain: "d111111abcdef8.cloudfront.net".into(),
        }),
        ..Resolved::default()
    };
    let cx = ctx(&h, &id, &inputs, false);
    let want = d.body(&inputs);
    let cw = &h.aws.cloudwatch;

    let r = driver::reconcile_one(&cx, &d).await.unwrap();
    assert!(r.created, "{r:?}");
    assert_eq!(r.state, State::Ready);
    let body = dashboard_body(&h.aws, &d.name).await;
    assert_eq!(body, want);
    let text = body.to_string();
    assert!(text.contains(&h.desired.id.function_name()));
    assert!(text.contains(&h.desired.table.name));
    assert!(
        text.contains("E2QWRUHEXAMPLE"),
        "the distribution of the pass"
    );
    assert!(text.contains(&d.marker), "the ownership marker");

    let before = h.writes();
    let r = driver::reconcile_one(&cx, &d).await.unwrap();
    assert!(!r.created && r.changes.is_empty(), "{r:?}");
    assert_eq!(h.writes(), before, "{:?}", h.stats.write_operations());

    // Reformatted out of band (same meaning): not drift.
    put_body(&h, &d.name, &serde_json::to_string_pretty(&want).unwrap()).await;
    let before = h.writes();
    let r = driver::reconcile_one(&cx, &d).await.unwrap();
    assert!(r.changes.is_empty(), "{r:?}");
    assert_eq!(h.writes(), before);

    // A widget removed out of band: repaired.
    let mut edited = want.clone();
    edited["widgets"].as_array_mut().unwrap().pop();
    put_body(&h, &d.name, &edited.to_string()).await;
    let r = driver::reconcile_one(&cx, &d).await.unwrap();
    let fields: Vec<&str> = r.changes.iter().map(|c| c.field.as_str()).collect();
    assert_eq!(fields, ["dashboardBody"], "{r:?}");
    assert_eq!(dashboard_body(&h.aws, &d.name).await, want);
    let before = h.writes();
    driver::reconcile_one(&cx, &d).await.unwrap();
    assert_eq!(h.writes(), before);

    // Written by the version before ownership markers (the header names this
    // stack, no marker): adopted and rewritten with the marker.
    let mut legacy = want.clone();
    legacy["widgets"][0]["properties"]["markdown"] = json!(format!(
        "## imagestack {} (dev) · function `{}` · table `{}`",
        id.owner_tag_value(),
        id.function_name(),
        h.desired.table.name
    ));
    put_body(&h, &d.name, &legacy.to_string()).await;
    let r = driver::reconcile_one(&cx, &d).await.unwrap();
    let fields: Vec<&str> = r.changes.iter().map(|c| c.field.as_str()).collect();
    assert_eq!(fields, ["dashboardBody"], "{r:?}");
    assert_eq!(dashboard_body(&h.aws, &d.name).await, want);

    // Someone else's dashboard under the name, and this stack's in another
    // installation: conflicts, never overwritten nor deleted.
    let other_cluster = id.clone().in_cluster(unique("cluster"));
    let theirs = dashboard::desired(&other_cluster, &dashboard_input(&h)).body(&inputs);
    let hand_made = json!({"widgets": [{"type": "text", "x": 0, "y": 0, "width": 6, "height": 2,
        "properties": {"markdown": "# my own dashboard"}}]});
    for (foreign, owner) in [(&theirs, other_cluster.cluster.as_str()), (&hand_made, "")] {
        put_body(&h, &d.name, &foreign.to_string()).await;
        let before = h.writes();
        let err = driver::reconcile_one(&cx, &d).await.unwrap_err();
        assert_eq!(err.reason(), "NameConflict", "{err}");
        assert!(err.to_string().contains(owner), "{err}");
        assert_eq!(driver::delete_one(&cx, &d).await.unwrap(), Deletion::Absent);
        assert_eq!(h.writes(), before, "nothing written");
        assert_eq!(&dashboard_body(&h.aws, &d.name).await, foreign);
    }
    put_body(&h, &d.name, &want.to_string()).await;

    // Delete: gone, idempotent.
    assert_eq!(driver::delete_one(&cx, &d).await.unwrap(), Deletion::Gone);
    assert!(
        cw.get_dashboard()
            .dashboard_name(&d.name)
            .send()
            .await
            .is_err()
    );
    let before = h.writes();
    assert_eq!(driver::delete_one(&cx, &d).await.unwrap(), Deletion::Absent);
    assert_eq!(h.writes(), before, "nothing to delete: no write");
    assert!(dashboard::console_url(&h.desired.env.region, &d.name).contains(&d.name));
}

/// `spec.cdn.aliases` + `certificateArn`: read back from the distribution
/// (aliases, ACM certificate, SNI, TLSv1.2_2021); aliases and certificate
/// changed out of band are repaired; removing them from the spec goes back to
/// CloudFront's certificate; a pass in sync writes nothing.
#[tokio::test]
async fn custom_domain_read_back_drift_and_removal() {
    const CERT: &str =
        "arn:aws:acm:us-east-1:123456789012:certificate/0a1b2c3d-1111-2222-3333-444455556666";
    let h = harness(&format!(
        "environment: dev\ncdn: {{aliases: [images.example.com, cdn.example.com], certificateArn: '{CERT}'}}"
    ))
    .await;
    let cf = &h.aws.cloudfront;
    let id = h.desired.id.clone();
    let none = Resolved::default();
    let oac_d = h.desired.origin_access.clone();
    let oac_cx = ctx(&h, &id, &none, false);
    let oac = driver::reconcile_one(&oac_cx, &oac_d).await.unwrap().id;
    // The `/i/*` behaviour can only associate a published function.
    let edge = h.desired.edge_function.clone();
    assert_eq!(
        driver::reconcile_one(&oac_cx, &edge).await.unwrap().state,
        State::Ready
    );
    let inputs = Resolved {
        oac_id: Some(oac.clone()),
        ..Resolved::default()
    };
    let cx = ctx(&h, &id, &inputs, false);
    let mut d = h.desired.distribution.clone();
    assert!(driver::reconcile_one(&cx, &d).await.unwrap().created);
    let out = Component::observe(&d, &cx)
        .await
        .unwrap()
        .unwrap()
        .outputs();
    d.known_id = Some(out.id.clone());
    until_ready(&cx, &d).await;
    // The CNAME target on status is the distribution's domain.
    assert_eq!(
        h.desired.outputs().cdn_aliases,
        ["images.example.com", "cdn.example.com"]
    );

    let read = || cf.get_distribution_config().id(&out.id).send();
    let got = read().await.unwrap();
    let c = got.distribution_config().unwrap();
    let mut aliases = c.aliases().unwrap().items().to_vec();
    aliases.sort();
    assert_eq!(aliases, ["cdn.example.com", "images.example.com"]);
    let vc = c.viewer_certificate().unwrap();
    assert_eq!(vc.acm_certificate_arn(), Some(CERT));
    assert_eq!(
        vc.ssl_support_method().map(|m| m.as_str()),
        Some("sni-only")
    );
    assert_eq!(
        vc.minimum_protocol_version().map(|m| m.as_str()),
        Some("TLSv1.2_2021")
    );
    // Default TTLs: every behaviour uses AWS's managed CachingOptimized policy.
    let behaviours = std::iter::once(c.default_cache_behavior().unwrap().cache_policy_id()).chain(
        c.cache_behaviors()
            .unwrap()
            .items()
            .iter()
            .map(|b| b.cache_policy_id()),
    );
    for id in behaviours {
        assert_eq!(id, Some(distribution::CACHING_OPTIMIZED));
    }
    let before = h.writes();
    driver::reconcile_one(&cx, &d).await.unwrap();
    assert_eq!(h.writes(), before, "{:?}", h.stats.write_operations());

    // Out of band: one alias dropped, the certificate swapped for CloudFront's.
    let mut changed = c.clone();
    changed.aliases = Some(
        aws_sdk_cloudfront::types::Aliases::builder()
            .quantity(1)
            .items("images.example.com")
            .build()
            .unwrap(),
    );
    changed.viewer_certificate = Some(
        aws_sdk_cloudfront::types::ViewerCertificate::builder()
            .cloud_front_default_certificate(true)
            .build(),
    );
    cf.update_distribution()
        .id(&out.id)
        .if_match(got.e_tag().unwrap())
        .distribution_config(changed)
        .send()
        .await
        .unwrap();
    let r = driver::reconcile_one(&cx, &d).await.unwrap();
    let fields: Vec<&str> = r.changes.iter().map(|c| c.field.as_str()).collect();
    assert_eq!(fields, ["aliases", "viewerCertificate"], "{r:?}");
    let got = read().await.unwrap();
    let c = got.distribution_config().unwrap();
    assert_eq!(c.aliases().unwrap().quantity(), 2);
    assert_eq!(
        c.viewer_certificate().unwrap().acm_certificate_arn(),
        Some(CERT)
    );
    until_ready(&cx, &d).await;

    // Removed from the spec: no aliases, CloudFront's certificate.
    let mut plain = d.clone();
    plain.aliases.clear();
    plain.certificate_arn = None;
    let r = driver::reconcile_one(&cx, &plain).await.unwrap();
    let fields: Vec<&str> = r.changes.iter().map(|c| c.field.as_str()).collect();
    assert_eq!(fields, ["aliases", "viewerCertificate"], "{r:?}");
    let got = read().await.unwrap();
    let c = got.distribution_config().unwrap();
    assert_eq!(c.aliases().map(|a| a.quantity()).unwrap_or(0), 0);
    assert_eq!(
        c.viewer_certificate()
            .unwrap()
            .cloud_front_default_certificate(),
        Some(true)
    );
    until_ready(&cx, &plain).await;
    let before = h.writes();
    driver::reconcile_one(&cx, &plain).await.unwrap();
    assert_eq!(h.writes(), before, "{:?}", h.stats.write_operations());

    // Clean up: the distribution (several passes), then the OAC.
    for _ in 0..10 {
        if driver::delete_one(&cx, &plain).await.unwrap() == Deletion::Gone {
            break;
        }
    }
    assert_eq!(
        driver::delete_one(&oac_cx, &oac_d).await.unwrap(),
        Deletion::Gone
    );
}

/// The stack's CloudWatch alarms: created with their metric, dimensions,
/// threshold, actions and tags (read back with the SDK); a second pass makes
/// zero writes; a threshold changed out of band and a tag removed are
/// repaired; another stack's alarm of the same name is a conflict; deleted.
#[tokio::test]
async fn alarms_create_read_back_drift_ownership_delete() {
    use aws_sdk_cloudwatch::types::ComparisonOperator;
    let topic = "arn:aws:sns:us-east-1:123456789012:imagestack-ops";
    let h = harness(&format!(
        "environment: dev\nalarms: {{actions: ['{topic}']}}"
    ))
    .await;
    let id = h.desired.id.clone();
    let inputs = Resolved {
        distribution: Some(DistributionOutputs {
            id: "E2ALARMTEST".into(),
            arn: "arn:aws:cloudfront::123456789012:distribution/E2ALARMTEST".into(),
            domain: "d111.cloudfront.net".into(),
        }),
        ..Resolved::default()
    };
    let cx = ctx(&h, &id, &inputs, false);
    let cw = &h.aws.cloudwatch;
    let global = h.aws.cloudwatch_global.clone();
    let describe = |name: String| {
        let cw = global.clone();
        async move {
            cw.describe_alarms()
                .alarm_names(name)
                .send()
                .await
                .unwrap()
                .metric_alarms()
                .first()
                .cloned()
                .expect("alarm exists")
        }
    };
    for a in &h.desired.alarms {
        let r = driver::reconcile_one(&cx, a).await.unwrap();
        assert!(r.created, "{r:?}");
        assert_eq!(r.state, State::Ready, "{r:?}");
        let got = describe(a.name.clone()).await;
        assert_eq!(got.alarm_actions(), [topic], "{}", a.name);
        assert_eq!(got.ok_actions(), [topic], "{}", a.name);
        assert_eq!(got.treat_missing_data(), Some("notBreaching"));
        assert_eq!(
            got.comparison_operator(),
            Some(&ComparisonOperator::GreaterThanThreshold)
        );
        assert_eq!(got.threshold(), Some(a.threshold));
        let tags: BTreeMap<String, String> = cw
            .list_tags_for_resource()
            .resource_arn(got.alarm_arn().unwrap())
            .send()
            .await
            .unwrap()
            .tags()
            .iter()
            .map(|t| (t.key().unwrap().to_string(), t.value().unwrap().to_string()))
            .collect();
        assert_eq!(tags.get(OWNER_TAG), Some(&id.owner_tag_value()));
    }
    // The metrics and their dimensions.
    let errors = describe(h.desired.alarms[0].name.clone()).await;
    assert_eq!(errors.namespace(), Some("AWS/Lambda"));
    assert_eq!(errors.metric_name(), Some("Errors"));
    assert_eq!(
        errors.dimensions()[0].value(),
        Some(h.desired.function.name.as_str())
    );
    let rate = describe(h.desired.alarms[2].name.clone()).await;
    let stat_dims: Vec<(String, String)> = rate
        .metrics()
        .iter()
        .filter_map(|q| q.metric_stat())
        .flat_map(|s| s.metric().unwrap().dimensions().to_vec())
        .map(|d| {
            (
                d.name().unwrap().to_string(),
                d.value().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        stat_dims.contains(&("Stack".into(), id.owner_tag_value())),
        "{stat_dims:?}"
    );
    assert!(
        stat_dims.contains(&("Environment".into(), "dev".into())),
        "{stat_dims:?}"
    );
    let cdn = describe(h.desired.alarms[4].name.clone()).await;
    assert_eq!(cdn.metric_name(), Some("5xxErrorRate"));
    let mut dims: Vec<(&str, &str)> = cdn
        .dimensions()
        .iter()
        .map(|d| (d.name().unwrap(), d.value().unwrap()))
        .collect();
    dims.sort();
    assert_eq!(
        dims,
        [("DistributionId", "E2ALARMTEST"), ("Region", "Global")]
    );

    // In sync: zero writes.
    let before = h.writes();
    for a in &h.desired.alarms {
        let r = driver::reconcile_one(&cx, a).await.unwrap();
        assert!(r.changes.is_empty(), "{r:?}");
    }
    assert_eq!(h.writes(), before, "{:?}", h.stats.write_operations());

    // Out of band: the threshold raised, a tag removed.
    let a = &h.desired.alarms[0];
    cw.put_metric_alarm()
        .alarm_name(&a.name)
        .namespace("AWS/Lambda")
        .metric_name("Errors")
        .statistic(aws_sdk_cloudwatch::types::Statistic::Sum)
        .dimensions(
            aws_sdk_cloudwatch::types::Dimension::builder()
                .name("FunctionName")
                .value(&h.desired.function.name)
                .build(),
        )
        .period(300)
        .evaluation_periods(1)
        .threshold(10.0)
        .comparison_operator(ComparisonOperator::GreaterThanThreshold)
        .treat_missing_data("notBreaching")
        .alarm_actions(topic)
        .ok_actions(topic)
        .send()
        .await
        .unwrap();
    cw.untag_resource()
        .resource_arn(&a.arn)
        .tag_keys(imagestack_operator::naming::ENVIRONMENT_TAG)
        .send()
        .await
        .unwrap();
    let r = driver::reconcile_one(&cx, a).await.unwrap();
    let fields: Vec<&str> = r.changes.iter().map(|c| c.field.as_str()).collect();
    // The out-of-band write also dropped the description.
    assert_eq!(fields, ["threshold", "description", "tags"], "{r:?}");
    assert_eq!(describe(a.name.clone()).await.threshold(), Some(0.0));
    let before = h.writes();
    driver::reconcile_one(&cx, a).await.unwrap();
    assert_eq!(h.writes(), before, "{:?}", h.stats.write_operations());

    // Another stack's view of the same name: a conflict, never written or deleted.
    let other = StackId::new("someone", "else", "dev");
    let ocx = ctx(&h, &other, &inputs, false);
    let err = driver::reconcile_one(&ocx, a).await.unwrap_err();
    assert_eq!(err.reason(), "NameConflict", "{err}");
    assert_eq!(driver::delete_one(&ocx, a).await.unwrap(), Deletion::Absent);

    // Delete.
    for a in &h.desired.alarms {
        assert_eq!(driver::delete_one(&cx, a).await.unwrap(), Deletion::Gone);
        assert_eq!(driver::delete_one(&cx, a).await.unwrap(), Deletion::Absent);
    }
}

/// Publish `code` as the function's LIVE stage out of band (as a console user would).
async fn put_function(h: &Harness, name: &str, comment: &str, code: &str, publish: bool) {
    use aws_sdk_cloudfront::types::{FunctionConfig, FunctionRuntime, FunctionStage};
    let cf = &h.aws.cloudfront;
    let etag = cf
        .describe_function()
        .name(name)
        .stage(FunctionStage::Development)
        .send()
        .await
        .unwrap()
        .e_tag()
        .unwrap()
        .to_string();
    let out = cf
        .update_function()
        .name(name)
        .if_match(etag)
        .function_config(
            FunctionConfig::builder()
                .comment(comment)
                .runtime(FunctionRuntime::CloudfrontJs20)
                .build()
                .unwrap(),
        )
        .function_code(aws_sdk_cloudfront::primitives::Blob::new(code.as_bytes()))
        .send()
        .await
        .unwrap();
    if publish {
        cf.publish_function()
            .name(name)
            .if_match(out.e_tag().unwrap())
            .send()
            .await
            .unwrap();
    }
}

async fn live_code(h: &Harness, name: &str) -> Option<String> {
    let out = h
        .aws
        .cloudfront
        .get_function()
        .name(name)
        .stage(aws_sdk_cloudfront::types::FunctionStage::Live)
        .send()
        .await
        .ok()?;
    Some(String::from_utf8(out.function_code()?.as_ref().to_vec()).unwrap())
}

#[tokio::test]
async fn edge_function_publish_read_back_drift_ownership_delete() {
    use imagestack_operator::components::edge_function::{self, RUNTIME};
    let h =
        harness("environment: dev\nprocessor: {widths: [320, 640], formats: [webp, jpeg, avif]}")
            .await;
    let id = h.desired.id.clone().in_cluster(unique("cluster"));
    let code = h.desired.edge_function.code.clone();
    let d = edge_function::desired(&id, code.clone());
    let none = Resolved::default();
    let cx = ctx(&h, &id, &none, false);
    let cf = &h.aws.cloudfront;

    // Paused: observes only.
    let before = h.writes();
    let r = driver::reconcile_one(&ctx(&h, &id, &none, true), &d)
        .await
        .unwrap();
    assert!(matches!(r.state, State::Paused { .. }), "{r:?}");
    assert_eq!(h.writes(), before);

    // Create = create + publish: LIVE runs exactly the generated code.
    let r = driver::reconcile_one(&cx, &d).await.unwrap();
    assert!(r.created, "{r:?}");
    assert_eq!(r.state, State::Ready);
    assert_eq!(
        r.id,
        edge_function::function_arn("aws", &h.desired.env.account_id, &d.name),
        "the planned ARN is the real one"
    );
    assert_eq!(live_code(&h, &d.name).await.as_deref(), Some(code.as_str()));
    let live = cf
        .describe_function()
        .name(&d.name)
        .stage(aws_sdk_cloudfront::types::FunctionStage::Live)
        .send()
        .await
        .unwrap();
    let config = live.function_summary().unwrap().function_config().unwrap();
    assert_eq!(config.runtime().as_str(), RUNTIME);
    assert_eq!(config.comment(), d.comment);

    // Second pass: zero writes.
    let before = h.writes();
    let r = driver::reconcile_one(&cx, &d).await.unwrap();
    assert_eq!(r.state, State::Ready);
    assert!(r.changes.is_empty(), "{r:?}");
    assert_eq!(h.writes(), before, "{:?}", h.stats.write_operations());

    // Out of band: other code published. Repaired (update + publish).
    put_function(
        &h,
        &d.name,
        &d.comment,
        "function handler(e) { return e.request; }",
        true,
    )
    .await;
    let r = driver::reconcile_one(&cx, &d).await.unwrap();
    let fields: Vec<&str> = r.changes.iter().map(|c| c.field.as_str()).collect();
    assert_eq!(fields, ["code"], "{r:?}");
    assert_eq!(live_code(&h, &d.name).await.as_deref(), Some(code.as_str()));

    // Edited but not published: LIVE still serves the right code, nothing to repair.
    put_function(&h, &d.name, &d.comment, "// a draft", false).await;
    let before = h.writes();
    let r = driver::reconcile_one(&cx, &d).await.unwrap();
    assert!(r.changes.is_empty(), "{r:?}");
    assert_eq!(h.writes(), before);

    // Another installation of the same stack: a conflict, never touched.
    let other = id.clone().in_cluster(unique("cluster"));
    let od = edge_function::desired(&other, code.clone());
    assert_eq!(od.name, d.name);
    let ocx = ctx(&h, &other, &none, false);
    let before = h.writes();
    let err = driver::reconcile_one(&ocx, &od).await.unwrap_err();
    assert!(matches!(err, Error::NameConflict { .. }), "{err}");
    assert_eq!(
        driver::delete_one(&ocx, &od).await.unwrap(),
        Deletion::Absent
    );
    assert_eq!(
        h.writes(),
        before,
        "nothing written by the other installation"
    );

    // A function that was created but never published (a crash between the
    // two writes) is published by the next pass.
    let id2 = h.desired.id.clone().in_cluster(unique("cluster"));
    let mut d2 = edge_function::desired(&id2, code.clone());
    d2.name = format!("{}-u", &d.name[..d.name.len() - 2]);
    cf.create_function()
        .name(&d2.name)
        .function_config(
            aws_sdk_cloudfront::types::FunctionConfig::builder()
                .comment(&d2.comment)
                .runtime(aws_sdk_cloudfront::types::FunctionRuntime::CloudfrontJs20)
                .build()
                .unwrap(),
        )
        .function_code(aws_sdk_cloudfront::primitives::Blob::new(code.as_bytes()))
        .send()
        .await
        .unwrap();
    assert_eq!(live_code(&h, &d2.name).await, None);
    let cx2 = ctx(&h, &id2, &none, false);
    let before = h.writes();
    let r = driver::reconcile_one(&cx2, &d2).await.unwrap();
    let text: Vec<String> = r.changes.iter().map(ToString::to_string).collect();
    assert_eq!(text, ["published: no → yes"], "{r:?}");
    // DEVELOPMENT already holds the desired code: only the publish is written
    // (so a crash after every single write still converges).
    assert_eq!(h.writes(), before + 1, "{:?}", h.stats.write_operations());
    assert_eq!(
        live_code(&h, &d2.name).await.as_deref(),
        Some(code.as_str())
    );
    assert_eq!(driver::delete_one(&cx2, &d2).await.unwrap(), Deletion::Gone);

    // Delete; gone is success.
    assert_eq!(driver::delete_one(&cx, &d).await.unwrap(), Deletion::Gone);
    assert_eq!(driver::delete_one(&cx, &d).await.unwrap(), Deletion::Absent);
    assert_eq!(live_code(&h, &d.name).await, None);
}

//! The CloudFront components and the dashboard against the AWS emulator (moto
//! over HTTPS with our CloudFront patches, started by
//! scripts/emulator/start.sh): create → read every field back with the SDK →
//! poll until Ready → second pass makes zero writes → out-of-band change
//! repaired → delete (distribution state machine, then the origin access
//! control).
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
use imagestack_operator::components::dashboard::{self, DashboardInput};
use imagestack_operator::components::distribution::{self, DEPLOYING_REASON, DesiredDistribution};
use imagestack_operator::components::origin_access;
use imagestack_operator::components::{Ctx, Deletion, State};
use imagestack_operator::error::Error;
use imagestack_operator::naming::{OWNER_TAG, StackId};
use imagestack_operator::plan::output_component;
use serde_json::Value;

mod common;
use common::{Harness, harness, unique};

/// The distribution this test stack plans, with these TTLs.
fn desired_distribution(h: &Harness, ttls: (i64, i64, i64)) -> DesiredDistribution {
    let buckets: Vec<(Format, String)> = Format::ALL
        .iter()
        .map(|f| {
            let b = h
                .desired
                .bucket(&output_component(*f))
                .expect("output bucket planned");
            (*f, b.name.clone())
        })
        .collect();
    distribution::desired(
        &h.desired.id,
        &h.desired.env.region,
        &buckets,
        "PriceClass_100",
        ttls,
        h.desired.table.tags.clone(),
    )
}

fn deploying(state: &State) -> bool {
    matches!(state, State::Progressing { reason, .. } if reason == DEPLOYING_REASON)
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

#[tokio::test]
async fn origin_access_control_create_read_back_drift_conflict_delete() {
    let h = harness("environment: dev").await;
    let d = origin_access::desired(&h.desired.id);
    let cf = &h.aws.cloudfront;

    // Paused: observes only.
    let paused = Ctx {
        aws: &h.aws,
        id: &h.desired.id,
        dry_run: true,
    };
    let before = h.writes();
    let (r, id) = origin_access::reconcile(&paused, &d).await.unwrap();
    assert!(matches!(r.state, State::Paused { .. }), "{r:?}");
    assert_eq!(id, None);
    assert_eq!(h.writes(), before);

    let (r, id) = origin_access::reconcile(&h.ctx(), &d).await.unwrap();
    assert!(r.created, "{r:?}");
    assert_eq!(r.state, State::Ready);
    let id = id.unwrap();
    assert_eq!(r.id, id);

    // Read back.
    let got = cf.get_origin_access_control().id(&id).send().await.unwrap();
    let c = got
        .origin_access_control()
        .unwrap()
        .origin_access_control_config()
        .unwrap();
    assert_eq!(c.name(), d.name);
    assert_eq!(c.description(), Some(d.description.as_str()));
    assert_eq!(c.signing_protocol().as_str(), "sigv4");
    assert_eq!(c.signing_behavior().as_str(), "always");
    assert_eq!(c.origin_access_control_origin_type().as_str(), "s3");

    // Second pass: zero writes.
    let before = h.writes();
    let (r, again) = origin_access::reconcile(&h.ctx(), &d).await.unwrap();
    assert!(!r.created && r.changes.is_empty(), "{r:?}");
    assert_eq!(again.as_deref(), Some(id.as_str()));
    assert_eq!(h.writes(), before, "{:?}", h.stats.write_operations());

    // Out of band: signing behaviour changed (with the ETag the emulator enforces).
    let etag = cf
        .get_origin_access_control_config()
        .id(&id)
        .send()
        .await
        .unwrap()
        .e_tag()
        .unwrap()
        .to_string();
    cf.update_origin_access_control()
        .id(&id)
        .if_match(etag)
        .origin_access_control_config(
            OriginAccessControlConfig::builder()
                .name(&d.name)
                .description(&d.description)
                .signing_protocol(OriginAccessControlSigningProtocols::Sigv4)
                .signing_behavior(OriginAccessControlSigningBehaviors::NoOverride)
                .origin_access_control_origin_type(OriginAccessControlOriginTypes::S3)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let (r, _) = origin_access::reconcile(&h.ctx(), &d).await.unwrap();
    let text: Vec<String> = r.changes.iter().map(ToString::to_string).collect();
    assert_eq!(text, ["signingBehavior: no-override → always"], "{r:?}");
    let got = cf.get_origin_access_control().id(&id).send().await.unwrap();
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
    origin_access::reconcile(&h.ctx(), &d).await.unwrap();
    assert_eq!(h.writes(), before);

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
    let err = origin_access::reconcile(&h.ctx_for(&other), &od)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NameConflict { .. }), "{err}");
    assert!(err.to_string().contains("someone/else"), "{err}");
    assert_eq!(
        origin_access::delete(&h.ctx_for(&other), &od)
            .await
            .unwrap(),
        Deletion::Gone
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
    assert_eq!(
        origin_access::delete(&h.ctx(), &d).await.unwrap(),
        Deletion::Gone
    );
    assert!(cf.get_origin_access_control().id(&id).send().await.is_err());
    assert_eq!(
        origin_access::delete(&h.ctx(), &d).await.unwrap(),
        Deletion::Gone
    );
}

/// Reconcile until Ready (bounded); returns the passes it took.
async fn until_ready(h: &Harness, d: &DesiredDistribution, oac: &str, id: &str) -> usize {
    for pass in 1..=20 {
        let (r, _) = distribution::reconcile(&h.ctx(), d, oac, Some(id))
            .await
            .unwrap();
        match &r.state {
            State::Ready => return pass,
            s if deploying(s) => tokio::time::sleep(Duration::from_millis(100)).await,
            other => panic!("unexpected state {other:?}"),
        }
    }
    panic!("distribution {id} never became Ready");
}

#[tokio::test]
async fn distribution_create_read_back_drift_and_delete_state_machine() {
    let h = harness("environment: dev\ntags: {team: media}").await;
    let cf = &h.aws.cloudfront;
    let oac_d = origin_access::desired(&h.desired.id);
    let (_, oac) = origin_access::reconcile(&h.ctx(), &oac_d).await.unwrap();
    let oac = oac.unwrap();
    let d = desired_distribution(&h, (60, 3600, 86400));

    // Paused and missing: nothing is created.
    let paused = Ctx {
        aws: &h.aws,
        id: &h.desired.id,
        dry_run: true,
    };
    let before = h.writes();
    let (r, out) = distribution::reconcile(&paused, &d, &oac, None)
        .await
        .unwrap();
    assert!(
        matches!(r.state, State::Paused { .. }) && out.is_none(),
        "{r:?}"
    );
    assert_eq!(h.writes(), before);

    // Create: Progressing while CloudFront deploys, never an error.
    let (r, out) = distribution::reconcile(&h.ctx(), &d, &oac, None)
        .await
        .unwrap();
    assert!(r.created, "{r:?}");
    assert!(deploying(&r.state), "{r:?}");
    let out = out.unwrap();
    assert!(out.domain.ends_with(".cloudfront.net"), "{out:?}");
    assert_eq!(r.id, out.arn);

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
    assert!(c.comment().contains(&h.desired.id.owner_tag_value()));
    assert!(c.enabled());
    assert_eq!(c.price_class(), Some(&PriceClass::PriceClass100));
    assert_eq!(c.http_version().map(|v| v.as_str()), Some("http2and3"));
    assert_eq!(c.is_ipv6_enabled(), Some(true));
    assert_eq!(c.default_root_object().unwrap_or(""), "");
    let origins = c.origins().unwrap().items();
    assert_eq!(origins.len(), 3);
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
        assert_eq!(ttls, (Some(60), Some(3600), Some(86400)), "{target}");
    };
    #[allow(deprecated)] // legacy TTL fields, see components::distribution
    {
        let def = c.default_cache_behavior().unwrap();
        assert_eq!(def.target_origin_id(), "s3-webp");
        check_behavior(
            def.target_origin_id(),
            def.viewer_protocol_policy(),
            def.allowed_methods(),
            def.compress(),
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
                ("/webp/*", "s3-webp"),
                ("/jpeg/*", "s3-jpeg"),
                ("/png/*", "s3-png")
            ]
        );
        for b in cbs {
            check_behavior(
                b.target_origin_id(),
                b.viewer_protocol_policy(),
                b.allowed_methods(),
                b.compress(),
                (b.min_ttl(), b.default_ttl(), b.max_ttl()),
            );
        }
    }
    let tags = cf_tags(&h.aws, &out.arn).await;
    assert_eq!(tags, d.tags);
    assert_eq!(tags.get("team").map(String::as_str), Some("media"));
    assert_eq!(tags.get(OWNER_TAG), Some(&h.desired.id.owner_tag_value()));

    // Ready once Deployed; then a second pass makes zero writes.
    until_ready(&h, &d, &oac, &out.id).await;
    let before = h.writes();
    let (r, again) = distribution::reconcile(&h.ctx(), &d, &oac, Some(&out.id))
        .await
        .unwrap();
    assert_eq!(r.state, State::Ready);
    assert!(r.changes.is_empty(), "{r:?}");
    assert_eq!(again.as_ref(), Some(&out));
    // Status lost (no known id): found by caller reference, not duplicated.
    let (r, again) = distribution::reconcile(&h.ctx(), &d, &oac, None)
        .await
        .unwrap();
    assert!(!r.created && r.changes.is_empty(), "{r:?}");
    assert_eq!(again.map(|o| o.id), Some(out.id.clone()));
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
    cbs.items.as_mut().unwrap()[1].viewer_protocol_policy = ViewerProtocolPolicy::AllowAll;
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
    let (r, _) = distribution::reconcile(&h.ctx(), &d, &oac, Some(&out.id))
        .await
        .unwrap();
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
    assert!(distribution::diff(&distribution::config(&d, &oac).unwrap(), c).is_empty());
    assert_eq!(cf_tags(&h.aws, &out.arn).await, d.tags);
    until_ready(&h, &d, &oac, &out.id).await;
    let before = h.writes();
    distribution::reconcile(&h.ctx(), &d, &oac, Some(&out.id))
        .await
        .unwrap();
    assert_eq!(h.writes(), before, "{:?}", h.stats.write_operations());

    // The OAC cannot go while the distribution uses it.
    match origin_access::delete(&h.ctx(), &oac_d).await.unwrap() {
        Deletion::InProgress(msg) => assert!(msg.contains("still used"), "{msg}"),
        other => panic!("OAC deleted while in use: {other:?}"),
    }

    // Delete: disable → wait for Deployed → delete with the new ETag, one step per pass.
    let mut steps = Vec::new();
    let mut gone = false;
    for _ in 0..10 {
        match distribution::delete(&h.ctx(), &d, Some(&out.id))
            .await
            .unwrap()
        {
            Deletion::Gone => {
                gone = true;
                break;
            }
            Deletion::InProgress(msg) => steps.push(msg),
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
    assert_eq!(
        distribution::delete(&h.ctx(), &d, Some(&out.id))
            .await
            .unwrap(),
        Deletion::Gone
    );
    assert_eq!(
        origin_access::delete(&h.ctx(), &oac_d).await.unwrap(),
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
        distribution_id: Some("E2QWRUHEXAMPLE".into()),
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

#[tokio::test]
async fn dashboard_create_read_back_drift_and_delete() {
    let h = harness("environment: dev").await;
    let d = dashboard::desired(&h.desired.id, &dashboard_input(&h));
    let cw = &h.aws.cloudwatch;

    let r = dashboard::reconcile(&h.ctx(), &d).await.unwrap();
    assert!(r.created, "{r:?}");
    assert_eq!(r.state, State::Ready);
    let body = dashboard_body(&h.aws, &d.name).await;
    assert_eq!(body, d.body);
    let text = body.to_string();
    assert!(text.contains(&h.desired.id.function_name()));
    assert!(text.contains(&h.desired.table.name));

    let before = h.writes();
    let r = dashboard::reconcile(&h.ctx(), &d).await.unwrap();
    assert!(!r.created && r.changes.is_empty(), "{r:?}");
    assert_eq!(h.writes(), before, "{:?}", h.stats.write_operations());

    // Reformatted out of band (same meaning): not drift.
    cw.put_dashboard()
        .dashboard_name(&d.name)
        .dashboard_body(serde_json::to_string_pretty(&d.body).unwrap())
        .send()
        .await
        .unwrap();
    let before = h.writes();
    let r = dashboard::reconcile(&h.ctx(), &d).await.unwrap();
    assert!(r.changes.is_empty(), "{r:?}");
    assert_eq!(h.writes(), before);

    // A widget removed out of band: repaired.
    let mut edited = d.body.clone();
    edited["widgets"].as_array_mut().unwrap().pop();
    cw.put_dashboard()
        .dashboard_name(&d.name)
        .dashboard_body(edited.to_string())
        .send()
        .await
        .unwrap();
    let r = dashboard::reconcile(&h.ctx(), &d).await.unwrap();
    let fields: Vec<&str> = r.changes.iter().map(|c| c.field.as_str()).collect();
    assert_eq!(fields, ["dashboardBody"], "{r:?}");
    assert_eq!(dashboard_body(&h.aws, &d.name).await, d.body);
    let before = h.writes();
    dashboard::reconcile(&h.ctx(), &d).await.unwrap();
    assert_eq!(h.writes(), before);

    // Delete: gone, idempotent.
    assert_eq!(
        dashboard::delete(&h.ctx(), &d.name).await.unwrap(),
        Deletion::Gone
    );
    assert!(
        cw.get_dashboard()
            .dashboard_name(&d.name)
            .send()
            .await
            .is_err()
    );
    let before = h.writes();
    assert_eq!(
        dashboard::delete(&h.ctx(), &d.name).await.unwrap(),
        Deletion::Gone
    );
    assert_eq!(h.writes(), before, "nothing to delete: no write");
    assert!(dashboard::console_url(&h.desired.env.region, &d.name).contains(&d.name));
}

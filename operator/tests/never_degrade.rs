//! S2, "never degrade what serves", with the real components: the buckets and
//! their policies live in the AWS emulator (moto over HTTPS, see
//! scripts/emulator/README.md), CloudFront first in the emulator too and then
//! behind an aws-smithy-mocks client that answers every call with a 503 — as
//! a CloudFront outage or a throttling storm would. For several passes the
//! output buckets' policies, which carry the distribution's read grant, stay
//! byte for byte what they were, and the stack reports `Reconciling` /
//! `AWSRetrying`, not a repair.

use aws_sdk_cloudfront::Client;
use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;
use imagestack_operator::api::{ComponentName, ComponentState};
use imagestack_operator::components::Ctx;
use imagestack_operator::driver::{Entry, Graph};
use imagestack_operator::policy;
use imagestack_operator::status::Phase;

mod common;
use common::harness;

/// The CDN half of a stack's graph (buckets, OAC, edge function,
/// distribution, grants), as `plan` wires it.
fn cdn_graph(d: &imagestack_operator::plan::DesiredStack) -> Graph {
    use ComponentName as N;
    let mut entries: Vec<Entry> = d.buckets.iter().cloned().map(Entry::new).collect();
    entries.push(Entry::new(d.origin_access.clone()));
    entries.push(Entry::new(d.edge_function.clone()));
    entries.push(Entry::new(d.distribution.clone()).after([
        N::OriginAccessControl,
        N::EdgeFunction,
        N::WebpBucket,
        N::JpegBucket,
        N::PngBucket,
    ]));
    for g in &d.grants {
        let host = d
            .buckets
            .iter()
            .find(|b| b.name == g.bucket)
            .map(|b| b.component)
            .unwrap();
        entries.push(Entry::new(g.clone()).inside(host).after([N::Distribution]));
    }
    Graph::new(entries).unwrap()
}

fn unavailable() -> HttpResponse {
    let body = r#"<?xml version="1.0"?>
<ErrorResponse xmlns="http://cloudfront.amazonaws.com/doc/2020-05-31/">
   <Error><Type>Receiver</Type><Code>ServiceUnavailable</Code><Message>Service unavailable</Message></Error>
   <RequestId>00000000-0000-0000-0000-000000000000</RequestId>
</ErrorResponse>"#;
    let mut resp = HttpResponse::new(StatusCode::try_from(503).unwrap(), SdkBody::from(body));
    resp.headers_mut().insert("Content-Type", "text/xml");
    resp
}

async fn policies(h: &common::Harness) -> Vec<String> {
    let mut out = Vec::new();
    for (_, bucket) in h.desired.output_buckets() {
        let p = h
            .aws
            .s3
            .get_bucket_policy()
            .bucket(&bucket)
            .send()
            .await
            .unwrap();
        out.push(p.policy().unwrap().to_string());
    }
    out
}

#[tokio::test]
async fn a_cloudfront_outage_leaves_every_bucket_policy_byte_identical() {
    let h = harness("environment: dev").await;
    let graph = cdn_graph(&h.desired);
    // Converge against the emulator: the distribution deploys, the grants are written.
    let ctx = Ctx::new(&h.aws, &h.desired.id, false);
    let mut phase = Phase::Ready;
    for _ in 0..6 {
        phase = graph.apply(&ctx).await.phase();
        if phase == Phase::Ready {
            break;
        }
    }
    assert_eq!(phase, Phase::Ready);
    let before = policies(&h).await;
    for p in &before {
        let doc = policy::parse(p).unwrap();
        assert!(
            policy::statement(&doc, policy::CLOUDFRONT_READ_SID).is_some(),
            "the grant is in place: {p}"
        );
    }
    let writes = h.writes();

    // CloudFront now fails every call (the SDK's retries included).
    let rules: Vec<Rule> = vec![
        mock!(Client::list_origin_access_controls).then_http_response(unavailable),
        mock!(Client::get_distribution).then_http_response(unavailable),
        mock!(Client::list_distributions).then_http_response(unavailable),
        mock!(Client::get_distribution_config).then_http_response(unavailable),
        mock!(Client::list_tags_for_resource).then_http_response(unavailable),
        mock!(Client::describe_function).then_http_response(unavailable),
        mock!(Client::get_function).then_http_response(unavailable),
    ];
    let refs: Vec<&Rule> = rules.iter().collect();
    let mut aws = h.aws.clone();
    aws.cloudfront = mock_client!(aws_sdk_cloudfront, RuleMode::MatchAny, &refs);
    let broken = Ctx::new(&aws, &h.desired.id, false);
    for pass in 0..3 {
        let p = graph.apply(&broken).await;
        match p.phase() {
            Phase::Progressing { reason, message } => {
                assert_eq!(reason, "AWSRetrying", "pass {pass}: {message}");
            }
            other => panic!("pass {pass}: {other:?}"),
        }
        for s in p.statuses() {
            if matches!(
                s.name,
                ComponentName::WebpCdnGrant
                    | ComponentName::JpegCdnGrant
                    | ComponentName::PngCdnGrant
            ) {
                assert_eq!(s.state, ComponentState::Pending, "{s:?}");
            }
        }
        assert_eq!(policies(&h).await, before, "pass {pass}");
    }
    assert_eq!(h.writes(), writes, "no AWS write during the outage");

    // CloudFront is back: nothing to repair, nothing written.
    let p = graph.apply(&ctx).await;
    assert_eq!(p.phase(), Phase::Ready);
    assert_eq!(h.writes(), writes);
    assert_eq!(policies(&h).await, before);
}

//! S5 for S3, with aws-sdk-s3's own test support: a `HeadBucket` 403 (which
//! carries no error body) is `AccessDenied` naming the action — never "not
//! ours", never "gone" — in reconcile, in delete and in the deletion preflight.

use aws_config::BehaviorVersion;
use aws_sdk_s3::Client;
use aws_smithy_mocks::{RuleMode, mock, mock_client};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;
use aws_types::SdkConfig;
use aws_types::region::Region;
use imagestack_operator::api::{ComponentName, ImageOptimizationStack, ImageOptimizationStackSpec};
use imagestack_operator::aws::AwsClients;
use imagestack_operator::components::Ctx;
use imagestack_operator::driver::{self, Entry, Graph};
use imagestack_operator::error::ErrorClass;
use imagestack_operator::plan::{self, AwsEnv};
use imagestack_operator::status::Phase;

fn clients(s3: Client) -> AwsClients {
    // Everything but S3 is never called.
    let cfg = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("eu-west-1"))
        .build();
    AwsClients {
        s3,
        ..AwsClients::from_sdk_config(&cfg)
    }
}

fn desired() -> plan::DesiredStack {
    let spec: ImageOptimizationStackSpec =
        serde_json::from_value(serde_json::json!({"environment": "dev"})).unwrap();
    let mut stack = ImageOptimizationStack::new("images", spec);
    stack.metadata.namespace = Some("team-a".into());
    plan::plan(
        &stack,
        &AwsEnv {
            account_id: "123456789012".into(),
            region: "eu-west-1".into(),
        },
    )
    .unwrap()
}

#[tokio::test]
async fn head_bucket_403_is_access_denied_everywhere() {
    let denied = mock!(Client::head_bucket).then_http_response(|| {
        HttpResponse::new(StatusCode::try_from(403).unwrap(), SdkBody::empty())
    });
    let s3 = mock_client!(aws_sdk_s3, RuleMode::MatchAny, &[&denied]);
    let aws = clients(s3);
    let d = desired();
    let ctx = Ctx::new(&aws, &d.id, false);
    let bucket = d.bucket(ComponentName::UploadBucket).unwrap().clone();

    for e in [
        driver::reconcile_one(&ctx, &bucket).await.unwrap_err(),
        driver::delete_one(&ctx, &bucket).await.unwrap_err(),
    ] {
        assert_eq!(e.reason(), "AccessDenied", "{e}");
        assert_eq!(e.class(), ErrorClass::Stalled);
        assert!(e.status_message().contains("s3:ListBucket"), "{e}");
    }

    // The deletion preflight stalls on it: nothing is deleted, the finalizer stays.
    let graph = Graph::new(vec![Entry::new(bucket)]).unwrap();
    let pass = graph.delete(&ctx).await;
    match pass.deletion_phase() {
        Some(Phase::Stalled { reason, message }) => {
            assert_eq!(reason, "AccessDenied");
            assert!(message.contains("s3:ListBucket"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    // A 403 is not retried: one HeadBucket per attempt above, and nothing else.
    assert_eq!(denied.num_calls(), 3);
}

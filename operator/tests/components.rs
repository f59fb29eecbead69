//! Each storage component against the AWS emulator (moto over HTTPS, started
//! by scripts/emulator/start.sh; see README "Tests"): create → read every
//! setting back with the SDK; out-of-band change → repaired; second pass →
//! zero writes; delete; non-empty bucket; name conflict.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
use imagestack_operator::api::ComponentName;
use imagestack_operator::aws::AwsClients;
use imagestack_operator::components::{self, Ctx, Deletion, State};
use imagestack_operator::driver;
use imagestack_operator::error::Error;
use imagestack_operator::lifecycle;
use imagestack_operator::naming::{OWNER_TAG, StackId};
use imagestack_operator::policy;

mod common;
use common::{harness, harness_in, unique};

async fn bucket_tags(aws: &AwsClients, b: &str) -> BTreeMap<String, String> {
    aws.s3
        .get_bucket_tagging()
        .bucket(b)
        .send()
        .await
        .map(|o| {
            o.tag_set()
                .iter()
                .map(|t| (t.key().to_string(), t.value().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// Every lifecycle rule of a bucket: (id, noncurrent-version expiration days,
/// abort-incomplete-multipart days), sorted by id; enabled whole-bucket rules only.
async fn lifecycle_rules(aws: &AwsClients, b: &str) -> Vec<(String, Option<i32>, Option<i32>)> {
    let out = aws
        .s3
        .get_bucket_lifecycle_configuration()
        .bucket(b)
        .send()
        .await
        .expect("lifecycle configuration");
    let mut rules: Vec<_> = out
        .rules()
        .iter()
        .map(|r| {
            assert_eq!(r.status().as_str(), "Enabled", "{r:?}");
            (
                r.id().unwrap_or_default().to_string(),
                r.noncurrent_version_expiration()
                    .and_then(|n| n.noncurrent_days()),
                r.abort_incomplete_multipart_upload()
                    .and_then(|a| a.days_after_initiation()),
            )
        })
        .collect();
    rules.sort();
    rules
}

/// The bucket with `emptyOnDelete` set as the test wants it.
fn with_empty(
    d: &components::bucket::DesiredBucket,
    empty: bool,
) -> components::bucket::DesiredBucket {
    let mut d = d.clone();
    d.empty_on_delete = empty;
    d
}

#[tokio::test]
async fn upload_bucket_create_read_back_drift_and_zero_writes() {
    let h = harness("environment: dev\nbuckets: {upload: {cors: {allowedOrigins: ['https://app.example.com'], maxAgeSeconds: 600}}}\ntags: {team: media}").await;
    let d = h
        .desired
        .bucket(ComponentName::UploadBucket)
        .unwrap()
        .clone();
    let r = driver::reconcile_one(&h.ctx(), &d).await.unwrap();
    assert!(r.created);
    assert_eq!(r.state, State::Ready);

    // Read every setting back with the SDK.
    let s3 = &h.aws.s3;
    let v = s3
        .get_bucket_versioning()
        .bucket(&d.name)
        .send()
        .await
        .unwrap();
    assert_eq!(v.status(), Some(&BucketVersioningStatus::Enabled));
    let a = s3
        .get_bucket_accelerate_configuration()
        .bucket(&d.name)
        .send()
        .await
        .unwrap();
    assert_eq!(a.status().map(|s| s.as_str()), Some("Enabled"));
    let cors = s3.get_bucket_cors().bucket(&d.name).send().await.unwrap();
    let rule = &cors.cors_rules()[0];
    assert_eq!(rule.allowed_origins(), ["https://app.example.com"]);
    let mut methods = rule.allowed_methods().to_vec();
    methods.sort();
    assert_eq!(methods, ["POST", "PUT"]);
    assert_eq!(rule.expose_headers(), ["ETag"]);
    assert_eq!(rule.max_age_seconds(), Some(600));
    let pab = s3
        .get_public_access_block()
        .bucket(&d.name)
        .send()
        .await
        .unwrap();
    let pab = pab.public_access_block_configuration().unwrap();
    assert_eq!(
        [
            pab.block_public_acls(),
            pab.ignore_public_acls(),
            pab.block_public_policy(),
            pab.restrict_public_buckets()
        ],
        [Some(true); 4]
    );
    let enc = s3
        .get_bucket_encryption()
        .bucket(&d.name)
        .send()
        .await
        .unwrap();
    let rule = &enc.server_side_encryption_configuration().unwrap().rules()[0];
    assert_eq!(
        rule.apply_server_side_encryption_by_default()
            .unwrap()
            .sse_algorithm()
            .as_str(),
        "AES256"
    );
    assert_eq!(rule.bucket_key_enabled(), Some(true));
    let own = s3
        .get_bucket_ownership_controls()
        .bucket(&d.name)
        .send()
        .await
        .unwrap();
    assert_eq!(
        own.ownership_controls().unwrap().rules()[0]
            .object_ownership()
            .as_str(),
        "BucketOwnerEnforced"
    );
    let pol = s3.get_bucket_policy().bucket(&d.name).send().await.unwrap();
    let pol = policy::parse(pol.policy().unwrap()).unwrap();
    let tls = policy::statement(&pol, policy::TLS_ONLY_SID).expect("TLS-only statement");
    assert!(policy::same_statement(&tls, &d.tls_statement));
    assert_eq!(tls["Condition"]["Bool"]["aws:SecureTransport"], "false");
    let tags = bucket_tags(&h.aws, &d.name).await;
    assert_eq!(tags.get("team").map(String::as_str), Some("media"));
    assert_eq!(tags.get(OWNER_TAG), Some(&h.desired.id.owner_tag_value()));
    // Lifecycle: noncurrent versions expire after 30 days, incomplete multipart uploads
    // are aborted after 7 (the defaults), each rule on the whole bucket.
    let rules = lifecycle_rules(&h.aws, &d.name).await;
    assert_eq!(
        rules,
        [
            (
                lifecycle::ABORT_MULTIPART_RULE_ID.to_string(),
                None,
                Some(7)
            ),
            (lifecycle::NONCURRENT_RULE_ID.to_string(), Some(30), None),
        ]
    );

    // Object requests over TLS still work with the TLS-only policy in place.
    s3.put_object()
        .bucket(&d.name)
        .key("a.jpg")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap();
    s3.get_object()
        .bucket(&d.name)
        .key("a.jpg")
        .send()
        .await
        .unwrap();

    // In sync: a second pass makes zero mutating calls.
    let before = h.writes();
    let r = driver::reconcile_one(&h.ctx(), &d).await.unwrap();
    assert!(!r.created && r.changes.is_empty(), "{r:?}");
    assert_eq!(
        h.writes(),
        before,
        "writes: {:?}",
        h.stats.write_operations()
    );

    // Out-of-band changes.
    s3.put_bucket_versioning()
        .bucket(&d.name)
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Suspended)
                .build(),
        )
        .send()
        .await
        .unwrap();
    s3.delete_bucket_cors()
        .bucket(&d.name)
        .send()
        .await
        .unwrap();
    s3.delete_public_access_block()
        .bucket(&d.name)
        .send()
        .await
        .unwrap();
    s3.delete_bucket_policy()
        .bucket(&d.name)
        .send()
        .await
        .unwrap();
    let r = driver::reconcile_one(&h.ctx(), &d).await.unwrap();
    let fields: Vec<&str> = r.changes.iter().map(|c| c.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "publicAccessBlock",
            "versioning",
            "cors",
            "bucketPolicy[DenyInsecureTransport]"
        ],
        "{r:?}"
    );
    assert!(
        r.changes
            .iter()
            .any(|c| c.to_string() == "versioning: Suspended → Enabled")
    );
    let v = s3
        .get_bucket_versioning()
        .bucket(&d.name)
        .send()
        .await
        .unwrap();
    assert_eq!(v.status(), Some(&BucketVersioningStatus::Enabled));
    assert!(s3.get_bucket_policy().bucket(&d.name).send().await.is_ok());
    let before = h.writes();
    driver::reconcile_one(&h.ctx(), &d).await.unwrap();
    assert_eq!(
        h.writes(),
        before,
        "writes: {:?}",
        h.stats.write_operations()
    );

    // Delete: not empty without emptyOnDelete → BucketNotEmpty with a count.
    let err = driver::delete_one(&h.ctx(), &with_empty(&d, false))
        .await
        .unwrap_err();
    match &err {
        Error::BucketNotEmpty { count, .. } => assert!(*count >= 1),
        other => panic!("expected BucketNotEmpty, got {other}"),
    }
    assert_eq!(err.reason(), "BucketNotEmpty");
    // Versioned: add a second version and a delete marker; emptying removes all of them.
    s3.put_object()
        .bucket(&d.name)
        .key("a.jpg")
        .body(ByteStream::from_static(b"y"))
        .send()
        .await
        .unwrap();
    s3.delete_object()
        .bucket(&d.name)
        .key("a.jpg")
        .send()
        .await
        .unwrap();
    let del = driver::delete_one(&h.ctx(), &with_empty(&d, true))
        .await
        .unwrap();
    assert_eq!(del, Deletion::Gone);
    assert!(s3.head_bucket().bucket(&d.name).send().await.is_err());
    // Idempotent.
    assert_eq!(
        driver::delete_one(&h.ctx(), &with_empty(&d, true))
            .await
            .unwrap(),
        Deletion::Absent
    );
    drop(h.factory);
}

#[tokio::test]
async fn output_bucket_stays_private_and_converges() {
    let h = harness("environment: dev").await;
    let d = h.desired.bucket(ComponentName::WebpBucket).unwrap().clone();
    let r = driver::reconcile_one(&h.ctx(), &d).await.unwrap();
    assert!(r.created);
    let s3 = &h.aws.s3;
    // Private: no public policy statement, every public-access block on, ACLs disabled.
    let pol = policy::parse(
        s3.get_bucket_policy()
            .bucket(&d.name)
            .send()
            .await
            .unwrap()
            .policy()
            .unwrap(),
    )
    .unwrap();
    for st in pol["Statement"].as_array().unwrap() {
        assert_eq!(
            st["Effect"], "Deny",
            "output buckets grant nothing publicly: {st}"
        );
    }
    let own = s3
        .get_bucket_ownership_controls()
        .bucket(&d.name)
        .send()
        .await
        .unwrap();
    assert_eq!(
        own.ownership_controls().unwrap().rules()[0]
            .object_ownership()
            .as_str(),
        "BucketOwnerEnforced"
    );
    // Tags removed out of band are restored.
    s3.delete_bucket_tagging()
        .bucket(&d.name)
        .send()
        .await
        .unwrap();
    // Without our tag the bucket reads as foreign: the operator refuses to touch it.
    let err = driver::reconcile_one(&h.ctx(), &d).await.unwrap_err();
    assert_eq!(err.reason(), "NameConflict");
    s3.put_bucket_tagging()
        .bucket(&d.name)
        .tagging(
            aws_sdk_s3::types::Tagging::builder()
                .tag_set(
                    aws_sdk_s3::types::Tag::builder()
                        .key(OWNER_TAG)
                        .value(h.desired.id.owner_tag_value())
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let r = driver::reconcile_one(&h.ctx(), &d).await.unwrap();
    assert_eq!(r.changes.len(), 1, "{r:?}");
    assert_eq!(r.changes[0].field, "tags");
    assert_eq!(bucket_tags(&h.aws, &d.name).await, d.tags);
    // Output buckets abort incomplete multipart uploads too (and keep no versions to expire).
    assert_eq!(
        lifecycle_rules(&h.aws, &d.name).await,
        [(
            lifecycle::ABORT_MULTIPART_RULE_ID.to_string(),
            None,
            Some(7)
        )]
    );
    let before = h.writes();
    driver::reconcile_one(&h.ctx(), &d).await.unwrap();
    assert_eq!(h.writes(), before);
    assert_eq!(
        driver::delete_one(&h.ctx(), &with_empty(&d, false))
            .await
            .unwrap(),
        Deletion::Gone
    );
}

#[tokio::test]
async fn foreign_bucket_is_a_name_conflict_and_never_touched() {
    let h = harness("environment: dev\ndeletionPolicy: Delete").await;
    let d = h
        .desired
        .bucket(ComponentName::UploadBucket)
        .unwrap()
        .clone();
    let s3 = &h.aws.s3;
    s3.create_bucket().bucket(&d.name).send().await.unwrap();
    s3.put_object()
        .bucket(&d.name)
        .key("theirs.txt")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap();
    let before = h.writes();
    let err = driver::reconcile_one(&h.ctx(), &d).await.unwrap_err();
    assert!(matches!(err, Error::NameConflict { .. }), "{err}");
    assert_eq!(err.reason(), "NameConflict");
    assert_eq!(h.writes(), before, "no write on a foreign bucket");
    assert!(s3.get_bucket_policy().bucket(&d.name).send().await.is_err());
    // Deleting the stack leaves it alone.
    assert_eq!(
        driver::delete_one(&h.ctx(), &with_empty(&d, true))
            .await
            .unwrap(),
        Deletion::Absent
    );
    assert!(
        s3.head_object()
            .bucket(&d.name)
            .key("theirs.txt")
            .send()
            .await
            .is_ok()
    );
    // Another stack's bucket is a conflict too.
    let other = StackId::new("elsewhere", "other", "dev");
    let ctx = Ctx::new(&h.aws, &other, false);
    let d2 = h.desired.bucket(ComponentName::PngBucket).unwrap().clone();
    driver::reconcile_one(&h.ctx(), &d2).await.unwrap();
    let err = driver::reconcile_one(&ctx, &d2).await.unwrap_err();
    assert!(
        err.to_string().contains(&h.desired.id.owner_tag_value()),
        "{err}"
    );
}

#[tokio::test]
async fn table_create_read_back_drift_delete() {
    let h =
        harness("environment: dev\ntable: {pointInTimeRecovery: true}\ntags: {team: media}").await;
    let d = h.desired.table.clone();
    let r = driver::reconcile_one(&h.ctx(), &d).await.unwrap();
    assert!(r.created);
    assert!(
        matches!(r.state, State::Progressing { .. }),
        "a new table is CREATING: {r:?}"
    );
    // Poll until ACTIVE and configured (bounded).
    let mut ready = false;
    for _ in 0..50 {
        let r = driver::reconcile_one(&h.ctx(), &d).await.unwrap();
        if r.state == State::Ready {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(ready, "table never became Ready");
    let ddb = &h.aws.dynamodb;
    let t = ddb
        .describe_table()
        .table_name(&d.name)
        .send()
        .await
        .unwrap();
    let t = t.table().unwrap();
    assert_eq!(
        t.billing_mode_summary()
            .unwrap()
            .billing_mode()
            .unwrap()
            .as_str(),
        "PAY_PER_REQUEST"
    );
    assert_eq!(t.key_schema()[0].attribute_name(), "image_id");
    let gsi = &t.global_secondary_indexes()[0];
    assert_eq!(gsi.index_name(), Some("timestamp-index"));
    assert_eq!(gsi.key_schema()[0].attribute_name(), "upload_timestamp");
    assert_eq!(
        gsi.projection()
            .unwrap()
            .projection_type()
            .unwrap()
            .as_str(),
        "ALL"
    );
    assert_eq!(
        t.sse_description().unwrap().status().unwrap().as_str(),
        "ENABLED"
    );
    let cb = ddb
        .describe_continuous_backups()
        .table_name(&d.name)
        .send()
        .await
        .unwrap();
    let pitr = cb
        .continuous_backups_description()
        .unwrap()
        .point_in_time_recovery_description()
        .unwrap();
    assert_eq!(
        pitr.point_in_time_recovery_status().unwrap().as_str(),
        "ENABLED"
    );
    let arn = t.table_arn().unwrap().to_string();

    let before = h.writes();
    let r = driver::reconcile_one(&h.ctx(), &d).await.unwrap();
    assert!(r.changes.is_empty());
    assert_eq!(h.writes(), before, "{:?}", h.stats.write_operations());

    // Drift: PITR off, a tag removed, a stray tag added.
    ddb.update_continuous_backups()
        .table_name(&d.name)
        .point_in_time_recovery_specification(
            aws_sdk_dynamodb::types::PointInTimeRecoverySpecification::builder()
                .point_in_time_recovery_enabled(false)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    ddb.untag_resource()
        .resource_arn(&arn)
        .tag_keys("team")
        .send()
        .await
        .unwrap();
    ddb.tag_resource()
        .resource_arn(&arn)
        .tags(
            aws_sdk_dynamodb::types::Tag::builder()
                .key("stray")
                .value("x")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let r = driver::reconcile_one(&h.ctx(), &d).await.unwrap();
    let fields: Vec<&str> = r.changes.iter().map(|c| c.field.as_str()).collect();
    assert_eq!(fields, ["tags", "pointInTimeRecovery"], "{r:?}");
    let tags = ddb
        .list_tags_of_resource()
        .resource_arn(&arn)
        .send()
        .await
        .unwrap();
    let tags: BTreeMap<String, String> = tags
        .tags()
        .iter()
        .map(|t| (t.key().into(), t.value().into()))
        .collect();
    assert_eq!(tags, d.tags);
    let before = h.writes();
    driver::reconcile_one(&h.ctx(), &d).await.unwrap();
    assert_eq!(h.writes(), before);

    // Delete until gone (bounded polling).
    let mut gone = false;
    for _ in 0..50 {
        if !matches!(
            driver::delete_one(&h.ctx(), &d).await.unwrap(),
            Deletion::InProgress(_)
        ) {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(gone);
    assert!(
        ddb.describe_table()
            .table_name(&d.name)
            .send()
            .await
            .is_err()
    );
}

#[tokio::test]
async fn role_least_privilege_semantic_compare_and_drift() {
    let h = harness("environment: dev\nprocessor: {formats: [webp, jpeg]}").await;
    let d = h.desired.role.clone();
    let r = driver::reconcile_one(&h.ctx(), &d).await.unwrap();
    assert!(r.created);
    let iam = &h.aws.iam;
    let role = iam.get_role().role_name(&d.name).send().await.unwrap();
    let role = role.role().unwrap();
    // IAM hands documents back URL-encoded: compare semantically.
    let trust = policy::parse(role.assume_role_policy_document().unwrap()).unwrap();
    assert!(policy::equivalent(&trust, &d.trust_policy));
    let inline = iam
        .get_role_policy()
        .role_name(&d.name)
        .policy_name(&d.policy_name)
        .send()
        .await
        .unwrap();
    let doc = policy::parse(inline.policy_document()).unwrap();
    assert!(policy::equivalent(&doc, &d.policy));
    let res = policy::resources(&doc);
    assert!(res.iter().all(|r| r != "*"), "{res:?}");
    let webp = h
        .desired
        .bucket(ComponentName::WebpBucket)
        .unwrap()
        .name
        .clone();
    let png = h
        .desired
        .bucket(ComponentName::PngBucket)
        .unwrap()
        .name
        .clone();
    assert!(res.contains(&format!("arn:aws:s3:::{webp}/webp/*")));
    assert!(
        !res.iter().any(|r| r.contains(&png)),
        "png disabled: {res:?}"
    );

    // Unchanged policy is never rewritten.
    let before = h.writes();
    let r = driver::reconcile_one(&h.ctx(), &d).await.unwrap();
    assert!(r.changes.is_empty(), "{r:?}");
    assert_eq!(h.writes(), before, "{:?}", h.stats.write_operations());

    // Drift: widened inline policy, an extra inline policy, a managed policy attached.
    iam.put_role_policy()
        .role_name(&d.name)
        .policy_name(&d.policy_name)
        .policy_document(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#)
        .send()
        .await
        .unwrap();
    iam.put_role_policy()
        .role_name(&d.name)
        .policy_name("sneaky")
        .policy_document(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iam:*","Resource":"*"}]}"#)
        .send()
        .await
        .unwrap();
    iam.attach_role_policy()
        .role_name(&d.name)
        .policy_arn("arn:aws:iam::aws:policy/AdministratorAccess")
        .send()
        .await
        .unwrap();
    let r = driver::reconcile_one(&h.ctx(), &d).await.unwrap();
    assert_eq!(r.changes.len(), 3, "{r:?}");
    let names = iam
        .list_role_policies()
        .role_name(&d.name)
        .send()
        .await
        .unwrap();
    assert_eq!(names.policy_names(), std::slice::from_ref(&d.policy_name));
    let attached = iam
        .list_attached_role_policies()
        .role_name(&d.name)
        .send()
        .await
        .unwrap();
    assert!(attached.attached_policies().is_empty());
    let inline = iam
        .get_role_policy()
        .role_name(&d.name)
        .policy_name(&d.policy_name)
        .send()
        .await
        .unwrap();
    assert!(policy::equivalent(
        &policy::parse(inline.policy_document()).unwrap(),
        &d.policy
    ));
    let before = h.writes();
    driver::reconcile_one(&h.ctx(), &d).await.unwrap();
    assert_eq!(h.writes(), before);

    assert_eq!(
        driver::delete_one(&h.ctx(), &d).await.unwrap(),
        Deletion::Gone
    );
    assert!(iam.get_role().role_name(&d.name).send().await.is_err());
    assert_eq!(
        driver::delete_one(&h.ctx(), &d).await.unwrap(),
        Deletion::Absent
    );
}

#[tokio::test]
async fn paused_stack_observes_but_never_writes() {
    let h = harness("environment: dev").await;
    let d = h
        .desired
        .bucket(ComponentName::UploadBucket)
        .unwrap()
        .clone();
    let paused = Ctx::new(&h.aws, &h.desired.id, true);
    let before = h.writes();
    let r = driver::reconcile_one(&paused, &d).await.unwrap();
    assert!(matches!(r.state, State::Paused { .. }), "{r:?}");
    assert_eq!(h.writes(), before);
    assert!(h.aws.s3.head_bucket().bucket(&d.name).send().await.is_err());
}

/// A tiny function zip (content is irrelevant to the emulator, which cannot run code).
fn tiny_zip(dir: &std::path::Path, content: &str) -> std::path::PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("x86_64.zip");
    let status = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys,zipfile\ni=zipfile.ZipInfo('bootstrap',(1980,1,1,0,0,0))\ni.external_attr=0o100755<<16\nz=zipfile.ZipFile(sys.argv[1],'w')\nz.writestr(i,sys.argv[2])\nz.close()",
            path.to_str().unwrap(),
            content,
        ])
        .status()
        .unwrap();
    assert!(status.success());
    path
}

#[tokio::test]
async fn function_permission_notification_lifecycle() {
    let mut h = harness(
        "environment: dev\nprocessor: {memoryMb: 512, maxInputPixels: 5000000, timeoutSeconds: 60, reservedConcurrency: 7}",
    )
    .await;
    let dir = std::env::temp_dir().join(unique("artifact"));
    let zip = tiny_zip(&dir, "v1");
    h.desired.function.code = components::function::CodeSource::Zip { path: zip.clone() };
    let ctx = h.ctx();
    // Prerequisites: the buckets and the role.
    for b in h.desired.buckets.clone() {
        driver::reconcile_one(&ctx, &b).await.unwrap();
    }
    driver::reconcile_one(&ctx, &h.desired.role).await.unwrap();

    let d = h.desired.function.clone();
    let r = driver::reconcile_one(&ctx, &d).await.unwrap();
    assert!(r.created, "{r:?}");
    // Poll until Ready (Pending → Active; invoke config and log group on later passes).
    let mut ready = false;
    for _ in 0..50 {
        if driver::reconcile_one(&ctx, &d).await.unwrap().state == State::Ready {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(ready, "function never Ready");
    let lambda = &h.aws.lambda;
    let f = lambda
        .get_function()
        .function_name(&d.name)
        .send()
        .await
        .unwrap();
    let c = f.configuration().unwrap();
    assert_eq!(c.runtime().unwrap().as_str(), "provided.al2023");
    assert_eq!(c.handler(), Some("bootstrap"));
    assert_eq!(c.memory_size(), Some(512));
    assert_eq!(c.timeout(), Some(60));
    assert_eq!(c.role(), Some(h.desired.role.arn.as_str()));
    let sha = components::function::code_sha256(&std::fs::read(&zip).unwrap());
    assert_eq!(c.code_sha256(), Some(sha.as_str()));
    let env = c.environment().unwrap().variables().unwrap();
    assert_eq!(
        env.get(imagestack_contract::env::METADATA_TABLE),
        Some(&h.desired.table.name)
    );
    assert_eq!(
        f.tags().unwrap().get(OWNER_TAG),
        Some(&h.desired.id.owner_tag_value())
    );
    let inv = lambda
        .get_function_event_invoke_config()
        .function_name(&d.name)
        .send()
        .await
        .unwrap();
    assert_eq!(inv.maximum_retry_attempts(), Some(2));
    // Failed events go to the stack's queue.
    assert_eq!(
        inv.destination_config()
            .and_then(|d| d.on_failure())
            .and_then(|f| f.destination()),
        Some(h.desired.queue.arn.as_str())
    );
    let reserved = |f: &aws_sdk_lambda::operation::get_function::GetFunctionOutput| {
        f.concurrency()
            .and_then(|c| c.reserved_concurrent_executions())
    };
    assert_eq!(reserved(&f), Some(7), "reserved concurrency");
    let before = h.writes();
    assert_eq!(
        driver::reconcile_one(&ctx, &d).await.unwrap().state,
        State::Ready
    );
    assert_eq!(h.writes(), before, "{:?}", h.stats.write_operations());

    // Out of band: memory and an environment variable changed → repaired.
    let mut vars = env.clone();
    vars.insert(imagestack_contract::env::WEBP_QUALITY.into(), "1".into());
    lambda
        .update_function_configuration()
        .function_name(&d.name)
        .memory_size(128)
        .environment(
            aws_sdk_lambda::types::Environment::builder()
                .set_variables(Some(vars))
                .build(),
        )
        .send()
        .await
        .unwrap();
    let r = driver::reconcile_one(&ctx, &d).await.unwrap();
    assert!(
        r.changes
            .iter()
            .any(|c| c.from.contains("memoryMb: 128 → 512")),
        "{r:?}"
    );
    // New code (a spec/artifact change) → UpdateFunctionCode, CodeSha256 follows.
    tiny_zip(&dir, "v2");
    let mut converged = false;
    for _ in 0..50 {
        let r = driver::reconcile_one(&ctx, &d).await.unwrap();
        if r.state == State::Ready && r.changes.is_empty() {
            converged = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(converged);
    let c = lambda
        .get_function()
        .function_name(&d.name)
        .send()
        .await
        .unwrap();
    let c = c.configuration().unwrap();
    assert_eq!(c.memory_size(), Some(512));
    assert_eq!(
        c.code_sha256(),
        Some(components::function::code_sha256(&std::fs::read(&zip).unwrap()).as_str())
    );

    // Reserved concurrency: removed out of band → restored; 0 (stop processing)
    // is a reservation, not "unreserved"; unset in the spec → the reservation goes.
    lambda
        .delete_function_concurrency()
        .function_name(&d.name)
        .send()
        .await
        .unwrap();
    let r = driver::reconcile_one(&ctx, &d).await.unwrap();
    let texts: Vec<String> = r.changes.iter().map(ToString::to_string).collect();
    assert_eq!(texts, ["reservedConcurrency: unreserved → 7"], "{r:?}");
    let get = || lambda.get_function().function_name(&d.name).send();
    assert_eq!(reserved(&get().await.unwrap()), Some(7));
    let mut zero = d.clone();
    zero.reserved_concurrency = Some(0);
    let r = driver::reconcile_one(&ctx, &zero).await.unwrap();
    assert_eq!(r.changes.len(), 1, "{r:?}");
    assert_eq!(reserved(&get().await.unwrap()), Some(0));
    let before = h.writes();
    driver::reconcile_one(&ctx, &zero).await.unwrap();
    assert_eq!(h.writes(), before, "{:?}", h.stats.write_operations());
    let mut unreserved = d.clone();
    unreserved.reserved_concurrency = None;
    let r = driver::reconcile_one(&ctx, &unreserved).await.unwrap();
    assert_eq!(
        r.changes[0].to_string(),
        "reservedConcurrency: 0 → unreserved"
    );
    assert_eq!(reserved(&get().await.unwrap()), None);
    driver::reconcile_one(&ctx, &d).await.unwrap();
    assert_eq!(reserved(&get().await.unwrap()), Some(7));

    // Permission: created once, read back through GetPolicy, never duplicated.
    let p = h.desired.permission.clone();
    let r = driver::reconcile_one(&ctx, &p).await.unwrap();
    assert!(r.created);
    let policy = lambda
        .get_policy()
        .function_name(&d.name)
        .send()
        .await
        .unwrap();
    let o = components::permission::parse_statement(policy.policy().unwrap()).unwrap();
    assert_eq!(o.source_arn.as_deref(), Some(p.source_bucket_arn.as_str()));
    assert_eq!(o.source_account.as_deref(), Some(p.source_account.as_str()));
    let before = h.writes();
    let r = driver::reconcile_one(&ctx, &p).await.unwrap();
    assert!(!r.created && r.changes.is_empty());
    assert_eq!(h.writes(), before);

    // Notifications: both cases of every suffix; the trigger fires for .JPG and not for .txt.
    let n = h.desired.notification.clone();
    let r = driver::reconcile_one(&ctx, &n).await.unwrap();
    assert!(
        r.created,
        "the first rules are a creation, not a repair: {r:?}"
    );
    let rules = components::notification::observe(&ctx, &n.bucket)
        .await
        .unwrap()
        .ours;
    assert!(rules.iter().any(|r| r.3 == ".JPG"));
    assert_eq!(rules, components::notification::rules(&n));
    let before = h.writes();
    driver::reconcile_one(&ctx, &n).await.unwrap();
    assert_eq!(h.writes(), before);
    let group = format!("/aws/lambda/{}", d.name);
    let events = |aws: AwsClients, group: String| async move {
        aws.logs
            .filter_log_events()
            .log_group_name(group)
            .send()
            .await
            .map(|o| o.events().len())
            .unwrap_or_else(|e| {
                panic!(
                    "FilterLogEvents: {}",
                    aws_smithy_types::error::display::DisplayErrorContext(&e)
                )
            })
    };
    let s3 = &h.aws.s3;
    // The .txt goes first: had it triggered, its attempt would be logged before the .JPG's.
    s3.put_object()
        .bucket(&n.bucket)
        .key("notes.txt")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap();
    s3.put_object()
        .bucket(&n.bucket)
        .key("Holiday Photo.JPG")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap();
    // moto records each invocation attempt (it cannot run code without Docker) in the log group.
    let mut seen = 0;
    for _ in 0..300 {
        seen = events(h.aws.clone(), group.clone()).await;
        if seen > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        seen, 1,
        "expected exactly one invocation (the .JPG), saw {seen}"
    );

    // S4: the stack owns only its own rules. Somebody else's SQS rule and
    // Lambda rule survive a repair of ours and our deletion. (The emulator
    // drops EventBridge configuration and does not check that a queue
    // exists; neither matters for what is tested here: our merge.)
    let queue = aws_sdk_s3::types::QueueConfiguration::builder()
        .id("to-sqs")
        .queue_arn("arn:aws:sqs:us-east-1:123456789012:uploads-audit")
        .events(aws_sdk_s3::types::Event::from("s3:ObjectRemoved:*"))
        .build()
        .unwrap();
    let theirs = aws_sdk_s3::types::LambdaFunctionConfiguration::builder()
        .id("audit-tif")
        .lambda_function_arn(&n.function_arn)
        .events(aws_sdk_s3::types::Event::from("s3:ObjectCreated:*"))
        .filter(
            aws_sdk_s3::types::NotificationConfigurationFilter::builder()
                .key(
                    aws_sdk_s3::types::S3KeyFilter::builder()
                        .filter_rules(
                            aws_sdk_s3::types::FilterRule::builder()
                                .name(aws_sdk_s3::types::FilterRuleName::Suffix)
                                .value(".tif")
                                .build(),
                        )
                        .build(),
                )
                .build(),
        )
        .build()
        .unwrap();
    let current = s3
        .get_bucket_notification_configuration()
        .bucket(&n.bucket)
        .send()
        .await
        .unwrap();
    // Theirs added, one of ours dropped (drift).
    let mut lambdas: Vec<_> = current
        .lambda_function_configurations()
        .iter()
        .filter(|c| c.id() != Some("imagestack-png"))
        .cloned()
        .collect();
    lambdas.push(theirs.clone());
    s3.put_bucket_notification_configuration()
        .bucket(&n.bucket)
        .notification_configuration(
            aws_sdk_s3::types::NotificationConfiguration::builder()
                .set_lambda_function_configurations(Some(lambdas))
                .queue_configurations(queue.clone())
                .build(),
        )
        .send()
        .await
        .unwrap();
    let r = driver::reconcile_one(&ctx, &n).await.unwrap();
    assert_eq!(r.changes.len(), 1, "our rule repaired: {r:?}");
    let after = s3
        .get_bucket_notification_configuration()
        .bucket(&n.bucket)
        .send()
        .await
        .unwrap();
    let ids: Vec<&str> = after
        .lambda_function_configurations()
        .iter()
        .filter_map(|c| c.id())
        .collect();
    assert!(ids.contains(&"imagestack-png"), "{ids:?}");
    assert!(ids.contains(&"audit-tif"), "theirs kept: {ids:?}");
    assert_eq!(ids.len(), 9, "{ids:?}");
    assert_eq!(after.queue_configurations(), std::slice::from_ref(&queue));

    // Delete in order: notifications → permission → function.
    assert_eq!(driver::delete_one(&ctx, &n).await.unwrap(), Deletion::Gone);
    assert!(
        components::notification::observe(&ctx, &n.bucket)
            .await
            .unwrap()
            .ours
            .is_empty()
    );
    let left = s3
        .get_bucket_notification_configuration()
        .bucket(&n.bucket)
        .send()
        .await
        .unwrap();
    assert_eq!(left.lambda_function_configurations(), &[theirs]);
    assert_eq!(left.queue_configurations(), &[queue]);
    assert_eq!(driver::delete_one(&ctx, &p).await.unwrap(), Deletion::Gone);
    assert_eq!(driver::delete_one(&ctx, &d).await.unwrap(), Deletion::Gone);
    assert!(
        lambda
            .get_function()
            .function_name(&d.name)
            .send()
            .await
            .is_err()
    );
}

/// S4 for bucket policies: the stack manages only its statement ids; a user's
/// own statement survives the repair of ours.
#[tokio::test]
async fn a_users_bucket_policy_statement_survives_repairs() {
    let h = harness("environment: dev").await;
    let d = h.desired.bucket(ComponentName::JpegBucket).unwrap().clone();
    driver::reconcile_one(&h.ctx(), &d).await.unwrap();
    let s3 = &h.aws.s3;
    let theirs = serde_json::json!({
        "Sid": "AuditorsMayList",
        "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
        "Action": "s3:ListBucket",
        "Resource": format!("arn:aws:s3:::{}", d.name)
    });
    // Ours removed, theirs added.
    s3.put_bucket_policy()
        .bucket(&d.name)
        .policy(policy::bucket_policy(vec![theirs.clone()]).to_string())
        .send()
        .await
        .unwrap();
    let r = driver::reconcile_one(&h.ctx(), &d).await.unwrap();
    assert_eq!(r.changes.len(), 1, "{r:?}");
    let doc = policy::parse(
        s3.get_bucket_policy()
            .bucket(&d.name)
            .send()
            .await
            .unwrap()
            .policy()
            .unwrap(),
    )
    .unwrap();
    assert!(policy::statement(&doc, policy::TLS_ONLY_SID).is_some());
    let kept = policy::statement(&doc, "AuditorsMayList").expect("their statement kept");
    assert!(policy::same_statement(&kept, &theirs));
    // And a second pass leaves both alone.
    let before = h.writes();
    driver::reconcile_one(&h.ctx(), &d).await.unwrap();
    assert_eq!(h.writes(), before);
}

/// S7: the same namespace/name/environment in another installation (cluster id)
/// is somebody else's stack: a NameConflict on every resource, no write, and
/// its deletion deletes nothing. Resources tagged before installation ids
/// existed are adopted and get the cluster tag.
#[tokio::test]
async fn another_installation_never_touches_a_stacks_resources() {
    let a = harness_in("environment: dev", "cluster-a").await;
    let bucket = a
        .desired
        .bucket(ComponentName::UploadBucket)
        .unwrap()
        .clone();
    let role = a.desired.role.clone();
    driver::reconcile_one(&a.ctx(), &bucket).await.unwrap();
    driver::reconcile_one(&a.ctx(), &role).await.unwrap();
    let tags = bucket_tags(&a.aws, &bucket.name).await;
    assert_eq!(
        tags.get(imagestack_operator::naming::CLUSTER_TAG)
            .map(String::as_str),
        Some("cluster-a")
    );
    let other = a.desired.id.clone().in_cluster("cluster-b");
    let b = Ctx {
        aws: &a.aws,
        id: &other,
        dry_run: false,
        inputs: &a.inputs,
    };
    let before = a.writes();
    for err in [
        driver::reconcile_one(&b, &bucket).await.unwrap_err(),
        driver::reconcile_one(&b, &role).await.unwrap_err(),
    ] {
        assert_eq!(err.reason(), "NameConflict", "{err}");
        assert!(err.to_string().contains("cluster-a"), "{err}");
    }
    assert_eq!(
        driver::delete_one(&b, &with_empty(&bucket, true))
            .await
            .unwrap(),
        Deletion::Absent
    );
    assert_eq!(
        driver::delete_one(&b, &role).await.unwrap(),
        Deletion::Absent
    );
    assert_eq!(a.writes(), before, "cluster-b wrote nothing");
    assert!(
        a.aws
            .s3
            .head_bucket()
            .bucket(&bucket.name)
            .send()
            .await
            .is_ok()
    );

    // Migration: tags written before cluster ids (no cluster tag) are adopted.
    let legacy: Vec<aws_sdk_s3::types::Tag> = tags
        .iter()
        .filter(|(k, _)| k.as_str() != imagestack_operator::naming::CLUSTER_TAG)
        .map(|(k, v)| {
            aws_sdk_s3::types::Tag::builder()
                .key(k)
                .value(v)
                .build()
                .unwrap()
        })
        .collect();
    a.aws
        .s3
        .put_bucket_tagging()
        .bucket(&bucket.name)
        .tagging(
            aws_sdk_s3::types::Tagging::builder()
                .set_tag_set(Some(legacy))
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let r = driver::reconcile_one(&a.ctx(), &bucket).await.unwrap();
    assert_eq!(r.state, State::Ready);
    assert_eq!(r.changes.len(), 1, "the cluster tag is added: {r:?}");
    assert_eq!(
        bucket_tags(&a.aws, &bucket.name)
            .await
            .get(imagestack_operator::naming::CLUSTER_TAG)
            .map(String::as_str),
        Some("cluster-a")
    );
}

/// The merge rule for lifecycle configuration: the stack owns only its rule
/// ids (`imagestack-*`); a user's own rule survives the repair of ours, drift
/// of ours (days changed, a rule deleted, the whole configuration deleted) is
/// repaired, and a pass in sync writes nothing.
#[tokio::test]
async fn lifecycle_rules_are_merged_and_drift_repaired() {
    use aws_sdk_s3::types::{
        BucketLifecycleConfiguration, ExpirationStatus, LifecycleRule, LifecycleRuleFilter,
        Transition, TransitionStorageClass,
    };
    let h = harness(
        "environment: dev\nbuckets: {upload: {lifecycle: {noncurrentVersionExpirationDays: 3, abortIncompleteMultipartUploadDays: 2}}}",
    )
    .await;
    let d = h
        .desired
        .bucket(ComponentName::UploadBucket)
        .unwrap()
        .clone();
    driver::reconcile_one(&h.ctx(), &d).await.unwrap();
    let s3 = &h.aws.s3;
    let ours = [
        (
            lifecycle::ABORT_MULTIPART_RULE_ID.to_string(),
            None,
            Some(2),
        ),
        (lifecycle::NONCURRENT_RULE_ID.to_string(), Some(3), None),
    ];
    assert_eq!(lifecycle_rules(&h.aws, &d.name).await, ours);

    // A user replaces the configuration: their own rule, and ours with other days.
    let theirs = LifecycleRule::builder()
        .id("archive-raw")
        .status(ExpirationStatus::Enabled)
        .filter(LifecycleRuleFilter::builder().prefix("raw/").build())
        .transitions(
            Transition::builder()
                .days(90)
                .storage_class(TransitionStorageClass::Glacier)
                .build(),
        )
        .build()
        .unwrap();
    let stale = lifecycle::StackRule::expire_noncurrent(99)
        .to_sdk()
        .unwrap();
    s3.put_bucket_lifecycle_configuration()
        .bucket(&d.name)
        .lifecycle_configuration(
            BucketLifecycleConfiguration::builder()
                .rules(theirs.clone())
                .rules(stale)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let r = driver::reconcile_one(&h.ctx(), &d).await.unwrap();
    let fields: Vec<&str> = r.changes.iter().map(|c| c.field.as_str()).collect();
    assert_eq!(fields, ["lifecycle[imagestack-*]"], "{r:?}");
    let out = s3
        .get_bucket_lifecycle_configuration()
        .bucket(&d.name)
        .send()
        .await
        .unwrap();
    let kept: Vec<&LifecycleRule> = out
        .rules()
        .iter()
        .filter(|r| r.id() == Some("archive-raw"))
        .collect();
    assert_eq!(kept.len(), 1, "the user's rule survives: {out:?}");
    assert_eq!(kept[0].transitions().len(), 1);
    assert_eq!(kept[0].transitions()[0].days(), Some(90));
    assert_eq!(
        kept[0].filter().and_then(|f| f.prefix()),
        Some("raw/"),
        "{out:?}"
    );
    assert_eq!(out.rules().len(), 3, "{out:?}");

    // In sync with the user's rule beside ours: zero writes.
    let before = h.writes();
    let r = driver::reconcile_one(&h.ctx(), &d).await.unwrap();
    assert!(r.changes.is_empty(), "{r:?}");
    assert_eq!(
        h.writes(),
        before,
        "writes: {:?}",
        h.stats.write_operations()
    );

    // The whole configuration deleted out of band: ours comes back (theirs was theirs to delete).
    s3.delete_bucket_lifecycle()
        .bucket(&d.name)
        .send()
        .await
        .unwrap();
    let r = driver::reconcile_one(&h.ctx(), &d).await.unwrap();
    assert_eq!(r.changes.len(), 1, "{r:?}");
    assert_eq!(r.changes[0].from, "missing");
    assert_eq!(lifecycle_rules(&h.aws, &d.name).await, ours);
    let before = h.writes();
    driver::reconcile_one(&h.ctx(), &d).await.unwrap();
    assert_eq!(h.writes(), before);
}

/// The failed-event queue: created with 14 days' retention, SSE and the
/// TLS-only policy, tagged; a user's policy statement survives the repair of
/// ours; retention and encryption changed out of band are repaired; a pass in
/// sync writes nothing; another stack's queue of that name is a conflict.
#[tokio::test]
async fn failed_event_queue_create_read_back_drift_delete() {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let h = harness("environment: dev\ntags: {team: media}").await;
    let q = h.desired.queue.clone();
    let r = driver::reconcile_one(&h.ctx(), &q).await.unwrap();
    assert!(r.created, "{r:?}");
    assert_eq!(r.state, State::Ready, "{r:?}");
    let sqs = &h.aws.sqs;
    let url = components::queue::url(&h.ctx(), &q.name)
        .await
        .unwrap()
        .unwrap();
    let attrs = || async {
        sqs.get_queue_attributes()
            .queue_url(&url)
            .attribute_names(A::All)
            .send()
            .await
            .unwrap()
            .attributes()
            .cloned()
            .unwrap_or_default()
    };
    let a = attrs().await;
    assert_eq!(
        a.get(&A::MessageRetentionPeriod).map(String::as_str),
        Some("1209600")
    );
    assert_eq!(
        a.get(&A::SqsManagedSseEnabled).map(String::as_str),
        Some("true")
    );
    assert_eq!(a.get(&A::QueueArn), Some(&q.arn));
    let doc = policy::parse(a.get(&A::Policy).unwrap()).unwrap();
    let tls = policy::statement(&doc, policy::TLS_ONLY_SID).expect("TLS-only statement");
    assert!(policy::same_statement(&tls, &q.tls_statement));
    let tags = sqs.list_queue_tags().queue_url(&url).send().await.unwrap();
    let tags = tags.tags().unwrap();
    assert_eq!(tags.get(OWNER_TAG), Some(&h.desired.id.owner_tag_value()));
    assert_eq!(tags.get("team").map(String::as_str), Some("media"));
    let before = h.writes();
    let r = driver::reconcile_one(&h.ctx(), &q).await.unwrap();
    assert!(!r.created && r.changes.is_empty(), "{r:?}");
    assert_eq!(h.writes(), before, "{:?}", h.stats.write_operations());

    // Out of band: 4 days' retention, no encryption, the policy replaced by a user's own.
    let theirs = serde_json::json!({"Sid": "AuditorsMayPeek", "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
        "Action": "sqs:GetQueueAttributes", "Resource": q.arn});
    sqs.set_queue_attributes()
        .queue_url(&url)
        .attributes(A::MessageRetentionPeriod, "345600")
        .attributes(A::SqsManagedSseEnabled, "false")
        .attributes(
            A::Policy,
            policy::bucket_policy(vec![theirs.clone()]).to_string(),
        )
        .send()
        .await
        .unwrap();
    let r = driver::reconcile_one(&h.ctx(), &q).await.unwrap();
    let fields: Vec<&str> = r.changes.iter().map(|c| c.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "messageRetentionSeconds",
            "encryption",
            "queuePolicy[DenyInsecureTransport]"
        ],
        "{r:?}"
    );
    let a = attrs().await;
    assert_eq!(
        a.get(&A::MessageRetentionPeriod).map(String::as_str),
        Some("1209600")
    );
    assert_eq!(
        a.get(&A::SqsManagedSseEnabled).map(String::as_str),
        Some("true")
    );
    let doc = policy::parse(a.get(&A::Policy).unwrap()).unwrap();
    assert!(policy::statement(&doc, policy::TLS_ONLY_SID).is_some());
    let kept = policy::statement(&doc, "AuditorsMayPeek").expect("their statement kept");
    assert!(policy::same_statement(&kept, &theirs));
    let before = h.writes();
    driver::reconcile_one(&h.ctx(), &q).await.unwrap();
    assert_eq!(h.writes(), before, "{:?}", h.stats.write_operations());

    // Another stack's view of the name: a conflict, nothing written or deleted.
    let other = StackId::new("someone", "else", "dev");
    let before = h.writes();
    let err = driver::reconcile_one(&h.ctx_for(&other), &q)
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "NameConflict", "{err}");
    assert_eq!(
        driver::delete_one(&h.ctx_for(&other), &q).await.unwrap(),
        Deletion::Absent
    );
    assert_eq!(h.writes(), before);

    assert_eq!(
        driver::delete_one(&h.ctx(), &q).await.unwrap(),
        Deletion::Gone
    );
    assert!(
        components::queue::url(&h.ctx(), &q.name)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        driver::delete_one(&h.ctx(), &q).await.unwrap(),
        Deletion::Absent
    );
}

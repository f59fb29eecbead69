//! End to end: a real API server (KUBECONFIG), the AWS emulator
//! (AWS_ENDPOINT_URL) and the operator binary as a process. Each test uses its
//! own namespace and its own operator watching only that namespace.

use std::time::Duration;

use imagestack_operator::api::{ComponentState, ImageOptimizationStack};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use tests::*;

const READY_TIMEOUT: Duration = Duration::from_secs(90);

async fn setup() -> (kube::Client, String) {
    require_env();
    let client = kube_client().await.unwrap();
    install_crd(&client).await.unwrap();
    let ns = unique("e2e");
    ensure_namespace(&client, &ns).await.unwrap();
    (client, ns)
}

fn example_dev(ns: &str) -> String {
    let text = std::fs::read_to_string(repo_root().join("examples/stack-dev.yaml")).unwrap();
    text.replace("namespace: default", &format!("namespace: {ns}"))
}

#[tokio::test]
async fn apply_example_reaches_ready_and_reports_outputs() {
    let (client, ns) = setup().await;
    let op = Operator::start(&ns, "2s", &[]).unwrap();
    let (ok, out, err) = kubectl(&["apply", "-f", "-"], Some(&example_dev(&ns))).unwrap();
    assert!(ok, "{out}{err}");
    let api: Api<ImageOptimizationStack> = Api::namespaced(client, &ns);
    let s = wait_ready(&api, "images", READY_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", op.log_text()));
    let status = s.status.clone().unwrap();

    // kstatus shapes: Ready/Reconciling/Stalled with observedGeneration.
    for (t, want) in [
        ("Ready", "True"),
        ("Reconciling", "False"),
        ("Stalled", "False"),
    ] {
        let c = condition(&s, t).unwrap_or_else(|| panic!("no {t} condition"));
        assert_eq!(c.status, want, "{t}");
        assert_eq!(c.observed_generation, s.metadata.generation);
        assert!(!c.reason.is_empty());
    }
    assert_eq!(status.observed_generation, s.metadata.generation);
    let mut names: Vec<&str> = status.components.iter().map(|c| c.name.as_str()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "avif-bucket",
            "avif-cdn-grant",
            "cache-policy",
            "cdn-errors-alarm",
            "dashboard",
            "distribution",
            "edge-function",
            "failed-event-queue",
            "failed-events-alarm",
            "function-errors-alarm",
            "function-throttles-alarm",
            "jpeg-bucket",
            "jpeg-cdn-grant",
            "metadata-table",
            "origin-access-control",
            "png-bucket",
            "png-cdn-grant",
            "processing-errors-alarm",
            "processor-function",
            "processor-role",
            "s3-invoke-permission",
            "upload-bucket",
            "upload-notifications",
            "webp-bucket",
            "webp-cdn-grant",
        ]
    );
    // Default TTLs: AWS's CachingOptimized, no cache policy of the stack's own.
    assert!(
        status.components.iter().all(|c| c.state
            == if c.name.as_str() == "cache-policy" {
                ComponentState::Disabled
            } else {
                ComponentState::Ready
            }),
        "{:?}",
        status.components
    );
    let outputs = status.outputs.clone().unwrap();
    assert!(s.finalizers().iter().any(|f| f == "imagestack.dev/cleanup"));

    // Everything reported exists on AWS.
    let (s3, ddb, iam) = aws().await;
    for b in [
        &outputs.upload_bucket,
        &outputs.webp_bucket,
        &outputs.jpeg_bucket,
        &outputs.png_bucket,
    ] {
        s3.head_bucket()
            .bucket(b.as_deref().unwrap())
            .send()
            .await
            .unwrap();
    }
    ddb.describe_table()
        .table_name(outputs.table_name.as_deref().unwrap())
        .send()
        .await
        .unwrap();
    let role = outputs
        .role_arn
        .as_deref()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    iam.get_role().role_name(&role).send().await.unwrap();

    // kubectl get imagestacks shows the columns.
    let (ok, out, err) = kubectl(&["get", "imagestacks", "-n", &ns], None).unwrap();
    assert!(ok, "{err}");
    let header: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "ENV", "READY", "REASON", "CDN", "AGE"]);
    let row: Vec<&str> = out.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(&row[..4], ["images", "dev", "True", "Reconciled"]);
    let domain = outputs.cdn_domain.clone().expect("cdnDomain on status");
    assert!(domain.ends_with(".cloudfront.net"), "{domain}");
    assert_eq!(row[4], domain, "CDN column");
    assert!(
        outputs.function_arn.is_some()
            && outputs.distribution_id.is_some()
            && outputs.dashboard_url.is_some()
    );
    let (ok, out, _) = kubectl(
        &["get", "imagestack", "images", "-n", &ns, "-o", "wide"],
        None,
    )
    .unwrap();
    assert!(
        ok && out.contains("UPLOAD") && out.contains(outputs.upload_bucket.as_deref().unwrap()),
        "{out}"
    );

    // Steady state: further resyncs make zero mutating AWS calls.
    let writes = op.aws_writes().await.unwrap();
    let reconciles = op
        .metric_sum("imagestack_reconciles_total", &["success"])
        .await
        .unwrap();
    poll(Duration::from_secs(90), || async {
        let n = op
            .metric_sum("imagestack_reconciles_total", &["success"])
            .await
            .ok()?;
        (n >= reconciles + 2.0).then_some(())
    })
    .await
    .unwrap();
    assert_eq!(
        op.aws_writes().await.unwrap(),
        writes,
        "a stack in sync made AWS writes"
    );
    // Status writes did not retrigger reconciles in a loop: only resyncs ran.
    let total = op
        .metric_sum("imagestack_reconciles_total", &[])
        .await
        .unwrap();
    assert!(
        total < 30.0,
        "too many reconciles ({total}) for a 2s resync: hot loop?"
    );
}

#[tokio::test]
async fn drift_is_repaired_and_pause_stops_writes() {
    let (client, ns) = setup().await;
    let op = Operator::start(&ns, "2s", &[]).unwrap();
    let (ok, _, err) = kubectl(
        &["apply", "-f", "-"],
        Some(&manifest(&ns, "drift", "environment: dev")),
    )
    .unwrap();
    assert!(ok, "{err}");
    let api: Api<ImageOptimizationStack> = Api::namespaced(client, &ns);
    let s = wait_ready(&api, "drift", READY_TIMEOUT).await.unwrap();
    let upload = s.status.unwrap().outputs.unwrap().upload_bucket.unwrap();
    let (s3, _, _) = aws().await;

    // Out-of-band: versioning suspended and the bucket policy deleted.
    s3.put_bucket_versioning()
        .bucket(&upload)
        .versioning_configuration(
            aws_sdk_s3::types::VersioningConfiguration::builder()
                .status(aws_sdk_s3::types::BucketVersioningStatus::Suspended)
                .build(),
        )
        .send()
        .await
        .unwrap();
    s3.delete_bucket_policy()
        .bucket(&upload)
        .send()
        .await
        .unwrap();
    poll(Duration::from_secs(90), || async {
        let v = s3
            .get_bucket_versioning()
            .bucket(&upload)
            .send()
            .await
            .ok()?;
        let enabled = v.status().map(|s| s.as_str()) == Some("Enabled");
        let policy = s3.get_bucket_policy().bucket(&upload).send().await.is_ok();
        (enabled && policy).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("drift not repaired: {e}\n{}", op.log_text()));
    // The reconcile that restored them finishes its pass (other components) before it counts.
    poll(Duration::from_secs(90), || async {
        let n = op
            .metric_sum("imagestack_drift_repairs_total", &["upload-bucket"])
            .await
            .ok()?;
        (n >= 2.0).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("drift repairs not counted: {e}\n{}", op.log_text()));
    assert!(op.log_text().contains("versioning: Suspended → Enabled"));

    // Paused: drift is reported, not repaired.
    api.patch(
        "drift",
        &PatchParams::default(),
        &Patch::Merge(
            serde_json::json!({"metadata": {"annotations": {"imagestack.dev/paused": "true"}}}),
        ),
    )
    .await
    .unwrap();
    s3.delete_bucket_cors()
        .bucket(&upload)
        .send()
        .await
        .unwrap();
    let paused = poll(Duration::from_secs(90), || async {
        let s = api.get("drift").await.ok()?;
        let c = condition(&s, "Ready")?;
        (c.reason == "Paused").then(|| c.message.clone())
    })
    .await
    .unwrap();
    assert!(paused.contains("cors"), "{paused}");
    let writes = op.aws_writes().await.unwrap();
    op.wait_reconciles(2.0, Duration::from_secs(90))
        .await
        .unwrap();
    assert_eq!(
        op.aws_writes().await.unwrap(),
        writes,
        "paused stack wrote to AWS"
    );
    assert!(s3.get_bucket_cors().bucket(&upload).send().await.is_err());

    // Unpaused: repaired.
    api.patch(
        "drift",
        &PatchParams::default(),
        &Patch::Merge(
            serde_json::json!({"metadata": {"annotations": {"imagestack.dev/paused": null}}}),
        ),
    )
    .await
    .unwrap();
    wait_ready(&api, "drift", READY_TIMEOUT).await.unwrap();
    assert!(s3.get_bucket_cors().bucket(&upload).send().await.is_ok());
}

#[tokio::test]
async fn invalid_specs_are_rejected_naming_the_field() {
    let (_client, ns) = setup().await;
    let cases = [
        ("environment: Dev", "spec.environment"),
        (
            "environment: dev\nprocessor: {memoryMb: 64}",
            "spec.processor.memoryMb",
        ),
        (
            "environment: dev\nprocessor: {quality: {webp: 101}}",
            "spec.processor.quality.webp",
        ),
        (
            "environment: dev\nprocessor: {formats: []}",
            "spec.processor.formats",
        ),
        (
            "environment: dev\ncdn: {minTtlSeconds: 100, defaultTtlSeconds: 10}",
            "spec.cdn",
        ),
        (
            "environment: dev\nbuckets: {upload: {name: same-one}, outputs: {png: same-one}}",
            "spec.buckets",
        ),
        (
            "environment: dev\nbuckets: {upload: {name: Bad.Name}}",
            "spec.buckets.upload.name",
        ),
        (
            "environment: dev\ndeletionPolicy: Remove",
            "spec.deletionPolicy",
        ),
        ("environment: dev\ntags: {'aws:owner': x}", "spec.tags"),
        (
            "environment: dev\nbuckets: {upload: {lifecycle: {noncurrentVersionExpirationDays: 0}}}",
            "spec.buckets.upload.lifecycle.noncurrentVersionExpirationDays",
        ),
        (
            "environment: dev\nbuckets: {upload: {lifecycle: {abortIncompleteMultipartUploadDays: 0}}}",
            "spec.buckets.upload.lifecycle.abortIncompleteMultipartUploadDays",
        ),
        (
            "environment: dev\nprocessor: {reservedConcurrency: -1}",
            "spec.processor.reservedConcurrency",
        ),
        (
            "environment: dev\ncdn: {aliases: [images.example.com]}",
            "spec.cdn.aliases require spec.cdn.certificateArn",
        ),
        (
            "environment: dev\ncdn: {aliases: [Not_A_Host], certificateArn: 'arn:aws:acm:us-east-1:123456789012:certificate/abc'}",
            "spec.cdn.aliases",
        ),
        (
            "environment: dev\ncdn: {certificateArn: 'arn:aws:acm:eu-west-1:123456789012:certificate/abc'}",
            "spec.cdn.certificateArn must be an ACM certificate in us-east-1",
        ),
        (
            "environment: dev\nalarms: {actions: [ops-alerts]}",
            "spec.alarms.actions: every action must be an SNS topic ARN",
        ),
        // Memory that cannot hold the largest accepted image.
        (
            "environment: dev\nprocessor: {memoryMb: 1024}",
            "spec.processor.memoryMb must hold",
        ),
        (
            "environment: dev\nprocessor: {formats: [webp, gif]}",
            "spec.processor.formats",
        ),
    ];
    for (i, (spec, field)) in cases.iter().enumerate() {
        let (ok, out, err) = kubectl(
            &["apply", "-f", "-"],
            Some(&manifest(&ns, &format!("bad{i}"), spec)),
        )
        .unwrap();
        assert!(!ok, "accepted invalid spec {spec:?}: {out}");
        assert!(
            err.contains(field),
            "error for {spec:?} does not name {field}: {err}"
        );
    }
    // Immutable environment.
    let (ok, _, err) = kubectl(
        &["apply", "-f", "-"],
        Some(&manifest(&ns, "imm", "environment: dev")),
    )
    .unwrap();
    assert!(ok, "{err}");
    let (ok, _, err) = kubectl(
        &["apply", "-f", "-"],
        Some(&manifest(&ns, "imm", "environment: prod")),
    )
    .unwrap();
    assert!(!ok);
    assert!(err.contains("spec.environment is immutable"), "{err}");
}

/// The API server only (no emulator, no operator): a client from KUBECONFIG,
/// the CRD installed, a fresh namespace.
async fn setup_api_only() -> (kube::Client, String) {
    assert!(
        std::env::var("KUBECONFIG").is_ok(),
        "KUBECONFIG is not set: this test needs a Kubernetes API server: `export KUBECONFIG=$(../shared/envtest/start.sh)`"
    );
    let client = kube_client().await.unwrap();
    install_crd(&client).await.unwrap();
    let ns = unique("e2e-imm");
    ensure_namespace(&client, &ns).await.unwrap();
    (client, ns)
}

/// `{"a": {"b": value}}` for the path `a.b`.
fn at(path: &str, value: serde_json::Value) -> serde_json::Value {
    path.rsplit('.')
        .fold(value, |inner, key| serde_json::json!({ key: inner }))
}

/// Set (`Some`) or remove (`None`) the field at `path` under `spec` of a stack's JSON.
fn set_spec_field(obj: &mut serde_json::Value, path: &str, value: Option<&str>) {
    let mut keys: Vec<&str> = path.split('.').collect();
    let last = keys.pop().unwrap();
    let mut cur = &mut obj["spec"];
    for key in keys {
        cur = cur
            .as_object_mut()
            .unwrap()
            .entry(key)
            .or_insert_with(|| serde_json::json!({}));
    }
    let map = cur.as_object_mut().unwrap();
    match value {
        Some(v) => map.insert(last.to_string(), v.into()),
        None => map.remove(last),
    };
}

fn spec_field(obj: &ImageOptimizationStack, path: &str) -> Option<String> {
    let value = serde_json::to_value(&obj.spec).unwrap();
    path.split('.')
        .try_fold(&value, |v, key| v.get(key))
        .and_then(|v| v.as_str().map(str::to_string))
}

/// The write was rejected (422) by the immutability rule of `path`.
fn assert_immutable<T: std::fmt::Debug>(path: &str, what: &str, result: kube::Result<T>) {
    let want =
        format!("spec.{path} is immutable: it cannot be added, removed or changed after creation");
    match result {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 422, "{what} {path}: {s:?}");
            assert!(s.message.contains(&want), "{what} {path}: {}", s.message);
        }
        other => panic!("{what} {path} was admitted: {other:?}"),
    }
}

#[tokio::test]
async fn optional_immutable_fields_cannot_be_added_removed_or_changed() {
    let (client, ns) = setup_api_only().await;
    let api: Api<ImageOptimizationStack> = Api::namespaced(client, &ns);
    let pp = PatchParams::default();
    let fields = [
        ("region", "eu-west-1", "us-east-1"),
        ("buckets.upload.name", "imm-up-a", "imm-up-b"),
        ("buckets.outputs.webp", "imm-webp-a", "imm-webp-b"),
        ("buckets.outputs.jpeg", "imm-jpeg-a", "imm-jpeg-b"),
        ("buckets.outputs.png", "imm-png-a", "imm-png-b"),
        ("buckets.outputs.avif", "imm-avif-a", "imm-avif-b"),
        ("table.name", "imm-table-a", "imm-table-b"),
    ];
    let memory =
        |mb: i32| Patch::Merge(serde_json::json!({"spec": {"processor": {"memoryMb": mb}}}));
    for (i, (path, a, b)) in fields.into_iter().enumerate() {
        // A stack created with the field set.
        let set = format!("imm{i}-set");
        let mut obj = serde_json::json!({
            "apiVersion": "imagestack.dev/v1alpha1",
            "kind": "ImageOptimizationStack",
            "metadata": {"name": set, "namespace": ns},
            "spec": {"environment": "dev"},
        });
        set_spec_field(&mut obj, path, Some(a));
        let stack: ImageOptimizationStack = serde_json::from_value(obj).unwrap();
        api.create(&Default::default(), &stack).await.unwrap();

        let change = Patch::Merge(serde_json::json!({"spec": at(path, b.into())}));
        assert_immutable(
            path,
            "changing (merge patch)",
            api.patch(&set, &pp, &change).await,
        );
        let remove = Patch::Merge(serde_json::json!({"spec": at(path, serde_json::Value::Null)}));
        assert_immutable(
            path,
            "removing (merge patch)",
            api.patch(&set, &pp, &remove).await,
        );
        let current = serde_json::to_value(api.get(&set).await.unwrap()).unwrap();
        let mut changed = current.clone();
        set_spec_field(&mut changed, path, Some(b));
        let changed: ImageOptimizationStack = serde_json::from_value(changed).unwrap();
        assert_immutable(
            path,
            "changing (replace)",
            api.replace(&set, &Default::default(), &changed).await,
        );
        let mut removed = current;
        set_spec_field(&mut removed, path, None);
        let removed: ImageOptimizationStack = serde_json::from_value(removed).unwrap();
        assert_immutable(
            path,
            "removing (replace)",
            api.replace(&set, &Default::default(), &removed).await,
        );
        // An unrelated change is admitted, and the field kept its value throughout.
        let kept = api
            .patch(&set, &pp, &memory(3072))
            .await
            .unwrap_or_else(|e| panic!("memoryMb change with {path} set: {e}"));
        assert_eq!(kept.spec.processor.memory_mb, 3072);
        assert_eq!(spec_field(&kept, path).as_deref(), Some(a), "{path}");
        let mut again = kept.clone();
        again.spec.processor.memory_mb = 3008;
        api.replace(&set, &Default::default(), &again)
            .await
            .unwrap_or_else(|e| panic!("memoryMb replace with {path} set: {e}"));

        // A stack created without the field.
        let unset = format!("imm{i}-unset");
        let stack: ImageOptimizationStack = serde_json::from_value(serde_json::json!({
            "apiVersion": "imagestack.dev/v1alpha1",
            "kind": "ImageOptimizationStack",
            "metadata": {"name": unset, "namespace": ns},
            "spec": {"environment": "dev"},
        }))
        .unwrap();
        api.create(&Default::default(), &stack).await.unwrap();
        let add = Patch::Merge(serde_json::json!({"spec": at(path, a.into())}));
        assert_immutable(
            path,
            "adding (merge patch)",
            api.patch(&unset, &pp, &add).await,
        );
        let mut added = serde_json::to_value(api.get(&unset).await.unwrap()).unwrap();
        set_spec_field(&mut added, path, Some(a));
        let added: ImageOptimizationStack = serde_json::from_value(added).unwrap();
        assert_immutable(
            path,
            "adding (replace)",
            api.replace(&unset, &Default::default(), &added).await,
        );
        let kept = api
            .patch(&unset, &pp, &memory(3072))
            .await
            .unwrap_or_else(|e| panic!("memoryMb change with {path} unset: {e}"));
        assert_eq!(spec_field(&kept, path), None, "{path}");
    }
    api.delete_collection(&DeleteParams::default(), &Default::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn delete_policy_delete_blocks_on_objects_then_empties() {
    let (client, ns) = setup().await;
    let op = Operator::start(&ns, "2s", &[]).unwrap();
    let (ok, _, err) = kubectl(
        &["apply", "-f", "-"],
        Some(&manifest(
            &ns,
            "del",
            "environment: dev\ndeletionPolicy: Delete",
        )),
    )
    .unwrap();
    assert!(ok, "{err}");
    let api: Api<ImageOptimizationStack> = Api::namespaced(client, &ns);
    let s = wait_ready(&api, "del", READY_TIMEOUT).await.unwrap();
    let out = s.status.unwrap().outputs.unwrap();
    let upload = out.upload_bucket.clone().unwrap();
    let (s3, ddb, iam) = aws().await;
    s3.put_object()
        .bucket(&upload)
        .key("photo one.jpg")
        .body(aws_sdk_s3::primitives::ByteStream::from_static(b"jpeg"))
        .send()
        .await
        .unwrap();

    api.delete("del", &DeleteParams::default()).await.unwrap();
    let msg = wait_stalled(&api, "del", "BucketNotEmpty", Duration::from_secs(90))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", op.log_text()));
    assert!(msg.contains(&upload) && msg.contains("1 object"), "{msg}");
    // Still there, finalizer kept.
    let s = api.get("del").await.unwrap();
    assert!(s.finalizers().iter().any(|f| f == "imagestack.dev/cleanup"));
    s3.head_object()
        .bucket(&upload)
        .key("photo one.jpg")
        .send()
        .await
        .unwrap();

    // Allow emptying: the deletion completes and everything is gone.
    api.patch(
        "del",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"buckets": {"emptyOnDelete": true}}})),
    )
    .await
    .unwrap();
    poll(Duration::from_secs(60), || async {
        api.get_opt("del").await.ok()?.is_none().then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("stack not deleted: {e}\n{}", op.log_text()));
    for b in [
        &out.upload_bucket,
        &out.webp_bucket,
        &out.jpeg_bucket,
        &out.png_bucket,
    ] {
        assert!(
            s3.head_bucket()
                .bucket(b.as_deref().unwrap())
                .send()
                .await
                .is_err()
        );
    }
    assert!(
        ddb.describe_table()
            .table_name(out.table_name.as_deref().unwrap())
            .send()
            .await
            .is_err()
    );
    let role = out
        .role_arn
        .as_deref()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    assert!(iam.get_role().role_name(&role).send().await.is_err());
}

#[tokio::test]
async fn delete_policy_retain_keeps_aws_resources() {
    let (client, ns) = setup().await;
    let _op = Operator::start(&ns, "2s", &[]).unwrap();
    let (ok, _, err) = kubectl(
        &["apply", "-f", "-"],
        Some(&manifest(&ns, "keep", "environment: prod")),
    )
    .unwrap();
    assert!(ok, "{err}");
    let api: Api<ImageOptimizationStack> = Api::namespaced(client, &ns);
    let s = wait_ready(&api, "keep", READY_TIMEOUT).await.unwrap();
    assert_eq!(
        s.spec.deletion_policy,
        imagestack_operator::api::DeletionPolicy::Retain
    );
    let out = s.status.unwrap().outputs.unwrap();
    api.delete("keep", &DeleteParams::default()).await.unwrap();
    poll(Duration::from_secs(90), || async {
        api.get_opt("keep").await.ok()?.is_none().then_some(())
    })
    .await
    .unwrap();
    let (s3, ddb, _) = aws().await;
    s3.head_bucket()
        .bucket(out.upload_bucket.as_deref().unwrap())
        .send()
        .await
        .unwrap();
    ddb.describe_table()
        .table_name(out.table_name.as_deref().unwrap())
        .send()
        .await
        .unwrap();
}

/// Kill the operator right after its Nth AWS write, restart it, and check it
/// converges to exactly one of everything.
/// How a run of the operator with the crash hook at one write ended.
enum Step {
    /// It aborted right after an AWS write.
    Crashed,
    /// The stack is Ready for the current generation and nothing was left to write.
    Ready,
}

/// A crash after every single AWS write of the whole creation: the operator is
/// started with the hook at one write, again and again, each run picking up
/// where the killed one left off, until a run finds nothing left to write and
/// reports Ready. Then there is exactly one of everything.
#[tokio::test]
async fn killed_after_every_write_converges_without_duplicates() {
    let (client, ns) = setup().await;
    let (ok, _, err) = kubectl(
        &["apply", "-f", "-"],
        // Custom TTLs: the stack's own cache policy is among the writes crashed after.
        Some(&manifest(
            &ns,
            "crash",
            "environment: dev\ncdn: {defaultTtlSeconds: 3600}",
        )),
    )
    .unwrap();
    assert!(ok, "{err}");
    let api: Api<ImageOptimizationStack> = Api::namespaced(client.clone(), &ns);
    let mut crashes = 0;
    loop {
        // The constant exists only with the operator's `crash-hook` feature (tests/Cargo.toml
        // enables it; the operator binary under test must be a workspace build).
        let mut op = Operator::start(
            &ns,
            "2s",
            &[(imagestack_operator::aws::CRASH_AFTER_WRITES_ENV, "1")],
        )
        .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let step = loop {
            if op.try_exit().is_some() {
                break Step::Crashed;
            }
            if let Ok(s) = api.get("crash").await
                && condition(&s, "Ready").is_some_and(|c| {
                    c.status == "True" && c.observed_generation == s.metadata.generation
                })
            {
                break Step::Ready;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "run {crashes}: neither crashed nor Ready within 60 s:\n{}",
                op.log_text()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        match step {
            Step::Crashed => {
                assert!(
                    op.log_text().contains("crash-safety test hook"),
                    "run {crashes} exited without the hook:\n{}",
                    op.log_text()
                );
                crashes += 1;
                assert!(crashes < 200, "still writing after 200 crashes");
            }
            Step::Ready => break,
        }
    }
    // Every component of the creation made at least one write, most several.
    assert!(
        crashes >= 12,
        "only {crashes} writes before Ready (0: is the operator binary a build without the \
         `crash-hook` feature? `cargo build --workspace --bins` enables it)"
    );
    println!("creation survived a crash after each of its {crashes} AWS writes");
    let _op = Operator::start(&ns, "2s", &[]).unwrap();
    let api: Api<ImageOptimizationStack> = Api::namespaced(client, &ns);
    let s = wait_ready(&api, "crash", READY_TIMEOUT).await.unwrap();
    let out = s.status.unwrap().outputs.unwrap();
    let (s3, ddb, iam) = aws().await;
    // Exactly one of everything: the names are deterministic, so count what carries this stack's tag.
    let owner = format!("{ns}/crash");
    let buckets = s3.list_buckets().send().await.unwrap();
    let mut ours = 0;
    for b in buckets.buckets() {
        let name = b.name().unwrap_or_default();
        if !name.starts_with("imagestack-dev-") {
            continue;
        }
        if let Ok(t) = s3.get_bucket_tagging().bucket(name).send().await
            && t.tag_set()
                .iter()
                .any(|t| t.key() == "imagestack.dev/stack" && t.value() == owner)
        {
            ours += 1;
        }
    }
    assert_eq!(ours, 5, "expected exactly 5 buckets of {owner}");
    let table = out.table_name.unwrap();
    let tables = ddb.list_tables().send().await.unwrap();
    assert_eq!(
        tables.table_names().iter().filter(|t| **t == table).count(),
        1
    );
    let role = out
        .role_arn
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    let policies = iam
        .list_role_policies()
        .role_name(&role)
        .send()
        .await
        .unwrap();
    assert_eq!(policies.policy_names().len(), 1);

    // Delivery: one distribution and one origin access control naming the stack,
    // one invoke permission statement, one set of upload notifications.
    let cfg = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    let cf = aws_sdk_cloudfront::Client::new(&cfg);
    let comment = format!("imagestack {owner} (dev)");
    let dists = cf.list_distributions().send().await.unwrap();
    let ours: Vec<&str> = dists
        .distribution_list()
        .map(|l| l.items())
        .unwrap_or_default()
        .iter()
        .filter(|d| d.comment() == comment)
        .map(|d| d.id())
        .collect();
    assert_eq!(
        ours,
        [out.distribution_id.as_deref().unwrap()],
        "distributions"
    );
    let oacs = cf.list_origin_access_controls().send().await.unwrap();
    let description = format!("imagestack {owner}");
    let n_oac = oacs
        .origin_access_control_list()
        .map(|l| l.items())
        .unwrap_or_default()
        .iter()
        .filter(|o| {
            o.description() == description
                || o.description()
                    .starts_with(&format!("{description} cluster="))
        })
        .count();
    assert_eq!(n_oac, 1, "origin access controls");
    let policy = imagestack_operator::components::cache_policy::policy_name(
        &imagestack_operator::naming::StackId::new(ns.as_str(), "crash", "dev"),
    );
    let policies = policies_named(&cf, &policy).await;
    assert_eq!(policies.len(), 1, "cache policies: {policies:?}");
    let dist = out.distribution_id.as_deref().unwrap();
    assert_eq!(
        behaviour_policies(&cf, dist).await,
        vec![policies[0].0.clone(); 6]
    );
    let lambda = aws_sdk_lambda::Client::new(&cfg);
    let function = out.function_name.as_deref().unwrap();
    let policy = lambda
        .get_policy()
        .function_name(function)
        .send()
        .await
        .unwrap();
    let policy: serde_json::Value = serde_json::from_str(policy.policy().unwrap()).unwrap();
    assert_eq!(
        policy["Statement"].as_array().map(Vec::len),
        Some(1),
        "{policy}"
    );
    let notifications = s3
        .get_bucket_notification_configuration()
        .bucket(out.upload_bucket.as_deref().unwrap())
        .send()
        .await
        .unwrap();
    // One configuration per suffix, in lower and upper case.
    assert_eq!(notifications.lambda_function_configurations().len(), 8);
    // The stack's two lifecycle rules on the upload bucket, once each.
    let lifecycle = s3
        .get_bucket_lifecycle_configuration()
        .bucket(out.upload_bucket.as_deref().unwrap())
        .send()
        .await
        .unwrap();
    let mut ids: Vec<&str> = lifecycle.rules().iter().filter_map(|r| r.id()).collect();
    ids.sort();
    assert_eq!(
        ids,
        [
            "imagestack-abort-incomplete-multipart-uploads",
            "imagestack-expire-noncurrent-versions"
        ]
    );
}

/// S1: a stack whose `buckets.outputs.webp` names another stack's bucket is
/// `Stalled`/`NameConflict`, and nothing of it writes through that name: no
/// role policy, no function environment and no notification names the bucket
/// (the role, the function and everything after them are not even created).
/// The first stack is untouched.
#[tokio::test]
async fn s1_a_stack_never_writes_through_a_bucket_it_does_not_own() {
    let (client, ns) = setup().await;
    let op = Operator::start(&ns, "2s", &[]).unwrap();
    let api: Api<ImageOptimizationStack> = Api::namespaced(client, &ns);
    let (ok, _, err) = kubectl(
        &["apply", "-f", "-"],
        Some(&manifest(&ns, "first", "environment: dev")),
    )
    .unwrap();
    assert!(ok, "{err}");
    let first = wait_ready(&api, "first", READY_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", op.log_text()));
    let first_out = first.status.clone().unwrap().outputs.unwrap();
    let theirs = first_out.webp_bucket.clone().unwrap();
    let (s3, _, iam) = aws().await;
    let policy_before = s3
        .get_bucket_policy()
        .bucket(&theirs)
        .send()
        .await
        .unwrap()
        .policy()
        .map(str::to_string);

    let (ok, _, err) = kubectl(
        &["apply", "-f", "-"],
        Some(&manifest(
            &ns,
            "second",
            &format!("environment: qa\nbuckets: {{outputs: {{webp: {theirs}}}}}"),
        )),
    )
    .unwrap();
    assert!(ok, "{err}");
    let s = poll(Duration::from_secs(60), || async {
        let s = api.get("second").await.ok()?;
        let c = condition(&s, "Stalled")?;
        (c.status == "True" && c.reason == "NameConflict").then_some(s)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", op.log_text()));
    let msg = condition(&s, "Stalled").unwrap().message.clone();
    assert!(msg.contains(&theirs), "{msg}");
    assert!(
        msg.contains(&format!("{ns}/first")),
        "names the owner: {msg}"
    );
    let status = s.status.clone().unwrap();
    let state = |name: &str| {
        status
            .components
            .iter()
            .find(|c| c.name.as_str() == name)
            .map(|c| c.state)
            .unwrap_or_else(|| panic!("no component {name}: {:?}", status.components))
    };
    assert_eq!(state("webp-bucket"), ComponentState::Conflict);
    for dependant in [
        "processor-role",
        "processor-function",
        "s3-invoke-permission",
        "upload-notifications",
        "distribution",
        "webp-cdn-grant",
    ] {
        assert_eq!(state(dependant), ComponentState::Pending, "{dependant}");
    }
    // Nothing on AWS names their bucket for the second stack.
    let out = status.outputs.clone().unwrap();
    let role = out
        .role_arn
        .as_deref()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    assert!(
        iam.get_role().role_name(&role).send().await.is_err(),
        "no role (and so no role policy) for the second stack"
    );
    let cfg = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    let lambda = aws_sdk_lambda::Client::new(&cfg);
    assert!(
        lambda
            .get_function()
            .function_name(out.function_name.as_deref().unwrap())
            .send()
            .await
            .is_err(),
        "no function for the second stack"
    );
    let n = s3
        .get_bucket_notification_configuration()
        .bucket(out.upload_bucket.as_deref().unwrap())
        .send()
        .await
        .unwrap();
    assert!(n.lambda_function_configurations().is_empty());
    // The first stack and its bucket are untouched, and it stays Ready.
    let policy_after = s3
        .get_bucket_policy()
        .bucket(&theirs)
        .send()
        .await
        .unwrap()
        .policy()
        .map(str::to_string);
    assert_eq!(policy_before, policy_after);
    let first = api.get("first").await.unwrap();
    assert_eq!(condition(&first, "Ready").unwrap().status, "True");
}

/// S3: with `emptyOnDelete: false`, one object in an output bucket stalls the
/// deletion before anything is deleted: every AWS resource of the stack still
/// exists. Removing the object lets the deletion finish.
#[tokio::test]
async fn s3_deletion_preflight_deletes_nothing_while_a_bucket_is_not_empty() {
    let (client, ns) = setup().await;
    let op = Operator::start(&ns, "2s", &[]).unwrap();
    let (ok, _, err) = kubectl(
        &["apply", "-f", "-"],
        Some(&manifest(
            &ns,
            "pre",
            "environment: dev\ndeletionPolicy: Delete",
        )),
    )
    .unwrap();
    assert!(ok, "{err}");
    let api: Api<ImageOptimizationStack> = Api::namespaced(client, &ns);
    let s = wait_ready(&api, "pre", READY_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", op.log_text()));
    let out = s.status.unwrap().outputs.unwrap();
    let webp = out.webp_bucket.clone().unwrap();
    let (s3, ddb, iam) = aws().await;
    s3.put_object()
        .bucket(&webp)
        .key("webp/left-over.webp")
        .body(aws_sdk_s3::primitives::ByteStream::from_static(b"RIFF"))
        .send()
        .await
        .unwrap();
    let writes_before = op.aws_writes().await.unwrap();

    api.delete("pre", &DeleteParams::default()).await.unwrap();
    let msg = wait_stalled(&api, "pre", "BucketNotEmpty", Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", op.log_text()));
    assert!(msg.contains(&webp) && msg.contains("1 object"), "{msg}");
    // Let a few more passes run: still nothing deleted.
    op.wait_reconciles(2.0, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(
        op.aws_writes().await.unwrap(),
        writes_before,
        "no AWS write at all while the preflight fails"
    );
    for b in [
        &out.upload_bucket,
        &out.webp_bucket,
        &out.jpeg_bucket,
        &out.png_bucket,
    ] {
        s3.head_bucket()
            .bucket(b.as_deref().unwrap())
            .send()
            .await
            .unwrap();
    }
    ddb.describe_table()
        .table_name(out.table_name.as_deref().unwrap())
        .send()
        .await
        .unwrap();
    let role = out.role_arn.as_deref().unwrap().rsplit('/').next().unwrap();
    iam.get_role().role_name(role).send().await.unwrap();
    let cfg = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    aws_sdk_lambda::Client::new(&cfg)
        .get_function()
        .function_name(out.function_name.as_deref().unwrap())
        .send()
        .await
        .unwrap();
    aws_sdk_cloudfront::Client::new(&cfg)
        .get_distribution()
        .id(out.distribution_id.as_deref().unwrap())
        .send()
        .await
        .unwrap();
    let n = s3
        .get_bucket_notification_configuration()
        .bucket(out.upload_bucket.as_deref().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(
        n.lambda_function_configurations().len(),
        8,
        "trigger still in place"
    );

    // Remove the object: the deletion goes through.
    s3.delete_object()
        .bucket(&webp)
        .key("webp/left-over.webp")
        .send()
        .await
        .unwrap();
    poll(Duration::from_secs(120), || async {
        api.get_opt("pre").await.ok()?.is_none().then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("stack not deleted: {e}\n{}", op.log_text()));
    assert!(s3.head_bucket().bucket(&webp).send().await.is_err());
    assert!(
        ddb.describe_table()
            .table_name(out.table_name.as_deref().unwrap())
            .send()
            .await
            .is_err()
    );
}

/// Whether the API server serves the core API (ConfigMaps, Events): the full
/// kube-apiserver does (the default of ./scripts/test), the CRD-only one not.
async fn has_core_api(client: &kube::Client) -> bool {
    let cms: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(client.clone(), "default");
    cms.list(&kube::api::ListParams::default().limit(1))
        .await
        .is_ok()
}

/// `spec.writeOutputsTo`: the outputs land in a ConfigMap owned by the stack,
/// kept in sync, moved when the name changes, deleted with the stack; a
/// ConfigMap of that name that is not the stack's is never overwritten.
#[tokio::test]
async fn outputs_are_published_to_a_config_map_the_stack_owns() {
    use k8s_openapi::api::core::v1::ConfigMap;
    let (client, ns) = setup().await;
    if !has_core_api(&client).await {
        assert_eq!(
            std::env::var("IMAGESTACK_API_SERVER").as_deref(),
            Ok("crd"),
            "this test needs the full API server (ConfigMaps); ./scripts/test starts it"
        );
        eprintln!("SKIPPED: the CRD-only API server has no ConfigMaps (IMAGESTACK_API_SERVER=crd)");
        return;
    }
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    // Somebody else's ConfigMap of the name the stack asks for.
    let theirs: ConfigMap = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "taken"}, "data": {"owner": "someone else"}
    }))
    .unwrap();
    cms.create(&Default::default(), &theirs).await.unwrap();
    let op = Operator::start(&ns, "2s", &[]).unwrap();
    let api: Api<ImageOptimizationStack> = Api::namespaced(client.clone(), &ns);
    let (ok, _, err) = kubectl(
        &["apply", "-f", "-"],
        Some(&manifest(
            &ns,
            "out",
            "environment: dev\nwriteOutputsTo: {configMapName: taken}",
        )),
    )
    .unwrap();
    assert!(ok, "{err}");
    let msg = wait_stalled(&api, "out", "NameConflict", Duration::from_secs(90))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", op.log_text()));
    assert!(msg.contains("ConfigMap taken"), "{msg}");
    assert_eq!(
        cms.get("taken").await.unwrap().data.unwrap()["owner"],
        "someone else",
        "never overwritten"
    );

    // Another name: written, owned by the stack, equal to status.outputs.
    api.patch(
        "out",
        &PatchParams::default(),
        &Patch::Merge(
            serde_json::json!({"spec": {"writeOutputsTo": {"configMapName": "images-outputs"}}}),
        ),
    )
    .await
    .unwrap();
    let s = poll(Duration::from_secs(90), || async {
        let s = api.get("out").await.ok()?;
        let ready = condition(&s, "Ready")?.status == "True";
        let current = s.status.as_ref()?.observed_generation == s.metadata.generation;
        (ready && current).then_some(s)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", op.log_text()));
    let out = s.status.clone().unwrap().outputs.unwrap();
    assert_eq!(out.config_map.as_deref(), Some("images-outputs"));
    let cm = cms.get("images-outputs").await.unwrap();
    let owner = &cm.metadata.owner_references.clone().unwrap()[0];
    assert_eq!(owner.kind, "ImageOptimizationStack");
    assert_eq!(Some(&owner.uid), s.metadata.uid.as_ref());
    assert_eq!(owner.controller, Some(true));
    let data = cm.data.clone().unwrap();
    assert_eq!(
        data["IMAGESTACK_CDN_URL"],
        format!("https://{}", out.cdn_domain.clone().unwrap())
    );
    assert_eq!(
        data["IMAGESTACK_UPLOAD_BUCKET"],
        out.upload_bucket.clone().unwrap()
    );
    assert_eq!(
        data["IMAGESTACK_TABLE_NAME"],
        out.table_name.clone().unwrap()
    );
    assert_eq!(data["IMAGESTACK_REGION"], out.region.clone().unwrap());
    // The event says so, with a verb as its action.
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), &ns);
    let published = poll(Duration::from_secs(30), || async {
        let list = events.list(&Default::default()).await.ok()?;
        list.items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("OutputsPublished"))
    })
    .await
    .unwrap();
    assert_eq!(published.action.as_deref(), Some("Reconcile"));

    // Tampered with: repaired at the next resync.
    let mut tampered = cm.clone();
    tampered
        .data
        .get_or_insert_default()
        .insert("IMAGESTACK_CDN_URL".into(), "https://evil.example".into());
    cms.replace("images-outputs", &Default::default(), &tampered)
        .await
        .unwrap();
    poll(Duration::from_secs(30), || async {
        let cm = cms.get("images-outputs").await.ok()?;
        (cm.data?["IMAGESTACK_CDN_URL"] == data["IMAGESTACK_CDN_URL"]).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("not repaired: {e}\n{}", op.log_text()));

    // Deleting the stack deletes it (the operator does; no garbage collector here).
    api.delete("out", &DeleteParams::default()).await.unwrap();
    poll(Duration::from_secs(60), || async {
        api.get_opt("out").await.ok()?.is_none().then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", op.log_text()));
    assert!(cms.get_opt("images-outputs").await.unwrap().is_none());
    assert!(
        cms.get_opt("taken").await.unwrap().is_some(),
        "theirs stays"
    );
}

/// A second, private API server (another "cluster") for the duration of a test.
struct SecondCluster {
    data: std::path::PathBuf,
    kubeconfig: String,
}

impl SecondCluster {
    fn start() -> Self {
        let data = std::env::temp_dir().join(unique("cluster-b"));
        let port = |base: u16| (base + (std::process::id() % 500) as u16).to_string();
        let out = std::process::Command::new(repo_root().join("../shared/envtest/start.sh"))
            .env("DATA", &data)
            .env("API_PORT", port(21000))
            .env("ETCD_PORT", port(22000))
            .env("ETCD_PEER_PORT", port(23000))
            .env_remove("FULL")
            .output()
            .expect("start a second API server");
        assert!(
            out.status.success(),
            "second API server: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let kubeconfig = String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap_or_default()
            .trim()
            .to_string();
        Self { data, kubeconfig }
    }

    fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> (bool, String) {
        use std::io::Write;
        let mut child = std::process::Command::new("kubectl")
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(s) = stdin {
            child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
        }
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }
}

impl Drop for SecondCluster {
    fn drop(&mut self) {
        let _ = std::process::Command::new(repo_root().join("../shared/envtest/stop.sh"))
            .env("DATA", &self.data)
            .output();
    }
}

/// S7 across installations: the same namespace/name/environment in two clusters
/// sharing one AWS account. Each operator discovers its own cluster id; the
/// second cluster's stack is `Stalled`/`NameConflict` on everything, writes
/// nothing, and deleting it (policy Delete) deletes nothing of the first's.
#[tokio::test]
async fn two_clusters_never_touch_each_others_stacks() {
    let (client, ns) = setup().await;
    let b = SecondCluster::start();
    let (ok, out) = b.kubectl(
        &[
            "apply",
            "--server-side",
            "-f",
            repo_root().join("crds").to_str().unwrap(),
        ],
        None,
    );
    assert!(ok, "{out}");
    let spec = "environment: dev\ndeletionPolicy: Delete\nbuckets: {emptyOnDelete: true}";
    let op_a = Operator::start(&ns, "2s", &[]).unwrap();
    let (ok, _, err) = kubectl(&["apply", "-f", "-"], Some(&manifest(&ns, "twin", spec))).unwrap();
    assert!(ok, "{err}");
    let api: Api<ImageOptimizationStack> = Api::namespaced(client.clone(), &ns);
    let a = wait_ready(&api, "twin", READY_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", op_a.log_text()));
    let out_a = a.status.unwrap().outputs.unwrap();
    let writes_a = op_a.aws_writes().await.unwrap();

    // The same stack in cluster B.
    let op_b = Operator::start(&ns, "2s", &[("KUBECONFIG", &b.kubeconfig)]).unwrap();
    let (ok, out) = b.kubectl(&["apply", "-f", "-"], Some(&manifest(&ns, "twin", spec)));
    assert!(ok, "{out}");
    let b_client = {
        let cfg = kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::read_from(&b.kubeconfig).unwrap(),
            &Default::default(),
        )
        .await
        .unwrap();
        kube::Client::try_from(cfg).unwrap()
    };
    let api_b: Api<ImageOptimizationStack> = Api::namespaced(b_client, &ns);
    let msg = wait_stalled(&api_b, "twin", "NameConflict", Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", op_b.log_text()));
    assert!(msg.contains("another cluster"), "{msg}");
    assert_eq!(
        op_b.aws_writes().await.unwrap(),
        0.0,
        "cluster B wrote nothing"
    );

    // Deleting B's stack deletes nothing of A's.
    api_b
        .delete("twin", &DeleteParams::default())
        .await
        .unwrap();
    poll(Duration::from_secs(60), || async {
        api_b.get_opt("twin").await.ok()?.is_none().then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("B's stack not released: {e}\n{}", op_b.log_text()));
    assert_eq!(op_b.aws_writes().await.unwrap(), 0.0);
    let (s3, ddb, _) = aws().await;
    for bucket in [&out_a.upload_bucket, &out_a.webp_bucket] {
        s3.head_bucket()
            .bucket(bucket.as_deref().unwrap())
            .send()
            .await
            .unwrap();
    }
    ddb.describe_table()
        .table_name(out_a.table_name.as_deref().unwrap())
        .send()
        .await
        .unwrap();
    // A stays Ready and in sync: its next passes write nothing.
    op_a.wait_reconciles(2.0, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(op_a.aws_writes().await.unwrap(), writes_a);
    let a = api.get("twin").await.unwrap();
    assert_eq!(condition(&a, "Ready").unwrap().status, "True");
}

/// The cache policy ids of the distribution's behaviours (default first).
async fn behaviour_policies(cf: &aws_sdk_cloudfront::Client, dist: &str) -> Vec<String> {
    let out = cf.get_distribution_config().id(dist).send().await.unwrap();
    let c = out.distribution_config().unwrap();
    std::iter::once(c.default_cache_behavior().unwrap().cache_policy_id())
        .chain(
            c.cache_behaviors()
                .unwrap()
                .items()
                .iter()
                .map(|b| b.cache_policy_id()),
        )
        .map(|id| id.unwrap_or_default().to_string())
        .collect()
}

/// (id, min, default, max TTL) of every custom cache policy named `name`.
async fn policies_named(
    cf: &aws_sdk_cloudfront::Client,
    name: &str,
) -> Vec<(String, i64, Option<i64>, Option<i64>)> {
    let out = cf
        .list_cache_policies()
        .r#type(aws_sdk_cloudfront::types::CachePolicyType::Custom)
        .send()
        .await
        .unwrap();
    out.cache_policy_list()
        .map(|l| l.items())
        .unwrap_or_default()
        .iter()
        .filter_map(|i| i.cache_policy())
        .filter_map(|p| {
            let c = p.cache_policy_config()?;
            (c.name() == name).then(|| {
                (
                    p.id().to_string(),
                    c.min_ttl(),
                    c.default_ttl(),
                    c.max_ttl(),
                )
            })
        })
        .collect()
}

#[tokio::test]
async fn custom_ttls_use_a_stack_owned_cache_policy_that_follows_the_spec() {
    use imagestack_operator::api::ComponentName as N;
    use imagestack_operator::components::{cache_policy, distribution::CACHING_OPTIMIZED};
    use imagestack_operator::naming::StackId;

    let (client, ns) = setup().await;
    let cfg = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    let cf = aws_sdk_cloudfront::Client::new(&cfg);
    let api: Api<ImageOptimizationStack> = Api::namespaced(client, &ns);
    let name = cache_policy::policy_name(&StackId::new(ns.as_str(), "ttl", "dev"));

    // A same-named policy of someone else's, for the stack "squatted": never touched.
    let squatted = cache_policy::policy_name(&StackId::new(ns.as_str(), "squatted", "dev"));
    let mut hand_made =
        cache_policy::desired(&StackId::new(ns.as_str(), "squatted", "dev"), (1, 2, 3));
    hand_made.name = squatted.clone();
    hand_made.comment = "made by hand".into();
    let foreign = cf
        .create_cache_policy()
        .cache_policy_config(cache_policy::config(&hand_made).unwrap())
        .send()
        .await
        .unwrap();
    let foreign_etag = foreign.e_tag().unwrap().to_string();

    let op = Operator::start(&ns, "2s", &[]).unwrap();
    let custom = "environment: dev\ndeletionPolicy: Delete\n\
                  cdn: {minTtlSeconds: 60, defaultTtlSeconds: 3600, maxTtlSeconds: 86400}";
    for stack in ["ttl", "squatted"] {
        let (ok, _, err) =
            kubectl(&["apply", "-f", "-"], Some(&manifest(&ns, stack, custom))).unwrap();
        assert!(ok, "{err}");
    }
    let s = wait_ready(&api, "ttl", READY_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", op.log_text()));
    let status = s.status.unwrap();
    let dist = status.outputs.unwrap().distribution_id.unwrap();
    let component = status
        .components
        .iter()
        .find(|c| c.name == N::CachePolicy)
        .unwrap();
    assert_eq!(component.state, ComponentState::Ready, "{component:?}");
    let policies = policies_named(&cf, &name).await;
    assert_eq!(policies.len(), 1, "{policies:?}");
    let (policy_id, min, default, max) = policies[0].clone();
    assert_eq!(component.id.as_deref(), Some(policy_id.as_str()));
    assert_eq!((min, default, max), (60, Some(3600), Some(86400)));
    // The default behaviour, `/i/*` and one per format.
    let every = |id: &str| vec![id.to_string(); 6];
    assert_eq!(behaviour_policies(&cf, &dist).await, every(&policy_id));

    // The squatted name: status reports the conflict; the policy is untouched
    // and the distribution is never pointed at it.
    let conflict = poll(READY_TIMEOUT, || async {
        let s = api.get("squatted").await.ok()?;
        let c = s
            .status?
            .components
            .into_iter()
            .find(|c| c.name == N::CachePolicy)?;
        (c.state == ComponentState::Conflict).then_some(c)
    })
    .await
    .unwrap_or_else(|e| panic!("no conflict reported: {e}\n{}", op.log_text()));
    assert!(
        conflict
            .message
            .as_deref()
            .unwrap_or_default()
            .contains(&squatted)
            || conflict.id.as_deref() == Some(squatted.as_str()),
        "{conflict:?}"
    );
    let untouched = cf
        .get_cache_policy_config()
        .id(foreign.cache_policy().unwrap().id())
        .send()
        .await
        .unwrap();
    assert_eq!(
        untouched.e_tag(),
        Some(foreign_etag.as_str()),
        "foreign policy written"
    );

    // Steady state: zero writes (the squatted stack is deleted first: it retries).
    api.delete("squatted", &DeleteParams::default())
        .await
        .unwrap();
    poll(READY_TIMEOUT, || async {
        api.get("squatted").await.is_err().then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("squatted stack not deleted: {e}\n{}", op.log_text()));
    let untouched = cf
        .get_cache_policy_config()
        .id(foreign.cache_policy().unwrap().id())
        .send()
        .await
        .expect("a foreign policy is never deleted");
    assert_eq!(untouched.e_tag(), Some(foreign_etag.as_str()));
    let writes = op.aws_writes().await.unwrap();
    op.wait_reconciles(2.0, Duration::from_secs(90))
        .await
        .unwrap();
    assert_eq!(
        op.aws_writes().await.unwrap(),
        writes,
        "a stack in sync made AWS writes"
    );

    // New TTLs: the same policy, updated in place.
    let ttls = |min: i64, default: i64, max: i64| {
        Patch::Merge(serde_json::json!({"spec": {"cdn": {
            "minTtlSeconds": min, "defaultTtlSeconds": default, "maxTtlSeconds": max}}}))
    };
    api.patch("ttl", &PatchParams::default(), &ttls(0, 7200, 86400))
        .await
        .unwrap();
    poll(READY_TIMEOUT, || async {
        let p = policies_named(&cf, &name).await;
        (p == [(policy_id.clone(), 0, Some(7200), Some(86400))]).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("TTLs not applied in place: {e}\n{}", op.log_text()));
    wait_ready(&api, "ttl", READY_TIMEOUT).await.unwrap();

    // Drift: a TTL edited out of band is repaired.
    let current = cf
        .get_cache_policy_config()
        .id(&policy_id)
        .send()
        .await
        .unwrap();
    let mut edited = current.cache_policy_config().unwrap().clone();
    edited.max_ttl = Some(100);
    cf.update_cache_policy()
        .id(&policy_id)
        .if_match(current.e_tag().unwrap())
        .cache_policy_config(edited)
        .send()
        .await
        .unwrap();
    poll(READY_TIMEOUT, || async {
        let p = policies_named(&cf, &name).await;
        (p == [(policy_id.clone(), 0, Some(7200), Some(86400))]).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("drift not repaired: {e}\n{}", op.log_text()));

    // Default TTLs again: every behaviour on CachingOptimized, our policy deleted.
    api.patch(
        "ttl",
        &PatchParams::default(),
        &ttls(0, 2_592_000, 2_592_000),
    )
    .await
    .unwrap();
    poll(READY_TIMEOUT, || async {
        let moved = behaviour_policies(&cf, &dist).await == every(CACHING_OPTIMIZED);
        (moved && policies_named(&cf, &name).await.is_empty()).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("not back on CachingOptimized: {e}\n{}", op.log_text()));
    let s = wait_ready(&api, "ttl", READY_TIMEOUT).await.unwrap();
    let c = s
        .status
        .unwrap()
        .components
        .into_iter()
        .find(|c| c.name == N::CachePolicy)
        .unwrap();
    assert_eq!(c.state, ComponentState::Disabled, "{c:?}");

    // Custom again, then the stack is deleted: its policy goes with it.
    api.patch("ttl", &PatchParams::default(), &ttls(60, 3600, 86400))
        .await
        .unwrap();
    poll(READY_TIMEOUT, || async {
        let p = policies_named(&cf, &name).await;
        let ours = p.first()?.0.clone();
        (behaviour_policies(&cf, &dist).await == every(&ours)).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("custom TTLs not applied: {e}\n{}", op.log_text()));
    api.delete("ttl", &DeleteParams::default()).await.unwrap();
    poll(Duration::from_secs(180), || async {
        let gone = api.get("ttl").await.is_err();
        (gone && policies_named(&cf, &name).await.is_empty()).then_some(())
    })
    .await
    .unwrap_or_else(|e| {
        panic!(
            "cache policy not deleted with the stack: {e}\n{}",
            op.log_text()
        )
    });

    // Clean up the foreign policy (ours to remove in this test).
    cf.delete_cache_policy()
        .id(foreign.cache_policy().unwrap().id())
        .if_match(foreign_etag)
        .send()
        .await
        .unwrap();
}

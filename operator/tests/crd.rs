//! The committed CRD is exactly what the Rust types generate, and its CEL
//! rules accept good specs and reject bad ones with a message naming the field
//! (evaluated client-side with kube's CEL validator; the end-to-end tests check
//! the same against a real API server).

use imagestack_operator::api::ImageOptimizationStack;
use kube::CustomResourceExt;
use kube::core::cel::Validator;
use serde_json::{Value, json};

fn committed_crd() -> String {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../crds/imagestack.dev_imagestacks.yaml"
    );
    std::fs::read_to_string(path).expect("crds/imagestack.dev_imagestacks.yaml exists")
}

#[test]
fn committed_crd_matches_the_types() {
    let generated = imagestack_operator::crd_yaml().unwrap();
    if committed_crd() != generated {
        let out = std::env::temp_dir().join("imagestack-generated-crd.yaml");
        let _ = std::fs::write(&out, &generated);
        eprintln!("generated CRD written to {}", out.display());
    }
    assert!(
        committed_crd() == generated,
        "crds/ is stale: regenerate with `cargo run -p imagestack-operator -- crd > crds/imagestack.dev_imagestacks.yaml`"
    );
}

#[test]
fn chart_crd_matches_when_present() {
    let chart = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../charts/imagestack-operator/crds/imagestack.dev_imagestacks.yaml"
    );
    if let Ok(text) = std::fs::read_to_string(chart) {
        assert_eq!(text, committed_crd(), "the chart's CRD differs from crds/");
    }
}

#[test]
fn names_columns_and_subresources() {
    let crd = ImageOptimizationStack::crd();
    assert_eq!(crd.spec.names.plural, "imagestacks");
    assert_eq!(crd.spec.names.singular.as_deref(), Some("imagestack"));
    assert_eq!(crd.spec.scope, "Namespaced");
    let v = &crd.spec.versions[0];
    assert_eq!(v.name, "v1alpha1");
    let cols: Vec<&str> = v
        .additional_printer_columns
        .as_ref()
        .unwrap()
        .iter()
        .filter(|c| c.priority.unwrap_or(0) == 0)
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(cols, ["Env", "Ready", "Reason", "CDN", "Age"]);
    assert!(v.subresources.as_ref().unwrap().status.is_some());
}

fn schema() -> Value {
    let crd = ImageOptimizationStack::crd();
    serde_json::to_value(
        crd.spec.versions[0]
            .schema
            .as_ref()
            .unwrap()
            .open_api_v3_schema
            .as_ref()
            .unwrap(),
    )
    .unwrap()
}

fn object(spec: Value) -> Value {
    json!({
        "apiVersion": "imagestack.dev/v1alpha1",
        "kind": "ImageOptimizationStack",
        "metadata": {"name": "s", "namespace": "ns"},
        "spec": spec,
    })
}

fn check(spec: Value, old: Option<Value>) -> Result<(), String> {
    let old = old.map(object);
    Validator::new()
        .validate(&schema(), &object(spec), old.as_ref())
        .map_err(|e| e.to_string())
}

fn full(extra: Value) -> Value {
    // The API server applies defaults before CEL runs; mirror the ones the rules read.
    let mut spec = json!({
        "environment": "dev",
        "buckets": {"upload": {}, "outputs": {}},
        "cdn": {"minTtlSeconds": 0, "defaultTtlSeconds": 2592000, "maxTtlSeconds": 2592000},
    });
    merge(&mut spec, extra);
    spec
}

fn merge(a: &mut Value, b: Value) {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (a, b) => *a = b,
    }
}

#[test]
fn good_specs_pass() {
    check(full(json!({})), None).unwrap();
    check(full(json!({"tags": {"team": "media"}})), None).unwrap();
    check(
        full(json!({"buckets": {"upload": {"name": "up-a"}, "outputs": {"webp": "w-a", "png": "p-a"}}})),
        None,
    )
    .unwrap();
    // Unchanged immutable fields pass on update.
    check(full(json!({})), Some(full(json!({})))).unwrap();
}

#[test]
fn environment_is_immutable() {
    let err = check(full(json!({"environment": "prod"})), Some(full(json!({})))).unwrap_err();
    assert!(err.contains("spec.environment is immutable"), "{err}");
}

/// The optional immutable fields (path under `spec`) with two valid values each.
const IMMUTABLE: [(&str, &str, &str); 7] = [
    ("region", "eu-west-1", "us-east-1"),
    ("buckets.upload.name", "up-a", "up-b"),
    ("buckets.outputs.webp", "webp-a", "webp-b"),
    ("buckets.outputs.jpeg", "jpeg-a", "jpeg-b"),
    ("buckets.outputs.png", "png-a", "png-b"),
    ("buckets.outputs.avif", "avif-a", "avif-b"),
    ("table.name", "table-a", "table-b"),
];

/// `{"a": {"b": value}}` for the path `a.b`.
fn at(path: &str, value: Value) -> Value {
    path.rsplit('.')
        .fold(value, |inner, key| json!({ key: inner }))
}

fn immutable_message(path: &str) -> String {
    format!("spec.{path} is immutable: it cannot be added, removed or changed after creation")
}

/// The update is rejected by the rule of `path` and by no other immutability rule.
fn assert_rejected_for(path: &str, what: &str, result: Result<(), String>) {
    let err = result.expect_err(&format!("{what} {path} was admitted"));
    assert!(
        err.contains(&immutable_message(path)),
        "{what} {path}: {err}"
    );
    assert_eq!(
        err.matches("is immutable").count(),
        1,
        "{what} {path}: only its own rule fails: {err}"
    );
}

#[test]
fn optional_immutable_fields_cannot_be_added_removed_or_changed() {
    for (path, a, b) in IMMUTABLE {
        let with_a = full(at(path, json!(a)));
        let with_b = full(at(path, json!(b)));
        let without = full(json!({}));
        assert_rejected_for(path, "adding", check(with_a.clone(), Some(without.clone())));
        assert_rejected_for(
            path,
            "removing",
            check(without.clone(), Some(with_a.clone())),
        );
        assert_rejected_for(path, "changing", check(with_b, Some(with_a.clone())));
        // The intermediate objects (buckets, upload, outputs, table) may be absent.
        let bare = json!({"environment": "dev"});
        assert_rejected_for(
            path,
            "adding (no parent object before)",
            check(with_a.clone(), Some(bare.clone())),
        );
        assert_rejected_for(
            path,
            "removing (no parent object after)",
            check(bare, Some(with_a)),
        );
    }
}

#[test]
fn optional_immutable_fields_unchanged_are_admitted() {
    let memory = json!({"processor": {"memoryMb": 2048}});
    for (path, a, _) in IMMUTABLE {
        let with_a = full(at(path, json!(a)));
        check(with_a.clone(), Some(with_a.clone()))
            .unwrap_or_else(|e| panic!("unchanged {path}: {e}"));
        // An unrelated change, with the field set and with it absent.
        let mut changed = with_a.clone();
        merge(&mut changed, memory.clone());
        check(changed, Some(with_a)).unwrap_or_else(|e| panic!("memoryMb change with {path}: {e}"));
    }
    let mut changed = full(json!({}));
    merge(&mut changed, memory.clone());
    check(changed, Some(full(json!({})))).unwrap();
    // Every parent object absent before and after: the has() chains do not fail.
    check(
        json!({"environment": "dev", "processor": {"memoryMb": 2048}}),
        Some(json!({"environment": "dev"})),
    )
    .unwrap();
    // All six set at once and kept.
    let mut all = full(json!({}));
    for (path, a, _) in IMMUTABLE {
        merge(&mut all, at(path, json!(a)));
    }
    let mut changed = all.clone();
    merge(&mut changed, memory);
    check(changed, Some(all)).unwrap();
}

#[test]
fn ttl_order_is_enforced() {
    let err = check(
        full(json!({"cdn": {"minTtlSeconds": 100, "defaultTtlSeconds": 10}})),
        None,
    )
    .unwrap_err();
    assert!(
        err.contains("spec.cdn: minTtlSeconds <= defaultTtlSeconds <= maxTtlSeconds"),
        "{err}"
    );
}

#[test]
fn memory_must_hold_the_largest_image() {
    // The API server fills in the defaults (2048 MB, 50 MP) before CEL runs.
    let processor = |memory: i64, pixels: i64| {
        full(json!({"processor": {"memoryMb": memory, "maxInputPixels": pixels}}))
    };
    check(processor(2048, 50_000_000), None).unwrap();
    check(processor(3943, 100_000_000), None).unwrap();
    for (memory, pixels) in [(2048, 100_000_000), (1024, 50_000_000)] {
        let err = check(processor(memory, pixels), None).unwrap_err();
        assert!(err.contains("spec.processor.memoryMb must hold"), "{err}");
        assert!(
            err.contains("2036 MB for 50 MP, 3943 MB for 100 MP"),
            "{err}"
        );
    }
}

#[test]
fn avif_is_an_output_format() {
    check(
        full(json!({"processor": {"formats": ["webp", "avif"], "quality": {"avif": 50}}})),
        None,
    )
    .unwrap();
}

#[test]
fn bucket_names_must_differ() {
    let err = check(
        full(json!({"buckets": {"upload": {"name": "same"}, "outputs": {"jpeg": "same"}}})),
        None,
    )
    .unwrap_err();
    assert!(
        err.contains("spec.buckets: upload and output bucket names must all be different"),
        "{err}"
    );
    let err = check(
        full(json!({"buckets": {"upload": {}, "outputs": {"webp": "same", "avif": "same"}}})),
        None,
    )
    .unwrap_err();
    assert!(err.contains("must all be different"), "{err}");
}

#[test]
fn reserved_tag_keys_rejected() {
    for key in ["aws:createdBy", "imagestack.dev/stack"] {
        let err = check(full(json!({"tags": {key: "x"}})), None).unwrap_err();
        assert!(
            err.contains("spec.tags: keys must be 1-128 characters"),
            "{key}: {err}"
        );
    }
    let long = "v".repeat(300);
    let err = check(full(json!({"tags": {"k": long}})), None).unwrap_err();
    assert!(
        err.contains("spec.tags: values must be at most 256"),
        "{err}"
    );
}

/// The schema node of a spec field (`buckets.upload.lifecycle.x`).
fn spec_field(path: &str) -> Value {
    let mut node = schema()["properties"]["spec"].clone();
    for key in path.split('.') {
        node = node["properties"][key].clone();
    }
    node
}

/// Ranges are OpenAPI schema checks (the API server's, which the end-to-end
/// test `invalid_specs_are_rejected_naming_the_field` exercises; kube's CEL
/// validator does not evaluate them): the bounds must be in the schema.
#[test]
fn lifecycle_days_and_reserved_concurrency_have_bounds() {
    for (path, min) in [
        (
            "buckets.upload.lifecycle.noncurrentVersionExpirationDays",
            1.0,
        ),
        (
            "buckets.upload.lifecycle.abortIncompleteMultipartUploadDays",
            1.0,
        ),
        ("processor.reservedConcurrency", 0.0),
    ] {
        let node = spec_field(path);
        assert_eq!(node["minimum"].as_f64(), Some(min), "{path}: {node}");
    }
    // Defaults are applied by serde (the operator), so an absent field is never "0 days".
    let spec: imagestack_operator::api::ImageOptimizationStackSpec =
        serde_json::from_value(json!({"environment": "dev"})).unwrap();
    assert_eq!(
        spec.buckets
            .upload
            .lifecycle
            .noncurrent_version_expiration_days,
        30
    );
    assert_eq!(
        spec.buckets
            .upload
            .lifecycle
            .abort_incomplete_multipart_upload_days,
        7
    );
    assert_eq!(spec.processor.reserved_concurrency, None);
}

const CERT: &str =
    "arn:aws:acm:us-east-1:123456789012:certificate/0a1b2c3d-aaaa-bbbb-cccc-0123456789ab";

#[test]
fn custom_domain_is_validated() {
    // Good: aliases with a certificate in us-east-1, a wildcard, a certificate alone.
    check(
        full(json!({"cdn": {"aliases": ["images.example.com", "*.cdn.example.org"], "certificateArn": CERT}})),
        None,
    )
    .unwrap();
    check(full(json!({"cdn": {"certificateArn": CERT}})), None).unwrap();
    check(full(json!({"cdn": {"aliases": []}})), None).unwrap();
    // Aliases need a certificate.
    let err = check(
        full(json!({"cdn": {"aliases": ["images.example.com"]}})),
        None,
    )
    .unwrap_err();
    assert!(
        err.contains("spec.cdn.aliases require spec.cdn.certificateArn"),
        "{err}"
    );
    // The certificate must be an ACM certificate in us-east-1.
    for arn in [
        "arn:aws:acm:eu-west-1:123456789012:certificate/abc",
        "arn:aws:iam::123456789012:server-certificate/abc",
        "not-an-arn",
    ] {
        let err = check(full(json!({"cdn": {"certificateArn": arn}})), None).unwrap_err();
        assert!(
            err.contains("spec.cdn.certificateArn must be an ACM certificate in us-east-1"),
            "{arn}: {err}"
        );
    }
    // Every alias must be a host name.
    for alias in [
        "Images.Example.com",
        "images",
        "https://images.example.com",
        "images.example.com.",
        "a..b.com",
        "-x.example.com",
        "img*.example.com",
    ] {
        let err = check(
            full(json!({"cdn": {"aliases": [alias], "certificateArn": CERT}})),
            None,
        )
        .unwrap_err();
        assert!(
            err.contains("spec.cdn.aliases: every alias must be a lowercase host name"),
            "{alias}: {err}"
        );
    }
}

#[test]
fn alarm_actions_are_sns_topics() {
    check(
        full(json!({"alarms": {"actions": ["arn:aws:sns:eu-west-1:123456789012:ops-alerts"]}})),
        None,
    )
    .unwrap();
    check(full(json!({"alarms": {"enabled": false}})), None).unwrap();
    for bad in [
        "arn:aws:sqs:eu-west-1:123456789012:queue",
        "ops-alerts",
        "arn:aws:sns:eu-west-1:1234:ops",
    ] {
        let err = check(full(json!({"alarms": {"actions": [bad]}})), None).unwrap_err();
        assert!(
            err.contains("spec.alarms.actions: every action must be an SNS topic ARN"),
            "{bad}: {err}"
        );
    }
}

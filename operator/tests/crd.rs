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

#[test]
fn bucket_name_override_is_immutable() {
    let old = full(json!({"buckets": {"upload": {"name": "up-a"}}}));
    let err = check(
        full(json!({"buckets": {"upload": {"name": "up-b"}}})),
        Some(old),
    )
    .unwrap_err();
    assert!(
        err.contains("spec.buckets.upload.name is immutable"),
        "{err}"
    );
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

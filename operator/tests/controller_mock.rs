//! The controller against a fake Kubernetes API: `controller::reconcile` runs
//! in-process with a `kube::Client` whose transport is a `tower-test` mock, and
//! a scripted API server answers each request it expects, in order, checking
//! method, path, query, content type and body. A request the script does not
//! expect fails the test, and so does an expected request that never comes
//! (the script notices when the client is dropped with steps left).
//!
//! Covered here: the paths that make no AWS call — a region change caught
//! before planning (`Stalled`/`ImmutableField` with the three conditions and
//! `observedGeneration`), deletion with `deletionPolicy: Retain` (event with
//! action `Delete`, finalizer removed, no status write), deletion while paused
//! (`Reconciling`/`Paused`, finalizer kept, polled every `POLL_INTERVAL`), and
//! adding the finalizer to a new stack. AWS is configured with fake
//! credentials and a dead endpoint, and every test asserts that no AWS call was
//! made at all.

use std::collections::BTreeMap;
use std::sync::{Arc, Once};
use std::time::Duration;

use http::{Method, Request, Response, StatusCode, header};
use imagestack_operator::api::{FINALIZER, ImageOptimizationStack, PAUSED_ANNOTATION};
use imagestack_operator::aws::{AwsFactory, CallStats};
use imagestack_operator::controller::{self, Context, FIELD_MANAGER, POLL_INTERVAL};
use imagestack_operator::error::Error;
use imagestack_operator::metrics::Metrics;
use imagestack_operator::plan::PlanOptions;
use kube::Client;
use kube::client::Body;
use kube::runtime::controller::Action;
use kube::runtime::events::Reporter;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tower_test::mock::{self, Handle};

const NAMESPACE: &str = "team-a";
const NAME: &str = "images";
const UID: &str = "5d1c9a4e-8f0b-4c4a-9a53-0c6d2f1b7e21";
const REPORTER: &str = "imagestack-operator";
const STACK_PATH: &str = "/apis/imagestack.dev/v1alpha1/namespaces/team-a/imagestacks/images";
const STATUS_PATH: &str =
    "/apis/imagestack.dev/v1alpha1/namespaces/team-a/imagestacks/images/status";
const EVENTS_PATH: &str = "/apis/events.k8s.io/v1/namespaces/team-a/events";

/// How long one reconcile may take: every path here is a handful of mock
/// round trips, so this only trips on a hang.
const DEADLINE: Duration = Duration::from_secs(10);

/// Fake AWS credentials and an endpoint nobody listens on, set once for the
/// whole test binary before any test reads the environment: loading the SDK
/// configuration never blocks on IMDS or a profile, and a call the path under
/// test should not make fails fast instead of reaching AWS.
fn aws_environment() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let vars = [
            ("AWS_ACCESS_KEY_ID", "AKIDCONTROLLERMOCK"),
            ("AWS_SECRET_ACCESS_KEY", "controller-mock-secret"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:1"),
            ("AWS_CONFIG_FILE", "/nonexistent/imagestack-controller-mock"),
            (
                "AWS_SHARED_CREDENTIALS_FILE",
                "/nonexistent/imagestack-controller-mock",
            ),
        ];
        for (k, v) in vars {
            // SAFETY: every test calls this first, and `Once` makes the others
            // wait until it is done, so no thread reads the environment while
            // it is written.
            unsafe { std::env::set_var(k, v) };
        }
    });
}

// ---------------------------------------------------------------------------
// The scripted API server
// ---------------------------------------------------------------------------

type Answer = Box<dyn FnOnce(Value) -> (StatusCode, Value) + Send>;

/// One request the operator must make next, and the API server's answer.
struct Step {
    what: &'static str,
    method: Method,
    path: &'static str,
    /// Query parameters that must be present with these values.
    query: Vec<(&'static str, &'static str)>,
    content_type: &'static str,
    /// Checks the JSON body and returns the response.
    answer: Answer,
}

impl Step {
    fn new(what: &'static str, method: Method, path: &'static str) -> Self {
        Self {
            what,
            method,
            path,
            query: Vec::new(),
            content_type: "application/json",
            answer: Box::new(|_| (StatusCode::OK, json!({}))),
        }
    }

    fn query(mut self, key: &'static str, value: &'static str) -> Self {
        self.query.push((key, value));
        self
    }

    fn content_type(mut self, content_type: &'static str) -> Self {
        self.content_type = content_type;
        self
    }

    fn answer(mut self, f: impl FnOnce(Value) -> (StatusCode, Value) + Send + 'static) -> Self {
        self.answer = Box::new(f);
        self
    }
}

fn query_pairs(query: Option<&str>) -> BTreeMap<String, String> {
    query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (p.to_string(), String::new()),
        })
        .collect()
}

/// Serve `script` in order, then insist that nothing else is requested
/// before the client goes away.
fn serve(mut handle: Handle<Request<Body>, Response<Body>>, script: Vec<Step>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let total = script.len();
        for (i, step) in script.into_iter().enumerate() {
            let n = i + 1;
            let Some((request, send)) = handle.next_request().await else {
                panic!(
                    "request {n}/{total} never came: expected {} {} ({})",
                    step.method, step.path, step.what
                );
            };
            let (parts, body) = request.into_parts();
            let seen = format!("{} {}", parts.method, parts.uri);
            assert_eq!(
                (&parts.method, parts.uri.path()),
                (&step.method, step.path),
                "request {n}/{total} should be {} ({}), got {seen}",
                step.path,
                step.what
            );
            let query = query_pairs(parts.uri.query());
            for (k, v) in &step.query {
                assert_eq!(
                    query.get(*k).map(String::as_str),
                    Some(*v),
                    "request {n}/{total} ({}): query parameter {k} in {seen}",
                    step.what
                );
            }
            let content_type = parts
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            assert_eq!(
                content_type, step.content_type,
                "request {n}/{total} ({}): content type of {seen}",
                step.what
            );
            let bytes = body.collect_bytes().await.expect("request body");
            let value = if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                    panic!("request {n}/{total} ({}): body is not JSON: {e}", step.what)
                })
            };
            let (status, reply) = (step.answer)(value);
            let response = Response::builder()
                .status(status)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(serde_json::to_vec(&reply).expect("reply")))
                .expect("response");
            send.send_response(response);
        }
        if let Some((request, _)) = handle.next_request().await {
            panic!(
                "unexpected request after the {total} expected: {} {}",
                request.method(),
                request.uri()
            );
        }
    })
}

/// What one reconcile did.
struct Outcome {
    result: Result<Action, Error>,
    /// What `error_policy` decides for the error, when there is one.
    retry: Option<Action>,
}

/// Run one reconcile of `stack` against an API server that expects exactly
/// `script`, and check that it made no AWS call.
async fn reconcile(stack: Value, script: Vec<Step>) -> Outcome {
    aws_environment();
    let stack: Arc<ImageOptimizationStack> =
        Arc::new(serde_json::from_value(stack).expect("the fixture is a valid stack"));
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let stats = Arc::new(CallStats::default());
    let aws = AwsFactory::load(Some("eu-west-1".into()), stats.clone())
        .await
        .expect("AWS configuration");
    let ctx = Arc::new(Context::new(
        client,
        aws,
        Arc::new(Metrics::new(stats.clone())),
        Duration::from_secs(600),
        Reporter {
            controller: REPORTER.into(),
            instance: Some("imagestack-operator-7d9f8-abcde".into()),
        },
        PlanOptions {
            cluster_id: "cluster-1".into(),
            ..Default::default()
        },
    ));
    let server = serve(handle, script);

    let result = match timeout(DEADLINE, controller::reconcile(stack.clone(), ctx.clone())).await {
        Ok(result) => result,
        Err(_) => {
            server.abort();
            panic!(
                "reconcile did not finish within {DEADLINE:?} (waiting for an answer the script never gives, or for AWS?)"
            );
        }
    };
    let retry = result
        .as_ref()
        .err()
        .map(|e| controller::error_policy(stack.clone(), e, ctx.clone()));
    // Dropping the last client lets the server see the end of the conversation.
    drop(ctx);
    match timeout(DEADLINE, server).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Ok(Err(e)) => panic!("API server task failed: {e}"),
        Err(_) => panic!("the client was not dropped within {DEADLINE:?}"),
    }
    assert_eq!(
        stats.total(),
        0,
        "this path must make no AWS call: {:?}",
        stats.snapshot()
    );
    Outcome { result, retry }
}

// ---------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------

/// A stack as the API server returns it: generation 3, the finalizer on,
/// created in eu-west-1 and Ready at generation 2.
fn stack(spec: Value) -> Value {
    json!({
        "apiVersion": "imagestack.dev/v1alpha1",
        "kind": "ImageOptimizationStack",
        "metadata": {
            "name": NAME,
            "namespace": NAMESPACE,
            "uid": UID,
            "resourceVersion": "41207",
            "generation": 3,
            "creationTimestamp": "2025-05-02T09:14:07Z",
            "finalizers": [FINALIZER],
        },
        "spec": spec,
        "status": {
            "observedGeneration": 2,
            "conditions": [
                condition("Ready", "True", "Reconciled", "all components are in sync", 2),
                condition("Reconciling", "False", "Reconciled", "", 2),
                condition("Stalled", "False", "Reconciled", "", 2),
            ],
            "outputs": {
                "region": "eu-west-1",
                "uploadBucket": "imagestack-dev-upload-0123abcd",
                "tableName": "imagestack-dev-images-0123abcd",
            },
            "components": [],
        },
    })
}

fn condition(type_: &str, status: &str, reason: &str, message: &str, generation: i64) -> Value {
    json!({
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
        "lastTransitionTime": "2025-05-02T09:16:45Z",
    })
}

/// The same stack with `deletionTimestamp` set (`kubectl delete` was called).
fn deleting(mut stack: Value) -> Value {
    stack["metadata"]["deletionTimestamp"] = json!("2025-05-03T10:00:00Z");
    stack["metadata"]["deletionGracePeriodSeconds"] = json!(0);
    stack
}

/// The API server's answer to a write: the object with a new resourceVersion.
fn stored(mut object: Value, resource_version: &str) -> Value {
    object["metadata"]["resourceVersion"] = json!(resource_version);
    object
}

/// The condition of `type_` in a status body.
fn find<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == type_))
        .unwrap_or_else(|| panic!("no {type_} condition in {status}"))
}

/// The server-side apply of the stack's status, checked by `check`; answered
/// with the stack carrying that status.
fn status_apply(
    what: &'static str,
    stack: &Value,
    check: impl FnOnce(&Value) + Send + 'static,
) -> Step {
    let stack = stack.clone();
    Step::new(what, Method::PATCH, STATUS_PATH)
        .query("fieldManager", FIELD_MANAGER)
        .query("force", "true")
        .content_type("application/apply-patch+yaml")
        .answer(move |body| {
            assert_eq!(body["apiVersion"], "imagestack.dev/v1alpha1", "{body}");
            assert_eq!(body["kind"], "ImageOptimizationStack", "{body}");
            assert!(
                body.get("spec").is_none() && body.get("metadata").is_none(),
                "a status apply carries only status: {body}"
            );
            check(&body["status"]);
            let mut object = stored(stack, "41208");
            object["status"] = body["status"].clone();
            (StatusCode::OK, object)
        })
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

/// `spec.region` names another region than the one recorded at creation: the
/// stack is Stalled with `ImmutableField` before anything is planned (no AWS
/// call), every condition describes generation 3, and the controller waits
/// for a spec change.
#[tokio::test]
async fn region_change_stalls_with_immutable_field_and_waits_for_a_spec_change() {
    let stack = stack(json!({ "environment": "dev", "region": "us-east-1" }));
    let outcome = reconcile(
        stack.clone(),
        vec![status_apply(
            "status: Stalled/ImmutableField",
            &stack,
            |status| {
                assert_eq!(status["observedGeneration"], 3, "{status}");
                let conditions = status["conditions"].as_array().expect("conditions");
                let types: Vec<&str> = conditions
                    .iter()
                    .map(|c| c["type"].as_str().unwrap_or_default())
                    .collect();
                assert_eq!(types, ["Ready", "Reconciling", "Stalled"], "{status}");
                for (type_, value) in [
                    ("Ready", "False"),
                    ("Reconciling", "False"),
                    ("Stalled", "True"),
                ] {
                    let c = find(status, type_);
                    assert_eq!(c["status"], value, "{type_}: {c}");
                    assert_eq!(c["reason"], "ImmutableField", "{type_}: {c}");
                    assert_eq!(c["observedGeneration"], 3, "{type_}: {c}");
                    assert!(c["lastTransitionTime"].is_string(), "{type_}: {c}");
                }
                for type_ in ["Ready", "Stalled"] {
                    let message = find(status, type_)["message"].as_str().unwrap_or_default();
                    assert!(
                        message.contains("us-east-1") && message.contains("eu-west-1"),
                        "{type_}'s message names both regions: {message}"
                    );
                }
                // Reconciling was False before and still is: its transition time stays.
                assert_eq!(
                    find(status, "Reconciling")["lastTransitionTime"],
                    "2025-05-02T09:16:45Z"
                );
                // The stack stays recorded in the region it was created in.
                assert_eq!(status["outputs"]["region"], "eu-west-1", "{status}");
                assert_eq!(
                    status["outputs"]["uploadBucket"], "imagestack-dev-upload-0123abcd",
                    "{status}"
                );
            },
        )],
    )
    .await;
    assert_eq!(outcome.result.expect("reconcile"), Action::await_change());
}

/// Deleting a stack with `deletionPolicy: Retain`: one Normal event `Retained`
/// with the action `Delete` (a verb, not the reason) about this stack, then
/// the finalizer is removed by a JSON patch; the status is not written.
#[tokio::test]
async fn retain_deletion_publishes_retained_and_removes_the_finalizer() {
    let stack = deleting(stack(json!({
        "environment": "dev",
        "region": "eu-west-1",
        "deletionPolicy": "Retain",
    })));
    let released = stored(
        {
            let mut s = stack.clone();
            s["metadata"]["finalizers"] = json!([]);
            s
        },
        "41209",
    );
    let outcome =
        reconcile(
            stack.clone(),
            vec![
            Step::new("event: Retained", Method::POST, EVENTS_PATH).answer(|event| {
                assert_eq!(event["apiVersion"], "events.k8s.io/v1", "{event}");
                assert_eq!(event["kind"], "Event", "{event}");
                assert_eq!(event["type"], "Normal", "{event}");
                assert_eq!(event["reason"], "Retained", "{event}");
                assert_eq!(event["action"], "Delete", "{event}");
                assert_eq!(event["reportingController"], REPORTER, "{event}");
                assert_eq!(event["metadata"]["namespace"], NAMESPACE, "{event}");
                let regarding = &event["regarding"];
                assert_eq!(regarding["apiVersion"], "imagestack.dev/v1alpha1", "{event}");
                assert_eq!(regarding["kind"], "ImageOptimizationStack", "{event}");
                assert_eq!(regarding["namespace"], NAMESPACE, "{event}");
                assert_eq!(regarding["name"], NAME, "{event}");
                assert_eq!(regarding["uid"], UID, "{event}");
                let note = event["note"].as_str().unwrap_or_default();
                assert!(note.contains("Retain"), "the note explains why: {note}");
                let mut created = event;
                created["metadata"]["uid"] = json!("0b9f6c1e-3d2a-4f7e-8c5b-9a1d2e3f4a5b");
                created["metadata"]["resourceVersion"] = json!("41210");
                created["metadata"]["creationTimestamp"] = json!("2025-05-03T10:00:01Z");
                (StatusCode::CREATED, created)
            }),
            Step::new("finalizer removal", Method::PATCH, STACK_PATH)
                .content_type("application/json-patch+json")
                .answer(move |patch| {
                    assert_eq!(
                        patch,
                        json!([
                            { "op": "test", "path": "/metadata/finalizers/0", "value": FINALIZER },
                            { "op": "remove", "path": "/metadata/finalizers/0" },
                        ])
                    );
                    (StatusCode::OK, released)
                }),
        ],
        )
        .await;
    assert_eq!(outcome.result.expect("reconcile"), Action::await_change());
}

/// Deleting a paused stack with `deletionPolicy: Delete`: nothing is deleted,
/// the status says `Reconciling`/`Paused`, the finalizer stays, and the
/// controller polls every `POLL_INTERVAL`; a second pass over the object as
/// written writes nothing.
#[tokio::test]
async fn paused_deletion_keeps_the_finalizer_and_polls() {
    let mut stack = deleting(stack(json!({
        "environment": "dev",
        "region": "eu-west-1",
        "deletionPolicy": "Delete",
    })));
    stack["metadata"]["annotations"] = json!({ PAUSED_ANNOTATION: "true" });
    let written = Arc::new(std::sync::Mutex::new(None::<Value>));
    let keep = written.clone();
    let outcome = reconcile(
        stack.clone(),
        vec![status_apply(
            "status: Reconciling/Paused",
            &stack,
            move |status| {
                assert_eq!(status["observedGeneration"], 3, "{status}");
                for (type_, value) in [
                    ("Ready", "False"),
                    ("Reconciling", "True"),
                    ("Stalled", "False"),
                ] {
                    let c = find(status, type_);
                    assert_eq!(c["status"], value, "{type_}: {c}");
                    assert_eq!(c["reason"], "Paused", "{type_}: {c}");
                    assert_eq!(c["observedGeneration"], 3, "{type_}: {c}");
                }
                let message = find(status, "Reconciling")["message"]
                    .as_str()
                    .unwrap_or_default();
                assert!(
                    message.contains(PAUSED_ANNOTATION),
                    "the message names the annotation: {message}"
                );
                *keep.lock().unwrap() = Some(status.clone());
            },
        )],
    )
    .await;
    match &outcome.result {
        Err(Error::Pending(_)) => {}
        other => panic!("a paused deletion is pending, got {other:?}"),
    }
    assert_eq!(outcome.retry, Some(Action::requeue(POLL_INTERVAL)));
    assert_eq!(POLL_INTERVAL, Duration::from_secs(5));

    // The next pass sees its own status: no write, still pending.
    let status = written.lock().unwrap().take().expect("status written");
    stack["status"] = status;
    let again = reconcile(stack, vec![]).await;
    assert!(
        matches!(again.result, Err(Error::Pending(_))),
        "{:?}",
        again.result
    );
    assert_eq!(again.retry, Some(Action::requeue(POLL_INTERVAL)));
}

/// A stack without the finalizer: the first reconcile only adds it (a JSON
/// patch that tests the list is absent), so that a delete cannot outrun the
/// cleanup; no status, no event, no AWS call.
#[tokio::test]
async fn new_stack_gets_the_finalizer_and_nothing_else() {
    let mut stack = stack(json!({ "environment": "dev" }));
    let metadata = stack["metadata"].as_object_mut().expect("metadata");
    metadata.remove("finalizers");
    metadata.insert("generation".into(), json!(1));
    stack.as_object_mut().expect("object").remove("status");
    let with_finalizer = stored(
        {
            let mut s = stack.clone();
            s["metadata"]["finalizers"] = json!([FINALIZER]);
            s
        },
        "41208",
    );
    let outcome = reconcile(
        stack,
        vec![
            Step::new("finalizer added", Method::PATCH, STACK_PATH)
                .content_type("application/json-patch+json")
                .answer(move |patch| {
                    assert_eq!(
                        patch,
                        json!([
                            { "op": "test", "path": "/metadata/finalizers", "value": null },
                            { "op": "add", "path": "/metadata/finalizers", "value": [FINALIZER] },
                        ])
                    );
                    (StatusCode::OK, with_finalizer)
                }),
        ],
    )
    .await;
    assert_eq!(outcome.result.expect("reconcile"), Action::await_change());
}

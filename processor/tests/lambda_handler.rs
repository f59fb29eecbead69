//! The handler against mocked S3 and DynamoDB answers: the hardening rules.
//!
//! * an event for a bucket other than the upload bucket is refused (a failed
//!   item and an error metric, nothing read);
//! * a GetObject answer without a content length is read only up to the byte
//!   limit (`TooLarge`), never unbounded;
//! * `NoSuchVersion` is `SourceMissing` (permanent), not a retry;
//! * S3 4xx answers other than throttling are `StorageRejected` (permanent:
//!   a failed item, a successful invocation, no SDK retries); throttling
//!   (503 SlowDown) still fails the invocation so Lambda retries;
//! * a source key so long that rendition keys would pass 1024 bytes still
//!   converts, with every key within the limit and the item listing every
//!   variant.

#![cfg(feature = "lambda")]

use std::collections::HashMap;
use std::io::Cursor;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_dynamodb::operation::put_item::PutItemOutput;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::operation::get_object::GetObjectOutput;
use aws_sdk_s3::operation::put_object::PutObjectOutput;
use aws_sdk_s3::primitives::ByteStream;
use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;
use imagestack_contract::table::attr;
use imagestack_contract::{MAX_KEY_BYTES, env};
use imagestack_processor::lambda::config::Config;
use imagestack_processor::lambda::handler::{Processor, Response};
use imagestack_processor::lambda::store::Store;
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{Value, json};

type Item = HashMap<String, AttributeValue>;

fn config(max_bytes: u64) -> Config {
    let vars: HashMap<&str, String> = [
        (env::ENVIRONMENT, "test"),
        (env::UPLOAD_BUCKET, "up"),
        (env::WEBP_BUCKET, "out-webp"),
        (env::JPEG_BUCKET, "out-jpeg"),
        (env::PNG_BUCKET, "out-png"),
        (env::METADATA_TABLE, "meta"),
        (env::FORMATS, "webp,jpeg,png"),
        (env::WEBP_QUALITY, "80"),
        (env::JPEG_QUALITY, "80"),
        (env::WEBP_METHOD, "2"),
        (env::MAX_INPUT_PIXELS, "100000000"),
        (env::WIDTHS, "100,320"),
    ]
    .into_iter()
    .map(|(k, v)| (k, v.to_string()))
    .chain([(env::MAX_INPUT_BYTES, max_bytes.to_string())])
    .collect();
    Config::from_lookup(|k| vars.get(k).cloned()).expect("config")
}

/// An S3 error answer as S3 sends it (REST-XML).
fn s3_error(status: u16, code: &str) -> HttpResponse {
    HttpResponse::new(
        StatusCode::try_from(status).unwrap(),
        SdkBody::from(format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{code} (mocked)</Message><RequestId>R1</RequestId><HostId>H1</HostId></Error>"
        )),
    )
}

/// A noisy picture (does not compress to nothing).
fn png(width: u32, height: u32) -> Vec<u8> {
    let mut state: u32 = 0x1234_5678;
    let img = image::RgbImage::from_fn(width, height, |x, y| {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        image::Rgb([(x * 7) as u8 ^ (state as u8 & 15), (y * 5) as u8, 120])
    });
    let mut out = Vec::new();
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

fn event(bucket: &str, key: &str, size: Option<usize>, version: Option<&str>) -> Value {
    let mut object =
        json!({"key": imagestack_processor_test_key(key), "eTag": "e1", "sequencer": "00"});
    if let Some(s) = size {
        object["size"] = json!(s);
    }
    if let Some(v) = version {
        object["versionId"] = json!(v);
    }
    json!({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventTime": "2026-01-02T03:04:05.000Z", "eventName": "ObjectCreated:Put",
        "userIdentity": {"principalId": "AWS:X"},
        "requestParameters": {"sourceIPAddress": "127.0.0.1"},
        "responseElements": {"x-amz-request-id": "r", "x-amz-id-2": "i"},
        "s3": {
            "s3SchemaVersion": "1.0", "configurationId": "c",
            "bucket": {"name": bucket, "ownerIdentity": {"principalId": "A"}, "arn": format!("arn:aws:s3:::{bucket}")},
            "object": object
        }
    }]})
}

/// Form encoding as S3 uses for event keys (enough for these tests).
fn imagestack_processor_test_key(key: &str) -> String {
    key.replace(' ', "+")
}

/// Everything the mocked world saw.
#[derive(Default, Clone)]
struct Seen {
    items: Arc<Mutex<Vec<Item>>>,
    put_keys: Arc<Mutex<Vec<(String, String)>>>,
    metrics: Arc<Mutex<Vec<Value>>>,
}

impl Seen {
    fn items(&self) -> Vec<Item> {
        self.items.lock().unwrap().clone()
    }
    fn metrics(&self) -> Vec<Value> {
        self.metrics.lock().unwrap().clone()
    }
}

fn put_item_rule(seen: &Seen) -> Rule {
    let items = Arc::clone(&seen.items);
    mock!(aws_sdk_dynamodb::Client::put_item)
        .match_requests(move |input| {
            items
                .lock()
                .unwrap()
                .push(input.item().cloned().unwrap_or_default());
            true
        })
        .then_output(|| PutItemOutput::builder().build())
}

fn put_object_ok(seen: &Seen) -> Rule {
    let keys = Arc::clone(&seen.put_keys);
    mock!(aws_sdk_s3::Client::put_object)
        .match_requests(move |input| {
            keys.lock().unwrap().push((
                input.bucket().unwrap_or_default().to_string(),
                input.key().unwrap_or_default().to_string(),
            ));
            true
        })
        .then_output(|| PutObjectOutput::builder().build())
}

fn get_object_body(body: Vec<u8>, content_length: bool) -> Rule {
    mock!(aws_sdk_s3::Client::get_object).then_output(move || {
        let mut out = GetObjectOutput::builder().body(ByteStream::from(body.clone()));
        if content_length {
            out = out.content_length(body.len() as i64);
        }
        out.build()
    })
}

fn processor(config: Config, s3_rules: &[&Rule], ddb_rules: &[&Rule], seen: &Seen) -> Processor {
    // The production retry mode, with backoffs short enough for a test.
    let retry = || {
        RetryConfig::standard()
            .with_max_attempts(3)
            .with_initial_backoff(Duration::from_millis(1))
            .with_max_backoff(Duration::from_millis(2))
    };
    let s3 = mock_client!(aws_sdk_s3, RuleMode::MatchAny, s3_rules, |c| c
        .retry_config(retry()));
    let ddb = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, ddb_rules, |c| c
        .retry_config(retry()));
    let metrics = Arc::clone(&seen.metrics);
    Processor::new(config, Store::new(s3, ddb)).with_metrics_sink(Arc::new(move |lines| {
        let mut m = metrics.lock().unwrap();
        m.extend(
            lines
                .iter()
                .map(|l| serde_json::from_str::<Value>(l).unwrap()),
        );
    }))
}

async fn handle(p: &Processor, payload: Value) -> imagestack_processor::error::Result<Response> {
    p.handle(LambdaEvent::new(payload, Context::default()))
        .await
}

fn s(item: &Item, name: &str) -> String {
    match item.get(name) {
        Some(AttributeValue::S(v) | AttributeValue::N(v)) => v.clone(),
        other => panic!("{name}: {other:?}"),
    }
}

/// The single failed item and error metric a permanent failure leaves.
fn assert_failed(response: &Response, seen: &Seen, reason: &str) -> Item {
    assert_eq!(response.records.len(), 1);
    let record = &response.records[0];
    assert_eq!(record.status, attr::STATUS_FAILED);
    assert_eq!(record.reason.map(|r| r.as_str()), Some(reason));
    let items = seen.items();
    assert_eq!(items.len(), 1, "one item");
    let item = items[0].clone();
    assert_eq!(s(&item, attr::CONVERSION_STATUS), attr::STATUS_FAILED);
    assert_eq!(s(&item, attr::ERROR_REASON), reason);
    assert_eq!(s(&item, attr::IMAGE_ID), record.image_id);
    let errors: Vec<Value> = seen
        .metrics()
        .into_iter()
        .filter(|m| m.get("ProcessingErrors").is_some())
        .collect();
    assert_eq!(errors.len(), 1, "one error metric");
    assert_eq!(errors[0]["Reason"], reason);
    assert_eq!(errors[0]["Environment"], "test");
    item
}

#[tokio::test]
async fn events_for_another_bucket_are_refused_and_recorded() {
    let seen = Seen::default();
    let get = get_object_body(png(40, 30), true);
    let put = put_object_ok(&seen);
    let p = processor(
        config(1 << 20),
        &[&get, &put],
        &[&put_item_rule(&seen)],
        &seen,
    );
    let response = handle(&p, event("someone-elses-bucket", "a.png", Some(100), None))
        .await
        .expect("a refused event is not retried");
    let item = assert_failed(&response, &seen, "WrongBucket");
    assert_eq!(s(&item, attr::ORIGINAL_BUCKET), "someone-elses-bucket");
    assert!(s(&item, attr::ERROR_MESSAGE).contains("\"up\""));
    assert_eq!(get.num_calls(), 0, "nothing was read");
    assert_eq!(put.num_calls(), 0, "nothing was written");
}

#[tokio::test]
async fn a_body_without_length_is_cut_at_the_limit() {
    // No size in the event, no Content-Length in the answer: the limit is
    // applied while streaming.
    let body = png(200, 150);
    assert!(body.len() > 2000);
    let seen = Seen::default();
    let get = get_object_body(body.clone(), false);
    let put = put_object_ok(&seen);
    let p = processor(config(2000), &[&get, &put], &[&put_item_rule(&seen)], &seen);
    let response = handle(&p, event("up", "big.png", None, None))
        .await
        .unwrap();
    let item = assert_failed(&response, &seen, "TooLarge");
    assert!(s(&item, attr::ERROR_MESSAGE).contains("limit of 2000"));
    assert_eq!(put.num_calls(), 0);

    // Under the limit the same answer converts.
    let seen = Seen::default();
    let put = put_object_ok(&seen);
    let get = get_object_body(body.clone(), false);
    let p = processor(
        config(body.len() as u64),
        &[&get, &put],
        &[&put_item_rule(&seen)],
        &seen,
    );
    let response = handle(&p, event("up", "big.png", None, None))
        .await
        .unwrap();
    assert_eq!(response.records[0].status, attr::STATUS_COMPLETED);
    // 200 px wide: the 100 variant (320 would be an upscale), three formats.
    assert_eq!(put.num_calls(), 6);
}

#[tokio::test]
async fn a_missing_version_is_permanent() {
    let seen = Seen::default();
    let get =
        mock!(aws_sdk_s3::Client::get_object).then_http_response(|| s3_error(404, "NoSuchVersion"));
    let p = processor(config(1 << 20), &[&get], &[&put_item_rule(&seen)], &seen);
    let response = handle(&p, event("up", "gone.png", Some(10), Some("v-gone")))
        .await
        .expect("NoSuchVersion is not retried");
    let item = assert_failed(&response, &seen, "SourceMissing");
    assert!(s(&item, attr::ERROR_MESSAGE).contains("version v-gone"));
    assert_eq!(get.num_calls(), 1, "the SDK did not retry it either");
}

#[tokio::test]
async fn s3_refusals_are_permanent_and_throttling_is_retried() {
    let body = png(40, 30);
    // 403 on every PutObject: a failed item, no retry storm.
    let seen = Seen::default();
    let get = get_object_body(body.clone(), true);
    let put =
        mock!(aws_sdk_s3::Client::put_object).then_http_response(|| s3_error(403, "AccessDenied"));
    let p = processor(
        config(1 << 20),
        &[&get, &put],
        &[&put_item_rule(&seen)],
        &seen,
    );
    let response = handle(&p, event("up", "a.png", Some(body.len()), None))
        .await
        .expect("a refusal is not retried by Lambda");
    let item = assert_failed(&response, &seen, "StorageRejected");
    let message = s(&item, attr::ERROR_MESSAGE);
    assert!(
        message.contains("AccessDenied") && message.contains("403"),
        "{message}"
    );
    assert!(
        (1..=3).contains(&put.num_calls()),
        "no SDK retries: {} calls for 3 renditions",
        put.num_calls()
    );

    // A key S3 calls too long (it cannot happen with our keys; S3's answer
    // is what matters): permanent as well.
    let seen = Seen::default();
    let get = get_object_body(body.clone(), true);
    let put = mock!(aws_sdk_s3::Client::put_object)
        .then_http_response(|| s3_error(400, "KeyTooLongError"));
    let p = processor(
        config(1 << 20),
        &[&get, &put],
        &[&put_item_rule(&seen)],
        &seen,
    );
    let response = handle(&p, event("up", "a.png", Some(body.len()), None))
        .await
        .unwrap();
    assert_failed(&response, &seen, "StorageRejected");

    // 503 SlowDown: transient — the SDK retries, then the invocation fails
    // so Lambda retries it; no item is written.
    let seen = Seen::default();
    let get = get_object_body(body.clone(), true);
    let put =
        mock!(aws_sdk_s3::Client::put_object).then_http_response(|| s3_error(503, "SlowDown"));
    let p = processor(
        config(1 << 20),
        &[&get, &put],
        &[&put_item_rule(&seen)],
        &seen,
    );
    let err = handle(&p, event("up", "a.png", Some(body.len()), None))
        .await
        .expect_err("throttling fails the invocation");
    assert!(err.failure_reason().is_none(), "{err}");
    assert!(put.num_calls() > 3, "the SDK retried: {}", put.num_calls());
    assert!(seen.items().is_empty());

    // A 4xx that is a throttle in disguise stays transient too.
    let seen = Seen::default();
    let get = mock!(aws_sdk_s3::Client::get_object)
        .then_http_response(|| s3_error(400, "RequestTimeout"));
    let p = processor(config(1 << 20), &[&get], &[&put_item_rule(&seen)], &seen);
    let err = handle(&p, event("up", "a.png", Some(10), None))
        .await
        .expect_err("a timeout is retried");
    assert!(err.failure_reason().is_none(), "{err}");
}

#[tokio::test]
async fn long_source_keys_give_keys_within_the_limit() {
    // A 1,000-byte file name (S3 allows 1,024 for the whole key).
    let name = format!("{}.png", "Long name é ".repeat(77));
    let key = format!("uploads/{name}");
    assert!(
        key.len() > 1000 && key.len() <= MAX_KEY_BYTES,
        "{}",
        key.len()
    );
    let body = png(400, 300);
    let seen = Seen::default();
    let get = get_object_body(body.clone(), true);
    let put = put_object_ok(&seen);
    let p = processor(
        config(1 << 20),
        &[&get, &put],
        &[&put_item_rule(&seen)],
        &seen,
    );
    let response = handle(&p, event("up", &key, Some(body.len()), None))
        .await
        .unwrap();
    assert_eq!(response.records[0].status, attr::STATUS_COMPLETED);
    let keys = seen.put_keys.lock().unwrap().clone();
    // Full size and the 100 and 320 variants, in three formats.
    assert_eq!(keys.len(), 9);
    let id = &response.records[0].image_id;
    let stem = imagestack_contract::shorten_stem(&name[..name.len() - 4], id);
    assert!(stem.len() < name.len() - 4);
    for (bucket, k) in &keys {
        assert!(k.len() <= MAX_KEY_BYTES, "{bucket}/{k}: {} bytes", k.len());
        assert!(k.contains(&format!("{stem}-{id}")), "{k}");
    }
    // The item lists every variant with its key, size and CDN path.
    let items = seen.items();
    assert_eq!(items.len(), 1);
    let Some(AttributeValue::L(variants)) = items[0].get(attr::VARIANTS) else {
        panic!("no variants: {:?}", items[0]);
    };
    assert_eq!(variants.len(), 9);
    let mut listed: Vec<(String, String)> = variants
        .iter()
        .map(|v| {
            let AttributeValue::M(m) = v else { panic!() };
            assert_eq!(s(m, attr::CDN_PATH), format!("/{}", s(m, attr::KEY)));
            let (w, h): (u32, u32) = (
                s(m, attr::WIDTH).parse().unwrap(),
                s(m, attr::HEIGHT).parse().unwrap(),
            );
            assert_eq!(h, w * 3 / 4, "{w}x{h}");
            assert!(s(m, attr::SIZE).parse::<u64>().unwrap() > 0);
            (s(m, attr::BUCKET), s(m, attr::KEY))
        })
        .collect();
    let mut put = keys.clone();
    listed.sort();
    put.sort();
    assert_eq!(listed, put, "the item lists exactly what was written");
    // The edge URL and srcset: relative (no IMAGESTACK_IMAGE_URL_PREFIX), the
    // shortened stem percent-encoded, the source width, the variants below it.
    let url = s(&items[0], attr::URL);
    let path = imagestack_contract::edge::edge_path(&name[..name.len() - 4], id, 400);
    assert_eq!(url, path);
    assert!(url.starts_with("/i/400/Long%20name%20%C3%A9%20"), "{url}");
    assert_eq!(
        s(&items[0], attr::SRCSET),
        format!("{url}?w=100 100w, {url}?w=320 320w, {url} 400w")
    );
}

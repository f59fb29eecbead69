//! The processor end to end with real parts: the `bootstrap` binary runs as
//! a child process under a Lambda Runtime API server (as AWS runs it),
//! against the AWS emulator from `AWS_ENDPOINT_URL` (moto over HTTPS in CI).
//! Events are delivered as S3 sends them (URL-encoded keys, `+` for space).
//!
//! The binary is `IMAGESTACK_BOOTSTRAP_BIN`, else `bootstrap` next to this
//! test's target directory — `cargo test --workspace` builds it (or
//! `cargo build -p imagestack-processor --bin bootstrap`).

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context as _, Result};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement,
    KeyType, Projection, ProjectionType, ScalarAttributeType,
};
use imagestack_contract::table::attr;
use imagestack_contract::{
    Format, MAX_KEY_BYTES, RENDITION_CACHE_CONTROL, cdn_path, env, rendition_key,
    rendition_key_with_width, table,
};
use serde_json::Value;
use tests::lambda_runtime_api::RuntimeApi;
use tests::pipeline::{
    Function, assert_stored, invoke, renditions, s3_event, shared_image, upload_at,
};

const FUNCTION: &str = "imagestack-processor-test";
/// The upload time every event of this test carries (the item records it).
const EVENT_TIME: &str = "2026-11-28T06:00:00.000Z";

fn region() -> String {
    std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".to_string())
}

struct Fixture {
    s3: aws_sdk_s3::Client,
    ddb: aws_sdk_dynamodb::Client,
    upload: String,
    outputs: HashMap<Format, String>,
    table: String,
}

impl Fixture {
    async fn create() -> Result<Self> {
        let (s3, ddb, _) = tests::aws().await;
        let base = tests::unique("proc");
        let upload = format!("{base}-up");
        let outputs: HashMap<Format, String> = Format::ALL
            .iter()
            .map(|f| (*f, format!("{base}-{}", f.as_str())))
            .collect();
        let region = std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".to_string());
        for b in std::iter::once(&upload).chain(outputs.values()) {
            let mut create = s3.create_bucket().bucket(b);
            if region != "us-east-1" {
                create = create.create_bucket_configuration(
                    aws_sdk_s3::types::CreateBucketConfiguration::builder()
                        .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::from(
                            region.as_str(),
                        ))
                        .build(),
                );
            }
            create
                .send()
                .await
                .with_context(|| format!("create bucket {b}"))?;
        }
        let table = format!("{base}-meta");
        let key = |name: &str, t: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(t)
                .build()
        };
        let def = |name: &str, t: ScalarAttributeType| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(t)
                .build()
        };
        ddb.create_table()
            .table_name(&table)
            .billing_mode(BillingMode::PayPerRequest)
            .key_schema(key(table::HASH_KEY, KeyType::Hash)?)
            .attribute_definitions(def(table::HASH_KEY, ScalarAttributeType::S)?)
            .attribute_definitions(def(table::TIMESTAMP_ATTR, ScalarAttributeType::N)?)
            .global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name(table::TIMESTAMP_INDEX)
                    .key_schema(key(table::TIMESTAMP_ATTR, KeyType::Hash)?)
                    .projection(
                        Projection::builder()
                            .projection_type(ProjectionType::All)
                            .build(),
                    )
                    .build()?,
            )
            .send()
            .await
            .context("create table")?;
        Ok(Fixture {
            s3,
            ddb,
            upload,
            outputs,
            table,
        })
    }

    fn function_env(&self) -> Vec<(&'static str, String)> {
        vec![
            (env::ENVIRONMENT, "e2e".to_string()),
            (env::UPLOAD_BUCKET, self.upload.clone()),
            (env::WEBP_BUCKET, self.outputs[&Format::Webp].clone()),
            (env::JPEG_BUCKET, self.outputs[&Format::Jpeg].clone()),
            (env::PNG_BUCKET, self.outputs[&Format::Png].clone()),
            (env::AVIF_BUCKET, self.outputs[&Format::Avif].clone()),
            (env::METADATA_TABLE, self.table.clone()),
            // Every format, AVIF (opt-in) included.
            (env::FORMATS, "webp,jpeg,png,avif".to_string()),
            (env::WEBP_QUALITY, "85".to_string()),
            (env::JPEG_QUALITY, "85".to_string()),
            (env::WEBP_METHOD, "4".to_string()),
            (env::MAX_INPUT_BYTES, (50u64 << 20).to_string()),
            (env::MAX_INPUT_PIXELS, "100000000".to_string()),
            // 320 and 640 are wider than the 300-pixel test photo: not made.
            (env::WIDTHS, "100,200,320,640".to_string()),
            (
                env::IMAGE_URL_PREFIX,
                "https://images.example.com".to_string(),
            ),
        ]
    }

    /// Upload and return the event S3 would send for it.
    async fn upload(&self, key: &str, body: Vec<u8>) -> Result<Value> {
        upload_at(&self.s3, &region(), &self.upload, key, body, EVENT_TIME).await
    }

    async fn keys(&self, bucket: &str) -> Result<Vec<String>> {
        let out = self.s3.list_objects_v2().bucket(bucket).send().await?;
        Ok(out
            .contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_string))
            .collect())
    }

    async fn item(&self, image_id: &str) -> Result<HashMap<String, AttributeValue>> {
        self.ddb
            .get_item()
            .table_name(&self.table)
            .key(table::HASH_KEY, AttributeValue::S(image_id.to_string()))
            .consistent_read(true)
            .send()
            .await?
            .item
            .context("no item")
    }

    async fn item_count(&self) -> Result<i32> {
        Ok(self
            .ddb
            .scan()
            .table_name(&self.table)
            .send()
            .await?
            .count())
    }
}

fn s(item: &HashMap<String, AttributeValue>, name: &str) -> String {
    match item.get(name) {
        Some(AttributeValue::S(v)) => v.clone(),
        Some(AttributeValue::N(v)) => v.clone(),
        other => panic!("{name}: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_processes_s3_events_against_the_emulator() -> Result<()> {
    assert!(
        std::env::var("AWS_ENDPOINT_URL").is_ok(),
        "AWS_ENDPOINT_URL is not set: this test needs the AWS emulator (`. $(scripts/emulator/start.sh)`)"
    );
    let fx = Fixture::create().await?;
    let api = RuntimeApi::start().await?;
    let function = Function::start(&api, FUNCTION, 1024, &fx.function_env())?;

    // A key with spaces, unicode and a literal '+', as a user would upload it.
    let key = "uploads/Holiday photo ✓ é+1.jpg";
    let image = shared_image("pillow_flower2_icc.jpg")?;
    let original_size = image.len();
    let event = fx.upload(key, image).await?;
    assert!(
        event
            .to_string()
            .contains("Holiday+photo+%E2%9C%93+%C3%A9%2B1.jpg"),
        "{event}"
    );

    let response = invoke(&api, &function, event.clone()).await?;
    let record = &response["records"][0];
    assert_eq!(record["status"], "completed", "{response}");
    assert_eq!(record["key"], key);
    let image_id = record["image_id"].as_str().context("image_id")?.to_string();

    // The item: reference fields plus the additions.
    let item = fx.item(&image_id).await?;
    assert_eq!(s(&item, attr::CONVERSION_STATUS), attr::STATUS_COMPLETED);
    assert_eq!(s(&item, attr::ORIGINAL_FILENAME), key);
    assert_eq!(s(&item, attr::ORIGINAL_SIZE), original_size.to_string());
    assert_eq!(s(&item, attr::ORIGINAL_BUCKET), fx.upload);
    assert_eq!(s(&item, attr::DETECTED_FORMAT), "jpeg");
    assert_eq!(s(&item, attr::WIDTH), "300");
    assert_eq!(s(&item, attr::HEIGHT), "225");
    assert_eq!(s(&item, attr::ICC_PROFILE), "srgb");
    assert!(!s(&item, attr::PROCESSOR_VERSION).is_empty());
    assert!(s(&item, attr::PROCESSING_TIME).parse::<f64>()? > 0.0);
    assert_eq!(s(&item, attr::UPLOAD_TIMESTAMP), "1795845600");
    assert!(matches!(item.get(attr::ETAG), Some(AttributeValue::S(_))));
    // The edge URL: the prefix, the source width, the stem percent-encoded
    // (space, ✓, é and the literal '+'); the srcset lists the variants made.
    let url = s(&item, attr::URL);
    assert_eq!(
        url,
        format!(
            "https://images.example.com/i/300/Holiday%20photo%20%E2%9C%93%20%C3%A9%2B1-{image_id}"
        )
    );
    assert_eq!(
        s(&item, attr::SRCSET),
        format!("{url}?w=100 100w, {url}?w=200 200w, {url} 300w")
    );
    let Some(AttributeValue::M(formats)) = item.get(attr::FORMATS) else {
        panic!("formats: {:?}", item.get(attr::FORMATS));
    };
    assert_eq!(formats.len(), Format::ALL.len());
    let mut recorded = HashMap::new();
    for f in Format::ALL {
        let Some(AttributeValue::M(r)) = formats.get(f.as_str()) else {
            panic!("formats.{f} missing: {formats:?}");
        };
        let (bucket, key_out, size) = (s(r, attr::BUCKET), s(r, attr::KEY), s(r, attr::SIZE));
        assert_eq!(bucket, fx.outputs[&f]);
        assert_eq!(key_out, rendition_key(f, "Holiday photo ✓ é+1", &image_id));
        assert_eq!(s(r, attr::CDN_PATH), cdn_path(&key_out));
        // The object exists at the recorded key with the recorded size and headers.
        let head = fx
            .s3
            .head_object()
            .bucket(&bucket)
            .key(&key_out)
            .send()
            .await
            .with_context(|| format!("{f} rendition s3://{bucket}/{key_out}"))?;
        assert_eq!(
            head.content_length().map(|l| l.to_string()),
            Some(size.clone()),
            "{f} size"
        );
        assert_eq!(head.content_type(), Some(f.content_type()));
        assert_eq!(head.cache_control(), Some(RENDITION_CACHE_CONTROL));
        let body = fx
            .s3
            .get_object()
            .bucket(&bucket)
            .key(&key_out)
            .send()
            .await?
            .body
            .collect()
            .await?
            .into_bytes();
        let (at, magic): (usize, &[u8]) = match f {
            Format::Webp => (0, b"RIFF"),
            Format::Jpeg => (0, b"\xFF\xD8\xFF"),
            Format::Png => (0, b"\x89PNG"),
            Format::Avif => (4, b"ftypavif"),
        };
        assert!(body[at..].starts_with(magic), "{f} body is not {f}");
        recorded.insert(f, key_out);
    }

    // EMF: one success document with the environment dimension, bytes out per format.
    let emf = function.emf();
    let main = emf
        .iter()
        .find(|d| d.get("ProcessedImages").is_some())
        .context("no ProcessedImages EMF line")?;
    assert_eq!(
        main["_aws"]["CloudWatchMetrics"][0]["Namespace"],
        "ImageOptimization"
    );
    assert_eq!(main["Environment"], "e2e");
    assert_eq!(main["BytesIn"], original_size);
    // One BytesOut line per format: the bytes of all its renditions.
    let all = renditions(&item)?;
    for f in Format::ALL {
        let line = emf
            .iter()
            .find(|d| d.get("BytesOut").is_some() && d["Format"] == f.as_str())
            .with_context(|| format!("no BytesOut line for {f}"))?;
        let total: u64 = all.iter().filter(|r| r.format == f).map(|r| r.size).sum();
        assert_eq!(line["BytesOut"], total, "{f}");
    }
    assert_eq!(
        emf.iter().filter(|d| d.get("BytesOut").is_some()).count(),
        Format::ALL.len()
    );

    // Width variants: the item lists every rendition (full size and each
    // configured width narrower than the image), each stored at its key,
    // with its size, and decoding to its recorded dimensions.
    let mut listed: Vec<(Format, u32, u32, String)> = all
        .iter()
        .map(|r| (r.format, r.width, r.height, r.key.clone()))
        .collect();
    listed.sort();
    let mut expected = Vec::new();
    for f in Format::ALL {
        expected.push((
            f,
            100,
            75,
            rendition_key_with_width(f, "Holiday photo ✓ é+1", &image_id, Some(100)),
        ));
        expected.push((
            f,
            200,
            150,
            rendition_key_with_width(f, "Holiday photo ✓ é+1", &image_id, Some(200)),
        ));
        expected.push((f, 300, 225, recorded[&f].clone()));
    }
    expected.sort();
    assert_eq!(listed, expected);
    for r in &all {
        assert_eq!(r.bucket, fx.outputs[&r.format]);
        assert_eq!(r.cdn_path, cdn_path(&r.key));
    }
    assert_stored(&fx.s3, &all).await?;

    // The same event again: same objects, still one item.
    let again = invoke(&api, &function, event).await?;
    assert_eq!(again["records"][0]["image_id"], image_id.as_str());
    for f in Format::ALL {
        let mut stored = fx.keys(&fx.outputs[&f]).await?;
        stored.sort();
        let mut keys: Vec<String> = all
            .iter()
            .filter(|r| r.format == f)
            .map(|r| r.key.clone())
            .collect();
        keys.sort();
        assert_eq!(stored, keys, "{f} after retry");
    }
    assert_eq!(fx.item_count().await?, 1);

    // A corrupt upload: a failed item with a reason, no renditions, and a successful invocation.
    let mut broken = shared_image("skimage_coffee.png")?;
    broken.truncate(2000);
    let bad_event = fx.upload("uploads/broken upload.png", broken).await?;
    let response = invoke(&api, &function, bad_event).await?;
    let record = &response["records"][0];
    assert_eq!(record["status"], "failed", "{response}");
    assert_eq!(record["reason"], "CorruptImage");
    let bad_item = fx
        .item(record["image_id"].as_str().context("image_id")?)
        .await?;
    assert_eq!(s(&bad_item, attr::CONVERSION_STATUS), attr::STATUS_FAILED);
    assert_eq!(s(&bad_item, attr::ERROR_REASON), "CorruptImage");
    assert!(
        !bad_item.contains_key(attr::URL),
        "no edge URL for a failed image"
    );
    assert!(!s(&bad_item, attr::ERROR_MESSAGE).is_empty());
    assert_eq!(
        s(&bad_item, attr::ORIGINAL_FILENAME),
        "uploads/broken upload.png"
    );
    for f in Format::ALL {
        assert_eq!(
            fx.keys(&fx.outputs[&f]).await?.len(),
            3,
            "{f}: no rendition for the corrupt upload"
        );
    }
    assert_eq!(fx.item_count().await?, 2);
    let errors = function
        .emf()
        .into_iter()
        .find(|d| d.get("ProcessingErrors").is_some())
        .context("no ProcessingErrors EMF line")?;
    assert_eq!(errors["Reason"], "CorruptImage");

    // An event for an object that is gone is a permanent failure too.
    let gone = s3_event(
        &region(),
        &fx.upload,
        "uploads/never uploaded.jpg",
        10,
        "abc",
        EVENT_TIME,
    );
    let response = invoke(&api, &function, gone).await?;
    assert_eq!(
        response["records"][0]["reason"], "SourceMissing",
        "{response}"
    );

    // An event naming a bucket other than the upload bucket: refused and
    // recorded, nothing read or written.
    let other = format!("{}-not-ours", fx.upload);
    let foreign = s3_event(&region(), &other, "uploads/x.jpg", 10, "abc", EVENT_TIME);
    let response = invoke(&api, &function, foreign).await?;
    let record = &response["records"][0];
    assert_eq!(record["status"], "failed", "{response}");
    assert_eq!(record["reason"], "WrongBucket");
    let foreign_item = fx
        .item(record["image_id"].as_str().context("image_id")?)
        .await?;
    assert_eq!(s(&foreign_item, attr::ERROR_REASON), "WrongBucket");
    assert_eq!(s(&foreign_item, attr::ORIGINAL_BUCKET), other);
    assert!(
        function
            .emf()
            .iter()
            .any(|d| d.get("ProcessingErrors").is_some() && d["Reason"] == "WrongBucket"),
        "no WrongBucket error metric"
    );

    // A file name of about a kilobyte: S3 takes the upload (the key is
    // within 1,024 bytes) and every rendition key is shortened to fit too.
    let long_name = format!("{}.jpg", "Very long name ✓ ".repeat(53));
    let long_key = format!("uploads/{long_name}");
    assert!(long_key.len() > 1000 && long_key.len() <= MAX_KEY_BYTES);
    let event = fx
        .upload(&long_key, shared_image("pillow_flower2_icc.jpg")?)
        .await?;
    let response = invoke(&api, &function, event).await?;
    let record = &response["records"][0];
    assert_eq!(record["status"], "completed", "{response}");
    let long_item = fx
        .item(record["image_id"].as_str().context("image_id")?)
        .await?;
    let long = renditions(&long_item)?;
    assert_eq!(long.len(), 3 * Format::ALL.len());
    for r in &long {
        assert!(
            r.key.len() <= MAX_KEY_BYTES,
            "{} bytes: {}",
            r.key.len(),
            r.key
        );
    }
    assert_stored(&fx.s3, &long).await?;
    drop(function);

    // A deployment from before IMAGESTACK_WIDTHS existed: the default widths.
    let old_env: Vec<(&str, String)> = fx
        .function_env()
        .into_iter()
        .filter(|(k, _)| *k != env::WIDTHS)
        .collect();
    let function = Function::start(&api, FUNCTION, 1024, &old_env)?;
    let event = fx
        .upload("uploads/coffee.png", shared_image("skimage_coffee.png")?)
        .await?;
    let response = invoke(&api, &function, event).await?;
    let record = &response["records"][0];
    assert_eq!(record["status"], "completed", "{response}");
    let coffee = renditions(
        &fx.item(record["image_id"].as_str().context("image_id")?)
            .await?,
    )?;
    // 600×400: of 320, 640, 1280 and 1920 only 320 is narrower.
    let mut sizes: Vec<(Format, u32, u32)> = coffee
        .iter()
        .map(|r| (r.format, r.width, r.height))
        .collect();
    sizes.sort();
    let mut want: Vec<(Format, u32, u32)> = Format::ALL
        .iter()
        .flat_map(|&f| [(f, 320, 213), (f, 600, 400)])
        .collect();
    want.sort();
    assert_eq!(sizes, want);
    assert_stored(&fx.s3, &coffee).await?;
    drop(function);
    Ok(())
}

#[tokio::test]
async fn bootstrap_refuses_to_start_without_configuration() -> Result<()> {
    let api = RuntimeApi::start().await?;
    let mut vars = vec![(env::ENVIRONMENT, "e2e".to_string())];
    vars.push((env::WEBP_QUALITY, "85".to_string()));
    let mut function = Function::start(&api, FUNCTION, 1024, &vars)?;
    let status = function.wait(Duration::from_secs(30)).await?;
    let logs = function.logs();
    assert!(
        !status.success(),
        "exited {status} without configuration:\n{logs}"
    );
    assert!(
        logs.contains(env::UPLOAD_BUCKET) || logs.contains(env::FORMATS),
        "{logs}"
    );
    Ok(())
}

/// The shipped arm64 `bootstrap` (from the image's `arm64.zip`) under
/// user-mode emulation, against the same Runtime API and emulator: one
/// photograph and one transparent PNG, every format and width. `.ci/run`
/// runs it after building the image (`IMAGESTACK_SHIPPED_ZIPS` = the image's
/// /opt/imagestack/processor, `IMAGESTACK_SHIPPED_ARCH=arm64`; needs
/// `qemu-aarch64` and Debian's aarch64 glibc: packages qemu-user,
/// libc6-arm64-cross).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the shipped zips: IMAGESTACK_SHIPPED_ZIPS=<dir> IMAGESTACK_SHIPPED_ARCH=arm64 (.ci/run sets them)"]
async fn shipped_arm64_bootstrap_processes_a_photo_and_a_transparent_png() -> Result<()> {
    anyhow::ensure!(
        tests::pipeline::shipped_zips().is_some() && tests::pipeline::shipped_arch()? == "arm64",
        "set IMAGESTACK_SHIPPED_ZIPS (a directory with arm64.zip) and IMAGESTACK_SHIPPED_ARCH=arm64"
    );
    let fx = Fixture::create().await?;
    let api = RuntimeApi::start().await?;
    let started = std::time::Instant::now();
    let function = Function::start(&api, FUNCTION, 2048, &fx.function_env())?;
    for (key, name, alpha) in [
        (
            "arm64/Rain drops.jpg",
            "mate_RainDrops_1920x1200.jpg",
            false,
        ),
        (
            "arm64/alpha.png",
            "jxltest_riaphotographs_alpha_500.png",
            true,
        ),
    ] {
        let t = std::time::Instant::now();
        let event = fx.upload(key, shared_image(name)?).await?;
        let response = invoke(&api, &function, event)
            .await
            .with_context(|| format!("{key}\n{}", function.logs()))?;
        let record = &response["records"][0];
        anyhow::ensure!(record["status"] == "completed", "{response}");
        let id = record["image_id"].as_str().context("image_id")?;
        let item = fx.item(id).await?;
        assert_eq!(s(&item, attr::CONVERSION_STATUS), attr::STATUS_COMPLETED);
        let all = renditions(&item)?;
        // Every format, the full size and each configured width narrower than the image.
        for f in Format::ALL {
            let widths: Vec<u32> = all
                .iter()
                .filter(|r| r.format == f)
                .map(|r| r.width)
                .collect();
            let want: Vec<u32> = if alpha {
                vec![100, 200, 320, 500]
            } else {
                vec![100, 200, 320, 640, 1920]
            };
            let mut got = widths.clone();
            got.sort_unstable();
            assert_eq!(got, want, "{name} {f}");
        }
        assert_stored(&fx.s3, &all).await?;
        if alpha {
            // The transparent PNG keeps its alpha in PNG, WebP and AVIF.
            for r in all
                .iter()
                .filter(|r| r.format != Format::Jpeg && r.full_size)
            {
                let body = fx
                    .s3
                    .get_object()
                    .bucket(&r.bucket)
                    .key(&r.key)
                    .send()
                    .await?
                    .body
                    .collect()
                    .await?
                    .into_bytes();
                let decoded = tests::pipeline::decode(r.format, &body)?;
                anyhow::ensure!(
                    decoded.to_rgba8().pixels().any(|p| p.0[3] < 255),
                    "{} lost its alpha",
                    r.format
                );
            }
        }
        println!(
            "arm64 under qemu: {name} processed in {:.1} s",
            t.elapsed().as_secs_f64()
        );
    }
    println!(
        "arm64 under qemu: start-up and both images in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

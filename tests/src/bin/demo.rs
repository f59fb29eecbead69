//! Upload an image to a Ready stack and show what the product does with it:
//! the renditions' CDN paths and sizes, and the metadata item.
//!
//! Against a local emulator (`AWS_ENDPOINT_URL` set), which does not run
//! Lambda functions, the processor's `bootstrap` binary is run here under a
//! Lambda Runtime API exactly as Lambda would run it: configured from the
//! deployed function (`GetFunctionConfiguration`), given the S3 event the
//! upload bucket's notification sends. Against real AWS, S3 invokes the
//! deployed function and this waits for its metadata item.
//!
//! `./scripts/up` runs it after the stack is Ready:
//!   demo --namespace default --name images [--image PATH] [--key KEY]

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use aws_sdk_dynamodb::types::AttributeValue;
use clap::Parser;
use imagestack_contract::{env, table};
use imagestack_operator::api::ImageOptimizationStack;
use kube::api::Api;
use serde_json::{Map, Value};
use tests::lambda_runtime_api::RuntimeApi;
use tests::pipeline::{self, Function, deployed_function, invoke, notification_routes, renditions};

#[derive(Parser, Debug)]
#[command(about = "Upload an image to a Ready imagestack and print its renditions and metadata")]
struct Args {
    /// Namespace of the ImageOptimizationStack.
    #[arg(long, default_value = "default")]
    namespace: String,
    /// Name of the ImageOptimizationStack.
    #[arg(long, default_value = "images")]
    name: String,
    /// Image to upload (default: a photograph from ../shared/images).
    #[arg(long)]
    image: Option<PathBuf>,
    /// Object key in the upload bucket (default: `uploads/<file name>`).
    #[arg(long)]
    key: Option<String>,
    /// Run the processor here under a Lambda Runtime API (default: when
    /// AWS_ENDPOINT_URL points at an emulator) instead of waiting for S3 to
    /// invoke the deployed function.
    #[arg(long)]
    local_processor: Option<bool>,
    /// How long to wait for the metadata item when S3 invokes the function.
    #[arg(long, default_value_t = 120)]
    timeout_seconds: u64,
}

/// DynamoDB attribute → plain JSON, for printing.
fn plain(v: &AttributeValue) -> Value {
    match v {
        AttributeValue::S(s) => Value::String(s.clone()),
        AttributeValue::N(n) => n
            .parse::<f64>()
            .ok()
            .and_then(|f| {
                if f.fract() == 0.0 && f.abs() < 9e15 {
                    Some(Value::from(f as i64))
                } else {
                    serde_json::Number::from_f64(f).map(Value::Number)
                }
            })
            .unwrap_or_else(|| Value::String(n.clone())),
        AttributeValue::Bool(b) => Value::Bool(*b),
        AttributeValue::M(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), plain(v)))
                .collect::<Map<_, _>>(),
        ),
        AttributeValue::L(l) => Value::Array(l.iter().map(plain).collect()),
        AttributeValue::Null(_) => Value::Null,
        other => Value::String(format!("{other:?}")),
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let client = tests::kube_client().await?;
    let api: Api<ImageOptimizationStack> = Api::namespaced(client, &args.namespace);
    let stack = api
        .get(&args.name)
        .await
        .with_context(|| format!("imagestack {}/{}", args.namespace, args.name))?;
    let ready = tests::condition(&stack, "Ready").is_some_and(|c| c.status == "True");
    if !ready {
        bail!(
            "imagestack {}/{} is not Ready yet (kubectl get imagestack {} -n {})",
            args.namespace,
            args.name,
            args.name,
            args.namespace
        );
    }
    let out = stack
        .status
        .and_then(|s| s.outputs)
        .context("the stack reports no outputs")?;
    let upload_bucket = out.upload_bucket.clone().context("uploadBucket")?;
    let function_name = out.function_name.clone().context("functionName")?;

    let image_path = args
        .image
        .clone()
        .unwrap_or_else(|| tests::repo_root().join("../shared/images/pillow_flower2_icc.jpg"));
    let body =
        std::fs::read(&image_path).with_context(|| format!("read {}", image_path.display()))?;
    let file_name = image_path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("image.jpg")
        .to_string();
    let key = args.key.unwrap_or_else(|| format!("uploads/{file_name}"));

    let cfg = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    let region = cfg
        .region()
        .map(|r| r.to_string())
        .unwrap_or_else(|| "us-east-1".into());
    let emulator = std::env::var("AWS_ENDPOINT_URL").is_ok();
    let (s3, ddb, _) = tests::aws().await;
    let lambda = aws_sdk_lambda::Client::new(&cfg);
    let deployed = deployed_function(&lambda, &function_name).await?;
    let table_name = deployed
        .var(env::METADATA_TABLE)
        .context("the function has no metadata table variable")?
        .to_string();
    if !notification_routes(&s3, &upload_bucket, &key, &deployed.arn).await? {
        bail!(
            "s3://{upload_bucket}/{key} would not trigger {function_name}: only .jpg, .jpeg, .png \
             and .webp uploads are processed"
        );
    }

    println!(
        "uploading {} ({} bytes) to s3://{upload_bucket}/{key}",
        image_path.display(),
        body.len()
    );
    let event = pipeline::upload(&s3, &region, &upload_bucket, &key, body).await?;
    let image_id = if args.local_processor.unwrap_or(emulator) {
        println!(
            "running the processor ({}, {} MB) on the S3 event under a local Lambda Runtime API",
            function_name, deployed.memory_mb
        );
        let runtime = RuntimeApi::start().await?;
        let function = Function::start_as(&runtime, &deployed)?;
        let response = invoke(&runtime, &function, event).await?;
        let record = &response["records"][0];
        record["image_id"]
            .as_str()
            .context("the processor returned no image id")?
            .to_string()
    } else {
        println!("waiting for S3 to invoke {function_name} and the metadata item to appear");
        tests::poll(Duration::from_secs(args.timeout_seconds), || async {
            let items = ddb
                .scan()
                .table_name(&table_name)
                .filter_expression("#f = :k")
                .expression_attribute_names("#f", table::attr::ORIGINAL_FILENAME)
                .expression_attribute_values(":k", AttributeValue::S(key.clone()))
                .send()
                .await
                .ok()?;
            items
                .items()
                .first()
                .and_then(|i| pipeline::text(i, table::HASH_KEY))
        })
        .await?
    };

    let item = pipeline::item(&ddb, &table_name, &image_id).await?;
    let status = pipeline::text(&item, table::attr::CONVERSION_STATUS).unwrap_or_default();
    println!("\nimage {image_id}: {status}");
    if status == table::attr::STATUS_COMPLETED {
        let domain = out.cdn_domain.clone().unwrap_or_default();
        println!("{:<6} {:>11} {:>10}  CDN URL", "FORMAT", "SIZE", "BYTES");
        for r in renditions(&item)? {
            println!(
                "{:<6} {:>11} {:>10}  https://{domain}{}",
                r.format.as_str(),
                format!("{}x{}", r.width, r.height),
                r.size,
                r.cdn_path
            );
        }
    }
    let printable: Map<String, Value> = item.iter().map(|(k, v)| (k.clone(), plain(v))).collect();
    println!(
        "\nmetadata item ({table_name}):\n{}",
        serde_json::to_string_pretty(&Value::Object(printable))?
    );
    if status != table::attr::STATUS_COMPLETED {
        bail!("the image was not processed: {status}");
    }
    Ok(())
}

//! The whole seed system end to end: a real API server (KUBECONFIG), the AWS
//! emulator (AWS_ENDPOINT_URL), the operator binary as a process, and the
//! processor's `bootstrap` binary under a Lambda Runtime API, configured as
//! the function the operator deployed (environment and memory read back from
//! Lambda). An upload goes through the bucket notification's routing, the
//! processor, the metadata table, and every CDN path the item records is
//! resolved through the distribution's behaviours to an object that exists in
//! a bucket whose policy lets this distribution (and nobody else) read it.

use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use imagestack_contract::{Format, env};
use imagestack_operator::api::ImageOptimizationStack;
use imagestack_operator::api::StackOutputs;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};
use tests::lambda_runtime_api::RuntimeApi;
use tests::pipeline::{
    self, Deployed, Function, Rendition, deployed_function, invoke, notification_routes,
    renditions, resolve_cdn_path, shared_image, text,
};
use tests::*;

const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// ACM certificate of the custom domain (us-east-1, as CloudFront requires).
const CERT: &str =
    "arn:aws:acm:us-east-1:123456789012:certificate/0a1b2c3d-1111-2222-3333-444455556666";

/// The stack with the production settings of issue 11: retention, reserved
/// concurrency and a custom domain.
/// Every format (AVIF is opt-in), two widths, and the production features.
const PRODUCTION_SPEC: &str = "environment: dev
buckets: {upload: {lifecycle: {noncurrentVersionExpirationDays: 10}}}
processor: {reservedConcurrency: 5, formats: [webp, jpeg, png, avif], widths: [320, 640]}
alarms: {actions: ['arn:aws:sns:us-east-1:123456789012:photos-ops']}
cdn:
  aliases: [photos.example.com]
  certificateArn: arn:aws:acm:us-east-1:123456789012:certificate/0a1b2c3d-1111-2222-3333-444455556666";

/// The stack's four alarms are on status, Ready, and exist in CloudWatch with
/// the stack's actions; the ProcessingErrors rate selects by `Stack`.
async fn assert_alarms(
    components: &[imagestack_operator::api::ComponentStatus],
    stack: &str,
) -> Result<()> {
    use imagestack_operator::api::{ComponentName as N, ComponentState};
    let cfg = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    let cw = imagestack_operator::aws::AwsClients::from_sdk_config(&cfg).cloudwatch;
    for name in [
        N::FunctionErrorsAlarm,
        N::FunctionThrottlesAlarm,
        N::ProcessingErrorsAlarm,
        N::CdnErrorsAlarm,
    ] {
        let c = components
            .iter()
            .find(|c| c.name == name)
            .with_context(|| format!("{name} not on status: {components:?}"))?;
        ensure!(c.state == ComponentState::Ready, "{c:?}");
        let arn = c.id.as_deref().context("alarm ARN on status")?;
        let alarm_name = arn.rsplit(':').next().unwrap_or_default();
        let out = cw.describe_alarms().alarm_names(alarm_name).send().await?;
        let a = out
            .metric_alarms()
            .first()
            .with_context(|| format!("{alarm_name} missing"))?;
        assert_eq!(
            a.alarm_actions(),
            ["arn:aws:sns:us-east-1:123456789012:photos-ops"]
        );
        if name == N::ProcessingErrorsAlarm {
            let stacks: Vec<&str> = a
                .metrics()
                .iter()
                .filter_map(|q| q.metric_stat()?.metric())
                .flat_map(|m| m.dimensions())
                .filter(|d| d.name() == Some("Stack"))
                .filter_map(|d| d.value())
                .collect();
            assert_eq!(stacks, [stack, stack]);
        }
    }
    Ok(())
}

/// The production settings read back from AWS: lifecycle rules on every
/// bucket, the function's reserved concurrency, the distribution's aliases
/// and certificate, and the CNAME target on status.
async fn assert_production_settings(c: &Clients, out: &StackOutputs, function: &str) -> Result<()> {
    let rules = |bucket: String| async move {
        let lc =
            c.s3.get_bucket_lifecycle_configuration()
                .bucket(&bucket)
                .send()
                .await
                .with_context(|| format!("lifecycle of {bucket}"))?;
        let mut v: Vec<(String, Option<i32>, Option<i32>)> = lc
            .rules()
            .iter()
            .map(|r| {
                (
                    r.id().unwrap_or_default().to_string(),
                    r.noncurrent_version_expiration()
                        .and_then(|n| n.noncurrent_days()),
                    r.abort_incomplete_multipart_upload()
                        .and_then(|a| a.days_after_initiation()),
                )
            })
            .collect();
        v.sort();
        anyhow::Ok(v)
    };
    let abort = (
        "imagestack-abort-incomplete-multipart-uploads".to_string(),
        None,
        Some(7),
    );
    let upload = out.upload_bucket.clone().context("uploadBucket")?;
    assert_eq!(
        rules(upload).await?,
        [
            abort.clone(),
            (
                "imagestack-expire-noncurrent-versions".to_string(),
                Some(10),
                None
            )
        ]
    );
    for b in [&out.webp_bucket, &out.jpeg_bucket, &out.png_bucket] {
        let b = b.clone().context("output bucket")?;
        assert_eq!(rules(b).await?, std::slice::from_ref(&abort));
    }
    let f = c
        .lambda
        .get_function()
        .function_name(function)
        .send()
        .await?;
    assert_eq!(
        f.concurrency()
            .and_then(|c| c.reserved_concurrent_executions()),
        Some(5)
    );
    let dist = out.distribution_id.as_deref().context("distributionId")?;
    let cfg = c.cf.get_distribution_config().id(dist).send().await?;
    let cfg = cfg.distribution_config().context("config")?;
    assert_eq!(
        cfg.aliases()
            .map(|a| a.items().to_vec())
            .unwrap_or_default(),
        ["photos.example.com"]
    );
    let vc = cfg.viewer_certificate().context("viewer certificate")?;
    assert_eq!(vc.acm_certificate_arn(), Some(CERT));
    assert_eq!(
        vc.ssl_support_method().map(|m| m.as_str()),
        Some("sni-only")
    );
    assert_eq!(
        vc.minimum_protocol_version().map(|m| m.as_str()),
        Some("TLSv1.2_2021")
    );
    assert_eq!(out.cdn_aliases, ["photos.example.com"]);
    assert_eq!(out.cname_target.as_deref(), out.cdn_domain.as_deref());
    assert!(out.cname_target.is_some());
    Ok(())
}

struct Clients {
    s3: aws_sdk_s3::Client,
    ddb: aws_sdk_dynamodb::Client,
    lambda: aws_sdk_lambda::Client,
    cf: aws_sdk_cloudfront::Client,
    region: String,
}

async fn clients() -> Clients {
    let cfg = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    let (s3, ddb, _) = aws().await;
    Clients {
        s3,
        ddb,
        lambda: aws_sdk_lambda::Client::new(&cfg),
        cf: aws_sdk_cloudfront::Client::new(&cfg),
        region: cfg
            .region()
            .map(|r| r.to_string())
            .unwrap_or_else(|| "us-east-1".into()),
    }
}

/// Upload `body` as `key`, check the notification routes it to the function,
/// deliver the event to `function` and return the completed item's renditions.
async fn process(
    c: &Clients,
    api: &RuntimeApi,
    function: &Function,
    deployed: &Deployed,
    upload_bucket: &str,
    key: &str,
    body: Vec<u8>,
) -> Result<(String, Vec<Rendition>)> {
    ensure!(
        notification_routes(&c.s3, upload_bucket, key, &deployed.arn).await?,
        "the upload bucket's notification does not send {key:?} to {}",
        deployed.arn
    );
    let event = pipeline::upload(&c.s3, &c.region, upload_bucket, key, body).await?;
    let response = invoke(api, function, event).await?;
    let record = &response["records"][0];
    ensure!(record["status"] == "completed", "{response}");
    let image_id = record["image_id"].as_str().context("image_id")?.to_string();
    let table = deployed
        .var(env::METADATA_TABLE)
        .context("function has no table variable")?;
    let item = pipeline::item(&c.ddb, table, &image_id).await?;
    ensure!(
        text(&item, imagestack_contract::table::attr::CONVERSION_STATUS).as_deref()
            == Some("completed"),
        "{item:?}"
    );
    Ok((image_id, renditions(&item)?))
}

/// Does the bucket policy give this distribution `s3:GetObject` on `key`?
fn policy_grants_cloudfront(policy: &Value, bucket: &str, key: &str, dist_arn: &str) -> bool {
    let object = format!("arn:aws:s3:::{bucket}/{key}");
    let list = |v: &Value| -> Vec<String> {
        match v {
            Value::String(s) => vec![s.clone()],
            Value::Array(a) => a
                .iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect(),
            _ => vec![],
        }
    };
    policy["Statement"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|st| {
            st["Effect"] == "Allow"
                && list(&st["Principal"]["Service"]).contains(&"cloudfront.amazonaws.com".into())
                && list(&st["Action"]).contains(&"s3:GetObject".into())
                && list(&st["Resource"])
                    .iter()
                    .any(|r| pipeline::path_matches(&format!("/{r}"), &format!("/{object}")))
                && list(&st["Condition"]["StringEquals"]["AWS:SourceArn"])
                    .contains(&dist_arn.to_string())
        })
}

/// Every recorded rendition is reachable through the CDN path the item records.
async fn assert_served_by_cdn(
    c: &Clients,
    out: &StackOutputs,
    renditions: &[Rendition],
) -> Result<()> {
    let dist_id = out.distribution_id.as_deref().context("distributionId")?;
    let dist =
        c.cf.get_distribution()
            .id(dist_id)
            .send()
            .await?
            .distribution
            .context("distribution")?;
    for r in renditions {
        let route = resolve_cdn_path(&c.cf, dist_id, &r.cdn_path).await?;
        ensure!(
            (route.bucket.as_str(), route.key.as_str()) == (r.bucket.as_str(), r.key.as_str()),
            "{}: CDN path {} routes to s3://{}/{} (behaviour {}), the item says s3://{}/{}",
            r.format,
            r.cdn_path,
            route.bucket,
            route.key,
            route.path_pattern,
            r.bucket,
            r.key
        );
        ensure!(
            route.path_pattern == r.format.cdn_path_pattern(),
            "{}: routed by {}",
            r.format,
            route.path_pattern
        );
        ensure!(
            route.uses_origin_access_control,
            "{}: origin without OAC",
            r.format
        );
        let head =
            c.s3.head_object()
                .bucket(&route.bucket)
                .key(&route.key)
                .send()
                .await
                .with_context(|| format!("{}: s3://{}/{}", r.format, route.bucket, route.key))?;
        ensure!(
            head.content_length() == Some(r.size as i64),
            "{} size",
            r.format
        );
        ensure!(head.content_type() == Some(r.format.content_type()));
        let policy =
            c.s3.get_bucket_policy()
                .bucket(&route.bucket)
                .send()
                .await?;
        let policy: Value = serde_json::from_str(policy.policy().unwrap_or("{}"))?;
        ensure!(
            policy_grants_cloudfront(&policy, &route.bucket, &route.key, dist.arn()),
            "{}: bucket policy does not let {} read {}: {policy}",
            r.format,
            dist.arn(),
            route.key
        );
    }
    Ok(())
}

/// One URL per image (issue 12): for every browser profile and several
/// widths and DPRs, the function deployed in CloudFront (its LIVE code read
/// back from the emulator, run under the Node harness) rewrites the item's
/// edge URL to an object that exists, in the format that browser should get
/// and at the width asked (never wider than the source); every `srcset`
/// candidate is that width; hostile input gets the function's own 400.
/// Returns how many requests were checked.
async fn assert_edge_serves(
    c: &Clients,
    out: &StackOutputs,
    deployed: &Deployed,
    image_id: &str,
    renditions: &[Rendition],
    widths: &[u32],
) -> Result<usize> {
    use imagestack_contract::table::attr;
    use tests::edge;
    let table = deployed.var(env::METADATA_TABLE).context("table")?;
    let item = pipeline::item(&c.ddb, table, image_id).await?;
    let url = text(&item, attr::URL).context("the item has no edge url")?;
    let prefix = out.image_url_prefix.as_deref().context("imageUrlPrefix")?;
    ensure!(url.starts_with(prefix), "url {url} is not under {prefix}");
    let host_end = prefix.len() - imagestack_contract::edge::PATH_PREFIX.len();
    let path = url[host_end..].to_string();
    let source_width = renditions
        .iter()
        .find(|r| r.full_size)
        .map(|r| r.width)
        .context("no full-size rendition")?;
    let dist_id = out.distribution_id.as_deref().context("distributionId")?;
    let cfg =
        c.cf.get_distribution_config()
            .id(dist_id)
            .send()
            .await?
            .distribution_config
            .context("distribution config")?;
    let arn = edge::viewer_request_function(&cfg, &path)?;
    let code = edge::deployed_code(&c.cf, &arn, &std::env::temp_dir().join(unique("edge"))).await?;
    let fetch = |target: edge::Target| async move {
        let body =
            c.s3.get_object()
                .bucket(&target.bucket)
                .key(&target.key)
                .send()
                .await
                .with_context(|| format!("s3://{}/{}", target.bucket, target.key))?
                .body
                .collect()
                .await?
                .into_bytes();
        anyhow::Ok(body.to_vec())
    };
    let mut checked = 0;
    let cases: [(Option<u32>, u32); 7] = [
        (None, 1),
        (Some(100), 1),
        (Some(320), 1),
        (Some(200), 2),
        (Some(321), 1),
        (Some(640), 1),
        (Some(1000), 2),
    ];
    for browser in edge::browsers()? {
        let format = edge::expected_format(&browser.accept, &Format::ALL);
        for (w, dpr) in cases {
            let query = w.map(|w| format!("w={w}&dpr={dpr}")).unwrap_or_default();
            let answer = edge::request(&code, &path, &query, &browser.accept)?;
            let target = edge::resolve(&cfg, &answer)
                .with_context(|| format!("{} {path}?{query}", browser.name))?;
            ensure!(
                target.origin_id == format!("s3-{}", format.as_str()),
                "{} {path}?{query}: origin {} (want {})",
                browser.name,
                target.origin_id,
                format.as_str()
            );
            let image = pipeline::decode(format, &fetch(target.clone()).await?)
                .with_context(|| format!("{} {path}?{query}: {target:?}", browser.name))?;
            let want = w.map_or(source_width, |w| {
                edge::expected_width(w * dpr, source_width, widths)
            });
            ensure!(
                image.width() == want,
                "{} {path}?{query}: {} px wide, want {want} ({target:?})",
                browser.name,
                image.width()
            );
            checked += 1;
        }
    }
    // An explicit format wins; hostile input is the function's own 400.
    let chrome = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8";
    let png = edge::resolve(&cfg, &edge::request(&code, &path, "f=png&w=320", chrome)?)?;
    ensure!(png.origin_id == "s3-png", "{png:?}");
    pipeline::decode(Format::Png, &fetch(png).await?)?;
    for (uri, query) in [
        (path.as_str(), "w=abc"),
        (path.as_str(), "w=-1"),
        (path.as_str(), "f=gif"),
        ("/i/600/../../webp/x", ""),
    ] {
        let a = edge::request(&code, uri, query, chrome)?;
        ensure!(
            a.status == Some(400) && a.uri.is_none(),
            "{uri}?{query}: {a:?}"
        );
        checked += 1;
    }
    // Every srcset candidate is the width it declares.
    let srcset = text(&item, attr::SRCSET).context("the item has no srcset")?;
    for candidate in srcset.split(", ") {
        let (u, descriptor) = candidate
            .rsplit_once(' ')
            .with_context(|| format!("srcset candidate {candidate:?}"))?;
        let declared: u32 = descriptor
            .strip_suffix('w')
            .context("w descriptor")?
            .parse()?;
        ensure!(u.starts_with(prefix), "{u} is not under {prefix}");
        let (p, q) = u[host_end..]
            .split_once('?')
            .unwrap_or((&u[host_end..], ""));
        let target = edge::resolve(&cfg, &edge::request(&code, p, q, chrome)?)?;
        let image = pipeline::decode(Format::Avif, &fetch(target).await?)?;
        ensure!(
            image.width() == declared,
            "srcset {candidate}: {} px",
            image.width()
        );
        checked += 1;
    }
    Ok(checked)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_is_processed_and_served_at_the_recorded_cdn_paths() -> Result<()> {
    require_env();
    let client = kube_client().await?;
    install_crd(&client).await?;
    let ns = unique("stack");
    ensure_namespace(&client, &ns).await?;
    // AWS writes logged at debug: the deletion order is read from the log.
    let op = Operator::start(
        &ns,
        "2s",
        &[("RUST_LOG", "info,imagestack_operator::aws=debug")],
    )?;
    let (ok, _, err) = kubectl(
        &["apply", "-f", "-"],
        Some(&manifest(&ns, "photos", PRODUCTION_SPEC)),
    )?;
    ensure!(ok, "{err}");
    let api: Api<ImageOptimizationStack> = Api::namespaced(client, &ns);
    let s = wait_ready(&api, "photos", READY_TIMEOUT)
        .await
        .map_err(|e| anyhow::anyhow!("{e}\n{}", op.log_text()))?;
    let components = s
        .status
        .as_ref()
        .map(|s| s.components.clone())
        .unwrap_or_default();
    let out = s.status.and_then(|s| s.outputs).context("outputs")?;
    let upload_bucket = out.upload_bucket.clone().context("uploadBucket")?;
    let function_name = out.function_name.clone().context("functionName")?;
    let c = clients().await;
    assert_production_settings(&c, &out, &function_name).await?;
    assert_alarms(&components, &format!("{ns}/photos")).await?;

    // The function as deployed: the contract's variables, pointing at this stack.
    let deployed = deployed_function(&c.lambda, &function_name).await?;
    assert_eq!(deployed.memory_mb, 2048);
    assert_eq!(
        deployed.var(env::UPLOAD_BUCKET),
        Some(upload_bucket.as_str())
    );
    assert_eq!(deployed.var(env::METADATA_TABLE), out.table_name.as_deref());
    for (f, bucket) in [
        (env::WEBP_BUCKET, &out.webp_bucket),
        (env::JPEG_BUCKET, &out.jpeg_bucket),
        (env::PNG_BUCKET, &out.png_bucket),
    ] {
        assert_eq!(deployed.var(f), bucket.as_deref(), "{f}");
    }
    assert_eq!(deployed.var(env::JPEG_QUALITY), Some("85"));

    // S3 would not invoke for other files.
    assert!(!notification_routes(&c.s3, &upload_bucket, "notes/readme.txt", &deployed.arn).await?);

    let runtime = RuntimeApi::start().await?;
    let function = Function::start_as(&runtime, &deployed)?;
    let coffee = shared_image("skimage_coffee.png")?;
    // Upper-case suffix: the seed's notification filter missed these.
    let (first_id, first) = process(
        &c,
        &runtime,
        &function,
        &deployed,
        &upload_bucket,
        "photos/Morning Coffee.PNG",
        coffee.clone(),
    )
    .await?;
    // Full size in every format, then the width variants narrower than the
    // 600-px photo (320 px in every format).
    let full: Vec<Format> = first
        .iter()
        .filter(|r| r.full_size)
        .map(|r| r.format)
        .collect();
    assert_eq!(full, Format::ALL.to_vec());
    let variants: Vec<(Format, u32)> = first
        .iter()
        .filter(|r| !r.full_size)
        .map(|r| (r.format, r.width))
        .collect();
    assert_eq!(
        variants,
        Format::ALL.iter().map(|f| (*f, 320)).collect::<Vec<_>>()
    );
    assert_served_by_cdn(&c, &out, &first).await?;
    let alpha = shared_image("jxltest_riaphotographs_alpha_500.png")?;
    let (transparent_id, transparent) = process(
        &c,
        &runtime,
        &function,
        &deployed,
        &upload_bucket,
        "photos/cut-out.png",
        alpha,
    )
    .await?;
    assert_served_by_cdn(&c, &out, &transparent).await?;
    // One URL per image: the edge picks each browser's format and width.
    let mut edge_requests = 0;
    for (id, renditions) in [(&first_id, &first), (&transparent_id, &transparent)] {
        edge_requests +=
            assert_edge_serves(&c, &out, &deployed, id, renditions, &[320, 640]).await?;
    }
    eprintln!("edge: {edge_requests} requests resolved through the deployed function");

    // A failed event: the function's on-failure destination is the stack's
    // queue; what Lambda puts there, `operator redrive` sends back, and the
    // processor handles it like the S3 event it carries.
    let queue = out.failed_event_queue.clone().context("failedEventQueue")?;
    let invoke_cfg = c
        .lambda
        .get_function_event_invoke_config()
        .function_name(&function_name)
        .send()
        .await?;
    let destination = invoke_cfg
        .destination_config()
        .and_then(|d| d.on_failure())
        .and_then(|f| f.destination())
        .unwrap_or_default();
    ensure!(
        destination.ends_with(&format!(":{queue}")),
        "on-failure destination {destination:?} is not the queue {queue}"
    );
    let event = pipeline::upload(
        &c.s3,
        &c.region,
        &upload_bucket,
        "photos/retried later.png",
        coffee.clone(),
    )
    .await?;
    let record = json!({
        "version": "1.0",
        "timestamp": "2026-12-01T10:00:00.000Z",
        "requestContext": {"requestId": "e2e", "functionArn": deployed.arn,
            "condition": "RetriesExhausted", "approximateInvokeCount": 3},
        "requestPayload": event,
        "responseContext": {"statusCode": 200, "functionError": "Unhandled"},
        "responsePayload": {"errorMessage": "DynamoDB throttled"}
    });
    let cfg = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    let sqs = imagestack_operator::aws::AwsClients::from_sdk_config(&cfg).sqs;
    let url = sqs
        .get_queue_url()
        .queue_name(&queue)
        .send()
        .await?
        .queue_url()
        .context("queue url")?
        .to_string();
    sqs.send_message()
        .queue_url(&url)
        .message_body(record.to_string())
        .send()
        .await?;
    let redrive = std::process::Command::new(operator_bin()?)
        .args(["redrive", "--namespace", &ns, "--name", "photos"])
        .output()?;
    let said = String::from_utf8_lossy(&redrive.stdout);
    ensure!(
        redrive.status.success() && said.contains("sent 1 event(s)") && said.contains("0 left"),
        "operator redrive: {said}{}",
        String::from_utf8_lossy(&redrive.stderr)
    );
    let response = invoke(&runtime, &function, record).await?;
    ensure!(
        response["records"][0]["status"] == "completed",
        "{response}"
    );
    drop(function);

    // A spec change reaches the function, and the next upload uses it.
    api.patch(
        "photos",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"processor": {"memoryMb": 3072, "quality": {"jpeg": 40}}}})),
    )
    .await?;
    let updated = poll(READY_TIMEOUT, || async {
        let d = deployed_function(&c.lambda, &function_name).await.ok()?;
        (d.memory_mb == 3072 && d.var(env::JPEG_QUALITY) == Some("40")).then_some(d)
    })
    .await
    .map_err(|e| anyhow::anyhow!("function not updated: {e}\n{}", op.log_text()))?;
    let s = wait_ready(&api, "photos", READY_TIMEOUT).await?;
    assert_eq!(
        s.status.and_then(|s| s.observed_generation),
        s.metadata.generation
    );
    let function = Function::start_as(&runtime, &updated)?;
    let (_, second) = process(
        &c,
        &runtime,
        &function,
        &updated,
        &upload_bucket,
        "photos/Morning Coffee (q40).png",
        coffee,
    )
    .await?;
    assert_served_by_cdn(&c, &out, &second).await?;
    let jpeg = |rs: &[Rendition]| rs.iter().find(|r| r.format == Format::Jpeg).map(|r| r.size);
    let (before, after) = (jpeg(&first), jpeg(&second));
    assert!(
        after.zip(before).is_some_and(|(a, b)| a * 10 < b * 8),
        "JPEG at quality 40 ({after:?} bytes) is not clearly smaller than at 85 ({before:?})"
    );
    // WebP quality did not change: the same source gives the same WebP bytes.
    let webp = |rs: &[Rendition]| rs.iter().find(|r| r.format == Format::Webp).map(|r| r.size);
    assert_eq!(webp(&first), webp(&second));
    drop(function);

    // Delete (policy Delete, buckets emptied): everything goes, in dependency order.
    api.patch(
        "photos",
        &PatchParams::default(),
        &Patch::Merge(
            json!({"spec": {"deletionPolicy": "Delete", "buckets": {"emptyOnDelete": true}}}),
        ),
    )
    .await?;
    let s = wait_ready(&api, "photos", READY_TIMEOUT).await?;
    ensure!(s.status.and_then(|s| s.observed_generation) == s.metadata.generation);
    let log_before = op.log_text().len();
    api.delete("photos", &Default::default()).await?;
    poll(Duration::from_secs(180), || async {
        matches!(api.get_opt("photos").await, Ok(None)).then_some(())
    })
    .await
    .map_err(|e| {
        anyhow::anyhow!(
            "stack not deleted (finalizer kept?): {e}\n{}",
            op.log_text()
        )
    })?;
    let writes = aws_writes(&op.log_text()[log_before..]);
    let first = |operation: &str| {
        writes
            .iter()
            .position(|w| w == operation)
            .with_context(|| format!("no {operation} during deletion: {writes:?}"))
    };
    let order = [
        "PutBucketNotificationConfiguration",
        "RemovePermission",
        "DeleteFunction",
        "DeleteRole",
    ];
    for pair in order.windows(2) {
        ensure!(
            first(pair[0])? < first(pair[1])?,
            "{pair:?} out of order: {writes:?}"
        );
    }
    // The distribution is disabled, then deleted, then its origin access control; the
    // buckets it reads from go last.
    ensure!(
        first("UpdateDistribution")? < first("DeleteDistribution")?,
        "{writes:?}"
    );
    ensure!(
        first("DeleteDistribution")? < first("DeleteOriginAccessControl")?,
        "{writes:?}"
    );
    // The four output buckets wait for the distribution (it reads them); the
    // upload bucket only for what writes through it, so it may go earlier.
    let oac = first("DeleteOriginAccessControl")?;
    ensure!(
        writes[oac..]
            .iter()
            .filter(|w| *w == "DeleteBucket")
            .count()
            >= 4,
        "output buckets deleted before the distribution and its OAC: {writes:?}"
    );
    ensure!(first("DeleteTable")? < first("DeleteBucket")?, "{writes:?}");
    ensure!(
        writes.iter().filter(|w| *w == "DeleteBucket").count() == 5,
        "{writes:?}"
    );
    first("DeleteDashboards")?;

    // And nothing is left on AWS.
    for b in [
        &out.upload_bucket,
        &out.webp_bucket,
        &out.jpeg_bucket,
        &out.png_bucket,
        &out.avif_bucket,
    ] {
        let b = b.as_deref().context("bucket output")?;
        ensure!(
            c.s3.head_bucket().bucket(b).send().await.is_err(),
            "bucket {b} still exists"
        );
    }
    ensure!(
        c.ddb
            .describe_table()
            .table_name(out.table_name.as_deref().unwrap_or_default())
            .send()
            .await
            .is_err(),
        "table still exists"
    );
    ensure!(
        c.lambda
            .get_function()
            .function_name(&function_name)
            .send()
            .await
            .is_err(),
        "function still exists"
    );
    ensure!(
        c.cf.get_distribution()
            .id(out.distribution_id.as_deref().unwrap_or_default())
            .send()
            .await
            .is_err(),
        "distribution still exists"
    );
    Ok(())
}

/// The successful AWS writes in an operator log (JSON lines, debug level for
/// `imagestack_operator::aws`), in order.
fn aws_writes(log: &str) -> Vec<String> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["message"] == "AWS write" && v["ok"] == true)
        .filter_map(|v| v["operation"].as_str().map(str::to_string))
        .collect()
}

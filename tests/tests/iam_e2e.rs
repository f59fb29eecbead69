//! The operator's IAM policy, proven: `operator iam-policy` is enough, and
//! every statement of it is needed.
//!
//! The test starts its OWN emulator instance (own run dir and port,
//! `IMAGESTACK_IAM_E2E_EMULATOR_PORT`, default 14578; the same TLS
//! certificates as the shared instance, so `SSL_CERT_FILE` trusts it), creates
//! IAM users in it while IAM is not enforced yet, then switches enforcement on
//! (`POST /moto-api/reset-auth 0`: every later request is authorised against
//! the caller's IAM policies, scripts/emulator/patches.py
//! `iam-enforcement-actions-and-resources`) and runs the operator with a
//! user's keys:
//!
//! - with exactly `operator iam-policy --account <account>`: a production-like
//!   stack reaches Ready, drift (versioning suspended, function memory
//!   changed) is repaired, and Delete removes everything (the private
//!   emulator is listed empty afterwards);
//! - for every statement of that policy (data-driven: new statements are
//!   covered without editing this test), with that statement removed: the
//!   stack goes `Stalled` with reason `AccessDenied`, and the condition
//!   message names a call whose IAM actions include one of the statement's
//!   actions. Statements needed only on deletion (emptying the buckets) are
//!   found by deleting a Ready stack that has objects.
//!
//! Other tests are not affected: the shared emulator never has enforcement on.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail, ensure};
use imagestack_operator::api::ImageOptimizationStack;
use imagestack_operator::aws::AwsClients;
use imagestack_operator::iam_policy::iam_actions;
use kube::api::Api;
use serde_json::Value;
use tests::*;

const READY_TIMEOUT: Duration = Duration::from_secs(180);

/// The production settings of issue 11 (queue, alarms, AVIF, reserved
/// concurrency, custom domain, custom TTLs: the stack's own cache policy),
/// deleted with its data.
const SPEC: &str = "environment: dev
deletionPolicy: Delete
buckets: {emptyOnDelete: true, upload: {lifecycle: {noncurrentVersionExpirationDays: 10}}}
processor: {reservedConcurrency: 5, formats: [webp, jpeg, png, avif], widths: [320, 640]}
alarms: {actions: ['arn:aws:sns:us-east-1:123456789012:photos-ops']}
cdn:
  minTtlSeconds: 60
  defaultTtlSeconds: 3600
  maxTtlSeconds: 86400
  aliases: [photos.example.com]
  certificateArn: arn:aws:acm:us-east-1:123456789012:certificate/0a1b2c3d-1111-2222-3333-444455556666";

/// Where the private emulator answers.
#[derive(Clone)]
struct Endpoint {
    endpoint: String,
    bundle: String,
}

/// The private emulator instance (stopped on drop, also when the test fails).
struct PrivateEmulator {
    run_dir: PathBuf,
    at: Endpoint,
}

impl PrivateEmulator {
    fn start() -> Result<Self> {
        let root = repo_root();
        let run_dir = root.join(".run/emulator-iam-e2e");
        std::fs::create_dir_all(&run_dir)?;
        // The shared instance's certificates: the bundle this process trusts
        // (SSL_CERT_FILE) then trusts this instance too.
        let bundle = std::env::var("SSL_CERT_FILE").context("SSL_CERT_FILE")?;
        let shared = PathBuf::from(&bundle)
            .parent()
            .map(PathBuf::from)
            .context("SSL_CERT_FILE has no directory")?;
        for f in ["ca.crt", "server.crt", "server.key"] {
            std::fs::copy(shared.join(f), run_dir.join(f))
                .with_context(|| format!("copy {f} from {}", shared.display()))?;
        }
        let port =
            std::env::var("IMAGESTACK_IAM_E2E_EMULATOR_PORT").unwrap_or_else(|_| "14578".into());
        let me = Self {
            run_dir: run_dir.clone(),
            at: Endpoint {
                endpoint: format!("https://127.0.0.1:{port}"),
                bundle,
            },
        };
        // A leftover from an interrupted run is stopped first (by its pid file).
        me.stop();
        let out = Command::new(root.join("scripts/emulator/start.sh"))
            .env("IMAGESTACK_RUN_DIR", &run_dir)
            .env("IMAGESTACK_EMULATOR_PORT", &port)
            .output()
            .context("run scripts/emulator/start.sh")?;
        ensure!(
            out.status.success(),
            "private emulator did not start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(me)
    }

    fn stop(&self) {
        let _ = Command::new(repo_root().join("scripts/emulator/stop.sh"))
            .env("IMAGESTACK_RUN_DIR", &self.run_dir)
            .output();
    }
}

impl Endpoint {
    /// Switch IAM enforcement on: every request from now on is authorised.
    fn enforce_iam(&self) -> Result<()> {
        let out = Command::new("curl")
            .args(["-sS", "--fail", "--cacert", &self.bundle, "-X", "POST"])
            .args(["-H", "Content-Type: text/plain", "--data", "0"])
            .arg(format!("{}/moto-api/reset-auth", self.endpoint))
            .output()
            .context("run curl")?;
        ensure!(
            out.status.success(),
            "reset-auth: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }

    async fn clients(&self, key: &str, secret: &str) -> AwsClients {
        let cfg = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(&self.endpoint)
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                key, secret, None, None, "iam-e2e",
            ))
            .load()
            .await;
        let mut c = AwsClients::from_sdk_config(&cfg);
        c.s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&cfg)
                .force_path_style(true)
                .build(),
        );
        c
    }
}

impl Drop for PrivateEmulator {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `operator iam-policy --account <account>`.
fn operator_policy(account: &str) -> Result<Value> {
    let out = Command::new(operator_bin()?)
        .args(["iam-policy", "--account", account])
        .output()?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// An IAM user with `policy` as its inline policy; returns its access key.
async fn user(admin: &AwsClients, name: &str, policy: &Value) -> Result<(String, String)> {
    admin.iam.create_user().user_name(name).send().await?;
    admin
        .iam
        .put_user_policy()
        .user_name(name)
        .policy_name("imagestack-operator")
        .policy_document(policy.to_string())
        .send()
        .await?;
    let k = admin.iam.create_access_key().user_name(name).send().await?;
    let k = k.access_key().context("access key")?;
    Ok((
        k.access_key_id().to_string(),
        k.secret_access_key().to_string(),
    ))
}

fn start_operator(emu: &Endpoint, ns: &str, key: &(String, String)) -> Result<Operator> {
    Operator::start(
        ns,
        "2s",
        &[
            ("AWS_ENDPOINT_URL", emu.endpoint.as_str()),
            ("AWS_ACCESS_KEY_ID", key.0.as_str()),
            ("AWS_SECRET_ACCESS_KEY", key.1.as_str()),
            ("AWS_REGION", "us-east-1"),
            ("AWS_DEFAULT_REGION", "us-east-1"),
            ("RUST_LOG", "info"),
        ],
    )
}

fn apply(ns: &str, name: &str) -> Result<()> {
    let (ok, _, err) = kubectl(&["apply", "-f", "-"], Some(&manifest(ns, name, SPEC)))?;
    ensure!(ok, "{err}");
    Ok(())
}

/// Every resource the emulator holds, by kind (the emulator is private to
/// this test, so after a delete it must hold nothing but the test's users).
async fn inventory(c: &AwsClients) -> Result<Vec<String>> {
    let mut all = Vec::new();
    let buckets = c.s3.list_buckets().send().await?;
    all.extend(
        buckets
            .buckets()
            .iter()
            .map(|b| format!("bucket {}", b.name().unwrap_or_default())),
    );
    let tables = c.dynamodb.list_tables().send().await?;
    all.extend(tables.table_names().iter().map(|t| format!("table {t}")));
    let roles = c.iam.list_roles().send().await?;
    all.extend(
        roles
            .roles()
            .iter()
            .map(|r| format!("role {}", r.role_name())),
    );
    let fns = c.lambda.list_functions().send().await?;
    all.extend(
        fns.functions()
            .iter()
            .map(|f| format!("function {}", f.function_name().unwrap_or_default())),
    );
    let queues = c.sqs.list_queues().send().await?;
    all.extend(queues.queue_urls().iter().map(|q| format!("queue {q}")));
    for cw in [&c.cloudwatch, &c.cloudwatch_global] {
        let alarms = cw.describe_alarms().send().await?;
        all.extend(
            alarms
                .metric_alarms()
                .iter()
                .map(|a| format!("alarm {}", a.alarm_name().unwrap_or_default())),
        );
    }
    let dashboards = c.cloudwatch.list_dashboards().send().await?;
    all.extend(
        dashboards
            .dashboard_entries()
            .iter()
            .map(|d| format!("dashboard {}", d.dashboard_name().unwrap_or_default())),
    );
    let dists = c.cloudfront.list_distributions().send().await?;
    all.extend(
        dists
            .distribution_list()
            .map(|l| l.items().to_vec())
            .unwrap_or_default()
            .iter()
            .map(|d| format!("distribution {}", d.id())),
    );
    let oacs = c.cloudfront.list_origin_access_controls().send().await?;
    all.extend(
        oacs.origin_access_control_list()
            .map(|l| l.items().to_vec())
            .unwrap_or_default()
            .iter()
            .map(|o| format!("origin access control {}", o.name())),
    );
    let groups = c.logs.describe_log_groups().send().await?;
    all.extend(
        groups
            .log_groups()
            .iter()
            .map(|g| format!("log group {}", g.log_group_name().unwrap_or_default())),
    );
    Ok(all)
}

async fn wait_gone(api: &Api<ImageOptimizationStack>, name: &str, op: &Operator) -> Result<()> {
    poll(READY_TIMEOUT, || async {
        matches!(api.get(name).await, Err(kube::Error::Api(e)) if e.code == 404).then_some(())
    })
    .await
    .map_err(|e| anyhow!("{name} not deleted: {e}\n{}", op.log_text()))
}

/// The stack's `Stalled=True` condition with reason `AccessDenied`, or `None`.
async fn access_denied(api: &Api<ImageOptimizationStack>, name: &str) -> Option<String> {
    let s = api.get(name).await.ok()?;
    let c = condition(&s, "Stalled")?;
    (c.status == "True" && c.reason == "AccessDenied").then(|| c.message.clone())
}

/// `service:Operation` names in `message` (the calls an error names).
fn calls_named(message: &str) -> Vec<String> {
    message
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == ':'))
        .filter(|w| {
            w.split_once(':').is_some_and(|(s, o)| {
                !s.is_empty()
                    && s.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
                    && o.chars().next().is_some_and(|c| c.is_ascii_uppercase())
            })
        })
        .map(str::to_string)
        .collect()
}

/// Does `message` name a call (or IAM action) that needs one of `actions`?
fn names_one_of(message: &str, actions: &[String]) -> bool {
    calls_named(message).iter().any(|call| {
        let needed = iam_actions(call);
        actions.iter().any(|a| {
            a.eq_ignore_ascii_case(call) || needed.iter().any(|n| n.eq_ignore_ascii_case(a))
        })
    })
}

#[test]
fn names_one_of_reads_calls_and_iam_actions() {
    let s3 = vec!["s3:ListBucket".to_string()];
    assert!(names_one_of(
        "upload-bucket: s3:HeadBucket failed: AccessDenied",
        &s3
    ));
    assert!(!names_one_of("table: dynamodb:CreateTable failed", &s3));
    let pass = vec!["iam:PassRole".to_string()];
    assert!(names_one_of(
        "function: lambda:CreateFunction failed",
        &pass
    ));
    assert!(names_one_of(
        "… not authorized to perform: iam:PassRole",
        &pass
    ));
}

/// With exactly the printed policy: Ready, drift repaired, Delete removes everything.
async fn full_policy_suffices(
    emu: &Endpoint,
    admin: &AwsClients,
    client: &kube::Client,
    key: &(String, String),
) -> Result<()> {
    let ns = unique("iam");
    ensure_namespace(client, &ns).await?;
    let op = start_operator(emu, &ns, key)?;
    apply(&ns, "photos")?;
    let api: Api<ImageOptimizationStack> = Api::namespaced(client.clone(), &ns);
    let started = Instant::now();
    // Ready, or fail at once when the stack is AccessDenied (not after the timeout).
    let s = poll(READY_TIMEOUT, || async {
        if let Some(m) = access_denied(&api, "photos").await {
            return Some(Err(m));
        }
        let s = api.get("photos").await.ok()?;
        let ready = condition(&s, "Ready").is_some_and(|c| c.status == "True")
            && s.status.as_ref()?.observed_generation == s.metadata.generation;
        ready.then_some(Ok(s))
    })
    .await
    .map_err(|e| anyhow!("not Ready: {e}\n{}", op.log_text()))?
    .map_err(|m| anyhow!("with the printed policy the stack is AccessDenied: {m}"))?;
    eprintln!(
        "iam_e2e: Ready with the printed policy in {:?}",
        started.elapsed()
    );
    let out = s.status.and_then(|s| s.outputs).context("outputs")?;
    let upload = out.upload_bucket.clone().context("uploadBucket")?;
    let function = out.function_name.clone().context("functionName")?;
    ensure!(out.failed_event_queue.is_some(), "queue output: {out:?}");

    // Drift, out of band (as the admin): versioning suspended, memory changed.
    admin
        .s3
        .put_bucket_versioning()
        .bucket(&upload)
        .versioning_configuration(
            aws_sdk_s3::types::VersioningConfiguration::builder()
                .status(aws_sdk_s3::types::BucketVersioningStatus::Suspended)
                .build(),
        )
        .send()
        .await?;
    let memory = |f: &str| {
        let f = f.to_string();
        async move {
            admin
                .lambda
                .get_function()
                .function_name(f)
                .send()
                .await
                .ok()?
                .configuration()?
                .memory_size()
        }
    };
    let deployed = memory(&function).await.context("memory")?;
    admin
        .lambda
        .update_function_configuration()
        .function_name(&function)
        .memory_size(deployed / 2)
        .send()
        .await?;
    poll(READY_TIMEOUT, || async {
        let v = admin
            .s3
            .get_bucket_versioning()
            .bucket(&upload)
            .send()
            .await
            .ok()?;
        let enabled = v.status() == Some(&aws_sdk_s3::types::BucketVersioningStatus::Enabled);
        (enabled && memory(&function).await? == deployed).then_some(())
    })
    .await
    .map_err(|e| anyhow!("drift not repaired: {e}\n{}", op.log_text()))?;

    // An object in the upload bucket: deletion must empty it (s3:DeleteObject*).
    admin
        .s3
        .put_object()
        .bucket(&upload)
        .key("photos/a.png")
        .body(b"x".to_vec().into())
        .send()
        .await?;
    ensure!(!inventory(admin).await?.is_empty());
    api.delete("photos", &Default::default()).await?;
    wait_gone(&api, "photos", &op).await?;
    let left = inventory(admin).await?;
    ensure!(left.is_empty(), "left after Delete: {left:?}");
    eprintln!(
        "iam_e2e: full policy: Ready, drift repaired, deleted in {:?}",
        started.elapsed()
    );
    Ok(())
}

/// With statement `sid` removed: Stalled/AccessDenied naming one of its actions,
/// on creation or (for statements only deletion needs) on deletion.
async fn statement_is_needed(
    emu: &Endpoint,
    client: &kube::Client,
    admin: &AwsClients,
    sid: &str,
    actions: &[String],
    key: &(String, String),
) -> Result<String> {
    let ns = unique("iam-no");
    ensure_namespace(client, &ns).await?;
    let op = start_operator(emu, &ns, key)?;
    apply(&ns, "photos")?;
    let api: Api<ImageOptimizationStack> = Api::namespaced(client.clone(), &ns);
    let ready_or_denied = poll(READY_TIMEOUT, || async {
        if let Some(m) = access_denied(&api, "photos").await {
            return Some(Err(m));
        }
        let s = api.get("photos").await.ok()?;
        let ready = condition(&s, "Ready").is_some_and(|c| c.status == "True")
            && s.status.as_ref()?.observed_generation == s.metadata.generation;
        ready.then(|| Ok(s))
    })
    .await
    .map_err(|e| {
        anyhow!(
            "without {sid}: neither Ready nor AccessDenied: {e}\n{}",
            op.log_text()
        )
    })?;
    let message = match ready_or_denied {
        Err(m) => m,
        Ok(s) => {
            // Needed only on deletion? Give every bucket an object, then delete.
            let out = s.status.and_then(|s| s.outputs).context("outputs")?;
            for b in [
                &out.upload_bucket,
                &out.webp_bucket,
                &out.jpeg_bucket,
                &out.png_bucket,
            ]
            .into_iter()
            .flatten()
            {
                admin
                    .s3
                    .put_object()
                    .bucket(b)
                    .key("a.png")
                    .body(b"x".to_vec().into())
                    .send()
                    .await?;
            }
            api.delete("photos", &Default::default()).await?;
            poll(READY_TIMEOUT, || access_denied(&api, "photos"))
                .await
                .map_err(|e| {
                    anyhow!(
                        "statement {sid} is not needed: Ready and deleting without it, no AccessDenied: {e}\n{}",
                        op.log_text()
                    )
                })?
        }
    };
    ensure!(
        names_one_of(&message, actions),
        "without {sid} ({actions:?}) the stack is AccessDenied for something else: {message}"
    );
    Ok(message)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_iam_policy_is_sufficient_and_every_statement_is_needed() -> Result<()> {
    require_env();
    let client = kube_client().await?;
    install_crd(&client).await?;
    let private = PrivateEmulator::start()?;
    let emu = private.at.clone();

    // Before enforcement: an admin user, the operator's user, and one user per
    // statement with that statement removed.
    let root = emu.clients("testing", "testing").await;
    let account = root
        .sts
        .get_caller_identity()
        .send()
        .await?
        .account()
        .context("account")?
        .to_string();
    let policy = operator_policy(&account)?;
    let admin_policy = serde_json::json!({"Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]});
    let admin_key = user(&root, "imagestack-e2e-admin", &admin_policy).await?;
    let full_key = user(&root, "imagestack-e2e-operator", &policy).await?;
    let statements = policy["Statement"].as_array().context("Statement")?.clone();
    ensure!(statements.len() > 5, "{policy}");
    let mut cases = Vec::new();
    for (i, st) in statements.iter().enumerate() {
        let sid = st["Sid"].as_str().context("Sid")?.to_string();
        let actions: Vec<String> = st["Action"]
            .as_array()
            .context("Action")?
            .iter()
            .filter_map(|a| a.as_str().map(str::to_string))
            .collect();
        let mut without = policy.clone();
        if let Some(list) = without["Statement"].as_array_mut() {
            list.remove(i);
        }
        let key = user(&root, &format!("imagestack-e2e-no-{i}"), &without).await?;
        cases.push((sid, actions, key));
    }
    emu.enforce_iam()?;
    let admin = emu.clients(&admin_key.0, &admin_key.1).await;
    // Enforcement is on: the root test keys are no IAM user's keys.
    ensure!(
        root.s3.list_buckets().send().await.is_err(),
        "IAM enforcement is not on"
    );

    full_policy_suffices(&emu, &admin, &client, &full_key).await?;

    // Every statement, in parallel (one operator per identity).
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    drop(emu);
    for (sid, actions, key) in cases {
        let emu = private.at.clone();
        let client = client.clone();
        let admin_key = admin_key.clone();
        tasks.spawn(async move {
            let admin = emu.clients(&admin_key.0, &admin_key.1).await;
            let r = statement_is_needed(&emu, &client, &admin, &sid, &actions, &key).await;
            (sid, r)
        });
    }
    let mut failures = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let (sid, r) = joined?;
        match r {
            Ok(m) => eprintln!("iam_e2e: without {sid}: AccessDenied: {m}"),
            Err(e) => failures.push(format!("{sid}: {e:#}")),
        }
    }
    eprintln!(
        "iam_e2e: {} statements each needed, checked in {:?}",
        statements.len(),
        started.elapsed()
    );
    if !failures.is_empty() {
        bail!("{}", failures.join("\n\n"));
    }
    Ok(())
}

//! Leader election end to end: two operator processes (replicas) with the same
//! `--leader-election-id` in one namespace, against the full kube-apiserver
//! (`FULL=1 ../shared/envtest/start.sh`: Leases, RBAC, ServiceAccount tokens)
//! and the AWS emulator. Short durations keep them fast: lease 6 s, renew
//! deadline 4 s, retry period 1 s.
//!
//! (a) SIGKILL the leader: the standby takes over once the Lease has expired
//!     for it, and reconciles a spec change within lease duration + a few seconds.
//! (b) The leader loses the right to update its Lease (its RoleBinding is
//!     deleted) while it is busy writing to AWS: it fences its AWS writes at its
//!     renew deadline and exits, before its Lease expires for the standby; the
//!     two replicas' AWS write logs do not overlap in time.
//! (c) SIGTERM: the leader stops its controller and releases the Lease, and the
//!     standby takes over in about one retry period, well under the lease duration.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail, ensure};
use imagestack_operator::api::ImageOptimizationStack;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};
use tests::*;

/// Name of the Lease both replicas compete for.
const LEASE: &str = "imagestack";
const LEASE_DURATION: Duration = Duration::from_secs(6);
const RENEW_DEADLINE: Duration = Duration::from_secs(4);
const RETRY_PERIOD: Duration = Duration::from_secs(1);
const READY_TIMEOUT: Duration = Duration::from_secs(180);

/// The tests measure handover times: run them one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Client and a fresh namespace; `None` (skip) only when the CRD-only API
/// server was chosen explicitly.
async fn setup() -> Option<(kube::Client, String)> {
    require_env();
    if !api_server_has_leases() {
        if std::env::var("IMAGESTACK_API_SERVER").as_deref() == Ok("crd") {
            eprintln!(
                "SKIPPED: leader election needs the Lease API, and IMAGESTACK_API_SERVER=crd chose the CRD-only server"
            );
            return None;
        }
        panic!(
            "the leader-election tests need an API server with the coordination.k8s.io Lease API: \
             `FULL=1 ../shared/envtest/start.sh` (IMAGESTACK_API_SERVER=crd skips them)"
        );
    }
    let client = kube_client().await.unwrap();
    install_crd(&client).await.unwrap();
    let ns = unique("leader");
    ensure_namespace(&client, &ns).await.unwrap();
    Some((client, ns))
}

/// One replica: the operator watching `ns`, competing for the shared Lease,
/// with AWS writes logged (debug) and, if given, a ServiceAccount's kubeconfig.
fn replica(ns: &str, kubeconfig: Option<&PathBuf>) -> Result<Operator> {
    let lease = format!("{}s", LEASE_DURATION.as_secs());
    let renew = format!("{}s", RENEW_DEADLINE.as_secs());
    let retry = format!("{}s", RETRY_PERIOD.as_secs());
    let mut args = vec![
        "--leader-election=true",
        "--leader-election-namespace",
        ns,
        "--leader-election-id",
        LEASE,
        "--leader-election-lease-duration",
        &lease,
        "--leader-election-renew-deadline",
        &renew,
        "--leader-election-retry-period",
        &retry,
        // Both replicas are one installation (a ServiceAccount here may not read kube-system).
        "--cluster-id",
        ns,
    ];
    let kc;
    if let Some(path) = kubeconfig {
        kc = path.display().to_string();
        args.extend(["--kubeconfig", &kc]);
    }
    Operator::start_with(
        ns,
        "10m",
        &[("RUST_LOG", "info,imagestack_operator::aws=debug")],
        &args,
    )
}

/// The replica's `imagestack_leader` gauge; `None` until it serves metrics.
async fn leads(op: &Operator) -> Option<bool> {
    let text = op.metrics().await.ok()?;
    let line = text.lines().find(|l| l.starts_with("imagestack_leader "))?;
    Some(line.rsplit(' ').next()? == "1")
}

/// Wait until `op` reports `leader`; returns how long that took.
async fn wait_leads(op: &Operator, leader: bool, timeout: Duration) -> Result<Duration> {
    let start = Instant::now();
    poll(timeout, || async {
        (leads(op).await == Some(leader)).then_some(())
    })
    .await
    .map_err(|e| anyhow!("imagestack_leader never {leader}: {e}\n{}", op.log_text()))?;
    Ok(start.elapsed())
}

/// The Lease's holder.
async fn holder(client: &kube::Client, ns: &str) -> Option<String> {
    let api: Api<Lease> = Api::namespaced(client.clone(), ns);
    api.get(LEASE).await.ok()?.spec?.holder_identity
}

/// A JSON log line: its timestamp and fields.
struct Line {
    at: Timestamp,
    v: Value,
}

fn lines(op: &Operator) -> Vec<Line> {
    op.log_text()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| {
            let at = v["timestamp"].as_str()?.parse::<Timestamp>().ok()?;
            Some(Line { at, v })
        })
        .collect()
}

fn with_message<'a>(lines: &'a [Line], message: &str) -> Vec<&'a Line> {
    lines.iter().filter(|l| l.v["message"] == message).collect()
}

/// The identity a replica acquired the Lease with.
fn identity(op: &Operator) -> Option<String> {
    let lines = lines(op);
    let l = with_message(&lines, "acquired leadership")
        .into_iter()
        .next()?;
    l.v["identity"].as_str().map(str::to_string)
}

fn apply_stack(ns: &str, name: &str) -> Result<()> {
    let (ok, out, err) = kubectl(
        &["apply", "-f", "-"],
        Some(&manifest(ns, name, "environment: dev")),
    )?;
    ensure!(ok, "{out}{err}");
    Ok(())
}

fn secs(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

fn between(a: Timestamp, b: Timestamp) -> String {
    let d = b.duration_since(a);
    format!("{:+.2}s", d.as_secs_f64())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_leader_is_replaced_after_the_lease_expires() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let Some((client, ns)) = setup().await else {
        return Ok(());
    };
    let mut a = replica(&ns, None)?;
    wait_leads(&a, true, Duration::from_secs(30)).await?;
    let b = replica(&ns, None)?;
    wait_leads(&b, false, Duration::from_secs(30)).await?;
    apply_stack(&ns, "photos")?;
    let api: Api<ImageOptimizationStack> = Api::namespaced(client.clone(), &ns);
    let s = wait_ready(&api, "photos", READY_TIMEOUT)
        .await
        .map_err(|e| anyhow!("{e}\n{}", a.log_text()))?;
    let function = s
        .status
        .and_then(|s| s.outputs)
        .and_then(|o| o.function_name)
        .context("functionName")?;
    ensure!(leads(&b).await == Some(false), "two leaders");
    ensure!(holder(&client, &ns).await == identity(&a));

    // SIGKILL: no release, no last words. The spec changes at the same moment.
    let killed = Instant::now();
    a.kill();
    api.patch(
        "photos",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"processor": {"memoryMb": 3072}}})),
    )
    .await?;
    let took_over = wait_leads(&b, true, LEASE_DURATION + Duration::from_secs(10)).await?;
    let cfg = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    let lambda = aws_sdk_lambda::Client::new(&cfg);
    poll(LEASE_DURATION + Duration::from_secs(15), || async {
        let d = pipeline::deployed_function(&lambda, &function).await.ok()?;
        (d.memory_mb == 3072).then_some(())
    })
    .await
    .map_err(|e| anyhow!("the spec change never reached AWS: {e}\n{}", b.log_text()))?;
    let reconciled = killed.elapsed();
    println!(
        "SIGKILL of the leader: the standby led after {}, the spec change was on AWS after {} (lease duration {})",
        secs(took_over),
        secs(reconciled),
        secs(LEASE_DURATION)
    );
    wait_ready(&api, "photos", Duration::from_secs(60))
        .await
        .map_err(|e| anyhow!("{e}\n{}", b.log_text()))?;
    ensure!(holder(&client, &ns).await == identity(&b));
    // The standby waited for the Lease to expire as it observed it (it saw the
    // last renewal at most ~2 retry periods before the kill) …
    ensure!(
        took_over >= LEASE_DURATION - 2 * RETRY_PERIOD - Duration::from_millis(500),
        "the standby took over {} after the kill, before the Lease could have expired",
        secs(took_over)
    );
    // … and not much longer.
    ensure!(
        reconciled <= LEASE_DURATION + Duration::from_secs(5),
        "spec change reconciled {} after the kill (lease duration {})",
        secs(reconciled),
        secs(LEASE_DURATION)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_releases_the_lease_at_once() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let Some((client, ns)) = setup().await else {
        return Ok(());
    };
    let mut a = replica(&ns, None)?;
    wait_leads(&a, true, Duration::from_secs(30)).await?;
    let b = replica(&ns, None)?;
    wait_leads(&b, false, Duration::from_secs(30)).await?;
    apply_stack(&ns, "photos")?;
    let api: Api<ImageOptimizationStack> = Api::namespaced(client.clone(), &ns);
    wait_ready(&api, "photos", READY_TIMEOUT)
        .await
        .map_err(|e| anyhow!("{e}\n{}", a.log_text()))?;

    a.terminate()?;
    let took_over = wait_leads(&b, true, LEASE_DURATION * 2).await?;
    let status = a.wait_exit(Duration::from_secs(10)).await?;
    println!(
        "SIGTERM of the leader: the standby led after {} (lease duration {})",
        secs(took_over),
        secs(LEASE_DURATION)
    );
    ensure!(status.success(), "graceful shutdown exited with {status}");
    ensure!(
        a.log_text().contains("released the Lease"),
        "{}",
        a.log_text()
    );
    // One retry period of the standby (+20 % jitter) and a little slack: had the
    // Lease not been released, the standby would wait ~a whole lease duration.
    ensure!(
        took_over < Duration::from_millis(2500),
        "the standby took over {} after SIGTERM: the Lease was not released",
        secs(took_over)
    );
    ensure!(holder(&client, &ns).await == identity(&b));

    // The new leader reconciles.
    api.patch(
        "photos",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"processor": {"memoryMb": 3584}}})),
    )
    .await?;
    wait_ready(&api, "photos", Duration::from_secs(30))
        .await
        .map_err(|e| anyhow!("{e}\n{}", b.log_text()))?;
    Ok(())
}

/// ServiceAccounts `op-a` and `op-b`, each bound to the chart's operator rules
/// (`operator-<x>`) and to the Lease rules (`leader-election-<x>`).
fn rbac(ns: &str) -> Result<()> {
    let mut yaml = format!(
        r#"apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: operator, namespace: {ns}}}
rules:
  - apiGroups: ["imagestack.dev"]
    resources: ["imagestacks"]
    verbs: ["get", "list", "watch", "patch", "update"]
  - apiGroups: ["imagestack.dev"]
    resources: ["imagestacks/status"]
    verbs: ["get", "patch", "update"]
  - apiGroups: ["imagestack.dev"]
    resources: ["imagestacks/finalizers"]
    verbs: ["update"]
  - apiGroups: ["", "events.k8s.io"]
    resources: ["events"]
    verbs: ["create", "patch"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: leader-election, namespace: {ns}}}
rules:
  - apiGroups: ["coordination.k8s.io"]
    resources: ["leases"]
    verbs: ["create"]
  - apiGroups: ["coordination.k8s.io"]
    resources: ["leases"]
    resourceNames: ["{LEASE}"]
    verbs: ["get", "update"]
"#
    );
    for x in ["a", "b"] {
        for role in ["operator", "leader-election"] {
            yaml.push_str(&format!(
                r#"---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: {role}-{x}, namespace: {ns}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: {role}}}
subjects: [{{kind: ServiceAccount, name: op-{x}, namespace: {ns}}}]
"#
            ));
        }
        yaml.push_str(&format!(
            "---\napiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: op-{x}, namespace: {ns}}}\n"
        ));
    }
    let (ok, out, err) = kubectl(&["apply", "-f", "-"], Some(&yaml))?;
    ensure!(ok, "{out}{err}");
    Ok(())
}

/// A kubeconfig that authenticates as ServiceAccount `sa` (a minted token),
/// so that RBAC applies to every call.
fn sa_kubeconfig(ns: &str, sa: &str) -> Result<PathBuf> {
    let view = |path: &str| -> Result<String> {
        let (ok, out, err) = kubectl(
            &[
                "config",
                "view",
                "--raw",
                "--minify",
                "-o",
                &format!("jsonpath={{{path}}}"),
            ],
            None,
        )?;
        ensure!(ok && !out.is_empty(), "kubectl config view {path}: {err}");
        Ok(out)
    };
    let server = view(".clusters[0].cluster.server")?;
    let ca = view(".clusters[0].cluster.certificate-authority-data")?;
    let (ok, token, err) = kubectl(&["create", "token", sa, "-n", ns, "--duration", "1h"], None)?;
    ensure!(ok, "kubectl create token {sa}: {err}");
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\nusers:\n- name: {sa}\n  user:\n    token: {}\ncontexts:\n- name: c\n  context: {{cluster: c, user: {sa}, namespace: {ns}}}\ncurrent-context: c\n",
        token.trim()
    );
    let dir = repo_root().join(".run/test-logs");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("kubeconfig-{ns}-{sa}"));
    std::fs::write(&path, text)?;
    Ok(path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_that_cannot_renew_stops_writing_before_its_lease_expires() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let Some((client, ns)) = setup().await else {
        return Ok(());
    };
    rbac(&ns)?;
    let (kc_a, kc_b) = (sa_kubeconfig(&ns, "op-a")?, sa_kubeconfig(&ns, "op-b")?);
    let mut a = replica(&ns, Some(&kc_a))?;
    wait_leads(&a, true, Duration::from_secs(30)).await?;
    let b = replica(&ns, Some(&kc_b))?;
    wait_leads(&b, false, Duration::from_secs(30)).await?;

    // Keep the leader busy: four stacks at once (it reconciles four in parallel) …
    let names = ["s1", "s2", "s3", "s4"];
    for n in names {
        apply_stack(&ns, n)?;
    }
    poll(Duration::from_secs(60), || async {
        (a.aws_writes().await.ok()? >= 8.0).then_some(())
    })
    .await
    .map_err(|e| anyhow!("the leader did not start writing: {e}\n{}", a.log_text()))?;
    // … and keep changing their tags (every resource is re-tagged) until the end,
    // so that whoever leads always has AWS writes to make.
    let api: Api<ImageOptimizationStack> = Api::namespaced(client.clone(), &ns);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let churn = tokio::spawn({
        let (api, stop) = (api.clone(), stop.clone());
        async move {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let patch = json!({"spec": {"tags": {"rev": n.to_string()}}});
                let _ = api
                    .patch(
                        names[n as usize % names.len()],
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await;
                n += 1;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    });

    // Take away its right to update the Lease, mid-reconcile.
    let revoked_at = Timestamp::now();
    let (ok, _, err) = kubectl(
        &["delete", "rolebinding", "leader-election-a", "-n", &ns],
        None,
    )?;
    ensure!(ok, "{err}");
    let took_over = wait_leads(&b, true, LEASE_DURATION + Duration::from_secs(10)).await;
    // Let the new leader write for a while, then let everything settle.
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    churn.await?;
    let exit = a.wait_exit(Duration::from_secs(1)).await.ok();
    let (la, lb) = (lines(&a), lines(&b));
    a.kill();
    took_over?;

    // What each replica sent to AWS, and when (both logs are on this machine's clock).
    let sent = |lines: &[Line]| -> Vec<Timestamp> {
        with_message(lines, "AWS write sent")
            .iter()
            .map(|l| l.at)
            .collect()
    };
    let (a_sent, b_sent) = (sent(&la), sent(&lb));
    let a_done: Vec<Timestamp> = with_message(&la, "AWS write")
        .iter()
        .map(|l| l.at)
        .collect();
    let b_first = *b_sent.first().context("the new leader wrote nothing")?;
    let a_last_sent = *a_sent.last().context("the old leader wrote nothing")?;
    let a_last_line = la.last().map(|l| l.at).context("empty log")?;
    let acquired_b = with_message(&lb, "acquired leadership")
        .first()
        .map(|l| l.at)
        .context("the standby never acquired")?;
    let fence = la.iter().find(|l| {
        l.v["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("stopped leading"))
    });
    let after_revoke = a_sent.iter().filter(|t| **t > revoked_at).count();
    let refused = with_message(&la, "AWS write refused: fenced").len();
    println!(
        "RoleBinding deleted at 0: the old leader sent {after_revoke} more AWS writes, its last at {}, fenced at {} ({refused} writes refused), exited at {}; \
         the standby acquired at {} and sent its first write at {} (lease duration {}, renew deadline {})",
        between(revoked_at, a_last_sent),
        fence.map_or("never".into(), |f| between(revoked_at, f.at)),
        exit.map_or("never".into(), |_| between(revoked_at, a_last_line)),
        between(revoked_at, acquired_b),
        between(revoked_at, b_first),
        secs(LEASE_DURATION),
        secs(RENEW_DEADLINE),
    );
    ensure!(
        after_revoke > 0,
        "the leader was not writing when it lost the Lease"
    );
    // No write from two replicas in overlapping windows: every write the old
    // leader sent had been answered, and the process was gone, before the new
    // leader sent its first.
    let a_end = a_done
        .iter()
        .chain([&a_last_sent])
        .max()
        .copied()
        .unwrap_or(a_last_sent);
    ensure!(
        a_end < b_first,
        "the replicas' AWS writes overlap: the old leader wrote until {}, the new leader from {}",
        between(revoked_at, a_end),
        between(revoked_at, b_first)
    );
    let status = exit.with_context(|| format!("the old leader did not exit:\n{}", a.log_text()))?;
    ensure!(!status.success(), "the fenced leader exited with {status}");
    ensure!(
        a_last_line < b_first,
        "the old leader was still running ({}) when the new leader wrote ({})",
        between(revoked_at, a_last_line),
        between(revoked_at, b_first)
    );
    // It fenced at its renew deadline: before the Lease expired for the standby …
    let fence = fence.with_context(|| format!("the old leader never fenced:\n{}", a.log_text()))?;
    let fenced_at = fence.at;
    let reason = fence.v["reason"].as_str().unwrap_or_default();
    ensure!(
        reason.contains("renew deadline"),
        "fenced because: {reason}"
    );
    ensure!(
        fenced_at < acquired_b,
        "the old leader fenced at {} but the standby acquired at {}",
        between(revoked_at, fenced_at),
        between(revoked_at, acquired_b)
    );
    ensure!(
        fenced_at.duration_since(revoked_at) <= (RENEW_DEADLINE + RETRY_PERIOD).try_into()?,
        "the old leader fenced {} after losing the Lease (renew deadline {})",
        between(revoked_at, fenced_at),
        secs(RENEW_DEADLINE)
    );
    // … and nothing left it after the fence closed.
    ensure!(
        a_sent.iter().all(|t| *t < fenced_at),
        "the old leader sent AWS writes after it fenced"
    );
    // The new leader converges every stack.
    for n in names {
        wait_ready(&api, n, READY_TIMEOUT)
            .await
            .map_err(|e| anyhow!("{n}: {e}\n{}", b.log_text()))?;
    }
    if b_sent.iter().any(|t| *t < acquired_b) {
        bail!("the standby wrote to AWS before it acquired the Lease");
    }
    Ok(())
}

//! Shared harness for the end-to-end tests and benchmarks: a real Kubernetes
//! API server from `KUBECONFIG` (../shared/envtest or kind), the AWS emulator
//! from `AWS_ENDPOINT_URL`, and the operator binary run as a process.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use imagestack_operator::api::ImageOptimizationStack;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};

/// Root of the repository.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

/// Fail with a clear message when the environment the tests need is missing.
pub fn require_env() {
    for (var, hint) in [
        (
            "KUBECONFIG",
            "a Kubernetes API server: `export KUBECONFIG=$(../shared/envtest/start.sh)` or a kind cluster",
        ),
        (
            "AWS_ENDPOINT_URL",
            "the AWS emulator: `. $(scripts/emulator/start.sh)`",
        ),
    ] {
        assert!(
            std::env::var(var).is_ok(),
            "{var} is not set: the end-to-end tests need {hint}. `./scripts/test` sets up both."
        );
    }
}

/// A unique, DNS-safe name: prefix, time, process and a per-process counter.
pub fn unique(prefix: &str) -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let c = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    format!("{prefix}-{}-{}-{c}", n % 100_000_000, std::process::id())
}

/// Kubernetes client from `KUBECONFIG`.
pub async fn kube_client() -> Result<Client> {
    Client::try_default()
        .await
        .context("kube client from KUBECONFIG")
}

/// Install (server-side apply) the CRD from `crds/` and wait until it is established.
pub async fn install_crd(client: &Client) -> Result<()> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let text = std::fs::read_to_string(repo_root().join("crds/imagestack.dev_imagestacks.yaml"))?;
    let crd: CustomResourceDefinition = serde_norway::from_str(&text)?;
    let name = crd.name_any();
    api.patch(
        &name,
        &PatchParams::apply("imagestack-tests").force(),
        &Patch::Apply(&crd),
    )
    .await?;
    poll(Duration::from_secs(30), || async {
        let c = api.get(&name).await.ok()?;
        let established = c
            .status?
            .conditions?
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True");
        established.then_some(())
    })
    .await
    .context("CRD not established")
}

/// Create `ns` on clusters that have Namespaces (kind, real clusters). The
/// envtest API server has no core group and accepts any namespace name, so a
/// 404 there is fine.
pub async fn ensure_namespace(client: &Client, ns: &str) -> Result<()> {
    use k8s_openapi::api::core::v1::Namespace;
    let api: Api<Namespace> = Api::all(client.clone());
    let obj = Namespace {
        metadata: kube::api::ObjectMeta {
            name: Some(ns.to_string()),
            ..Default::default()
        },
        ..Default::default()
    };
    match api.create(&Default::default(), &obj).await {
        Ok(_) => Ok(()),
        // code 0: the envtest server answers 404 with a plain-text body kube cannot parse.
        Err(kube::Error::Api(s)) if matches!(s.code, 0 | 404 | 409) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Poll `f` every 100 ms until it returns `Some`, or fail after `timeout`.
pub async fn poll<T, F, Fut>(timeout: Duration, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return Ok(v);
        }
        if start.elapsed() > timeout {
            bail!("condition not met within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A workspace binary: `$env_var` if set, else `name` next to this
/// executable's target directory (a test runs from target/<profile>/deps/, a
/// bin such as the benchmarks from target/<profile>/).
pub fn workspace_bin(name: &str, env_var: &str, build_hint: &str) -> Result<PathBuf> {
    if let Ok(p) = std::env::var(env_var) {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe()?;
    let candidates: Vec<PathBuf> = exe
        .ancestors()
        .skip(1)
        .take(2)
        .map(|d| d.join(name))
        .collect();
    let Some(bin) = candidates.iter().find(|p| p.is_file()).cloned() else {
        bail!("{name} binary not found at {candidates:?}: {build_hint} (or set {env_var})");
    };
    Ok(bin)
}

/// The operator binary (`IMAGESTACK_OPERATOR_BIN`, else the workspace build).
pub fn operator_bin() -> Result<PathBuf> {
    workspace_bin(
        "operator",
        "IMAGESTACK_OPERATOR_BIN",
        "build it first with `cargo build -p imagestack-operator` (./scripts/test does)",
    )
}

/// Directory of the processor artifact the operator deploys in tests: the
/// shipped zips when `IMAGESTACK_SHIPPED_ZIPS` is set ([`pipeline::shipped_zips`]),
/// else `IMAGESTACK_ARTIFACT_DIR`, else `.run/artifacts` (made by scripts/dev-artifacts.sh).
pub fn artifact_dir() -> PathBuf {
    if let Some(dir) = pipeline::shipped_zips() {
        return dir;
    }
    std::env::var("IMAGESTACK_ARTIFACT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo_root().join(".run/artifacts"))
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// Whether the API server of `KUBECONFIG` serves the coordination.k8s.io Lease
/// API (the full kube-apiserver, kind, a real cluster) or not (the CRD-only
/// envtest server). `IMAGESTACK_API_SERVER=full` or `=crd` (set by the
/// scripts) says so without asking; otherwise discovery is asked once.
pub fn api_server_has_leases() -> bool {
    has_leases(None)
}

/// [`api_server_has_leases`] for the API server of `kubeconfig` (`None`:
/// `KUBECONFIG`), asked once per kubeconfig and test process.
fn has_leases(kubeconfig: Option<&str>) -> bool {
    static CACHE: std::sync::OnceLock<
        std::sync::Mutex<std::collections::HashMap<Option<String>, bool>>,
    > = std::sync::OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let key = kubeconfig.map(str::to_string);
    if let Some(known) = cache.lock().ok().and_then(|c| c.get(&key).copied()) {
        return known;
    }
    let env = std::env::var("IMAGESTACK_API_SERVER");
    let has = match (kubeconfig, env.as_deref()) {
        (None, Ok("full")) => true,
        (None, Ok("crd")) => false,
        _ => {
            let mut args = vec![];
            if let Some(k) = kubeconfig {
                args.extend(["--kubeconfig", k]);
            }
            args.extend(["get", "--raw", "/apis/coordination.k8s.io/v1"]);
            kubectl(&args, None)
                .map(|(ok, out, _)| ok && out.contains("\"leases\""))
                .unwrap_or(false)
        }
    };
    if let Ok(mut c) = cache.lock() {
        c.insert(key, has);
    }
    has
}

/// The operator running as a child process (killed on drop).
pub struct Operator {
    child: Child,
    pub metrics_port: u16,
    pub log: PathBuf,
}

impl Operator {
    /// Start `operator run` watching `namespace`, with extra env vars. Leader
    /// election is on, as in a cluster, when its API server (`KUBECONFIG`,
    /// from `env` if set there) has the Lease API ([`api_server_has_leases`]):
    /// with a Lease of its own in `namespace`, so
    /// that a test which restarts the operator (or crashes it on purpose) never
    /// waits for a dead process's Lease to expire. It is off on the CRD-only
    /// envtest server, which has no Lease API.
    pub fn start(namespace: &str, resync: &str, env: &[(&str, &str)]) -> Result<Self> {
        Self::start_with(namespace, resync, env, &[])
    }

    /// [`Operator::start`] with extra arguments for `operator run`. When they
    /// contain any `--leader-election…` flag, the caller decides leader
    /// election entirely (e.g. two replicas sharing one Lease).
    pub fn start_with(
        namespace: &str,
        resync: &str,
        env: &[(&str, &str)],
        extra_args: &[&str],
    ) -> Result<Self> {
        let port = free_port()?;
        let log_dir = repo_root().join(".run/test-logs");
        std::fs::create_dir_all(&log_dir)?;
        static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let log = log_dir.join(format!("operator-{namespace}-{run:03}-{port}.log"));
        let file = std::fs::File::create(&log)?;
        let mut cmd = Command::new(operator_bin()?);
        cmd.args([
            "run",
            "--namespace",
            namespace,
            "--resync-interval",
            resync,
            "--metrics-addr",
            &format!("127.0.0.1:{port}"),
            "--log-format",
            "json",
            "--processor-artifact-dir",
        ])
        .arg(artifact_dir());
        if !extra_args
            .iter()
            .any(|a| a.starts_with("--leader-election"))
        {
            let kubeconfig = env
                .iter()
                .find(|(k, _)| *k == "KUBECONFIG")
                .map(|(_, v)| *v);
            if has_leases(kubeconfig) {
                cmd.args([
                    "--leader-election=true",
                    "--leader-election-namespace",
                    namespace,
                    "--leader-election-id",
                    &format!("imagestack-{}-{run}", std::process::id()),
                ]);
            } else {
                cmd.arg("--leader-election=false");
            }
        }
        cmd.args(extra_args)
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().context("spawn operator")?;
        Ok(Self {
            child,
            metrics_port: port,
            log,
        })
    }

    /// Send SIGTERM (graceful shutdown), without waiting.
    pub fn terminate(&self) -> Result<()> {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .context("run kill")?;
        if !status.success() {
            bail!("kill -TERM {} failed: {status}", self.child.id());
        }
        Ok(())
    }

    /// Wait until the operator has finished `n` more reconciles than now.
    pub async fn wait_reconciles(&self, n: f64, timeout: Duration) -> Result<()> {
        let before = self.metric_sum("imagestack_reconciles_total", &[]).await?;
        poll(timeout, || async {
            let now = self
                .metric_sum("imagestack_reconciles_total", &[])
                .await
                .ok()?;
            (now >= before + n).then_some(())
        })
        .await
    }

    /// Wait until the process exits by itself (e.g. the crash hook), bounded.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        let child = &mut self.child;
        poll(timeout, || {
            let r = child.try_wait().ok().flatten();
            async move { r }
        })
        .await
    }

    /// The exit status if the process has exited (does not wait).
    pub fn try_exit(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Peak resident set size in KiB (VmHWM from /proc), Linux only.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    }

    /// User + system CPU seconds the process has used so far (/proc), Linux only.
    pub fn cpu_seconds(&self) -> Option<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).ok()?;
        // Fields after the command name (which is in parentheses and may contain spaces).
        let rest = stat.rsplit_once(')')?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name.
        let ticks: f64 =
            fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
        Some(ticks / 100.0)
    }

    /// Kill the process (SIGKILL) and reap it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The operator's log so far (for assertion messages).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Scrape `/metrics`.
    pub async fn metrics(&self) -> Result<String> {
        let port = self.metrics_port;
        let text = tokio::task::spawn_blocking(move || http_get(port, "/metrics")).await??;
        Ok(text)
    }

    /// Sum of a metric's samples whose label set contains all `labels`.
    pub async fn metric_sum(&self, name: &str, labels: &[&str]) -> Result<f64> {
        let text = self.metrics().await?;
        Ok(sum_metric(&text, name, labels))
    }

    /// Total mutating AWS calls so far (operations not starting with Get/List/Head/Describe).
    pub async fn aws_writes(&self) -> Result<f64> {
        let text = self.metrics().await?;
        Ok(text
            .lines()
            .filter(|l| l.starts_with("imagestack_aws_calls_total{"))
            .filter(|l| {
                l.split("operation=\"")
                    .nth(1)
                    .and_then(|s| s.split('"').next())
                    .is_some_and(imagestack_operator::aws::is_mutating)
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .fold(0.0, |a, b| a + b))
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Sum the samples of `name` whose labels contain every `labels` fragment.
pub fn sum_metric(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| {
            l.starts_with(name)
                && (l[name.len()..].starts_with('{') || l[name.len()..].starts_with(' '))
        })
        .filter(|l| labels.iter().all(|f| l.contains(f)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn http_get(port: u16, path: &str) -> Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default())
}

/// Run kubectl with `args` (and optional stdin); returns (success, stdout, stderr).
pub fn kubectl(args: &[&str], stdin: Option<&str>) -> Result<(bool, String, String)> {
    use std::io::Write;
    let mut child = Command::new("kubectl")
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("run kubectl (is it on PATH?)")?;
    if let (Some(input), Some(mut si)) = (stdin, child.stdin.take()) {
        si.write_all(input.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// A stack manifest in `namespace`.
pub fn manifest(namespace: &str, name: &str, spec_yaml: &str) -> String {
    let mut out = format!(
        "apiVersion: imagestack.dev/v1alpha1\nkind: ImageOptimizationStack\nmetadata:\n  name: {name}\n  namespace: {namespace}\nspec:\n"
    );
    for line in spec_yaml.lines() {
        out.push_str("  ");
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Status of condition `type_` of a stack.
pub fn condition<'a>(
    s: &'a ImageOptimizationStack,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    s.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
}

/// Wait until the stack's `Ready` condition is `True` for its current generation.
pub async fn wait_ready(
    api: &Api<ImageOptimizationStack>,
    name: &str,
    timeout: Duration,
) -> Result<ImageOptimizationStack> {
    let last = std::sync::Mutex::new(None);
    let r = poll(timeout, || async {
        let s = api.get(name).await.ok()?;
        let ready = condition(&s, "Ready").is_some_and(|c| c.status == "True")
            && s.status.as_ref()?.observed_generation == s.metadata.generation;
        if let Ok(mut l) = last.lock() {
            *l = s.status.clone();
        }
        ready.then_some(s)
    })
    .await;
    r.map_err(|e| {
        anyhow!(
            "{e}; last status: {:?}",
            last.lock().ok().and_then(|l| l.clone())
        )
    })
}

/// Wait until the stack is `Stalled` with `reason`; returns the condition's message.
pub async fn wait_stalled(
    api: &Api<ImageOptimizationStack>,
    name: &str,
    reason: &str,
    timeout: Duration,
) -> Result<String> {
    poll(timeout, || async {
        let s = api.get(name).await.ok()?;
        let c = condition(&s, "Stalled")?;
        (c.status == "True" && c.reason == reason).then(|| c.message.clone())
    })
    .await
    .map_err(|e| anyhow!("{name} never Stalled/{reason}: {e}"))
}

/// AWS clients from the environment (the emulator in tests).
pub async fn aws() -> (
    aws_sdk_s3::Client,
    aws_sdk_dynamodb::Client,
    aws_sdk_iam::Client,
) {
    let cfg = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    let s3 = aws_sdk_s3::config::Builder::from(&cfg)
        .force_path_style(cfg.endpoint_url().is_some())
        .build();
    (
        aws_sdk_s3::Client::from_conf(s3),
        aws_sdk_dynamodb::Client::new(&cfg),
        aws_sdk_iam::Client::new(&cfg),
    )
}
pub mod edge;
pub mod lambda_runtime_api;
pub mod pipeline;

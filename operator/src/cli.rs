//! Command line: `operator run` (the controller), `operator crd`,
//! `operator redrive`, `operator iam-policy` and `operator edge-function`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::events::Reporter;
use kube::{Client, Config};

use crate::aws::{AwsFactory, CallStats};
use crate::controller::{self, Context, RunOptions};
use crate::error::{Error, Result};
use crate::leader::{self, ElectionConfig, Timings};
use crate::metrics::{self, Metrics};

/// `operator --version`: the package version; test builds with the `crash-hook`
/// feature say so (the shipped binary never has it).
#[cfg(not(feature = "crash-hook"))]
const VERSION: &str = env!("CARGO_PKG_VERSION");
#[cfg(feature = "crash-hook")]
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (test build: crash-hook)");

/// imagestack: a Kubernetes operator that turns ImageOptimizationStack
/// resources into AWS image-optimization stacks (S3 upload and output buckets,
/// DynamoDB metadata table, IAM role, processor Lambda, CloudFront, dashboard).
#[derive(Parser, Debug)]
#[command(name = "operator", version = VERSION, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the controller: watch ImageOptimizationStacks and reconcile them on AWS.
    ///
    /// Kubernetes: --kubeconfig, else $KUBECONFIG, else ~/.kube/config, else the
    /// in-cluster service account. AWS: the default credential chain
    /// (environment, web identity/IRSA, EKS Pod Identity, profile, IMDS), region
    /// from --aws-region or the environment, AWS_ENDPOINT_URL honoured (for
    /// LocalStack or a local emulator; S3 then uses path-style addressing).
    Run(Box<RunArgs>),
    /// Print the CustomResourceDefinition YAML (what crds/ holds).
    Crd,
    /// Send the events waiting in a stack's failed-event queue back to its
    /// processor function (asynchronous invoke), once the cause of their
    /// failure is fixed. A message is deleted from the queue only after
    /// Lambda accepted it; running it twice changes no result (processing is
    /// idempotent by image id).
    Redrive(RedriveArgs),
    /// Print the least-privilege IAM policy the operator needs (JSON), for
    /// its IRSA role or EKS Pod Identity association; `--redrive`: the one
    /// `operator redrive` needs.
    IamPolicy(IamPolicyArgs),
    /// Print the CloudFront Function code (cloudfront-js-2.0, viewer request
    /// on `/i/*`) the operator deploys for the given widths and formats: the
    /// one-URL-per-image edge contract (README "Edge URLs").
    EdgeFunction(EdgeFunctionArgs),
}

#[derive(Args, Debug, Clone)]
pub struct EdgeFunctionArgs {
    /// The stack's `processor.widths`, comma-separated.
    #[arg(long, default_value = "320,640,1280,1920")]
    pub widths: String,
    /// The stack's `processor.formats`, comma-separated (webp, jpeg, png, avif).
    #[arg(long, default_value = "webp,jpeg,png")]
    pub formats: String,
}

/// The code `operator edge-function` prints, or why the arguments are invalid.
pub fn edge_function_code(args: &EdgeFunctionArgs) -> std::result::Result<String, String> {
    let widths =
        imagestack_contract::widths::parse(&args.widths).map_err(|e| format!("--widths: {e}"))?;
    let formats = imagestack_contract::Format::parse_list(&args.formats)
        .map_err(|e| format!("--formats: {e}"))?;
    Ok(crate::edge::viewer_request_code(&widths, &formats))
}

#[derive(Args, Debug, Clone)]
pub struct IamPolicyArgs {
    /// AWS account id the resources are in (default: any account, `*`).
    #[arg(long, default_value = "*")]
    pub account: String,
    /// AWS partition (`aws`, `aws-cn`, `aws-us-gov`).
    #[arg(long, default_value = "aws")]
    pub partition: String,
    /// Print the policy for `operator redrive` instead.
    #[arg(long)]
    pub redrive: bool,
}

#[derive(Args, Debug, Clone)]
pub struct RedriveArgs {
    /// Namespace of the stack.
    #[arg(long, short = 'n')]
    pub namespace: String,
    /// Name of the stack.
    #[arg(long)]
    pub name: String,
    /// Send at most this many messages.
    #[arg(long, default_value_t = 1000)]
    pub max: usize,
    /// Kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or in-cluster).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context to use (default: the current context).
    #[arg(long)]
    pub context: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or in-cluster).
    #[arg(long, env = "IMAGESTACK_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context to use (default: the current context).
    #[arg(long)]
    pub context: Option<String>,
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, short = 'n', env = "IMAGESTACK_WATCH_NAMESPACE")]
    pub namespace: Option<String>,
    /// Stacks reconciled in parallel.
    #[arg(long, default_value_t = 4, env = "IMAGESTACK_CONCURRENCY", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub concurrency: u16,
    /// How often an in-sync stack is re-read from AWS to detect and repair drift (e.g. 30s, 10m, 1h).
    #[arg(long, default_value = "10m", value_parser = parse_duration, env = "IMAGESTACK_RESYNC_INTERVAL")]
    pub resync_interval: Duration,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "IMAGESTACK_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// Log filter (tracing EnvFilter syntax); RUST_LOG overrides it.
    #[arg(
        long,
        default_value = "info,kube=warn,aws_config=warn,aws_smithy_runtime=warn"
    )]
    pub log_level: String,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, default_value = "0.0.0.0:8080", env = "IMAGESTACK_METRICS_ADDR")]
    pub metrics_addr: SocketAddr,
    /// Lease-based leader election, so several replicas can run safely (only
    /// the leader writes to AWS). Turn it off (--leader-election=false) only on
    /// API servers without the coordination.k8s.io Lease API.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, env = "IMAGESTACK_LEADER_ELECTION")]
    pub leader_election: bool,
    /// Namespace of the leader-election Lease (default: $POD_NAMESPACE, else `default`).
    #[arg(long, env = "POD_NAMESPACE")]
    pub leader_election_namespace: Option<String>,
    /// Name of the leader-election Lease.
    #[arg(long, default_value = "imagestack-operator")]
    pub leader_election_id: String,
    /// How long a standby waits, from the last change of the Lease it observed,
    /// before it takes over (whole seconds; written to the Lease).
    #[arg(long, default_value = "15s", value_parser = parse_duration, env = "IMAGESTACK_LEADER_ELECTION_LEASE_DURATION")]
    pub leader_election_lease_duration: Duration,
    /// A leader that has not renewed the Lease for this long stops every AWS
    /// write and exits. Must be shorter than the lease duration: the difference
    /// is the margin between the old leader's last write and the new leader's first.
    #[arg(long, default_value = "10s", value_parser = parse_duration, env = "IMAGESTACK_LEADER_ELECTION_RENEW_DEADLINE")]
    pub leader_election_renew_deadline: Duration,
    /// How often the leader renews the Lease and a standby reads it. Must be
    /// shorter than the renew deadline.
    #[arg(long, default_value = "2s", value_parser = parse_duration, env = "IMAGESTACK_LEADER_ELECTION_RETRY_PERIOD")]
    pub leader_election_retry_period: Duration,
    /// Default AWS region for stacks without spec.region (default: from the environment/profile).
    #[arg(long, env = "IMAGESTACK_AWS_REGION")]
    pub aws_region: Option<String>,
    /// Directory with the processor artifacts (`x86_64.zip`, `arm64.zip`) deployed as the Lambda code.
    #[arg(
        long,
        default_value = DEFAULT_ARTIFACT_DIR,
        env = ARTIFACT_DIR_ENV
    )]
    pub processor_artifact_dir: PathBuf,
    /// Id of this installation, written into every resource's ownership tags
    /// (`imagestack.dev/cluster`) so that two clusters sharing an AWS account
    /// never touch each other's stacks. Default: the UID of the `kube-system`
    /// namespace; where the API server has no core API (a CRD-only test
    /// server), the UID of the ImageOptimizationStack CRD. Must stay the same
    /// for the life of the installation.
    #[arg(long, env = "IMAGESTACK_CLUSTER_ID", value_parser = parse_cluster_id)]
    pub cluster_id: Option<String>,
}

/// A cluster id: 1–128 characters usable in an AWS tag value.
fn parse_cluster_id(s: &str) -> std::result::Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 128
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:/=+@".contains(c));
    if ok {
        Ok(s.to_string())
    } else {
        Err("1-128 characters of letters, digits and - _ . : / = + @".into())
    }
}

/// The installation's id: `--cluster-id`, else the `kube-system` namespace's
/// UID, else (no core API) the CRD's UID.
async fn cluster_id(client: &Client, flag: Option<&str>) -> Result<String> {
    use k8s_openapi::api::core::v1::Namespace;
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    if let Some(id) = flag {
        return Ok(id.to_string());
    }
    let namespaces: kube::Api<Namespace> = kube::Api::all(client.clone());
    let ns_err = match namespaces.get("kube-system").await {
        Ok(ns) => {
            if let Some(uid) = ns.metadata.uid {
                return Ok(uid);
            }
            "it has no uid".to_string()
        }
        Err(e) => e.to_string(),
    };
    let crds: kube::Api<CustomResourceDefinition> = kube::Api::all(client.clone());
    let name = format!("imagestacks.{}", crate::api::GROUP);
    match crds.get(&name).await {
        Ok(crd) => crd
            .metadata
            .uid
            .ok_or_else(|| Error::Config(format!("the CRD {name} has no uid; pass --cluster-id"))),
        Err(e) => Err(Error::Config(format!(
            "cannot determine the cluster id: reading namespace kube-system failed ({ns_err}) and reading the CRD {name} failed ({e}); pass --cluster-id (or IMAGESTACK_CLUSTER_ID)"
        ))),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let d = humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 30s, 10m, 1h)"))?;
    if d < Duration::from_secs(1) {
        return Err("must be at least 1s".into());
    }
    Ok(d)
}

/// Entry point of the binary.
/// Where the image keeps the processor zips.
pub const DEFAULT_ARTIFACT_DIR: &str = "/opt/imagestack/processor";
const ARTIFACT_DIR_ENV: &str = "IMAGESTACK_PROCESSOR_ARTIFACT_DIR";

/// `operator --version`: the version, then the processor build each stack
/// gets: every shipped zip's sha256 (the `.sha256` file the image build wrote
/// beside it, else computed), so `kubectl exec … operator --version` tells
/// which processor build the stacks run. (`-V`: the version alone.)
pub fn long_version(artifact_dir: &std::path::Path) -> String {
    use sha2::Digest;
    let mut text = format!(
        "{VERSION}\nprocessor artifacts in {}:",
        artifact_dir.display()
    );
    let mut found = false;
    for arch in ["x86_64", "arm64"] {
        let zip = artifact_dir.join(format!("{arch}.zip"));
        let recorded = std::fs::read_to_string(artifact_dir.join(format!("{arch}.zip.sha256")))
            .ok()
            .and_then(|l| l.split_whitespace().next().map(str::to_string));
        let sha = recorded.or_else(|| {
            std::fs::read(&zip)
                .ok()
                .map(|b| hex::encode(sha2::Sha256::digest(&b)))
        });
        if let Some(sha) = sha {
            found = true;
            text.push_str(&format!("\n  {arch}.zip sha256 {sha}"));
        }
    }
    if !found {
        text.push_str(" none (set --processor-artifact-dir or IMAGESTACK_PROCESSOR_ARTIFACT_DIR)");
    }
    text
}

/// The async runtime for a subcommand (`None`, after saying why, if it cannot start).
fn runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => Some(rt),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            None
        }
    }
}

pub fn main() -> ExitCode {
    // Read the artifacts (maybe hashing them) only when `--version` is asked
    // for, never on the way to `operator run`.
    let mut command = Cli::command();
    if std::env::args_os().any(|a| a == "--version") {
        let dir = std::env::var_os(ARTIFACT_DIR_ENV)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_ARTIFACT_DIR));
        command = command.long_version(long_version(&dir));
    }
    let matches = command.get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    match cli.command {
        Command::Crd => match crate::crd_yaml() {
            Ok(y) => {
                print!("{y}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Command::EdgeFunction(args) => match edge_function_code(&args) {
            Ok(code) => {
                print!("{code}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Command::IamPolicy(args) => {
            let doc = if args.redrive {
                crate::iam_policy::redrive_policy(&args.partition, &args.account)
            } else {
                crate::iam_policy::operator_policy(&args.partition, &args.account)
            };
            match serde_json::to_string_pretty(&doc) {
                Ok(text) => {
                    println!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Redrive(args) => {
            let _ = tracing_subscriber::fmt()
                .with_writer(std::io::stderr)
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
                )
                .try_init();
            let Some(rt) = runtime() else {
                return ExitCode::FAILURE;
            };
            match rt.block_on(redrive(args)) {
                Ok(r) => {
                    println!(
                        "sent {} event(s) back to the function; {} left in the queue",
                        r.sent, r.left
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Run(args) => {
            init_logging(&args);
            let Some(rt) = runtime() else {
                return ExitCode::FAILURE;
            };
            match rt.block_on(run(*args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "operator stopped");
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn init_logging(args: &RunArgs) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&args.log_level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
        LogFormat::Text => builder.init(),
    }
}

async fn kube_client(args: &RunArgs) -> Result<Client> {
    kube_client_for(args.kubeconfig.as_ref(), args.context.clone()).await
}

async fn kube_client_for(kubeconfig: Option<&PathBuf>, context: Option<String>) -> Result<Client> {
    let has_context = context.is_some();
    let options = KubeConfigOptions {
        context,
        ..Default::default()
    };
    let config = match kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path).map_err(|e| {
                Error::Config(format!("cannot read kubeconfig {}: {e}", path.display()))
            })?;
            Config::from_custom_kubeconfig(kc, &options)
                .await
                .map_err(|e| Error::Config(format!("invalid kubeconfig {}: {e}", path.display())))?
        }
        None if has_context => Config::from_kubeconfig(&options)
            .await
            .map_err(|e| Error::Config(format!("kubeconfig: {e}")))?,
        None => Config::infer().await.map_err(|e| {
            Error::Config(format!(
                "no Kubernetes configuration found ({e}); set KUBECONFIG or --kubeconfig"
            ))
        })?,
    };
    Client::try_from(config).map_err(Error::Kube)
}

fn identity() -> String {
    let host = std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .ok()
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "imagestack".into());
    format!("{host}-{}", std::process::id())
}

impl RunArgs {
    /// The leader-election durations, validated.
    pub fn election_timings(&self) -> Result<Timings> {
        let t = Timings {
            lease_duration: self.leader_election_lease_duration,
            renew_deadline: self.leader_election_renew_deadline,
            retry_period: self.leader_election_retry_period,
        };
        t.validate().map_err(Error::Config)?;
        Ok(t)
    }
}

/// `operator redrive`: the stack's queue, function and region from its
/// status, then [`crate::redrive::redrive`].
pub async fn redrive(args: RedriveArgs) -> Result<crate::redrive::Redriven> {
    use crate::api::ImageOptimizationStack;
    let client = kube_client_for(args.kubeconfig.as_ref(), args.context.clone()).await?;
    let api: kube::Api<ImageOptimizationStack> = kube::Api::namespaced(client, &args.namespace);
    let stack = api.get(&args.name).await.map_err(Error::Kube)?;
    let outputs = stack.status.and_then(|s| s.outputs).unwrap_or_default();
    let missing = |what: &str| {
        Error::Config(format!(
            "stack {}/{} has no {what} on its status yet (not reconciled?)",
            args.namespace, args.name
        ))
    };
    let queue = outputs
        .failed_event_queue
        .ok_or_else(|| missing("failedEventQueue"))?;
    let function = outputs
        .function_name
        .ok_or_else(|| missing("functionName"))?;
    let factory = AwsFactory::load(None, Arc::new(CallStats::default())).await?;
    let aws = factory.clients(outputs.region.as_deref());
    let cx_id = crate::naming::StackId::new(&args.namespace, &args.name, "");
    let cx = crate::components::Ctx::new(&aws, &cx_id, false);
    let url = crate::components::queue::url(&cx, &queue)
        .await?
        .ok_or_else(|| Error::Config(format!("the failed-event queue {queue} does not exist")))?;
    crate::redrive::redrive(&aws, &url, &function, args.max).await
}

/// `operator run`.
pub async fn run(args: RunArgs) -> Result<()> {
    let timings = if args.leader_election {
        Some(args.election_timings()?)
    } else {
        None
    };
    let client = kube_client(&args).await?;
    let stats = Arc::new(CallStats::new());
    let aws = AwsFactory::load(args.aws_region.clone(), stats.clone()).await?;
    tracing::info!(
        region = %aws.default_region(),
        endpoint = aws.endpoint_url().unwrap_or("AWS default"),
        resync = ?args.resync_interval,
        "AWS configured"
    );
    let metrics = Arc::new(Metrics::new(stats));
    let server = tokio::spawn(metrics::serve(args.metrics_addr, metrics.clone()));
    let id = identity();
    let cluster = cluster_id(&client, args.cluster_id.as_deref()).await?;
    tracing::info!(cluster_id = %cluster, "installation id (ownership tag imagestack.dev/cluster)");
    let ctx = Arc::new(Context::new(
        client.clone(),
        aws,
        metrics.clone(),
        args.resync_interval,
        Reporter {
            controller: "imagestack-operator".into(),
            instance: Some(id.clone()),
        },
        crate::plan::PlanOptions {
            artifact_dir: args.processor_artifact_dir.clone(),
            cluster_id: cluster,
        },
    ));
    let opts = RunOptions {
        namespace: args.namespace.clone(),
        concurrency: args.concurrency,
    };
    let Some(timings) = timings else {
        tracing::info!("leader election disabled");
        metrics.set_leader(true);
        return tokio::select! {
            r = controller::run(ctx, opts) => r,
            r = server => Err(Error::Config(format!("metrics server stopped: {r:?}"))),
        };
    };
    let ns = args
        .leader_election_namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    // A standby replica is healthy and ready: it only waits for the Lease. Reporting it
    // unready would stall rolling updates and PodDisruptionBudgets with 2 replicas.
    metrics.set_ready(true);
    let cfg = ElectionConfig {
        namespace: ns,
        name: args.leader_election_id.clone(),
        identity: id,
        timings,
    };
    let fence = ctx.aws.stats().fence();
    let Some(mut leadership) = leader::acquire(client, cfg, fence, metrics.clone()).await? else {
        return Ok(());
    };
    let result = tokio::select! {
        // Ends after a shutdown signal, once the running reconciles have finished.
        r = controller::run(ctx, opts) => r,
        // The renew deadline passed or another replica holds the Lease: the fence is
        // already closed; dropping the controller here cancels every reconcile.
        lost = &mut leadership.lost => {
            return Err(Error::Config(format!(
                "lost leadership ({}); exiting so that a fresh process rejoins the election as a standby",
                lost.unwrap_or_else(|_| "renewal task ended".into())
            )));
        }
        r = server => Err(Error::Config(format!("metrics server stopped: {r:?}"))),
    };
    // The controller has stopped: close the fence and release the Lease, so that a
    // standby takes over now rather than after the lease duration.
    leadership.release().await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn edge_function_arguments() {
        let args = |widths: &str, formats: &str| EdgeFunctionArgs {
            widths: widths.into(),
            formats: formats.into(),
        };
        let code = edge_function_code(&args("640,320", "avif, webp")).unwrap();
        assert_eq!(
            code,
            crate::edge::viewer_request_code(
                &[320, 640],
                &[
                    imagestack_contract::Format::Webp,
                    imagestack_contract::Format::Avif
                ]
            )
        );
        assert!(
            edge_function_code(&args("320,abc", "webp"))
                .unwrap_err()
                .starts_with("--widths")
        );
        assert!(
            edge_function_code(&args("8", "webp"))
                .unwrap_err()
                .starts_with("--widths")
        );
        assert!(
            edge_function_code(&args("320", "gif"))
                .unwrap_err()
                .starts_with("--formats")
        );
        assert!(
            edge_function_code(&args("320", " , "))
                .unwrap_err()
                .starts_with("--formats")
        );
    }

    #[test]
    fn long_version_names_each_shipped_zip() {
        let dir = std::env::temp_dir().join(format!("imagestack-version-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // Nothing there: says so.
        assert!(long_version(&dir).contains("none"));
        // The image's .sha256 file wins; a zip without one is hashed.
        std::fs::write(dir.join("arm64.zip.sha256"), "abc123  arm64.zip\n").unwrap();
        std::fs::write(dir.join("x86_64.zip"), b"zip").unwrap();
        let text = long_version(&dir);
        assert!(text.starts_with(VERSION), "{text}");
        assert!(text.contains("arm64.zip sha256 abc123"), "{text}");
        // sha256("zip")
        assert!(
            text.contains(
                "x86_64.zip sha256 4a70fe9aa6436e02c2dea340fbd1e352e4ef2d8ce6ca52ad25d4b95471fc8bf2"
            ),
            "{text}"
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn run_flags_parse() {
        let cli = Cli::try_parse_from([
            "operator",
            "run",
            "--namespace",
            "team-a",
            "--resync-interval",
            "30s",
            "--leader-election=false",
            "--log-format",
            "json",
        ])
        .unwrap();
        let Command::Run(a) = cli.command else {
            panic!("not run")
        };
        assert_eq!(a.namespace.as_deref(), Some("team-a"));
        assert_eq!(a.resync_interval, Duration::from_secs(30));
        assert!(!a.leader_election);
        assert_eq!(a.log_format, LogFormat::Json);
    }

    fn run_args(extra: &[&str]) -> RunArgs {
        let cli = Cli::try_parse_from([&["operator", "run"], extra].concat()).unwrap();
        let Command::Run(a) = cli.command else {
            panic!("not run")
        };
        *a
    }

    #[test]
    fn leader_election_timings() {
        let t = run_args(&[]).election_timings().unwrap();
        assert_eq!(t, Timings::default());
        assert_eq!(t.lease_duration, Duration::from_secs(15));
        assert_eq!(t.renew_deadline, Duration::from_secs(10));
        assert_eq!(t.retry_period, Duration::from_secs(2));
        let t = run_args(&[
            "--leader-election-lease-duration=6s",
            "--leader-election-renew-deadline=4s",
            "--leader-election-retry-period=1s",
        ])
        .election_timings()
        .unwrap();
        assert_eq!(t.lease_duration, Duration::from_secs(6));
        let e = run_args(&["--leader-election-renew-deadline=15s"])
            .election_timings()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--leader-election-renew-deadline (15s) must be shorter than --leader-election-lease-duration (15s)"),
            "{e}"
        );
        let e = run_args(&["--leader-election-retry-period=10s"])
            .election_timings()
            .unwrap_err()
            .to_string();
        assert!(e.contains("--leader-election-retry-period (10s)"), "{e}");
    }
}

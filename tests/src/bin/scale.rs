//! Scale benchmark (not a test): create N stacks against the API server from
//! KUBECONFIG and the AWS emulator, and print a table of
//! - time until every stack's storage components are Ready,
//! - AWS calls per steady-state reconcile (reads, and writes — which must be 0),
//! - the operator's peak RSS,
//! - time until every stack (deletionPolicy Delete) is gone.
//!
//! Run it with `./scripts/bench-scale` (sets up the emulator and an API server),
//! or `cargo run --release -p tests --bin scale -- --stacks 50` against your own.

use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use clap::Parser;
use imagestack_operator::api::{ComponentState, ImageOptimizationStack};
use kube::api::{Api, DeleteParams, ListParams};
use tests::*;

#[derive(Parser, Debug)]
#[command(about = "imagestack operator scale benchmark")]
struct Args {
    /// Number of stacks.
    #[arg(long, default_value_t = 50)]
    stacks: usize,
    /// Operator --concurrency.
    #[arg(long, default_value_t = 4)]
    concurrency: u16,
    /// Resync interval of the operator restarted to measure steady-state
    /// reconciles (creation runs with the default, 10m).
    #[arg(long, default_value = "5s")]
    resync: String,
    /// Give up after this many seconds per phase.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    require_env();
    let client = kube_client().await?;
    install_crd(&client).await?;
    let ns = unique("scale");
    ensure_namespace(&client, &ns).await?;
    let concurrency = args.concurrency.to_string();
    let env = [("IMAGESTACK_CONCURRENCY", concurrency.as_str())];
    // Creation runs with the operator's default resync (10m), as in production.
    let mut op = Operator::start(&ns, "10m", &env)?;
    let api: Api<ImageOptimizationStack> = Api::namespaced(client.clone(), &ns);
    let timeout = Duration::from_secs(args.timeout);

    // Create.
    let started = Instant::now();
    let mut manifests = String::new();
    for i in 0..args.stacks {
        manifests.push_str(&manifest(
            &ns,
            &format!("s{i}"),
            "environment: bench\ndeletionPolicy: Delete\nbuckets: {emptyOnDelete: true}",
        ));
        manifests.push_str("---\n");
    }
    let (ok, _, err) = kubectl(&["apply", "-f", "-"], Some(&manifests))?;
    if !ok {
        bail!("kubectl apply failed: {err}");
    }
    let n = args.stacks;
    // Storage (the core issue's components) and the whole stack, timed separately.
    let storage_at = std::sync::Mutex::new(None::<Duration>);
    poll(timeout, || async {
        let list = api.list(&ListParams::default()).await.ok()?;
        // A stalled stack will not get Ready by waiting (e.g. no processor artifact): stop now.
        if let Some(stalled) = first_stalled(&list.items) {
            return Some(Err(stalled));
        }
        let storage = list.items.iter().filter(|s| storage_ready(s)).count();
        if storage == n
            && let Ok(mut at) = storage_at.lock()
        {
            at.get_or_insert_with(|| started.elapsed());
        }
        let ready = list
            .items
            .iter()
            .filter(|s| condition(s, "Ready").is_some_and(|c| c.status == "True"))
            .count();
        (ready == n).then_some(Ok(()))
    })
    .await??;
    let to_ready = started.elapsed();
    let to_storage = storage_at
        .lock()
        .ok()
        .and_then(|at| *at)
        .unwrap_or(to_ready);
    let cpu_create = op.cpu_seconds().unwrap_or(0.0);
    let rss_create = op.peak_rss_kib().unwrap_or(0);

    // Steady state: a fresh operator with a short resync (`--resync`); its start-up
    // reconciles every stack, then resyncs do, all against stacks that are in sync.
    op.kill();
    let op = Operator::start(&ns, &args.resync, &env)?;

    // Steady state: everything this operator does is steady state (every stack is
    // in sync); count over at least two reconciles of every stack.
    poll(timeout, || async {
        let r = op
            .metric_sum("imagestack_reconciles_total", &[])
            .await
            .ok()?;
        (r >= 2.0 * n as f64).then_some(())
    })
    .await?;
    let reconciles = op.metric_sum("imagestack_reconciles_total", &[]).await?;
    let calls = op.metric_sum("imagestack_aws_calls_total", &[]).await?;
    let writes = op.aws_writes().await?;
    let rss = op.peak_rss_kib().unwrap_or(0).max(rss_create);

    // Delete.
    let deleting = Instant::now();
    api.delete_collection(&DeleteParams::default(), &ListParams::default())
        .await?;
    poll(timeout, || async {
        let items = api.list(&ListParams::default()).await.ok()?.items;
        if let Some(stalled) = first_stalled(&items) {
            return Some(Err(stalled));
        }
        items.is_empty().then_some(Ok(()))
    })
    .await??;
    let to_gone = deleting.elapsed();

    println!(
        "| stacks | concurrency | apply → storage Ready | apply → all Ready | operator CPU to Ready | AWS calls / steady reconcile | writes / steady reconcile | operator peak RSS | delete → all gone |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {n} | {} | {:.1} s | {:.1} s | {:.1} s | {:.1} | {:.2} | {:.1} MiB | {:.1} s |",
        args.concurrency,
        to_storage.as_secs_f64(),
        to_ready.as_secs_f64(),
        cpu_create,
        calls / reconciles.max(1.0),
        writes / reconciles.max(1.0),
        rss as f64 / 1024.0,
        to_gone.as_secs_f64()
    );
    if writes > 0.0 {
        bail!("steady-state reconciles made {writes} AWS writes (must be 0)");
    }
    Ok(())
}

/// An error naming the first stack whose `Stalled` condition is `True`, with its
/// reason and message.
fn first_stalled(stacks: &[ImageOptimizationStack]) -> Option<anyhow::Error> {
    stacks.iter().find_map(|s| {
        let c = condition(s, "Stalled").filter(|c| c.status == "True")?;
        Some(anyhow!(
            "stack {}/{} is Stalled: reason {}: {} (stopping: a stalled stack does not converge by waiting)",
            s.metadata.namespace.as_deref().unwrap_or_default(),
            s.metadata.name.as_deref().unwrap_or_default(),
            c.reason,
            c.message
        ))
    })
}

/// The storage components (buckets, table, role) of this stack are all Ready.
fn storage_ready(s: &ImageOptimizationStack) -> bool {
    const STORAGE: [&str; 6] = [
        "upload-bucket",
        "webp-bucket",
        "jpeg-bucket",
        "png-bucket",
        "metadata-table",
        "processor-role",
    ];
    let Some(status) = &s.status else {
        return false;
    };
    STORAGE.iter().all(|name| {
        status
            .components
            .iter()
            .any(|c| c.name.as_str() == *name && c.state == ComponentState::Ready)
    })
}

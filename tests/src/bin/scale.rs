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

use anyhow::{Result, bail};
use clap::Parser;
use imagestack_operator::api::ImageOptimizationStack;
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
    /// Resync interval used to measure steady-state reconciles.
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
    let op = Operator::start(
        &ns,
        &args.resync,
        &[("IMAGESTACK_CONCURRENCY", &args.concurrency.to_string())],
    )?;
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
    poll(timeout, || async {
        let list = api.list(&ListParams::default()).await.ok()?;
        let ready = list
            .items
            .iter()
            .filter(|s| condition(s, "Ready").is_some_and(|c| c.status == "True"))
            .count();
        (ready == n).then_some(())
    })
    .await?;
    let to_ready = started.elapsed();

    // Steady state: count calls over at least two reconciles of every stack.
    let calls0 = op.metric_sum("imagestack_aws_calls_total", &[]).await?;
    let writes0 = op.aws_writes().await?;
    let rec0 = op.metric_sum("imagestack_reconciles_total", &[]).await?;
    poll(timeout, || async {
        let r = op
            .metric_sum("imagestack_reconciles_total", &[])
            .await
            .ok()?;
        (r >= rec0 + 2.0 * n as f64).then_some(())
    })
    .await?;
    let calls = op.metric_sum("imagestack_aws_calls_total", &[]).await? - calls0;
    let writes = op.aws_writes().await? - writes0;
    let reconciles = op.metric_sum("imagestack_reconciles_total", &[]).await? - rec0;
    let rss = op.peak_rss_kib().unwrap_or(0);

    // Delete.
    let deleting = Instant::now();
    api.delete_collection(&DeleteParams::default(), &ListParams::default())
        .await?;
    poll(timeout, || async {
        api.list(&ListParams::default())
            .await
            .ok()?
            .items
            .is_empty()
            .then_some(())
    })
    .await?;
    let to_gone = deleting.elapsed();

    println!(
        "| stacks | concurrency | apply → all Ready | AWS calls / steady reconcile | writes / steady reconcile | operator peak RSS | delete → all gone |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {n} | {} | {:.1} s | {:.1} | {:.2} | {:.1} MiB | {:.1} s |",
        args.concurrency,
        to_ready.as_secs_f64(),
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

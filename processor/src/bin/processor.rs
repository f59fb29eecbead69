//! `processor optimize <file|dir> --out <dir>`: the Lambda's pipeline on
//! local files, printing sizes, ratios and times per file — for trying
//! quality settings before deploying them.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use imagestack_contract::Format;
use imagestack_processor::limits::Limits;
use imagestack_processor::pipeline::{self, Settings};
use imagestack_processor::{Error, cpu};

#[derive(Parser, Debug)]
#[command(
    name = "processor",
    version,
    about = "imagestack image pipeline, locally"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Optimize one image or every file in a directory.
    Optimize(OptimizeArgs),
}

#[derive(clap::Args, Debug)]
struct OptimizeArgs {
    /// An image file or a directory of images (not recursive).
    input: PathBuf,
    /// Output directory; renditions go to `<out>/<format>/<stem>.<ext>`,
    /// width variants to `<out>/<format>/<stem>-w<width>.<ext>`.
    #[arg(long)]
    out: PathBuf,
    /// Comma-separated width variants (16–8192, at most 16); `none` for the
    /// full size only.
    #[arg(long, default_value = "320,640,1280,1920")]
    widths: String,
    /// Comma-separated formats (webp, jpeg, png, avif).
    #[arg(long, default_value = "webp,jpeg,png", value_delimiter = ',')]
    formats: Vec<Format>,
    #[arg(long, default_value_t = imagestack_contract::defaults::WEBP_QUALITY)]
    webp_quality: u8,
    #[arg(long, default_value_t = imagestack_contract::defaults::JPEG_QUALITY)]
    jpeg_quality: u8,
    /// AVIF quality 1–100 (add `avif` to --formats).
    #[arg(long, default_value_t = imagestack_contract::defaults::AVIF_QUALITY)]
    avif_quality: u8,
    /// rav1e speed preset 0 (slowest) – 10 (fastest) for images up to 1 MP; larger ones are
    /// encoded faster (at least 9 up to 2 MP, 10 above: `encode::avif::speed_for`).
    #[arg(long, default_value_t = imagestack_processor::encode::avif::SPEED)]
    avif_speed: u8,
    /// libwebp method 0–6 (capped for images with alpha).
    #[arg(long, default_value_t = imagestack_contract::defaults::WEBP_METHOD)]
    webp_method: u8,
    /// Per-image time budget in milliseconds.
    #[arg(long, default_value_t = 30_000)]
    time_budget_ms: u64,
    /// Encoders run at once (default: available CPUs).
    #[arg(long)]
    parallelism: Option<usize>,
    #[arg(long, default_value_t = imagestack_contract::defaults::MAX_INPUT_BYTES)]
    max_bytes: u64,
    #[arg(long, default_value_t = imagestack_contract::defaults::MAX_INPUT_PIXELS)]
    max_pixels: u64,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Optimize(args) => match optimize(&args) {
            Ok(0) => ExitCode::SUCCESS,
            Ok(_) => ExitCode::from(1),
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
    }
}

fn settings(args: &OptimizeArgs) -> Result<Settings, Error> {
    let widths = if args.widths.trim() == "none" {
        Vec::new()
    } else {
        imagestack_contract::widths::parse(&args.widths).map_err(|e| Error::Config {
            var: "--widths",
            message: e.to_string(),
        })?
    };
    Ok(Settings {
        formats: args.formats.clone(),
        webp_quality: args.webp_quality,
        jpeg_quality: args.jpeg_quality,
        avif_quality: args.avif_quality,
        avif_speed: args.avif_speed,
        webp_method: args.webp_method,
        limits: Limits {
            max_bytes: args.max_bytes,
            max_pixels: args.max_pixels,
            ..Limits::default()
        },
        time_budget: Duration::from_millis(args.time_budget_ms),
        parallelism: args
            .parallelism
            .unwrap_or_else(pipeline::available_parallelism),
        widths,
        ..Settings::default()
    })
}

fn inputs(path: &Path) -> Result<Vec<PathBuf>, Error> {
    if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| Error::Io {
                context: format!("reading {}", path.display()),
                source: e,
            })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        Ok(files)
    } else {
        Ok(vec![path.to_path_buf()])
    }
}

/// Returns the number of files that failed.
fn optimize(args: &OptimizeArgs) -> Result<usize, Error> {
    let settings = settings(args)?;
    let files = inputs(&args.input)?;
    let mut failed = 0;
    let (mut total_in, mut total_out) = (0u64, 0u64);
    let wall = Instant::now();
    let cpu_start = cpu::usage().0;
    println!(
        "{:<44} {:>11} {:>10}  {:<30}  {:>8}",
        "file", "size", "in", "renditions (bytes, ratio, ms)", "ms"
    );
    for file in files {
        let name = file
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let bytes = match std::fs::read(&file) {
            Ok(b) => b,
            Err(e) => {
                println!("{name:<44} read error: {e}");
                failed += 1;
                continue;
            }
        };
        let started = Instant::now();
        match pipeline::optimize(&bytes, &settings) {
            Ok(out) => {
                let stem = file
                    .file_stem()
                    .map_or_else(|| "image".to_string(), |s| s.to_string_lossy().into_owned());
                let mut cells = Vec::new();
                for r in &out.renditions {
                    let dir = args.out.join(r.format.as_str());
                    let suffix = r.variant.map(|w| format!("-w{w}")).unwrap_or_default();
                    let target = dir.join(format!("{stem}{suffix}.{}", r.format.extension()));
                    std::fs::create_dir_all(&dir)
                        .and_then(|()| std::fs::write(&target, &r.bytes))
                        .map_err(|e| Error::Io {
                            context: format!("writing {}", target.display()),
                            source: e,
                        })?;
                    if r.variant.is_none() {
                        total_out += r.bytes.len() as u64;
                        cells.push(format!(
                            "{} {} {:.2} {}",
                            r.format,
                            r.bytes.len(),
                            r.bytes.len() as f64 / bytes.len() as f64,
                            r.encode_time.as_millis()
                        ));
                    }
                }
                let variants: Vec<String> = out
                    .renditions
                    .iter()
                    .filter_map(|r| r.variant)
                    .collect::<std::collections::BTreeSet<_>>()
                    .iter()
                    .map(|w| format!("w{w}"))
                    .collect();
                if !variants.is_empty() {
                    let variant_bytes: usize = out
                        .renditions
                        .iter()
                        .filter(|r| r.variant.is_some())
                        .map(|r| r.bytes.len())
                        .sum();
                    cells.push(format!(
                        "+ {} ({variant_bytes} bytes, resize {} ms)",
                        variants.join(","),
                        out.resize_time.as_millis()
                    ));
                }
                let full_sizes = out
                    .renditions
                    .iter()
                    .filter(|r| r.variant.is_none())
                    .count();
                total_in += bytes.len() as u64 * full_sizes as u64;
                println!(
                    "{:<44} {:>11} {:>10}  {}  {:>8}",
                    name,
                    format!("{}x{}", out.width, out.height),
                    bytes.len(),
                    cells.join(" | "),
                    started.elapsed().as_millis()
                );
            }
            Err(e) => {
                failed += 1;
                let reason = e.failure_reason().map_or("Error", |r| r.as_str());
                println!("{name:<44} FAILED {reason}: {e}");
            }
        }
    }
    let cpu = cpu::usage().0.saturating_sub(cpu_start);
    println!(
        "total: output/input bytes (full size) {:.3}, wall {:.2} s, cpu {:.2} s, {} failed",
        if total_in == 0 {
            0.0
        } else {
            total_out as f64 / total_in as f64
        },
        wall.elapsed().as_secs_f64(),
        cpu.as_secs_f64(),
        failed
    );
    Ok(failed)
}

//! The benchmark: our pipeline and the Pillow reference over a directory of
//! images (default `../shared/images` from the repository root), side by
//! side, on one core. Not a test: it prints a table.
//!
//! ```text
//! processor/scripts/bench.sh                      # pinned to one core, venv set up
//! cargo bench -p imagestack-processor --bench pipeline -- [DIR] [--floors FILE] [--no-reference]
//! ```
//!
//! `--floors FILE` writes the reference's per-image SSIM (the test data of
//! `tests/pipeline_images.rs`). The reference runs `scripts/bench_reference.py`
//! with `$BENCH_PYTHON` (default: the venv made by `scripts/bench.sh`).

#[path = "../tests/common/quality.rs"]
mod quality;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use image::{DynamicImage, GenericImageView};
use imagestack_contract::Format;
use imagestack_processor::pipeline::{self, Settings};
use imagestack_processor::{cpu, decode};

#[derive(Default, Clone)]
struct Side {
    /// CPU seconds per step: "decode", "webp", "jpeg", "png".
    cpu: BTreeMap<&'static str, f64>,
    bytes: BTreeMap<&'static str, u64>,
    ssim: BTreeMap<&'static str, f64>,
}

struct Row {
    file: String,
    megapixels: f64,
    input_bytes: u64,
    ours: Side,
    reference: Option<Side>,
}

const STEPS: [&str; 4] = ["decode", "webp", "jpeg", "png"];

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    let mut dir: Option<PathBuf> = None;
    let mut floors: Option<PathBuf> = None;
    let mut with_reference = true;
    let mut reference_cache: Option<PathBuf> = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--floors" => floors = args.next().map(PathBuf::from),
            "--no-reference" => with_reference = false,
            "--reference-cache" => reference_cache = args.next().map(PathBuf::from),
            _ => dir = Some(PathBuf::from(a)),
        }
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = dir.unwrap_or_else(|| manifest.join("../../shared/images"));
    let work = std::env::temp_dir().join(format!("imagestack-bench-{}", std::process::id()));
    // The reference's settings (quality 85, WebP method 6 as the upper bound),
    // one encoder at a time.
    let formats = std::env::var("BENCH_FORMATS").ok().map(|f| {
        f.split(',')
            .filter_map(|x| x.parse::<Format>().ok())
            .collect::<Vec<_>>()
    });
    let settings = Settings {
        formats: formats.unwrap_or_else(|| Format::DEFAULT.to_vec()),
        webp_method: 6,
        parallelism: 1,
        time_budget: Duration::from_secs(3600),
        // The full-size renditions against Pillow's; width variants are not
        // in this comparison yet (issue 9's benchmark part).
        widths: Vec::new(),
        ..Settings::default()
    };

    let files = image_files(&dir);
    eprintln!("ours: {} images from {}", files.len(), dir.display());
    let wall = Instant::now();
    let mut rows: Vec<Row> = files
        .iter()
        .map(|f| run_ours(f, &settings, &work.join("ours")))
        .collect();
    let ours_wall = wall.elapsed();
    let (_, ours_rss) = cpu::usage();

    let mut ref_rss = None;
    if with_reference {
        eprintln!("reference: Pillow over the same images");
        ref_rss = run_reference(
            &dir,
            &work.join("reference"),
            reference_cache.as_deref(),
            &mut rows,
        );
    }
    eprintln!("computing SSIM");
    for row in &mut rows {
        score(row, &dir, &work);
    }
    print_table(&rows, ours_rss, ref_rss, ours_wall);
    if let Some(path) = floors {
        write_floors(&rows, &path);
    }
    let _ = std::fs::remove_dir_all(&work);
}

fn image_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && decode::detect(&std::fs::read(p).unwrap_or_default()).is_ok())
        .collect();
    files.sort();
    files
}

fn stem(path: &Path) -> String {
    path.file_stem()
        .map_or_else(String::new, |s| s.to_string_lossy().into_owned())
}

fn run_ours(path: &Path, settings: &Settings, out: &Path) -> Row {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let optimized =
        pipeline::optimize(&bytes, settings).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut side = Side::default();
    side.cpu
        .insert("decode", optimized.decode_cpu.as_secs_f64());
    for r in &optimized.renditions {
        let dir = out.join(r.format.as_str());
        let _ = std::fs::create_dir_all(&dir);
        let target = dir.join(format!("{}.{}", stem(path), r.format.extension()));
        std::fs::write(&target, &r.bytes).unwrap_or_else(|e| panic!("{}: {e}", target.display()));
        side.cpu
            .insert(r.format.as_str(), r.encode_cpu.as_secs_f64());
        side.bytes.insert(r.format.as_str(), r.bytes.len() as u64);
    }
    for f in Format::ALL {
        side.cpu.entry(f.as_str()).or_insert(0.0);
        side.bytes.entry(f.as_str()).or_insert(0);
    }
    eprintln!(
        "  {:<44} {:>6.2} s cpu (decode {:.2}, webp {:.2} m{}, jpeg {:.2}, png {:.2})",
        path.file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
        side.cpu.values().sum::<f64>(),
        side.cpu["decode"],
        side.cpu.get("webp").copied().unwrap_or(0.0),
        optimized.webp_method,
        side.cpu.get("jpeg").copied().unwrap_or(0.0),
        side.cpu.get("png").copied().unwrap_or(0.0),
    );
    Row {
        file: path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
        megapixels: f64::from(optimized.width) * f64::from(optimized.height) / 1e6,
        input_bytes: bytes.len() as u64,
        ours: side,
        reference: None,
    }
}

fn python() -> String {
    std::env::var("BENCH_PYTHON")
        .unwrap_or_else(|_| "/var/tmp/imagestack-bench-venv/bin/python".to_string())
}

/// Runs the Pillow script; returns its peak RSS.
/// With `cache`, a previous run's output is reused (its renditions are in `cache`).
fn run_reference(dir: &Path, out: &Path, cache: Option<&Path>, rows: &mut [Row]) -> Option<u64> {
    if let Some(cache) = cache
        && let Ok(stdout) = std::fs::read_to_string(cache.join("reference.jsonl"))
    {
        eprintln!("  (reusing {})", cache.display());
        let _ = std::fs::remove_dir_all(out);
        let _ = Command::new("cp").arg("-r").arg(cache).arg(out).status();
        return parse_reference(&stdout, rows);
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/bench_reference.py");
    let output = match Command::new(python())
        .arg(&script)
        .arg(dir)
        .arg(out)
        .output()
    {
        Ok(o) if o.status.success() => {
            if let Some(cache) = cache {
                let _ = Command::new("cp").arg("-r").arg(out).arg(cache).status();
                let _ = std::fs::write(cache.join("reference.jsonl"), &o.stdout);
            }
            o
        }
        Ok(o) => {
            eprintln!(
                "reference failed ({}): {}",
                o.status,
                String::from_utf8_lossy(&o.stderr)
            );
            return None;
        }
        Err(e) => {
            eprintln!(
                "reference not run ({}: {e}); run scripts/bench.sh",
                python()
            );
            return None;
        }
    };
    parse_reference(&String::from_utf8_lossy(&output.stdout), rows)
}

fn parse_reference(stdout: &str, rows: &mut [Row]) -> Option<u64> {
    let mut rss = None;
    for line in stdout.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if let Some(r) = v["peak_rss_bytes"].as_u64() {
            rss = Some(r);
            continue;
        }
        let Some(row) = rows.iter_mut().find(|r| v["file"] == r.file.as_str()) else {
            continue;
        };
        let mut side = Side::default();
        for step in STEPS {
            side.cpu
                .insert(step, v[format!("{step}_s")].as_f64().unwrap_or(0.0));
        }
        for f in Format::ALL {
            side.bytes.insert(
                f.as_str(),
                v[format!("{}_bytes", f.as_str())].as_u64().unwrap_or(0),
            );
        }
        row.reference = Some(side);
    }
    rss
}

fn load(path: &Path) -> Option<DynamicImage> {
    image::load_from_memory(&std::fs::read(path).ok()?).ok()
}

/// SSIM of the lossy renditions: ours against the oriented source (alpha on
/// white), the reference's against the source as it encoded it (no
/// orientation; its JPEG dropped alpha).
fn score(row: &mut Row, dir: &Path, work: &Path) {
    let source_bytes = std::fs::read(dir.join(&row.file)).unwrap_or_default();
    let stem = stem(Path::new(&row.file));
    let Ok(oriented) = decode::decode(&source_bytes, &Default::default()) else {
        return;
    };
    let oriented_luma = quality::luma_on_white(&oriented.image);
    for f in [Format::Webp, Format::Jpeg] {
        let p = work
            .join("ours")
            .join(f.as_str())
            .join(format!("{stem}.{}", f.extension()));
        if let Some(img) = load(&p) {
            row.ours.ssim.insert(
                f.as_str(),
                quality::ssim(&oriented_luma, &quality::luma_on_white(&img)),
            );
        }
    }
    let (Some(reference), Some(raw)) = (
        row.reference.as_mut(),
        image::load_from_memory(&source_bytes).ok(),
    ) else {
        return;
    };
    for f in [Format::Webp, Format::Jpeg] {
        let p = work
            .join("reference")
            .join(f.as_str())
            .join(format!("{stem}.{}", f.extension()));
        let Some(img) = load(&p) else { continue };
        let source = if f == Format::Jpeg {
            quality::luma_without_alpha(&raw)
        } else {
            quality::luma_on_white(&raw)
        };
        if source.dimensions() == img.dimensions() {
            reference.ssim.insert(
                f.as_str(),
                quality::ssim(&source, &quality::luma_on_white(&img)),
            );
        }
    }
    // For the floors: the reference settings on the white-flattened image,
    // when the source has transparency (see bench_reference.py).
    let p = work
        .join("reference/jpeg_white")
        .join(format!("{stem}.jpg"));
    if let Some(img) = load(&p) {
        let source = quality::luma_on_white(&raw);
        if source.dimensions() == img.dimensions() {
            reference.ssim.insert(
                "jpeg_white",
                quality::ssim(&source, &quality::luma_on_white(&img)),
            );
        }
    }
}

fn sum(rows: &[Row], f: impl Fn(&Row) -> Option<f64>) -> Option<f64> {
    rows.iter().map(f).sum()
}

fn print_table(rows: &[Row], ours_rss: u64, ref_rss: Option<u64>, ours_wall: Duration) {
    let mp: f64 = rows.iter().map(|r| r.megapixels).sum();
    let input: f64 = rows.iter().map(|r| r.input_bytes as f64).sum();
    let has_ref = rows.iter().all(|r| r.reference.is_some());
    println!();
    println!("Per image (CPU seconds, one core; bytes):");
    println!(
        "| image | MP | ours cpu s | ref cpu s | webp ours/ref | jpeg ours/ref | png ours/ref | webp SSIM ours/ref | jpeg SSIM ours/ref |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        let ours_cpu: f64 = r.ours.cpu.values().sum();
        let ref_cpu = r.reference.as_ref().map(|s| s.cpu.values().sum::<f64>());
        let ratio = |f: &str| {
            r.reference.as_ref().map_or("-".to_string(), |s| {
                format!("{:.2}", r.ours.bytes[f] as f64 / s.bytes[f].max(1) as f64)
            })
        };
        let ssim = |f: &str| {
            format!(
                "{:.4}/{}",
                r.ours.ssim.get(f).copied().unwrap_or(f64::NAN),
                r.reference
                    .as_ref()
                    .and_then(|s| s.ssim.get(f))
                    .map_or("-".to_string(), |v| format!("{v:.4}"))
            )
        };
        println!(
            "| {} | {:.1} | {:.2} | {} | {} | {} | {} | {} | {} |",
            r.file,
            r.megapixels,
            ours_cpu,
            ref_cpu.map_or("-".to_string(), |c| format!("{c:.2}")),
            ratio("webp"),
            ratio("jpeg"),
            ratio("png"),
            ssim("webp"),
            ssim("jpeg"),
        );
    }
    println!();
    println!(
        "Totals over {} images, {:.1} MP, {:.1} MB in (one core):",
        rows.len(),
        mp,
        input / 1e6
    );
    println!(
        "| step | ours CPU s/MP | ref CPU s/MP | CPU ours/ref | ours out/in bytes | ref out/in bytes | bytes ours/ref | ours mean SSIM | ref mean SSIM |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for step in STEPS {
        let ours_cpu = sum(rows, |r| r.ours.cpu.get(step).copied()).unwrap_or(0.0);
        let ref_cpu = if has_ref {
            sum(rows, |r| {
                r.reference.as_ref().and_then(|s| s.cpu.get(step).copied())
            })
        } else {
            None
        };
        let ours_bytes = sum(rows, |r| r.ours.bytes.get(step).map(|b| *b as f64));
        let ref_bytes = if has_ref {
            sum(rows, |r| {
                r.reference
                    .as_ref()
                    .and_then(|s| s.bytes.get(step).map(|b| *b as f64))
            })
        } else {
            None
        };
        let mean = |v: Vec<f64>| {
            if v.is_empty() {
                None
            } else {
                Some(v.iter().sum::<f64>() / v.len() as f64)
            }
        };
        let ours_ssim = mean(
            rows.iter()
                .filter_map(|r| r.ours.ssim.get(step).copied())
                .collect(),
        );
        let ref_ssim = mean(
            rows.iter()
                .filter_map(|r| r.reference.as_ref().and_then(|s| s.ssim.get(step).copied()))
                .collect(),
        );
        let opt =
            |v: Option<f64>, digits: usize| v.map_or("-".to_string(), |v| format!("{v:.digits$}"));
        println!(
            "| {step} | {:.3} | {} | {} | {} | {} | {} | {} | {} |",
            ours_cpu / mp,
            opt(ref_cpu.map(|c| c / mp), 3),
            opt(ref_cpu.map(|c| ours_cpu / c), 2),
            opt(ours_bytes.map(|b| b / input), 3),
            opt(ref_bytes.map(|b| b / input), 3),
            opt(ours_bytes.zip(ref_bytes).map(|(o, r)| o / r), 3),
            opt(ours_ssim, 4),
            opt(ref_ssim, 4),
        );
    }
    let ours_total: f64 = rows.iter().map(|r| r.ours.cpu.values().sum::<f64>()).sum();
    let ref_total = if has_ref {
        sum(rows, |r| {
            r.reference.as_ref().map(|s| s.cpu.values().sum::<f64>())
        })
    } else {
        None
    };
    let worst = rows
        .iter()
        .map(|r| (r.ours.cpu.values().sum::<f64>(), r.file.as_str()))
        .fold((0.0, ""), |a, b| if b.0 > a.0 { b } else { a });
    println!(
        "| all three | {:.3} | {} | {} | | | | | |",
        ours_total / mp,
        ref_total.map_or("-".to_string(), |c| format!("{:.3}", c / mp)),
        ref_total.map_or("-".to_string(), |c| format!("{:.2}", ours_total / c)),
    );
    println!();
    println!(
        "images/s (CPU): ours {:.2}, reference {}",
        rows.len() as f64 / ours_total,
        ref_total.map_or("-".to_string(), |c| format!("{:.2}", rows.len() as f64 / c))
    );
    println!(
        "peak RSS: ours {:.0} MB, reference {}",
        ours_rss as f64 / 1e6,
        ref_rss.map_or("-".to_string(), |r| format!("{:.0} MB", r as f64 / 1e6))
    );
    println!(
        "slowest image (ours, all three renditions): {} at {:.2} CPU s; our wall time for all: {:.1} s",
        worst.1,
        worst.0,
        ours_wall.as_secs_f64()
    );
}

fn write_floors(rows: &[Row], path: &Path) {
    let mut out = String::from(
        "# SSIM (image-compare MSSIMSimple on luma) the Pillow reference reaches per image.\n\
         # Written by `cargo bench -p imagestack-processor --bench pipeline -- --floors FILE`;\n\
         # For sources with transparency the jpeg value is the reference settings on the\n\
         # image flattened onto white (what our JPEG encodes; the reference dropped alpha).\n\
         # tests/pipeline_images.rs requires ours >= these - 0.005.\n\
         file\twebp\tjpeg\n",
    );
    for r in rows {
        let Some(s) = &r.reference else { continue };
        out.push_str(&format!(
            "{}\t{:.5}\t{:.5}\n",
            r.file,
            s.ssim.get("webp").copied().unwrap_or(0.0),
            s.ssim
                .get("jpeg_white")
                .or(s.ssim.get("jpeg"))
                .copied()
                .unwrap_or(0.0)
        ));
    }
    std::fs::write(path, out).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    eprintln!("wrote {}", path.display());
}

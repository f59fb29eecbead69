//! The benchmark: our pipeline and the Pillow reference over a directory of
//! images (default `../shared/images` from the repository root), side by
//! side, on one core. Not a test: it prints tables.
//!
//! ```text
//! processor/scripts/bench.sh                      # pinned to one core, venv set up
//! processor/scripts/bench.sh --mosaic             # the 24 MP whole-upload budget
//! cargo bench -p imagestack-processor --bench pipeline -- [DIR] [--floors FILE]
//!     [--no-reference] [--reference-cache DIR]
//! ```
//!
//! Both sides make every format (`BENCH_FORMATS`, default all four) at full
//! size and at every width (`BENCH_WIDTHS`, default the pipeline's; `none`
//! for full size only). Ours runs the pipeline's defaults (`BENCH_WEBP_METHOD`
//! overrides the WebP method). The reference runs `scripts/bench_reference.py`
//! with `$BENCH_PYTHON` (default: the venv made by `scripts/bench.sh`): the
//! reference Lambda's settings for WebP, JPEG and PNG, Pillow's AVIF plugin
//! at its defaults, widths resampled with Pillow's Lanczos.
//!
//! Quality: SSIMULACRA2 (the `ssimulacra2` crate, on RGB with alpha on
//! white) and SSIM (image-compare, luma) of every lossy rendition against
//! the image its encoder was given: ours against the oriented source or our
//! resampled variant, the reference's against the source as Pillow decoded it
//! (no orientation; its JPEG dropped alpha) or Pillow's resampled variant.
//! AVIF renditions are decoded for scoring by Pillow (the `image` crate here
//! has no AVIF decoder).
//!
//! `--floors FILE` writes the reference's per-image full-size SSIM (the test
//! data of `tests/pipeline_images.rs`).
//!
//! `--sweep` instead compares encoder settings (README, "Encoder choices"):
//! every image cut to its central ~2 MP (alpha onto white), each JPEG, WebP and AVIF variant at
//! several qualities against Pillow's, by CPU, bytes and SSIMULACRA2.

#[path = "../tests/common/quality.rs"]
mod quality;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use image::{DynamicImage, GenericImageView, RgbImage};
use imagestack_contract::Format;
use imagestack_processor::deadline::Deadline;
use imagestack_processor::pipeline::{self, Settings};
use imagestack_processor::{cpu, decode, encode, resize};

/// A rendition: a format at full size (`None`) or at a variant width.
type Key = (Format, Option<u32>);

#[derive(Default, Clone)]
struct Enc {
    cpu: f64,
    bytes: u64,
    /// Megapixels of the rendition.
    mp: f64,
    s2: Option<f64>,
    ssim: Option<f64>,
}

#[derive(Default, Clone)]
struct Side {
    decode: f64,
    resize: f64,
    enc: BTreeMap<Key, Enc>,
    /// Reference only: SSIM of its JPEG settings on the image flattened onto
    /// white (for the floors of transparent images).
    jpeg_white_ssim: Option<f64>,
}

impl Side {
    fn encode_cpu(&self, pick: impl Fn(&Key) -> bool) -> f64 {
        self.enc
            .iter()
            .filter(|(k, _)| pick(k))
            .map(|(_, e)| e.cpu)
            .sum()
    }
    /// Decode, resize and every rendition.
    fn total_cpu(&self) -> f64 {
        self.decode + self.resize + self.encode_cpu(|_| true)
    }
    /// Decode and the full-size WebP, JPEG and PNG (what the pipeline made before widths and AVIF).
    fn classic_cpu(&self) -> f64 {
        self.decode + self.encode_cpu(|(f, w)| w.is_none() && *f != Format::Avif)
    }
}

struct Row {
    file: String,
    width: u32,
    height: u32,
    megapixels: f64,
    input_bytes: u64,
    ours: Side,
    reference: Option<Side>,
}

const LOSSY: [Format; 3] = [Format::Webp, Format::Jpeg, Format::Avif];

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    let mut dir: Option<PathBuf> = None;
    let mut floors: Option<PathBuf> = None;
    let mut with_reference = true;
    let mut reference_cache: Option<PathBuf> = None;
    let mut sweep = false;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--floors" => floors = args.next().map(PathBuf::from),
            "--no-reference" => with_reference = false,
            "--reference-cache" => reference_cache = args.next().map(PathBuf::from),
            "--sweep" => sweep = true,
            _ => dir = Some(PathBuf::from(a)),
        }
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = dir.unwrap_or_else(|| manifest.join("../../shared/images"));
    let work = std::env::temp_dir().join(format!("imagestack-bench-{}", std::process::id()));
    if sweep {
        sweep::run(&dir, &work);
        let _ = std::fs::remove_dir_all(&work);
        return;
    }
    let formats = std::env::var("BENCH_FORMATS").ok().map_or_else(
        || Format::ALL.to_vec(),
        |f| {
            f.split(',')
                .filter_map(|x| x.parse::<Format>().ok())
                .collect::<Vec<_>>()
        },
    );
    let defaults = Settings::default();
    let widths = match std::env::var("BENCH_WIDTHS").ok().as_deref() {
        None => defaults.widths.clone(),
        Some("none") => Vec::new(),
        Some(list) => list.split(',').filter_map(|w| w.parse().ok()).collect(),
    };
    let webp_method = std::env::var("BENCH_WEBP_METHOD")
        .ok()
        .and_then(|m| m.parse().ok())
        .unwrap_or(defaults.webp_method);
    // The pipeline's defaults, one encoder at a time.
    let settings = Settings {
        formats,
        widths,
        webp_method,
        parallelism: 1,
        time_budget: Duration::from_secs(3600),
        ..defaults
    };
    eprintln!(
        "settings: formats {:?}, widths {:?}, webp q{} m{}, jpeg q{}, avif q{} speed {} (by size: see encode::avif)",
        settings.formats,
        settings.widths,
        settings.webp_quality,
        settings.webp_method,
        settings.jpeg_quality,
        settings.avif_quality,
        settings.avif_speed,
    );

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
            &settings,
            &mut rows,
        );
    }
    if settings.formats.contains(&Format::Avif) {
        decode_avif(&work);
    }
    eprintln!("computing SSIMULACRA2 and SSIM");
    for row in &mut rows {
        score(row, &dir, &work, &settings.widths);
    }
    print_tables(&rows, &settings, ours_rss, ref_rss, ours_wall);
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

fn file_name(path: &Path) -> String {
    path.file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
}

/// `<side>/<format>/<stem>[-w<width>].<ext>`
fn rendition_path(side: &Path, stem: &str, (format, width): Key) -> PathBuf {
    let suffix = width.map_or_else(String::new, |w| format!("-w{w}"));
    side.join(format.as_str())
        .join(format!("{stem}{suffix}.{}", format.extension()))
}

fn run_ours(path: &Path, settings: &Settings, out: &Path) -> Row {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let optimized =
        pipeline::optimize(&bytes, settings).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut side = Side {
        decode: optimized.decode_cpu.as_secs_f64(),
        resize: optimized.resize_cpu.as_secs_f64(),
        ..Side::default()
    };
    for r in &optimized.renditions {
        let key = (r.format, r.variant);
        let target = rendition_path(out, &stem(path), key);
        if let Some(parent) = target.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        std::fs::write(&target, &r.bytes).unwrap_or_else(|e| panic!("{}: {e}", target.display()));
        side.enc.insert(
            key,
            Enc {
                cpu: r.encode_cpu.as_secs_f64(),
                bytes: r.bytes.len() as u64,
                mp: f64::from(r.width) * f64::from(r.height) / 1e6,
                ..Enc::default()
            },
        );
    }
    eprintln!(
        "  {:<44} {:>6.2} s cpu (decode {:.2}, resize {:.2}, {}; full-size webp/jpeg/png {:.2})",
        file_name(path),
        side.total_cpu(),
        side.decode,
        side.resize,
        settings
            .formats
            .iter()
            .map(|&f| format!("{} {:.2}", f.as_str(), side.encode_cpu(|(g, _)| *g == f)))
            .collect::<Vec<_>>()
            .join(", "),
        side.classic_cpu(),
    );
    Row {
        file: file_name(path),
        width: optimized.width,
        height: optimized.height,
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

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/bench_reference.py")
}

fn list(values: &[String]) -> String {
    if values.is_empty() {
        "none".to_string()
    } else {
        values.join(",")
    }
}

/// Runs the Pillow script; returns its peak RSS.
/// With `cache`, a previous run's output is reused (its renditions are in `cache`).
fn run_reference(
    dir: &Path,
    out: &Path,
    cache: Option<&Path>,
    settings: &Settings,
    rows: &mut [Row],
) -> Option<u64> {
    if let Some(cache) = cache
        && let Ok(stdout) = std::fs::read_to_string(cache.join("reference.jsonl"))
    {
        eprintln!("  (reusing {})", cache.display());
        let _ = std::fs::remove_dir_all(out);
        let _ = Command::new("cp").arg("-r").arg(cache).arg(out).status();
        return parse_reference(&stdout, rows);
    }
    let formats: Vec<String> = settings
        .formats
        .iter()
        .map(|f| f.as_str().to_string())
        .collect();
    let widths: Vec<String> = settings.widths.iter().map(u32::to_string).collect();
    let output = match Command::new(python())
        .arg(script())
        .arg(dir)
        .arg(out)
        .arg("--formats")
        .arg(list(&formats))
        .arg("--widths")
        .arg(list(&widths))
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

/// One JSON object per image: `decode_s`, `resize_s`, and per rendition
/// `<format>_s` / `<format>_bytes` (full size) or `<format>_w<width>_s` /
/// `<format>_w<width>_bytes`; then one with the peak RSS.
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
        let mut side = Side {
            decode: v["decode_s"].as_f64().unwrap_or(0.0),
            resize: v["resize_s"].as_f64().unwrap_or(0.0),
            ..Side::default()
        };
        let Some(obj) = v.as_object() else { continue };
        for (name, value) in obj {
            let Some(prefix) = name.strip_suffix("_bytes") else {
                continue;
            };
            let (format, width) = match prefix.split_once("_w") {
                Some((f, w)) => (f, w.parse::<u32>().ok()),
                None => (prefix, None),
            };
            let Ok(format) = format.parse::<Format>() else {
                continue;
            };
            // The reference's width, height of its variants: same rule as ours.
            let (w, h) = match width {
                Some(w) => (w, resize::variant_height(row.width, row.height, w)),
                None => (row.width, row.height),
            };
            side.enc.insert(
                (format, width),
                Enc {
                    cpu: v[format!("{prefix}_s")].as_f64().unwrap_or(0.0),
                    bytes: value.as_u64().unwrap_or(0),
                    mp: f64::from(w) * f64::from(h) / 1e6,
                    ..Enc::default()
                },
            );
        }
        row.reference = Some(side);
    }
    rss
}

/// Pillow decodes every `.avif` under `work` to a `.avif.png` beside it.
fn decode_avif(work: &Path) {
    match Command::new(python())
        .arg(script())
        .arg("--decode-avif")
        .arg(work)
        .output()
    {
        Ok(o) if o.status.success() => {}
        Ok(o) => eprintln!(
            "AVIF decoding failed (no AVIF scores): {}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => eprintln!("AVIF decoding not run ({}: {e}): no AVIF scores", python()),
    }
}

fn load(path: &Path) -> Option<DynamicImage> {
    let decoded_avif = path.with_extension("avif.png");
    let path = if path.extension().is_some_and(|e| e == "avif") {
        &decoded_avif
    } else {
        path
    };
    image::load_from_memory(&std::fs::read(path).ok()?).ok()
}

/// Alpha composited onto white, as 8-bit RGB.
fn rgb_on_white(image: &DynamicImage) -> RgbImage {
    encode::flatten(image, [255, 255, 255]).to_rgb8()
}

/// Alpha dropped (what the reference's `convert("RGB")` encodes), as RGB.
fn rgb_without_alpha(image: &DynamicImage) -> RgbImage {
    image.to_rgb8()
}

/// SSIMULACRA2 of `candidate` against `reference` (sRGB, 8-bit).
fn ssimulacra2(reference: &RgbImage, candidate: &RgbImage) -> Option<f64> {
    let convert = |image: &RgbImage| {
        let data: Vec<[f32; 3]> = image
            .pixels()
            .map(|p| p.0.map(|c| f32::from(c) / 255.0))
            .collect();
        ssimulacra2::Rgb::new(
            data,
            image.width() as usize,
            image.height() as usize,
            ssimulacra2::TransferCharacteristic::SRGB,
            ssimulacra2::ColorPrimaries::BT709,
        )
        .ok()
    };
    if reference.dimensions() != candidate.dimensions() {
        return None;
    }
    ssimulacra2::compute_frame_ssimulacra2(convert(reference)?, convert(candidate)?).ok()
}

/// What a rendition is scored against.
struct Source {
    rgb: RgbImage,
    luma: image::GrayImage,
}

impl Source {
    fn new(image: &DynamicImage, drop_alpha: bool) -> Source {
        if drop_alpha {
            Source {
                rgb: rgb_without_alpha(image),
                luma: quality::luma_without_alpha(image),
            }
        } else {
            Source {
                rgb: rgb_on_white(image),
                luma: quality::luma_on_white(image),
            }
        }
    }
    fn score(&self, rendition: &Path, enc: &mut Enc) {
        let Some(img) = load(rendition) else { return };
        if img.dimensions() != self.rgb.dimensions() {
            return;
        }
        enc.s2 = ssimulacra2(&self.rgb, &rgb_on_white(&img));
        enc.ssim = Some(quality::ssim(&self.luma, &quality::luma_on_white(&img)));
    }
}

fn score(row: &mut Row, dir: &Path, work: &Path, widths: &[u32]) {
    let source_bytes = std::fs::read(dir.join(&row.file)).unwrap_or_default();
    let stem = stem(Path::new(&row.file));
    let Ok(oriented) = decode::decode(&source_bytes, &Default::default()) else {
        return;
    };
    // Ours: the oriented source and our resampled variants.
    let deadline = Deadline::after(Duration::from_secs(3600));
    let variants = resize::variants(&oriented.image, widths, 1, &deadline)
        .map(|(v, _, _)| v)
        .unwrap_or_default();
    let mut ours_sources: BTreeMap<Option<u32>, Source> = BTreeMap::new();
    ours_sources.insert(None, Source::new(&oriented.image, false));
    for v in &variants {
        ours_sources.insert(Some(v.width), Source::new(&v.image, false));
    }
    for (&(format, width), enc) in row.ours.enc.iter_mut() {
        if !LOSSY.contains(&format) {
            continue;
        }
        if let Some(source) = ours_sources.get(&width) {
            source.score(
                &rendition_path(&work.join("ours"), &stem, (format, width)),
                enc,
            );
        }
    }
    drop(ours_sources);
    // The reference's: the source as Pillow decoded it and Pillow's variants.
    let (Some(reference), Some(raw)) = (
        row.reference.as_mut(),
        image::load_from_memory(&source_bytes).ok(),
    ) else {
        return;
    };
    let ref_dir = work.join("reference");
    for (&(format, width), enc) in reference.enc.iter_mut() {
        if !LOSSY.contains(&format) {
            continue;
        }
        let image = match width {
            None => Some(raw.clone()),
            Some(w) => load(&ref_dir.join("source").join(format!("{stem}-w{w}.png"))),
        };
        let Some(image) = image else { continue };
        Source::new(&image, format == Format::Jpeg)
            .score(&rendition_path(&ref_dir, &stem, (format, width)), enc);
    }
    // For the floors: the reference settings on the white-flattened image,
    // when the source has transparency (see bench_reference.py).
    let p = ref_dir.join("jpeg_white").join(format!("{stem}.jpg"));
    if let Some(img) = load(&p) {
        let source = quality::luma_on_white(&raw);
        if source.dimensions() == img.dimensions() {
            reference.jpeg_white_ssim = Some(quality::ssim(&source, &quality::luma_on_white(&img)));
        }
    }
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{v:.digits$}"))
}

fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    (n > 0).then(|| sum / n as f64)
}

fn size_label(width: Option<u32>) -> String {
    width.map_or_else(|| "full".to_string(), |w| format!("w{w}"))
}

fn print_tables(
    rows: &[Row],
    settings: &Settings,
    ours_rss: u64,
    ref_rss: Option<u64>,
    ours_wall: Duration,
) {
    let mp: f64 = rows.iter().map(|r| r.megapixels).sum();
    let input: f64 = rows.iter().map(|r| r.input_bytes as f64).sum();
    let has_ref = !rows.is_empty() && rows.iter().all(|r| r.reference.is_some());
    let full = |side: &Side, f: Format| side.enc.get(&(f, None)).cloned();

    println!();
    println!(
        "Per image (CPU seconds, one core; full-size bytes ours/ref; full-size SSIMULACRA2 ours/ref):"
    );
    let lossy: Vec<Format> = LOSSY
        .into_iter()
        .filter(|f| settings.formats.contains(f))
        .collect();
    let mut header = String::from(
        "| image | MP | ours all s | ref all s | ours 3 full-size s | ref 3 full-size s |",
    );
    for f in &settings.formats {
        header.push_str(&format!(" {} bytes |", f.as_str()));
    }
    for f in &lossy {
        header.push_str(&format!(" {} SSIMULACRA2 |", f.as_str()));
    }
    println!("{header}");
    println!(
        "|---|---:|---:|---:|---:|---:|{}",
        "---:|".repeat(settings.formats.len() + lossy.len())
    );
    for r in rows {
        let reference = r.reference.as_ref();
        let mut line = format!(
            "| {} | {:.1} | {:.2} | {} | {:.2} | {} |",
            r.file,
            r.megapixels,
            r.ours.total_cpu(),
            opt(reference.map(Side::total_cpu), 2),
            r.ours.classic_cpu(),
            opt(reference.map(Side::classic_cpu), 2),
        );
        for &f in &settings.formats {
            let ratio = full(&r.ours, f)
                .zip(reference.and_then(|s| full(s, f)))
                .map(|(o, x)| o.bytes as f64 / x.bytes.max(1) as f64);
            line.push_str(&format!(" {} |", opt(ratio, 2)));
        }
        for &f in &lossy {
            line.push_str(&format!(
                " {}/{} |",
                opt(full(&r.ours, f).and_then(|e| e.s2), 1),
                opt(reference.and_then(|s| full(s, f)).and_then(|e| e.s2), 1)
            ));
        }
        println!("{line}");
    }

    println!();
    println!(
        "Per format and width, over {} images, {:.1} MP, {:.1} MB in (one core; CPU s per megapixel of the rendition; bytes summed; quality means over the renditions both sides made):",
        rows.len(),
        mp,
        input / 1e6
    );
    println!(
        "| rendition | n | ours CPU s/MP | ref CPU s/MP | CPU ours/ref | bytes ours/ref | SSIMULACRA2 ours | SSIMULACRA2 ref | SSIM ours | SSIM ref |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let step = |name: &str, ours: f64, reference: Option<f64>, megapixels: f64| {
        println!(
            "| {name} | {} | {:.3} | {} | {} | | | | | |",
            rows.len(),
            ours / megapixels,
            opt(reference.map(|c| c / megapixels), 3),
            opt(reference.map(|c| ours / c), 2),
        );
    };
    let ref_sum = |f: &dyn Fn(&Side) -> f64| {
        has_ref.then(|| {
            rows.iter()
                .filter_map(|r| r.reference.as_ref().map(f))
                .sum::<f64>()
        })
    };
    step(
        "decode",
        rows.iter().map(|r| r.ours.decode).sum(),
        ref_sum(&|s| s.decode),
        mp,
    );
    let variant_mp: f64 = rows
        .iter()
        .map(|r| {
            r.ours
                .enc
                .iter()
                .filter(|((f, w), _)| *f == settings.formats[0] && w.is_some())
                .map(|(_, e)| e.mp)
                .sum::<f64>()
        })
        .sum();
    if variant_mp > 0.0 {
        step(
            "resize (all widths, per MP of variants)",
            rows.iter().map(|r| r.ours.resize).sum(),
            ref_sum(&|s| s.resize),
            variant_mp,
        );
    }
    let mut sizes: Vec<Option<u32>> = vec![None];
    let mut ws = settings.widths.clone();
    ws.sort_unstable_by(|a, b| b.cmp(a));
    sizes.extend(ws.into_iter().map(Some));
    for &f in &settings.formats {
        for &size in &sizes {
            let key = (f, size);
            // Renditions both sides made (the reference's may be missing).
            let pairs: Vec<(&Enc, Option<&Enc>)> = rows
                .iter()
                .filter_map(|r| {
                    r.ours
                        .enc
                        .get(&key)
                        .map(|o| (o, r.reference.as_ref().and_then(|s| s.enc.get(&key))))
                })
                .collect();
            if pairs.is_empty() {
                continue;
            }
            let n = pairs.len();
            let ours_mp: f64 = pairs.iter().map(|(o, _)| o.mp).sum();
            let ours_cpu: f64 = pairs.iter().map(|(o, _)| o.cpu).sum();
            let both = pairs.iter().all(|(_, x)| x.is_some());
            let ref_cpu = both.then(|| {
                pairs
                    .iter()
                    .filter_map(|(_, x)| x.map(|x| x.cpu))
                    .sum::<f64>()
            });
            let bytes = both.then(|| {
                pairs.iter().map(|(o, _)| o.bytes as f64).sum::<f64>()
                    / pairs
                        .iter()
                        .filter_map(|(_, x)| x.map(|x| x.bytes as f64))
                        .sum::<f64>()
                        .max(1.0)
            });
            let scored: Vec<(&Enc, &Enc)> = pairs
                .iter()
                .filter_map(|(o, x)| x.map(|x| (*o, x)))
                .filter(|(o, x)| o.s2.is_some() && x.s2.is_some())
                .collect();
            let (s2_ours, s2_ref, ssim_ours, ssim_ref) = if has_ref {
                (
                    mean(scored.iter().filter_map(|(o, _)| o.s2)),
                    mean(scored.iter().filter_map(|(_, x)| x.s2)),
                    mean(scored.iter().filter_map(|(o, _)| o.ssim)),
                    mean(scored.iter().filter_map(|(_, x)| x.ssim)),
                )
            } else {
                (
                    mean(pairs.iter().filter_map(|(o, _)| o.s2)),
                    None,
                    mean(pairs.iter().filter_map(|(o, _)| o.ssim)),
                    None,
                )
            };
            println!(
                "| {} {} | {n} | {:.3} | {} | {} | {} | {} | {} | {} | {} |",
                f.as_str(),
                size_label(size),
                ours_cpu / ours_mp,
                opt(ref_cpu.map(|c| c / ours_mp), 3),
                opt(ref_cpu.map(|c| ours_cpu / c), 2),
                opt(bytes, 3),
                opt(s2_ours, 2),
                opt(s2_ref, 2),
                opt(ssim_ours, 4),
                opt(ssim_ref, 4),
            );
        }
    }
    let ours_total: f64 = rows.iter().map(|r| r.ours.total_cpu()).sum();
    let ref_total = ref_sum(&Side::total_cpu);
    let ours_classic: f64 = rows.iter().map(|r| r.ours.classic_cpu()).sum();
    let ref_classic = ref_sum(&Side::classic_cpu);
    println!(
        "| everything (per MP of source) | {} | {:.3} | {} | {} | | | | | |",
        rows.len(),
        ours_total / mp,
        opt(ref_total.map(|c| c / mp), 3),
        opt(ref_total.map(|c| ours_total / c), 2),
    );
    println!(
        "| decode + full-size webp, jpeg, png | {} | {:.3} | {} | {} | | | | | |",
        rows.len(),
        ours_classic / mp,
        opt(ref_classic.map(|c| c / mp), 3),
        opt(ref_classic.map(|c| ours_classic / c), 2),
    );

    if settings.formats.contains(&Format::Avif) && settings.formats.contains(&Format::Webp) {
        println!();
        println!(
            "What a 400-px-wide phone column downloads (bytes): the full-size WebP vs the 640-wide AVIF:"
        );
        println!(
            "| image | size | full-size WebP | 640-wide WebP | 640-wide AVIF | AVIF-640 / WebP-full |"
        );
        println!("|---|---|---:|---:|---:|---:|");
        let (mut webp_sum, mut avif_sum) = (0u64, 0u64);
        for r in rows {
            let (Some(webp), Some(avif)) = (
                r.ours.enc.get(&(Format::Webp, None)),
                r.ours.enc.get(&(Format::Avif, Some(640))),
            ) else {
                continue;
            };
            webp_sum += webp.bytes;
            avif_sum += avif.bytes;
            println!(
                "| {} | {}×{} | {} | {} | {} | {:.3} |",
                r.file,
                r.width,
                r.height,
                webp.bytes,
                r.ours
                    .enc
                    .get(&(Format::Webp, Some(640)))
                    .map_or_else(|| "-".to_string(), |e| e.bytes.to_string()),
                avif.bytes,
                avif.bytes as f64 / webp.bytes.max(1) as f64
            );
        }
        if webp_sum > 0 {
            println!(
                "| all of them | | {webp_sum} | | {avif_sum} | {:.3} |",
                avif_sum as f64 / webp_sum as f64
            );
        }
    }

    println!();
    let worst = rows
        .iter()
        .map(|r| (r.ours.total_cpu(), r.file.as_str()))
        .fold((0.0, ""), |a, b| if b.0 > a.0 { b } else { a });
    println!(
        "images/s (CPU, everything): ours {:.2}, reference {}",
        rows.len() as f64 / ours_total,
        opt(ref_total.map(|c| rows.len() as f64 / c), 2)
    );
    println!(
        "peak RSS: ours {:.0} MB, reference {}",
        ours_rss as f64 / 1e6,
        ref_rss.map_or_else(|| "-".to_string(), |r| format!("{:.0} MB", r as f64 / 1e6))
    );
    println!(
        "slowest image (ours, everything): {} at {:.2} CPU s; our wall time for all: {:.1} s",
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
        let ssim = |f: Format| s.enc.get(&(f, None)).and_then(|e| e.ssim);
        out.push_str(&format!(
            "{}\t{:.5}\t{:.5}\n",
            r.file,
            ssim(Format::Webp).unwrap_or(0.0),
            s.jpeg_white_ssim.or(ssim(Format::Jpeg)).unwrap_or(0.0)
        ));
    }
    std::fs::write(path, out).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    eprintln!("wrote {}", path.display());
}

/// `--sweep`: encoder settings against Pillow on ~2 MP crops.
mod sweep {
    use super::*;
    use imagestack_processor::encode::{avif, jpeg, webp};

    /// Crops are at most this many pixels (central, 16-aligned).
    const MAX_PIXELS: f64 = 2.0e6;

    struct Crop {
        name: String,
        image: DynamicImage,
        rgb: RgbImage,
        mp: f64,
    }

    /// One encoded crop.
    struct Point {
        cpu: f64,
        bytes: u64,
        s2: f64,
    }

    fn crops(dir: &Path, out: &Path) -> Vec<Crop> {
        let _ = std::fs::create_dir_all(out);
        let mut crops = Vec::new();
        for path in image_files(dir) {
            let bytes = std::fs::read(&path).unwrap_or_default();
            let Ok(decoded) = decode::decode(&bytes, &Default::default()) else {
                continue;
            };
            let mut image = decoded.image;
            let (w, h) = image.dimensions();
            let pixels = f64::from(w) * f64::from(h);
            if pixels > MAX_PIXELS {
                let scale = (MAX_PIXELS / pixels).sqrt();
                let (cw, ch) = (
                    (f64::from(w) * scale) as u32 & !15,
                    (f64::from(h) * scale) as u32 & !15,
                );
                image = image.crop_imm(((w - cw) / 2) & !15, ((h - ch) / 2) & !15, cw, ch);
            }
            // Opaque crops (alpha onto white), so that Pillow's JPEG, which
            // drops alpha, encodes the same picture as ours.
            let image = encode::flatten(&image, [255, 255, 255]);
            let name = stem(&path);
            image
                .save(out.join(format!("{name}.png")))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            crops.push(Crop {
                rgb: rgb_on_white(&image),
                mp: f64::from(image.width()) * f64::from(image.height()) / 1e6,
                image,
                name,
            });
        }
        crops
    }

    /// Best of three runs below 1 MP, else one.
    fn timed(crop: &Crop, mut encode: impl FnMut() -> Vec<u8>) -> (f64, Vec<u8>) {
        let runs = if crop.mp < 1.0 { 3 } else { 1 };
        let mut best = f64::MAX;
        let mut out = Vec::new();
        for _ in 0..runs {
            let started = cpu::thread_cpu();
            out = encode();
            best = best.min((cpu::thread_cpu() - started).as_secs_f64());
        }
        (best, out)
    }

    fn score(crop: &Crop, decoded: Option<DynamicImage>) -> f64 {
        decoded
            .and_then(|img| ssimulacra2(&crop.rgb, &rgb_on_white(&img)))
            .unwrap_or(f64::NAN)
    }

    pub fn run(dir: &Path, work: &Path) {
        let src = work.join("sweep-src");
        let crops = crops(dir, &src);
        let mp: f64 = crops.iter().map(|c| c.mp).sum();
        eprintln!("sweep: {} crops, {mp:.1} MP", crops.len());
        // Pillow on the same (opaque) crops.
        let reference = work.join("sweep-reference");
        let output = Command::new(python())
            .arg(script())
            .arg(&src)
            .arg(&reference)
            .args(["--formats", "webp,jpeg,avif", "--widths", "none"])
            .output()
            .unwrap_or_else(|e| panic!("{}: {e}; run scripts/bench.sh", python()));
        assert!(output.status.success(), "reference failed");
        decode_avif(&reference);
        let stdout = String::from_utf8_lossy(&output.stdout);
        let mut pillow: BTreeMap<(Format, String), Point> = BTreeMap::new();
        for line in stdout.lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let Some(crop) = crops
                .iter()
                .find(|c| v["file"] == format!("{}.png", c.name))
            else {
                continue;
            };
            for f in LOSSY {
                let path = rendition_path(&reference, &crop.name, (f, None));
                let s2 = if f == Format::Jpeg {
                    load(&path)
                        .and_then(|img| {
                            ssimulacra2(&rgb_without_alpha(&crop.image), &img.to_rgb8())
                        })
                        .unwrap_or(f64::NAN)
                } else {
                    score(crop, load(&path))
                };
                pillow.insert(
                    (f, crop.name.clone()),
                    Point {
                        cpu: v[format!("{}_s", f.as_str())].as_f64().unwrap_or(0.0),
                        bytes: v[format!("{}_bytes", f.as_str())].as_u64().unwrap_or(0),
                        s2,
                    },
                );
            }
        }
        let deadline = Deadline::after(Duration::from_secs(3600));
        let white = [255, 255, 255];
        let jpeg_variants: [(&str, jpeg::Tuning); 6] = [
            (
                "mozjpeg progressive + scan search (before)",
                jpeg::Tuning {
                    fastest_profile: false,
                    optimize_scans: true,
                    ..jpeg::Tuning::DEFAULT
                },
            ),
            (
                "mozjpeg fastest, baseline",
                jpeg::Tuning {
                    progressive: false,
                    ..jpeg::Tuning::DEFAULT
                },
            ),
            (
                "mozjpeg fastest, progressive (chosen)",
                jpeg::Tuning::DEFAULT,
            ),
            (
                "mozjpeg fastest, progressive, mozjpeg tables",
                jpeg::Tuning {
                    tables: 3,
                    ..jpeg::Tuning::DEFAULT
                },
            ),
            (
                "mozjpeg fastest, progressive, 4:4:4",
                jpeg::Tuning {
                    subsample_chroma: false,
                    ..jpeg::Tuning::DEFAULT
                },
            ),
            (
                "mozjpeg trellis + mozjpeg tables, progressive",
                jpeg::Tuning {
                    fastest_profile: false,
                    trellis: true,
                    tables: 3,
                    ..jpeg::Tuning::DEFAULT
                },
            ),
        ];
        let mut results: Vec<(String, Format, u8, BTreeMap<String, Point>)> = Vec::new();
        for (label, tuning) in jpeg_variants {
            for q in [75, 80, 85, 88, 91] {
                let points = crops
                    .iter()
                    .map(|c| {
                        let flat = encode::flatten(&c.image, white);
                        let (cpu, bytes) = timed(c, || {
                            jpeg::encode_tuned(&flat, None, q, white, tuning).expect("jpeg")
                        });
                        let s2 = score(c, image::load_from_memory(&bytes).ok());
                        (
                            c.name.clone(),
                            Point {
                                cpu,
                                bytes: bytes.len() as u64,
                                s2,
                            },
                        )
                    })
                    .collect();
                results.push((label.to_string(), Format::Jpeg, q, points));
            }
        }
        let webp_variants: [(&str, u8, webp::Tuning); 7] = [
            ("libwebp method 4 (default)", 4, webp::Tuning::DEFAULT),
            ("libwebp method 5", 5, webp::Tuning::DEFAULT),
            ("libwebp method 6", 6, webp::Tuning::DEFAULT),
            (
                "libwebp method 4, sns 25",
                4,
                webp::Tuning {
                    sns_strength: Some(25),
                    ..webp::Tuning::DEFAULT
                },
            ),
            (
                "libwebp method 4, sns 80",
                4,
                webp::Tuning {
                    sns_strength: Some(80),
                    ..webp::Tuning::DEFAULT
                },
            ),
            (
                "libwebp method 4, autofilter",
                4,
                webp::Tuning {
                    autofilter: true,
                    ..webp::Tuning::DEFAULT
                },
            ),
            (
                "libwebp method 4, filter 30",
                4,
                webp::Tuning {
                    filter_strength: Some(30),
                    ..webp::Tuning::DEFAULT
                },
            ),
        ];
        for (label, method, tuning) in webp_variants {
            for q in [80, 85, 88] {
                let points = crops
                    .iter()
                    .map(|c| {
                        let m = webp::effective_method(method, c.image.color().has_alpha());
                        let (cpu, bytes) = timed(c, || {
                            webp::encode_tuned(&c.image, None, q, m, tuning, &deadline)
                                .expect("webp")
                        });
                        let s2 = score(c, image::load_from_memory(&bytes).ok());
                        (
                            c.name.clone(),
                            Point {
                                cpu,
                                bytes: bytes.len() as u64,
                                s2,
                            },
                        )
                    })
                    .collect();
                results.push((label.to_string(), Format::Webp, q, points));
            }
        }
        // AVIF: written, decoded by Pillow, then scored.
        let avif_dir = work.join("sweep-avif");
        let mut pending = Vec::new();
        for (speed, qualities) in [(8u8, &[55u8, 60, 62, 65, 70][..]), (9, &[62]), (10, &[62])] {
            for &q in qualities {
                let label = format!("rav1e speed {speed}");
                let d = avif_dir.join(format!("s{speed}-q{q}"));
                let _ = std::fs::create_dir_all(&d);
                let mut points = BTreeMap::new();
                for c in &crops {
                    let (cpu, bytes) = timed(c, || {
                        avif::encode_at_speed(&c.image, q, speed, &deadline).expect("avif")
                    });
                    let _ = std::fs::write(d.join(format!("{}.avif", c.name)), &bytes);
                    points.insert(
                        c.name.clone(),
                        Point {
                            cpu,
                            bytes: bytes.len() as u64,
                            s2: f64::NAN,
                        },
                    );
                }
                pending.push((label, q, d, points));
            }
        }
        decode_avif(&avif_dir);
        for (label, q, d, mut points) in pending {
            for c in &crops {
                if let Some(p) = points.get_mut(&c.name) {
                    p.s2 = score(c, load(&d.join(format!("{}.avif", c.name))));
                }
            }
            results.push((label, Format::Avif, q, points));
        }
        report(&crops, &pillow, &results);
    }

    /// Bytes needed for `target` SSIMULACRA2, interpolating log(bytes) between
    /// the two nearest qualities (extrapolating past the ends).
    fn bytes_at(points: &[(f64, f64)], target: f64) -> Option<f64> {
        let mut pts: Vec<(f64, f64)> = points.iter().copied().filter(|p| p.0.is_finite()).collect();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        if pts.len() < 2 {
            return None;
        }
        let i = pts
            .windows(2)
            .position(|w| target <= w[1].0)
            .unwrap_or(pts.len() - 2);
        let ((s0, b0), (s1, b1)) = (pts[i], pts[i + 1]);
        // Not more than 3 points past the qualities swept.
        if target > s1 + 3.0 || target < s0 - 3.0 {
            return None;
        }
        if (s1 - s0).abs() < 1e-9 {
            return Some(b0);
        }
        let t = (target - s0) / (s1 - s0);
        Some((b0.ln() + (b1.ln() - b0.ln()) * t).exp())
    }

    fn report(
        crops: &[Crop],
        pillow: &BTreeMap<(Format, String), Point>,
        results: &[(String, Format, u8, BTreeMap<String, Point>)],
    ) {
        let apart =
            std::env::var("BENCH_SWEEP_APART").unwrap_or_else(|_| "plasma_SafeLanding".into());
        println!();
        println!(
            "Encoder settings on {} crops of at most 2 MP ({:.1} MP): CPU per MP, bytes and SSIMULACRA2 against Pillow's same format (for AVIF: against Pillow's WebP). \"matched\": bytes at Pillow's SSIMULACRA2 per image, summed; \"apart\": without images whose name contains `{apart}`.",
            crops.len(),
            crops.iter().map(|c| c.mp).sum::<f64>()
        );
        println!(
            "| format | settings | quality | CPU s/MP | CPU × Pillow | bytes × Pillow | SSIMULACRA2 mean | Δ mean | Δ worst | matched | matched apart |"
        );
        println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        let mp: f64 = crops.iter().map(|c| c.mp).sum();
        for f in LOSSY {
            let against = if f == Format::Avif { Format::Webp } else { f };
            let reference = |name: &str| pillow.get(&(against, name.to_string()));
            let ref_cpu: f64 = crops
                .iter()
                .filter_map(|c| pillow.get(&(f, c.name.clone())))
                .map(|p| p.cpu)
                .sum();
            let ref_bytes: f64 = crops
                .iter()
                .filter_map(|c| reference(&c.name))
                .map(|p| p.bytes as f64)
                .sum();
            let own_bytes: f64 = crops
                .iter()
                .filter_map(|c| pillow.get(&(f, c.name.clone())))
                .map(|p| p.bytes as f64)
                .sum();
            println!(
                "| {} | Pillow 13 | {} | {:.4} | 1.0× | {:.3} | {} | | | | |",
                f.as_str(),
                match f {
                    Format::Jpeg => "85, optimize",
                    Format::Webp => "85, method 6",
                    _ => "defaults",
                },
                ref_cpu / mp,
                own_bytes / ref_bytes,
                opt(
                    mean(
                        crops
                            .iter()
                            .filter_map(|c| pillow.get(&(f, c.name.clone())))
                            .map(|p| p.s2)
                    ),
                    2
                ),
            );
            for (label, format, q, points) in results.iter().filter(|r| r.1 == f) {
                let cpu: f64 = points.values().map(|p| p.cpu).sum();
                let bytes: f64 = points.values().map(|p| p.bytes as f64).sum();
                let deltas: Vec<f64> = crops
                    .iter()
                    .filter_map(|c| Some(points.get(&c.name)?.s2 - reference(&c.name)?.s2))
                    .collect();
                // Matched bytes over this label's qualities.
                let family: Vec<&BTreeMap<String, Point>> = results
                    .iter()
                    .filter(|r| r.0 == *label && r.1 == *format)
                    .map(|r| &r.3)
                    .collect();
                let matched = |keep: &dyn Fn(&str) -> bool| -> Option<f64> {
                    let (mut ours, mut theirs) = (0.0, 0.0);
                    for c in crops.iter().filter(|c| keep(&c.name)) {
                        let r = reference(&c.name)?;
                        let pts: Vec<(f64, f64)> = family
                            .iter()
                            .filter_map(|m| m.get(&c.name).map(|p| (p.s2, p.bytes as f64)))
                            .collect();
                        ours += bytes_at(&pts, r.s2)?;
                        theirs += r.bytes as f64;
                    }
                    (theirs > 0.0).then(|| ours / theirs)
                };
                println!(
                    "| {} | {label} | {q} | {:.4} | {} | {:.3} | {} | {} | {} | {} | {} |",
                    format.as_str(),
                    cpu / mp,
                    if f == Format::Avif {
                        "-".to_string()
                    } else {
                        format!("{:.1}×", cpu / ref_cpu)
                    },
                    bytes / ref_bytes,
                    opt(mean(points.values().map(|p| p.s2)), 2),
                    opt(mean(deltas.iter().copied()), 2),
                    opt(deltas.iter().copied().reduce(f64::min), 1),
                    opt(matched(&|_| true), 3),
                    opt(matched(&|n| !n.contains(&apart)), 3),
                );
            }
        }
    }
}

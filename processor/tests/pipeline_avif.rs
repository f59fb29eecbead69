//! AVIF renditions, decoded back by an independent decoder: libavif's
//! `avifdec` (Debian's libavif-bin, with dav1d), installed by
//! `scripts/lib.sh ensure_packages test`. Each rendition must decode at the
//! dimensions the pipeline recorded, look like its source, keep alpha, stay
//! gray when the source is gray, and carry the AVIF brand.

mod common;

use std::process::Command;
use std::time::Duration;

use common::quality;
use image::{DynamicImage, GenericImageView};
use imagestack_contract::Format;
use imagestack_processor::pipeline::{self, Optimized, Settings};

fn settings(formats: &[Format], widths: &[u32]) -> Settings {
    Settings {
        formats: formats.to_vec(),
        widths: widths.to_vec(),
        time_budget: Duration::from_secs(300),
        ..Settings::default()
    }
}

fn run(bytes: &[u8], formats: &[Format], widths: &[u32]) -> Optimized {
    pipeline::optimize(bytes, &settings(formats, widths)).expect("converts")
}

/// Decode with `avifdec` (to PNG, 8-bit).
fn avifdec(bytes: &[u8]) -> DynamicImage {
    let dir = std::env::temp_dir().join(format!(
        "imagestack-avif-{}-{}",
        std::process::id(),
        common::crc32(bytes)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let (src, dst) = (dir.join("in.avif"), dir.join("out.png"));
    std::fs::write(&src, bytes).unwrap();
    let out = Command::new("avifdec")
        .args(["--depth", "8"])
        .arg(&src)
        .arg(&dst)
        .output()
        .unwrap_or_else(|e| {
            panic!("avifdec not runnable ({e}): apt-get install libavif-bin (scripts/lib.sh does)")
        });
    assert!(
        out.status.success(),
        "avifdec refused the rendition: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let img = image::open(&dst).expect("avifdec wrote a PNG");
    std::fs::remove_dir_all(&dir).ok();
    img
}

/// The ISO-BMFF `ftyp` box names the AVIF brand.
fn assert_avif_container(bytes: &[u8]) {
    assert_eq!(&bytes[4..8], b"ftyp");
    assert_eq!(&bytes[8..12], b"avif", "major brand");
}

fn mean_abs_diff(a: &image::GrayImage, b: &image::GrayImage) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions());
    let sum: u64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(&x, &y)| u64::from(x.abs_diff(y)))
        .sum();
    sum as f64 / a.as_raw().len() as f64
}

#[test]
fn photo_full_size_and_variants_decode_at_the_recorded_size() {
    let bytes = common::read_image("mate_RainDrops_1920x1200.jpg");
    let source = image::load_from_memory(&bytes).unwrap();
    let out = run(&bytes, &[Format::Webp, Format::Avif], &[320, 640]);
    let avif: Vec<_> = out
        .renditions
        .iter()
        .filter(|r| r.format == Format::Avif)
        .collect();
    // 320, 640, then the full size.
    let widths: Vec<(Option<u32>, u32, u32)> = avif
        .iter()
        .map(|r| (r.variant, r.width, r.height))
        .collect();
    assert_eq!(
        widths,
        [
            (Some(320), 320, 200),
            (Some(640), 640, 400),
            (None, 1920, 1200)
        ]
    );
    for r in &avif {
        assert_avif_container(&r.bytes);
        let decoded = avifdec(&r.bytes);
        assert_eq!(decoded.dimensions(), (r.width, r.height));
        assert!(!decoded.color().has_alpha() || decoded.to_rgba8().pixels().all(|p| p.0[3] == 255));
        // Against the WebP rendition of the same width (same resampled pixels):
        // close in luma, and not a different image.
        let webp = out
            .renditions
            .iter()
            .find(|w| w.format == Format::Webp && w.variant == r.variant)
            .unwrap();
        // The full size against the source; a variant against the WebP of its
        // width (the same resampled pixels, lossy once more).
        let reference = if r.variant.is_none() {
            source.clone()
        } else {
            image::load_from_memory(&webp.bytes).unwrap()
        };
        let (a, b) = (
            quality::luma_on_white(&decoded),
            quality::luma_on_white(&reference),
        );
        let diff = mean_abs_diff(&a, &b);
        let ssim = quality::ssim(&a, &b);
        let webp_ssim = quality::ssim(
            &quality::luma_on_white(&image::load_from_memory(&webp.bytes).unwrap()),
            &b,
        );
        eprintln!(
            "avif {:?}: {} bytes (webp {}), mean luma difference {diff:.2}, SSIM {ssim:.4} (webp {webp_ssim:.4})",
            r.variant,
            r.bytes.len(),
            webp.bytes.len()
        );
        assert!(diff < 3.0, "{:?}: mean luma difference {diff}", r.variant);
        assert!(ssim > 0.8, "{:?}: SSIM {ssim}", r.variant);
        // Colour survives (4:2:0 chroma, BT.601 signalled): compare channel means.
        let mean = |img: &DynamicImage| {
            let rgb = img.to_rgb8();
            let n = rgb.pixels().len() as f64;
            let mut m = [0f64; 3];
            for p in rgb.pixels() {
                for (sum, v) in m.iter_mut().zip(p.0) {
                    *sum += f64::from(v) / n;
                }
            }
            m
        };
        if r.variant.is_none() {
            let (got, want) = (mean(&decoded), mean(&source));
            for c in 0..3 {
                assert!(
                    (got[c] - want[c]).abs() < 3.0,
                    "channel {c}: mean {} vs source {}",
                    got[c],
                    want[c]
                );
            }
        }
    }
    // Smaller than the WebP at the default qualities.
    let full = |f: Format| out.rendition(f).unwrap().bytes.len();
    assert!(full(Format::Avif) < full(Format::Webp));
}

#[test]
fn alpha_is_kept() {
    let bytes = common::read_image("jxltest_riaphotographs_alpha_500.png");
    let source = image::load_from_memory(&bytes).unwrap().to_rgba8();
    assert!(source.pixels().any(|p| p.0[3] < 128));
    let out = run(&bytes, &[Format::Avif], &[]);
    assert!(out.has_alpha);
    let r = out.rendition(Format::Avif).unwrap();
    let decoded = avifdec(&r.bytes).to_rgba8();
    assert_eq!(decoded.dimensions(), source.dimensions());
    let mut diff = 0u64;
    for (p, q) in source.pixels().zip(decoded.pixels()) {
        diff += u64::from(p.0[3].abs_diff(q.0[3]));
    }
    let mean = diff as f64 / f64::from(source.width() * source.height());
    assert!(mean < 3.0, "alpha mean difference {mean}");
    // Transparent stays (nearly) transparent, opaque stays opaque.
    let opaque_kept = source
        .pixels()
        .zip(decoded.pixels())
        .filter(|(p, _)| p.0[3] == 255)
        .all(|(_, q)| q.0[3] >= 240);
    assert!(opaque_kept);
}

#[test]
fn gray_stays_gray_and_orientation_is_applied() {
    let bytes = common::read_image("jxltest_keong_macan_gray_500.png");
    let out = run(&bytes, &[Format::Avif], &[320]);
    for r in out.renditions.iter() {
        let decoded = avifdec(&r.bytes).to_rgb8();
        assert_eq!(decoded.dimensions(), (r.width, r.height));
        assert!(
            decoded
                .pixels()
                .all(|p| p.0[0] == p.0[1] && p.0[1] == p.0[2]),
            "a gray source decodes gray"
        );
    }
    // EXIF orientation 6 (rotate 90°): the AVIF has the oriented dimensions.
    let bytes = common::read_image("pillow_hopper_orientation_6.jpg");
    let out = run(&bytes, &[Format::Avif], &[]);
    assert!(out.reoriented);
    let r = out.rendition(Format::Avif).unwrap();
    assert_eq!((r.width, r.height), (out.width, out.height));
    assert_eq!(avifdec(&r.bytes).dimensions(), (out.width, out.height));
}

#[test]
fn odd_and_tiny_sizes() {
    for (w, h) in [(1, 1), (17, 9), (3, 40)] {
        let img =
            image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 13) as u8, (y * 7) as u8, 90]));
        let mut png = Vec::new();
        DynamicImage::ImageRgb8(img)
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        let out = run(&png, &[Format::Avif], &[16, 320]);
        // < 16 px wide: the full size only; 17 wide: a 16-px variant too.
        let variants: Vec<u32> = out
            .variants(Format::Avif)
            .filter_map(|r| r.variant)
            .collect();
        assert_eq!(variants, if w > 16 { vec![16] } else { vec![] }, "{w}x{h}");
        for r in &out.renditions {
            assert_eq!(
                avifdec(&r.bytes).dimensions(),
                (r.width, r.height),
                "{w}x{h}"
            );
        }
    }
}

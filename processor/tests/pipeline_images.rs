//! The pipeline over every image in ../shared/images: renditions decode
//! again with the right format and (oriented) dimensions, alpha is kept or
//! flattened onto white, the PNG is lossless, metadata other than ICC is
//! gone, ICC profiles are carried, and the lossy renditions' SSIM is within
//! 0.005 of what the Pillow reference reaches (floors in tests/data).
//!
//! Width variants (the default widths) of every image: exactly the widths
//! narrower than the image, each at its exact size (aspect ratio kept, the
//! height rounded to the nearest pixel), in the right format, without
//! metadata, with the same ICC decision and alpha as the full size; the
//! lossless PNG variant matches an independent linear-light Lanczos3
//! (the `image` crate's, in f32 with premultiplied alpha) and the lossy
//! variants stay close to it.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use image::{DynamicImage, GenericImageView, ImageFormat};
use imagestack_contract::Format;
use imagestack_processor::decode;
use imagestack_processor::pipeline::{self, IccHandling, Optimized, Settings};
use imagestack_processor::resize;

use common::quality;

const SSIM_TOLERANCE: f64 = 0.005;

fn floors() -> HashMap<String, (f64, f64)> {
    include_str!("data/ssim_floors.tsv")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("file\t") && !l.trim().is_empty())
        .map(|l| {
            let c: Vec<&str> = l.split('\t').collect();
            let num = |i: usize| c.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(1.0);
            (c[0].to_string(), (num(1), num(2)))
        })
        .collect()
}

fn expected_format(f: Format) -> ImageFormat {
    match f {
        Format::Webp => ImageFormat::WebP,
        Format::Jpeg => ImageFormat::Jpeg,
        Format::Png => ImageFormat::Png,
        Format::Avif => ImageFormat::Avif,
    }
}

/// The container's blocks, found by walking its structure (a byte search
/// would hit compressed data by chance): PNG chunk types, WebP chunk
/// FourCCs, JPEG segments before the scan (`APPn`, `COM`, `ICC_PROFILE`).
fn blocks(format: Format, bytes: &[u8]) -> Vec<String> {
    let be32 = |at: usize| {
        u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]) as usize
    };
    let le32 = |at: usize| {
        u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]) as usize
    };
    let mut found = Vec::new();
    match format {
        Format::Png => {
            let mut at = 8;
            while at + 8 <= bytes.len() {
                found.push(String::from_utf8_lossy(&bytes[at + 4..at + 8]).into_owned());
                at += 12 + be32(at);
            }
        }
        Format::Webp => {
            let mut at = 12;
            while at + 8 <= bytes.len() {
                found.push(String::from_utf8_lossy(&bytes[at..at + 4]).into_owned());
                let len = le32(at + 4);
                at += 8 + len + (len & 1);
            }
        }
        Format::Avif => {}
        Format::Jpeg => {
            let mut at = 2;
            while at + 4 <= bytes.len() && bytes[at] == 0xFF && bytes[at + 1] != 0xDA {
                let marker = bytes[at + 1];
                let len = usize::from(u16::from_be_bytes([bytes[at + 2], bytes[at + 3]]));
                found.push(match marker {
                    0xE2 if bytes[at + 4..].starts_with(b"ICC_PROFILE\0") => {
                        "ICC_PROFILE".to_string()
                    }
                    0xE0..=0xEF => format!("APP{}", marker - 0xE0),
                    0xFE => "COM".to_string(),
                    other => format!("FF{other:02X}"),
                });
                at += 2 + len;
            }
        }
    }
    found
}

/// Problems with one image, empty when all is well.
fn check(
    entry: &common::ManifestEntry,
    floor: Option<(f64, f64)>,
    settings: &Settings,
) -> Vec<String> {
    let mut problems = Vec::new();
    let bytes = common::read_image(&entry.file);
    let out = match pipeline::optimize(&bytes, settings) {
        Ok(o) => o,
        Err(e) => return vec![format!("optimize failed: {e}")],
    };
    let (w, h) = entry.oriented_dimensions();
    if entry.has_icc() && !matches!(out.icc, IccHandling::Srgb | IccHandling::Carried) {
        problems.push(format!("ICC profile handled as {:?}", out.icc));
    }
    if (out.width, out.height) != (w, h) {
        problems.push(format!(
            "dimensions {}x{}, expected {w}x{h}",
            out.width, out.height
        ));
    }
    let source = match decode::decode(&bytes, &settings.limits) {
        Ok(d) => d,
        Err(e) => return vec![format!("decode failed: {e}")],
    };
    let source_has_alpha = source.has_alpha();
    problems.extend(check_variants(entry, &out, &source.image, settings));
    let source_luma = quality::luma_on_white(&source.image);
    for f in Format::DEFAULT {
        let Some(r) = out.rendition(f) else {
            problems.push(format!("{f}: missing"));
            continue;
        };
        match image::guess_format(&r.bytes) {
            Ok(g) if g == expected_format(f) => {}
            other => problems.push(format!("{f}: encoded as {other:?}")),
        }
        let blocks = blocks(f, &r.bytes);
        let metadata: Vec<&String> = blocks
            .iter()
            .filter(|b| {
                matches!(
                    b.as_str(),
                    "eXIf" | "iTXt" | "tEXt" | "zTXt" | "EXIF" | "XMP " | "APP1" | "APP13" | "COM"
                )
            })
            .collect();
        if !metadata.is_empty() {
            problems.push(format!("{f}: carries metadata {metadata:?}"));
        }
        let icc_block = match f {
            Format::Webp => "ICCP",
            Format::Jpeg => "ICC_PROFILE",
            Format::Png => "iCCP",
            Format::Avif => unreachable!("Format::DEFAULT has no avif"),
        };
        // A profile is embedded unless it is sRGB (what untagged images mean).
        let expect_icc = entry.has_icc() && out.icc != IccHandling::Srgb;
        if blocks.iter().any(|b| b == icc_block) != expect_icc {
            problems.push(format!(
                "{f}: ICC embedded {}, expected {expect_icc} ({:?})",
                !expect_icc, out.icc
            ));
        }
        let decoded: DynamicImage = match image::load_from_memory(&r.bytes) {
            Ok(d) => d,
            Err(e) => {
                problems.push(format!("{f}: does not decode: {e}"));
                continue;
            }
        };
        if decoded.dimensions() != (w, h) {
            problems.push(format!(
                "{f}: decodes to {:?}, expected {w}x{h}",
                decoded.dimensions()
            ));
            continue;
        }
        match f {
            Format::Webp | Format::Png if decoded.color().has_alpha() != source_has_alpha => {
                problems.push(format!(
                    "{f}: alpha {} but source alpha {source_has_alpha}",
                    decoded.color().has_alpha()
                ));
            }
            Format::Jpeg if source_has_alpha => {
                // A fully transparent source pixel must come out (near) white.
                let rgba = source.image.to_rgba8();
                let jpeg = decoded.to_rgb8();
                if let Some((x, y, _)) = rgba.enumerate_pixels().find(|(_, _, p)| p.0[3] == 0) {
                    let p = jpeg.get_pixel(x, y).0;
                    if p.iter().any(|&c| c < 240) {
                        problems.push(format!(
                            "jpeg: transparent pixel ({x},{y}) became {p:?}, not white"
                        ));
                    }
                }
            }
            _ => {}
        }
        match f {
            Format::Png => {
                // Lossless: same pixels (colour under fully transparent pixels is free).
                let (a, b) = (source.image.to_rgba8(), decoded.to_rgba8());
                let differs = a
                    .pixels()
                    .zip(b.pixels())
                    .any(|(p, q)| if p.0[3] == 0 { q.0[3] != 0 } else { p.0 != q.0 });
                if differs {
                    problems.push("png: pixels differ from the source".to_string());
                }
            }
            Format::Avif => unreachable!("Format::DEFAULT has no avif"),
            Format::Webp | Format::Jpeg => {
                let ssim = quality::ssim(&source_luma, &quality::luma_on_white(&decoded));
                let reference =
                    floor.map(|(webp, jpeg)| if f == Format::Webp { webp } else { jpeg });
                match reference {
                    Some(r) if ssim < r - SSIM_TOLERANCE => problems.push(format!(
                        "{f}: SSIM {ssim:.4} more than {SSIM_TOLERANCE} below the reference's {r:.4}"
                    )),
                    Some(_) => {}
                    None => problems.push(format!("{f}: no SSIM floor recorded")),
                }
            }
        }
    }
    problems
}

/// sRGB ⇄ linear, in f32.
fn to_linear(c: u8) -> f32 {
    let c = f32::from(c) / 255.0;
    if c <= 0.04045 {
        c / 12.92
    } else {
        ((c + 0.055) / 1.055).powf(2.4)
    }
}

fn to_srgb(l: f32) -> u8 {
    let l = l.clamp(0.0, 1.0);
    let c = if l <= 0.003_130_8 {
        12.92 * l
    } else {
        1.055 * l.powf(1.0 / 2.4) - 0.055
    };
    (c * 255.0).round() as u8
}

/// An independent reference for a width variant: the `image` crate's
/// Lanczos3 in f32 linear light with premultiplied alpha.
fn reference_variant(source: &DynamicImage, width: u32, height: u32) -> image::RgbaImage {
    let rgba = source.to_rgba8();
    let linear =
        image::ImageBuffer::<image::Rgba<f32>, _>::from_fn(rgba.width(), rgba.height(), |x, y| {
            let [r, g, b, a] = rgba.get_pixel(x, y).0;
            let a = f32::from(a) / 255.0;
            image::Rgba([to_linear(r) * a, to_linear(g) * a, to_linear(b) * a, a])
        });
    let small = image::imageops::resize(
        &linear,
        width,
        height,
        image::imageops::FilterType::Lanczos3,
    );
    image::RgbaImage::from_fn(width, height, |x, y| {
        let [r, g, b, a] = small.get_pixel(x, y).0;
        let a = a.clamp(0.0, 1.0);
        if a <= 0.0 {
            return image::Rgba([0, 0, 0, 0]);
        }
        image::Rgba([
            to_srgb(r / a),
            to_srgb(g / a),
            to_srgb(b / a),
            (a * 255.0).round() as u8,
        ])
    })
}

/// Mean absolute difference of two equally sized gray images.
fn mean_abs_diff(a: &image::GrayImage, b: &image::GrayImage) -> f64 {
    let sum: u64 = a
        .pixels()
        .zip(b.pixels())
        .map(|(p, q)| u64::from(p.0[0].abs_diff(q.0[0])))
        .sum();
    sum as f64 / (u64::from(a.width()) * u64::from(a.height())).max(1) as f64
}

/// Problems with the width variants of one image.
fn check_variants(
    entry: &common::ManifestEntry,
    out: &Optimized,
    source: &DynamicImage,
    settings: &Settings,
) -> Vec<String> {
    let mut problems = Vec::new();
    let (w, h) = (out.width, out.height);
    let expected = resize::variant_widths(w, &settings.widths);
    // Reference pixels for the smaller images (the f32 reference is slow on
    // tens of megapixels).
    let compare_reference = u64::from(w) * u64::from(h) <= 4_500_000;
    let mut reference: HashMap<u32, image::GrayImage> = HashMap::new();
    for f in Format::DEFAULT {
        let got: Vec<u32> = out.variants(f).filter_map(|r| r.variant).collect();
        if got != expected {
            problems.push(format!("{f}: variants {got:?}, expected {expected:?}"));
            continue;
        }
        let png_variants: HashMap<u32, &[u8]> = out
            .variants(Format::Png)
            .filter_map(|r| Some((r.variant?, r.bytes.as_slice())))
            .collect();
        for r in out.variants(f) {
            let vw = r.variant.unwrap_or_default();
            let vh = resize::variant_height(w, h, vw);
            let exact = f64::from(h) * f64::from(vw) / f64::from(w);
            if (r.width, r.height) != (vw, vh) || (f64::from(vh) - exact).abs() > 0.5 {
                problems.push(format!(
                    "{f} w{vw}: recorded {}x{}, expected {vw}x{vh} ({exact:.2})",
                    r.width, r.height
                ));
            }
            if image::guess_format(&r.bytes).ok() != Some(expected_format(f)) {
                problems.push(format!("{f} w{vw}: wrong container"));
            }
            let blocks = blocks(f, &r.bytes);
            if blocks.iter().any(|b| {
                matches!(
                    b.as_str(),
                    "eXIf" | "iTXt" | "tEXt" | "zTXt" | "EXIF" | "XMP " | "APP1" | "APP13" | "COM"
                )
            }) {
                problems.push(format!("{f} w{vw}: carries metadata {blocks:?}"));
            }
            let full = out.rendition(f).map(|r| r.icc_embedded);
            if Some(r.icc_embedded) != full {
                problems.push(format!("{f} w{vw}: ICC embedded {}", r.icc_embedded));
            }
            let decoded = match image::load_from_memory(&r.bytes) {
                Ok(d) => d,
                Err(e) => {
                    problems.push(format!("{f} w{vw}: does not decode: {e}"));
                    continue;
                }
            };
            if decoded.dimensions() != (vw, vh) {
                problems.push(format!(
                    "{f} w{vw}: decodes to {:?}, expected {vw}x{vh}",
                    decoded.dimensions()
                ));
                continue;
            }
            let want_alpha = out.has_alpha && f != Format::Jpeg;
            if decoded.color().has_alpha() != want_alpha {
                problems.push(format!(
                    "{f} w{vw}: alpha {}, expected {want_alpha}",
                    decoded.color().has_alpha()
                ));
            }
            if !compare_reference {
                continue;
            }
            let reference = reference.entry(vw).or_insert_with(|| {
                quality::luma_on_white(&DynamicImage::ImageRgba8(reference_variant(source, vw, vh)))
            });
            let luma = quality::luma_on_white(&decoded);
            match f {
                Format::Png => {
                    // Ours (16-bit linear, SIMD) against the f32 reference.
                    let diff = mean_abs_diff(reference, &luma);
                    eprintln!(
                        "    {} png w{vw}: mean difference {diff:.3} from the f32 reference",
                        entry.file
                    );
                    if diff > 1.0 {
                        problems.push(format!(
                            "png w{vw}: mean difference {diff:.3} from the linear-light reference"
                        ));
                    }
                }
                Format::Avif => unreachable!("Format::DEFAULT has no avif"),
                Format::Webp | Format::Jpeg => {
                    let Some(png) = png_variants.get(&vw) else {
                        continue;
                    };
                    let exact = quality::luma_on_white(&image::load_from_memory(png).unwrap());
                    // SSIM is no judge here: on smooth gradients (sway_Blue)
                    // it drops to 0.2–0.6 for any lossy coding, the full size
                    // and Pillow's included. The mean error is.
                    let diff = mean_abs_diff(&exact, &luma);
                    eprintln!(
                        "    {} {f} w{vw}: mean error {diff:.2}, SSIM {:.4} against its pixels",
                        entry.file,
                        quality::ssim(&exact, &luma)
                    );
                    if diff > VARIANT_MAX_MEAN_ERROR {
                        problems.push(format!(
                            "{f} w{vw}: mean error {diff:.2} against its own pixels, above {VARIANT_MAX_MEAN_ERROR}"
                        ));
                    }
                }
            }
        }
    }
    problems
}

/// Lossy variants against the exact resampled pixels (their PNG variant),
/// mean absolute luma error in 8-bit levels.
const VARIANT_MAX_MEAN_ERROR: f64 = 5.0;

#[test]
fn every_shared_image_converts_correctly() {
    let manifest = common::manifest();
    assert_eq!(manifest.len(), 16, "MANIFEST.tsv lists 16 images");
    let floors = floors();
    let settings = Settings {
        webp_method: 6,
        time_budget: Duration::from_secs(600),
        widths: imagestack_contract::widths::DEFAULT.to_vec(),
        ..Settings::default()
    };
    let mut failures = Vec::new();
    for entry in &manifest {
        let problems = check(entry, floors.get(&entry.file).copied(), &settings);
        eprintln!(
            "{:<44} {}",
            entry.file,
            if problems.is_empty() { "ok" } else { "FAILED" }
        );
        failures.extend(problems.into_iter().map(|p| format!("{}: {p}", entry.file)));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

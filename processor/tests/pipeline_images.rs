//! The pipeline over every image in ../shared/images: renditions decode
//! again with the right format and (oriented) dimensions, alpha is kept or
//! flattened onto white, the PNG is lossless, metadata other than ICC is
//! gone, ICC profiles are carried, and the lossy renditions' SSIM is within
//! 0.005 of what the Pillow reference reaches (floors in tests/data).

mod common;

use std::collections::HashMap;
use std::time::Duration;

use image::{DynamicImage, GenericImageView, ImageFormat};
use imagestack_contract::Format;
use imagestack_processor::decode;
use imagestack_processor::pipeline::{self, IccHandling, Settings};

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
    let source_luma = quality::luma_on_white(&source.image);
    for f in Format::ALL {
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

#[test]
fn every_shared_image_converts_correctly() {
    let manifest = common::manifest();
    assert_eq!(manifest.len(), 16, "MANIFEST.tsv lists 16 images");
    let floors = floors();
    let settings = Settings {
        webp_method: 6,
        time_budget: Duration::from_secs(600),
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

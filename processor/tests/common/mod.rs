//! Helpers shared by the processor's integration tests.

#![allow(dead_code)]

pub mod quality;

use std::path::PathBuf;

/// `../shared/images` from the repository root (override: `IMAGESTACK_TEST_IMAGES`).
pub fn images_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("IMAGESTACK_TEST_IMAGES") {
        return PathBuf::from(dir);
    }
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/images");
    assert!(
        dir.join("MANIFEST.tsv").is_file(),
        "test images not found at {} (set IMAGESTACK_TEST_IMAGES)",
        dir.display()
    );
    dir
}

pub fn read_image(name: &str) -> Vec<u8> {
    let path = images_dir().join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// One row of MANIFEST.tsv.
#[derive(Debug, Clone)]
pub struct ManifestEntry {
    pub file: String,
    pub width: u32,
    pub height: u32,
    pub mode: String,
    pub notes: String,
}

impl ManifestEntry {
    pub fn has_icc(&self) -> bool {
        self.notes.split(',').any(|n| n == "icc")
    }
    /// EXIF orientations 5–8 swap width and height.
    pub fn oriented_dimensions(&self) -> (u32, u32) {
        let swaps = self.notes.split(',').any(|n| {
            n.strip_prefix("exif_orientation=")
                .and_then(|v| v.parse::<u8>().ok())
                .is_some_and(|o| (5..=8).contains(&o))
        });
        if swaps {
            (self.height, self.width)
        } else {
            (self.width, self.height)
        }
    }
}

pub fn manifest() -> Vec<ManifestEntry> {
    let text = std::fs::read_to_string(images_dir().join("MANIFEST.tsv")).unwrap_or_default();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split('\t').collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .unwrap_or_else(|| panic!("MANIFEST.tsv has no {name} column"))
    };
    let (f, w, h, m, n) = (
        col("file"),
        col("width"),
        col("height"),
        col("mode"),
        col("notes"),
    );
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let c: Vec<&str> = l.split('\t').collect();
            ManifestEntry {
                file: c[f].to_string(),
                width: c[w].parse().unwrap_or(0),
                height: c[h].parse().unwrap_or(0),
                mode: c[m].to_string(),
                notes: c.get(n).copied().unwrap_or("").to_string(),
            }
        })
        .collect()
}

/// CRC-32 (PNG chunks), bitwise.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A PNG chunk with length and CRC.
pub fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 12);
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let mut body = kind.to_vec();
    body.extend_from_slice(data);
    out.extend_from_slice(&body);
    out.extend_from_slice(&crc32(&body).to_be_bytes());
    out
}

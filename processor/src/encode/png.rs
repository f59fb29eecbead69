//! Lossless PNG through oxipng (colour-type, bit-depth and palette
//! reductions, filter trials, libdeflate).

use image::DynamicImage;
use imagestack_contract::Format;
use oxipng::{BitDepth, ColorType, Deflater, FilterStrategy, Options, RawImage};

use std::time::Duration;

use crate::deadline::Deadline;
use crate::error::{Error, Result};

/// libdeflate level by the size of the pixel data: near-optimal parsing
/// (10) where it is affordable, lazy matching (9, then 7) as images grow, so
/// that no image in ../shared/images needs more than 10 s of CPU for all
/// three renditions (measured: 10 takes ~0.65 s per MB of pixel data on
/// photographic content, 9 ~0.2 s, 7 ~0.06 s; see README).
pub fn deflate_level(raw_bytes: usize) -> u8 {
    const MB: usize = 1 << 20;
    match raw_bytes {
        n if n <= 16 * MB => 10,
        n if n <= 32 * MB => 9,
        _ => 7,
    }
}

/// CPU seconds per MB of pixel data at each level we use, measured on
/// photographic content on one core and rounded up.
const SECONDS_PER_MB: [(u8, f64); 5] = [(10, 0.7), (9, 0.3), (7, 0.1), (5, 0.06), (1, 0.02)];

/// The time budget steps the level down: the highest level not above
/// [`deflate_level`] whose estimated time fits in `remaining`; `None` if not
/// even the fastest does. (libdeflate cannot be interrupted once started.)
pub fn affordable_level(raw_bytes: usize, remaining: Duration) -> Option<u8> {
    let mb = raw_bytes as f64 / f64::from(1u32 << 20);
    let wanted = deflate_level(raw_bytes);
    SECONDS_PER_MB
        .iter()
        .filter(|(level, _)| *level <= wanted)
        .find(|(_, cost)| mb * cost <= remaining.as_secs_f64())
        .map(|(level, _)| *level)
}

/// The oxipng options; trials stop at the deadline.
pub fn options(level: u8, few_colours: bool, deadline: &Deadline) -> Options {
    let mut opts = Options::from_preset(2);
    // Photographic content: MinSum (libpng's adaptive heuristic) alone, no
    // trials. Images that will become palette images: also try no filter,
    // which usually wins there (the trials are cheap on such data).
    opts.filters = if few_colours {
        [FilterStrategy::NONE, FilterStrategy::MinSum]
            .into_iter()
            .collect()
    } else {
        [FilterStrategy::MinSum].into_iter().collect()
    };
    opts.deflater = Deflater::Libdeflater { compression: level };
    opts.fast_evaluation = true;
    // Colours under fully transparent pixels are invisible: let oxipng pick
    // whatever compresses best.
    opts.optimize_alpha = true;
    opts.timeout = Some(deadline.remaining());
    opts
}

/// Whether the image has at most 256 distinct colours (stops counting at 257).
fn few_colours(pixels: &[u8], channels: usize) -> bool {
    let mut seen = std::collections::HashSet::with_capacity(257);
    for px in pixels.chunks_exact(channels) {
        let mut key = [0u8; 4];
        key[..channels].copy_from_slice(px);
        if seen.insert(u32::from_le_bytes(key)) && seen.len() > 256 {
            return false;
        }
    }
    true
}

/// Encode `image` losslessly.
pub fn encode(image: &DynamicImage, icc: Option<&[u8]>, deadline: &Deadline) -> Result<Vec<u8>> {
    let fail = |message: String| Error::EncodeFailed {
        format: Format::Png,
        message,
    };
    let (color, data) = match image {
        DynamicImage::ImageLuma8(g) => (
            ColorType::Grayscale {
                transparent_shade: None,
            },
            g.as_raw(),
        ),
        DynamicImage::ImageLumaA8(la) => (ColorType::GrayscaleAlpha, la.as_raw()),
        DynamicImage::ImageRgb8(rgb) => (
            ColorType::RGB {
                transparent_color: None,
            },
            rgb.as_raw(),
        ),
        DynamicImage::ImageRgba8(rgba) => (ColorType::RGBA, rgba.as_raw()),
        other => return Err(fail(format!("unexpected pixel layout {:?}", other.color()))),
    };
    let channels = usize::from(image.color().channel_count());
    let few = few_colours(data, channels);
    let raw_bytes = data.len();
    let mut raw = RawImage::new(
        image.width(),
        image.height(),
        color,
        BitDepth::Eight,
        data.clone(),
    )
    .map_err(|e| fail(e.to_string()))?;
    if let Some(profile) = icc.filter(|p| !p.is_empty()) {
        raw.add_icc_profile(profile);
    }
    deadline.check("png")?;
    let level =
        affordable_level(raw_bytes, deadline.remaining()).ok_or_else(|| deadline.timeout("png"))?;
    raw.create_optimized_png(&options(level, few, deadline))
        .map_err(|e| fail(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_steps_down_with_size() {
        assert_eq!(deflate_level(1 << 20), 10);
        assert_eq!(deflate_level(20 << 20), 9);
        assert_eq!(deflate_level(50 << 20), 7);
    }

    #[test]
    fn budget_steps_the_level_down() {
        let mb = 1 << 20;
        assert_eq!(affordable_level(10 * mb, Duration::from_secs(30)), Some(10));
        assert_eq!(affordable_level(10 * mb, Duration::from_secs(4)), Some(9));
        assert_eq!(
            affordable_level(10 * mb, Duration::from_millis(700)),
            Some(5)
        );
        assert_eq!(affordable_level(10 * mb, Duration::from_millis(10)), None);
        assert_eq!(affordable_level(50 * mb, Duration::from_secs(30)), Some(7));
    }

    #[test]
    fn colour_counting_stops_at_257() {
        let two: Vec<u8> = [[1u8, 2, 3], [4, 5, 6]].repeat(100).concat();
        assert!(few_colours(&two, 3));
        let many: Vec<u8> = (0..300u32)
            .flat_map(|i| [(i % 256) as u8, (i / 256) as u8, 0])
            .collect();
        assert!(!few_colours(&many, 3));
    }

    #[test]
    fn lossless_round_trip_with_palette_reduction() {
        let img = DynamicImage::ImageRgba8(image::RgbaImage::from_fn(40, 30, |x, y| {
            image::Rgba([
                (x % 3) as u8 * 100,
                (y % 2) as u8 * 200,
                50,
                if x == 0 { 0 } else { 255 },
            ])
        }));
        let png = encode(
            &img,
            None,
            &Deadline::after(std::time::Duration::from_secs(30)),
        )
        .unwrap();
        let back = image::load_from_memory(&png).unwrap().to_rgba8();
        for (a, b) in img.to_rgba8().pixels().zip(back.pixels()) {
            if a.0[3] == 0 {
                assert_eq!(b.0[3], 0);
            } else {
                assert_eq!(a, b);
            }
        }
    }
}

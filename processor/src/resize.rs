//! Width variants: Lanczos3 in linear light, alpha premultiplied, with
//! `fast_image_resize` (SIMD: SSE4.1/AVX2 on x86_64, NEON on arm64, chosen at
//! run time).
//!
//! The decoded, oriented 8-bit image is converted once into 16-bit linear
//! light (the sRGB transfer function, by table) and, when it has alpha,
//! premultiplied in place. Every width is then resampled from that one
//! linear image (never from another variant), alpha is divided out again and
//! the result is mapped back to 8-bit sRGB. The linear image is dropped
//! before any encoder starts, so it never adds to the encoders' peak memory.
//!
//! The sRGB curve is used for every input: exact for sRGB and Display P3
//! (same transfer function), close for profiles with a 2.2 gamma (Adobe RGB).

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{
    FilterType, MulDiv, PixelComponentMapper, PixelType, ResizeAlg, ResizeOptions, Resizer,
};
use image::DynamicImage;
use imagestack_contract::widths;

use crate::cpu;
use crate::deadline::Deadline;
use crate::error::{Error, Result};
use crate::pool;

/// The widths to render for an image `source_width` pixels wide: the
/// configured ones in `widths::MIN..=widths::MAX` that are strictly narrower
/// than the source (never an upscale, never a copy of the full size),
/// ascending and distinct. An image narrower than `widths::MIN` gets none.
pub fn variant_widths(source_width: u32, configured: &[u32]) -> Vec<u32> {
    let mut out: Vec<u32> = configured
        .iter()
        .copied()
        .filter(|w| (widths::MIN..=widths::MAX).contains(w) && *w < source_width)
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// The height of the `width` variant of a `source_width`×`source_height`
/// image: the aspect ratio kept, rounded to the nearest pixel (halves up),
/// at least 1. So `|height / width − source_height / source_width|` is at
/// most half a pixel over `width`.
pub fn variant_height(source_width: u32, source_height: u32, width: u32) -> u32 {
    let (sw, sh, w) = (
        u64::from(source_width.max(1)),
        u64::from(source_height),
        u64::from(width),
    );
    let h = (2 * sh * w + sw) / (2 * sw);
    u32::try_from(h.max(1)).unwrap_or(u32::MAX)
}

/// One resampled image.
#[derive(Debug, Clone)]
pub struct Variant {
    /// The configured width it was made for (equal to `image.width()`).
    pub width: u32,
    pub image: DynamicImage,
}

/// The variants of `image` for `configured` widths (see [`variant_widths`]),
/// resampled on up to `parallelism` threads, in ascending width order, with
/// the wall and CPU time spent (linearisation included).
pub fn variants(
    image: &DynamicImage,
    configured: &[u32],
    parallelism: usize,
    deadline: &Deadline,
) -> Result<(Vec<Variant>, Duration, Duration)> {
    let targets = variant_widths(image.width(), configured);
    if targets.is_empty() {
        return Ok((Vec::new(), Duration::ZERO, Duration::ZERO));
    }
    let started = Instant::now();
    let cpu_started = cpu::thread_cpu();
    let linear = Linear::new(image)?;
    let linearise_cpu = cpu::thread_cpu().saturating_sub(cpu_started);
    deadline.check("resize")?;
    let results = pool::run(&targets, parallelism, |&width| {
        deadline.check("resize")?;
        let cpu_started = cpu::thread_cpu();
        let height = variant_height(image.width(), image.height(), width);
        let image = linear.resize(width, height)?;
        Ok((
            Variant { width, image },
            cpu::thread_cpu().saturating_sub(cpu_started),
        ))
    });
    drop(linear);
    let mut out = Vec::with_capacity(targets.len());
    let mut cpu = linearise_cpu;
    for r in results {
        let (variant, c) = r?;
        cpu += c;
        out.push(variant);
    }
    deadline.check("resize")?;
    Ok((out, started.elapsed(), cpu))
}

/// The sRGB ⇄ linear tables (built once: about 0.5 MB).
fn mapper() -> &'static PixelComponentMapper {
    static MAPPER: OnceLock<PixelComponentMapper> = OnceLock::new();
    MAPPER.get_or_init(fast_image_resize::create_srgb_mapper)
}

fn failed(width: u32, what: &str, e: impl std::fmt::Display) -> Error {
    Error::ResizeFailed {
        width,
        message: format!("{what}: {e}"),
    }
}

/// The source in 16-bit linear light, premultiplied when it has alpha.
struct Linear {
    image: Image<'static>,
    /// 8-bit pixel type of the source and of every variant.
    pixel_type: PixelType,
    alpha: bool,
}

impl Linear {
    fn new(source: &DynamicImage) -> Result<Self> {
        let converted;
        let (raw, pixel_type, linear_type): (&[u8], _, _) = match source {
            DynamicImage::ImageLuma8(i) => (i.as_raw(), PixelType::U8, PixelType::U16),
            DynamicImage::ImageLumaA8(i) => (i.as_raw(), PixelType::U8x2, PixelType::U16x2),
            DynamicImage::ImageRgb8(i) => (i.as_raw(), PixelType::U8x3, PixelType::U16x3),
            DynamicImage::ImageRgba8(i) => (i.as_raw(), PixelType::U8x4, PixelType::U16x4),
            // The decoder normalises to the four above; anything else is made RGB(A).
            other if other.color().has_alpha() => {
                converted = other.to_rgba8().into_raw();
                (&converted, PixelType::U8x4, PixelType::U16x4)
            }
            other => {
                converted = other.to_rgb8().into_raw();
                (&converted, PixelType::U8x3, PixelType::U16x3)
            }
        };
        let (w, h) = (source.width(), source.height());
        let src = ImageRef::new(w, h, raw, pixel_type).map_err(|e| failed(w, "source", e))?;
        let mut image = Image::new(w, h, linear_type);
        mapper()
            .forward_map(&src, &mut image)
            .map_err(|e| failed(w, "to linear light", e))?;
        let alpha = matches!(pixel_type, PixelType::U8x2 | PixelType::U8x4);
        if alpha {
            MulDiv::default()
                .multiply_alpha_inplace(&mut image)
                .map_err(|e| failed(w, "premultiplying alpha", e))?;
        }
        Ok(Linear {
            image,
            pixel_type,
            alpha,
        })
    }

    fn resize(&self, width: u32, height: u32) -> Result<DynamicImage> {
        let mut linear = Image::new(width, height, self.image.pixel_type());
        // Alpha is already premultiplied (once, for every width).
        let options = ResizeOptions::new()
            .resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3))
            .use_alpha(false);
        Resizer::new()
            .resize(&self.image, &mut linear, &options)
            .map_err(|e| failed(width, "resampling", e))?;
        if self.alpha {
            MulDiv::default()
                .divide_alpha_inplace(&mut linear)
                .map_err(|e| failed(width, "dividing alpha", e))?;
        }
        let mut out = Image::new(width, height, self.pixel_type);
        mapper()
            .backward_map(&linear, &mut out)
            .map_err(|e| failed(width, "to sRGB", e))?;
        drop(linear);
        let raw = out.into_vec();
        let image = match self.pixel_type {
            PixelType::U8 => image::GrayImage::from_raw(width, height, raw).map(Into::into),
            PixelType::U8x2 => image::GrayAlphaImage::from_raw(width, height, raw).map(Into::into),
            PixelType::U8x3 => image::RgbImage::from_raw(width, height, raw).map(Into::into),
            _ => image::RgbaImage::from_raw(width, height, raw).map(Into::into),
        };
        image.ok_or_else(|| failed(width, "result", "buffer size mismatch"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widths_never_upscale() {
        assert_eq!(
            variant_widths(1920, &[320, 640, 1280, 1920]),
            vec![320, 640, 1280]
        );
        assert_eq!(variant_widths(1921, &[1920, 320]), vec![320, 1920]);
        assert_eq!(variant_widths(320, &[320]), Vec::<u32>::new());
        // Narrower than the smallest allowed width: full size only.
        assert_eq!(variant_widths(15, &[16, 320]), Vec::<u32>::new());
        assert_eq!(variant_widths(17, &[16, 16]), vec![16]);
        // Outside the contract's range: ignored.
        assert_eq!(variant_widths(10_000, &[8, 9000]), Vec::<u32>::new());
    }

    #[test]
    fn heights_keep_the_aspect_ratio() {
        assert_eq!(variant_height(6000, 4000, 640), 427); // 426.67
        assert_eq!(variant_height(4000, 6000, 640), 960);
        assert_eq!(variant_height(3, 1, 2), 1); // 0.67 rounds up
        assert_eq!(variant_height(4, 1, 2), 1); // exactly 0.5 rounds up
        assert_eq!(variant_height(16_383, 1, 16), 1); // never 0
        for (sw, sh) in [(6000u32, 4000u32), (1622, 2880), (1689, 1800), (16_383, 7)] {
            for w in [16u32, 320, 640, 1280] {
                let h = variant_height(sw, sh, w);
                let exact = f64::from(sh) * f64::from(w) / f64::from(sw);
                assert!(
                    (f64::from(h) - exact).abs() <= 0.5 || h == 1,
                    "{sw}x{sh}@{w}: {h}"
                );
            }
        }
    }

    #[test]
    fn flat_colours_survive_and_alpha_is_kept() {
        // A flat colour stays that colour (the linear round trip is exact
        // enough), on every pixel type; a half-transparent area stays so.
        let rgb = DynamicImage::ImageRgb8(image::RgbImage::from_pixel(
            100,
            50,
            image::Rgb([200, 30, 90]),
        ));
        let rgba = DynamicImage::ImageRgba8(image::RgbaImage::from_pixel(
            100,
            50,
            image::Rgba([10, 120, 250, 128]),
        ));
        let gray =
            DynamicImage::ImageLuma8(image::GrayImage::from_pixel(100, 50, image::Luma([77])));
        let la = DynamicImage::ImageLumaA8(image::GrayAlphaImage::from_pixel(
            100,
            50,
            image::LumaA([200, 40]),
        ));
        for source in [rgb, rgba, gray, la] {
            let d = Deadline::after(Duration::from_secs(60));
            let (v, _, _) = variants(&source, &[40], 1, &d).unwrap();
            assert_eq!(v.len(), 1);
            let out = &v[0].image;
            assert_eq!((out.width(), out.height()), (40, 20));
            assert_eq!(out.color(), source.color());
            let want = source.to_rgba8().get_pixel(0, 0).0;
            for p in out.to_rgba8().pixels() {
                for c in 0..4 {
                    assert!(
                        p.0[c].abs_diff(want[c]) <= 1,
                        "{:?}: {:?} vs {want:?}",
                        source.color(),
                        p.0
                    );
                }
            }
        }
    }

    #[test]
    fn resampling_is_in_linear_light() {
        // A 1-pixel black/white checkerboard averages to 50 % light: sRGB
        // ~188, not the 128 that averaging the encoded values gives.
        let board = image::GrayImage::from_fn(64, 64, |x, y| {
            image::Luma([if (x + y) % 2 == 0 { 0 } else { 255 }])
        });
        let d = Deadline::after(Duration::from_secs(60));
        let (v, _, _) = variants(&DynamicImage::ImageLuma8(board), &[16], 1, &d).unwrap();
        let g = v[0].image.to_luma8();
        let centre = g.get_pixel(8, 8).0[0];
        assert!((184..=192).contains(&centre), "{centre}");
    }

    #[test]
    fn transparent_pixels_do_not_bleed_colour() {
        // Left half opaque red, right half fully transparent *green*: with
        // premultiplied alpha no green reaches the visible pixels.
        let img = image::RgbaImage::from_fn(64, 32, |x, _| {
            if x < 32 {
                image::Rgba([255, 0, 0, 255])
            } else {
                image::Rgba([0, 255, 0, 0])
            }
        });
        let d = Deadline::after(Duration::from_secs(60));
        let (v, _, _) = variants(&DynamicImage::ImageRgba8(img), &[16], 1, &d).unwrap();
        let out = v[0].image.to_rgba8();
        assert_eq!((out.width(), out.height()), (16, 8));
        for x in 0..16 {
            let p = out.get_pixel(x, 4).0;
            if p[3] > 8 {
                assert!(p[1] <= 2 && p[0] >= 250, "x={x}: {p:?}");
            }
        }
        assert_eq!(out.get_pixel(0, 4).0[3], 255);
        assert_eq!(out.get_pixel(15, 4).0[3], 0);
    }

    #[test]
    fn expired_deadline_is_a_timeout() {
        let img = DynamicImage::ImageRgb8(image::RgbImage::new(64, 64));
        let err = variants(&img, &[32], 1, &Deadline::after(Duration::ZERO)).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Timeout {
                    stage: "resize",
                    ..
                }
            ),
            "{err}"
        );
    }
}

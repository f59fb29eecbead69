//! AVIF: the image as one AV1 still picture (rav1e, with its assembly),
//! 8-bit YCbCr 4:2:0 (BT.601 matrix, full range, sRGB transfer and BT.709
//! primaries signalled in the container), gray images as 4:0:0, and alpha as a
//! second monochrome AV1 picture (unassociated, full range).
//!
//! Why rav1e and not libaom/SVT-AV1 through libavif: it builds from source with
//! cargo alone for both Lambda architectures (no cmake, no C++ toolchain in the
//! cross build), and at the speed preset below it encodes a 24 MP photo in the
//! time budget on one core (processor/README.md has the measurements).
//!
//! Colour: the container carries no ICC profile (`nclx` only), so an AVIF
//! rendition is sRGB. A source with another embedded profile gets AVIF pixels
//! that are not colour-managed; the pipeline then records the image's ICC
//! handling as `incompatible` (as for any rendition that cannot carry it).

use image::DynamicImage;
use imagestack_contract::Format;
use rav1e::prelude::{
    ChromaSamplePosition, ChromaSampling, ColorDescription, ColorPrimaries, Config, Context,
    EncoderConfig, EncoderStatus, MatrixCoefficients, PixelRange, TransferCharacteristics,
};

use crate::deadline::Deadline;
use crate::error::{Error, Result};

/// rav1e speed preset (0 slowest … 10 fastest) for images up to
/// [`SPEED_8_MAX_PIXELS`]: the 320- and 640-wide variants (what phones
/// download) and small originals. The presets below it cost 1.5–4× the time
/// for a few per cent of bytes. Larger images are encoded faster: see
/// [`speed_for`].
pub const SPEED: u8 = 8;

/// The largest image (pixels) encoded at the configured speed when that is
/// slower than 9.
pub const SPEED_8_MAX_PIXELS: u64 = 1_000_000;
/// The largest image (pixels) encoded at speed 9 or slower; above it, 10.
pub const SPEED_9_MAX_PIXELS: u64 = 2_000_000;

/// The preset used for an image of `pixels` configured at `speed`: never
/// slower than its size allows, so that a 24 MP photo's whole upload (four
/// formats, full size and the default widths 320, 640, 1280, 1920) stays
/// within 10 s CPU on one core.
///
/// Measured on one core (a busy 2-core machine) at quality 62, on a 24 MP
/// photo mosaic (`scripts/bench_mosaic.py`) and its variants (s/MP; bytes
/// relative to speed 8):
///
/// | rendition | speed 8 | speed 9 | speed 10 |
/// |---|---:|---:|---:|
/// | 6000×4000 (quality 60) | 0.39 | 0.27 (1.06×) | 0.14 (1.11×) |
/// | 1920×1280 | 0.62 | 0.39 (1.09×) | 0.19 (1.23×) |
/// | 1280×853 | 0.81 | 0.48 (1.13×) | 0.23 (1.31×) |
/// | 640×427 | 0.96 | 0.56 (1.14×) | 0.29 (1.29×) |
///
/// Everything but AVIF costs ~5 s for that upload (decode, resize, WebP,
/// JPEG, PNG at every width), leaving AVIF ~5 s: the full size at 10 (3.5 s),
/// 1920 wide at 10 (0.5 s), 1280 at 9 (0.5 s), 640 and 320 at 8 (0.35 s).
/// With every variant at 8 the upload took 11 s.
pub fn speed_for(speed: u8, pixels: u64) -> u8 {
    let floor = if pixels > SPEED_9_MAX_PIXELS {
        10
    } else if pixels > SPEED_8_MAX_PIXELS {
        9
    } else {
        0
    };
    speed.min(10).max(floor)
}

/// rav1e quantizer (0–255) for a quality 1–100: linear, 100 → 0 (near lossless),
/// 1 → 252.
pub fn quantizer(quality: u8) -> u8 {
    let q = u32::from(quality.clamp(1, 100));
    // (100 - q) * 255 / 100, rounded; at most 252.
    ((100 - q) * 255 + 50).div_euclid(100) as u8
}

/// Encode `image` as AVIF at `quality` (1–100) with rav1e's `speed` preset,
/// made faster for large images by [`speed_for`].
pub fn encode(
    image: &DynamicImage,
    quality: u8,
    speed: u8,
    deadline: &Deadline,
) -> Result<Vec<u8>> {
    let pixels = u64::from(image.width()) * u64::from(image.height());
    encode_at_speed(image, quality, speed_for(speed, pixels), deadline)
}

/// [`encode`] at exactly rav1e's `speed` preset, whatever the size (the
/// benchmark's comparisons).
pub fn encode_at_speed(
    image: &DynamicImage,
    quality: u8,
    speed: u8,
    deadline: &Deadline,
) -> Result<Vec<u8>> {
    let fail = |message: String| Error::EncodeFailed {
        format: Format::Avif,
        message,
    };
    let (width, height) = (image.width() as usize, image.height() as usize);
    if width == 0 || height == 0 {
        return Err(fail("empty image".into()));
    }
    let q = quantizer(quality);
    let gray = !image.color().has_color();
    let alpha = alpha_plane(image);
    let color = if gray {
        let luma = image.to_luma8();
        encode_planes(width, height, q, speed, Planes::Gray(luma.as_raw()))
    } else {
        let rgb = match image {
            DynamicImage::ImageRgb8(rgb) => std::borrow::Cow::Borrowed(rgb),
            other => std::borrow::Cow::Owned(other.to_rgb8()),
        };
        let (y, u, v) = ycbcr_420(rgb.as_raw(), width, height);
        encode_planes(width, height, q, speed, Planes::Yuv420(&y, &u, &v))
    }
    .map_err(fail)?;
    deadline.check(Format::Avif.as_str())?;
    let alpha = match &alpha {
        Some(a) => Some(encode_planes(width, height, q, speed, Planes::Alpha(a)).map_err(fail)?),
        None => None,
    };
    let mut avif = avif_serialize::Aviffy::new();
    avif.set_matrix_coefficients(avif_serialize::constants::MatrixCoefficients::Bt601)
        .set_transfer_characteristics(avif_serialize::constants::TransferCharacteristics::Srgb)
        .set_color_primaries(avif_serialize::constants::ColorPrimaries::Bt709)
        .set_full_color_range(true)
        .set_monochrome(gray)
        .set_chroma_subsampling((true, true))
        .set_bit_depth(8);
    // width/height fit u32: they came from one.
    Ok(avif.to_vec(&color, alpha.as_deref(), width as u32, height as u32, 8))
}

/// The alpha channel when the image has one that is not fully opaque.
fn alpha_plane(image: &DynamicImage) -> Option<Vec<u8>> {
    let a: Vec<u8> = match image {
        DynamicImage::ImageRgba8(rgba) => rgba.pixels().map(|p| p.0[3]).collect(),
        DynamicImage::ImageLumaA8(la) => la.pixels().map(|p| p.0[1]).collect(),
        other if other.color().has_alpha() => other.to_rgba8().pixels().map(|p| p.0[3]).collect(),
        _ => return None,
    };
    a.iter().any(|&v| v != 255).then_some(a)
}

enum Planes<'a> {
    Yuv420(&'a [u8], &'a [u8], &'a [u8]),
    Gray(&'a [u8]),
    Alpha(&'a [u8]),
}

/// Full-range BT.601 Y'CbCr, chroma averaged over 2×2 blocks (edges: the
/// pixels that exist). Returns (Y, Cb, Cr); chroma planes are ⌈w/2⌉×⌈h/2⌉.
pub fn ycbcr_420(rgb: &[u8], width: usize, height: usize) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let (cw, ch) = (width.div_ceil(2), height.div_ceil(2));
    let mut y = vec![0u8; width * height];
    let mut cb_sum = vec![0i32; cw * ch];
    let mut cr_sum = vec![0i32; cw * ch];
    let mut count = vec![0i32; cw * ch];
    for row in 0..height {
        let src = &rgb[row * width * 3..(row + 1) * width * 3];
        let dst = &mut y[row * width..(row + 1) * width];
        let c_row = (row / 2) * cw;
        for (col, (px, out)) in src.chunks_exact(3).zip(dst.iter_mut()).enumerate() {
            // Fixed point, 16 fractional bits: Y = .299 R + .587 G + .114 B.
            let (r, g, b) = (i32::from(px[0]), i32::from(px[1]), i32::from(px[2]));
            let luma = 19_595 * r + 38_470 * g + 7_471 * b;
            *out = ((luma + 32_768) >> 16) as u8;
            // Cb = (B - Y) / 1.772, Cr = (R - Y) / 1.402 (×2^16).
            let cb = -11_059 * r - 21_709 * g + 32_768 * b;
            let cr = 32_768 * r - 27_439 * g - 5_329 * b;
            let i = c_row + col / 2;
            cb_sum[i] += cb;
            cr_sum[i] += cr;
            count[i] += 1;
        }
    }
    let chroma = |sum: &[i32]| -> Vec<u8> {
        sum.iter()
            .zip(&count)
            .map(|(&s, &n)| {
                // Mean of up to 4 samples (each |x| < 2^23), rounded, +128.
                let mean = f64::from(s) / f64::from(n) / 65_536.0;
                (mean.round() + 128.0).clamp(0.0, 255.0) as u8
            })
            .collect()
    };
    let (cb, cr) = (chroma(&cb_sum), chroma(&cr_sum));
    (y, cb, cr)
}

/// One AV1 still picture of the planes.
fn encode_planes(
    width: usize,
    height: usize,
    quantizer: u8,
    speed: u8,
    planes: Planes<'_>,
) -> std::result::Result<Vec<u8>, String> {
    let mut cfg = EncoderConfig::with_speed_preset(speed.min(10));
    cfg.width = width;
    cfg.height = height;
    cfg.bit_depth = 8;
    cfg.still_picture = true;
    cfg.quantizer = usize::from(quantizer);
    cfg.min_quantizer = quantizer;
    cfg.pixel_range = PixelRange::Full;
    cfg.chroma_sample_position = ChromaSamplePosition::Unknown;
    match planes {
        Planes::Yuv420(..) => {
            cfg.chroma_sampling = ChromaSampling::Cs420;
            cfg.color_description = Some(ColorDescription {
                color_primaries: ColorPrimaries::BT709,
                transfer_characteristics: TransferCharacteristics::SRGB,
                matrix_coefficients: MatrixCoefficients::BT601,
            });
        }
        Planes::Gray(_) | Planes::Alpha(_) => cfg.chroma_sampling = ChromaSampling::Cs400,
    }
    let mut ctx: Context<u8> = Config::new()
        .with_encoder_config(cfg)
        .with_threads(1)
        .new_context()
        .map_err(|e| format!("rav1e configuration: {e}"))?;
    let mut frame = ctx.new_frame();
    match planes {
        Planes::Yuv420(y, u, v) => {
            let cw = width.div_ceil(2);
            frame.planes[0].copy_from_raw_u8(y, width, 1);
            frame.planes[1].copy_from_raw_u8(u, cw, 1);
            frame.planes[2].copy_from_raw_u8(v, cw, 1);
        }
        Planes::Gray(p) | Planes::Alpha(p) => frame.planes[0].copy_from_raw_u8(p, width, 1),
    }
    ctx.send_frame(frame)
        .map_err(|e| format!("rav1e send_frame: {e}"))?;
    ctx.flush();
    let mut out = Vec::new();
    loop {
        match ctx.receive_packet() {
            Ok(packet) => out.extend_from_slice(&packet.data),
            Err(EncoderStatus::Encoded) => {}
            Err(EncoderStatus::LimitReached) => break,
            Err(e) => return Err(format!("rav1e: {e}")),
        }
    }
    if out.is_empty() {
        return Err("rav1e produced no data".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speed_steps_up_with_size_only() {
        assert_eq!(speed_for(8, 640 * 427), 8);
        assert_eq!(speed_for(8, SPEED_8_MAX_PIXELS), 8);
        assert_eq!(speed_for(8, 1280 * 853), 9);
        assert_eq!(speed_for(8, 1920 * 1280), 10);
        assert_eq!(speed_for(8, SPEED_8_MAX_PIXELS + 1), 9);
        assert_eq!(speed_for(8, SPEED_9_MAX_PIXELS + 1), 10);
        assert_eq!(speed_for(6, 6000 * 4000), 10);
        // A faster configured preset is kept; out-of-range ones are capped.
        assert_eq!(speed_for(10, 100), 10);
        assert_eq!(speed_for(12, 100), 10);
    }

    #[test]
    fn quantizer_spans_the_range() {
        assert_eq!(quantizer(100), 0);
        assert_eq!(quantizer(1), 252);
        assert_eq!(quantizer(0), 252);
        assert!(quantizer(60) > quantizer(80));
    }

    #[test]
    fn ycbcr_of_primaries_and_grays() {
        // 2×1 image: white, black → one chroma sample, neutral.
        let (y, u, v) = ycbcr_420(&[255, 255, 255, 0, 0, 0], 2, 1);
        assert_eq!(y, vec![255, 0]);
        assert_eq!((u[0], v[0]), (128, 128));
        // Pure red: Y 76, Cb 85, Cr 255 (BT.601 full range).
        let (y, u, v) = ycbcr_420(&[255, 0, 0], 1, 1);
        assert_eq!(y, vec![76]);
        assert!((i32::from(u[0]) - 85).abs() <= 1, "cb {}", u[0]);
        assert_eq!(v[0], 255);
        // Odd sizes: 3×3 → 2×2 chroma.
        let (y, u, _) = ycbcr_420(&[10; 27], 3, 3);
        assert_eq!((y.len(), u.len()), (9, 4));
    }
}

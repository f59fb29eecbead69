//! Width variants on purpose-made inputs: no upscale, tiny images, EXIF
//! orientation applied before resizing, alpha kept through resampling, and
//! the time budget covering the variants. (Every shared image's variants are
//! checked in pipeline_images.rs.)

mod common;

use std::io::Cursor;
use std::time::Duration;

use image::{DynamicImage, GenericImageView, ImageEncoder};
use imagestack_contract::Format;
use imagestack_processor::pipeline::{self, Optimized, Settings};
use imagestack_processor::{Error, FailureReason, resize};

fn settings(widths: &[u32]) -> Settings {
    Settings {
        widths: widths.to_vec(),
        time_budget: Duration::from_secs(120),
        ..Settings::default()
    }
}

fn run(bytes: &[u8], widths: &[u32]) -> Optimized {
    pipeline::optimize(bytes, &settings(widths)).expect("converts")
}

/// The widths of `format`'s variants.
fn widths_of(out: &Optimized, format: Format) -> Vec<u32> {
    out.variants(format).filter_map(|r| r.variant).collect()
}

fn decode(bytes: &[u8]) -> DynamicImage {
    image::load_from_memory(bytes).expect("rendition decodes")
}

fn png(img: &DynamicImage) -> Vec<u8> {
    let mut out = Vec::new();
    img.write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

#[test]
fn only_widths_narrower_than_the_image() {
    // 300×225: 320 and 640 would be upscales, 300 a copy of the full size.
    let bytes = common::read_image("pillow_flower2_icc.jpg");
    let out = run(&bytes, &[320, 640]);
    assert_eq!(out.renditions.len(), 3);
    assert!(out.renditions.iter().all(|r| r.variant.is_none()));

    let out = run(&bytes, &[16, 299, 300, 301, 1920]);
    for f in Format::DEFAULT {
        assert_eq!(widths_of(&out, f), vec![16, 299], "{f}");
        for r in out.variants(f) {
            // 225 * 16 / 300 = 12; 225 * 299 / 300 = 224.25.
            let want = if r.width == 16 { 12 } else { 224 };
            assert_eq!(r.height, want);
            assert_eq!(decode(&r.bytes).dimensions(), (r.width, want), "{f}");
        }
        let full = out.rendition(f).unwrap();
        assert_eq!((full.width, full.height), (300, 225));
    }
    // Ordered per format: variants ascending, then the full size.
    let order: Vec<(Format, Option<u32>)> = out
        .renditions
        .iter()
        .map(|r| (r.format, r.variant))
        .collect();
    assert_eq!(
        &order[..3],
        &[
            (Format::Webp, Some(16)),
            (Format::Webp, Some(299)),
            (Format::Webp, None)
        ]
    );
}

#[test]
fn tiny_images_get_only_the_full_size() {
    for (w, h) in [(15, 40), (1, 1), (16, 3)] {
        let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8 * 9, y as u8, 50]));
        let out = run(&png(&DynamicImage::ImageRgb8(img)), &[16, 320]);
        assert_eq!(out.renditions.len(), 3, "{w}x{h}");
        assert!(out.renditions.iter().all(|r| r.variant.is_none()));
    }
    // 17 px wide: the 16 variant exists, 1 px high at least.
    let img = image::RgbImage::from_pixel(17, 1, image::Rgb([1, 2, 3]));
    let out = run(&png(&DynamicImage::ImageRgb8(img)), &[16]);
    for f in Format::DEFAULT {
        let v: Vec<_> = out.variants(f).collect();
        assert_eq!(v.len(), 1);
        assert_eq!((v[0].width, v[0].height), (16, 1));
        assert_eq!(decode(&v[0].bytes).dimensions(), (16, 1));
    }
}

/// A JPEG of `img` with an EXIF block saying `orientation`.
fn jpeg_with_orientation(img: &image::RgbImage, orientation: u16) -> Vec<u8> {
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 95)
        .write_image(
            img.as_raw(),
            img.width(),
            img.height(),
            image::ExtendedColorType::Rgb8,
        )
        .unwrap();
    // Big-endian TIFF with one IFD entry: Orientation (0x0112), SHORT, 1.
    let mut tiff = b"MM\0*\0\0\0\x08\0\x01".to_vec();
    tiff.extend_from_slice(&[0x01, 0x12, 0x00, 0x03, 0, 0, 0, 1]);
    tiff.extend_from_slice(&orientation.to_be_bytes());
    tiff.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend_from_slice(&tiff);
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&app1);
    out.extend_from_slice(&jpeg[2..]);
    out
}

#[test]
fn orientation_is_applied_before_resizing() {
    // Stored 400×200: left half red, right half blue. Orientation 6 means
    // "rotate 90° clockwise to display": 200×400, red on top, blue below.
    let stored = image::RgbImage::from_fn(400, 200, |x, _| {
        if x < 200 {
            image::Rgb([220, 20, 20])
        } else {
            image::Rgb([20, 20, 220])
        }
    });
    let out = run(&jpeg_with_orientation(&stored, 6), &[100, 320]);
    assert!(out.reoriented);
    assert_eq!((out.width, out.height), (200, 400));
    for f in Format::DEFAULT {
        // 320 is wider than the *oriented* width (200): no variant.
        assert_eq!(widths_of(&out, f), vec![100], "{f}");
        let v = out.variants(f).next().unwrap();
        assert_eq!((v.width, v.height), (100, 200), "{f}");
        let rgb = decode(&v.bytes).to_rgb8();
        assert_eq!(rgb.dimensions(), (100, 200));
        let top = rgb.get_pixel(50, 20).0;
        let bottom = rgb.get_pixel(50, 180).0;
        assert!(
            top[0] > 180 && top[2] < 60,
            "{f}: top {top:?} should be red"
        );
        assert!(
            bottom[2] > 180 && bottom[0] < 60,
            "{f}: bottom {bottom:?} should be blue"
        );
    }
    // The shared EXIF-rotated photo (square, so only the pixels tell): each
    // variant equals the upright full size resized, not the stored pixels.
    let bytes = common::read_image("pillow_hopper_orientation_6.jpg");
    let out = run(&bytes, &[32]);
    assert!(out.reoriented);
    let full = decode(&out.rendition(Format::Png).unwrap().bytes);
    let variant = decode(&out.variants(Format::Png).next().unwrap().bytes).to_rgb8();
    let upright = resize::variants(
        &full,
        &[32],
        1,
        &imagestack_processor::deadline::Deadline::after(Duration::from_secs(60)),
    )
    .unwrap()
    .0
    .remove(0)
    .image
    .to_rgb8();
    assert_eq!(variant, upright);
}

#[test]
fn alpha_is_kept_through_resampling() {
    // The shared RGBA logo: transparent corners, an opaque centre.
    let bytes = common::read_image("debian_emerald_logo_rgba.png");
    let out = run(&bytes, &[320, 640]);
    let full = decode(&out.rendition(Format::Png).unwrap().bytes).to_rgba8();
    assert!(out.has_alpha);
    for f in [Format::Webp, Format::Png] {
        for v in out.variants(f) {
            let img = decode(&v.bytes);
            assert!(img.color().has_alpha(), "{f} w{}", v.width);
            let rgba = img.to_rgba8();
            assert_eq!(rgba.get_pixel(0, 0).0[3], 0, "{f} w{}: corner", v.width);
            // Every fully transparent 8×8 block of the source stays
            // (almost) transparent, every opaque block opaque.
            let scale = f64::from(full.width()) / f64::from(v.width);
            let mut checked = 0;
            for y in (4..v.height - 4).step_by(7) {
                for x in (4..v.width - 4).step_by(7) {
                    let (sx, sy) = ((f64::from(x) * scale) as u32, (f64::from(y) * scale) as u32);
                    let region: Vec<u8> = (0..8)
                        .flat_map(|dy| (0..8).map(move |dx| (dx, dy)))
                        .filter_map(|(dx, dy)| {
                            let (px, py) = (sx + dx, sy + dy);
                            (px < full.width() && py < full.height())
                                .then(|| full.get_pixel(px, py).0[3])
                        })
                        .collect();
                    let a = rgba.get_pixel(x, y).0[3];
                    // Clear of edges at this scale: the filter's reach.
                    let margin = (scale * 3.0).ceil() as u32;
                    let around: Vec<u8> = (0..=2 * margin)
                        .flat_map(|dy| (0..=2 * margin).map(move |dx| (dx, dy)))
                        .filter_map(|(dx, dy)| {
                            let (px, py) = (
                                (sx + dx).checked_sub(margin)?,
                                (sy + dy).checked_sub(margin)?,
                            );
                            (px < full.width() && py < full.height())
                                .then(|| full.get_pixel(px, py).0[3])
                        })
                        .collect();
                    if !region.is_empty() && around.iter().all(|&s| s == 0) {
                        assert!(
                            a <= 2,
                            "{f} w{} ({x},{y}): alpha {a}, source clear",
                            v.width
                        );
                        checked += 1;
                    }
                    if !region.is_empty() && around.iter().all(|&s| s == 255) {
                        assert!(
                            a >= 253,
                            "{f} w{} ({x},{y}): alpha {a}, source opaque",
                            v.width
                        );
                        checked += 1;
                    }
                }
            }
            assert!(checked > 100, "{f} w{}: only {checked} samples", v.width);
        }
    }
    // JPEG variants flatten onto the background like the full size.
    for v in out.variants(Format::Jpeg) {
        let img = decode(&v.bytes);
        assert!(!img.color().has_alpha());
        let corner = img.to_rgb8().get_pixel(0, 0).0;
        assert!(
            corner.iter().all(|&c| c > 240),
            "jpeg w{}: {corner:?}",
            v.width
        );
    }
    // Gray + alpha stays gray + alpha.
    let la = image::GrayAlphaImage::from_fn(64, 32, |x, _| {
        image::LumaA([200, if x < 32 { 255 } else { 0 }])
    });
    let out = run(&png(&DynamicImage::ImageLumaA8(la)), &[16]);
    let v = decode(&out.variants(Format::Png).next().unwrap().bytes);
    assert_eq!(v.color(), image::ColorType::La8);
    assert_eq!(v.dimensions(), (16, 8));
    assert_eq!(v.to_luma_alpha8().get_pixel(1, 4).0, [200, 255]);
    assert_eq!(v.to_luma_alpha8().get_pixel(14, 4).0[1], 0);
}

#[test]
fn the_time_budget_covers_the_variants() {
    // The same image with and without variants: more work, same single
    // budget; an expired budget fails the whole image, never a partial set.
    let bytes = common::read_image("sway_Blue_1920x1080.png");
    let deadline = imagestack_processor::deadline::Deadline::after(Duration::ZERO);
    let err = pipeline::optimize_until(&bytes, &settings(&[320, 640]), &deadline).unwrap_err();
    assert_eq!(err.failure_reason(), Some(FailureReason::Timeout));
    // A budget that is long enough to decode but not for every variant and
    // encoder.
    let s = Settings {
        time_budget: Duration::from_millis(120),
        webp_method: 6,
        ..settings(&[320, 640, 1280])
    };
    match pipeline::optimize(&bytes, &s) {
        Err(e @ Error::Timeout { .. }) => assert!(e.to_string().contains("120 ms"), "{e}"),
        other => panic!(
            "expected a timeout, got {:?}",
            other.map(|o| o.renditions.len())
        ),
    }
}

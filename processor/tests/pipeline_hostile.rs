//! Hostile inputs, made here: each ends in the right failure reason (or,
//! where the input is legitimate but unusual, in correct renditions) without
//! panicking, and within the time budget.

mod common;

use std::io::Cursor;
use std::time::{Duration, Instant};

use image::{DynamicImage, ImageEncoder};
use imagestack_processor::deadline::Deadline;
use imagestack_processor::limits::Limits;
use imagestack_processor::pipeline::{self, Optimized, Settings};
use imagestack_processor::{Error, FailureReason};

const BUDGET: Duration = Duration::from_secs(10);

fn settings() -> Settings {
    Settings {
        time_budget: BUDGET,
        ..Settings::default()
    }
}

/// Run the pipeline and check it stayed within the budget.
fn run(bytes: &[u8], settings: &Settings) -> Result<Optimized, Error> {
    let started = Instant::now();
    let result = pipeline::optimize(bytes, settings);
    assert!(
        started.elapsed() < settings.time_budget + Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
    result
}

fn reason(bytes: &[u8]) -> Option<FailureReason> {
    match run(bytes, &settings()) {
        Ok(_) => None,
        Err(e) => Some(
            e.failure_reason()
                .unwrap_or_else(|| panic!("{e} is not a permanent image failure")),
        ),
    }
}

fn small_png(width: u32, height: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(width, height, |x, y| image::Rgb([x as u8, y as u8, 99]));
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(img.as_raw(), width, height, image::ExtendedColorType::Rgb8)
        .unwrap();
    out
}

/// PNG signature + IHDR declaring `width`×`height` RGBA8 + a tiny IDAT + IEND.
fn png_declaring(width: u32, height: u32) -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 6, 0, 0, 0]);
    png.extend(common::png_chunk(b"IHDR", &ihdr));
    // A valid zlib stream of a few zero bytes: far too little data.
    png.extend(common::png_chunk(
        b"IDAT",
        &[0x78, 0x9c, 0x63, 0x60, 0x00, 0x00, 0x00, 0x02, 0x00, 0x01],
    ));
    png.extend(common::png_chunk(b"IEND", &[]));
    png
}

/// A real JPEG whose SOF header is rewritten to declare `width`×`height`.
fn jpeg_declaring(width: u16, height: u16) -> Vec<u8> {
    let mut jpeg = common::read_image("pillow_hopper_orientation_6.jpg");
    let sof = (0..jpeg.len() - 9)
        .find(|&i| jpeg[i] == 0xFF && (0xC0..=0xC2).contains(&jpeg[i + 1]))
        .expect("SOF marker");
    jpeg[sof + 5..sof + 7].copy_from_slice(&height.to_be_bytes());
    jpeg[sof + 7..sof + 9].copy_from_slice(&width.to_be_bytes());
    jpeg
}

#[test]
fn truncated_files_are_corrupt() {
    for name in [
        "plasma_Grey_2560x1600_gray.jpg",
        "skimage_coffee.png",
        "pillow_hopper.webp",
    ] {
        let bytes = common::read_image(name);
        for cut in [bytes.len() / 2, 64] {
            assert_eq!(
                reason(&bytes[..cut]),
                Some(FailureReason::CorruptImage),
                "{name} cut at {cut}"
            );
        }
    }
}

#[test]
fn empty_random_and_text_are_unsupported() {
    assert_eq!(reason(b""), Some(FailureReason::UnsupportedFormat));
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let random: Vec<u8> = (0..100_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    assert_eq!(reason(&random), Some(FailureReason::UnsupportedFormat));
    // A text file named .png: the name is never looked at.
    assert_eq!(
        reason(b"just some text, saved as photo.png\n"),
        Some(FailureReason::UnsupportedFormat)
    );
    assert_eq!(
        reason(b"GIF89a\x01\x00\x01\x00\x00\x00\x00;"),
        Some(FailureReason::UnsupportedFormat)
    );
}

#[test]
fn wrong_extension_still_converts() {
    // The pipeline never sees a name; a PNG uploaded as .jpg is a PNG.
    let out = run(&small_png(40, 30), &settings()).expect("png converts");
    assert_eq!(out.source_format.as_str(), "png");
    assert_eq!((out.width, out.height), (40, 30));
}

#[test]
fn decompression_bombs_are_refused_from_the_header() {
    let rss_before = imagestack_processor::cpu::usage().1;
    assert_eq!(
        reason(&png_declaring(100_000, 100_000)),
        Some(FailureReason::DimensionTooLarge)
    );
    assert_eq!(
        reason(&jpeg_declaring(65_000, 65_000)),
        Some(FailureReason::DimensionTooLarge)
    );
    // Within the side limit but over 100 MP.
    assert_eq!(
        reason(&png_declaring(16_000, 16_000)),
        Some(FailureReason::TooManyPixels)
    );
    assert_eq!(
        reason(&jpeg_declaring(12_000, 12_000)),
        Some(FailureReason::TooManyPixels)
    );
    // No pixels were allocated: 256 MP of RGBA would be a gigabyte.
    let rss_after = imagestack_processor::cpu::usage().1;
    assert!(
        rss_after - rss_before < 200 << 20,
        "RSS grew by {} MB",
        (rss_after - rss_before) >> 20
    );
    // Under the limits the same lie is simply a corrupt file.
    assert_eq!(
        reason(&png_declaring(3_000, 3_000)),
        Some(FailureReason::CorruptImage)
    );
}

#[test]
fn byte_and_custom_limits() {
    let s = Settings {
        limits: Limits {
            max_bytes: 100,
            ..Limits::default()
        },
        ..settings()
    };
    let err = run(&small_png(40, 30), &s).unwrap_err();
    assert_eq!(err.failure_reason(), Some(FailureReason::TooLarge));
    let s = Settings {
        limits: Limits {
            max_pixels: 1000,
            ..Limits::default()
        },
        ..settings()
    };
    assert_eq!(
        run(&small_png(40, 30), &s).unwrap_err().failure_reason(),
        Some(FailureReason::TooManyPixels)
    );
}

#[test]
fn cmyk_jpeg_converts_to_rgb() {
    // 32×16 CMYK: left half no ink (white), right half full cyan.
    let (w, h) = (32usize, 16usize);
    let mut cmyk = Vec::with_capacity(w * h * 4);
    for _y in 0..h {
        for x in 0..w {
            // Adobe CMYK JPEGs store inverted values (255 = no ink).
            cmyk.extend_from_slice(if x < w / 2 {
                &[255, 255, 255, 255]
            } else {
                &[0, 255, 255, 255]
            });
        }
    }
    let mut c = mozjpeg::Compress::new(mozjpeg::ColorSpace::JCS_CMYK);
    c.set_size(w, h);
    c.set_quality(95.0);
    let mut started = c.start_compress(Vec::new()).unwrap();
    started.write_scanlines(&cmyk).unwrap();
    let jpeg = started.finish().unwrap();

    let out = run(&jpeg, &settings()).expect("CMYK converts");
    assert_eq!((out.width, out.height), (32, 16));
    let rgb = image::load_from_memory(
        &out.rendition(imagestack_contract::Format::Png)
            .unwrap()
            .bytes,
    )
    .unwrap()
    .to_rgb8();
    let white = rgb.get_pixel(2, 8).0;
    let cyan = rgb.get_pixel(29, 8).0;
    assert!(
        white.iter().all(|&c| c > 230),
        "no ink should be white, got {white:?}"
    );
    assert!(
        cyan[0] < 60 && cyan[1] > 180 && cyan[2] > 180,
        "cyan ink should be cyan, got {cyan:?}"
    );
}

#[test]
fn sixteen_bit_png_becomes_eight_bit() {
    let img = image::ImageBuffer::<image::Rgba<u16>, _>::from_fn(20, 10, |x, _| {
        image::Rgba([x as u16 * 3000, 65535, 0, if x == 0 { 0 } else { 65535 }])
    });
    let mut png = Vec::new();
    DynamicImage::ImageRgba16(img)
        .write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    let out = run(&png, &settings()).expect("16-bit converts");
    let decoded = image::load_from_memory(
        &out.rendition(imagestack_contract::Format::Png)
            .unwrap()
            .bytes,
    )
    .unwrap();
    assert_eq!(decoded.color(), image::ColorType::Rgba8);
    assert_eq!(
        decoded.to_rgba8().get_pixel(19, 5).0,
        [((19u32 * 3000) >> 8) as u8, 255, 0, 255]
    );
}

#[test]
fn huge_exif_is_stripped_not_fatal() {
    // JPEG: a maximal APP1 Exif segment full of GPS-looking junk after SOI.
    let jpeg = common::read_image("pillow_flower2_icc.jpg");
    let mut payload = b"Exif\0\0".to_vec();
    while payload.len() < 65_000 {
        payload.extend_from_slice(b"GPSLatitude 51.5007 N GPSLongitude 0.1246 W ");
    }
    let mut hostile = jpeg[..2].to_vec();
    hostile.extend_from_slice(&[0xFF, 0xE1]);
    hostile.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
    hostile.extend_from_slice(&payload);
    hostile.extend_from_slice(&jpeg[2..]);
    // PNG: a 4 MB eXIf chunk before the image data.
    let png = small_png(16, 16);
    let mut big_exif = b"MM\0*".to_vec();
    big_exif.resize(4 << 20, b'G');
    let mut hostile_png = png[..33].to_vec();
    hostile_png.extend(common::png_chunk(b"eXIf", &big_exif));
    hostile_png.extend_from_slice(&png[33..]);

    for bytes in [hostile, hostile_png] {
        let out = run(&bytes, &settings()).expect("huge EXIF is just metadata");
        for r in &out.renditions {
            assert!(
                !r.bytes.windows(3).any(|w| w == b"GPS"),
                "{}: EXIF leaked",
                r.format
            );
            assert!(
                !r.bytes.windows(4).any(|w| w == b"eXIf"),
                "{}: eXIf leaked",
                r.format
            );
        }
    }
}

#[test]
fn time_budget_is_enforced() {
    let bytes = common::read_image("sway_Blue_1920x1080.png");
    let err = pipeline::optimize_until(&bytes, &settings(), &Deadline::after(Duration::ZERO))
        .unwrap_err();
    assert_eq!(err.failure_reason(), Some(FailureReason::Timeout));
    // A budget too short for the encoders, long enough to decode.
    let s = Settings {
        time_budget: Duration::from_millis(150),
        webp_method: 6,
        ..settings()
    };
    let started = Instant::now();
    let err = pipeline::optimize(&bytes, &s).unwrap_err();
    assert_eq!(err.failure_reason(), Some(FailureReason::Timeout), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn non_srgb_icc_profile_is_carried_into_every_rendition() {
    // flower2's sRGB profile with its description renamed: no longer "sRGB",
    // so it must be embedded (and survive byte for byte) in all three.
    let jpeg = common::read_image("pillow_flower2_icc.jpg");
    let mut decoder = image::codecs::jpeg::JpegDecoder::new(Cursor::new(&jpeg)).unwrap();
    let mut profile = image::ImageDecoder::icc_profile(&mut decoder)
        .unwrap()
        .expect("flower2 has ICC");
    let mut renamed = 0;
    while let Some(at) = profile.windows(4).position(|w| w == b"sRGB") {
        profile[at..at + 4].copy_from_slice(b"Wide");
        renamed += 1;
    }
    while let Some(at) = profile.windows(8).position(|w| w == b"\0s\0R\0G\0B") {
        profile[at..at + 8].copy_from_slice(b"\0W\0i\0d\0e");
    }
    assert!(renamed > 0, "sRGB in the description");
    let img = image::load_from_memory(&jpeg).unwrap().to_rgb8();
    let mut png = Vec::new();
    let mut encoder = image::codecs::png::PngEncoder::new(&mut png);
    image::ImageEncoder::set_icc_profile(&mut encoder, profile.clone()).unwrap();
    encoder
        .write_image(
            img.as_raw(),
            img.width(),
            img.height(),
            image::ExtendedColorType::Rgb8,
        )
        .unwrap();

    let out = run(&png, &settings()).expect("converts");
    assert_eq!(
        out.icc,
        imagestack_processor::pipeline::IccHandling::Carried
    );
    for r in &out.renditions {
        assert!(r.icc_embedded, "{}", r.format);
        let embedded = match r.format {
            imagestack_contract::Format::Png => image::ImageDecoder::icc_profile(
                &mut image::codecs::png::PngDecoder::new(Cursor::new(&r.bytes)).unwrap(),
            ),
            imagestack_contract::Format::Jpeg => image::ImageDecoder::icc_profile(
                &mut image::codecs::jpeg::JpegDecoder::new(Cursor::new(&r.bytes)).unwrap(),
            ),
            imagestack_contract::Format::Webp => image::ImageDecoder::icc_profile(
                &mut image::codecs::webp::WebPDecoder::new(Cursor::new(&r.bytes)).unwrap(),
            ),
            imagestack_contract::Format::Avif => unreachable!("settings() has no avif"),
        };
        assert_eq!(
            embedded.unwrap().as_deref(),
            Some(&profile[..]),
            "{}",
            r.format
        );
    }
}

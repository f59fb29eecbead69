//! SSIM for tests and the benchmark (image-compare's windowed SSIM on luma).

use image::{DynamicImage, GrayImage};

/// Alpha composited onto white, then luma.
pub fn luma_on_white(image: &DynamicImage) -> GrayImage {
    if image.color().has_alpha() {
        let flat = imagestack_processor::encode::flatten(
            &DynamicImage::ImageRgba8(image.to_rgba8()),
            [255, 255, 255],
        );
        flat.to_luma8()
    } else {
        image.to_luma8()
    }
}

/// Alpha dropped (what the reference's `convert("RGB")` encodes), then luma.
pub fn luma_without_alpha(image: &DynamicImage) -> GrayImage {
    DynamicImage::ImageRgb8(image.to_rgb8()).to_luma8()
}

/// Mean SSIM over 8×8 windows of two equally sized luma images.
pub fn ssim(reference: &GrayImage, candidate: &GrayImage) -> f64 {
    match image_compare::gray_similarity_structure(
        &image_compare::Algorithm::MSSIMSimple,
        reference,
        candidate,
    ) {
        Ok(s) => s.score,
        Err(e) => panic!("SSIM: {e:?}"),
    }
}

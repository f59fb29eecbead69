//! The four encoders. Each takes the decoded 8-bit image and the ICC
//! profile to embed (if it fits the rendition's channels) and returns the
//! encoded bytes; none of them writes EXIF or XMP.

pub mod avif;
pub mod jpeg;
pub mod png;
pub mod webp;

use image::DynamicImage;

/// Flatten any alpha onto `background`; gray stays gray when the background is gray.
pub fn flatten(image: &DynamicImage, background: [u8; 3]) -> DynamicImage {
    let gray_background = background[0] == background[1] && background[1] == background[2];
    match image {
        DynamicImage::ImageLumaA8(la) if gray_background => {
            let mut out = image::GrayImage::new(la.width(), la.height());
            for (o, p) in out.pixels_mut().zip(la.pixels()) {
                o.0 = [blend(p.0[0], background[0], p.0[1])];
            }
            DynamicImage::ImageLuma8(out)
        }
        DynamicImage::ImageLumaA8(_) | DynamicImage::ImageRgba8(_) => {
            let rgba = match image {
                DynamicImage::ImageRgba8(rgba) => std::borrow::Cow::Borrowed(rgba),
                other => std::borrow::Cow::Owned(other.to_rgba8()),
            };
            let mut out = image::RgbImage::new(rgba.width(), rgba.height());
            for (o, p) in out.pixels_mut().zip(rgba.pixels()) {
                let [r, g, b, a] = p.0;
                o.0 = [
                    blend(r, background[0], a),
                    blend(g, background[1], a),
                    blend(b, background[2], a),
                ];
            }
            DynamicImage::ImageRgb8(out)
        }
        other => other.clone(),
    }
}

/// `fg` over `bg` with coverage `alpha`, rounded.
fn blend(fg: u8, bg: u8, alpha: u8) -> u8 {
    let a = u32::from(alpha);
    let v = (u32::from(fg) * a + u32::from(bg) * (255 - a) + 127) / 255;
    // v <= 255 by construction.
    v as u8
}

/// A panic payload as text (the mozjpeg wrapper reports libjpeg errors by unwinding).
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "encoder panicked".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blend_extremes() {
        assert_eq!(blend(0, 255, 0), 255);
        assert_eq!(blend(0, 255, 255), 0);
        assert_eq!(blend(100, 200, 128), 150);
    }

    #[test]
    fn transparent_pixels_become_white_not_black() {
        let mut rgba = image::RgbaImage::from_pixel(2, 1, image::Rgba([0, 0, 0, 0]));
        rgba.put_pixel(1, 0, image::Rgba([10, 20, 30, 255]));
        let flat = flatten(&DynamicImage::ImageRgba8(rgba), [255, 255, 255]);
        let rgb = flat.to_rgb8();
        assert_eq!(rgb.get_pixel(0, 0).0, [255, 255, 255]);
        assert_eq!(rgb.get_pixel(1, 0).0, [10, 20, 30]);
    }

    #[test]
    fn gray_alpha_stays_gray_on_gray_background() {
        let la = image::GrayAlphaImage::from_pixel(1, 1, image::LumaA([0, 0]));
        let flat = flatten(&DynamicImage::ImageLumaA8(la.clone()), [255, 255, 255]);
        assert!(matches!(flat, DynamicImage::ImageLuma8(_)));
        let flat = flatten(&DynamicImage::ImageLumaA8(la), [255, 0, 0]);
        assert_eq!(flat.to_rgb8().get_pixel(0, 0).0, [255, 0, 0]);
    }
}

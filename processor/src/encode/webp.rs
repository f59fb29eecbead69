//! Lossy WebP through libwebp (SIMD enabled), with the ICC profile added
//! through libwebp's mux and the time budget enforced by its progress hook.

use std::ffi::{c_int, c_void};

use image::DynamicImage;
use imagestack_contract::Format;
use libwebp_sys as sys;

use crate::deadline::Deadline;
use crate::error::{Error, Result};

/// For images with a (non-opaque) alpha channel the method is capped at 5:
/// libwebp compresses the alpha plane losslessly with the same effort as
/// `method`, and at 6 (with the default alpha quality 100) it switches to its
/// slowest lossless mode — 17 s for a 3 MP logo, 4.5 s for a 0.25 MP photo in
/// the Pillow reference. At 5 the colour planes are coded almost as well.
pub const ALPHA_METHOD_CAP: u8 = 5;

/// The WebP method actually used: the configured one, capped for alpha.
pub fn effective_method(configured: u8, has_alpha: bool) -> u8 {
    let m = configured.min(6);
    if has_alpha {
        m.min(ALPHA_METHOD_CAP)
    } else {
        m
    }
}

/// libwebp settings beyond quality and method (the benchmark compares these;
/// [`Tuning::DEFAULT`] is what the pipeline uses). `None` keeps libwebp's
/// default for its `WEBP_PRESET_DEFAULT`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tuning {
    /// Spatial noise shaping 0–100 (libwebp: 50).
    pub sns_strength: Option<u8>,
    /// Loop filter strength 0–100 (libwebp: 60).
    pub filter_strength: Option<u8>,
    /// Let libwebp pick the filter strength per segment (libwebp: off).
    pub autofilter: bool,
    /// Number of segments 1–4 (libwebp: 4).
    pub segments: Option<u8>,
}

impl Tuning {
    /// The pipeline's setting.
    pub const DEFAULT: Tuning = Tuning {
        sns_strength: None,
        filter_strength: None,
        autofilter: false,
        segments: None,
    };
}

/// Encode `image` as lossy WebP at `quality` with `method` (0–6).
pub fn encode(
    image: &DynamicImage,
    icc: Option<&[u8]>,
    quality: u8,
    method: u8,
    deadline: &Deadline,
) -> Result<Vec<u8>> {
    encode_tuned(image, icc, quality, method, Tuning::DEFAULT, deadline)
}

/// [`encode`] with an explicit [`Tuning`] (the benchmark's comparisons).
pub fn encode_tuned(
    image: &DynamicImage,
    icc: Option<&[u8]>,
    quality: u8,
    method: u8,
    tuning: Tuning,
    deadline: &Deadline,
) -> Result<Vec<u8>> {
    let fail = |message: String| Error::EncodeFailed {
        format: Format::Webp,
        message,
    };
    let converted;
    let (pixels, has_alpha): (&[u8], bool) = match image {
        DynamicImage::ImageRgb8(rgb) => (rgb.as_raw(), false),
        DynamicImage::ImageRgba8(rgba) => (rgba.as_raw(), true),
        other if other.color().has_alpha() => {
            converted = other.to_rgba8().into_raw();
            (&converted, true)
        }
        other => {
            converted = other.to_rgb8().into_raw();
            (&converted, false)
        }
    };
    let width = c_int::try_from(image.width()).map_err(|e| fail(e.to_string()))?;
    let height = c_int::try_from(image.height()).map_err(|e| fail(e.to_string()))?;
    let channels: c_int = if has_alpha { 4 } else { 3 };

    let mut config =
        Config::new(quality, method, tuning).ok_or_else(|| fail("invalid config".into()))?;
    config.0.thread_level = 0;
    let mut picture = Picture::new().ok_or_else(|| fail("picture init failed".into()))?;
    let mut writer = Box::new(Writer::new());
    let deadline_box = Box::new(*deadline);

    // SAFETY: `picture`, `writer` and `deadline_box` outlive every libwebp call
    // below (they are dropped at the end of this function, the picture first);
    // `pixels` holds `height` rows of `width * channels` bytes.
    let encoded = unsafe {
        let p = &mut picture.0;
        p.width = width;
        p.height = height;
        p.use_argb = 0;
        let stride = width * channels;
        let imported = if has_alpha {
            sys::WebPPictureImportRGBA(p, pixels.as_ptr(), stride)
        } else {
            sys::WebPPictureImportRGB(p, pixels.as_ptr(), stride)
        };
        if imported == 0 {
            return Err(fail(format!("import failed: {:?}", p.error_code)));
        }
        p.writer = Some(sys::WebPMemoryWrite);
        p.custom_ptr = (&mut writer.0 as *mut sys::WebPMemoryWriter).cast::<c_void>();
        p.progress_hook = Some(progress_hook);
        p.user_data = (&*deadline_box as *const Deadline)
            .cast_mut()
            .cast::<c_void>();
        if sys::WebPEncode(&config.0, p) == 0 {
            return Err(match p.error_code {
                sys::WebPEncodingError::VP8_ENC_ERROR_USER_ABORT => deadline.timeout("webp"),
                code => fail(format!("{code:?}")),
            });
        }
        std::slice::from_raw_parts(writer.0.mem, writer.0.size).to_vec()
    };
    match icc {
        Some(profile) if !profile.is_empty() => with_icc(&encoded, profile).map_err(fail),
        _ => Ok(encoded),
    }
}

/// libwebp calls this as it progresses; returning 0 aborts the encode.
unsafe extern "C" fn progress_hook(_percent: c_int, picture: *const sys::WebPPicture) -> c_int {
    // SAFETY: `user_data` was set to a live `Deadline` by `encode`.
    let expired = unsafe {
        picture
            .as_ref()
            .and_then(|p| p.user_data.cast::<Deadline>().as_ref())
            .is_some_and(Deadline::expired)
    };
    c_int::from(!expired)
}

/// Add an `ICCP` chunk (libwebp's mux builds the extended VP8X container).
fn with_icc(webp: &[u8], icc: &[u8]) -> std::result::Result<Vec<u8>, String> {
    // SAFETY: the mux copies both inputs (copy_data = 1); the assembled data is
    // freed with WebPDataClear and the mux with WebPMuxDelete on every path.
    unsafe {
        let bitstream = sys::WebPData {
            bytes: webp.as_ptr(),
            size: webp.len(),
        };
        let mux = sys::WebPMuxCreateInternal(&bitstream, 1, sys::WEBP_MUX_ABI_VERSION as c_int);
        if mux.is_null() {
            return Err("mux: cannot parse own output".into());
        }
        let profile = sys::WebPData {
            bytes: icc.as_ptr(),
            size: icc.len(),
        };
        let mut assembled = sys::WebPData::default();
        let set = sys::WebPMuxSetChunk(mux, c"ICCP".as_ptr(), &profile, 1);
        let result = if set != sys::WebPMuxError::WEBP_MUX_OK {
            Err(format!("mux: set ICCP: {set:?}"))
        } else {
            match sys::WebPMuxAssemble(mux, &mut assembled) {
                sys::WebPMuxError::WEBP_MUX_OK => {
                    Ok(std::slice::from_raw_parts(assembled.bytes, assembled.size).to_vec())
                }
                e => Err(format!("mux: assemble: {e:?}")),
            }
        };
        sys::WebPDataClear(&mut assembled);
        sys::WebPMuxDelete(mux);
        result
    }
}

struct Config(sys::WebPConfig);

impl Config {
    fn new(quality: u8, method: u8, tuning: Tuning) -> Option<Self> {
        let mut config = std::mem::MaybeUninit::<sys::WebPConfig>::uninit();
        // SAFETY: WebPConfigInitInternal fully initialises the struct when it returns non-zero.
        let mut config = unsafe {
            if sys::WebPConfigInitInternal(
                config.as_mut_ptr(),
                sys::WebPPreset::WEBP_PRESET_DEFAULT,
                f32::from(quality),
                sys::WEBP_ENCODER_ABI_VERSION as c_int,
            ) == 0
            {
                return None;
            }
            config.assume_init()
        };
        config.lossless = 0;
        config.quality = f32::from(quality.min(100));
        config.method = c_int::from(method.min(6));
        if let Some(v) = tuning.sns_strength {
            config.sns_strength = c_int::from(v.min(100));
        }
        if let Some(v) = tuning.filter_strength {
            config.filter_strength = c_int::from(v.min(100));
        }
        config.autofilter = c_int::from(tuning.autofilter);
        if let Some(v) = tuning.segments {
            config.segments = c_int::from(v.clamp(1, 4));
        }
        // SAFETY: config is initialised.
        (unsafe { sys::WebPValidateConfig(&config) } != 0).then_some(Config(config))
    }
}

struct Picture(sys::WebPPicture);

impl Picture {
    fn new() -> Option<Self> {
        let mut picture = std::mem::MaybeUninit::<sys::WebPPicture>::uninit();
        // SAFETY: WebPPictureInitInternal fully initialises the struct when it returns non-zero.
        unsafe {
            if sys::WebPPictureInitInternal(
                picture.as_mut_ptr(),
                sys::WEBP_ENCODER_ABI_VERSION as c_int,
            ) == 0
            {
                return None;
            }
            Some(Picture(picture.assume_init()))
        }
    }
}

impl Drop for Picture {
    fn drop(&mut self) {
        // SAFETY: frees only what libwebp allocated for this picture.
        unsafe { sys::WebPPictureFree(&mut self.0) }
    }
}

struct Writer(sys::WebPMemoryWriter);

impl Writer {
    fn new() -> Self {
        let mut w = std::mem::MaybeUninit::<sys::WebPMemoryWriter>::uninit();
        // SAFETY: WebPMemoryWriterInit initialises every field.
        unsafe {
            sys::WebPMemoryWriterInit(w.as_mut_ptr());
            Writer(w.assume_init())
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // SAFETY: frees the buffer WebPMemoryWrite allocated.
        unsafe { sys::WebPMemoryWriterClear(&mut self.0) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn method_policy_caps_alpha_only() {
        assert_eq!(effective_method(6, false), 6);
        assert_eq!(effective_method(6, true), ALPHA_METHOD_CAP);
        assert_eq!(effective_method(2, true), 2);
        assert_eq!(effective_method(9, false), 6);
    }

    #[test]
    fn encodes_and_embeds_icc() {
        let img = DynamicImage::ImageRgb8(image::RgbImage::from_fn(64, 48, |x, y| {
            image::Rgb([(x * 4) as u8, (y * 5) as u8, 128])
        }));
        let deadline = Deadline::after(Duration::from_secs(60));
        let plain = encode(&img, None, 85, 4, &deadline).unwrap();
        assert_eq!(&plain[0..4], b"RIFF");
        assert_eq!(&plain[8..12], b"WEBP");
        let mut icc = vec![7u8; 300];
        icc[16..20].copy_from_slice(b"RGB ");
        let with = encode(&img, Some(&icc), 85, 4, &deadline).unwrap();
        assert_eq!(&with[12..16], b"VP8X");
        assert!(with.windows(4).any(|w| w == b"ICCP"));
        let decoded = image::load_from_memory(&with).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (64, 48));
    }

    #[test]
    fn expired_deadline_aborts() {
        let img =
            DynamicImage::ImageRgb8(image::RgbImage::from_pixel(256, 256, image::Rgb([1, 2, 3])));
        let deadline = Deadline::after(Duration::ZERO);
        assert!(matches!(
            encode(&img, None, 85, 4, &deadline),
            Err(Error::Timeout { stage: "webp", .. })
        ));
    }
}

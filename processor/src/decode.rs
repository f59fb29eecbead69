//! Format detection, header-checked limits and decoding.
//!
//! The format comes from the bytes (magic numbers), never from a file name.
//! The decoder is created, its header dimensions are checked against
//! [`Limits`], and only then are pixels decoded (with an allocation ceiling
//! on top). The result is oriented (EXIF orientation applied), reduced to
//! 8 bits per channel, and carries only the ICC profile: EXIF, XMP and IPTC
//! are read by nobody and written nowhere.

use std::io::Cursor;

use image::codecs::jpeg::JpegDecoder;
use image::codecs::png::PngDecoder;
use image::codecs::webp::WebPDecoder;
use image::error::LimitErrorKind;
use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageError, ImageFormat};

use crate::error::{Error, Result};
use crate::limits::Limits;

/// A supported input format, detected from the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceFormat {
    Jpeg,
    Png,
    Webp,
}

impl SourceFormat {
    pub const fn as_str(self) -> &'static str {
        match self {
            SourceFormat::Jpeg => "jpeg",
            SourceFormat::Png => "png",
            SourceFormat::Webp => "webp",
        }
    }
}

/// Detect the format from magic bytes.
pub fn detect(bytes: &[u8]) -> Result<SourceFormat> {
    match image::guess_format(bytes) {
        Ok(ImageFormat::Jpeg) => Ok(SourceFormat::Jpeg),
        Ok(ImageFormat::Png) => Ok(SourceFormat::Png),
        Ok(ImageFormat::WebP) => Ok(SourceFormat::Webp),
        Ok(other) => Err(Error::UnsupportedFormat(format!(
            "{other:?} is not accepted (JPEG, PNG and WebP are)"
        ))),
        Err(_) => Err(Error::UnsupportedFormat(
            "not a JPEG, PNG or WebP image (unrecognised signature)".to_string(),
        )),
    }
}

/// An embedded ICC profile, classified by the colour space it describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IccProfile {
    /// Describes RGB data: carried into RGB renditions.
    Rgb(Vec<u8>),
    /// Describes grayscale data: carried into grayscale renditions.
    Gray(Vec<u8>),
    /// Describes a colour space no rendition has (e.g. CMYK, after the
    /// decoder converted the pixels to RGB); it cannot be carried.
    Other { space: String },
}

impl IccProfile {
    /// Classify a profile by its header's data colour space (bytes 16..20).
    pub fn classify(data: Vec<u8>) -> IccProfile {
        let space = data.get(16..20).map(|s| s.to_vec());
        match space.as_deref() {
            Some(b"RGB ") if data.len() >= 128 => IccProfile::Rgb(data),
            Some(b"GRAY") if data.len() >= 128 => IccProfile::Gray(data),
            Some(s) => IccProfile::Other {
                space: String::from_utf8_lossy(s).trim().to_string(),
            },
            None => IccProfile::Other {
                space: "invalid".to_string(),
            },
        }
    }

    /// Whether this is an sRGB profile (its description names sRGB). sRGB is
    /// what browsers assume for untagged images, so such a profile is not
    /// embedded: the rendition looks the same and is a few kB smaller.
    pub fn is_srgb(&self) -> bool {
        match self {
            IccProfile::Rgb(d) => {
                description(d).is_some_and(|t| contains(t, b"sRGB") || contains(t, b"\0s\0R\0G\0B"))
            }
            _ => false,
        }
    }

    /// The profile for a rendition with (`gray == true`) one or three colour channels.
    pub fn for_channels(&self, gray: bool) -> Option<&[u8]> {
        match (self, gray) {
            (IccProfile::Rgb(d), false) | (IccProfile::Gray(d), true) => Some(d),
            _ => None,
        }
    }
}

/// The `desc` tag's data (ICC tag table: count at 128, then 12-byte entries).
fn description(profile: &[u8]) -> Option<&[u8]> {
    let be32 = |at: usize| -> Option<usize> {
        let b = profile.get(at..at + 4)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let count = be32(128)?.min(256);
    (0..count).find_map(|i| {
        let entry = 132 + 12 * i;
        if profile.get(entry..entry + 4)? != b"desc" {
            return None;
        }
        let (offset, size) = (be32(entry + 4)?, be32(entry + 8)?);
        profile.get(offset..offset.checked_add(size)?)
    })
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// What the header says, before any pixel is decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub format: SourceFormat,
    /// Stored dimensions (before orientation).
    pub width: u32,
    pub height: u32,
}

/// A decoded, oriented, 8-bit image.
#[derive(Debug, Clone)]
pub struct Decoded {
    pub format: SourceFormat,
    /// One of `ImageLuma8`, `ImageLumaA8`, `ImageRgb8`, `ImageRgba8`; an alpha
    /// channel is present only when some pixel is not fully opaque.
    pub image: DynamicImage,
    pub icc: Option<IccProfile>,
    /// Whether an EXIF orientation other than "normal" was applied.
    pub reoriented: bool,
}

impl Decoded {
    pub fn width(&self) -> u32 {
        self.image.width()
    }
    pub fn height(&self) -> u32 {
        self.image.height()
    }
    pub fn has_alpha(&self) -> bool {
        self.image.color().has_alpha()
    }
    pub fn is_gray(&self) -> bool {
        !self.image.color().has_color()
    }
}

/// Read only the header: format and dimensions, checked against `limits`.
pub fn inspect(bytes: &[u8], limits: &Limits) -> Result<Header> {
    limits.check_bytes(bytes.len() as u64)?;
    let format = detect(bytes)?;
    let decoder = open(bytes, format, limits)?;
    let (width, height) = decoder.dimensions();
    limits.check_dimensions(width, height)?;
    Ok(Header {
        format,
        width,
        height,
    })
}

/// Decode `bytes` under `limits`.
pub fn decode(bytes: &[u8], limits: &Limits) -> Result<Decoded> {
    limits.check_bytes(bytes.len() as u64)?;
    let format = detect(bytes)?;
    if format == SourceFormat::Jpeg && !jpeg_is_complete(bytes) {
        // The JPEG decoder is lenient and would fill a cut-off image with gray.
        return Err(Error::CorruptImage(
            "truncated JPEG: no end-of-image marker after the image data".to_string(),
        ));
    }
    let mut decoder = open(bytes, format, limits)?;
    let (width, height) = decoder.dimensions();
    limits.check_dimensions(width, height)?;
    decoder
        .set_limits(image_limits(limits))
        .map_err(|e| map_image_error(e, width, height, limits))?;

    let icc = read_icc(decoder.as_mut());
    // A broken EXIF block is ignored like any other metadata: orientation is
    // then "normal", and the block is not carried anywhere.
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let mut image = DynamicImage::from_decoder(decoder)
        .map_err(|e| map_image_error(e, width, height, limits))?;
    image.apply_orientation(orientation);
    Ok(Decoded {
        format,
        image: normalise(image),
        icc,
        reoriented: orientation != Orientation::NoTransforms,
    })
}

/// Whether an end-of-image marker follows the first start-of-scan. Segments
/// before the scan are walked by their lengths (so an EXIF thumbnail's own
/// EOI does not count); inside entropy-coded data a 0xFF byte is always
/// stuffed or a marker, so `FF D9` there is the real EOI.
fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let mut at = 2;
    while at + 4 <= bytes.len() {
        if bytes[at] != 0xFF {
            return false;
        }
        let marker = bytes[at + 1];
        if marker == 0xFF {
            at += 1; // fill byte
            continue;
        }
        let len = usize::from(u16::from_be_bytes([bytes[at + 2], bytes[at + 3]]));
        if marker == 0xDA {
            let scan = at + 2 + len;
            return bytes
                .get(scan..)
                .is_some_and(|rest| rest.windows(2).any(|w| w == [0xFF, 0xD9]));
        }
        at += 2 + len;
    }
    false
}

fn open<'a>(
    bytes: &'a [u8],
    format: SourceFormat,
    limits: &Limits,
) -> Result<Box<dyn ImageDecoder + 'a>> {
    let (w, h) = (0, 0);
    let map = |e| map_image_error(e, w, h, limits);
    let cursor = Cursor::new(bytes);
    Ok(match format {
        SourceFormat::Jpeg => Box::new(JpegDecoder::new(cursor).map_err(map)?),
        SourceFormat::Png => {
            // Only an allocation ceiling here (for compressed metadata chunks);
            // the dimensions are checked by the caller, with our own error.
            let mut header_limits = image::Limits::no_limits();
            header_limits.max_alloc = Some(limits.max_decode_alloc());
            Box::new(PngDecoder::with_limits(cursor, header_limits).map_err(map)?)
        }
        SourceFormat::Webp => Box::new(WebPDecoder::new(cursor).map_err(map)?),
    })
}

fn image_limits(limits: &Limits) -> image::Limits {
    let mut l = image::Limits::default();
    l.max_image_width = Some(limits.max_dimension);
    l.max_image_height = Some(limits.max_dimension);
    l.max_alloc = Some(limits.max_decode_alloc());
    l
}

fn read_icc(decoder: &mut dyn ImageDecoder) -> Option<IccProfile> {
    match decoder.icc_profile() {
        Ok(Some(data)) if !data.is_empty() => Some(IccProfile::classify(data)),
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(error = %e, "unreadable ICC profile; treating it as incompatible");
            Some(IccProfile::Other {
                space: "unreadable".to_string(),
            })
        }
    }
}

fn map_image_error(e: ImageError, width: u32, height: u32, limits: &Limits) -> Error {
    match e {
        ImageError::Limits(l) => match l.kind() {
            LimitErrorKind::DimensionError => Error::DimensionTooLarge {
                width,
                height,
                limit: limits.max_dimension,
            },
            _ => Error::TooManyPixels {
                width,
                height,
                pixels: u64::from(width) * u64::from(height),
                limit: limits.max_pixels,
            },
        },
        ImageError::Unsupported(u) => Error::UnsupportedFormat(u.to_string()),
        other => Error::CorruptImage(other.to_string()),
    }
}

/// 8 bits per channel, and no alpha channel when every pixel is opaque.
fn normalise(image: DynamicImage) -> DynamicImage {
    let image = match image {
        DynamicImage::ImageLuma8(_)
        | DynamicImage::ImageLumaA8(_)
        | DynamicImage::ImageRgb8(_)
        | DynamicImage::ImageRgba8(_) => image,
        DynamicImage::ImageLuma16(_) => DynamicImage::ImageLuma8(image.to_luma8()),
        DynamicImage::ImageLumaA16(_) => DynamicImage::ImageLumaA8(image.to_luma_alpha8()),
        other if other.color().has_alpha() => DynamicImage::ImageRgba8(other.to_rgba8()),
        other => DynamicImage::ImageRgb8(other.to_rgb8()),
    };
    match image {
        DynamicImage::ImageLumaA8(ref la) if la.pixels().all(|p| p.0[1] == u8::MAX) => {
            DynamicImage::ImageLuma8(image.to_luma8())
        }
        DynamicImage::ImageRgba8(ref rgba) if rgba.pixels().all(|p| p.0[3] == u8::MAX) => {
            DynamicImage::ImageRgb8(image.to_rgb8())
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_by_magic_not_name() {
        assert_eq!(
            detect(b"\x89PNG\r\n\x1a\n....").ok(),
            Some(SourceFormat::Png)
        );
        assert_eq!(
            detect(b"\xff\xd8\xff\xe0....").ok(),
            Some(SourceFormat::Jpeg)
        );
        assert_eq!(
            detect(b"RIFF\x00\x00\x00\x00WEBPVP8 ").ok(),
            Some(SourceFormat::Webp)
        );
        assert!(matches!(
            detect(b"hello, I am a text file"),
            Err(Error::UnsupportedFormat(_))
        ));
        assert!(matches!(detect(b""), Err(Error::UnsupportedFormat(_))));
        assert!(matches!(
            detect(b"GIF89a......"),
            Err(Error::UnsupportedFormat(_))
        ));
    }

    #[test]
    fn truncated_jpeg_is_detected() {
        // SOI, APP1 containing a fake EOI, SOS, data, EOI.
        let mut jpeg = vec![0xFF, 0xD8, 0xFF, 0xE1, 0x00, 0x06, 0xFF, 0xD9, 0x00, 0x00];
        jpeg.extend_from_slice(&[0xFF, 0xDA, 0x00, 0x04, 0x01, 0x02, 0x12, 0xFF, 0x00, 0x34]);
        assert!(!jpeg_is_complete(&jpeg));
        jpeg.extend_from_slice(&[0xFF, 0xD9]);
        assert!(jpeg_is_complete(&jpeg));
        assert!(!jpeg_is_complete(&[0xFF, 0xD8, 0xFF]));
    }

    #[test]
    fn icc_classification() {
        let mut p = vec![0u8; 200];
        p[16..20].copy_from_slice(b"RGB ");
        let icc = IccProfile::classify(p.clone());
        assert!(icc.for_channels(false).is_some());
        assert!(icc.for_channels(true).is_none());
        p[16..20].copy_from_slice(b"CMYK");
        assert_eq!(
            IccProfile::classify(p),
            IccProfile::Other {
                space: "CMYK".into()
            }
        );
        assert!(matches!(
            IccProfile::classify(vec![1, 2, 3]),
            IccProfile::Other { .. }
        ));
    }

    fn profile_described(text: &[u8]) -> Vec<u8> {
        let mut p = vec![0u8; 144];
        p[16..20].copy_from_slice(b"RGB ");
        p[128..132].copy_from_slice(&1u32.to_be_bytes());
        p[132..136].copy_from_slice(b"desc");
        p[136..140].copy_from_slice(&144u32.to_be_bytes());
        p[140..144].copy_from_slice(&(text.len() as u32).to_be_bytes());
        p.extend_from_slice(text);
        p
    }

    #[test]
    fn srgb_profiles_are_recognised_by_description() {
        assert!(
            IccProfile::classify(profile_described(b"desc\0\0\0\0sRGB IEC61966-2.1")).is_srgb()
        );
        assert!(IccProfile::classify(profile_described(b"mluc\0s\0R\0G\0B")).is_srgb());
        assert!(!IccProfile::classify(profile_described(b"desc\0\0\0\0Display P3")).is_srgb());
        assert!(!IccProfile::classify(vec![0u8; 200]).is_srgb());
    }

    #[test]
    fn opaque_alpha_is_dropped_and_16_bit_reduced() {
        let rgba = image::RgbaImage::from_pixel(3, 2, image::Rgba([10, 20, 30, 255]));
        assert!(matches!(
            normalise(DynamicImage::ImageRgba8(rgba)),
            DynamicImage::ImageRgb8(_)
        ));
        let mut rgba = image::RgbaImage::from_pixel(3, 2, image::Rgba([10, 20, 30, 255]));
        rgba.put_pixel(1, 1, image::Rgba([0, 0, 0, 7]));
        assert!(matches!(
            normalise(DynamicImage::ImageRgba8(rgba)),
            DynamicImage::ImageRgba8(_)
        ));
        let l16 = image::ImageBuffer::<image::Luma<u16>, _>::from_pixel(2, 2, image::Luma([65535]));
        match normalise(DynamicImage::ImageLuma16(l16)) {
            DynamicImage::ImageLuma8(g) => assert_eq!(g.get_pixel(0, 0).0, [255]),
            other => panic!("unexpected {:?}", other.color()),
        }
    }
}

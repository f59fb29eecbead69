//! Input limits, checked against the container headers before any pixel is
//! decoded (so a decompression bomb is refused without allocating it).

use imagestack_contract::defaults;

use crate::error::{Error, Result};

/// WebP cannot encode a side longer than this, so it is also the default
/// maximum input dimension: every accepted image can get all three renditions.
pub const WEBP_MAX_DIMENSION: u32 = 16_383;

/// Hard limits on one input image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Maximum encoded size in bytes.
    pub max_bytes: u64,
    /// Maximum width × height.
    pub max_pixels: u64,
    /// Maximum width or height.
    pub max_dimension: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: defaults::MAX_INPUT_BYTES,
            max_pixels: defaults::MAX_INPUT_PIXELS,
            max_dimension: defaults::MAX_INPUT_DIMENSION,
        }
    }
}

impl Limits {
    /// Refuse inputs larger than [`Limits::max_bytes`] (before downloading, when
    /// the size is known from the event).
    pub fn check_bytes(&self, len: u64) -> Result<()> {
        if len > self.max_bytes {
            return Err(Error::TooLarge {
                actual: len,
                limit: self.max_bytes,
            });
        }
        Ok(())
    }

    /// Refuse dimensions read from a header.
    pub fn check_dimensions(&self, width: u32, height: u32) -> Result<()> {
        if width == 0 || height == 0 {
            return Err(Error::CorruptImage(format!(
                "header declares an empty image ({width}x{height})"
            )));
        }
        if width > self.max_dimension || height > self.max_dimension {
            return Err(Error::DimensionTooLarge {
                width,
                height,
                limit: self.max_dimension,
            });
        }
        let pixels = u64::from(width) * u64::from(height);
        if pixels > self.max_pixels {
            return Err(Error::TooManyPixels {
                width,
                height,
                pixels,
                limit: self.max_pixels,
            });
        }
        Ok(())
    }

    /// Allocation ceiling handed to the decoders: the decoded image at 16 bits
    /// per channel RGBA plus slack for decoder state.
    pub fn max_decode_alloc(&self) -> u64 {
        self.max_pixels
            .saturating_mul(8)
            .saturating_add(64 * 1024 * 1024)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_limit() {
        let l = Limits {
            max_bytes: 10,
            ..Limits::default()
        };
        assert!(l.check_bytes(10).is_ok());
        assert!(matches!(
            l.check_bytes(11),
            Err(Error::TooLarge {
                actual: 11,
                limit: 10
            })
        ));
    }

    #[test]
    fn dimension_and_pixel_limits() {
        let l = Limits {
            max_pixels: 100,
            max_dimension: 20,
            ..Limits::default()
        };
        assert!(l.check_dimensions(10, 10).is_ok());
        assert!(matches!(
            l.check_dimensions(10, 11),
            Err(Error::TooManyPixels { pixels: 110, .. })
        ));
        assert!(matches!(
            l.check_dimensions(21, 1),
            Err(Error::DimensionTooLarge { .. })
        ));
        assert!(matches!(
            l.check_dimensions(0, 5),
            Err(Error::CorruptImage(_))
        ));
    }
}

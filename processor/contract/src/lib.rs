//! The contract between the imagestack operator and the `processor` Lambda.
//!
//! Everything both sides must agree on lives here and nowhere else:
//! the environment variables the operator sets on the function, the key
//! layout of renditions in the output buckets, the CDN path patterns the
//! distribution routes, the metadata table's schema and the metric names.
//!
//! The operator writes the function configuration with [`env`] and plans the
//! CloudFront behaviours from [`Format::cdn_path_pattern`]; the processor
//! reads the same variables and writes every rendition under
//! [`rendition_key`], so the CDN path recorded in the metadata is exactly
//! [`cdn_path`] of that key.

use std::fmt;
use std::str::FromStr;

/// An output format: one bucket, one key prefix and one CDN path each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Format {
    Webp,
    Jpeg,
    Png,
}

impl Format {
    /// All formats, in the order the stack lists them.
    pub const ALL: [Format; 3] = [Format::Webp, Format::Jpeg, Format::Png];

    /// Lowercase name, used in spec fields, env values, prefixes and metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            Format::Webp => "webp",
            Format::Jpeg => "jpeg",
            Format::Png => "png",
        }
    }

    /// File extension of a rendition (without the dot).
    pub const fn extension(self) -> &'static str {
        match self {
            Format::Webp => "webp",
            Format::Jpeg => "jpg",
            Format::Png => "png",
        }
    }

    /// `Content-Type` written on each rendition.
    pub const fn content_type(self) -> &'static str {
        match self {
            Format::Webp => "image/webp",
            Format::Jpeg => "image/jpeg",
            Format::Png => "image/png",
        }
    }

    /// Key prefix inside this format's output bucket (with the trailing slash).
    pub fn key_prefix(self) -> String {
        format!("{}/", self.as_str())
    }

    /// CloudFront behaviour path pattern routed to this format's bucket.
    pub fn cdn_path_pattern(self) -> String {
        format!("/{}/*", self.as_str())
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error for an unknown format name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownFormat(pub String);

impl fmt::Display for UnknownFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown format {:?} (expected webp, jpeg or png)",
            self.0
        )
    }
}

impl std::error::Error for UnknownFormat {}

impl FromStr for Format {
    type Err = UnknownFormat;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "webp" => Ok(Format::Webp),
            "jpeg" | "jpg" => Ok(Format::Jpeg),
            "png" => Ok(Format::Png),
            other => Err(UnknownFormat(other.to_string())),
        }
    }
}

/// Key of a rendition in its format's bucket: `<format>/<stem>-<id>.<ext>`.
///
/// `stem` is the original file name without directories or extension;
/// `id` is the deterministic image id derived from the source object.
pub fn rendition_key(format: Format, stem: &str, id: &str) -> String {
    format!(
        "{}{}-{}.{}",
        format.key_prefix(),
        stem,
        id,
        format.extension()
    )
}

/// CDN path of a stored key: the distribution routes `/<format>/*` to the
/// format's bucket with the path unchanged, so the path is `/` + key.
pub fn cdn_path(key: &str) -> String {
    format!("/{key}")
}

/// `Cache-Control` written on every rendition (keys are content-addressed per source).
pub const RENDITION_CACHE_CONTROL: &str = "public, max-age=31536000, immutable";

/// Environment variables the operator sets on the processor function.
pub mod env {
    /// Environment name of the stack (`spec.environment`); metric dimension.
    pub const ENVIRONMENT: &str = "IMAGESTACK_ENVIRONMENT";
    /// Upload bucket name (source of events).
    pub const UPLOAD_BUCKET: &str = "IMAGESTACK_UPLOAD_BUCKET";
    /// Output bucket for WebP renditions.
    pub const WEBP_BUCKET: &str = "IMAGESTACK_WEBP_BUCKET";
    /// Output bucket for JPEG renditions.
    pub const JPEG_BUCKET: &str = "IMAGESTACK_JPEG_BUCKET";
    /// Output bucket for PNG renditions.
    pub const PNG_BUCKET: &str = "IMAGESTACK_PNG_BUCKET";
    /// DynamoDB metadata table name.
    pub const METADATA_TABLE: &str = "IMAGESTACK_METADATA_TABLE";
    /// Comma-separated formats to produce (`webp,jpeg,png`).
    pub const FORMATS: &str = "IMAGESTACK_FORMATS";
    /// WebP quality 1–100.
    pub const WEBP_QUALITY: &str = "IMAGESTACK_WEBP_QUALITY";
    /// JPEG quality 1–100.
    pub const JPEG_QUALITY: &str = "IMAGESTACK_JPEG_QUALITY";
    /// libwebp method 0–6 (upper bound; the processor may step down for alpha).
    pub const WEBP_METHOD: &str = "IMAGESTACK_WEBP_METHOD";
    /// Maximum accepted input size in bytes.
    pub const MAX_INPUT_BYTES: &str = "IMAGESTACK_MAX_INPUT_BYTES";
    /// Maximum accepted input size in pixels (width × height).
    pub const MAX_INPUT_PIXELS: &str = "IMAGESTACK_MAX_INPUT_PIXELS";

    /// Every variable the operator must set; a test on each side checks this list.
    pub const ALL: [&str; 12] = [
        ENVIRONMENT,
        UPLOAD_BUCKET,
        WEBP_BUCKET,
        JPEG_BUCKET,
        PNG_BUCKET,
        METADATA_TABLE,
        FORMATS,
        WEBP_QUALITY,
        JPEG_QUALITY,
        WEBP_METHOD,
        MAX_INPUT_BYTES,
        MAX_INPUT_PIXELS,
    ];

    /// Maximum width or height in pixels (optional; default
    /// [`defaults::MAX_INPUT_DIMENSION`](super::defaults::MAX_INPUT_DIMENSION)).
    pub const MAX_INPUT_DIMENSION: &str = "IMAGESTACK_MAX_INPUT_DIMENSION";
    /// Per-image processing time budget in milliseconds (optional; default
    /// [`defaults::TIME_BUDGET_MS`](super::defaults::TIME_BUDGET_MS)); the
    /// processor also stays inside the invocation's remaining time.
    pub const TIME_BUDGET_MS: &str = "IMAGESTACK_TIME_BUDGET_MS";
    /// Colour the JPEG rendition flattens transparency onto, `RRGGBB` hex
    /// (optional; default [`defaults::JPEG_BACKGROUND`](super::defaults::JPEG_BACKGROUND)).
    pub const JPEG_BACKGROUND: &str = "IMAGESTACK_JPEG_BACKGROUND";

    /// Variables the processor reads when set and defaults otherwise.
    pub const OPTIONAL: [&str; 3] = [MAX_INPUT_DIMENSION, TIME_BUDGET_MS, JPEG_BACKGROUND];

    /// Name of the output bucket variable for a format.
    pub const fn bucket_var(format: super::Format) -> &'static str {
        match format {
            super::Format::Webp => WEBP_BUCKET,
            super::Format::Jpeg => JPEG_BUCKET,
            super::Format::Png => PNG_BUCKET,
        }
    }
}

/// Defaults shared by the CRD and the processor.
pub mod defaults {
    pub const WEBP_QUALITY: u8 = 85;
    pub const JPEG_QUALITY: u8 = 85;
    pub const WEBP_METHOD: u8 = 4;
    /// 50 MiB.
    pub const MAX_INPUT_BYTES: u64 = 50 * 1024 * 1024;
    /// 100 megapixels.
    pub const MAX_INPUT_PIXELS: u64 = 100_000_000;
    /// The largest side WebP can encode.
    pub const MAX_INPUT_DIMENSION: u32 = 16_383;
    /// 30 seconds per image.
    pub const TIME_BUDGET_MS: u64 = 30_000;
    /// White.
    pub const JPEG_BACKGROUND: &str = "ffffff";
}

/// The metadata table's schema (kept from the reference so queries keep working).
pub mod table {
    /// Hash key (S).
    pub const HASH_KEY: &str = "image_id";
    /// Upload time in epoch seconds (N); the GSI's hash key.
    pub const TIMESTAMP_ATTR: &str = "upload_timestamp";
    /// Global secondary index on [`TIMESTAMP_ATTR`], projection ALL.
    pub const TIMESTAMP_INDEX: &str = "timestamp-index";

    /// Attribute names of the metadata item the processor writes. The first
    /// group is the reference's (dashboards and queries use them), the rest
    /// are additions.
    pub mod attr {
        pub const IMAGE_ID: &str = super::HASH_KEY;
        pub const UPLOAD_TIMESTAMP: &str = super::TIMESTAMP_ATTR;
        /// The decoded object key of the upload.
        pub const ORIGINAL_FILENAME: &str = "original_filename";
        pub const ORIGINAL_SIZE: &str = "original_size";
        /// Map: format name → map of [`BUCKET`], [`KEY`], [`SIZE`], [`CDN_PATH`].
        pub const FORMATS: &str = "formats";
        pub const BUCKET: &str = "bucket";
        pub const KEY: &str = "key";
        pub const SIZE: &str = "size";
        pub const CDN_PATH: &str = "cdn_path";
        /// [`STATUS_COMPLETED`] or [`STATUS_FAILED`].
        pub const CONVERSION_STATUS: &str = "conversion_status";
        /// Seconds (number with millisecond precision).
        pub const PROCESSING_TIME: &str = "processing_time";
        pub const ERROR_MESSAGE: &str = "error_message";

        pub const ORIGINAL_BUCKET: &str = "original_bucket";
        pub const VERSION_ID: &str = "version_id";
        pub const ETAG: &str = "etag";
        /// `jpeg`, `png` or `webp`, detected from the bytes.
        pub const DETECTED_FORMAT: &str = "detected_format";
        /// After EXIF orientation.
        pub const WIDTH: &str = "width";
        pub const HEIGHT: &str = "height";
        pub const PROCESSOR_VERSION: &str = "processor_version";
        /// `none`, `srgb` (an sRGB profile, not embedded), `carried` or `incompatible`.
        pub const ICC_PROFILE: &str = "icc_profile";
        /// Machine-readable failure reason (`TooLarge`, `CorruptImage`, ...).
        pub const ERROR_REASON: &str = "error_reason";

        pub const STATUS_COMPLETED: &str = "completed";
        pub const STATUS_FAILED: &str = "failed";
    }
}

/// CloudWatch Embedded Metric Format names emitted by the processor.
pub mod metrics {
    pub const NAMESPACE: &str = "ImageOptimization";
    pub const DIMENSION_ENVIRONMENT: &str = "Environment";
    pub const PROCESSING_TIME: &str = "ProcessingTime";
    pub const PROCESSED_IMAGES: &str = "ProcessedImages";
    pub const PROCESSING_ERRORS: &str = "ProcessingErrors";
    pub const BYTES_IN: &str = "BytesIn";
    pub const BYTES_OUT: &str = "BytesOut";
    /// Dimension of [`BYTES_OUT`] (one value per rendition format).
    pub const DIMENSION_FORMAT: &str = "Format";
    /// Dimension of [`PROCESSING_ERRORS`] (the failure reason).
    pub const DIMENSION_REASON: &str = "Reason";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_match_cdn_patterns() {
        for f in Format::ALL {
            let key = rendition_key(f, "holiday photo", "abc123");
            let path = cdn_path(&key);
            let pattern = f.cdn_path_pattern();
            let prefix = pattern.trim_end_matches('*');
            assert!(path.starts_with(prefix), "{path} not under {pattern}");
            assert!(key.ends_with(f.extension()));
        }
        assert_eq!(
            rendition_key(Format::Jpeg, "a", "x"),
            "jpeg/a-x.jpg".to_string()
        );
    }

    #[test]
    fn format_parsing() {
        assert_eq!("WEBP".parse::<Format>(), Ok(Format::Webp));
        assert_eq!("jpg".parse::<Format>(), Ok(Format::Jpeg));
        assert!("gif".parse::<Format>().is_err());
    }

    #[test]
    fn env_names_unique() {
        let mut v = env::ALL.to_vec();
        v.extend(env::OPTIONAL);
        v.sort();
        v.dedup();
        assert_eq!(v.len(), env::ALL.len() + env::OPTIONAL.len());
    }
}

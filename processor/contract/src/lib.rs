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
//! [`rendition_key`] (full size) or [`rendition_key_with_width`] (width
//! variants), so the CDN path recorded in the metadata is exactly
//! [`cdn_path`] of that key. Every key fits S3's [`MAX_KEY_BYTES`].

use std::fmt;
use std::str::FromStr;

/// An output format: one bucket, one key prefix and one CDN path each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Format {
    Webp,
    Jpeg,
    Png,
    /// AV1 still image (opt-in: not in [`Format::DEFAULT`]).
    Avif,
}

impl Format {
    /// All formats, in the order the stack lists them. Every format has its
    /// output bucket, key prefix and CDN path whether or not it is produced.
    pub const ALL: [Format; 4] = [Format::Webp, Format::Jpeg, Format::Png, Format::Avif];

    /// The formats produced when none are configured.
    pub const DEFAULT: [Format; 3] = [Format::Webp, Format::Jpeg, Format::Png];

    /// Lowercase name, used in spec fields, env values, prefixes and metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            Format::Webp => "webp",
            Format::Jpeg => "jpeg",
            Format::Png => "png",
            Format::Avif => "avif",
        }
    }

    /// File extension of a rendition (without the dot).
    pub const fn extension(self) -> &'static str {
        match self {
            Format::Webp => "webp",
            Format::Jpeg => "jpg",
            Format::Png => "png",
            Format::Avif => "avif",
        }
    }

    /// `Content-Type` written on each rendition.
    pub const fn content_type(self) -> &'static str {
        match self {
            Format::Webp => "image/webp",
            Format::Jpeg => "image/jpeg",
            Format::Png => "image/png",
            Format::Avif => "image/avif",
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
            "unknown format {:?} (expected webp, jpeg, png or avif)",
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
            "avif" => Ok(Format::Avif),
            other => Err(UnknownFormat(other.to_string())),
        }
    }
}

/// S3's limit on the length of an object key, in bytes of UTF-8.
pub const MAX_KEY_BYTES: usize = 1024;

/// Bytes every key reserves for its `<format>/` prefix: at least the longest
/// prefix of any format (a test checks), fixed so that adding a format never
/// changes existing keys.
pub const KEY_PREFIX_RESERVE: usize = 8;
/// Bytes every key reserves for its `.<ext>` suffix (same rule).
pub const KEY_EXTENSION_RESERVE: usize = 8;
/// Bytes every key reserves for a width suffix: `-w` and the digits of
/// [`widths::MAX`].
pub const KEY_WIDTH_RESERVE: usize = 2 + digits(widths::MAX);

const fn digits(mut n: u32) -> usize {
    let mut d = 1;
    while n >= 10 {
        n /= 10;
        d += 1;
    }
    d
}

/// The longest stem a key carries next to an id of `id_len` bytes: what is
/// left of [`MAX_KEY_BYTES`] after the reserves, the `-` and the id.
///
/// The same for every format and width, so all renditions of one image share
/// one stem (a CDN can derive any variant's path from another's).
pub const fn max_stem_bytes(id_len: usize) -> usize {
    MAX_KEY_BYTES
        .saturating_sub(KEY_PREFIX_RESERVE)
        .saturating_sub(1)
        .saturating_sub(id_len)
        .saturating_sub(KEY_WIDTH_RESERVE)
        .saturating_sub(KEY_EXTENSION_RESERVE)
}

/// `stem` cut to [`max_stem_bytes`] at a character boundary: the longest
/// prefix that fits. Deterministic, and unchanged when it already fits (every
/// stem up to 969 bytes with the 32-character image id). The id that follows
/// the stem in every key keeps shortened keys unique.
pub fn shorten_stem<'a>(stem: &'a str, id: &str) -> &'a str {
    let max = max_stem_bytes(id.len());
    if stem.len() <= max {
        return stem;
    }
    let mut end = max;
    while !stem.is_char_boundary(end) {
        end -= 1;
    }
    &stem[..end]
}

/// Key of a full-size rendition in its format's bucket: `<format>/<stem>-<id>.<ext>`.
///
/// `stem` is the original file name without directories or extension
/// (shortened by [`shorten_stem`] when a key would be too long); `id` is the
/// deterministic image id derived from the source object.
pub fn rendition_key(format: Format, stem: &str, id: &str) -> String {
    rendition_key_with_width(format, stem, id, None)
}

/// Key of a rendition, full size (`width: None`, the same key as
/// [`rendition_key`]) or a width variant: `<format>/<stem>-<id>-w<width>.<ext>`.
///
/// Every key is at most [`MAX_KEY_BYTES`] long for any stem, any format and
/// any width up to [`widths::MAX`] (with an id of up to 32 bytes the stem keeps
/// at least 969 bytes).
pub fn rendition_key_with_width(
    format: Format,
    stem: &str,
    id: &str,
    width: Option<u32>,
) -> String {
    let mut stem = shorten_stem(stem, id);
    let suffix = width.map(|w| format!("-w{w}")).unwrap_or_default();
    if suffix.len() > KEY_WIDTH_RESERVE {
        // Only for a width above widths::MAX (never configured): keep the key
        // within the limit all the same.
        let mut end = stem.len().saturating_sub(suffix.len() - KEY_WIDTH_RESERVE);
        while !stem.is_char_boundary(end) {
            end -= 1;
        }
        stem = &stem[..end];
    }
    format!(
        "{}{}-{}{}.{}",
        format.key_prefix(),
        stem,
        id,
        suffix,
        format.extension()
    )
}

/// Width variants: the pixel widths the processor renders besides the full
/// size (never wider than the source).
pub mod widths {
    use std::fmt;

    /// The narrowest configurable width.
    pub const MIN: u32 = 16;
    /// The widest configurable width.
    pub const MAX: u32 = 8192;
    /// At most this many widths.
    pub const MAX_COUNT: usize = 16;
    /// Used when [`env::WIDTHS`](super::env::WIDTHS) is not set.
    pub const DEFAULT: [u32; 4] = [320, 640, 1280, 1920];

    /// Why a widths list is invalid.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum WidthsError {
        Empty,
        TooMany(usize),
        NotANumber(String),
        OutOfRange(u32),
    }

    impl fmt::Display for WidthsError {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self {
                WidthsError::Empty => write!(f, "names no width"),
                WidthsError::TooMany(n) => {
                    write!(f, "{n} widths, at most {MAX_COUNT} are allowed")
                }
                WidthsError::NotANumber(s) => write!(
                    f,
                    "{s:?} is not a width (expected comma-separated pixel widths, e.g. \"320,640,1280,1920\")"
                ),
                WidthsError::OutOfRange(w) => {
                    write!(f, "width {w} is outside {MIN}..={MAX}")
                }
            }
        }
    }

    impl std::error::Error for WidthsError {}

    /// Check a list: 1–[`MAX_COUNT`] entries, each [`MIN`]–[`MAX`]. Returns
    /// the distinct widths in ascending order.
    pub fn validate(widths: &[u32]) -> Result<Vec<u32>, WidthsError> {
        if widths.is_empty() {
            return Err(WidthsError::Empty);
        }
        if widths.len() > MAX_COUNT {
            return Err(WidthsError::TooMany(widths.len()));
        }
        if let Some(&w) = widths.iter().find(|w| !(MIN..=MAX).contains(*w)) {
            return Err(WidthsError::OutOfRange(w));
        }
        let mut out = widths.to_vec();
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    /// Parse the environment form: comma-separated decimal pixel widths
    /// (spaces around entries allowed), validated as by [`validate`].
    pub fn parse(raw: &str) -> Result<Vec<u32>, WidthsError> {
        let mut widths = Vec::new();
        for part in raw.split(',').map(str::trim) {
            if part.is_empty() {
                continue;
            }
            let w = part
                .parse::<u32>()
                .map_err(|_| WidthsError::NotANumber(part.to_string()))?;
            widths.push(w);
        }
        validate(&widths)
    }

    /// The environment form of a list (what the operator writes): `320,640`.
    pub fn to_env(widths: &[u32]) -> String {
        widths
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(",")
    }
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
    /// The stack's identity (`<namespace>/<name>`): the `Stack` metric
    /// dimension, so two stacks of one environment in one account keep their
    /// metrics apart. The operator always sets it; without it the processor
    /// emits the `Environment` dimension alone (as before it existed).
    pub const STACK: &str = "IMAGESTACK_STACK";
    /// Upload bucket name (source of events).
    pub const UPLOAD_BUCKET: &str = "IMAGESTACK_UPLOAD_BUCKET";
    /// Output bucket for WebP renditions.
    pub const WEBP_BUCKET: &str = "IMAGESTACK_WEBP_BUCKET";
    /// Output bucket for JPEG renditions.
    pub const JPEG_BUCKET: &str = "IMAGESTACK_JPEG_BUCKET";
    /// Output bucket for PNG renditions.
    pub const PNG_BUCKET: &str = "IMAGESTACK_PNG_BUCKET";
    /// Output bucket for AVIF renditions (the processor needs it only when
    /// `avif` is among the formats).
    pub const AVIF_BUCKET: &str = "IMAGESTACK_AVIF_BUCKET";
    /// AVIF quality 1–100.
    pub const AVIF_QUALITY: &str = "IMAGESTACK_AVIF_QUALITY";
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

    /// Width variants to render besides the full size: comma-separated pixel
    /// widths, e.g. `320,640,1280,1920` (optional; default
    /// [`widths::DEFAULT`](super::widths::DEFAULT); 1–16 entries, each
    /// 16–8192, parsed and checked by [`widths::parse`](super::widths::parse)).
    /// Widths not narrower than an image produce nothing for it.
    pub const WIDTHS: &str = "IMAGESTACK_WIDTHS";

    /// Variables the processor reads when set and defaults otherwise.
    /// (The operator sets [`AVIF_BUCKET`] and [`AVIF_QUALITY`] on every stack;
    /// the processor requires the bucket only when `avif` is among the formats.)
    pub const OPTIONAL: [&str; 6] = [
        MAX_INPUT_DIMENSION,
        TIME_BUDGET_MS,
        JPEG_BACKGROUND,
        WIDTHS,
        AVIF_BUCKET,
        AVIF_QUALITY,
    ];

    /// Name of the output bucket variable for a format.
    pub const fn bucket_var(format: super::Format) -> &'static str {
        match format {
            super::Format::Webp => WEBP_BUCKET,
            super::Format::Jpeg => JPEG_BUCKET,
            super::Format::Png => PNG_BUCKET,
            super::Format::Avif => AVIF_BUCKET,
        }
    }
}

/// How much memory an image needs: the rule the operator enforces between
/// `memoryMb` and `maxInputPixels`.
///
/// Measured peak RSS of the processor (two encoders at once, as on Lambda,
/// all four formats and the default widths; processor/README.md): 22 bytes
/// per pixel for an RGB photo, 37 for an RGBA image (the decoded image, its
/// premultiplied copy for resampling, the JPEG's flattened copy and the
/// encoders' own buffers). The rule uses 40 bytes per pixel plus 128 MB for
/// the runtime, the binary and the source bytes of small images.
pub mod memory {
    /// Peak bytes per source pixel, worst case (RGBA, AVIF on).
    pub const BYTES_PER_PIXEL: u64 = 40;
    /// Fixed overhead in MB.
    pub const BASELINE_MB: u64 = 128;

    /// The least `memoryMb` that holds an image of `max_pixels` pixels.
    pub const fn required_mb(max_pixels: u64) -> u64 {
        BASELINE_MB + (max_pixels * BYTES_PER_PIXEL).div_ceil(1 << 20)
    }

    /// The most pixels `memory_mb` holds.
    pub const fn max_pixels(memory_mb: u64) -> u64 {
        memory_mb.saturating_sub(BASELINE_MB) * (1 << 20) / BYTES_PER_PIXEL
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use crate::defaults;

        #[test]
        fn the_defaults_fit_each_other() {
            assert!(required_mb(defaults::MAX_INPUT_PIXELS) <= u64::from(defaults::MEMORY_MB));
            assert!(max_pixels(u64::from(defaults::MEMORY_MB)) >= defaults::MAX_INPUT_PIXELS);
            // 100 MP needs almost 4 GB.
            assert_eq!(required_mb(100_000_000), 128 + 3815);
            assert_eq!(max_pixels(128), 0);
            assert!(required_mb(max_pixels(3000)) <= 3000);
        }
    }
}

/// Defaults shared by the CRD and the processor.
pub mod defaults {
    pub const WEBP_QUALITY: u8 = 85;
    /// libjpeg's quality scale (standard tables), as Pillow's: at 85 our
    /// JPEG quantises as Pillow's `quality=85` does (same SSIMULACRA2).
    pub const JPEG_QUALITY: u8 = 85;
    /// Chosen so that the AVIF rendition's SSIMULACRA2 matches the WebP
    /// rendition's at [`WEBP_QUALITY`] (processor/README.md, "AVIF": mean
    /// 81.4 vs 80.8 at rav1e speed 8, 80.9 at 9, 80.3 at 10).
    pub const AVIF_QUALITY: u8 = 62;
    pub const WEBP_METHOD: u8 = 4;
    /// 50 MiB.
    pub const MAX_INPUT_BYTES: u64 = 50 * 1024 * 1024;
    /// 50 megapixels: what [`MEMORY_MB`] holds by the
    /// [`memory`](super::memory) rule (a 48 MP phone photo fits).
    pub const MAX_INPUT_PIXELS: u64 = 50_000_000;
    /// The function's default memory in MB (also about 1.2 vCPU on Lambda).
    pub const MEMORY_MB: u32 = 2048;
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
        /// Map: format name → map of [`BUCKET`], [`KEY`], [`SIZE`], [`CDN_PATH`]
        /// of the full-size rendition (the reference's shape, kept).
        pub const FORMATS: &str = "formats";
        /// List of every rendition, full size and width variants, each a map of
        /// [`FORMAT`], [`WIDTH`], [`HEIGHT`], [`BUCKET`], [`KEY`], [`SIZE`] (bytes)
        /// and [`CDN_PATH`]; ordered by format, then by width (the full-size
        /// entry, whose width is the image's, last). Per format the widths are
        /// distinct.
        pub const VARIANTS: &str = "variants";
        /// A variant's format name (`webp`, `jpeg`, `png`).
        pub const FORMAT: &str = "format";
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
        /// After EXIF orientation (on the item); a variant's own width in
        /// [`VARIANTS`] entries (likewise [`HEIGHT`]).
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
    /// The stack's identity, beside [`DIMENSION_ENVIRONMENT`] on every metric
    /// (from [`super::env::STACK`]).
    pub const DIMENSION_STACK: &str = "Stack";
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
    fn width_keys_extend_the_full_size_key() {
        assert_eq!(
            rendition_key_with_width(Format::Webp, "holiday photo", "abc", Some(640)),
            "webp/holiday photo-abc-w640.webp"
        );
        assert_eq!(
            rendition_key_with_width(Format::Png, "a", "x", None),
            rendition_key(Format::Png, "a", "x")
        );
        for f in Format::ALL {
            let key = rendition_key_with_width(f, "a", "x", Some(16));
            assert!(cdn_path(&key).starts_with(f.cdn_path_pattern().trim_end_matches('*')));
            assert!(key.ends_with(&format!("-w16.{}", f.extension())), "{key}");
        }
    }

    #[test]
    fn reserves_cover_every_format() {
        for f in Format::ALL {
            assert!(f.key_prefix().len() <= KEY_PREFIX_RESERVE, "{f}");
            assert!(
                format!(".{}", f.extension()).len() <= KEY_EXTENSION_RESERVE,
                "{f}"
            );
        }
        assert_eq!(KEY_WIDTH_RESERVE, "-w8192".len());
        assert_eq!(max_stem_bytes(32), 969);
    }

    #[test]
    fn long_stems_are_shortened_so_every_key_fits() {
        let id = "0123456789abcdef0123456789abcdef";
        // Multi-byte characters land on every possible cut position.
        for stem in [
            "x".repeat(1020),
            "é".repeat(600),
            "✓".repeat(400),
            format!("a{}", "😀".repeat(300)),
            format!("ab{}", "😀".repeat(300)),
            format!("abc{}", "😀".repeat(300)),
        ] {
            let short = shorten_stem(&stem, id);
            assert!(stem.starts_with(short));
            assert!(short.len() <= 969 && short.len() > 960, "{}", short.len());
            for f in Format::ALL {
                for w in [None, Some(widths::MIN), Some(640), Some(widths::MAX)] {
                    let key = rendition_key_with_width(f, &stem, id, w);
                    assert!(key.len() <= MAX_KEY_BYTES, "{f} {w:?}: {}", key.len());
                    // One stem for every format and width; the id is kept whole.
                    assert!(key.starts_with(&format!("{}{short}-{id}", f.key_prefix())));
                }
            }
            // Deterministic.
            assert_eq!(
                rendition_key(Format::Jpeg, &stem, id),
                rendition_key(Format::Jpeg, &stem, id)
            );
        }
        // A stem that fits is never touched (existing keys stay valid).
        let fits = "y".repeat(969);
        assert_eq!(shorten_stem(&fits, id), fits);
        assert_eq!(
            rendition_key(Format::Webp, &fits, id).len(),
            5 + 969 + 1 + 32 + 5
        );
        // Even a width nobody may configure stays within the limit.
        let key = rendition_key_with_width(Format::Webp, &"z".repeat(1000), id, Some(u32::MAX));
        assert!(key.len() <= MAX_KEY_BYTES, "{}", key.len());
    }

    #[test]
    fn widths_parse_and_validate() {
        assert_eq!(
            widths::parse("320,640,1280,1920"),
            Ok(widths::DEFAULT.to_vec())
        );
        assert_eq!(widths::parse(" 640 , 320,640,"), Ok(vec![320, 640]));
        assert_eq!(widths::parse("16,8192"), Ok(vec![16, 8192]));
        assert_eq!(widths::parse(""), Err(widths::WidthsError::Empty));
        assert_eq!(widths::parse(" , "), Err(widths::WidthsError::Empty));
        assert_eq!(
            widths::parse("15"),
            Err(widths::WidthsError::OutOfRange(15))
        );
        assert_eq!(
            widths::parse("8193"),
            Err(widths::WidthsError::OutOfRange(8193))
        );
        assert_eq!(widths::parse("0"), Err(widths::WidthsError::OutOfRange(0)));
        assert!(matches!(
            widths::parse("320px"),
            Err(widths::WidthsError::NotANumber(_))
        ));
        assert!(matches!(
            widths::parse("-320"),
            Err(widths::WidthsError::NotANumber(_))
        ));
        let seventeen: Vec<u32> = (0..17).map(|i| 100 + i).collect();
        assert_eq!(
            widths::parse(&widths::to_env(&seventeen)),
            Err(widths::WidthsError::TooMany(17))
        );
        assert_eq!(widths::to_env(&widths::DEFAULT), "320,640,1280,1920");
        assert_eq!(
            widths::parse(&widths::to_env(&widths::DEFAULT)),
            Ok(widths::DEFAULT.to_vec())
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

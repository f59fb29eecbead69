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

impl Format {
    /// A comma-separated list of formats (`webp,jpeg,avif`; `jpg` = `jpeg`,
    /// case and spaces ignored), in the order given, each once. An empty
    /// list is refused: every stack writes at least one format.
    pub fn parse_list(raw: &str) -> Result<Vec<Format>, String> {
        let mut formats = Vec::new();
        for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let f = part.parse::<Format>().map_err(|e| e.to_string())?;
            if !formats.contains(&f) {
                formats.push(f);
            }
        }
        if formats.is_empty() {
            return Err("names no format".to_string());
        }
        Ok(formats)
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

/// The edge contract: one URL per image, `/i/<source width>/<stem>-<id>`,
/// that the stack's CloudFront Function (viewer request, operator/src/edge)
/// rewrites to the stored key of the best format and width for each viewer.
///
/// **Why the source width is in the URL.** The function cannot ask S3 which
/// width variants exist (CloudFront Functions have no network), and the
/// processor writes a variant only for configured widths strictly narrower
/// than the source (so `-w1920` of an 800 px image does not exist). With the
/// source width in the URL the function knows, from the URL alone, that
/// exactly the configured widths below it exist, and never asks for one that
/// does not: no request can 404 because of width. (The other design, writing
/// copies up to every configured width, would store duplicate objects, would
/// not cover images processed before, and would change the processor's
/// output.) A URL without the width segment, `/i/<stem>-<id>`, is also
/// accepted; it always gets the full-size rendition, which always exists.
///
/// **Stem encoding.** The stem (shortened by [`shorten_stem`](super::shorten_stem)
/// exactly as in the rendition keys) is percent-encoded byte by byte, every
/// byte except RFC 3986's unreserved `A-Z a-z 0-9 - . _ ~`, with upper-case
/// hex ([`encode_segment`]). The function decodes it (refusing anything that
/// is not valid UTF-8 or that contains `/`, `\` or a control character),
/// re-encodes it the same way (so every spelling of one stem shares one cache
/// entry) and only swaps the prefix and suffix: `/i/<sw>/<stem>-<id>` becomes
/// `/<format>/<stem>-<id>[-w<W>].<ext>`. CloudFront forwards that path to the
/// format's S3 origin, and S3 decodes it to the key [`rendition_key_with_width`](super::rendition_key_with_width)
/// wrote. A stem the function refuses (one with `\` or a control character)
/// has no edge URL: see [`servable`].
///
/// **Changing the widths or formats later.** The function picks only widths
/// and formats of the current spec. An image processed before a width was
/// added (or before AVIF was enabled) lacks that variant, and a request the
/// function maps to it gets the origin's 404 (403 from a private bucket):
/// reprocess the images after changing `widths` or enabling a format (or
/// keep the old widths in the list).
pub mod edge {
    use super::{max_stem_bytes, shorten_stem};

    /// Prefix of every edge URL path.
    pub const PATH_PREFIX: &str = "/i/";
    /// The CloudFront cache behaviour's path pattern the function runs on.
    pub const PATH_PATTERN: &str = "/i/*";

    /// Length of the image ids the function accepts: 32 lower-case hex
    /// digits (the processor's ids, the first 128 bits of a SHA-256).
    pub const ID_LEN: usize = 32;

    /// The longest stem (UTF-8 bytes, decoded) the function accepts: what
    /// [`shorten_stem`] keeps next to an id of [`ID_LEN`].
    pub const MAX_STEM_BYTES: usize = max_stem_bytes(ID_LEN);

    /// The longest URI path the function accepts (bytes, as received). The
    /// longest edge path this module produces is below it: `/i/`, a width
    /// of up to 7 digits and `/`, a stem of [`MAX_STEM_BYTES`] with every
    /// byte encoded as `%XX`, `-`, the id and a `.jpeg` suffix (2 958 bytes).
    /// (Not S3's 1 024: a stem that fits a key in UTF-8 can be three times
    /// longer percent-encoded.)
    pub const MAX_URI_BYTES: usize = 3072;

    /// Percent-encode `raw` for one URL path segment: every byte except
    /// `A-Z a-z 0-9 - . _ ~` becomes `%XX` (upper-case hex). The function
    /// produces exactly this spelling (JavaScript's `encodeURIComponent` plus
    /// `!'()*`).
    pub fn encode_segment(raw: &str) -> String {
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        let mut out = String::with_capacity(raw.len());
        for &b in raw.as_bytes() {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                out.push(char::from(b));
            } else {
                out.push('%');
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 15)]));
            }
        }
        out
    }

    /// The edge URL path of an image: `/i/<source_width>/<stem>-<id>` with
    /// the stem shortened as in its keys and encoded by [`encode_segment`];
    /// `source_width` 0 (unknown) gives `/i/<stem>-<id>` (always the full
    /// size). Meaningful when [`servable`] holds.
    pub fn edge_path(stem: &str, id: &str, source_width: u32) -> String {
        let stem = encode_segment(shorten_stem(stem, id));
        if source_width == 0 {
            format!("{PATH_PREFIX}{stem}-{id}")
        } else {
            format!("{PATH_PREFIX}{source_width}/{stem}-{id}")
        }
    }

    /// Whether the function serves this image's edge URL: the id is
    /// [`ID_LEN`] lower-case hex digits and the (shortened) stem has no `\`,
    /// `/` or control character (which the function refuses as hostile).
    /// The processor records an edge URL only for servable images; the
    /// per-format CDN paths work for every image.
    pub fn servable(stem: &str, id: &str) -> bool {
        id.len() == ID_LEN
            && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            && !shorten_stem(stem, id)
                .chars()
                .any(|c| c == '\\' || c == '/' || c.is_control())
    }

    /// Check an [`IMAGE_URL_PREFIX`](super::env::IMAGE_URL_PREFIX):
    /// `http://` or `https://`, then a host (name, IPv4 or `[IPv6]`) with an
    /// optional `:port`, nothing else (one trailing `/` is dropped). Returns
    /// the prefix to put before [`edge_path`], or why it is invalid.
    pub fn parse_url_prefix(raw: &str) -> Result<String, String> {
        let raw = raw.trim();
        let trimmed = raw.strip_suffix('/').unwrap_or(raw);
        let Some(authority) = trimmed
            .strip_prefix("https://")
            .or_else(|| trimmed.strip_prefix("http://"))
        else {
            return Err(format!(
                "{raw:?} is not an http(s) URL prefix (expected e.g. \"https://images.example.com\")"
            ));
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.is_empty() && (!h.starts_with('[') || h.ends_with(']')) => {
                (h, Some(p))
            }
            _ => (authority, None),
        };
        let host_ok = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            !v6.is_empty()
                && v6
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        } else {
            !host.is_empty()
                && !host.starts_with(['.', '-'])
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        };
        let port_ok = port
            .is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
        if host_ok && port_ok {
            Ok(trimmed.to_string())
        } else {
            Err(format!(
                "{raw:?} is not a scheme and host (expected e.g. \"https://images.example.com\", no path, query or user)"
            ))
        }
    }

    /// A ready `srcset` value: `<prefix><path>?w=<W> <W>w` for each width
    /// of `widths` below `source_width` (ascending, duplicates and widths
    /// outside [`widths::MIN`](super::widths::MIN)..=[`widths::MAX`](super::widths::MAX)
    /// dropped, as the processor does), then `<prefix><path> <source_width>w`
    /// (the full size). Each `?w=` names a width that exists, so the
    /// function serves exactly that variant at any device pixel ratio.
    pub fn srcset(url_prefix: &str, path: &str, source_width: u32, widths: &[u32]) -> String {
        let mut ws: Vec<u32> = widths
            .iter()
            .copied()
            .filter(|w| (super::widths::MIN..=super::widths::MAX).contains(w) && *w < source_width)
            .collect();
        ws.sort_unstable();
        ws.dedup();
        let mut parts: Vec<String> = ws
            .iter()
            .map(|w| format!("{url_prefix}{path}?w={w} {w}w"))
            .collect();
        parts.push(format!("{url_prefix}{path} {source_width}w"));
        parts.join(", ")
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use crate::{Format, rendition_key_with_width, widths};

        const ID: &str = "0123456789abcdef0123456789abcdef";

        /// What S3 does with the path CloudFront forwards: percent-decoding.
        fn decode(path: &str) -> String {
            let b = path.as_bytes();
            let mut out = Vec::new();
            let mut i = 0;
            while i < b.len() {
                if b[i] == b'%' {
                    let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap();
                    out.push(u8::from_str_radix(hex, 16).unwrap());
                    i += 3;
                } else {
                    out.push(b[i]);
                    i += 1;
                }
            }
            String::from_utf8(out).unwrap()
        }

        /// The function's rewrite: swap the prefix and suffix.
        fn rewrite(path: &str, format: Format, width: Option<u32>) -> String {
            let last = path.rsplit('/').next().unwrap();
            let w = width.map(|w| format!("-w{w}")).unwrap_or_default();
            format!("/{}/{last}{w}.{}", format.as_str(), format.extension())
        }

        #[test]
        fn edge_paths_round_trip_to_the_stored_keys() {
            for stem in [
                "holiday photo",
                "Ünïcødé ✓",
                "a+b&c=d?e#f%20g",
                ".hidden",
                "..",
                "x~y_z-1.2",
                &"é".repeat(600),
                &"😀".repeat(300),
            ] {
                let path = edge_path(stem, ID, 4000);
                assert!(path.starts_with("/i/4000/"), "{path}");
                assert!(path.len() <= MAX_URI_BYTES, "{}", path.len());
                // One path segment, only unreserved characters and escapes.
                let last = path.strip_prefix("/i/4000/").unwrap();
                assert!(!last.contains('/'), "{path}");
                assert!(
                    last.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-._~%".contains(&b)),
                    "{path}"
                );
                for f in Format::ALL {
                    for w in [None, Some(320)] {
                        let key = rendition_key_with_width(f, stem, ID, w);
                        assert_eq!(decode(&rewrite(&path, f, w)), format!("/{key}"));
                    }
                }
            }
            assert_eq!(
                edge_path("holiday photo", ID, 1200),
                format!("/i/1200/holiday%20photo-{ID}")
            );
            assert_eq!(edge_path("a", ID, 0), format!("/i/a-{ID}"));
            assert_eq!(PATH_PATTERN, format!("{PATH_PREFIX}*"));
            assert_eq!(encode_segment("!'()*"), "%21%27%28%29%2A");
            assert_eq!(encode_segment("é"), "%C3%A9");
        }

        #[test]
        fn the_longest_edge_path_fits_the_uri_limit() {
            // Every byte of a maximal stem escaped, the widest width, a suffix.
            let stem = "\u{7f}".repeat(2000);
            let path = format!("{}.jpeg", edge_path(&stem, ID, 9_999_999));
            assert_eq!(path.len(), 3 + 8 + 3 * MAX_STEM_BYTES + 1 + ID_LEN + 5);
            assert!(path.len() <= MAX_URI_BYTES);
            assert_eq!(MAX_STEM_BYTES, 969);
        }

        #[test]
        fn servable_stems_and_ids() {
            assert!(servable("holiday photo", ID));
            assert!(servable("Ünïcødé ✓ %2f ..", ID));
            assert!(!servable("back\\slash", ID));
            assert!(!servable("tab\there", ID));
            assert!(!servable("nul\0", ID));
            assert!(!servable("a", "abc"));
            assert!(!servable("a", &ID.to_uppercase()));
            // Only the part that survives shortening counts.
            let long = format!("{}\\", "x".repeat(MAX_STEM_BYTES));
            assert!(servable(&long, ID));
        }

        #[test]
        fn url_prefixes() {
            for (raw, want) in [
                (
                    "https://d111111abcdef8.cloudfront.net",
                    "https://d111111abcdef8.cloudfront.net",
                ),
                ("https://images.example.com/", "https://images.example.com"),
                (" http://localhost:8080 ", "http://localhost:8080"),
                ("http://127.0.0.1:4566", "http://127.0.0.1:4566"),
                ("https://[::1]:8443", "https://[::1]:8443"),
                ("https://[2001:db8::1]", "https://[2001:db8::1]"),
            ] {
                assert_eq!(parse_url_prefix(raw).as_deref(), Ok(want), "{raw}");
            }
            for bad in [
                "",
                "images.example.com",
                "ftp://images.example.com",
                "https://",
                "https:///x",
                "https://images.example.com/img",
                "https://images.example.com//",
                "https://images.example.com?x=1",
                "https://images.example.com#x",
                "https://user@images.example.com",
                "https://images.example.com:",
                "https://images.example.com:http",
                "https://images.example.com:123456",
                "https://-bad.example.com",
                "https://exa mple.com",
                "https://[::1",
                "javascript:alert(1)",
            ] {
                assert!(parse_url_prefix(bad).is_err(), "{bad:?} accepted");
            }
        }

        #[test]
        fn srcset_lists_existing_widths_then_the_full_size() {
            assert_eq!(
                srcset("https://cdn.example", "/i/1000/a-x", 1000, &widths::DEFAULT),
                "https://cdn.example/i/1000/a-x?w=320 320w, https://cdn.example/i/1000/a-x?w=640 640w, https://cdn.example/i/1000/a-x 1000w"
            );
            // Unsorted, duplicated, out of range, equal to the source: dropped.
            assert_eq!(
                srcset("", "/i/640/a-x", 640, &[640, 8, 320, 320, 9000]),
                "/i/640/a-x?w=320 320w, /i/640/a-x 640w"
            );
            assert_eq!(
                srcset("", "/i/100/a-x", 100, &widths::DEFAULT),
                "/i/100/a-x 100w"
            );
        }
    }
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

    /// Scheme and host the metadata item's edge `url` and `srcset` start
    /// with, e.g. `https://d111111abcdef8.cloudfront.net` or
    /// `https://images.example.com` (optional; no path, query or fragment,
    /// checked by [`edge::parse_url_prefix`](super::edge::parse_url_prefix);
    /// unset: the URLs are relative, `/i/...`).
    pub const IMAGE_URL_PREFIX: &str = "IMAGESTACK_IMAGE_URL_PREFIX";

    /// Variables the processor reads when set and defaults otherwise.
    /// (The operator sets [`AVIF_BUCKET`] and [`AVIF_QUALITY`] on every stack;
    /// the processor requires the bucket only when `avif` is among the formats.)
    pub const OPTIONAL: [&str; 7] = [
        MAX_INPUT_DIMENSION,
        TIME_BUDGET_MS,
        JPEG_BACKGROUND,
        WIDTHS,
        AVIF_BUCKET,
        AVIF_QUALITY,
        IMAGE_URL_PREFIX,
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
        /// The image's edge URL: [`env::IMAGE_URL_PREFIX`](crate::env::IMAGE_URL_PREFIX)
        /// (or nothing: a relative URL) + [`edge::edge_path`](crate::edge::edge_path).
        /// Completed items of [`edge::servable`](crate::edge::servable) images only.
        pub const URL: &str = "url";
        /// A ready `srcset` for that URL ([`edge::srcset`](crate::edge::srcset));
        /// recorded with [`URL`].
        pub const SRCSET: &str = "srcset";
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
    fn format_lists_keep_order_drop_repeats_and_refuse_nothing_or_unknowns() {
        assert_eq!(
            Format::parse_list(" png, WEBP,jpg,webp "),
            Ok(vec![Format::Png, Format::Webp, Format::Jpeg])
        );
        assert_eq!(
            Format::parse_list(" , "),
            Err("names no format".to_string())
        );
        assert!(Format::parse_list("webp,gif").unwrap_err().contains("gif"));
    }

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

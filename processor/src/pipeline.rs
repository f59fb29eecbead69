//! Bytes in, renditions out.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use image::DynamicImage;
use imagestack_contract::{Format, defaults};

use crate::cpu;
use crate::deadline::Deadline;
use crate::decode::{self, Decoded, IccProfile, SourceFormat};
use crate::encode;
use crate::error::{Error, Result};
use crate::limits::Limits;

/// Default per-image time budget.
pub const DEFAULT_TIME_BUDGET: Duration = Duration::from_millis(defaults::TIME_BUDGET_MS);

/// Everything that shapes the output; see `Settings::default` for the defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub formats: Vec<Format>,
    pub webp_quality: u8,
    pub jpeg_quality: u8,
    /// Upper bound for libwebp's method; images with alpha are capped further
    /// ([`encode::webp::effective_method`]).
    pub webp_method: u8,
    pub limits: Limits,
    /// Background the JPEG rendition flattens alpha onto.
    pub jpeg_background: [u8; 3],
    pub time_budget: Duration,
    /// Encoders run at once (1 = one after the other).
    pub parallelism: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            formats: Format::ALL.to_vec(),
            webp_quality: defaults::WEBP_QUALITY,
            jpeg_quality: defaults::JPEG_QUALITY,
            webp_method: defaults::WEBP_METHOD,
            limits: Limits::default(),
            jpeg_background: [255, 255, 255],
            time_budget: DEFAULT_TIME_BUDGET,
            parallelism: available_parallelism(),
        }
    }
}

/// CPUs this process may use.
pub fn available_parallelism() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// One encoded rendition.
#[derive(Debug, Clone)]
pub struct Rendition {
    pub format: Format,
    pub bytes: Vec<u8>,
    pub width: u32,
    pub height: u32,
    /// Whether the source's ICC profile is embedded.
    pub icc_embedded: bool,
    /// Wall time of this encoder.
    pub encode_time: Duration,
    /// CPU time of this encoder (its thread's).
    pub encode_cpu: Duration,
}

/// What happened to the source's colour profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IccHandling {
    /// The source had none (sRGB is assumed, as browsers do).
    None,
    /// The source's profile is sRGB: not embedded, since untagged means sRGB.
    Srgb,
    /// Embedded in every rendition whose channels it describes.
    Carried,
    /// The profile describes a colour space no rendition has (e.g. CMYK after
    /// conversion to RGB); it was not embedded (logged, and recorded on the item).
    Incompatible,
}

impl IccHandling {
    pub const fn as_str(self) -> &'static str {
        match self {
            IccHandling::None => "none",
            IccHandling::Srgb => "srgb",
            IccHandling::Carried => "carried",
            IccHandling::Incompatible => "incompatible",
        }
    }
}

/// The result of [`optimize`].
#[derive(Debug, Clone)]
pub struct Optimized {
    pub source_format: SourceFormat,
    /// Dimensions after orientation.
    pub width: u32,
    pub height: u32,
    pub has_alpha: bool,
    pub reoriented: bool,
    pub icc: IccHandling,
    /// In the order of `Settings::formats`.
    pub renditions: Vec<Rendition>,
    pub decode_time: Duration,
    /// CPU time of the decode (the calling thread's).
    pub decode_cpu: Duration,
    pub webp_method: u8,
}

impl Optimized {
    pub fn rendition(&self, format: Format) -> Option<&Rendition> {
        self.renditions.iter().find(|r| r.format == format)
    }
}

/// Decode `bytes` and encode every configured format within the time budget.
pub fn optimize(bytes: &[u8], settings: &Settings) -> Result<Optimized> {
    optimize_until(bytes, settings, &Deadline::after(settings.time_budget))
}

/// [`optimize`] against an explicit deadline (the Lambda also bounds it by
/// the invocation's remaining time).
pub fn optimize_until(bytes: &[u8], settings: &Settings, deadline: &Deadline) -> Result<Optimized> {
    let started = Instant::now();
    let cpu_started = cpu::thread_cpu();
    let decoded = decode::decode(bytes, &settings.limits)?;
    let decode_time = started.elapsed();
    let decode_cpu = cpu::thread_cpu().saturating_sub(cpu_started);
    deadline.check("decode")?;
    let webp_method = encode::webp::effective_method(settings.webp_method, decoded.has_alpha());
    let renditions = encode_all(&decoded, settings, webp_method, deadline)?;
    deadline.check("encode")?;
    let icc = match &decoded.icc {
        None => IccHandling::None,
        Some(p) if p.is_srgb() => IccHandling::Srgb,
        Some(IccProfile::Other { space }) => {
            tracing::warn!(space = %space, "ICC profile not embedded: no rendition has its colour space");
            IccHandling::Incompatible
        }
        Some(_) if renditions.iter().all(|r| r.icc_embedded) => IccHandling::Carried,
        Some(_) => IccHandling::Incompatible,
    };
    Ok(Optimized {
        source_format: decoded.format,
        width: decoded.width(),
        height: decoded.height(),
        has_alpha: decoded.has_alpha(),
        reoriented: decoded.reoriented,
        icc,
        renditions,
        decode_time,
        decode_cpu,
        webp_method,
    })
}

/// Longest first, so two workers finish together.
fn schedule(formats: &[Format]) -> Vec<Format> {
    let mut order = formats.to_vec();
    order.sort_by_key(|f| match f {
        Format::Png => 0,
        Format::Webp => 1,
        Format::Jpeg => 2,
    });
    order.dedup();
    order
}

fn encode_all(
    decoded: &Decoded,
    settings: &Settings,
    webp_method: u8,
    deadline: &Deadline,
) -> Result<Vec<Rendition>> {
    let order = schedule(&settings.formats);
    let workers = settings.parallelism.clamp(1, order.len().max(1));
    let results: Vec<Result<Rendition>> = if workers == 1 {
        order
            .iter()
            .map(|&f| encode_one(decoded, f, settings, webp_method, deadline))
            .collect()
    } else {
        // A fixed pool of `workers` threads pulling formats from a shared
        // index: at most `workers` encoders (and their buffers) at once.
        let next = AtomicUsize::new(0);
        let done: Mutex<Vec<Result<Rendition>>> = Mutex::new(Vec::with_capacity(order.len()));
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| {
                    while let Some(&f) = order.get(next.fetch_add(1, Ordering::Relaxed)) {
                        let r = encode_one(decoded, f, settings, webp_method, deadline);
                        if let Ok(mut d) = done.lock() {
                            d.push(r);
                        }
                    }
                });
            }
        });
        done.into_inner()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    };
    let mut renditions = Vec::with_capacity(results.len());
    for r in results {
        renditions.push(r?);
    }
    if renditions.len() != order.len() {
        return Err(Error::EncodeFailed {
            format: order[renditions.len().min(order.len() - 1)],
            message: "encoder thread did not finish".to_string(),
        });
    }
    renditions.sort_by_key(|r| settings.formats.iter().position(|f| *f == r.format));
    Ok(renditions)
}

fn encode_one(
    decoded: &Decoded,
    format: Format,
    settings: &Settings,
    webp_method: u8,
    deadline: &Deadline,
) -> Result<Rendition> {
    deadline.check(format.as_str())?;
    let started = Instant::now();
    let cpu_started = cpu::thread_cpu();
    let image: &DynamicImage = &decoded.image;
    let gray_output = match format {
        Format::Webp => false,
        Format::Jpeg => {
            !image.color().has_color()
                && (!image.color().has_alpha()
                    || settings
                        .jpeg_background
                        .iter()
                        .all(|&c| c == settings.jpeg_background[0]))
        }
        Format::Png => !image.color().has_color(),
    };
    let icc = decoded
        .icc
        .as_ref()
        .filter(|p| !p.is_srgb())
        .and_then(|p| p.for_channels(gray_output));
    let bytes = match format {
        Format::Webp => {
            encode::webp::encode(image, icc, settings.webp_quality, webp_method, deadline)?
        }
        Format::Jpeg => {
            encode::jpeg::encode(image, icc, settings.jpeg_quality, settings.jpeg_background)?
        }
        Format::Png => encode::png::encode(image, icc, deadline)?,
    };
    Ok(Rendition {
        format,
        bytes,
        width: image.width(),
        height: image.height(),
        icc_embedded: icc.is_some(),
        encode_time: started.elapsed(),
        encode_cpu: cpu::thread_cpu().saturating_sub(cpu_started),
    })
}

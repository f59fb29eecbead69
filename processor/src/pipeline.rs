//! Bytes in, renditions out.
//!
//! Decode (limits from the header, orientation applied) → resample every
//! configured width narrower than the image ([`crate::resize`]) → encode the
//! full size and every variant in every format on a bounded pool, largest
//! first → all or nothing: a late or failed job fails the whole image.

use std::time::{Duration, Instant};

use image::DynamicImage;
use imagestack_contract::{Format, defaults, widths};

use crate::cpu;
use crate::deadline::Deadline;
use crate::decode::{self, IccProfile, SourceFormat};
use crate::encode;
use crate::error::Result;
use crate::limits::Limits;
use crate::pool;
use crate::resize;

/// Default per-image time budget.
pub const DEFAULT_TIME_BUDGET: Duration = Duration::from_millis(defaults::TIME_BUDGET_MS);

/// Everything that shapes the output; see `Settings::default` for the defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub formats: Vec<Format>,
    pub webp_quality: u8,
    pub jpeg_quality: u8,
    pub avif_quality: u8,
    /// rav1e speed preset for images up to 1 MP ([`encode::avif::SPEED`] unless
    /// benchmarking); larger images are encoded faster ([`encode::avif::speed_for`]).
    pub avif_speed: u8,
    /// Upper bound for libwebp's method; images with alpha are capped further
    /// ([`encode::webp::effective_method`]).
    pub webp_method: u8,
    pub limits: Limits,
    /// Background the JPEG rendition flattens alpha onto.
    pub jpeg_background: [u8; 3],
    pub time_budget: Duration,
    /// Encoders (and resamplers) run at once (1 = one after the other).
    pub parallelism: usize,
    /// Width variants besides the full size; only those narrower than an
    /// image are made for it ([`resize::variant_widths`]). Empty: full size only.
    pub widths: Vec<u32>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            formats: Format::DEFAULT.to_vec(),
            webp_quality: defaults::WEBP_QUALITY,
            jpeg_quality: defaults::JPEG_QUALITY,
            avif_quality: defaults::AVIF_QUALITY,
            avif_speed: encode::avif::SPEED,
            webp_method: defaults::WEBP_METHOD,
            limits: Limits::default(),
            jpeg_background: [255, 255, 255],
            time_budget: DEFAULT_TIME_BUDGET,
            parallelism: available_parallelism(),
            widths: widths::DEFAULT.to_vec(),
        }
    }
}

/// CPUs this process may use.
pub fn available_parallelism() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// One encoded rendition: the full size or a width variant.
#[derive(Debug, Clone)]
pub struct Rendition {
    pub format: Format,
    /// `None` for the full size, else the configured width this variant was
    /// made for (equal to `width`).
    pub variant: Option<u32>,
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
    /// In the order of `Settings::formats`; per format the width variants in
    /// ascending width, then the full size.
    pub renditions: Vec<Rendition>,
    pub decode_time: Duration,
    /// CPU time of the decode (the calling thread's).
    pub decode_cpu: Duration,
    /// Wall time of making the width variants (zero when there are none).
    pub resize_time: Duration,
    /// CPU time of making the width variants (all threads').
    pub resize_cpu: Duration,
    pub webp_method: u8,
}

impl Optimized {
    /// The full-size rendition of `format`.
    pub fn rendition(&self, format: Format) -> Option<&Rendition> {
        self.renditions
            .iter()
            .find(|r| r.format == format && r.variant.is_none())
    }

    /// The width variants of `format`, narrowest first.
    pub fn variants(&self, format: Format) -> impl Iterator<Item = &Rendition> {
        self.renditions
            .iter()
            .filter(move |r| r.format == format && r.variant.is_some())
    }
}

/// Decode `bytes` and encode every configured format within the time budget.
pub fn optimize(bytes: &[u8], settings: &Settings) -> Result<Optimized> {
    optimize_until(bytes, settings, &Deadline::after(settings.time_budget))
}

/// [`optimize`] against an explicit deadline (the Lambda also bounds it by
/// the invocation's remaining time). The deadline covers decoding, every
/// width variant and every encoder: whatever is late fails the whole image.
pub fn optimize_until(bytes: &[u8], settings: &Settings, deadline: &Deadline) -> Result<Optimized> {
    let started = Instant::now();
    let cpu_started = cpu::thread_cpu();
    let decoded = decode::decode(bytes, &settings.limits)?;
    let decode_time = started.elapsed();
    let decode_cpu = cpu::thread_cpu().saturating_sub(cpu_started);
    deadline.check("decode")?;
    let webp_method = encode::webp::effective_method(settings.webp_method, decoded.has_alpha());
    let (variants, resize_time, resize_cpu) = resize::variants(
        &decoded.image,
        &settings.widths,
        settings.parallelism,
        deadline,
    )?;
    let mut images: Vec<(Option<u32>, &DynamicImage)> = vec![(None, &decoded.image)];
    images.extend(variants.iter().map(|v| (Some(v.width), &v.image)));
    let renditions = encode_all(
        &images,
        decoded.icc.as_ref(),
        settings,
        webp_method,
        deadline,
    )?;
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
        resize_time,
        resize_cpu,
        webp_method,
    })
}

/// Relative encoder cost per pixel (measured: AV1 and PNG's trials are the
/// slowest, mozjpeg the fastest), for running the longest jobs first.
fn cost_weight(format: Format) -> u64 {
    match format {
        Format::Avif => 4,
        Format::Png => 3,
        Format::Webp => 2,
        Format::Jpeg => 1,
    }
}

/// One encoder job: a format and an index into the images.
#[derive(Debug, Clone, Copy)]
struct Job {
    format: Format,
    image: usize,
}

/// Longest first, so the workers finish together and the full-size encoders
/// (the big buffers) run before the variants'.
fn schedule(formats: &[Format], images: &[(Option<u32>, &DynamicImage)]) -> Vec<Job> {
    let mut formats = formats.to_vec();
    formats.sort();
    formats.dedup();
    let mut jobs: Vec<Job> = formats
        .iter()
        .flat_map(|&format| (0..images.len()).map(move |image| Job { format, image }))
        .collect();
    jobs.sort_by_key(|j| {
        let img = images[j.image].1;
        std::cmp::Reverse(u64::from(img.width()) * u64::from(img.height()) * cost_weight(j.format))
    });
    jobs
}

fn encode_all(
    images: &[(Option<u32>, &DynamicImage)],
    icc: Option<&IccProfile>,
    settings: &Settings,
    webp_method: u8,
    deadline: &Deadline,
) -> Result<Vec<Rendition>> {
    let jobs = schedule(&settings.formats, images);
    let results = pool::run(&jobs, settings.parallelism, |job| {
        let (variant, image) = images[job.image];
        encode_one(
            image,
            variant,
            icc,
            job.format,
            settings,
            webp_method,
            deadline,
        )
    });
    let mut renditions = results.into_iter().collect::<Result<Vec<_>>>()?;
    // Settings' format order; per format ascending width, the full size last.
    renditions.sort_by_key(|r| {
        (
            settings.formats.iter().position(|f| *f == r.format),
            r.variant.is_none(),
            r.width,
        )
    });
    Ok(renditions)
}

fn encode_one(
    image: &DynamicImage,
    variant: Option<u32>,
    icc: Option<&IccProfile>,
    format: Format,
    settings: &Settings,
    webp_method: u8,
    deadline: &Deadline,
) -> Result<Rendition> {
    deadline.check(format.as_str())?;
    let started = Instant::now();
    let cpu_started = cpu::thread_cpu();
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
        Format::Png | Format::Avif => !image.color().has_color(),
    };
    // AVIF's container here carries no ICC profile (encode::avif).
    let icc = icc
        .filter(|p| !p.is_srgb() && format != Format::Avif)
        .and_then(|p| p.for_channels(gray_output));
    let bytes = match format {
        Format::Webp => {
            encode::webp::encode(image, icc, settings.webp_quality, webp_method, deadline)?
        }
        Format::Jpeg => {
            encode::jpeg::encode(image, icc, settings.jpeg_quality, settings.jpeg_background)?
        }
        Format::Png => encode::png::encode(image, icc, deadline)?,
        Format::Avif => {
            encode::avif::encode(image, settings.avif_quality, settings.avif_speed, deadline)?
        }
    };
    Ok(Rendition {
        format,
        variant,
        bytes,
        width: image.width(),
        height: image.height(),
        icc_embedded: icc.is_some(),
        encode_time: started.elapsed(),
        encode_cpu: cpu::thread_cpu().saturating_sub(cpu_started),
    })
}

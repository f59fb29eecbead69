//! The imagestack processor: every uploaded image becomes optimized WebP, JPEG
//! and PNG renditions.
//!
//! The crate has two halves:
//!
//! * a pure image pipeline ([`pipeline::optimize`]: bytes in, renditions out)
//!   with hard limits checked from the headers before any pixel is decoded,
//!   EXIF orientation applied and all metadata but the ICC profile dropped,
//!   width variants resampled in linear light ([`resize`]), and a per-image
//!   time budget ([`deadline::Deadline`]) over all of it;
//! * the Lambda side ([`lambda`]): S3 events in, renditions in the output
//!   buckets and a metadata item in DynamoDB out, metrics as EMF log lines.
//!
//! The binaries `bootstrap` (the Lambda) and `processor` (a local CLI) are
//! thin shells over these modules.

pub mod cpu;
pub mod deadline;
pub mod decode;
pub mod encode;
pub mod error;
#[cfg(feature = "lambda")]
pub mod lambda;
pub mod limits;
pub mod pipeline;
pub mod pool;
pub mod resize;

pub use error::{Error, FailureReason};
pub use pipeline::{Optimized, Rendition, Settings, optimize};

/// Version recorded on every metadata item (`processor_version`).
pub const PROCESSOR_VERSION: &str = env!("CARGO_PKG_VERSION");

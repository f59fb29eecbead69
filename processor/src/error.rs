//! The crate's single error type.
//!
//! Errors split into two families that the Lambda treats differently:
//! *permanent* ones (the image itself is bad, the event is not ours, or S3
//! refused a request for good: [`Error::failure_reason`] is `Some`) end in a
//! failed metadata record and a successful invocation, and *transient* ones
//! (throttling, 5xx, network, DynamoDB trouble) fail the invocation so Lambda
//! retries.

use std::fmt;

/// Machine-readable reason stored on a failed metadata record and used as the
/// `Reason` dimension of the `ProcessingErrors` metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FailureReason {
    /// More bytes than `IMAGESTACK_MAX_INPUT_BYTES`.
    TooLarge,
    /// More pixels than `IMAGESTACK_MAX_INPUT_PIXELS`.
    TooManyPixels,
    /// A side longer than `IMAGESTACK_MAX_INPUT_DIMENSION`.
    DimensionTooLarge,
    /// Not a JPEG, PNG or WebP (detected from the bytes, never the name).
    UnsupportedFormat,
    /// Recognised format but undecodable (truncated, corrupt, zero-sized).
    CorruptImage,
    /// The per-image time budget ran out.
    Timeout,
    /// An encoder (or the resampler) refused the decoded image.
    EncodeFailed,
    /// The object (or the object version) named by the event no longer exists.
    SourceMissing,
    /// The event names a bucket other than the configured upload bucket.
    WrongBucket,
    /// S3 refused a request for good (a 4xx answer other than throttling or
    /// a timeout: a key too long, access denied, no such bucket, ...): retrying
    /// the same request cannot succeed.
    StorageRejected,
}

impl FailureReason {
    pub const fn as_str(self) -> &'static str {
        match self {
            FailureReason::TooLarge => "TooLarge",
            FailureReason::TooManyPixels => "TooManyPixels",
            FailureReason::DimensionTooLarge => "DimensionTooLarge",
            FailureReason::UnsupportedFormat => "UnsupportedFormat",
            FailureReason::CorruptImage => "CorruptImage",
            FailureReason::Timeout => "Timeout",
            FailureReason::EncodeFailed => "EncodeFailed",
            FailureReason::SourceMissing => "SourceMissing",
            FailureReason::WrongBucket => "WrongBucket",
            FailureReason::StorageRejected => "StorageRejected",
        }
    }
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("input is {actual} bytes, more than the limit of {limit}")]
    TooLarge { actual: u64, limit: u64 },
    #[error("image is {width}x{height} = {pixels} pixels, more than the limit of {limit}")]
    TooManyPixels {
        width: u32,
        height: u32,
        pixels: u64,
        limit: u64,
    },
    #[error("image is {width}x{height}, a side is longer than the limit of {limit}")]
    DimensionTooLarge { width: u32, height: u32, limit: u32 },
    #[error("unsupported format: {0}")]
    UnsupportedFormat(String),
    #[error("corrupt image: {0}")]
    CorruptImage(String),
    #[error("time budget of {budget_ms} ms exceeded during {stage}")]
    Timeout { stage: &'static str, budget_ms: u64 },
    #[error("{format} encoder failed: {message}")]
    EncodeFailed {
        format: imagestack_contract::Format,
        message: String,
    },
    #[error("resampling to width {width} failed: {message}")]
    ResizeFailed { width: u32, message: String },
    #[error("source object s3://{bucket}/{key}{} does not exist", version_id.as_deref().map(|v| format!(" (version {v})")).unwrap_or_default())]
    SourceMissing {
        bucket: String,
        key: String,
        version_id: Option<String>,
    },
    #[error(
        "event for bucket {bucket:?} refused: this function processes uploads to {expected:?} only"
    )]
    WrongBucket { bucket: String, expected: String },
    #[error("S3 {operation} s3://{bucket}/{key} refused (HTTP {status}, {code}): {message}")]
    S3Rejected {
        operation: &'static str,
        bucket: String,
        key: String,
        status: u16,
        code: String,
        message: String,
    },
    #[error("internal error: {0}")]
    Internal(String),

    #[error("configuration: {var}: {message}")]
    Config { var: &'static str, message: String },
    #[error("invalid event: {0}")]
    Event(String),
    #[error("S3 {operation} s3://{bucket}/{key}: {message}")]
    S3 {
        operation: &'static str,
        bucket: String,
        key: String,
        message: String,
    },
    #[error("DynamoDB PutItem into {table}: {message}")]
    DynamoDb { table: String, message: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// The reason to record when this error is a property of the image
    /// (permanent); `None` for transient or operational errors.
    pub fn failure_reason(&self) -> Option<FailureReason> {
        Some(match self {
            Error::TooLarge { .. } => FailureReason::TooLarge,
            Error::TooManyPixels { .. } => FailureReason::TooManyPixels,
            Error::DimensionTooLarge { .. } => FailureReason::DimensionTooLarge,
            Error::UnsupportedFormat(_) => FailureReason::UnsupportedFormat,
            Error::CorruptImage(_) => FailureReason::CorruptImage,
            Error::Timeout { .. } => FailureReason::Timeout,
            Error::EncodeFailed { .. } => FailureReason::EncodeFailed,
            Error::ResizeFailed { .. } | Error::Internal(_) => FailureReason::EncodeFailed,
            Error::SourceMissing { .. } => FailureReason::SourceMissing,
            Error::WrongBucket { .. } => FailureReason::WrongBucket,
            Error::S3Rejected { .. } => FailureReason::StorageRejected,
            Error::Config { .. }
            | Error::Event(_)
            | Error::S3 { .. }
            | Error::DynamoDb { .. }
            | Error::Io { .. } => return None,
        })
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

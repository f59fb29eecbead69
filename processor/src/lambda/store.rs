//! S3 and DynamoDB through aws-sdk-rust. `AWS_ENDPOINT_URL` is honoured by
//! aws-config; when it is set, S3 is addressed path-style (emulators).
//! Retries use the SDK's standard retry strategy. What still fails is
//! classified ([`classify`]): a missing source object or version is
//! `SourceMissing`, any other S3 4xx answer but throttling and timeouts is
//! `S3Rejected` (both permanent: a failed item, no retry storm), and the rest
//! (throttling, 5xx, network) is transient and fails the invocation so Lambda
//! retries it.

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_sdk_dynamodb::error::DisplayErrorContext as DdbContext;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use imagestack_contract::{Format, RENDITION_CACHE_CONTROL};

use super::record::Item;
use crate::error::{Error, Result};

/// Attempts per AWS call (standard retry mode, exponential backoff with jitter).
pub const MAX_ATTEMPTS: u32 = 4;

/// S3 error codes that come with a 4xx status but are worth retrying:
/// throttling, timeouts, credentials being refreshed, a conflicting request
/// still in flight, clock skew.
const RETRYABLE_4XX_CODES: &[&str] = &[
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequests",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "RequestTimeout",
    "RequestTimeoutException",
    "PriorRequestNotComplete",
    "OperationAborted",
    "ExpiredToken",
    "ExpiredTokenException",
    "TokenRefreshRequired",
    "RequestTimeTooSkewed",
];

/// What an S3 failure means for the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Worth retrying: throttling (incl. 503 SlowDown), 5xx, 408/429, network
    /// trouble, timeouts — the invocation fails and Lambda retries it.
    Transient,
    /// The object or version named does not exist (404 on a read).
    Missing,
    /// S3 refused the request for good (any other 4xx): retrying cannot help.
    Permanent,
}

/// Classify a failed S3 call from its HTTP status (`None`: no answer at all)
/// and error code.
pub fn classify(status: Option<u16>, code: Option<&str>, read: bool) -> Disposition {
    let Some(status) = status else {
        return Disposition::Transient;
    };
    let retryable_code = code.is_some_and(|c| RETRYABLE_4XX_CODES.contains(&c));
    match status {
        404 if read => Disposition::Missing,
        _ if matches!(code, Some("NoSuchKey" | "NoSuchVersion")) && read => Disposition::Missing,
        408 | 429 => Disposition::Transient,
        400..=499 if !retryable_code => Disposition::Permanent,
        _ => Disposition::Transient,
    }
}

/// The crate error for a failed S3 call.
fn s3_error<E>(
    operation: &'static str,
    bucket: &str,
    key: &str,
    version_id: Option<&str>,
    e: &SdkError<E, HttpResponse>,
) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let status = match e {
        SdkError::ServiceError(s) => Some(s.raw().status().as_u16()),
        _ => None,
    };
    let code = e.as_service_error().and_then(|s| s.code());
    let read = operation == "GetObject";
    let message = DisplayErrorContext(e).to_string();
    match classify(status, code, read) {
        Disposition::Missing => Error::SourceMissing {
            bucket: bucket.to_string(),
            key: key.to_string(),
            version_id: version_id.map(str::to_string),
        },
        Disposition::Permanent => Error::S3Rejected {
            operation,
            bucket: bucket.to_string(),
            key: key.to_string(),
            status: status.unwrap_or_default(),
            code: code.unwrap_or("no error code").to_string(),
            message,
        },
        Disposition::Transient => Error::S3 {
            operation,
            bucket: bucket.to_string(),
            key: key.to_string(),
            message,
        },
    }
}

#[derive(Debug, Clone)]
pub struct Store {
    s3: aws_sdk_s3::Client,
    dynamodb: aws_sdk_dynamodb::Client,
}

impl Store {
    /// Clients from the standard environment (credentials, region, endpoint).
    pub async fn from_env() -> Self {
        let shared = aws_config::defaults(BehaviorVersion::latest())
            .retry_config(RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS))
            .load()
            .await;
        let s3_config = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(shared.endpoint_url().is_some())
            .build();
        Store::new(
            aws_sdk_s3::Client::from_conf(s3_config),
            aws_sdk_dynamodb::Client::new(&shared),
        )
    }

    /// A store over given clients (tests use mocked ones).
    pub fn new(s3: aws_sdk_s3::Client, dynamodb: aws_sdk_dynamodb::Client) -> Self {
        Store { s3, dynamodb }
    }

    /// Download an object version, refusing more than `max_bytes`: before
    /// reading when S3 announces the length, and while streaming in any case
    /// (an answer without a length, or a body longer than announced, is cut
    /// off as soon as it passes the limit — never read unbounded).
    pub async fn get_object(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        max_bytes: u64,
    ) -> Result<Vec<u8>> {
        let resp = self
            .s3
            .get_object()
            .bucket(bucket)
            .key(key)
            .set_version_id(version_id.map(str::to_string))
            .send()
            .await
            .map_err(|e| s3_error("GetObject", bucket, key, version_id, &e))?;
        let announced = resp.content_length().and_then(|l| u64::try_from(l).ok());
        if let Some(len) = announced
            && len > max_bytes
        {
            return Err(Error::TooLarge {
                actual: len,
                limit: max_bytes,
            });
        }
        read_bounded(resp.body, announced, max_bytes)
            .await
            .map_err(|e| match e {
                ReadError::TooLarge(actual) => Error::TooLarge {
                    actual,
                    limit: max_bytes,
                },
                ReadError::Stream(message) => Error::S3 {
                    operation: "GetObject",
                    bucket: bucket.to_string(),
                    key: key.to_string(),
                    message,
                },
            })
    }

    /// Write one rendition with its Content-Type and immutable Cache-Control.
    pub async fn put_rendition(
        &self,
        bucket: &str,
        key: &str,
        format: Format,
        bytes: Vec<u8>,
    ) -> Result<()> {
        self.s3
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type(format.content_type())
            .cache_control(RENDITION_CACHE_CONTROL)
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(|e| s3_error("PutObject", bucket, key, None, &e))?;
        Ok(())
    }

    /// Write (overwrite) the metadata item.
    pub async fn put_item(&self, table: &str, item: Item) -> Result<()> {
        self.dynamodb
            .put_item()
            .table_name(table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| Error::DynamoDb {
                table: table.to_string(),
                message: DdbContext(&e).to_string(),
            })?;
        Ok(())
    }
}

enum ReadError {
    /// At least this many bytes: more than the limit.
    TooLarge(u64),
    Stream(String),
}

/// Collect `body`, failing as soon as it passes `max_bytes`.
async fn read_bounded(
    mut body: ByteStream,
    announced: Option<u64>,
    max_bytes: u64,
) -> std::result::Result<Vec<u8>, ReadError> {
    let capacity = announced.unwrap_or(0).min(max_bytes);
    let mut out = Vec::with_capacity(usize::try_from(capacity).unwrap_or(0));
    while let Some(chunk) = body
        .try_next()
        .await
        .map_err(|e| ReadError::Stream(DisplayErrorContext(&e).to_string()))?
    {
        let total = out.len() as u64 + chunk.len() as u64;
        if total > max_bytes {
            return Err(ReadError::TooLarge(total));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_failures_are_classified() {
        use Disposition::*;
        // No answer at all (network, timeout): retry.
        assert_eq!(classify(None, None, true), Transient);
        // 5xx, incl. 503 SlowDown: retry.
        assert_eq!(classify(Some(500), Some("InternalError"), false), Transient);
        assert_eq!(classify(Some(503), Some("SlowDown"), false), Transient);
        // Throttling or timeouts with a 4xx status: retry.
        for code in [
            "SlowDown",
            "RequestTimeout",
            "ExpiredToken",
            "OperationAborted",
        ] {
            assert_eq!(classify(Some(400), Some(code), false), Transient, "{code}");
        }
        assert_eq!(classify(Some(429), None, false), Transient);
        assert_eq!(classify(Some(408), None, false), Transient);
        // Any other 4xx: permanent.
        for (status, code) in [
            (400, Some("KeyTooLongError")),
            (400, Some("InvalidArgument")),
            (403, Some("AccessDenied")),
            (404, Some("NoSuchBucket")),
            (400, None),
        ] {
            assert_eq!(classify(Some(status), code, false), Permanent, "{code:?}");
        }
        // Reads: a missing object or version is SourceMissing.
        assert_eq!(classify(Some(404), Some("NoSuchKey"), true), Missing);
        assert_eq!(classify(Some(404), Some("NoSuchVersion"), true), Missing);
        assert_eq!(classify(Some(400), Some("NoSuchVersion"), true), Missing);
        assert_eq!(classify(Some(404), None, true), Missing);
        assert_eq!(classify(Some(403), Some("AccessDenied"), true), Permanent);
    }
}

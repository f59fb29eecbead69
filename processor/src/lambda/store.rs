//! S3 and DynamoDB through aws-sdk-rust. `AWS_ENDPOINT_URL` is honoured by
//! aws-config; when it is set, S3 is addressed path-style (emulators).
//! Retries use the SDK's standard retry strategy; whatever still fails is a
//! transient error that fails the invocation (Lambda retries it), except a
//! missing source object, which is permanent.

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_sdk_dynamodb::error::DisplayErrorContext as DdbContext;
use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::primitives::ByteStream;
use imagestack_contract::{Format, RENDITION_CACHE_CONTROL};

use super::record::Item;
use crate::error::{Error, Result};

/// Attempts per AWS call (standard retry mode, exponential backoff with jitter).
pub const MAX_ATTEMPTS: u32 = 4;

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
        Store {
            s3: aws_sdk_s3::Client::from_conf(s3_config),
            dynamodb: aws_sdk_dynamodb::Client::new(&shared),
        }
    }

    /// Download an object version, refusing more than `max_bytes`.
    pub async fn get_object(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        max_bytes: u64,
    ) -> Result<Vec<u8>> {
        let s3_err = |message: String| Error::S3 {
            operation: "GetObject",
            bucket: bucket.to_string(),
            key: key.to_string(),
            message,
        };
        let resp = self
            .s3
            .get_object()
            .bucket(bucket)
            .key(key)
            .set_version_id(version_id.map(str::to_string))
            .send()
            .await
            .map_err(|e| {
                if e.as_service_error().is_some_and(|s| s.is_no_such_key()) {
                    Error::SourceMissing {
                        bucket: bucket.to_string(),
                        key: key.to_string(),
                    }
                } else {
                    s3_err(DisplayErrorContext(&e).to_string())
                }
            })?;
        if let Some(len) = resp.content_length().and_then(|l| u64::try_from(l).ok())
            && len > max_bytes
        {
            return Err(Error::TooLarge {
                actual: len,
                limit: max_bytes,
            });
        }
        let body = resp
            .body
            .collect()
            .await
            .map_err(|e| s3_err(e.to_string()))?;
        Ok(body.into_bytes().to_vec())
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
            .map_err(|e| Error::S3 {
                operation: "PutObject",
                bucket: bucket.to_string(),
                key: key.to_string(),
                message: DisplayErrorContext(&e).to_string(),
            })?;
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

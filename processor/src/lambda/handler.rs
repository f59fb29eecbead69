//! One invocation: every record of the S3 event, in order.
//!
//! Per record: refuse a bucket other than the upload bucket, download (size
//! checked first, and again while streaming), run the pipeline on a blocking
//! thread within the time budget (every width variant included), upload
//! every rendition once all are encoded, and write the metadata item last —
//! so an item marked `completed` always points at renditions that exist. A
//! bad image (or an event that is not ours, or an S3 request refused for
//! good) ends in a `failed` item, an error metric and a successful
//! invocation; a transient AWS failure fails the invocation so Lambda retries
//! it (the deterministic id makes the retry overwrite).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::{StreamExt, TryStreamExt};
use imagestack_contract::{Format, rendition_key_with_width};
use lambda_runtime::LambdaEvent;
use serde::Serialize;
use serde_json::Value;
use tracing::Instrument;

use super::config::Config;
use super::event::{self, Payload, SourceObject};
use super::identity;
use super::metrics;
use super::record::{self, Stored};
use super::store::Store;
use crate::deadline::Deadline;
use crate::error::{Error, FailureReason, Result};
use crate::pipeline;

/// Time kept back from the invocation's deadline for uploads and the item.
pub const UPLOAD_RESERVE: Duration = Duration::from_secs(5);

/// Renditions uploaded at once (an image has up to 3 × 17).
pub const UPLOAD_CONCURRENCY: usize = 8;

/// Where EMF metric lines go (stdout in the Lambda; tests collect them).
pub type MetricsSink = Arc<dyn Fn(&[String]) + Send + Sync>;

/// The outcome of one record, returned in the invocation's response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordOutcome {
    pub bucket: String,
    pub key: String,
    pub image_id: String,
    /// `completed` or `failed`.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<FailureReason>,
}

impl Serialize for FailureReason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// The invocation's response body.
#[derive(Debug, Clone, Serialize)]
pub struct Response {
    pub records: Vec<RecordOutcome>,
}

pub struct Processor {
    config: Config,
    store: Store,
    metrics: MetricsSink,
}

impl Processor {
    /// The dimensions every metric of this function carries.
    fn scope(&self) -> metrics::Scope<'_> {
        metrics::Scope {
            environment: &self.config.environment,
            stack: self.config.stack.as_deref(),
        }
    }

    pub fn new(config: Config, store: Store) -> Self {
        Processor {
            config,
            store,
            metrics: Arc::new(metrics::emit),
        }
    }

    /// Send metric lines to `sink` instead of stdout.
    pub fn with_metrics_sink(mut self, sink: MetricsSink) -> Self {
        self.metrics = sink;
        self
    }

    /// Handle one invocation; `Err` only for transient (retryable) failures.
    pub async fn handle(&self, event: LambdaEvent<Value>) -> Result<Response> {
        let invocation_deadline = deadline_instant(event.context.deadline);
        let records = match event::parse(event.payload)? {
            Payload::TestEvent => {
                tracing::info!("s3:TestEvent ignored");
                return Ok(Response { records: vec![] });
            }
            Payload::Records(records) => records,
        };
        let mut outcomes = Vec::with_capacity(records.len());
        let mut transient: Option<Error> = None;
        for record in records {
            let source = match record {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "skipping malformed record");
                    continue;
                }
            };
            match self.process(&source, invocation_deadline).await {
                Ok(outcome) => outcomes.push(outcome),
                Err(e) => {
                    tracing::error!(bucket = %source.bucket, key = %source.key, error = %e,
                        "transient failure; the invocation will fail so Lambda retries");
                    transient.get_or_insert(e);
                }
            }
        }
        match transient {
            Some(e) => Err(e),
            None => Ok(Response { records: outcomes }),
        }
    }

    async fn process(
        &self,
        source: &SourceObject,
        invocation_deadline: Option<Instant>,
    ) -> Result<RecordOutcome> {
        let started = Instant::now();
        let image_id = identity::image_id(&source.bucket, &source.key, source.version_marker());
        let span = tracing::info_span!("image", id = %image_id, key = %source.key);
        let budget = budget(self.config.settings.time_budget, invocation_deadline);
        let converted = self
            .convert(source, &image_id, budget, started)
            .instrument(span.clone())
            .await;
        let _guard = span.enter();
        match converted {
            Ok(outcome) => Ok(outcome),
            Err(e) => match e.failure_reason() {
                Some(reason) => {
                    self.record_failure(source, &image_id, reason, &e)
                        .instrument(span.clone())
                        .await
                }
                None => Err(e),
            },
        }
    }

    async fn convert(
        &self,
        source: &SourceObject,
        image_id: &str,
        budget: Duration,
        started: Instant,
    ) -> Result<RecordOutcome> {
        if source.bucket != self.config.upload_bucket {
            // Only the upload bucket's notification may invoke the function;
            // anything else is refused before a byte is read.
            return Err(Error::WrongBucket {
                bucket: source.bucket.clone(),
                expected: self.config.upload_bucket.clone(),
            });
        }
        let limits = self.config.settings.limits;
        if let Some(size) = source.size {
            limits.check_bytes(size)?;
        }
        let bytes = self
            .store
            .get_object(
                &source.bucket,
                &source.key,
                source.version_id.as_deref(),
                limits.max_bytes,
            )
            .await?;
        let bytes_in = bytes.len() as u64;
        let settings = self.config.settings.clone();
        // Every rendition (all widths, all formats) is encoded before the
        // first upload: a late variant fails the image with nothing written.
        let mut optimized = tokio::task::spawn_blocking(move || {
            pipeline::optimize_until(&bytes, &settings, &Deadline::after(budget))
        })
        .await
        .map_err(|e| Error::Internal(format!("pipeline task failed: {e}")))??;

        let stem = identity::stem(&source.key);
        let mut stored = Vec::with_capacity(optimized.renditions.len());
        let mut uploads = Vec::with_capacity(optimized.renditions.len());
        for r in std::mem::take(&mut optimized.renditions) {
            let Some(bucket) = self.config.buckets.get(&r.format) else {
                continue;
            };
            let key = rendition_key_with_width(r.format, stem, image_id, r.variant);
            stored.push(Stored {
                format: r.format,
                full_size: r.variant.is_none(),
                width: r.width,
                height: r.height,
                bucket: bucket.clone(),
                key: key.clone(),
                size: r.bytes.len() as u64,
            });
            uploads.push((bucket.clone(), key, r.format, r.bytes));
        }
        futures::stream::iter(uploads)
            .map(|(bucket, key, format, body)| {
                let store = self.store.clone();
                async move { store.put_rendition(&bucket, &key, format, body).await }
            })
            .buffer_unordered(UPLOAD_CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;

        let elapsed = started.elapsed();
        let edge = record::edge_urls(
            &self.config.image_url_prefix,
            stem,
            image_id,
            optimized.width,
            &self.config.settings.widths,
        );
        let item = record::completed(
            source, image_id, bytes_in, &optimized, &stored, elapsed, edge,
        );
        self.store.put_item(&self.config.table, item).await?;
        let mut bytes_out: BTreeMap<Format, u64> = BTreeMap::new();
        for s in &stored {
            *bytes_out.entry(s.format).or_default() += s.size;
        }
        let bytes_out: Vec<(Format, u64)> = self
            .config
            .settings
            .formats
            .iter()
            .filter_map(|f| bytes_out.get(f).map(|b| (*f, *b)))
            .collect();
        (self.metrics)(&metrics::success(
            &self.scope(),
            now_ms(),
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
            bytes_in,
            &bytes_out,
        ));
        tracing::info!(
            width = optimized.width,
            height = optimized.height,
            renditions = stored.len(),
            ms = elapsed.as_millis() as u64,
            "completed"
        );
        Ok(RecordOutcome {
            bucket: source.bucket.clone(),
            key: source.key.clone(),
            image_id: image_id.to_string(),
            status: imagestack_contract::table::attr::STATUS_COMPLETED,
            reason: None,
        })
    }

    async fn record_failure(
        &self,
        source: &SourceObject,
        image_id: &str,
        reason: FailureReason,
        error: &Error,
    ) -> Result<RecordOutcome> {
        tracing::warn!(reason = %reason, error = %error, "image failed permanently");
        let item = record::failed(source, image_id, reason, &error.to_string());
        self.store.put_item(&self.config.table, item).await?;
        (self.metrics)(&[metrics::failure(&self.scope(), now_ms(), reason)]);
        Ok(RecordOutcome {
            bucket: source.bucket.clone(),
            key: source.key.clone(),
            image_id: image_id.to_string(),
            status: imagestack_contract::table::attr::STATUS_FAILED,
            reason: Some(reason),
        })
    }
}

/// The configured budget, shortened to fit the invocation's remaining time.
pub fn budget(configured: Duration, invocation_deadline: Option<Instant>) -> Duration {
    match invocation_deadline {
        Some(d) => configured.min(
            d.saturating_duration_since(Instant::now())
                .saturating_sub(UPLOAD_RESERVE),
        ),
        None => configured,
    }
}

/// The runtime's deadline (epoch milliseconds) as an `Instant`.
fn deadline_instant(deadline_ms: u64) -> Option<Instant> {
    if deadline_ms == 0 {
        return None;
    }
    let now_ms = now_ms();
    Some(Instant::now() + Duration::from_millis(deadline_ms.saturating_sub(now_ms)))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_fits_the_invocation() {
        let long = Duration::from_secs(30);
        assert_eq!(budget(long, None), long);
        let soon = Instant::now() + Duration::from_secs(10);
        let b = budget(long, Some(soon));
        assert!(
            b <= Duration::from_secs(5) && b > Duration::from_secs(4),
            "{b:?}"
        );
        assert_eq!(budget(long, Some(Instant::now())), Duration::ZERO);
    }
}

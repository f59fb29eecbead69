//! `operator redrive`: send the events waiting in a stack's failed-event
//! queue back to its processor function, once the cause of their failure is
//! fixed.
//!
//! Each message is what Lambda's on-failure destination wrote (the original
//! S3 event under `requestPayload`, which the processor accepts as it is). It
//! is sent with an asynchronous `Invoke` (`InvocationType: Event`, so it gets
//! Lambda's retries and, failing again, comes back to the queue) and deleted
//! from the queue only after Lambda accepted it (HTTP 202). A redrive that
//! stops half-way loses nothing: a message not yet accepted stays in the
//! queue (visible again after [`VISIBILITY_TIMEOUT`]). Running it twice
//! never changes a result: processing is idempotent by image id.

use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvocationType;

use crate::aws::AwsClients;
use crate::error::{Error, Result};

/// How long a received message stays invisible to other readers while it is
/// being sent (seconds).
pub const VISIBILITY_TIMEOUT: i32 = 60;

/// What one redrive did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Redriven {
    /// Messages Lambda accepted, then deleted from the queue.
    pub sent: usize,
    /// Messages still in the queue (visible or in flight) afterwards, as SQS
    /// estimates it.
    pub left: i64,
}

/// Move at most `max` messages from the queue at `queue_url` to `function`.
pub async fn redrive(
    aws: &AwsClients,
    queue_url: &str,
    function: &str,
    max: usize,
) -> Result<Redriven> {
    let mut sent = 0;
    while sent < max {
        let batch = (max - sent).min(10) as i32;
        let out = aws
            .sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(batch)
            .visibility_timeout(VISIBILITY_TIMEOUT)
            // Long polling asks every SQS server: an empty answer means empty.
            .wait_time_seconds(1)
            .send()
            .await
            .map_err(|e| Error::aws("sqs:ReceiveMessage", e))?;
        let messages = out.messages();
        if messages.is_empty() {
            break;
        }
        for m in messages {
            let (Some(body), Some(receipt)) = (m.body(), m.receipt_handle()) else {
                continue;
            };
            let accepted = aws
                .lambda
                .invoke()
                .function_name(function)
                .invocation_type(InvocationType::Event)
                .payload(Blob::new(body.as_bytes()))
                .send()
                .await
                .map_err(|e| Error::aws("lambda:InvokeFunction", e))?;
            if accepted.status_code() != 202 {
                return Err(Error::Aws {
                    action: "lambda:InvokeFunction".into(),
                    code: format!("HTTP {}", accepted.status_code()),
                    message: "Lambda did not accept the event; it stays in the queue".into(),
                    class: crate::error::ErrorClass::Retryable,
                });
            }
            aws.sqs
                .delete_message()
                .queue_url(queue_url)
                .receipt_handle(receipt)
                .send()
                .await
                .map_err(|e| Error::aws("sqs:DeleteMessage", e))?;
            sent += 1;
            tracing::info!(
                message = m.message_id().unwrap_or_default(),
                function,
                "redriven"
            );
        }
    }
    Ok(Redriven {
        sent,
        left: depth(aws, queue_url).await?,
    })
}

/// Messages in the queue, visible or in flight (SQS's estimate).
pub async fn depth(aws: &AwsClients, queue_url: &str) -> Result<i64> {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let out = aws
        .sqs
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(A::ApproximateNumberOfMessages)
        .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .map_err(|e| Error::aws("sqs:GetQueueAttributes", e))?;
    let attrs = out.attributes().cloned().unwrap_or_default();
    let n = |k: A| {
        attrs
            .get(&k)
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or(0)
    };
    Ok(n(A::ApproximateNumberOfMessages) + n(A::ApproximateNumberOfMessagesNotVisible))
}

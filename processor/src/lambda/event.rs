//! S3 event records → the source objects to process.
//!
//! S3 URL-encodes object keys in events (form encoding: a space arrives as
//! `+`, a literal `+` as `%2B`), so keys are decoded before use.

use aws_lambda_events::s3::{S3Event, S3EventRecord};
use serde_json::Value;

use crate::error::{Error, Result};

/// One uploaded object named by an event record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceObject {
    pub bucket: String,
    /// Decoded key.
    pub key: String,
    pub version_id: Option<String>,
    pub etag: Option<String>,
    /// Size from the event (checked against the byte limit before downloading).
    pub size: Option<u64>,
    /// `eventTime` in epoch seconds (stable across retries of the same event).
    pub upload_timestamp: i64,
}

impl SourceObject {
    /// What identifies this version of the object: version id, else ETag.
    pub fn version_marker(&self) -> Option<&str> {
        self.version_id.as_deref().or(self.etag.as_deref())
    }
}

/// What an invocation payload asks for.
#[derive(Debug)]
pub enum Payload {
    /// S3 object records to process (each parsed independently).
    Records(Vec<Result<SourceObject>>),
    /// `s3:TestEvent`, sent by S3 when a notification is configured: nothing to do.
    TestEvent,
}

/// Parse an invocation payload: an S3 event, or the record Lambda's
/// on-failure destination wrote for one (the original event under
/// `requestPayload`), which is what `operator redrive` sends back.
pub fn parse(mut payload: Value) -> Result<Payload> {
    if payload.get("requestContext").is_some()
        && let Some(original) = payload.get_mut("requestPayload").map(Value::take)
    {
        payload = original;
    }
    if payload.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
        return Ok(Payload::TestEvent);
    }
    let event: S3Event = serde_json::from_value(payload)
        .map_err(|e| Error::Event(format!("not an S3 event: {e}")))?;
    Ok(Payload::Records(
        event
            .records
            .iter()
            .filter(|r| is_object_created(r))
            .map(source_object)
            .collect(),
    ))
}

fn is_object_created(record: &S3EventRecord) -> bool {
    record
        .event_name
        .as_deref()
        .is_none_or(|n| n.starts_with("ObjectCreated:"))
}

fn source_object(record: &S3EventRecord) -> Result<SourceObject> {
    let bucket = record
        .s3
        .bucket
        .name
        .clone()
        .filter(|b| !b.is_empty())
        .ok_or_else(|| Error::Event("record without s3.bucket.name".to_string()))?;
    let raw_key = record
        .s3
        .object
        .key
        .as_deref()
        .filter(|k| !k.is_empty())
        .ok_or_else(|| Error::Event("record without s3.object.key".to_string()))?;
    Ok(SourceObject {
        bucket,
        key: decode_key(raw_key)?,
        version_id: record
            .s3
            .object
            .version_id
            .clone()
            .filter(|v| !v.is_empty()),
        etag: record.s3.object.e_tag.clone().filter(|v| !v.is_empty()),
        size: record.s3.object.size.and_then(|s| u64::try_from(s).ok()),
        upload_timestamp: record.event_time.timestamp(),
    })
}

/// Decode an event key: `+` is a space, then percent-decoding, as UTF-8.
pub fn decode_key(raw: &str) -> Result<String> {
    let plus_decoded = raw.replace('+', " ");
    percent_encoding::percent_decode_str(&plus_decoded)
        .decode_utf8()
        .map(|k| k.into_owned())
        .map_err(|e| Error::Event(format!("key {raw:?} is not UTF-8 after decoding: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_are_form_decoded() {
        assert_eq!(
            decode_key("holiday+photo.jpg").unwrap(),
            "holiday photo.jpg"
        );
        assert_eq!(decode_key("a%2Bb.jpg").unwrap(), "a+b.jpg");
        assert_eq!(
            decode_key("caf%C3%A9/%E2%9C%93+ok.png").unwrap(),
            "café/✓ ok.png"
        );
        assert!(decode_key("bad%FF.png").is_err());
    }

    fn record(name: &str, key: &str) -> Value {
        json!({
            "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
            "eventTime": "2024-05-01T12:00:00.000Z", "eventName": name,
            "userIdentity": {"principalId": "AWS:X"},
            "requestParameters": {"sourceIPAddress": "1.2.3.4"},
            "responseElements": {"x-amz-request-id": "r", "x-amz-id-2": "i"},
            "s3": {
                "s3SchemaVersion": "1.0", "configurationId": "c",
                "bucket": {"name": "up", "ownerIdentity": {"principalId": "A"}, "arn": "arn:aws:s3:::up"},
                "object": {"key": key, "size": 1234, "eTag": "abc", "versionId": "v1", "sequencer": "00"}
            }
        })
    }

    #[test]
    fn every_created_record_is_returned() {
        let payload = json!({"Records": [
            record("ObjectCreated:Put", "a+b.jpg"),
            record("ObjectRemoved:Delete", "gone.jpg"),
            record("ObjectCreated:CompleteMultipartUpload", "dir/%C3%A9.png"),
        ]});
        let Payload::Records(records) = parse(payload).unwrap() else {
            panic!("expected records")
        };
        let objects: Vec<SourceObject> = records.into_iter().map(Result::unwrap).collect();
        assert_eq!(objects.len(), 2);
        assert_eq!(objects[0].key, "a b.jpg");
        assert_eq!(objects[0].bucket, "up");
        assert_eq!(objects[0].size, Some(1234));
        assert_eq!(objects[0].version_marker(), Some("v1"));
        assert_eq!(objects[0].upload_timestamp, 1_714_564_800);
        assert_eq!(objects[1].key, "dir/é.png");
    }

    #[test]
    fn a_failed_event_record_is_its_original_event() {
        // What Lambda's on-failure destination puts in the queue (and redrive sends back).
        let original = json!({"Records": [record("ObjectCreated:Put", "a.jpg")]});
        let destination = json!({
            "version": "1.0",
            "timestamp": "2026-12-01T10:00:00.000Z",
            "requestContext": {
                "requestId": "r-1",
                "functionArn": "arn:aws:lambda:eu-west-1:1:function:f:$LATEST",
                "condition": "RetriesExhausted",
                "approximateInvokeCount": 3
            },
            "requestPayload": original,
            "responseContext": {"statusCode": 200, "functionError": "Unhandled"},
            "responsePayload": {"errorMessage": "boom"}
        });
        let Payload::Records(records) = parse(destination).unwrap() else {
            panic!("records expected")
        };
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].as_ref().unwrap().key, "a.jpg");
    }

    #[test]
    fn test_event_and_garbage() {
        assert!(matches!(
            parse(json!({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "up"})),
            Ok(Payload::TestEvent)
        ));
        assert!(matches!(parse(json!({"hello": 1})), Err(Error::Event(_))));
    }
}

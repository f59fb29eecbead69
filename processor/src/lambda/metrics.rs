//! CloudWatch Embedded Metric Format lines (namespace `ImageOptimization`,
//! dimension `Environment`): CloudWatch Logs turns them into metrics, so no
//! metrics API call is made per image.

use imagestack_contract::Format;
use imagestack_contract::metrics as m;
use serde_json::{Value, json};

use crate::error::FailureReason;

fn document(
    timestamp_ms: u64,
    dimensions: Value,
    metrics: Value,
    fields: serde_json::Map<String, Value>,
) -> String {
    let mut doc = serde_json::Map::new();
    doc.insert(
        "_aws".to_string(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": m::NAMESPACE,
                "Dimensions": dimensions,
                "Metrics": metrics,
            }]
        }),
    );
    doc.extend(fields);
    Value::Object(doc).to_string()
}

/// Lines for one successfully processed image: time, count and bytes in,
/// then bytes out per format.
pub fn success(
    environment: &str,
    timestamp_ms: u64,
    processing_ms: u64,
    bytes_in: u64,
    bytes_out: &[(Format, u64)],
) -> Vec<String> {
    let mut lines = Vec::with_capacity(1 + bytes_out.len());
    let mut fields = serde_json::Map::new();
    fields.insert(m::DIMENSION_ENVIRONMENT.into(), json!(environment));
    fields.insert(m::PROCESSING_TIME.into(), json!(processing_ms));
    fields.insert(m::PROCESSED_IMAGES.into(), json!(1));
    fields.insert(m::BYTES_IN.into(), json!(bytes_in));
    lines.push(document(
        timestamp_ms,
        json!([[m::DIMENSION_ENVIRONMENT]]),
        json!([
            {"Name": m::PROCESSING_TIME, "Unit": "Milliseconds"},
            {"Name": m::PROCESSED_IMAGES, "Unit": "Count"},
            {"Name": m::BYTES_IN, "Unit": "Bytes"},
        ]),
        fields,
    ));
    for (format, bytes) in bytes_out {
        let mut fields = serde_json::Map::new();
        fields.insert(m::DIMENSION_ENVIRONMENT.into(), json!(environment));
        fields.insert(m::DIMENSION_FORMAT.into(), json!(format.as_str()));
        fields.insert(m::BYTES_OUT.into(), json!(bytes));
        lines.push(document(
            timestamp_ms,
            json!([[m::DIMENSION_ENVIRONMENT, m::DIMENSION_FORMAT]]),
            json!([{"Name": m::BYTES_OUT, "Unit": "Bytes"}]),
            fields,
        ));
    }
    lines
}

/// The line for one image that failed permanently: `ProcessingErrors`, both
/// in total and by reason.
pub fn failure(environment: &str, timestamp_ms: u64, reason: FailureReason) -> String {
    let mut fields = serde_json::Map::new();
    fields.insert(m::DIMENSION_ENVIRONMENT.into(), json!(environment));
    fields.insert(m::DIMENSION_REASON.into(), json!(reason.as_str()));
    fields.insert(m::PROCESSING_ERRORS.into(), json!(1));
    document(
        timestamp_ms,
        json!([
            [m::DIMENSION_ENVIRONMENT],
            [m::DIMENSION_ENVIRONMENT, m::DIMENSION_REASON]
        ]),
        json!([{"Name": m::PROCESSING_ERRORS, "Unit": "Count"}]),
        fields,
    )
}

/// Write lines to stdout, each whole (CloudWatch reads one JSON document per line).
pub fn emit(lines: &[String]) {
    use std::io::Write;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for line in lines {
        // A lost metric line must not fail the image.
        let _ = writeln!(out, "{line}");
    }
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Value {
        serde_json::from_str(line).unwrap()
    }

    #[test]
    fn success_lines_follow_emf() {
        let lines = success(
            "prod",
            1000,
            250,
            5000,
            &[(Format::Webp, 100), (Format::Png, 300)],
        );
        assert_eq!(lines.len(), 3);
        let main = parse(&lines[0]);
        let cw = &main["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(cw["Namespace"], "ImageOptimization");
        assert_eq!(cw["Dimensions"], json!([["Environment"]]));
        // Every declared metric and dimension has a value in the document.
        for metric in cw["Metrics"].as_array().unwrap() {
            let name = metric["Name"].as_str().unwrap();
            assert!(main[name].is_number(), "{name} missing");
        }
        assert_eq!(main["Environment"], "prod");
        assert_eq!(main["ProcessingTime"], 250);
        assert_eq!(main["BytesIn"], 5000);
        let png = parse(&lines[2]);
        assert_eq!(png["Format"], "png");
        assert_eq!(png["BytesOut"], 300);
        assert_eq!(png["_aws"]["Timestamp"], 1000);
        assert!(!lines.iter().any(|l| l.contains('\n')));
    }

    #[test]
    fn failure_line_carries_reason() {
        let doc = parse(&failure("dev", 5, FailureReason::CorruptImage));
        assert_eq!(doc["Reason"], "CorruptImage");
        assert_eq!(doc["ProcessingErrors"], 1);
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Environment"], ["Environment", "Reason"]])
        );
    }
}

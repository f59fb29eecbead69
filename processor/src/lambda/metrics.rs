//! CloudWatch Embedded Metric Format lines (namespace `ImageOptimization`,
//! dimensions `Stack` and `Environment`): CloudWatch Logs turns them into
//! metrics, so no metrics API call is made per image. Without a stack
//! identity (`IMAGESTACK_STACK` unset) the dimension is `Environment` alone.

use imagestack_contract::Format;
use imagestack_contract::metrics as m;
use serde_json::{Value, json};

use crate::error::FailureReason;

/// The dimensions that scope every metric to one stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scope<'a> {
    pub environment: &'a str,
    pub stack: Option<&'a str>,
}

impl Scope<'_> {
    /// The scope's dimension names followed by `extra`.
    fn dimensions(&self, extra: &[&str]) -> Value {
        let mut names: Vec<&str> = Vec::with_capacity(2 + extra.len());
        if self.stack.is_some() {
            names.push(m::DIMENSION_STACK);
        }
        names.push(m::DIMENSION_ENVIRONMENT);
        names.extend_from_slice(extra);
        json!(names)
    }

    /// Fields with the scope's dimension values.
    fn fields(&self) -> serde_json::Map<String, Value> {
        let mut fields = serde_json::Map::new();
        if let Some(stack) = self.stack {
            fields.insert(m::DIMENSION_STACK.into(), json!(stack));
        }
        fields.insert(m::DIMENSION_ENVIRONMENT.into(), json!(self.environment));
        fields
    }
}

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
    scope: &Scope<'_>,
    timestamp_ms: u64,
    processing_ms: u64,
    bytes_in: u64,
    bytes_out: &[(Format, u64)],
) -> Vec<String> {
    let mut lines = Vec::with_capacity(1 + bytes_out.len());
    let mut fields = scope.fields();
    fields.insert(m::PROCESSING_TIME.into(), json!(processing_ms));
    fields.insert(m::PROCESSED_IMAGES.into(), json!(1));
    fields.insert(m::BYTES_IN.into(), json!(bytes_in));
    lines.push(document(
        timestamp_ms,
        json!([scope.dimensions(&[])]),
        json!([
            {"Name": m::PROCESSING_TIME, "Unit": "Milliseconds"},
            {"Name": m::PROCESSED_IMAGES, "Unit": "Count"},
            {"Name": m::BYTES_IN, "Unit": "Bytes"},
        ]),
        fields,
    ));
    for (format, bytes) in bytes_out {
        let mut fields = scope.fields();
        fields.insert(m::DIMENSION_FORMAT.into(), json!(format.as_str()));
        fields.insert(m::BYTES_OUT.into(), json!(bytes));
        lines.push(document(
            timestamp_ms,
            json!([scope.dimensions(&[m::DIMENSION_FORMAT])]),
            json!([{"Name": m::BYTES_OUT, "Unit": "Bytes"}]),
            fields,
        ));
    }
    lines
}

/// The line for one image that failed permanently: `ProcessingErrors`, both
/// in total and by reason.
pub fn failure(scope: &Scope<'_>, timestamp_ms: u64, reason: FailureReason) -> String {
    let mut fields = scope.fields();
    fields.insert(m::DIMENSION_REASON.into(), json!(reason.as_str()));
    fields.insert(m::PROCESSING_ERRORS.into(), json!(1));
    document(
        timestamp_ms,
        json!([
            scope.dimensions(&[]),
            scope.dimensions(&[m::DIMENSION_REASON])
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

    const PROD: Scope<'static> = Scope {
        environment: "prod",
        stack: None,
    };

    #[test]
    fn success_lines_follow_emf() {
        let lines = success(
            &PROD,
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
        let dev = Scope {
            environment: "dev",
            stack: None,
        };
        let doc = parse(&failure(&dev, 5, FailureReason::CorruptImage));
        assert_eq!(doc["Reason"], "CorruptImage");
        assert_eq!(doc["ProcessingErrors"], 1);
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Environment"], ["Environment", "Reason"]])
        );
    }

    #[test]
    fn the_stack_dimension_scopes_every_metric() {
        let scope = Scope {
            environment: "dev",
            stack: Some("team-a/images"),
        };
        let lines = success(&scope, 1, 2, 3, &[(Format::Jpeg, 4)]);
        let main = parse(&lines[0]);
        assert_eq!(
            main["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Stack", "Environment"]])
        );
        assert_eq!(main["Stack"], "team-a/images");
        assert_eq!(main["Environment"], "dev");
        let jpeg = parse(&lines[1]);
        assert_eq!(
            jpeg["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Stack", "Environment", "Format"]])
        );
        assert_eq!(jpeg["Stack"], "team-a/images");
        let doc = parse(&failure(&scope, 5, FailureReason::CorruptImage));
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Stack", "Environment"], ["Stack", "Environment", "Reason"]])
        );
        assert_eq!(doc["Stack"], "team-a/images");
    }
}

//! PLACEHOLDER until the edge-contract branch is merged: the CloudFront
//! Function's code generated from the spec.

use imagestack_contract::Format;

/// The function's code for these widths and formats.
pub fn viewer_request_code(widths: &[u32], formats: &[Format]) -> String {
    let widths: Vec<String> = widths.iter().map(ToString::to_string).collect();
    let formats: Vec<&str> = formats.iter().map(|f| f.as_str()).collect();
    format!(
        "import cf from 'cloudfront';\nconst CONFIG = {{\"widths\":[{}],\"formats\":[\"{}\"]}};\nfunction handler(event) {{ return event.request; }}\n",
        widths.join(","),
        formats.join("\",\"")
    )
}

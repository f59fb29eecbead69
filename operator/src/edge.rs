//! The stack's CloudFront Function (viewer request on `/i/*`): its code,
//! rendered from `edge/viewer-request.js` with the spec's widths and formats.
//!
//! The template is plain JavaScript for `cloudfront-js-2.0` with one
//! generated line, `const CONFIG = {...};`; everything else is the template
//! verbatim. The request contract it implements (URL shape, width and format
//! choice, what is refused) is documented in
//! [`imagestack_contract::edge`] and README "Edge URLs";
//! `tests/edge/` runs the rendered code under Node in a harness that
//! mimics (and is stricter than) the CloudFront Functions runtime.
//!
//! `operator edge-function --widths 320,640 --formats webp,jpeg` prints the
//! code.

use imagestack_contract::{Format, edge, widths};

use crate::components::distribution::origin_id;

/// The runtime the function is created with.
pub const FUNCTION_RUNTIME: &str = "cloudfront-js-2.0";

/// CloudFront's limit on a function's code size, in bytes.
pub const MAX_CODE_BYTES: usize = 10_240;

/// The template; its `const CONFIG = ` line is replaced.
const TEMPLATE: &str = include_str!("edge/viewer-request.js");

/// Start of the one generated line.
const CONFIG_LINE: &str = "const CONFIG = ";

/// The function's code for a stack producing `formats` with width variants
/// at `widths`. Deterministic, and canonical: the widths are filtered to
/// [`widths::MIN`]..=[`widths::MAX`] (as the processor does), sorted and
/// deduplicated, the formats deduplicated in [`Format::ALL`] order (their
/// order in the spec changes nothing the function does), so equal
/// configurations render byte-identical code (the operator compares the
/// deployed code by content). No formats means the default formats.
pub fn viewer_request_code(widths: &[u32], formats: &[Format]) -> String {
    let mut ws: Vec<u32> = widths
        .iter()
        .copied()
        .filter(|w| (widths::MIN..=widths::MAX).contains(w))
        .collect();
    ws.sort_unstable();
    ws.dedup();
    let mut fs: Vec<Format> = Format::ALL
        .into_iter()
        .filter(|f| formats.contains(f))
        .collect();
    if fs.is_empty() {
        fs = Format::DEFAULT.to_vec();
    }
    let widths_json = ws.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
    // Names, extensions and origin ids are fixed ASCII identifiers: no escaping needed.
    let formats_json = fs
        .iter()
        .map(|f| {
            format!(
                r#"{{"name":"{}","ext":"{}","origin":"{}"}}"#,
                f.as_str(),
                f.extension(),
                origin_id(*f)
            )
        })
        .collect::<Vec<_>>()
        .join(",");
    let config = format!(
        r#"{CONFIG_LINE}{{"widths":[{widths_json}],"formats":[{formats_json}],"maxWidth":{},"maxStemBytes":{},"maxUriBytes":{}}};"#,
        widths::MAX,
        edge::MAX_STEM_BYTES,
        edge::MAX_URI_BYTES,
    );
    TEMPLATE
        .lines()
        .map(|line| {
            if line.starts_with(CONFIG_LINE) {
                config.as_str()
            } else {
                line
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_line(code: &str) -> &str {
        let lines: Vec<&str> = code
            .lines()
            .filter(|l| l.starts_with(CONFIG_LINE))
            .collect();
        assert_eq!(lines.len(), 1, "exactly one CONFIG line");
        lines[0]
    }

    #[test]
    fn the_template_has_one_config_line_and_the_cloudfront_import_first() {
        assert_eq!(
            TEMPLATE.lines().next(),
            Some("import cf from 'cloudfront';")
        );
        config_line(TEMPLATE);
        // Rendering the template's own defaults changes nothing.
        assert_eq!(
            viewer_request_code(&widths::DEFAULT, &Format::DEFAULT),
            TEMPLATE
        );
    }

    #[test]
    fn the_config_line_carries_the_spec() {
        let code = viewer_request_code(&[1280, 320, 320, 8, 9000], &[Format::Png, Format::Avif]);
        assert_eq!(
            config_line(&code),
            r#"const CONFIG = {"widths":[320,1280],"formats":[{"name":"png","ext":"png","origin":"s3-png"},{"name":"avif","ext":"avif","origin":"s3-avif"}],"maxWidth":8192,"maxStemBytes":969,"maxUriBytes":3072};"#
        );
        // Everything but the CONFIG line is the template.
        let rest = |c: &str| {
            c.lines()
                .filter(|l| !l.starts_with(CONFIG_LINE))
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert_eq!(rest(&code), rest(TEMPLATE));
    }

    #[test]
    fn equal_configurations_render_identical_code() {
        assert_eq!(
            viewer_request_code(&[640, 320], &[Format::Jpeg, Format::Webp]),
            viewer_request_code(
                &[320, 640, 640],
                &[Format::Webp, Format::Jpeg, Format::Webp]
            )
        );
        assert_ne!(
            viewer_request_code(&[320], &[Format::Webp]),
            viewer_request_code(&[640], &[Format::Webp])
        );
        assert_eq!(
            viewer_request_code(&[320], &[]),
            viewer_request_code(&[320], &Format::DEFAULT)
        );
    }

    #[test]
    fn the_largest_spec_fits_cloudfronts_code_limit() {
        let widest: Vec<u32> = (0..widths::MAX_COUNT as u32)
            .map(|i| widths::MAX - i)
            .collect();
        let code = viewer_request_code(&widest, &Format::ALL);
        assert!(config_line(&code).contains("8177,"), "16 four-digit widths");
        assert!(
            code.len() <= MAX_CODE_BYTES,
            "{} bytes > {MAX_CODE_BYTES}",
            code.len()
        );
        assert!(code.is_ascii());
    }
}

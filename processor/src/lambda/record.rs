//! The metadata item: the reference's fields (same names, so dashboards and
//! queries keep working) plus bucket, version, detected format, dimensions,
//! per-format CDN path, every width variant, the edge `url` and `srcset`,
//! processor version and — on failure — a reason.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use imagestack_contract::table::attr;
use imagestack_contract::{Format, cdn_path, edge};

use super::event::SourceObject;
use crate::PROCESSOR_VERSION;
use crate::error::FailureReason;
use crate::pipeline::Optimized;

pub type Item = HashMap<String, AttributeValue>;

/// A rendition as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub format: Format,
    /// The full size (else a width variant).
    pub full_size: bool,
    pub width: u32,
    pub height: u32,
    pub bucket: String,
    pub key: String,
    pub size: u64,
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn common(source: &SourceObject, image_id: &str, status: &str) -> Item {
    let mut item = Item::new();
    item.insert(attr::IMAGE_ID.into(), s(image_id));
    item.insert(attr::ORIGINAL_FILENAME.into(), s(&source.key));
    item.insert(attr::UPLOAD_TIMESTAMP.into(), n(source.upload_timestamp));
    item.insert(attr::CONVERSION_STATUS.into(), s(status));
    item.insert(attr::ORIGINAL_BUCKET.into(), s(&source.bucket));
    if let Some(v) = &source.version_id {
        item.insert(attr::VERSION_ID.into(), s(v));
    }
    if let Some(e) = &source.etag {
        item.insert(attr::ETAG.into(), s(e));
    }
    item.insert(attr::PROCESSOR_VERSION.into(), s(PROCESSOR_VERSION));
    item
}

/// Seconds with millisecond precision, as the reference's `processing_time`.
fn seconds(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64())
}

/// The edge `url` and `srcset` of an image whose full size is
/// `source_width` wide and whose variants were made for `widths`:
/// `url_prefix` (`""`: relative URLs) + [`edge::edge_path`]. `None` when the
/// edge function would refuse the name ([`edge::servable`]).
pub fn edge_urls(
    url_prefix: &str,
    stem: &str,
    image_id: &str,
    source_width: u32,
    widths: &[u32],
) -> Option<(String, String)> {
    if !edge::servable(stem, image_id) {
        return None;
    }
    let path = edge::edge_path(stem, image_id, source_width);
    Some((
        format!("{url_prefix}{path}"),
        edge::srcset(url_prefix, &path, source_width, widths),
    ))
}

/// The item for a completed image (`edge`: its [`edge_urls`]).
pub fn completed(
    source: &SourceObject,
    image_id: &str,
    original_size: u64,
    optimized: &Optimized,
    stored: &[Stored],
    processing_time: Duration,
    edge: Option<(String, String)>,
) -> Item {
    let mut item = common(source, image_id, attr::STATUS_COMPLETED);
    if let Some((url, srcset)) = edge {
        item.insert(attr::URL.into(), s(url));
        item.insert(attr::SRCSET.into(), s(srcset));
    }
    item.insert(attr::ORIGINAL_SIZE.into(), n(original_size));
    // The reference's map: the full-size rendition per format.
    let formats = stored
        .iter()
        .filter(|r| r.full_size)
        .map(|r| {
            let mut m = HashMap::new();
            m.insert(attr::BUCKET.to_string(), s(&r.bucket));
            m.insert(attr::KEY.to_string(), s(&r.key));
            m.insert(attr::SIZE.to_string(), n(r.size));
            m.insert(attr::CDN_PATH.to_string(), s(cdn_path(&r.key)));
            (r.format.as_str().to_string(), AttributeValue::M(m))
        })
        .collect();
    item.insert(attr::FORMATS.into(), AttributeValue::M(formats));
    // Every rendition, full size included, in the pipeline's order (by
    // format, then ascending width; the full size is the widest).
    let variants = stored
        .iter()
        .map(|r| {
            let mut m = HashMap::new();
            m.insert(attr::FORMAT.to_string(), s(r.format.as_str()));
            m.insert(attr::WIDTH.to_string(), n(r.width));
            m.insert(attr::HEIGHT.to_string(), n(r.height));
            m.insert(attr::BUCKET.to_string(), s(&r.bucket));
            m.insert(attr::KEY.to_string(), s(&r.key));
            m.insert(attr::SIZE.to_string(), n(r.size));
            m.insert(attr::CDN_PATH.to_string(), s(cdn_path(&r.key)));
            AttributeValue::M(m)
        })
        .collect();
    item.insert(attr::VARIANTS.into(), AttributeValue::L(variants));
    item.insert(
        attr::PROCESSING_TIME.into(),
        AttributeValue::N(seconds(processing_time)),
    );
    item.insert(
        attr::DETECTED_FORMAT.into(),
        s(optimized.source_format.as_str()),
    );
    item.insert(attr::WIDTH.into(), n(optimized.width));
    item.insert(attr::HEIGHT.into(), n(optimized.height));
    item.insert(attr::ICC_PROFILE.into(), s(optimized.icc.as_str()));
    item
}

/// The item for an image that failed permanently.
pub fn failed(source: &SourceObject, image_id: &str, reason: FailureReason, message: &str) -> Item {
    let mut item = common(source, image_id, attr::STATUS_FAILED);
    item.insert(attr::ERROR_REASON.into(), s(reason.as_str()));
    item.insert(attr::ERROR_MESSAGE.into(), s(message));
    if let Some(size) = source.size {
        item.insert(attr::ORIGINAL_SIZE.into(), n(size));
    }
    item
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source() -> SourceObject {
        SourceObject {
            bucket: "up".into(),
            key: "a b/c.jpg".into(),
            version_id: None,
            etag: Some("e".into()),
            size: Some(10),
            upload_timestamp: 1_700_000_000,
        }
    }

    #[test]
    fn failed_item_has_reason_and_reference_fields() {
        let item = failed(&source(), "id1", FailureReason::CorruptImage, "bad");
        assert_eq!(item[attr::IMAGE_ID], s("id1"));
        assert_eq!(item[attr::ORIGINAL_FILENAME], s("a b/c.jpg"));
        assert_eq!(item[attr::UPLOAD_TIMESTAMP], n(1_700_000_000));
        assert_eq!(item[attr::CONVERSION_STATUS], s("failed"));
        assert_eq!(item[attr::ERROR_REASON], s("CorruptImage"));
        assert_eq!(item[attr::ERROR_MESSAGE], s("bad"));
        assert_eq!(item[attr::ETAG], s("e"));
        assert!(!item.contains_key(attr::VERSION_ID));
        assert!(!item.contains_key(attr::FORMATS));
    }

    #[test]
    fn completed_item_lists_every_variant() {
        use crate::pipeline::{IccHandling, Optimized};
        use std::time::Duration;
        let optimized = Optimized {
            source_format: crate::decode::SourceFormat::Jpeg,
            width: 1000,
            height: 500,
            has_alpha: false,
            reoriented: false,
            icc: IccHandling::None,
            renditions: vec![],
            decode_time: Duration::ZERO,
            decode_cpu: Duration::ZERO,
            resize_time: Duration::ZERO,
            resize_cpu: Duration::ZERO,
            webp_method: 4,
        };
        let stored = |format: Format, w: u32, full: bool| Stored {
            format,
            full_size: full,
            width: w,
            height: w / 2,
            bucket: format!("{format}-bucket"),
            key: if full {
                format!("{format}/c-id1.x")
            } else {
                format!("{format}/c-id1-w{w}.x")
            },
            size: u64::from(w) * 3,
        };
        let all = vec![
            stored(Format::Webp, 320, false),
            stored(Format::Webp, 1000, true),
            stored(Format::Png, 320, false),
            stored(Format::Png, 1000, true),
        ];
        let item = completed(
            &source(),
            "id1",
            77,
            &optimized,
            &all,
            Duration::from_millis(5),
            Some(("https://cdn/i/1000/c-id1".into(), "srcset-value".into())),
        );
        assert_eq!(item[attr::URL], s("https://cdn/i/1000/c-id1"));
        assert_eq!(item[attr::SRCSET], s("srcset-value"));
        // The reference's map keeps the full size only.
        let AttributeValue::M(formats) = &item[attr::FORMATS] else {
            panic!()
        };
        assert_eq!(formats.len(), 2);
        let AttributeValue::M(webp) = &formats["webp"] else {
            panic!()
        };
        assert_eq!(webp[attr::KEY], s("webp/c-id1.x"));
        assert_eq!(webp[attr::CDN_PATH], s("/webp/c-id1.x"));
        assert_eq!(webp[attr::SIZE], n(3000));
        // The list has every rendition with its dimensions.
        let AttributeValue::L(variants) = &item[attr::VARIANTS] else {
            panic!()
        };
        assert_eq!(variants.len(), 4);
        let AttributeValue::M(first) = &variants[0] else {
            panic!()
        };
        assert_eq!(first[attr::FORMAT], s("webp"));
        assert_eq!(first[attr::WIDTH], n(320));
        assert_eq!(first[attr::HEIGHT], n(160));
        assert_eq!(first[attr::BUCKET], s("webp-bucket"));
        assert_eq!(first[attr::KEY], s("webp/c-id1-w320.x"));
        assert_eq!(first[attr::CDN_PATH], s("/webp/c-id1-w320.x"));
        assert_eq!(first[attr::SIZE], n(960));
        assert_eq!(item[attr::WIDTH], n(1000));
        assert_eq!(item[attr::ORIGINAL_SIZE], n(77));
    }

    #[test]
    fn edge_urls_are_the_contracts() {
        let id = "0123456789abcdef0123456789abcdef";
        let (url, srcset) = edge_urls(
            "https://img.example.com",
            "a b",
            id,
            1000,
            &[320, 640, 1280],
        )
        .unwrap();
        assert_eq!(url, format!("https://img.example.com/i/1000/a%20b-{id}"));
        assert_eq!(
            srcset,
            format!("{url}?w=320 320w, {url}?w=640 640w, {url} 1000w")
        );
        // No prefix: relative.
        let (url, srcset) = edge_urls("", "a", id, 300, &[320]).unwrap();
        assert_eq!(url, format!("/i/300/a-{id}"));
        assert_eq!(srcset, format!("/i/300/a-{id} 300w"));
        // A name the function refuses gets none.
        assert_eq!(edge_urls("", "a\\b", id, 300, &[320]), None);
        assert_eq!(edge_urls("", "a\u{1}b", id, 300, &[320]), None);
    }

    #[test]
    fn failed_items_have_no_edge_urls() {
        let item = failed(&source(), "id1", FailureReason::CorruptImage, "bad");
        assert!(!item.contains_key(attr::URL));
        assert!(!item.contains_key(attr::SRCSET));
    }

    #[test]
    fn processing_time_in_seconds() {
        assert_eq!(seconds(Duration::from_millis(1234)), "1.234");
    }
}

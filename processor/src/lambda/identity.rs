//! Deterministic image ids and rendition names.

use sha2::{Digest, Sha256};

/// The image id: the first 128 bits of SHA-256 over bucket, key and version
/// (the version id when the bucket is versioned, else the ETag), hex encoded.
/// A retried or duplicated event for the same object version gets the same
/// id, so it overwrites the same renditions and the same item.
pub fn image_id(bucket: &str, key: &str, version: Option<&str>) -> String {
    let mut h = Sha256::new();
    for part in [bucket, key, version.unwrap_or("")] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    hex::encode(&h.finalize()[..16])
}

/// The file name without directories or extension (`"image"` if empty).
pub fn stem(key: &str) -> &str {
    let name = key.rsplit('/').next().unwrap_or(key);
    let stem = match name.rfind('.') {
        Some(0) | None => name,
        Some(i) => &name[..i],
    };
    if stem.is_empty() { "image" } else { stem }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_is_deterministic_and_distinguishes_versions() {
        let a = image_id("b", "k.jpg", Some("v1"));
        assert_eq!(a, image_id("b", "k.jpg", Some("v1")));
        assert_eq!(a.len(), 32);
        assert_ne!(a, image_id("b", "k.jpg", Some("v2")));
        assert_ne!(a, image_id("b", "k.jpg", None));
        assert_ne!(image_id("ab", "c", None), image_id("a", "bc", None));
    }

    #[test]
    fn stems() {
        assert_eq!(stem("uploads/2024/holiday photo.JPG"), "holiday photo");
        assert_eq!(stem("a.tar.gz"), "a.tar");
        assert_eq!(stem("noext"), "noext");
        assert_eq!(stem(".hidden"), ".hidden");
        assert_eq!(stem("dir/"), "image");
        assert_eq!(stem("Ünïcødé ✓.png"), "Ünïcødé ✓");
    }
}

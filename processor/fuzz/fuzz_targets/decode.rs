//! Arbitrary bytes through format detection, header limits and decoding;
//! inputs that decode to a small image also go through the resampler (every
//! width narrower than the image, from 16 px up) and all four encoders.

#![no_main]

use std::time::Duration;

use imagestack_processor::deadline::Deadline;
use imagestack_processor::limits::Limits;
use imagestack_processor::pipeline::{self, Settings};
use imagestack_processor::resize;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_bytes: 4 << 20,
        max_pixels: 4_000_000,
        max_dimension: 4096,
    };
    let Ok(decoded) = imagestack_processor::decode::decode(data, &limits) else {
        return;
    };
    assert!(u64::from(decoded.width()) * u64::from(decoded.height()) <= limits.max_pixels);
    if u64::from(decoded.width()) * u64::from(decoded.height()) <= 64 * 64 {
        let settings = Settings {
            limits,
            parallelism: 1,
            webp_method: 2,
            // Small images: widths that fit under 64 px, plus the smallest.
            widths: vec![16, 17, 31, 48, 63],
            formats: imagestack_contract::Format::ALL.to_vec(),
            ..Settings::default()
        };
        let out =
            pipeline::optimize_until(data, &settings, &Deadline::after(Duration::from_secs(20)));
        if let Ok(out) = out {
            let widths = resize::variant_widths(out.width, &settings.widths);
            assert_eq!(
                out.renditions.len(),
                imagestack_contract::Format::ALL.len() * (1 + widths.len())
            );
            for r in &out.renditions {
                match r.variant {
                    None => assert_eq!((r.width, r.height), (out.width, out.height)),
                    Some(w) => {
                        assert!(w < out.width);
                        assert_eq!(r.width, w);
                        assert_eq!(r.height, resize::variant_height(out.width, out.height, w));
                    }
                }
                // Every rendition decodes back at its recorded size (AVIF: the
                // container's size; the pipeline tests decode it with libavif).
                if r.format == imagestack_contract::Format::Avif {
                    assert_eq!(&r.bytes[4..12], b"ftypavif");
                    continue;
                }
                let back = image::load_from_memory(&r.bytes).expect("rendition decodes");
                assert_eq!((back.width(), back.height()), (r.width, r.height));
            }
        }
    }
});

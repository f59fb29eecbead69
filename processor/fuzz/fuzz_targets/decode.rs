//! Arbitrary bytes through format detection, header limits and decoding;
//! inputs that decode to a small image also go through all three encoders.

#![no_main]

use std::time::Duration;

use imagestack_processor::deadline::Deadline;
use imagestack_processor::limits::Limits;
use imagestack_processor::pipeline::{self, Settings};
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
            ..Settings::default()
        };
        let out =
            pipeline::optimize_until(data, &settings, &Deadline::after(Duration::from_secs(20)));
        if let Ok(out) = out {
            assert_eq!(out.renditions.len(), 3);
        }
    }
});

//! Refuse to build for x86_64 without `nasm`: mozjpeg-sys would silently
//! build without its SIMD code and JPEG encoding would be several times slower.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=IMAGESTACK_ALLOW_NO_NASM");
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    if arch != "x86_64" || std::env::var_os("IMAGESTACK_ALLOW_NO_NASM").is_some() {
        return;
    }
    let nasm = std::env::var("NASM").unwrap_or_else(|_| "nasm".to_string());
    if Command::new(&nasm).arg("-v").output().is_err() {
        panic!(
            "`{nasm}` not found: mozjpeg's x86_64 SIMD needs it (apt-get install nasm), \
             or set IMAGESTACK_ALLOW_NO_NASM=1 to build a slow JPEG encoder anyway"
        );
    }
}

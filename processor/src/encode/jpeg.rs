//! JPEG through mozjpeg's libjpeg API, from its `JCP_FASTEST` profile
//! (libjpeg-turbo's encoder): the standard (Annex K) quantisation tables
//! scaled to the quality, 4:2:0, progressive with the standard scan script,
//! optimised Huffman tables, no trellis and no scan search.
//!
//! Measured with SSIMULACRA2 against Pillow's JPEG (processor/README.md,
//! "JPEG encoder"): these settings quantise exactly as Pillow (libjpeg-turbo,
//! quality 85) does, so every image has Pillow's SSIMULACRA2 and SSIM, in
//! ~0.98× its bytes at ~2–3× its CPU time. mozjpeg's scan search (the old
//! default) saved ~2 % more for ~3× the CPU time; its trellis and its own
//! tables save bytes at equal quality only where the source was not itself a
//! standard-table JPEG (re-encoding one with other tables loses up to 15
//! SSIMULACRA2 points), and trellis costs 8–9× Pillow's CPU time. So
//! `quality` means what it means for libjpeg and Pillow.

use std::ffi::{c_int, c_uint, c_ulong};
use std::panic::{AssertUnwindSafe, catch_unwind};

use image::DynamicImage;
use imagestack_contract::Format;
use mozjpeg_sys as ffi;

use super::{flatten, panic_message};
use crate::error::{Error, Result};

/// Payload of an ICC APP2 marker: 65533 bytes less the 14-byte header.
const ICC_CHUNK: usize = 65_533 - 14;
/// Largest ICC profile that fits the 255 APP2 markers JPEG allows.
const MAX_JPEG_ICC: usize = 255 * ICC_CHUNK;
const JPEG_APP2: c_int = 0xE2;

/// How mozjpeg is driven (the benchmark compares these; [`Tuning::DEFAULT`]
/// is what the pipeline uses).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tuning {
    /// Start from mozjpeg's `JCP_FASTEST` profile (libjpeg-turbo's defaults)
    /// rather than `JCP_MAX_COMPRESSION`.
    pub fastest_profile: bool,
    /// Progressive (mozjpeg's standard script, or the searched one with
    /// `optimize_scans`); baseline otherwise.
    pub progressive: bool,
    /// mozjpeg's scan search: each candidate script is encoded and the
    /// smallest kept (the costly part of the old default).
    pub optimize_scans: bool,
    /// Trellis quantisation of AC and DC coefficients.
    pub trellis: bool,
    /// mozjpeg's base quantisation table set: 0 = JPEG Annex K, 3 = mozjpeg's
    /// default (ImageMagick's), and the others mozjpeg knows (0–8).
    pub tables: u8,
    /// 4:2:0 chroma (libjpeg's and Pillow's default); 4:4:4 otherwise.
    pub subsample_chroma: bool,
}

impl Tuning {
    /// The pipeline's setting (see the module documentation).
    pub const DEFAULT: Tuning = Tuning {
        fastest_profile: true,
        progressive: true,
        optimize_scans: false,
        trellis: false,
        tables: 0,
        subsample_chroma: true,
    };
}

/// Encode `image` (alpha is flattened onto `background` first).
pub fn encode(
    image: &DynamicImage,
    icc: Option<&[u8]>,
    quality: u8,
    background: [u8; 3],
) -> Result<Vec<u8>> {
    encode_tuned(image, icc, quality, background, Tuning::DEFAULT)
}

/// [`encode`] with an explicit [`Tuning`] (the benchmark's comparisons).
pub fn encode_tuned(
    image: &DynamicImage,
    icc: Option<&[u8]>,
    quality: u8,
    background: [u8; 3],
    tuning: Tuning,
) -> Result<Vec<u8>> {
    let fail = |message: String| Error::EncodeFailed {
        format: Format::Jpeg,
        message,
    };
    let flat;
    let opaque = if image.color().has_alpha() {
        flat = flatten(image, background);
        &flat
    } else {
        image
    };
    let (space, components, pixels): (ffi::J_COLOR_SPACE, usize, &[u8]) = match opaque {
        DynamicImage::ImageLuma8(g) => (ffi::J_COLOR_SPACE::JCS_GRAYSCALE, 1, g.as_raw()),
        DynamicImage::ImageRgb8(rgb) => (ffi::J_COLOR_SPACE::JCS_RGB, 3, rgb.as_raw()),
        other => return Err(fail(format!("unexpected pixel layout {:?}", other.color()))),
    };
    let (width, height) = (opaque.width(), opaque.height());
    let icc = icc.filter(|p| !p.is_empty() && p.len() <= MAX_JPEG_ICC);
    let job = Job {
        space,
        components,
        pixels,
        width,
        height,
        quality: c_int::from(quality.clamp(1, 100)),
        icc,
        tuning,
    };
    // libjpeg reports errors through `error_exit`, which unwinds (C-unwind).
    match catch_unwind(AssertUnwindSafe(|| job.run())) {
        Ok(bytes) => Ok(bytes),
        Err(payload) => Err(fail(panic_message(payload.as_ref()))),
    }
}

struct Job<'a> {
    space: ffi::J_COLOR_SPACE,
    components: usize,
    pixels: &'a [u8],
    width: u32,
    height: u32,
    quality: c_int,
    icc: Option<&'a [u8]>,
    tuning: Tuning,
}

/// Owns the libjpeg state; destroys it (and the output buffer) on every path.
struct Compressor {
    cinfo: Box<ffi::jpeg_compress_struct>,
    _err: Box<ffi::jpeg_error_mgr>,
    out: Box<*mut u8>,
    out_len: Box<c_ulong>,
}

impl Drop for Compressor {
    fn drop(&mut self) {
        // SAFETY: cinfo was created by jpeg_CreateCompress; the buffer, if any,
        // was malloc'ed by jpeg_mem_dest's manager.
        unsafe {
            ffi::jpeg_destroy_compress(&mut self.cinfo);
            if !self.out.is_null() {
                libc::free((*self.out).cast());
            }
        }
    }
}

unsafe extern "C-unwind" fn error_exit(cinfo: &mut ffi::jpeg_common_struct) {
    // The binding declares format_message's buffer immutable, so report the
    // message code (see libjpeg's jerror.h) rather than have C write into it.
    // SAFETY: err points at the error manager set up in `Job::run`.
    let code = unsafe { cinfo.err.as_ref().map_or(-1, |e| e.msg_code) };
    std::panic::panic_any(format!("libjpeg error {code}"));
}

unsafe extern "C-unwind" fn silent(_cinfo: &mut ffi::jpeg_common_struct) {}

impl Job<'_> {
    fn run(&self) -> Vec<u8> {
        // SAFETY: the structs are zeroed C structs (valid for libjpeg), boxed so
        // their addresses stay fixed while libjpeg holds pointers to them; rows
        // handed to jpeg_write_scanlines are `width * components` bytes each.
        unsafe {
            let mut err: Box<ffi::jpeg_error_mgr> = Box::new(std::mem::zeroed());
            ffi::jpeg_std_error(&mut err);
            err.error_exit = Some(error_exit);
            err.output_message = Some(silent);
            let mut c = Compressor {
                cinfo: Box::new(std::mem::zeroed()),
                _err: err,
                out: Box::new(std::ptr::null_mut()),
                out_len: Box::new(0),
            };
            c.cinfo.common.err = &mut *c._err;
            ffi::jpeg_CreateCompress(
                &mut *c.cinfo,
                ffi::JPEG_LIB_VERSION,
                std::mem::size_of::<ffi::jpeg_compress_struct>(),
            );
            let cinfo = &mut *c.cinfo;
            ffi::jpeg_mem_dest(cinfo, &mut *c.out, &mut *c.out_len);
            cinfo.image_width = self.width;
            cinfo.image_height = self.height;
            cinfo.input_components = self.components as c_int;
            cinfo.in_color_space = self.space;
            let t = self.tuning;
            if t.fastest_profile {
                ffi::jpeg_c_set_int_param(
                    cinfo,
                    ffi::J_INT_PARAM::JINT_COMPRESS_PROFILE,
                    ffi::JCP_FASTEST as c_int,
                );
            }
            ffi::jpeg_set_defaults(cinfo);
            ffi::jpeg_c_set_int_param(
                cinfo,
                ffi::J_INT_PARAM::JINT_BASE_QUANT_TBL_IDX,
                c_int::from(t.tables.min(8)),
            );
            let trellis = ffi::boolean::from(t.trellis);
            ffi::jpeg_c_set_bool_param(
                cinfo,
                ffi::J_BOOLEAN_PARAM::JBOOLEAN_TRELLIS_QUANT,
                trellis,
            );
            ffi::jpeg_c_set_bool_param(
                cinfo,
                ffi::J_BOOLEAN_PARAM::JBOOLEAN_TRELLIS_QUANT_DC,
                trellis,
            );
            ffi::jpeg_c_set_bool_param(
                cinfo,
                ffi::J_BOOLEAN_PARAM::JBOOLEAN_OPTIMIZE_SCANS,
                ffi::boolean::from(t.progressive && t.optimize_scans),
            );
            ffi::jpeg_set_quality(cinfo, self.quality, 0);
            if !t.subsample_chroma && self.components == 3 && !cinfo.comp_info.is_null() {
                // Luma's sampling factors set the ratio; 1×1 everywhere is 4:4:4.
                (*cinfo.comp_info).h_samp_factor = 1;
                (*cinfo.comp_info).v_samp_factor = 1;
            }
            if t.progressive {
                // The script follows the parameters just set (searched or standard).
                ffi::jpeg_simple_progression(cinfo);
            } else {
                cinfo.num_scans = 0;
                cinfo.scan_info = std::ptr::null();
            }
            // Optimised Huffman tables in every variant (two passes, cheap).
            cinfo.optimize_coding = 1;
            ffi::jpeg_start_compress(cinfo, 1);
            if let Some(profile) = self.icc {
                write_icc(cinfo, profile);
            }
            let stride = self.width as usize * self.components;
            let mut rows: Vec<*const u8> = Vec::with_capacity(16);
            for band in self.pixels.chunks(stride * 16) {
                rows.clear();
                rows.extend(band.chunks_exact(stride).map(<[u8]>::as_ptr));
                let mut written = 0;
                while written < rows.len() {
                    let n = ffi::jpeg_write_scanlines(
                        cinfo,
                        rows[written..].as_ptr(),
                        (rows.len() - written) as ffi::JDIMENSION,
                    );
                    if n == 0 {
                        std::panic::panic_any("libjpeg accepted no scanlines".to_string());
                    }
                    written += n as usize;
                }
            }
            ffi::jpeg_finish_compress(cinfo);
            std::slice::from_raw_parts(*c.out, *c.out_len as usize).to_vec()
        }
    }
}

/// ICC profile as APP2 `ICC_PROFILE` markers (must follow jpeg_start_compress).
unsafe fn write_icc(cinfo: &mut ffi::jpeg_compress_struct, profile: &[u8]) {
    let count = profile.len().div_ceil(ICC_CHUNK);
    let mut marker = Vec::with_capacity(ICC_CHUNK + 14);
    for (i, chunk) in profile.chunks(ICC_CHUNK).enumerate() {
        marker.clear();
        marker.extend_from_slice(b"ICC_PROFILE\0");
        // count <= 255 because profile.len() <= MAX_JPEG_ICC.
        marker.extend([(i + 1) as u8, count as u8]);
        marker.extend_from_slice(chunk);
        // SAFETY: marker is a live buffer of the given length.
        unsafe {
            ffi::jpeg_write_marker(cinfo, JPEG_APP2, marker.as_ptr(), marker.len() as c_uint);
        }
    }
}

#!/usr/bin/env python3
"""The Pillow reference, for the processor benchmark.

Runs exactly what the Python Lambda that the processor replaces did for each
image (WebP quality 85 method 6; RGBA/P converted to RGB, then JPEG quality 85
optimize; PNG optimize), writes the renditions to OUT/<format>/<stem>.<ext>
and prints one JSON object per image with CPU seconds per step and output
sizes, then one with the peak RSS. The Rust benchmark (benches/pipeline.rs)
runs it and prints both side by side; run it pinned to one core.

Usage: bench_reference.py IMAGE_DIR OUT_DIR
"""

import io
import json
import os
import resource
import sys
import time

from PIL import Image

EXTENSIONS = {"webp": "webp", "jpeg": "jpg", "png": "png"}


def timed(fn):
    start = time.process_time()
    result = fn()
    return result, time.process_time() - start


def save(img, fmt, **kwargs):
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def jpeg_input(img):
    # The reference converted RGBA and P to RGB (alpha dropped, not flattened).
    if img.mode in ("RGBA", "P", "LA", "PA", "I;16", "I"):
        return img.convert("RGB")
    return img


def reference(path, out_dir):
    data = open(path, "rb").read()
    stem = os.path.splitext(os.path.basename(path))[0]

    def decode():
        img = Image.open(io.BytesIO(data))
        img.load()
        return img

    img, decode_s = timed(decode)
    row = {
        "file": os.path.basename(path),
        "width": img.width,
        "height": img.height,
        "input_bytes": len(data),
        "decode_s": decode_s,
    }
    outputs = {}
    outputs["webp"], row["webp_s"] = timed(lambda: save(img, "WEBP", quality=85, method=6))
    outputs["jpeg"], row["jpeg_s"] = timed(
        lambda: save(jpeg_input(img), "JPEG", quality=85, optimize=True)
    )
    outputs["png"], row["png_s"] = timed(lambda: save(img, "PNG", optimize=True))
    # Not part of the reference's behaviour, only of the SSIM floors the tests
    # use: for images with transparency, the reference settings applied to
    # what our JPEG encodes (alpha flattened onto white), so both are scored
    # against the same picture.
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        white.alpha_composite(rgba)
        outputs["jpeg_white"] = save(white.convert("RGB"), "JPEG", quality=85, optimize=True)
    for fmt, blob in outputs.items():
        if fmt == "jpeg_white":
            os.makedirs(os.path.join(out_dir, fmt), exist_ok=True)
            with open(os.path.join(out_dir, fmt, stem + ".jpg"), "wb") as f:
                f.write(blob)
            continue
        row[fmt + "_bytes"] = len(blob)
        os.makedirs(os.path.join(out_dir, fmt), exist_ok=True)
        with open(os.path.join(out_dir, fmt, stem + "." + EXTENSIONS[fmt]), "wb") as f:
            f.write(blob)
    return row


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    image_dir, out_dir = sys.argv[1], sys.argv[2]
    for name in sorted(os.listdir(image_dir)):
        path = os.path.join(image_dir, name)
        if not os.path.isfile(path):
            continue
        try:
            with Image.open(path) as probe:
                probe.verify()
        except Exception:  # not an image (e.g. MANIFEST.tsv)
            continue
        print(json.dumps(reference(path, out_dir)), flush=True)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"peak_rss_bytes": peak_kib * 1024, "pillow": Image.__version__}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

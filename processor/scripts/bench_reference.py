#!/usr/bin/env python3
"""The Pillow reference, for the processor benchmark.

Runs what the Python Lambda that the processor replaces did for each image
(WebP quality 85 method 6; RGBA/P converted to RGB, then JPEG quality 85
optimize; PNG optimize), plus AVIF through Pillow's built-in AVIF plugin at
its defaults, at full size and at each width (resampled with Pillow's Lanczos
from the image as decoded, the height rounded as the processor rounds it).
Writes the renditions to OUT/<format>/<stem>[-w<width>].<ext>, the resampled
sources to OUT/source/<stem>-w<width>.png (what the benchmark scores the
variants against), and prints one JSON object per image with CPU seconds per
step and output sizes, then one with the peak RSS. The Rust benchmark
(benches/pipeline.rs) runs it and prints both side by side; run it pinned to
one core.

Usage: bench_reference.py IMAGE_DIR OUT_DIR [--formats webp,jpeg,png,avif] [--widths 320,640|none]
       bench_reference.py --decode-avif DIR   (every .avif under DIR to .avif.png, for scoring)
"""

import io
import json
import os
import resource
import sys
import time

from PIL import Image

EXTENSIONS = {"webp": "webp", "jpeg": "jpg", "png": "png", "avif": "avif"}


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


def avif_input(img):
    # Pillow's AVIF plugin takes RGB and RGBA.
    if img.mode in ("RGB", "RGBA"):
        return img
    has_alpha = img.mode in ("LA", "PA", "RGBa") or "transparency" in img.info
    return img.convert("RGBA" if has_alpha else "RGB")


ENCODERS = {
    "webp": lambda img: save(img, "WEBP", quality=85, method=6),
    "jpeg": lambda img: save(jpeg_input(img), "JPEG", quality=85, optimize=True),
    "png": lambda img: save(img, "PNG", optimize=True),
    "avif": lambda img: save(avif_input(img), "AVIF"),
}


def variant_height(width, height, w):
    """The processor's rounding (resize::variant_height): halves up, at least 1."""
    return max(1, (2 * height * w + width) // (2 * width))


def resized(img, w):
    h = variant_height(img.width, img.height, w)
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif img.mode in ("I;16", "I"):
        img = img.convert("L")
    return img.resize((w, h), Image.LANCZOS)


def write(out_dir, sub, name, blob):
    os.makedirs(os.path.join(out_dir, sub), exist_ok=True)
    with open(os.path.join(out_dir, sub, name), "wb") as f:
        f.write(blob)


def reference(path, out_dir, formats, widths):
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
        "resize_s": 0.0,
    }
    images = [("", img)]
    for w in sorted(set(widths)):
        if 16 <= w < img.width:
            small, s = timed(lambda w=w: resized(img, w))
            row["resize_s"] += s
            images.append((f"_w{w}", small))
            write(out_dir, "source", f"{stem}-w{w}.png", save(small, "PNG"))
    for fmt in formats:
        for suffix, im in images:
            blob, s = timed(lambda im=im, fmt=fmt: ENCODERS[fmt](im))
            row[f"{fmt}{suffix}_s"] = s
            row[f"{fmt}{suffix}_bytes"] = len(blob)
            name = stem + suffix.replace("_w", "-w") + "." + EXTENSIONS[fmt]
            write(out_dir, fmt, name, blob)
    # Not part of the reference's behaviour, only of the SSIM floors the tests
    # use: for images with transparency, the reference settings applied to
    # what our JPEG encodes (alpha flattened onto white), so both are scored
    # against the same picture.
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        white.alpha_composite(rgba)
        blob = save(white.convert("RGB"), "JPEG", quality=85, optimize=True)
        write(out_dir, "jpeg_white", stem + ".jpg", blob)
    return row


def decode_avif(root):
    for dirpath, _, names in os.walk(root):
        for name in names:
            if name.endswith(".avif"):
                path = os.path.join(dirpath, name)
                with Image.open(path) as im:
                    im.load()
                    im.save(path + ".png", "PNG", compress_level=1)
    return 0


def main():
    args = sys.argv[1:]
    if len(args) == 2 and args[0] == "--decode-avif":
        return decode_avif(args[1])
    if len(args) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    image_dir, out_dir = args[0], args[1]
    formats, widths = ["webp", "jpeg", "png"], []
    rest = args[2:]
    while rest:
        flag, value, rest = rest[0], rest[1] if len(rest) > 1 else "", rest[2:]
        if flag == "--formats":
            formats = [f for f in value.split(",") if f in ENCODERS]
        elif flag == "--widths":
            widths = [] if value == "none" else [int(w) for w in value.split(",") if w]
        else:
            print(__doc__, file=sys.stderr)
            return 2
    for name in sorted(os.listdir(image_dir)):
        path = os.path.join(image_dir, name)
        if not os.path.isfile(path):
            continue
        try:
            with Image.open(path) as probe:
                probe.verify()
        except Exception:  # not an image (e.g. MANIFEST.tsv)
            continue
        print(json.dumps(reference(path, out_dir, formats, widths)), flush=True)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"peak_rss_bytes": peak_kib * 1024, "pillow": Image.__version__}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

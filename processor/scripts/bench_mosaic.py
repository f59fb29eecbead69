#!/usr/bin/env python3
"""A 24 MP test photo for the whole-upload CPU budget (issue 9: all formats,
all widths, <= 10 s CPU on one core for a 24 MP photo).

The corpus has one 24 MP image, a flat painting that compresses far better
than a photograph. This builds a 6000x4000 image from 16 tiles of 1500x1000
cut at native resolution (no resampling) from the corpus' large images, two
tiles each, and saves it as a quality-92 JPEG (what a camera writes).

Usage: bench_mosaic.py IMAGE_DIR OUT.jpg
"""

import os
import sys

from PIL import Image

SOURCES = [
    "ukui_string_3640x2400.jpg",
    "plasma_Path_2560x1600.jpg",
    "mate_RainDrops_1920x1200.jpg",
    "plasma_SafeLanding_1622x2880_portrait.jpg",
    "gnome_adwaita-l_4096.webp",
    "lomiri_PaintingColors_6000x4000.jpg",
    "sway_Blue_1920x1080.png",
    "plasma_Grey_2560x1600_gray.jpg",
]
TILE = (1500, 1000)


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    image_dir, out = sys.argv[1], sys.argv[2]
    mosaic = Image.new("RGB", (4 * TILE[0], 4 * TILE[1]))
    i = 0
    for name in SOURCES:
        with Image.open(os.path.join(image_dir, name)) as im:
            im = im.convert("RGB")
            # Top-left and bottom-right corners.
            for x, y in ((0, 0), (im.width - TILE[0], im.height - TILE[1])):
                tile = im.crop((x, y, x + TILE[0], y + TILE[1]))
                mosaic.paste(tile, ((i % 4) * TILE[0], (i // 4) * TILE[1]))
                i += 1
    mosaic.save(out, "JPEG", quality=92)
    return 0


if __name__ == "__main__":
    sys.exit(main())

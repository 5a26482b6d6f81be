"""Writes the first N images of a Fashion-MNIST IDX file as 28×28 grayscale PNGs (stdlib only).
Usage: python3 scripts/fmnist_png.py IMAGES.idx3-ubyte.gz N OUT_DIR"""
import gzip
import os
import struct
import sys
import zlib

src, n, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
data = gzip.open(src, "rb").read()
magic, count, rows, cols = struct.unpack(">IIII", data[:16])
if magic != 2051:
    sys.exit(f"{src}: not an IDX image file (magic {magic})")
os.makedirs(out, exist_ok=True)


def chunk(tag, body):
    return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF)


for k in range(min(n, count)):
    px = data[16 + k * rows * cols : 16 + (k + 1) * rows * cols]
    raw = b"".join(b"\x00" + px[y * cols : (y + 1) * cols] for y in range(rows))
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", cols, rows, 8, 0, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    with open(os.path.join(out, f"test{k}.png"), "wb") as f:
        f.write(png)

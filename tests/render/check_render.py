#!/usr/bin/python3
"""Renders SVG plots in headless Chromium and checks that a person would see a
plot: the picture has the SVG's size, is neither blank nor a solid block, and
shows the series' colours (and, where asked, the red of a failing series).

usage: check_render.py CHROMIUM FILE.svg[:red] ...
"""
import os
import re
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image  # Debian python3-pil


def read_png(path):
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int32)


def check(chromium, svg, want_red, tmp):
    text = open(svg).read()
    w = int(float(re.search(r"width='([0-9.]+)'", text).group(1)))
    h = int(float(re.search(r"height='([0-9.]+)'", text).group(1)))
    png = os.path.join(tmp, os.path.basename(svg) + ".png")
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--screenshot=" + png, "--window-size=%d,%d" % (w, h), "file://" + os.path.abspath(svg)],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
    img = read_png(png)
    problems = []
    if img.shape[:2] != (h, w):
        problems.append("rendered %s, expected %dx%d" % (img.shape[:2], h, w))
    ink = (img.min(axis=2) < 200).mean()
    if not 0.005 < ink < 0.5:
        problems.append("%.1f%% of the picture is drawn (blank or a solid block?)" % (100 * ink))
    sat = img.max(axis=2) - img.min(axis=2)
    colours = {tuple(p // 32) for p in img[sat > 80]}
    if len(colours) < 4:
        problems.append("only %d distinct saturated colours: the series are not shown" % len(colours))
    red = ((img[:, :, 0] > 150) & (img[:, :, 1] < 60) & (img[:, :, 2] < 60)).sum()
    if want_red and red < 50:
        problems.append("no red: a failing series should be marked")
    print("%s: %dx%d, %.1f%% ink, %d colours, %d red pixels%s" %
          (svg, w, h, 100 * ink, len(colours), red, "" if not problems else ": " + "; ".join(problems)))
    return not problems


def main():
    chromium, files = sys.argv[1], sys.argv[2:]
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        for f in files:
            path, _, flag = f.partition(":")
            ok &= check(chromium, path, flag == "red", tmp)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

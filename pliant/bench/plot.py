"""The report's plot as a PNG, drawn without a plotting library.

One row per model: for each system, a bar at the geometric mean over the
model's sizes of its latency divided by the baseline's (ONNX Runtime), with a
whisker from the smallest to the largest ratio; a log axis with the baseline
at 1. A few primitives (rectangles, a 5x7 bitmap font) and a PNG encoder
(zlib + CRC) are all it needs, so the plot does not depend on matplotlib.
"""

from __future__ import annotations

import math
import struct
import zlib
from pathlib import Path
from typing import Any

from pliant.bench.report import geomean, ratio_to

Color = tuple[int, int, int]

# 5x7 glyphs, rows top to bottom; lowercase letters are drawn as capitals.
_GLYPHS = {
    "A": ".###. #...# #...# ##### #...# #...# #...#", "B": "####. #...# #...# ####. #...# #...# ####.",
    "C": ".###. #...# #.... #.... #.... #...# .###.", "D": "####. #...# #...# #...# #...# #...# ####.",
    "E": "##### #.... #.... ####. #.... #.... #####", "F": "##### #.... #.... ####. #.... #.... #....",
    "G": ".###. #...# #.... #.### #...# #...# .####", "H": "#...# #...# #...# ##### #...# #...# #...#",
    "I": ".###. ..#.. ..#.. ..#.. ..#.. ..#.. .###.", "J": "..### ...#. ...#. ...#. ...#. #..#. .##..",
    "K": "#...# #..#. #.#.. ##... #.#.. #..#. #...#", "L": "#.... #.... #.... #.... #.... #.... #####",
    "M": "#...# ##.## #.#.# #.#.# #...# #...# #...#", "N": "#...# #...# ##..# #.#.# #..## #...# #...#",
    "O": ".###. #...# #...# #...# #...# #...# .###.", "P": "####. #...# #...# ####. #.... #.... #....",
    "Q": ".###. #...# #...# #...# #.#.# #..#. .##.#", "R": "####. #...# #...# ####. #.#.. #..#. #...#",
    "S": ".#### #.... #.... .###. ....# ....# ####.", "T": "##### ..#.. ..#.. ..#.. ..#.. ..#.. ..#..",
    "U": "#...# #...# #...# #...# #...# #...# .###.", "V": "#...# #...# #...# #...# #...# .#.#. ..#..",
    "W": "#...# #...# #...# #.#.# #.#.# #.#.# .#.#.", "X": "#...# #...# .#.#. ..#.. .#.#. #...# #...#",
    "Y": "#...# #...# .#.#. ..#.. ..#.. ..#.. ..#..", "Z": "##### ....# ...#. ..#.. .#... #.... #####",
    "0": ".###. #...# #..## #.#.# ##..# #...# .###.", "1": "..#.. .##.. ..#.. ..#.. ..#.. ..#.. .###.",
    "2": ".###. #...# ....# ...#. ..#.. .#... #####", "3": "####. ....# ....# .###. ....# ....# ####.",
    "4": "...#. ..##. .#.#. #..#. ##### ...#. ...#.", "5": "##### #.... ####. ....# ....# #...# .###.",
    "6": ".###. #.... #.... ####. #...# #...# .###.", "7": "##### ....# ...#. ..#.. .#... .#... .#...",
    "8": ".###. #...# #...# .###. #...# #...# .###.", "9": ".###. #...# #...# .#### ....# ....# .###.",
    " ": "..... ..... ..... ..... ..... ..... .....", ".": "..... ..... ..... ..... ..... .##.. .##..",
    ",": "..... ..... ..... ..... .##.. ..#.. .#...", ":": "..... .##.. .##.. ..... .##.. .##.. .....",
    "-": "..... ..... ..... ##### ..... ..... .....", "_": "..... ..... ..... ..... ..... ..... #####",
    "=": "..... ..... ##### ..... ##### ..... .....", "/": "....# ...#. ...#. ..#.. .#... .#... #....",
    "(": "...#. ..#.. .#... .#... .#... ..#.. ...#.", ")": ".#... ..#.. ...#. ...#. ...#. ..#.. .#...",
    "[": ".###. .#... .#... .#... .#... .#... .###.", "]": ".###. ...#. ...#. ...#. ...#. ...#. .###.",
    "%": "##..# ##.#. ...#. ..#.. .#... .#.## #..##", "+": "..... ..#.. ..#.. ##### ..#.. ..#.. .....",
    "<": "...#. ..#.. .#... #.... .#... ..#.. ...#.", ">": ".#... ..#.. ...#. ....# ...#. ..#.. .#...",
    "@": ".###. #...# #.### #.#.# #.### #.... .###.", "*": "..... #.#.# .###. ##### .###. #.#.# .....",
    ";": "..... .##.. .##.. ..... .##.. ..#.. .#...", "'": "..#.. ..#.. ..... ..... ..... ..... .....",
    "?": ".###. #...# ....# ...#. ..#.. ..... ..#..", "|": "..#.. ..#.. ..#.. ..#.. ..#.. ..#.. ..#..",
    "~": "..... ..... .#... #.#.# ...#. ..... .....", "#": ".#.#. .#.#. ##### .#.#. ##### .#.#. .#.#.",
}
_FONT = {c: [row for row in g.split()] for c, g in _GLYPHS.items()}

PALETTE: list[Color] = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75)]
WHITE, BLACK, GREY, LIGHT = (255, 255, 255), (0, 0, 0), (110, 110, 110), (225, 225, 225)


class Canvas:
    """An RGB raster with rectangles and text, written out as PNG."""

    def __init__(self, width: int, height: int, background: Color = WHITE) -> None:
        self.width, self.height = width, height
        self.pixels = bytearray(bytes(background) * (width * height))

    def rect(self, x0: int, y0: int, x1: int, y1: int, color: Color) -> None:
        x0, x1 = max(0, min(x0, x1)), min(self.width, max(x0, x1))
        y0, y1 = max(0, min(y0, y1)), min(self.height, max(y0, y1))
        if x0 >= x1:
            return
        row = bytes(color) * (x1 - x0)
        for y in range(y0, y1):
            i = (y * self.width + x0) * 3
            self.pixels[i : i + len(row)] = row

    def text(self, x: int, y: int, s: str, color: Color = BLACK, scale: int = 2) -> int:
        """Draw ``s`` with its top-left corner at (x, y); returns the x after it."""
        for ch in s:
            glyph = _FONT.get(ch) or _FONT.get(ch.upper()) or _FONT["?"]
            for r, row in enumerate(glyph):
                for c, bit in enumerate(row):
                    if bit == "#":
                        self.rect(x + c * scale, y + r * scale, x + (c + 1) * scale, y + (r + 1) * scale, color)
            x += 6 * scale
        return x

    @staticmethod
    def text_width(s: str, scale: int = 2) -> int:
        return 6 * scale * len(s)

    def png(self) -> bytes:
        raw = b"".join(b"\x00" + bytes(self.pixels[y * self.width * 3 : (y + 1) * self.width * 3]) for y in range(self.height))

        def chunk(kind: bytes, data: bytes) -> bytes:
            return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

        header = struct.pack(">IIBBBBB", self.width, self.height, 8, 2, 0, 0, 0)
        return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def _ticks(lo: float, hi: float) -> list[float]:
    out = []
    for e in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1):
        for m in (1, 2, 5):
            v = m * 10.0**e
            if lo <= v <= hi:
                out.append(v)
    return out


def _tick_label(v: float) -> str:
    return f"{v:g}" if v >= 0.01 else f"{v:.0e}"


def plot_ratios(report: dict[str, Any], path: str | Path, baseline: str = "onnxruntime") -> None:
    """Write the latency-ratio plot of ``report`` (first thread count) to ``path``."""
    systems = [s for s in report["settings"]["systems"] if s != baseline]
    threads = report["settings"]["threads"][0]
    ratios = ratio_to(report, baseline) if baseline in report["settings"]["systems"] else {}
    models = [m["name"] for m in report["models"]]
    stats: dict[tuple[str, str], tuple[float, float, float] | None] = {}
    for m in models:
        for s in systems:
            vals = [r for (t, mo, _, sy), r in ratios.items() if t == threads and mo == m and sy == s]
            g = geomean(vals)
            stats[(m, s)] = None if g is None else (g, min(vals), max(vals))
    present = [v for v in stats.values() if v is not None]
    lo = min([v[1] for v in present] + [1.0]) / 1.5
    hi = max([v[2] for v in present] + [1.0]) * 1.5

    scale, bar_h, gap = 2, 14, 12
    label_w = max([Canvas.text_width(m, scale) for m in models] + [100]) + 20
    plot_w, top = 760, 110
    group_h = max(1, len(systems)) * bar_h + gap
    title = f"latency / {baseline} latency (median; bar: geomean over sizes, whisker: min-max)"
    load = report.get("load", {}).get("other_cores")
    sub = f"{threads} threads; log scale; < 1 is faster than {baseline}"
    if load is not None:
        sub += f"; other processes kept {load:.1f} cores busy"
    width = max(label_w + plot_w + 40, Canvas.text_width(title, scale) + 20, Canvas.text_width(sub, scale) + 20)
    height = top + len(models) * group_h + 70
    cv = Canvas(width, height)
    cv.text(10, 10, title, BLACK, scale)
    cv.text(10, 32, sub, GREY, scale)
    x = 10
    for k, s in enumerate(systems):
        color = PALETTE[k % len(PALETTE)]
        cv.rect(x, 58, x + 14, 72, color)
        x = cv.text(x + 20, 58, s, BLACK, scale) + 24

    def px(v: float) -> int:
        return label_w + round((math.log10(v) - math.log10(lo)) / (math.log10(hi) - math.log10(lo)) * plot_w)

    bottom = top + len(models) * group_h
    for v in _ticks(lo, hi):
        xv = px(v)
        cv.rect(xv, top - 6, xv + 1, bottom, LIGHT if v != 1 else GREY)
        lab = _tick_label(v)
        cv.text(xv - Canvas.text_width(lab, scale) // 2, bottom + 8, lab, GREY, scale)
    one = px(1.0)
    cv.rect(one - 1, top - 6, one + 1, bottom, BLACK)
    for i, m in enumerate(models):
        y = top + i * group_h
        cv.text(10, y + (group_h - gap) // 2 - 7, m, BLACK, scale)
        for k, s in enumerate(systems):
            yb = y + k * bar_h
            st = stats[(m, s)]
            color = PALETTE[k % len(PALETTE)]
            if st is None:
                cv.text(one + 6, yb + 1, "failed / n/a", color, 1)
                continue
            g, vmin, vmax = st
            cv.rect(min(one, px(g)), yb + 2, max(one, px(g)), yb + bar_h - 2, color)
            cv.rect(px(vmin), yb + bar_h // 2, px(vmax) + 1, yb + bar_h // 2 + 1, BLACK)
            cv.rect(px(vmin), yb + 4, px(vmin) + 1, yb + bar_h - 4, BLACK)
            cv.rect(px(vmax), yb + 4, px(vmax) + 1, yb + bar_h - 4, BLACK)
    cv.text(label_w, bottom + 30, "ratio to " + baseline, GREY, scale)
    Path(path).write_bytes(cv.png())

#!/usr/bin/python3
"""Step 1 of the emoji dataset: pick the pairs and render the images.

Reads the English CLDR annotations (unicode-cldr-core) and the Noto Color
Emoji font (fonts-noto-color-emoji), keeps every annotated code-point sequence
that the font shapes to exactly one real glyph, renders it at 224x224 and
writes into WORK_DIR:

  pairs.tsv        one line per rendered emoji, in output order:
                   index, code points (hex, space separated), emoji,
                   CLDR name (tts), CLDR keywords ('|' separated)
  images_u8.bin    raw uint8 RGB, shape (N, 224, 224, 3), row-major
  images/NNNN_<cps>.png   the same images, for looking at (never committed)
  render_stats.json        counts of what was found and skipped, and why

Glyph test: harfbuzz (`hb-shape`, the same shaper that Pillow's raqm layout
uses) shapes each annotated sequence with the font; a sequence is renderable
when the result is one glyph that is not .notdef (gid 0).  Sequences the font
does not ligate (it lacks them) shape to several glyphs and are skipped.

Rendering: Pillow, raqm layout, font size 109 (the only bitmap strike of the
CBDT font; its glyph cell is 136x128 px), embedded_color=True, onto a
transparent canvas the size of the glyph cell, then alpha-composited,
unscaled, centred on a white 224x224 background.

Usage: render.py WORK_DIR
"""
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
from PIL import Image, ImageDraw, ImageFont, features

FONT = "/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf"
ANNOTATIONS = "/usr/share/unicode/cldr/common/annotations/en.xml"
SIZE = 224
FONT_SIZE = 109
BACKGROUND = (255, 255, 255)


def cps_hex(s):
    return " ".join("%04X" % ord(c) for c in s)


def read_annotations(path):
    """Return {cp: (name, [keywords])} for the cps that have a tts name."""
    root = ET.parse(path).getroot()
    names, keywords = {}, {}
    for a in root.iter("annotation"):
        cp = a.get("cp")
        text = (a.text or "").strip()
        if a.get("type") == "tts":
            names[cp] = text
        else:
            keywords[cp] = [k.strip() for k in text.split("|") if k.strip()]
    out = {}
    for cp, name in names.items():
        out[cp] = (name, keywords.get(cp, []))
    return out, names, keywords


def shape_all(cps, work):
    """Shape every sequence with hb-shape; return list of glyph-id lists."""
    txt = os.path.join(work, "cps.txt")
    with open(txt, "w", encoding="utf-8") as f:
        for cp in cps:
            f.write(cp + "\n")
    res = subprocess.run(
        ["hb-shape", "--no-glyph-names", "--no-positions", "--no-clusters",
         "--text-file", txt, FONT],
        check=True, capture_output=True, text=True)
    lines = res.stdout.splitlines()
    if len(lines) != len(cps):
        raise SystemExit("hb-shape returned %d lines for %d sequences"
                         % (len(lines), len(cps)))
    return [[int(g) for g in ln.strip().strip("[]").split("|")] for ln in lines]


def render(font, cp):
    left, top, right, bottom = font.getbbox(cp)
    w, h = right - left, bottom - top
    glyph = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    ImageDraw.Draw(glyph).text((-left, -top), cp, font=font,
                               embedded_color=True)
    if glyph.getchannel("A").getbbox() is None:
        return None  # nothing drawn
    if w > SIZE or h > SIZE:
        raise SystemExit("glyph %s is %dx%d, larger than the canvas"
                         % (cps_hex(cp), w, h))
    canvas = Image.new("RGBA", (SIZE, SIZE), BACKGROUND + (255,))
    canvas.alpha_composite(glyph, ((SIZE - w) // 2, (SIZE - h) // 2))
    return canvas.convert("RGB")


def main():
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    work = sys.argv[1]
    os.makedirs(os.path.join(work, "images"), exist_ok=True)
    if not features.check("raqm"):
        raise SystemExit("Pillow lacks raqm layout (apt-get install libraqm0)")

    annotated, names, keywords = read_annotations(ANNOTATIONS)
    cps = sorted(annotated, key=lambda s: [ord(c) for c in s])
    glyphs = shape_all(cps, work)

    font = ImageFont.truetype(FONT, FONT_SIZE,
                              layout_engine=ImageFont.Layout.RAQM)
    stats = {
        "annotation_entries_tts": len(names),
        "annotation_entries_keywords": len(keywords),
        "annotated_sequences": len(cps),
        "annotated_multi_codepoint": sum(len(c) > 1 for c in cps),
        "skipped_no_glyph_single": 0,
        "skipped_no_glyph_sequence": 0,
        "skipped_blank_render": 0,
        "rendered": 0,
        "rendered_multi_codepoint": 0,
        "no_keywords": sum(1 for c in cps if not annotated[c][1]),
    }
    skipped_seq = []
    rows = []
    images = []
    for cp, g in zip(cps, glyphs):
        if len(g) != 1 or g[0] == 0:
            if len(cp) > 1:
                stats["skipped_no_glyph_sequence"] += 1
                skipped_seq.append(cps_hex(cp) + " " + annotated[cp][0])
            else:
                stats["skipped_no_glyph_single"] += 1
            continue
        img = render(font, cp)
        if img is None:
            stats["skipped_blank_render"] += 1
            continue
        i = len(rows)
        name, kws = annotated[cp]
        img.save(os.path.join(work, "images", "%04d_%s.png"
                              % (i, cps_hex(cp).replace(" ", "_"))))
        images.append(np.asarray(img, dtype=np.uint8))
        rows.append((i, cps_hex(cp), cp, name, "|".join(kws)))
        stats["rendered"] += 1
        stats["rendered_multi_codepoint"] += len(cp) > 1

    stats["skipped_sequences"] = skipped_seq
    arr = np.stack(images)
    assert arr.shape == (len(rows), SIZE, SIZE, 3)
    arr.tofile(os.path.join(work, "images_u8.bin"))
    with open(os.path.join(work, "pairs.tsv"), "w", encoding="utf-8") as f:
        for r in rows:
            f.write("\t".join(str(x) for x in r) + "\n")
    with open(os.path.join(work, "render_stats.json"), "w") as f:
        json.dump(stats, f, indent=1, ensure_ascii=False)
    print("render: %d annotated, %d rendered, skipped: %d single code points "
          "without glyph, %d sequences without glyph, %d blank"
          % (len(cps), stats["rendered"], stats["skipped_no_glyph_single"],
             stats["skipped_no_glyph_sequence"],
             stats["skipped_blank_render"]))


if __name__ == "__main__":
    main()

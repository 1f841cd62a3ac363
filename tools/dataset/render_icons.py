#!/usr/bin/python3
"""Step 1 of the icons dataset: pick the pairs and render the images.

Reads the Oxygen icon theme (Debian package oxygen-icon-theme,
/usr/share/icons/oxygen/base/<N>x<N>/<context>/<name>.png) and the
vocabulary of the text encoder (WORK_DIR/vocab.txt, one word a line, written
by vocab_words.mjs), pairs each icon with the words of its name, renders it at
224x224 and writes into WORK_DIR:

  pairs.tsv        one line per rendered icon, in output order (sorted by
                   icon name): index, icon name, source PNG (relative to the
                   theme directory), words (space separated), '' (no
                   keywords; the column keeps the layout encode_text.mjs reads)
  images_u8.bin    raw uint8 RGB, shape (N, 224, 224, 3), row-major
  images/NNNN_<name>.png   the same images, for looking at (never committed)
  render_stats.json        counts of what was found and dropped, and why

Words: the icon name, lower-cased, split on runs of characters that are not
letters (so '-', '_', '.', '+' and digits separate words and digits are not
words), without the theme-technical tokens in DROP_TOKENS.  These are exactly
the tokens encode_text.mjs forms from the words column.  "Known" tokens are
those in the vocabulary of the text encoder.

Selection, in this order (every step is counted in render_stats.json):
  1. every name with a PNG in a size directory, outside the contexts in
     SKIP_CONTEXTS (sprite sheets of animation frames);
  2. the name's image is its largest PNG (by pixel area, as measured, not as
     the directory says); names whose largest PNG is smaller than MIN_SIZE px
     on its longer side, or not about square, are dropped;
  3. names without a known token are dropped;
  4. aliases: a name whose largest PNG is also a PNG of another name (the
     same file through symlinks, or the same bytes), at any size, is one
     icon with it;
  5. names whose sets of known tokens are equal (so their text latents would
     be equal) are one pair.
In 4 and 5 the name kept is the one with the largest image, then the one
that shares a known token with the most other names of its group (so an alias
group is named by its common words: `image-bmp`, not `application-x-egon`,
for the drawing that eleven image types share), then the one with the fewest
unknown tokens, then the one with the fewest known tokens, then the first in
sorted order.  Which file of an alias group is real and which are symlinks is
an accident of packaging, so it does not count.

Rendering: the PNG (converted to RGBA) is alpha-composited onto a white square
of its own size, the result is resized with Lanczos filtering to ICON_PX x
ICON_PX (a size close to the emoji's 136x128 glyph cell, so both datasets show
their subject at about the same scale), and pasted centred on a white
224x224 RGB background, as render.py does for emoji.  Compositing before
resizing keeps transparent pixels from bleeding dark fringes into the result.

Usage: render_icons.py WORK_DIR [THEME_BASE_DIR]
       (default THEME_BASE_DIR: /usr/share/icons/oxygen/base)
"""
import collections
import hashlib
import json
import os
import re
import sys

import numpy as np
from PIL import Image

THEME = "/usr/share/icons/oxygen/base"
SIZE = 224
ICON_PX = 128
MIN_SIZE = 48
MAX_ASPECT = 1.25
BACKGROUND = (255, 255, 255)
SKIP_CONTEXTS = {"animations"}
DROP_TOKENS = {"symbolic", "rtl", "ltr"}


def tokens(name):
    seen, out = set(), []
    for t in re.split(r"[^a-z]+", name.lower()):
        if t and t not in DROP_TOKENS and t not in seen:
            seen.add(t)
            out.append(t)
    return out


def scan(theme):
    """Return {name: [(rel_path, context), ...]} over every size directory."""
    files = collections.defaultdict(list)
    skipped_context = set()
    for sdir in sorted(os.listdir(theme)):
        if not re.fullmatch(r"\d+x\d+", sdir):
            continue
        for ctx in sorted(os.listdir(os.path.join(theme, sdir))):
            d = os.path.join(theme, sdir, ctx)
            if not os.path.isdir(d):
                continue
            for f in sorted(os.listdir(d)):
                if not f.endswith(".png"):
                    continue
                name = f[:-len(".png")]
                if ctx in SKIP_CONTEXTS:
                    skipped_context.add(name)
                    continue
                files[name].append((os.path.join(sdir, ctx, f), ctx))
    return files, skipped_context


class UnionFind:
    def __init__(self, items):
        self.parent = {i: i for i in items}

    def find(self, i):
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a, b):
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def render(path):
    im = Image.open(path)
    im.load()
    im = im.convert("RGBA")
    w, h = im.size
    side = max(w, h)
    square = Image.new("RGBA", (side, side), BACKGROUND + (255,))
    square.alpha_composite(im, ((side - w) // 2, (side - h) // 2))
    icon = square.convert("RGB").resize((ICON_PX, ICON_PX),
                                        Image.Resampling.LANCZOS)
    canvas = Image.new("RGB", (SIZE, SIZE), BACKGROUND)
    canvas.paste(icon, ((SIZE - ICON_PX) // 2, (SIZE - ICON_PX) // 2))
    return canvas


def main():
    if len(sys.argv) not in (2, 3):
        raise SystemExit(__doc__)
    work = sys.argv[1]
    theme = sys.argv[2] if len(sys.argv) == 3 else THEME
    os.makedirs(os.path.join(work, "images"), exist_ok=True)
    with open(os.path.join(work, "vocab.txt"), encoding="utf-8") as f:
        vocab = set(ln.rstrip("\n") for ln in f if ln.strip())

    files, skipped_context = scan(theme)
    stats = collections.OrderedDict()
    stats["theme"] = theme
    stats["vocabulary"] = len(vocab)
    stats["names"] = len(files)
    stats["names_only_in_skipped_contexts"] = len(skipped_context - set(files))
    for n in files:
        if not n.isascii():
            raise SystemExit("non-ASCII icon name %r" % n)

    # 2. largest PNG, size and shape checks
    info = {}
    too_small, not_square = [], []
    for n, fl in sorted(files.items()):
        best = None
        for rel, ctx in fl:
            with Image.open(os.path.join(theme, rel)) as im:
                w, h = im.size
            key = (w * h, rel)
            if best is None or key > best[0]:
                best = (key, rel, w, h, ctx)
        _, rel, w, h, ctx = best
        if max(w, h) < MIN_SIZE:
            too_small.append(n)
            continue
        if max(w, h) > MAX_ASPECT * min(w, h):
            not_square.append(n)
            continue
        info[n] = {"rel": rel, "w": w, "h": h, "context": ctx,
                   "link": os.path.islink(os.path.join(theme, rel))}
    stats["dropped_largest_png_under_%d_px" % MIN_SIZE] = len(too_small)
    stats["dropped_not_square"] = not_square

    # 3. known tokens
    no_known = []
    for n in sorted(info):
        toks = tokens(n)
        known = [t for t in toks if t in vocab]
        if not known:
            no_known.append(n)
            del info[n]
            continue
        info[n]["tokens"] = toks
        info[n]["known"] = frozenset(known)
        info[n]["unknown"] = len(toks) - len(known)
    stats["dropped_no_known_token"] = no_known

    def choose(members):
        def preference(m):
            d = info[m]
            shared = sum(1 for o in members
                         if o != m and d["known"] & info[o]["known"])
            return (-d["w"] * d["h"], -shared, d["unknown"], len(d["known"]),
                    m)
        return min(members, key=preference)

    # 4. aliases: a name whose largest PNG is (as a file, through symlinks,
    #    or byte for byte) one of the PNGs of another name, at any size
    def keys(rel):
        p = os.path.join(theme, rel)
        with open(p, "rb") as f:
            return (("real", os.path.realpath(p)),
                    ("bytes", hashlib.sha256(f.read()).hexdigest()))
    uf = UnionFind(sorted(info))
    owners = collections.defaultdict(set)
    for n in sorted(info):
        for rel, _ in files[n]:
            for k in keys(rel):
                owners[k].add(n)
    for n in sorted(info):
        for k in keys(info[n]["rel"]):
            for m in owners[k]:
                uf.union(n, m)
    groups = collections.defaultdict(list)
    for n in sorted(info):
        groups[uf.find(n)].append(n)
    alias_dropped = []
    for members in groups.values():
        keep = choose(members)
        for m in members:
            if m != keep:
                alias_dropped.append("%s (= %s)" % (m, keep))
                del info[m]
    stats["dropped_alias_of_kept_icon"] = sorted(alias_dropped)

    # 5. equal sets of known tokens
    by_known = collections.defaultdict(list)
    for n in sorted(info):
        by_known[info[n]["known"]].append(n)
    same_words = []
    for members in by_known.values():
        keep = choose(members)
        for m in members:
            if m != keep:
                same_words.append("%s (= %s)" % (m, keep))
                del info[m]
    stats["dropped_same_known_tokens"] = sorted(same_words)

    # render
    names = sorted(info)
    rows, images = [], []
    sizes = collections.Counter()
    contexts = collections.Counter()
    for i, n in enumerate(names):
        d = info[n]
        img = render(os.path.join(theme, d["rel"]))
        img.save(os.path.join(work, "images", "%04d_%s.png" % (i, n)))
        images.append(np.asarray(img, dtype=np.uint8))
        rows.append((i, n, d["rel"], " ".join(d["tokens"]), ""))
        sizes["%dx%d" % (d["w"], d["h"])] += 1
        contexts[d["context"]] += 1
    stats["rendered"] = len(rows)
    stats["rendered_source_sizes"] = dict(sorted(sizes.items()))
    stats["rendered_contexts"] = dict(contexts.most_common())
    stats["rendered_from_symlink"] = sum(info[n]["link"] for n in names)
    stats["rendered_with_unknown_tokens"] = sum(info[n]["unknown"] > 0
                                                for n in names)

    arr = np.stack(images)
    assert arr.shape == (len(rows), SIZE, SIZE, 3)
    arr.tofile(os.path.join(work, "images_u8.bin"))
    with open(os.path.join(work, "pairs.tsv"), "w", encoding="utf-8") as f:
        for r in rows:
            f.write("\t".join(str(x) for x in r) + "\n")
    with open(os.path.join(work, "render_stats.json"), "w") as f:
        json.dump(stats, f, indent=1, ensure_ascii=False)
    print("render_icons: %d names, dropped: %d under %d px, %d not square, "
          "%d without a known token, %d aliases, %d with the same known "
          "tokens; %d rendered"
          % (stats["names"], len(too_small), MIN_SIZE, len(not_square),
             len(no_known), len(alias_dropped), len(same_words), len(rows)))


if __name__ == "__main__":
    main()

#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Draws the training curves of a `fusemix train` run: loss, and validation recall per epoch with
the best epoch marked.

    /usr/bin/python3 tools/plot_metrics.py RUN/metrics.jsonl RUN/training.png

Needs Debian's python3-matplotlib (`bash tools/install-deps.sh --python`).
"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(metrics_path, png_path):
    rows = [json.loads(line) for line in open(metrics_path) if line.strip()]
    epochs = [r["epoch"] for r in rows]
    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    ax[0].plot(epochs, [r["loss"] for r in rows], color="tab:blue")
    ax[0].set_xlabel("epoch")
    ax[0].set_ylabel("training loss (symmetric InfoNCE)")
    ax[0].set_title("loss")
    if rows and "val" in rows[0]:
        for key, label, colour in (("image_to_text", "image → text", "tab:orange"),
                                   ("text_to_image", "text → image", "tab:green")):
            ax[1].plot(epochs, [r["val"][key]["r1"] for r in rows], label=label + " R@1", color=colour)
            ax[1].plot(epochs, [r["val"][key]["r10"] for r in rows], label=label + " R@10", color=colour,
                       linestyle="--")
        ax[1].plot(epochs, [r["val"]["mean"] for r in rows], label="mean of the six", color="black")
        best = rows[-1].get("best_epoch")
        if best:
            # The epoch whose weights adapters.safetensors holds (unless the run used --keep-last).
            ax[1].axvline(best, color="grey", linestyle=":", label=f"best epoch ({best})")
        ax[1].set_ylabel("validation recall (%)")
        ax[1].legend(loc="lower right", fontsize="small")
    ax[1].set_xlabel("epoch")
    ax[1].set_title("retrieval")
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])

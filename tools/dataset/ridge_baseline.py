#!/usr/bin/python3
"""Ridge-regression retrieval baseline for the bundled emoji dataset.

Maps image latents to text space, y ~ (x - mean_x) W + mean_y, with W the
ridge solution on the training pairs.  The ridge strength lambda is chosen
on a held-out fifth of the training set (rows picked by
numpy.random.default_rng(0)), by the sum of R@1/5/10 in both directions on
that validation gallery; W is then refitted on the whole training set.

Evaluation on the test set (every test pair in one gallery): cosine
similarity between the predicted text latent of each image and every test
text latent, both centred by the training mean of y.  Prints R@1/5/10 in
percent for image->text (rank the texts for each image) and text->image
(rank the images for each text).  numpy only.

Usage: ridge_baseline.py [DATA_DIR]   (default: data/emoji of the repository)
"""
import os
import sys

import numpy as np

KS = (1, 5, 10)
LAMBDAS = np.logspace(-3, 5, 17)


def load(d):
    def f(name):
        return np.load(os.path.join(d, name)).astype(np.float64)
    return f("x_train.npy"), f("y_train.npy"), f("x_test.npy"), f("y_test.npy")


def normalise(a):
    return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)


def recalls(pred_y, y):
    """R@k (percent) for image->text and text->image; row i matches row i."""
    sim = normalise(pred_y) @ normalise(y).T  # [image, text]
    n = sim.shape[0]
    diag = sim[np.arange(n), np.arange(n)]
    # rank of the true match = number of strictly better candidates
    rank_i2t = (sim > diag[:, None]).sum(axis=1)
    rank_t2i = (sim > diag[None, :]).sum(axis=0)
    i2t = {k: 100.0 * np.mean(rank_i2t < k) for k in KS}
    t2i = {k: 100.0 * np.mean(rank_t2i < k) for k in KS}
    return i2t, t2i


class Ridge:
    def __init__(self, x, y):
        self.mx, self.my = x.mean(axis=0), y.mean(axis=0)
        u, s, vt = np.linalg.svd(x - self.mx, full_matrices=False)
        self.u, self.s, self.vt = u, s, vt
        self.uty = u.T @ (y - self.my)

    def weights(self, lam):
        return self.vt.T @ ((self.s / (self.s ** 2 + lam))[:, None] * self.uty)

    def predict_centred(self, w, x):
        return (x - self.mx) @ w


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    d = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        here, "..", "..", "data", "emoji")
    x_tr, y_tr, x_te, y_te = load(d)
    print("train %d pairs, test %d pairs, image dim %d, text dim %d"
          % (len(x_tr), len(x_te), x_tr.shape[1], y_tr.shape[1]))

    rng = np.random.default_rng(0)
    perm = rng.permutation(len(x_tr))
    n_val = len(x_tr) // 5
    val, fit = perm[:n_val], perm[n_val:]
    model = Ridge(x_tr[fit], y_tr[fit])
    best = None
    for lam in LAMBDAS:
        w = model.weights(lam)
        i2t, t2i = recalls(model.predict_centred(w, x_tr[val]),
                           y_tr[val] - model.my)
        score = sum(i2t.values()) + sum(t2i.values())
        print("  lambda %-10.3g val i2t R@1 %5.1f  t2i R@1 %5.1f  rsum %6.1f"
              % (lam, i2t[1], t2i[1], score))
        if best is None or score > best[0]:
            best = (score, lam)
    lam = best[1]
    print("chosen lambda %.3g (validation gallery of %d)" % (lam, n_val))

    model = Ridge(x_tr, y_tr)
    w = model.weights(lam)
    i2t, t2i = recalls(model.predict_centred(w, x_te), y_te - model.my)
    n = len(x_te)
    print("test gallery %d (chance R@1 %.2f%%)" % (n, 100.0 / n))
    print("image->text R@1 %.1f  R@5 %.1f  R@10 %.1f" % (i2t[1], i2t[5], i2t[10]))
    print("text->image R@1 %.1f  R@5 %.1f  R@10 %.1f" % (t2i[1], t2i[5], t2i[10]))


if __name__ == "__main__":
    main()

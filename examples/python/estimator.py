# SPDX-License-Identifier: Apache-2.0
"""The FuseMix estimator in a scikit-learn style workflow.

A small grid over the learning rate and the adapters' depth, each point judged by `score` (the
mean of the six retrieval recalls) on a validation split carved from the training split; the
best settings are refitted on the whole training split with get_params/set_params, and the test
split is read once, at the end, to report. scikit-learn is not needed. About 15 s on 2 cores.

    bash tools/install-python.sh                     # once
    /usr/bin/python3 examples/python/estimator.py

or from a build tree, without installing:
PYTHONPATH=build/python /usr/bin/python3 examples/python/estimator.py
"""
import itertools
import pathlib
import time

import numpy as np

import fusemix

DATA = pathlib.Path(__file__).resolve().parents[2] / "data" / "emoji"


def main():
    x_train, y_train = np.load(DATA / "x_train.npy"), np.load(DATA / "y_train.npy")
    # 243 of the 1,243 training pairs for validation; the test split plays no part in the choice.
    order = np.random.default_rng(0).permutation(len(x_train))
    val, fit = order[:243], order[243:]

    # Shared by every fit: short runs, a 256-d shared space, narrow blocks. checkpoint_every=0
    # writes the run's checkpoint only at the end (without `out`, the run's folder is temporary).
    est = fusemix.FuseMix(epochs=30, batch=128, shared_dim=256, expansion=1, seed=0, checkpoint_every=0)
    print(est)

    results = []
    for lr, depth in itertools.product([3e-4, 3e-3], [0, 1]):
        start = time.perf_counter()
        est.set_params(lr=lr, depth_x=depth, depth_y=depth).fit(x_train[fit], y_train[fit])
        score = est.score(x_train[val], y_train[val])
        print(f"lr {lr:g}, depth {depth}: validation mean recall {score:5.1f}%  "
              f"({time.perf_counter() - start:.1f} s)")
        results.append((score, est.get_params()))

    score, best = max(results, key=lambda r: r[0])
    print(f"best on validation: lr {best['lr']:g}, depth {best['depth_x']} ({score:.1f}%)")

    # The best settings, refitted on all 1,243 training pairs in a fresh estimator. With
    # scikit-learn, sklearn.base.clone(est).set_params(**best) does the same: clone builds
    # type(est)(**est.get_params(deep=False)), which FuseMix supports as it is.
    final = fusemix.FuseMix().set_params(**best)
    start = time.perf_counter()
    final.fit(x_train, y_train)
    print(f"refitted {final.model_} in {time.perf_counter() - start:.1f} s")
    print("transform_x, transform_y:", final.transform_x(x_train[:5]).shape, final.transform_y(y_train[:5]).shape)

    # Once, at the end: the test split.
    x_test, y_test = np.load(DATA / "x_test.npy"), np.load(DATA / "y_test.npy")
    recall = fusemix.evaluate(final.model_, x_test, y_test)  # final.score(x_test, y_test) is recall["mean"]
    print(f"test: mean recall {recall['mean']:.1f}%, image->text R@1 {recall['image_to_text']['r1']:.1f}%, "
          f"text->image R@1 {recall['text_to_image']['r1']:.1f}%")


if __name__ == "__main__":
    main()

# SPDX-License-Identifier: Apache-2.0
"""From numpy latents to a PyTorch module.

Trains FuseMix adapters with the `fusemix` package on the bundled emoji latents (data/emoji/),
saves them as .safetensors, builds a torch.nn.Module from that file with the authors' module
structure (tools/fusemix_torch.py, the repo's PyTorch reference), and checks that the module
gives `model.embed_x` and `model.embed_y`. Nothing is chosen on the test split: validation
pairs are taken from the training split, and the test split is read once at the end to report
recall. About 20 s on 2 cores.

    bash tools/install-python.sh                         # once; PyTorch: tools/install-deps.sh --python
    /usr/bin/python3 examples/python/torch_module.py

or from a build tree, without installing:
PYTHONPATH=build/python /usr/bin/python3 examples/python/torch_module.py
"""
import pathlib
import sys
import tempfile
import time

import numpy as np
import torch
from torch import nn

import fusemix

ROOT = pathlib.Path(__file__).resolve().parents[2]
DATA = ROOT / "data" / "emoji"
sys.dont_write_bytecode = True  # no tools/__pycache__ in the work tree
sys.path.insert(0, str(ROOT / "tools"))
# The adapter as the authors' code defines it (Block, make_proj), the rule that reads depth, widths
# and expansion back from the tensor names and shapes, and a safetensors reader that needs numpy
# only (no `safetensors` package).
from fusemix_torch import infer_proj_config, make_proj, read_safetensors  # noqa: E402


class FusionAdapters(nn.Module):
    """The authors' two adapters, `vis_proj` and `text_proj`, with the loss's learned scalars.

    Parameter names are the file's tensor names, so `load_state_dict(strict=True)` takes the
    file as it is. `text_proj` is nn.Identity() for a model trained with identity_y=True.
    """

    # dropout: only training in PyTorch uses it; 0.6 is the rate fusemix trained with (its default).
    def __init__(self, x_config, y_config, loss_parameters, dropout=0.6):
        super().__init__()
        self.vis_proj = make_proj(*x_config, dropout)  # (in, out, depth, expansion), then p
        self.text_proj = make_proj(*y_config, dropout) if y_config else nn.Identity()
        for name in loss_parameters:  # "temp", or "logit_scale" and "logit_bias": 0-d tensors
            self.register_parameter(name, nn.Parameter(torch.zeros([])))

    @classmethod
    def from_file(cls, path):
        tensors, _metadata = read_safetensors(path, strict=False)
        has_y = any(k.startswith("text_proj.") for k in tensors)  # none with identity_y=True
        y_config = infer_proj_config(tensors, "text_proj.") if has_y else None
        scalars = [k for k in tensors if "." not in k]
        module = cls(infer_proj_config(tensors, "vis_proj."), y_config, scalars)
        # strict=True: a missing, extra or mis-shaped tensor raises.
        module.load_state_dict({k: torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in tensors.items()},
                               strict=True)
        return module.eval()  # eval mode: no dropout, as fusemix embeds

    def forward(self, x, y):
        """Raw shared-space embeddings of both sides (fusemix.Model.embed_x / embed_y)."""
        return self.vis_proj(x), self.text_proj(y)


def recall_at_1(sx, sy):
    """Image->text R@1 (percent) of paired rows, by cosine similarity."""
    sim = nn.functional.normalize(sx, dim=1) @ nn.functional.normalize(sy, dim=1).T
    return 100.0 * (sim.argmax(dim=1) == torch.arange(len(sx))).double().mean().item()


def main():
    x_train, y_train = np.load(DATA / "x_train.npy"), np.load(DATA / "y_train.npy")  # float16, float32
    # A validation split carved from the training split (the test split stays unseen).
    order = np.random.default_rng(0).permutation(len(x_train))
    val, fit = order[:243], order[243:]

    start = time.perf_counter()
    # Small settings for a quick run: 20 epochs of 1,000 pairs in batches of 128, two blocks per
    # adapter (expansion 1 instead of 4, for speed), a 256-d shared space. checkpoint_every=0:
    # no checkpoint after every epoch, only the one at the end (the run's folder is temporary).
    model = fusemix.train(x_train[fit], y_train[fit], epochs=20, batch=128, depth_x=2, depth_y=2, expansion=1,
                          shared_dim=256, seed=0, x_val=x_train[val], y_val=y_train[val], checkpoint_every=0)
    print(f"trained {model} in {time.perf_counter() - start:.1f} s")

    with tempfile.TemporaryDirectory() as folder:
        path = pathlib.Path(folder) / "emoji-adapters.safetensors"
        model.save(path)
        print(f"saved {path.name}: {path.stat().st_size / 1e6:.1f} MB")
        module = FusionAdapters.from_file(path)
    print(module.vis_proj[0])  # the first block of the image side
    print("the loss's scalars:", {name: p.item() for name, p in module.named_parameters() if "." not in name})

    # The same latents through both: float32, as fusemix reads float16 files.
    xv = np.ascontiguousarray(x_train[val], dtype=np.float32)
    yv = np.ascontiguousarray(y_train[val], dtype=np.float32)
    with torch.no_grad():
        tx, ty = module(torch.from_numpy(xv), torch.from_numpy(yv))
    fx, fy = torch.from_numpy(model.embed_x(xv)), torch.from_numpy(model.embed_y(yv))
    for side, ours, theirs in (("x", tx, fx), ("y", ty, fy)):
        diff = (ours - theirs).abs().max().item()
        print(f"embed_{side}: {tuple(ours.shape)}, max |torch - fusemix| = {diff:.2e} "
              f"(largest value {theirs.abs().max().item():.2f})")
        assert torch.allclose(ours, theirs, rtol=1e-4, atol=1e-4), side
    val_r1 = fusemix.evaluate(model, xv, yv)["image_to_text"]["r1"]
    print(f"validation image->text R@1: {recall_at_1(tx, ty):.1f}% from the torch module, "
          f"{val_r1:.1f}% from fusemix.evaluate")

    # Once, at the end: the test split.
    test = fusemix.evaluate(model, np.load(DATA / "x_test.npy"), np.load(DATA / "y_test.npy"))
    print(f"test recall: image->text R@1 {test['image_to_text']['r1']:.1f}%, "
          f"text->image R@1 {test['text_to_image']['r1']:.1f}%, mean of six {test['mean']:.1f}%")


if __name__ == "__main__":
    main()

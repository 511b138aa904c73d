"""The Python package side by side with what a Python user would otherwise run, in one process.

Three cases, each printing one result line (`umcl-bench-row`, see xtask/src/bench.rs) that
`cargo xtask bench python` tabulates:

1. `umcl.Labeler.label_array` on one thread against the Python regex labeler with the same rules
   (crates/umcl-data/benches/reference/labeler.py), on the IU X-ray reports: reports/s per core.
2. `umcl.Pipeline.load` against PIL + torchvision's evaluation transform (open, grayscale,
   bilinear resize to 224 x 224 with antialiasing, to tensor, 3 channels, normalise), one
   thread each, on the COVID-19 collection's JPEGs: images/s per core.
3. `umcl.Loader` (2 threads, training augmentation) feeding a PyTorch loop against
   `torch.utils.data.DataLoader` with 2 workers running PIL + torchvision's training transform
   (crates/umcl-data/benches/reference/pil_pipeline.py, variant "pil"), batches of 32:
   images/s delivered to the loop.

Run by `cargo xtask bench python` with .venv-ref's python (torch, torchvision, pillow), into
which it installs the release build of the package:
  .venv-ref/bin/python crates/umcl-py/benches/compare.py --data ../shared/data
"""

import argparse
import csv
import importlib.util
import json
import os
import time
from pathlib import Path

import numpy as np

import umcl

HERE = Path(__file__).resolve().parent
REFERENCE = HERE.parents[1] / "umcl-data" / "benches" / "reference"
RULES = HERE.parents[1] / "umcl-data" / "data" / "labeler" / "chest-xray.toml"
TAG = "umcl-bench-row"


def row(case, ours, reference, unit, note):
    print("\t".join([TAG, "python", case, f"{ours:.1f}", f"{reference:.1f}", unit, "higher", "cpu", note]),
          flush=True)


def load_module(name):
    spec = importlib.util.spec_from_file_location(name, REFERENCE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def best_rate(count, fn, repeats):
    """The best of `repeats` timed runs of `fn` over `count` items, in items/s."""
    best = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = max(best, count / (time.perf_counter() - t0))
    return best


def each(fn, items):
    """Calls `fn` on every item, dropping each result before the next, as a consumer that
    uses an image and moves on does (a list of all of them would time page faults)."""
    for item in items:
        fn(item)


def labeler_case(data, repeats):
    with open(data / "iu-xray-reports" / "reports-dev.csv", newline="", encoding="utf-8") as f:
        reports = [[r["findings"], r["impression"]] for r in csv.DictReader(f)]
    ours = umcl.Labeler(threads=1)
    ref = load_module("labeler").Labeler(RULES.read_text(encoding="utf-8"))
    codes = ours.label_array(reports)
    agree = np.mean([codes[i].tolist() == ref.label(r) for i, r in enumerate(reports)])
    rate_ours = best_rate(len(reports), lambda: ours.label_array(reports), repeats)
    rate_ref = best_rate(len(reports), lambda: [ref.label(r) for r in reports], repeats)
    row("Labeler.label_array, 1 thread vs Python regex labeler", rate_ours, rate_ref, "reports/s",
        f"{len(reports)} IU reports, best of {repeats}; same labels on {agree:.1%}")


def eval_transform():
    import torch
    import torchvision.transforms.functional as F
    from PIL import Image

    torch.set_num_threads(1)

    def run(path):
        img = Image.open(path).convert("L").resize((224, 224), Image.BILINEAR)
        t = F.to_tensor(img).expand(3, -1, -1)
        return F.normalize(t, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])

    return run


def pipeline_case(images, repeats):
    ours = umcl.Pipeline(size=224, fit="stretch", threads=1)
    ref = eval_transform()
    a, b = ours.load(images[0]), ref(images[0]).numpy()
    diff = float(np.abs(a - b).mean())
    rate_ours = best_rate(len(images), lambda: each(ours.load, images), repeats)
    rate_ref = best_rate(len(images), lambda: each(ref, images), repeats)
    row("Pipeline.load 224 vs PIL + torchvision, 1 thread", rate_ours, rate_ref, "images/s",
        f"{len(images)} JPEGs, best of {repeats}; mean abs difference {diff:.4f}")


class Images:
    """The reference dataset: image paths through pil_pipeline's training transform."""

    def __init__(self, paths):
        self.paths = paths
        self.run = None

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        if self.run is None:  # built in each worker
            self.run = load_module("pil_pipeline").build("pil")
        return self.run(self.paths[i])


def loader_case(table, epochs):
    import torch

    torch.set_num_threads(1)
    ours = umcl.Loader(table, batch_size=32, threads=2, augment=True, size=224, fit="stretch",
                       drop_last=True)
    paths = [r["image"] for r in table.rows()]
    ref = torch.utils.data.DataLoader(Images(paths), batch_size=32, shuffle=True, num_workers=2,
                                      drop_last=True, persistent_workers=True)

    def consume(batches, to_tensor):
        n, total = 0, 0.0
        for b in batches:
            x = to_tensor(b)
            total += float(x[:, 0, 0, 0].sum())
            n += x.shape[0]
        return n

    def rate(batches_of_epoch, to_tensor):
        consume(batches_of_epoch(), to_tensor)  # warm-up (workers start, pages cached)
        best = 0.0
        for _ in range(epochs):
            t0 = time.perf_counter()
            n = consume(batches_of_epoch(), to_tensor)
            best = max(best, n / (time.perf_counter() - t0))
        return best

    rate_ours = rate(lambda: iter(ours), lambda b: torch.from_numpy(b["images"]))
    rate_ref = rate(lambda: iter(ref), lambda b: b)
    row("Loader (2 threads) vs DataLoader (2 workers), augmented, B=32", rate_ours, rate_ref,
        "images/s", f"{len(paths)} JPEGs per epoch, best of {epochs} epochs")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True, type=Path, help="the ../shared/data folder")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    covid = args.data / "covid-cxr-512"
    table = umcl.prepare("covid-cxr", covid / "metadata.csv", skip_bad=True)
    images = [r["image"] for r in table.rows() if r["image"]]
    print(json.dumps({"umcl": umcl.__version__, "cpus": os.cpu_count(), "images": len(images)}),
          flush=True)
    labeler_case(args.data, args.repeats)
    pipeline_case(images[:200], args.repeats)
    loader_case(table, args.repeats)


if __name__ == "__main__":
    main()

"""Reference image pipeline in PIL + torchvision, for the `images` criterion bench.

Does what umcl's pipeline does to each JPEG: open and convert to grayscale ("L"), resize to
224x224 with antialiasing (PIL's bilinear filter widens its support when it shrinks),
RandomResizedCrop(224, scale=(0.7, 1.0), ratio=(3/4, 4/3)), RandomAffine(degrees=7,
translate=(0.05, 0.05)), brightness and contrast jitter (0.2 each), ToTensor, Normalize with
the ImageNet mean/std after replicating to 3 channels.

Two variants of the same operations:
  pil     the geometric transforms on the PIL image (the usual torchvision idiom), then
          ToTensor and the jitter/normalise on the tensor
  tensor  ToTensor right after the resize, every transform on the tensor
The bench compares against the faster one.

Run with the project's reference venv:
  .venv-ref/bin/python crates/umcl-data/benches/reference/pil_pipeline.py \
      --images ../shared/data/covid-cxr-512/images --workers 1 --passes 3
Prints one JSON line: {"variant", "workers", "images", "seconds", "images_per_s",
"cpu_ms_per_image"} (CPU time of the timed loop, with one worker only; None with several).
"""

import argparse
import glob
import json
import multiprocessing as mp
import os
import time

SIZE = 224
MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]


def build(variant):
    import torch
    from PIL import Image
    from torchvision import transforms as T
    import torchvision.transforms.functional as F

    torch.set_num_threads(1)
    torch.manual_seed(0)
    crop = T.RandomResizedCrop(SIZE, scale=(0.7, 1.0), ratio=(3 / 4, 4 / 3), antialias=True)
    affine = T.RandomAffine(degrees=7, translate=(0.05, 0.05))

    def jitter_normalise(t):
        # Brightness then contrast, each factor uniform in [0.8, 1.2], as umcl does (fixed
        # order; ColorJitter would shuffle the order per call).
        b = float(torch.empty(1).uniform_(0.8, 1.2))
        c = float(torch.empty(1).uniform_(0.8, 1.2))
        t = F.adjust_brightness(t, b)
        t = F.adjust_contrast(t, c)
        t = t.expand(3, -1, -1)
        return F.normalize(t, MEAN, STD)

    def run_pil(path):
        img = Image.open(path).convert("L")
        img = img.resize((SIZE, SIZE), Image.BILINEAR)
        img = crop(img)
        img = affine(img)
        return jitter_normalise(F.to_tensor(img))

    def run_tensor(path):
        img = Image.open(path).convert("L")
        img = img.resize((SIZE, SIZE), Image.BILINEAR)
        t = F.to_tensor(img)
        t = crop(t)
        t = affine(t)
        return jitter_normalise(t)

    return run_pil if variant == "pil" else run_tensor


_RUN = None


def _init(variant):
    global _RUN
    _RUN = build(variant)


def _one(path):
    out = _RUN(path)
    return tuple(out.shape)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", required=True)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--variant", choices=["pil", "tensor"], default="pil")
    args = ap.parse_args()
    files = sorted(glob.glob(os.path.join(args.images, "*.jpg")))
    if not files:
        raise SystemExit(f"no .jpg files in {args.images}")
    work = files * args.passes
    if args.workers == 1:
        _init(args.variant)
        for f in files[:20]:  # warm-up
            _one(f)
        t0 = time.perf_counter()
        c0 = time.process_time()
        for f in work:
            assert _one(f) == (3, SIZE, SIZE)
        dt = time.perf_counter() - t0
        cpu = time.process_time() - c0
    else:
        with mp.get_context("fork").Pool(args.workers, _init, (args.variant,)) as pool:
            pool.map(_one, files[: 20 * args.workers], chunksize=4)  # warm-up
            t0 = time.perf_counter()
            shapes = pool.map(_one, work, chunksize=16)
            dt = time.perf_counter() - t0
            cpu = None  # spent in the workers, not measured here
            assert all(s == (3, SIZE, SIZE) for s in shapes)
    print(
        json.dumps(
            {
                "variant": args.variant,
                "workers": args.workers,
                "images": len(work),
                "seconds": round(dt, 4),
                "images_per_s": round(len(work) / dt, 1),
                "cpu_ms_per_image": None if cpu is None else round(1e3 * cpu / len(work), 4),
            }
        )
    )


if __name__ == "__main__":
    main()

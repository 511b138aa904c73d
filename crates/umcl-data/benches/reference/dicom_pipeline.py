"""Reference DICOM pipeline in pydicom + numpy + PIL, for the `dicom` criterion bench.

Does to each file what umcl does to an uncompressed DICOM chest X-ray on its way to the 224-px
training tensor (docs/dicom.md): pydicom.dcmread and `pixel_array` (the stored values), the
modality rescale (slope, intercept), the first window with the LINEAR function, the
MONOCHROME1 inversion, padding to a square of the longer side with black (the image at
offset -floor((w - s) / 2), as umcl's Fit::PadToSquare), a resize to 224x224 with PIL's
bilinear filter on a float 'F' image (antialiased: PIL widens the filter when it shrinks), and
the ImageNet mean/std normalisation into a float32 [3, 224, 224] array.

The numpy steps work in place on one float32 array: rescale and window fold into one
multiply-add (the inversion too, by flipping its sign), then one np.clip. One thread: the
OMP/BLAS thread counts are set to 1 before numpy is imported.

  --make PATH     write the bench file: 2500 rows x 2048 columns, MONOCHROME1, 12 of 16 bits,
                  slope 1, intercept 0, one LINEAR window, explicit VR little endian,
                  deterministic content (a smooth body-like field with noise; numpy seed 0)
  --files PATH..  time the pipeline on these files (folders: their *.dcm), --passes times
                  over all of them, after one untimed warm-up run

Run with the project's reference venv:
  .venv-ref/bin/python crates/umcl-data/benches/reference/dicom_pipeline.py --make /tmp/cxr.dcm
  .venv-ref/bin/python crates/umcl-data/benches/reference/dicom_pipeline.py \
      --files /tmp/cxr.dcm --passes 5
The last line printed is one JSON object: {"files", "passes", "seconds", "ms_per_image",
"cpu_ms_per_image"} (wall and CPU time of the timed loop).
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import glob  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402

import numpy as np  # noqa: E402
import pydicom  # noqa: E402
from PIL import Image  # noqa: E402

SIZE = 224
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)

ROWS, COLS = 2500, 2048


def first(value):
    """The first value of a possibly multi-valued element."""
    return float(value[0]) if isinstance(value, pydicom.multival.MultiValue) else float(value)


def process(path):
    ds = pydicom.dcmread(path)
    x = ds.pixel_array.astype(np.float32)
    if x.ndim != 2:
        raise ValueError(f"{path}: expected one grayscale frame, got shape {x.shape}")

    # Modality rescale and LINEAR window, v = clip((m - (c - 0.5)) / (w - 1) + 0.5, 0, 1) with
    # m = slope * s + intercept, as one multiply-add; MONOCHROME1 is 1 - v.
    slope = float(ds.get("RescaleSlope", 1.0))
    intercept = float(ds.get("RescaleIntercept", 0.0))
    c, w = first(ds.WindowCenter), first(ds.WindowWidth)
    if w < 1:
        raise ValueError(f"{path}: window width {w} < 1")
    scale = slope / (w - 1)
    offset = (intercept - (c - 0.5)) / (w - 1) + 0.5
    if ds.PhotometricInterpretation == "MONOCHROME1":
        scale, offset = -scale, 1.0 - offset
    x *= np.float32(scale)
    x += np.float32(offset)
    np.clip(x, 0.0, 1.0, out=x)

    # Pad to a square of the longer side, black around.
    h, wd = x.shape
    s = max(h, wd)
    square = np.zeros((s, s), np.float32)
    top, left = -((h - s) // 2), -((wd - s) // 2)
    square[top : top + h, left : left + wd] = x

    small = Image.fromarray(square, mode="F").resize((SIZE, SIZE), Image.BILINEAR)
    t = np.asarray(small, dtype=np.float32)
    return (t[None, :, :] - MEAN[:, None, None]) / STD[:, None, None]


def make(path):
    from pydicom.dataset import Dataset, FileMetaDataset

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:ROWS, 0:COLS].astype(np.float32)
    y /= ROWS - 1
    x /= COLS - 1
    # A bright background (MONOCHROME1: air is white) with a darker body, two lungs, and noise.
    body = np.exp(-(((x - 0.5) / 0.42) ** 6 + ((y - 0.55) / 0.5) ** 6))
    lungs = sum(
        np.exp(-(((x - cx) / 0.16) ** 2 + ((y - 0.45) / 0.28) ** 2)) for cx in (0.3, 0.7)
    )
    values = 3800 - 2600 * body + 900 * lungs + rng.normal(0, 40, (ROWS, COLS)).astype(np.float32)
    stored = np.clip(np.rint(values), 0, 4095).astype("<u2")

    def uid(part):
        return "2.25." + str(uuid.uuid5(uuid.NAMESPACE_URL, f"umcl-bench-dicom/{part}").int)

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # DX for presentation
    meta.MediaStorageSOPInstanceUID = uid("sop")
    meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"  # explicit VR little endian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.PatientID = "BENCH-001"
    ds.StudyInstanceUID = uid("study")
    ds.SeriesInstanceUID = uid("series")
    ds.ViewPosition = "PA"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.Rows, ds.Columns = ROWS, COLS
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.PixelRepresentation = 0
    ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = "1", "0", "US"
    ds.WindowCenter, ds.WindowWidth = "2200", "3000"
    ds.VOILUTFunction = "LINEAR"
    ds.add_new(0x7FE00010, "OW", stored.tobytes())
    ds.save_as(path, enforce_file_format=True)
    print(f"wrote {path}: {ROWS}x{COLS}, {os.path.getsize(path)} bytes")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--make", metavar="PATH")
    ap.add_argument("--files", nargs="+", metavar="PATH")
    ap.add_argument("--passes", type=int, default=3)
    args = ap.parse_args()
    if args.make:
        make(args.make)
    if not args.files:
        if not args.make:
            ap.error("give --make PATH and/or --files PATH")
        return
    files = []
    for p in args.files:
        files += sorted(glob.glob(os.path.join(p, "*.dcm"))) if os.path.isdir(p) else [p]
    if not files:
        raise SystemExit(f"no .dcm files in {args.files}")

    assert process(files[0]).shape == (3, SIZE, SIZE)  # warm-up
    t0 = time.perf_counter()
    c0 = time.process_time()
    for _ in range(args.passes):
        for f in files:
            out = process(f)
    dt = time.perf_counter() - t0
    cpu = time.process_time() - c0
    assert out.shape == (3, SIZE, SIZE) and out.dtype == np.float32
    n = len(files) * args.passes
    print(
        json.dumps(
            {
                "files": len(files),
                "passes": args.passes,
                "seconds": round(dt, 4),
                "ms_per_image": round(1e3 * dt / n, 3),
                "cpu_ms_per_image": round(1e3 * cpu / n, 3),
            }
        )
    )


if __name__ == "__main__":
    main()

"""Writes the DICOM fixtures of `umcl_data::images::dicom`, and the pixels each should decode to.

Every rule of docs/dicom.md gets a small file (40 columns x 32 rows: a smooth gradient, noise and
a few saturated pixels, so that windows and percentiles matter), and next to it `NAME.f32`: the
display values v in [0, 1] that the whole policy gives for the first frame (stored values,
modality LUT, VOI LUT / window / percentile, MONOCHROME1 inversion, RGB luma), row-major,
little-endian float32, rows x cols. The expected values are computed here, in float64 with
numpy, from the samples this script puts in the file and the parameters it writes; nothing is
read back through a DICOM library to compute them. pydicom only writes the files (and RLE
encodes and encapsulates), and reads them back at the end as a check: each file parses, its
pixel_array is the intended stored values where pydicom decodes it without plugins, and its
apply_modality_lut + apply_voi_lut agree with the expected pixels where they apply.

  fixtures/*.dcm, *.f32     the good files and their expected pixels
  fixtures/bad/*            files the decoder must refuse (with an error, never a panic)
  fixtures/pydicom/         a few small files copied from the pydicom 3.0.1 wheel (MIT; see
                            LICENSE-NOTE.md there), with expected pixels where pydicom decodes
                            them without plugins
  fixtures/expected.json    what each file is and what the decoder should report for it:
                            "good", "bad" and "pydicom" lists. For a bad file, "expect" is a
                            lowercase substring of the error message (compare case-insensitively),
                            or null where the message is not pinned down by the policy.

Lossy files ("lossy": true) hold the decode of libjpeg-turbo (through Pillow); another JPEG
decoder may differ by a grey level here and there, so compare those with a tolerance of a few
grey levels through the window. The others are exact up to float rounding.

Deterministic: numpy's default_rng(0), UIDs derived from the fixture names (2.25.<UUID-5>).
The fixtures folder is wiped and rewritten on every run.

Run with the project's reference venv, from the repository root:
  .venv-ref/bin/python crates/umcl-data/tests/dicom/make_fixtures.py
"""

import io
import json
import math
import shutil
import struct
import uuid
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence

HERE = Path(__file__).resolve().parent
OUT = HERE / "fixtures"
PYDICOM_TEST_FILES = Path(pydicom.__file__).resolve().parent / "data" / "test_files"

ROWS, COLS = 32, 40

IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
DEFLATED_LE = "1.2.840.10008.1.2.1.99"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
RLE = "1.2.840.10008.1.2.5"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
JPEG_EXTENDED = "1.2.840.10008.1.2.4.51"
JPEG_LOSSLESS = "1.2.840.10008.1.2.4.57"
JPEG_LOSSLESS_SV1 = "1.2.840.10008.1.2.4.70"
JPEG_LS = "1.2.840.10008.1.2.4.80"
JPEG_2000 = "1.2.840.10008.1.2.4.90"

DX_STORAGE = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation
CR_STORAGE = "1.2.840.10008.5.1.4.1.1.1"  # Computed Radiography Image Storage
SC_STORAGE = "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture Image Storage
MF_WORD_SC_STORAGE = "1.2.840.10008.5.1.4.1.1.7.3"  # Multi-frame Grayscale Word SC

UID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://umcl.invalid/tests/dicom/fixtures")

WINDOW_FUNCTIONS = ("LINEAR", "LINEAR_EXACT", "SIGMOID")
LUMA = (0.299, 0.587, 0.114)


def make_uid(*parts):
    """A deterministic UID under 2.25 (ISO/IEC 9834-8: the decimal form of a UUID)."""
    return "2.25." + str(uuid.uuid5(UID_NAMESPACE, "/".join(parts)).int)


# ----------------------------------------------------------------------------------------------
# Content


def smooth_field(rows=ROWS, cols=COLS):
    """A gradient with a soft bump, scaled to [0, 1]."""
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float64)
    f = 0.6 * x / (cols - 1) + 0.25 * y / (rows - 1)
    f += 0.3 * np.exp(-((x - 0.65 * cols) ** 2 + (y - 0.4 * rows) ** 2) / (0.08 * rows * cols))
    return (f - f.min()) / (f.max() - f.min())


def picture(rng, lo, hi, a, b, sigma, n_hi=5, n_lo=4, rows=ROWS, cols=COLS):
    """Integers in [lo, hi]: a gradient from about a to b, Gaussian noise, then n_hi pixels set to
    hi and n_lo to lo. Fewer than 0.5 % of 1280 pixels (6.4) on each side, so the percentile
    window does not see the saturated ones."""
    values = a + (b - a) * smooth_field(rows, cols) + rng.normal(0.0, sigma, (rows, cols))
    values = np.clip(np.rint(values), lo, hi).astype(np.int64)
    spots = rng.choice(rows * cols, n_hi + n_lo, replace=False)
    values.flat[spots[:n_hi]] = hi
    values.flat[spots[n_hi:]] = lo
    return values


# ----------------------------------------------------------------------------------------------
# The policy, step by step (docs/dicom.md), in float64


def stored_values(raw, bits_allocated, bits_stored, high_bit, signed, big_endian, count):
    """Step 1, from the bytes of the Pixel Data: the first `count` samples."""
    dtype = np.dtype("u1") if bits_allocated == 8 else np.dtype(">u2" if big_endian else "<u2")
    words = np.frombuffer(raw, dtype, count).astype(np.int64)
    s = (words >> (high_bit + 1 - bits_stored)) & ((1 << bits_stored) - 1)
    if signed:
        s = np.where(s >= 1 << (bits_stored - 1), s - (1 << bits_stored), s)
    return s


def modality_values(s, spec):
    """Step 2."""
    if "modality_lut" in spec:
        first, _bits, data = spec["modality_lut"]
        table = np.asarray(data, np.float64)
        return table[np.clip(s - first, 0, len(table) - 1)]
    return s * float(spec.get("slope", "1")) + float(spec.get("intercept", "0"))


def percentile_inverted_cdf(m, q):
    """The smallest value with at least q % of the values at or below it."""
    ordered = np.sort(m, axis=None)
    k = max(1, math.ceil(ordered.size * q / 100.0))
    return float(ordered[k - 1])


def window(m, c, w, function):
    if function == "LINEAR":
        lo, hi = c - 0.5 - (w - 1) / 2, c - 0.5 + (w - 1) / 2
        with np.errstate(divide="ignore", invalid="ignore"):  # w = 1: no pixel in between
            v = (m - (c - 0.5)) / (w - 1) + 0.5
        return np.where(m <= lo, 0.0, np.where(m > hi, 1.0, v))
    if function == "LINEAR_EXACT":
        v = (m - c) / w + 0.5
        return np.where(m <= c - w / 2, 0.0, np.where(m > c + w / 2, 1.0, v))
    assert function == "SIGMOID"
    return 1.0 / (1.0 + np.exp(-4.0 * (m - c) / w))


def window_usable(c, w, function):
    if not (math.isfinite(c) and math.isfinite(w)):
        return False
    return w >= 1 if function == "LINEAR" else w > 0


def voi_values(m, spec):
    """Step 3: the display values and the `voi` entry of expected.json."""
    if "voi_lut" in spec:
        first, bits, data = spec["voi_lut"]
        table = np.asarray(data, np.float64)
        index = np.clip(np.floor(m).astype(np.int64) - first, 0, len(table) - 1)
        v = np.clip(table[index] / (2**bits - 1), 0.0, 1.0)
        return v, {"kind": "lut", "descriptor": [len(table), first, bits]}
    if spec.get("windows"):
        c, w = (float(x) for x in spec["windows"][0])
        in_file = spec.get("function")
        function = in_file if in_file in WINDOW_FUNCTIONS else "LINEAR"
        if window_usable(c, w, function):
            entry = {
                "kind": "window",
                "index": 0,
                "count": len(spec["windows"]),
                "center": c,
                "width": w,
                "function": function,
            }
            if in_file is not None and in_file not in WINDOW_FUNCTIONS:
                entry["function_in_file"] = in_file
            return window(m, c, w, function), entry
    lo = percentile_inverted_cdf(m, 0.5)
    hi = percentile_inverted_cdf(m, 99.5)
    assert [lo, hi] == list(np.percentile(m, [0.5, 99.5], method="inverted_cdf"))
    if hi > lo:
        v = np.clip((m - lo) / (hi - lo), 0.0, 1.0)
    else:
        v = np.zeros_like(m)
    entry = {"kind": "percentile", "lo": lo, "hi": hi}
    if spec.get("windows"):
        c, w = spec["windows"][0]
        entry["rejected_window"] = {"center": float(c), "width": float(w)}
    return v, entry


def display(samples, photometric, bits_stored, spec):
    """Steps 2-4 for one frame of samples ((rows, cols) or (rows, cols, 3))."""
    if photometric == "RGB":
        r, g, b = (samples[..., i].astype(np.float64) for i in range(3))
        v = (LUMA[0] * r + LUMA[1] * g + LUMA[2] * b) / (2**bits_stored - 1)
        return v, {"kind": "none"}
    if photometric == "YBR_FULL":
        return samples[..., 0].astype(np.float64) / (2**bits_stored - 1), {"kind": "none"}
    v, voi = voi_values(modality_values(samples, spec), spec)
    if photometric == "MONOCHROME1":
        v = 1.0 - v
    else:
        assert photometric == "MONOCHROME2"
    return v, voi


# ----------------------------------------------------------------------------------------------
# Writing DICOM


def pack_words(s, bits_allocated, bits_stored, high_bit, big_endian=False, junk=None):
    """Stored values to Pixel Data bytes. Bits outside the stored ones are the sign extension
    (or zero), or `junk` where given."""
    s = np.asarray(s, np.int64)
    field = ((1 << bits_stored) - 1) << (high_bit + 1 - bits_stored)
    words = (s << (high_bit + 1 - bits_stored)) & ((1 << bits_allocated) - 1)
    if junk is not None:
        words = (words & field) | (junk & ~field & ((1 << bits_allocated) - 1))
    if bits_allocated == 8:
        return words.astype(np.uint8).tobytes()
    return words.astype(">u2" if big_endian else "<u2").tobytes()


def new_dataset(name, ts, *, patient, view, modality="DX", sop_class=DX_STORAGE):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = make_uid("sop", name)
    meta.TransferSyntaxUID = ts
    meta.ImplementationClassUID = make_uid("implementation", "make_fixtures.py")
    meta.ImplementationVersionName = "UMCL_FIXTURES"
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyDate = "20240102"
    ds.Modality = modality
    ds.PatientName = "Fixture^" + patient.replace("-", "")
    ds.PatientID = patient
    ds.StudyInstanceUID = make_uid("study", patient)
    ds.SeriesInstanceUID = make_uid("series", name)
    if view is not None:
        ds.ViewPosition = view
    return ds


def set_image_pixel(ds, *, rows, cols, bits_allocated, bits_stored, high_bit, signed,
                    photometric, samples=1, planar=None, frames=1):
    ds.SamplesPerPixel = samples
    ds.PhotometricInterpretation = photometric
    if planar is not None:
        ds.PlanarConfiguration = planar
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.Rows = rows
    ds.Columns = cols
    ds.BitsAllocated = bits_allocated
    ds.BitsStored = bits_stored
    ds.HighBit = high_bit
    ds.PixelRepresentation = 1 if signed else 0


def write_luts(ds, spec):
    """Writes the modality and VOI elements of `spec` (the same values `display` uses)."""
    if "modality_lut" in spec:
        first, bits, data = spec["modality_lut"]
        item = Dataset()
        item.add_new(0x00283002, "US", [len(data), first, bits])  # LUT Descriptor
        item.ModalityLUTType = spec.get("modality_lut_type", "US")
        item.add_new(0x00283006, "US", [int(x) for x in data])  # LUT Data
        ds.ModalityLUTSequence = Sequence([item])
    if "slope" in spec:
        ds.RescaleSlope = spec["slope"]
        ds.RescaleIntercept = spec["intercept"]
        ds.RescaleType = "US"
    if spec.get("windows"):
        ds.WindowCenter = [c for c, _ in spec["windows"]]
        ds.WindowWidth = [w for _, w in spec["windows"]]
        if "explanations" in spec:
            ds.WindowCenterWidthExplanation = spec["explanations"]
    if "function" in spec:
        ds.VOILUTFunction = spec["function"]
    if "voi_lut" in spec:
        first, bits, data = spec["voi_lut"]
        item = Dataset()
        item.add_new(0x00283002, "US", [len(data), first, bits])  # LUT Descriptor
        item.LUTExplanation = "FIXTURE GAMMA"
        item.add_new(0x00283006, "US", [int(x) for x in data])  # LUT Data
        ds.VOILUTSequence = Sequence([item])


def set_native_pixel_data(ds, raw, bits_allocated):
    ds.add_new(0x7FE00010, "OW" if bits_allocated > 8 else "OB", raw)


def set_encapsulated_pixel_data(ds, frames, lossy_ratio=None):
    ds.add_new(0x7FE00010, "OB", encapsulate(frames))
    if lossy_ratio is not None:
        ds.LossyImageCompression = "01"
        ds.LossyImageCompressionRatio = f"{lossy_ratio:.2f}"
        ds.LossyImageCompressionMethod = "ISO_10918_1"


def save(ds, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


# ----------------------------------------------------------------------------------------------
# A lossless JPEG encoder (ITU T.81, Annex H: process 14, one component, no restarts)

# Code lengths for the 17 difference categories (SSSS 0..16): 6 codes of 3 bits, two each of
# 4..8 bits and one of 9. Any prefix code that leaves the all-ones code unused will do (T.81 C).
HUFF_BITS = [0, 0, 6, 2, 2, 2, 2, 2, 1, 0, 0, 0, 0, 0, 0, 0]
HUFF_VALS = [4, 5, 6, 7, 8, 9, 3, 10, 2, 11, 1, 12, 0, 13, 14, 15, 16]


def huffman_codes(bits, values):
    """Canonical codes (T.81 Annex C): symbol -> (code, length)."""
    codes, code, k = {}, 0, 0
    for length in range(1, 17):
        for _ in range(bits[length - 1]):
            codes[values[k]] = (code, length)
            code += 1
            k += 1
        code <<= 1
    return codes


class BitWriter:
    def __init__(self):
        self.out = bytearray()
        self.acc = 0
        self.n = 0

    def put(self, value, nbits):
        for i in range(nbits - 1, -1, -1):
            self.acc = (self.acc << 1) | ((value >> i) & 1)
            self.n += 1
            if self.n == 8:
                self.out.append(self.acc)
                if self.acc == 0xFF:
                    self.out.append(0x00)  # byte stuffing
                self.acc, self.n = 0, 0

    def flush(self):
        if self.n:
            self.put((1 << (8 - self.n)) - 1, 8 - self.n)  # pad with 1 bits
        return bytes(self.out)


def predict(x, r, c, predictor, precision):
    """T.81 H.1.2.1, with Pt = 0; the first line and column use fixed predictors."""
    if r == 0 and c == 0:
        return 1 << (precision - 1)
    if r == 0:
        return x[r][c - 1]
    if c == 0:
        return x[r - 1][c]
    ra, rb, rc = x[r][c - 1], x[r - 1][c], x[r - 1][c - 1]
    return {
        1: ra,
        2: rb,
        3: rc,
        4: ra + rb - rc,
        5: ra + ((rb - rc) >> 1),
        6: rb + ((ra - rc) >> 1),
        7: (ra + rb) >> 1,
    }[predictor]


def jpeg_lossless(image, precision, predictor):
    """A complete SOF3 JPEG stream of a (rows, cols) array of unsigned `precision`-bit values."""
    rows, cols = image.shape
    x = image.tolist()
    codes = huffman_codes(HUFF_BITS, HUFF_VALS)
    bits = BitWriter()
    for r in range(rows):
        for c in range(cols):
            diff = (x[r][c] - predict(x, r, c, predictor, precision)) % 65536
            if diff > 32768:
                diff -= 65536  # now in -32767..32768
            ssss = 16 if diff == 32768 else abs(diff).bit_length()
            bits.put(*codes[ssss])
            if 0 < ssss < 16:  # category 16 has no extra bits
                bits.put(diff if diff > 0 else diff + (1 << ssss) - 1, ssss)

    def segment(marker, payload):
        return struct.pack(">HH", marker, len(payload) + 2) + payload

    return b"".join(
        [
            b"\xff\xd8",  # SOI
            segment(0xFFC3, struct.pack(">BHHB", precision, rows, cols, 1) + bytes([1, 0x11, 0])),
            segment(0xFFC4, bytes([0x00]) + bytes(HUFF_BITS) + bytes(HUFF_VALS)),  # DC table 0
            segment(0xFFDA, bytes([1, 1, 0x00, predictor, 0, 0])),  # Ss = predictor, Pt = 0
            bits.flush(),
            b"\xff\xd9",  # EOI
        ]
    )


# ----------------------------------------------------------------------------------------------
# The fixtures

GOOD = []  # expected.json entries
CHECKS = []  # (path, what pydicom's pixel_array should give for frame 0, or None)


def good(name, ds, *, spec, samples, bits_stored, what, lossy=False, check_pixels=True):
    """Saves `ds`, and the expected pixels of frame 0 (`samples`: its stored values). With
    `check_pixels`, pydicom's pixel_array must give `samples` back."""
    path = OUT / f"{name}.dcm"
    save(ds, path)
    photometric = str(ds.PhotometricInterpretation)
    v, voi = display(samples, photometric, bits_stored, spec)
    assert v.shape == (ds.Rows, ds.Columns) and np.all((v >= 0) & (v <= 1))
    v.astype("<f4").tofile(OUT / f"{name}.f32")
    GOOD.append(
        {
            "file": path.name,
            "expected": f"{name}.f32",
            "rows": int(ds.Rows),
            "cols": int(ds.Columns),
            "frames": int(ds.get("NumberOfFrames", 1)),
            "photometric": photometric,
            "transfer_syntax": str(ds.file_meta.TransferSyntaxUID),
            "patient_id": str(ds.PatientID),
            "study_uid": str(ds.StudyInstanceUID),
            "series_uid": str(ds.SeriesInstanceUID),
            "sop_uid": str(ds.SOPInstanceUID),
            "view_position": str(ds.ViewPosition) if "ViewPosition" in ds else None,
            "voi": voi,
            "lossy": lossy,
            "what": what,
        }
    )
    CHECKS.append((path, samples if check_pixels else None))


def mono(name, image, *, ts=EXPLICIT_LE, patient, view, spec=None, photometric="MONOCHROME2",
         bits_allocated=16, bits_stored=12, high_bit=None, signed=False, junk=None,
         modality="DX", sop_class=DX_STORAGE, what, check_pixels=True):
    """A native (uncompressed) single-frame grayscale fixture."""
    spec = spec or {}
    high_bit = bits_stored - 1 if high_bit is None else high_bit
    ds = new_dataset(name, ts, patient=patient, view=view, modality=modality, sop_class=sop_class)
    set_image_pixel(ds, rows=ROWS, cols=COLS, bits_allocated=bits_allocated,
                    bits_stored=bits_stored, high_bit=high_bit, signed=signed,
                    photometric=photometric)
    write_luts(ds, spec)
    big_endian = ts == EXPLICIT_BE
    raw = pack_words(image, bits_allocated, bits_stored, high_bit, big_endian, junk)
    set_native_pixel_data(ds, raw, bits_allocated)
    s = stored_values(raw, bits_allocated, bits_stored, high_bit, signed, big_endian, ROWS * COLS)
    s = s.reshape(ROWS, COLS)
    assert np.array_equal(s, image)
    good(name, ds, spec=spec, samples=s, bits_stored=bits_stored, what=what,
         check_pixels=check_pixels)
    return ds


def make_good(rng):
    img12 = picture(rng, 0, 4095, 350, 3750, 60)

    # 1, 2: the baseline, and the same with MONOCHROME1
    linear = {"windows": [("2000", "1601")]}
    mono("mono2_12in16_window_explicit", img12, patient="UMCL-001", view="PA", spec=linear,
         what="MONOCHROME2, 12 of 16 bits, one LINEAR window, explicit VR LE")
    mono("mono1_12in16_window_explicit", img12, patient="UMCL-001", view="AP", spec=linear,
         photometric="MONOCHROME1",
         what="as mono2_12in16_window_explicit but MONOCHROME1: expected is inverted")

    # 3: signed, junk above the stored bits, rescale, implicit VR
    signed_img = picture(rng, -2048, 2047, -1500, 1700, 50)
    junk = rng.integers(0, 16, signed_img.shape) << 12
    sign_extension = np.where(signed_img < 0, 0xF000, 0)
    junk = np.where(junk == sign_extension, junk ^ 0x5000, junk)  # never the sign extension
    raw_words = pack_words(signed_img, 16, 12, 11, junk=junk)
    assert np.any(np.frombuffer(raw_words, "<u2") >> 12 != sign_extension.ravel() >> 12)
    mono("signed_12in16_junk_rescale_implicit", signed_img, ts=IMPLICIT_LE, patient="UMCL-002",
         view="LATERAL", signed=True, junk=junk, modality="CR", sop_class=CR_STORAGE,
         spec={"slope": "2", "intercept": "-1024", "windows": [("300", "4001")]},
         what="signed 12 of 16 bits with random junk in bits 12-15, slope 2 intercept -1024, "
              "window in rescaled units, implicit VR LE")

    # 4: two windows, the first is used
    mono("mono2_two_windows", img12, patient="UMCL-002", view=None,
         spec={"windows": [("1800", "2000"), ("2600", "800")],
               "explanations": ["SOFT", "BONE"]},
         what="two windows (SOFT, BONE) with explanations: the first is used; no ViewPosition")

    # 5, 6: LINEAR_EXACT and SIGMOID, on a narrow range so that the formulas differ visibly
    narrow = picture(rng, 0, 4095, 1940, 2060, 8)
    mono("mono2_window_linear_exact", narrow, patient="UMCL-003", view="PA",
         spec={"windows": [("2000.5", "64")], "function": "LINEAR_EXACT"},
         what="VOI LUT Function LINEAR_EXACT, narrow window, non-integer centre")
    mono("mono2_window_sigmoid", narrow, patient="UMCL-003", view="AP",
         spec={"windows": [("2000.5", "64")], "function": "SIGMOID"},
         what="VOI LUT Function SIGMOID")

    # 7: a VOI LUT Sequence wins over the window
    n = 3000
    gamma = np.rint(65535 * (np.arange(n) / (n - 1)) ** 0.6).astype(int).tolist()
    mono("mono2_voi_lut_sequence_and_window", img12, patient="UMCL-004", view="PA",
         spec={"voi_lut": (500, 16, gamma), "windows": [("2000", "1000")]},
         what="VOI LUT Sequence [3000, 500, 16] (gamma 0.6) and a window: the LUT wins; "
              "values below 500 and above 3499 clamp to the ends of the LUT")

    # 8: a Modality LUT Sequence, then a window in its output units
    n = 3500
    root = np.rint(60000 * np.sqrt(np.arange(n) / (n - 1))).astype(int).tolist()
    mono("mono2_modality_lut_sequence", img12, patient="UMCL-004", view="LATERAL",
         spec={"modality_lut": (200, 16, root), "windows": [("40000", "30000")]},
         what="Modality LUT Sequence [3500, 200, 16] (square root), ModalityLUTType US, "
              "then a window in the LUT's units")

    # 9, 10: no VOI: percentile window
    mono("mono2_12in16_no_voi_percentile", img12, patient="UMCL-005", view="PA",
         what="no VOI at all: 0.5/99.5 inverted-CDF percentile window; 5 saturated white and 4 "
              "black pixels stay outside it")
    img8 = picture(rng, 0, 255, 25, 230, 6)
    mono("mono2_8bit_no_voi_percentile", img8, patient="UMCL-005", view="AP",
         bits_allocated=8, bits_stored=8,
         what="8 bits allocated and stored, no VOI: percentile window")

    # 11: a window of width 0 is not used
    mono("mono2_window_width0_percentile", img12, patient="UMCL-006", view=None,
         spec={"windows": [("2000", "0")]},
         what="window width 0 (invalid for LINEAR): the percentile window takes its place")

    mono("mono2_window_width1_threshold", img12, patient="UMCL-006", view="AP",
         spec={"windows": [("2000", "1")]},
         what="LINEAR window of width 1 (the smallest valid): a threshold, 0 up to 1999.5 and "
              "1 above")

    # 12, 13: deflated, big endian
    mono("mono2_deflated_explicit", img12, ts=DEFLATED_LE, patient="UMCL-006", view="PA",
         spec={"windows": [("2100", "2500")]},
         what="Deflated Explicit VR Little Endian, one window")
    mono("mono2_16bit_big_endian", img12 * 16 + 7, ts=EXPLICIT_BE, patient="UMCL-007",
         view="AP", bits_stored=16, spec={"windows": [("30000", "40000")]},
         what="Explicit VR Big Endian, 16 of 16 bits, one window")

    # 14, 15: RLE Lossless
    rle("mono1_12in16_rle", img12, patient="UMCL-007", view="LATERAL", bits_allocated=16,
        bits_stored=12, photometric="MONOCHROME1", spec={"windows": [("2000", "3000")]},
        what="RLE Lossless, 12 of 16 bits, MONOCHROME1, one window")
    rle("mono2_8bit_rle", img8, patient="UMCL-008", view="PA", bits_allocated=8, bits_stored=8,
        photometric="MONOCHROME2", spec={}, what="RLE Lossless, 8 bits, no VOI: percentile")

    # 16, 17: JPEG baseline 8-bit; the same stream under JPEG Extended
    jpeg_img = picture(rng, 0, 255, 30, 220, 4).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(jpeg_img).save(buf, format="JPEG", quality=90)
    stream = buf.getvalue()
    decoded = np.asarray(Image.open(io.BytesIO(stream))).astype(np.int64)
    assert decoded.shape == (ROWS, COLS)
    for name, ts, view in [("mono2_8bit_jpeg_baseline", JPEG_BASELINE, "PA"),
                           ("mono2_8bit_jpeg_extended", JPEG_EXTENDED, None)]:
        ds = new_dataset(name, ts, patient="UMCL-008", view=view)
        set_image_pixel(ds, rows=ROWS, cols=COLS, bits_allocated=8, bits_stored=8, high_bit=7,
                        signed=False, photometric="MONOCHROME2")
        spec = {"windows": [("128", "200")]}
        write_luts(ds, spec)
        set_encapsulated_pixel_data(ds, [stream], lossy_ratio=ROWS * COLS / len(stream))
        good(name, ds, spec=spec, samples=decoded, bits_stored=8, lossy=True,
             what=f"8-bit baseline JPEG (Pillow, quality 90) under {ts}, one window; expected "
                  "from libjpeg-turbo's decode")

    # 18, 19: JPEG lossless (this script's encoder)
    img16 = picture(rng, 0, 65535, 3000, 62000, 700, n_hi=3, n_lo=3)
    img16[0, 0] = 0  # predicted 32768: difference -32768, category 16
    img16[0, 5], img16[0, 6] = 65535, 32767  # difference -32768 again
    lossless("mono2_16bit_jpeg_lossless_p7", img16, ts=JPEG_LOSSLESS, precision=16,
             predictor=7, patient="UMCL-009", view="PA", spec={},
             what="JPEG Lossless process 14, precision 16, predictor 7, with category-16 "
                  "differences; no VOI: percentile")
    lossless("mono2_12in16_jpeg_lossless_sv1", img12, ts=JPEG_LOSSLESS_SV1, precision=12,
             predictor=1, patient="UMCL-009", view="AP", spec={"windows": [("1900", "2400")]},
             what="JPEG Lossless SV1, precision 12 (12 of 16 bits), one window")

    # 20: two frames, frame 1 on another range (the percentile is frame 0's)
    frame1 = picture(rng, 0, 4095, 3000, 4000, 30)
    name = "mono2_12in16_two_frames"
    ds = new_dataset(name, EXPLICIT_LE, patient="UMCL-010", view="PA", sop_class=MF_WORD_SC_STORAGE)
    set_image_pixel(ds, rows=ROWS, cols=COLS, bits_allocated=16, bits_stored=12, high_bit=11,
                    signed=False, photometric="MONOCHROME2", frames=2)
    raw = pack_words(img12, 16, 12, 11) + pack_words(frame1, 16, 12, 11)
    set_native_pixel_data(ds, raw, 16)
    s = stored_values(raw, 16, 12, 11, False, False, ROWS * COLS).reshape(ROWS, COLS)
    good(name, ds, spec={}, samples=s, bits_stored=12,
         what="2 frames, uncompressed, no VOI: frame 0, with the percentile window of frame 0 "
              "only (frame 1 is much brighter)")

    # 21, 22: RGB, planar and interleaved; 23: YBR_FULL
    base = picture(rng, 0, 255, 20, 235, 5)
    rgb = np.stack([base, np.clip(base + 20, 0, 255), np.clip(255 - base, 0, 255)], axis=-1)
    rgb.flat[rng.choice(rgb.size, 12, replace=False)] = 255
    for name, planar in [("rgb_planar1", 1), ("rgb_planar0", 0)]:
        colour(name, rgb, "RGB", planar, patient="UMCL-011", view="PA" if planar else None,
               what=f"RGB, Planar Configuration {planar}, 8 bits: luma 0.299/0.587/0.114, "
                    "no VOI")
    ybr = np.stack([base, np.full_like(base, 128) + (base - 128) // 4,
                    np.clip(255 - base, 0, 255)], axis=-1)
    colour("ybr_full_interleaved", ybr, "YBR_FULL", 0, patient="UMCL-011", view="AP",
           what="YBR_FULL uncompressed, interleaved: the Y plane / 255")

    # Beyond the list: a flat image, High Bit above Bits Stored - 1, an unknown VOI function
    flat = np.full((ROWS, COLS), 1200, np.int64)
    flat.flat[[7, 300, 901]] = 4095
    flat.flat[[55, 640]] = 0
    mono("mono2_flat_percentile_black", flat, patient="UMCL-012", view="PA",
         what="no VOI and 99 % of pixels equal: percentile lo == hi, so the whole image is "
              "black (the 5 outliers too)")
    high = rng.integers(0, 16, img12.shape)  # junk in the 4 low bits
    mono("mono2_12in16_highbit15", img12, patient="UMCL-012", view="AP", high_bit=15,
         junk=high, spec=linear,
         what="Bits Stored 12, High Bit 15: stored values in bits 4-15 (shift right by 4), "
              "junk in bits 0-3",
         check_pixels=False)  # pydicom takes High Bit to be Bits Stored - 1
    mono("mono2_window_unknown_function", img12, patient="UMCL-012", view="LATERAL",
         spec={"windows": [("2000", "1601")], "function": "GAMMA"},
         what="VOI LUT Function GAMMA (unknown): LINEAR is used; same pixels as "
              "mono2_12in16_window_explicit")


def rle(name, image, *, patient, view, bits_allocated, bits_stored, photometric, spec, what):
    ds = new_dataset(name, EXPLICIT_LE, patient=patient, view=view)
    set_image_pixel(ds, rows=ROWS, cols=COLS, bits_allocated=bits_allocated,
                    bits_stored=bits_stored, high_bit=bits_stored - 1, signed=False,
                    photometric=photometric)
    write_luts(ds, spec)
    arr = image.astype(np.uint8 if bits_allocated == 8 else np.uint16)
    ds.compress(RLE, arr, encoding_plugin="pydicom", generate_instance_uid=False)
    good(name, ds, spec=spec, samples=image, bits_stored=bits_stored, what=what)


def lossless(name, image, *, ts, precision, predictor, patient, view, spec, what):
    ds = new_dataset(name, ts, patient=patient, view=view)
    set_image_pixel(ds, rows=ROWS, cols=COLS, bits_allocated=16, bits_stored=precision,
                    high_bit=precision - 1, signed=False, photometric="MONOCHROME2")
    write_luts(ds, spec)
    stream = jpeg_lossless(image, precision, predictor)
    set_encapsulated_pixel_data(ds, [stream])
    good(name, ds, spec=spec, samples=image, bits_stored=precision, what=what,
         check_pixels=False)  # pydicom needs a plugin for lossless JPEG


def colour(name, samples, photometric, planar, *, patient, view, what):
    ds = new_dataset(name, EXPLICIT_LE, patient=patient, view=view, sop_class=SC_STORAGE)
    set_image_pixel(ds, rows=ROWS, cols=COLS, bits_allocated=8, bits_stored=8, high_bit=7,
                    signed=False, photometric=photometric, samples=3, planar=planar)
    ordered = np.moveaxis(samples, -1, 0) if planar == 1 else samples
    raw = pack_words(ordered, 8, 8, 7)
    set_native_pixel_data(ds, raw, 8)
    flat = stored_values(raw, 8, 8, 7, False, False, ROWS * COLS * 3)
    if planar == 1:
        s = np.moveaxis(flat.reshape(3, ROWS, COLS), 0, -1)
    else:
        s = flat.reshape(ROWS, COLS, 3)
    assert np.array_equal(s, samples)
    good(name, ds, spec={}, samples=s, bits_stored=8, what=what)


# ----------------------------------------------------------------------------------------------
# Bad files

BAD = []


def bad(name, data, what, expect=None):
    path = OUT / "bad" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    BAD.append({"file": f"bad/{name}", "what": what, "expect": expect})


def to_bytes(ds):
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def make_bad(rng):
    img12 = picture(rng, 0, 4095, 350, 3750, 60)

    def plain(name, **kw):
        ds = new_dataset(name, kw.pop("ts", EXPLICIT_LE), patient="UMCL-099", view="PA")
        fields = dict(rows=ROWS, cols=COLS, bits_allocated=16, bits_stored=12, high_bit=11,
                      signed=False, photometric="MONOCHROME2")
        fields.update(kw)
        set_image_pixel(ds, **fields)
        return ds

    ds = plain("truncated")
    set_native_pixel_data(ds, pack_words(img12, 16, 12, 11), 16)
    data = to_bytes(ds)
    bad("truncated_in_pixel_data.dcm", data[: len(data) - ROWS * COLS],
        "a good file cut in the middle of its Pixel Data")

    ds = plain("missing_pixel_data")
    bad("missing_pixel_data.dcm", to_bytes(ds), "all the image attributes, no Pixel Data")

    for name, ts, what in [
        ("jpeg2000_unsupported.dcm", JPEG_2000, "JPEG 2000 (junk codestream)"),
        ("jpegls_unsupported.dcm", JPEG_LS, "JPEG-LS (junk codestream)"),
    ]:
        ds = plain(name, ts=ts)
        junk = b"\xff\x4f\xff\x51" if ts == JPEG_2000 else b"\xff\xd8\xff\xf7"
        set_encapsulated_pixel_data(ds, [junk + rng.integers(0, 256, 200, np.uint8).tobytes()])
        bad(name, to_bytes(ds), f"unsupported transfer syntax: {what}", expect=ts)

    # Hand-patched headers
    ds = plain("bogus_vr")
    set_native_pixel_data(ds, pack_words(img12, 16, 12, 11), 16)
    data = bytearray(to_bytes(ds))
    rows_at = data.index(b"\x28\x00\x10\x00US\x02\x00")  # (0028,0010) Rows, US, length 2
    data[rows_at + 4 : rows_at + 6] = b"\x00\x00"
    bad("bogus_vr.dcm", bytes(data), "(0028,0010) Rows with the VR bytes 00 00")

    ds = plain("odd_length")
    set_native_pixel_data(ds, pack_words(img12, 16, 12, 11), 16)
    data = bytearray(to_bytes(ds))
    pid_at = data.index(b"\x10\x00\x20\x00LO")  # (0010,0020) Patient ID, LO
    data[pid_at + 6 : pid_at + 8] = struct.pack("<H", 0xFFF1)
    bad("odd_length_past_end.dcm", bytes(data),
        "(0010,0020) Patient ID with the odd length 0xFFF1, past the end of the file")

    ds = plain("bits_allocated_32", bits_allocated=32, bits_stored=32, high_bit=31)
    ds.add_new(0x7FE00010, "OW", img12.astype("<u4").tobytes())
    bad("bits_allocated_32.dcm", to_bytes(ds), "Bits Allocated 32", expect="32")

    ds = plain("bits_allocated_1", bits_allocated=1, bits_stored=1, high_bit=0)
    ds.add_new(0x7FE00010, "OB", np.packbits(img12 > 2000, bitorder="little").tobytes())
    bad("bits_allocated_1.dcm", to_bytes(ds), "Bits Allocated 1 (bit-packed)")

    for name, bs, hb, what in [
        ("bits_stored_0.dcm", 0, 11, "Bits Stored 0"),
        ("bits_stored_17.dcm", 17, 16, "Bits Stored 17 with Bits Allocated 16"),
        ("high_bit_below_bits_stored.dcm", 12, 10, "Bits Stored 12, High Bit 10"),
    ]:
        ds = plain(name, bits_stored=bs, high_bit=hb)
        set_native_pixel_data(ds, pack_words(img12, 16, 12, 11), 16)
        bad(name, to_bytes(ds), what)

    ds = plain("palette", bits_allocated=8, bits_stored=8, high_bit=7,
               photometric="PALETTE COLOR")
    ramp = list(range(0, 65536, 256))
    for tag_descriptor, tag_data in [(0x00281101, 0x00281201), (0x00281102, 0x00281202),
                                     (0x00281103, 0x00281203)]:
        ds.add_new(tag_descriptor, "US", [256, 0, 16])
        ds.add_new(tag_data, "OW", struct.pack("<256H", *ramp))
    set_native_pixel_data(ds, (img12 >> 4).astype(np.uint8).tobytes(), 8)
    bad("palette_color.dcm", to_bytes(ds), "PALETTE COLOR with 8-bit indices",
        expect="palette")

    ds = plain("ybr422", bits_allocated=8, bits_stored=8, high_bit=7, samples=3, planar=0,
               photometric="YBR_FULL_422")
    # Y0 Y1 Cb Cr for each pair of pixels
    y = (img12 >> 4).astype(np.uint8).reshape(ROWS, COLS // 2, 2)
    chroma = np.full((ROWS, COLS // 2, 2), 128, np.uint8)
    set_native_pixel_data(ds, np.concatenate([y, chroma], axis=-1).tobytes(), 8)
    bad("ybr_full_422_uncompressed.dcm", to_bytes(ds), "YBR_FULL_422, uncompressed",
        expect="422")

    bad("not_dicom.dcm", b"This is not a DICOM file, only text with a .dcm name.\n" * 4,
        "a text file named .dcm")
    bad("empty.dcm", b"", "an empty file")
    bad("preamble_only.dcm", bytes(128) + b"DICM", "128-byte preamble and DICM, nothing after")


# ----------------------------------------------------------------------------------------------
# Files copied from the pydicom wheel

PYDICOM_FILES = [
    ("MR_small.dcm", "MR 64x64, signed 16 bits, window 600/1600, explicit VR LE"),
    ("MR_small_RLE.dcm", "MR_small as RLE Lossless"),
    ("CT_small.dcm", "CT 128x128, signed 16 bits, rescale -1024, no window: percentile"),
    ("ExplVR_BigEnd.dcm", "RGB 60x80 (rows x cols), Planar Configuration 1, explicit VR BE"),
    ("SC_rgb_jpeg_dcmtk.dcm", "YBR_FULL baseline JPEG (dcmtk), 100x100: the decoder gives RGB"),
    ("JPGExtended.dcm", "12-bit JPEG Extended (process 4), 1024x256: pydicom cannot decode it "
                        "without plugins, so only the metadata is recorded"),
]

PYDICOM_NOTE = """\
# Files from pydicom

These files are copied unchanged from the pydicom 3.0.1 wheel (`pydicom/data/test_files/`, as
installed by `pip install pydicom==3.0.1`), by `../../make_fixtures.py`:

{files}

## Licence

pydicom is distributed under the MIT licence; the notice below is the one in the wheel's
`LICENSE` file (its GDCM part covers pydicom's private dictionary, not these files). The test
files ship inside the same package. Their `README.txt` says that they were obtained from public
sources, downsized and stripped of anything that looks like a patient name, and that its author
believes "there is no restriction on using any of these files in this manner". Asked whether
another open-source project may use them (pydicom issue #1112, for dicom-rs), pydicom's
maintainer answered yes, pydicom being MIT-licensed, and asked that the source be referenced.

Origins, from that README: MR_small (and its RLE version) and CT_small were downsized from the
NEMA WG04 sample sets (`MR1_UNC`, `CT1_UNC`); JPGExtended is a fixed version of `NM1_JPLY` from
the same sets; ExplVR_BigEnd was downsized from `US-RGB-8-epicard` (barre.nom.fr samples);
SC_rgb_jpeg_dcmtk was made by pydicom's contributors with dcmtk.

```
Copyright (c) 2008-2020 Darcy Mason and pydicom contributors

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in
all copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN
THE SOFTWARE.
```
"""


def text(ds, keyword):
    return str(ds.get(keyword)) if ds.get(keyword) else None


def make_pydicom():
    folder = OUT / "pydicom"
    folder.mkdir(parents=True)
    entries = []
    for name, what in PYDICOM_FILES:
        shutil.copyfile(PYDICOM_TEST_FILES / name, folder / name)
        ds = pydicom.dcmread(folder / name)
        photometric = str(ds.PhotometricInterpretation)
        entry = {
            "file": f"pydicom/{name}",
            "rows": int(ds.Rows),
            "cols": int(ds.Columns),
            "frames": int(ds.get("NumberOfFrames", 1) or 1),
            "photometric": photometric,
            "transfer_syntax": str(ds.file_meta.TransferSyntaxUID),
            "patient_id": text(ds, "PatientID"),
            "study_uid": text(ds, "StudyInstanceUID"),
            "series_uid": text(ds, "SeriesInstanceUID"),
            "sop_uid": text(ds, "SOPInstanceUID"),
            "view_position": str(ds.ViewPosition) if ds.get("ViewPosition") else None,
            "lossy": ds.file_meta.TransferSyntaxUID in (JPEG_BASELINE, JPEG_EXTENDED),
            "what": what,
        }
        if name == "JPGExtended.dcm":
            entry["expect_decodes"] = True
            entry["voi"] = {"kind": "percentile", "lo": None, "hi": None}
            entries.append(entry)
            continue
        samples = ds.pixel_array  # the first (only) frame
        if photometric == "YBR_FULL":
            # Decoded by Pillow, which turns the JPEG's YCbCr into RGB (as ours must).
            assert ds.file_meta.TransferSyntaxUID == JPEG_BASELINE
            photometric_for_policy = "RGB"
        else:
            photometric_for_policy = photometric
            # Bits Stored == Bits Allocated here, so pixel_array is the stored values.
            assert int(ds.BitsStored) == int(ds.BitsAllocated)
        spec = {}
        if "RescaleSlope" in ds:
            spec["slope"], spec["intercept"] = str(ds.RescaleSlope), str(ds.RescaleIntercept)
        if "WindowCenter" in ds:
            centres = ds.WindowCenter if ds["WindowCenter"].VM > 1 else [ds.WindowCenter]
            widths = ds.WindowWidth if ds["WindowWidth"].VM > 1 else [ds.WindowWidth]
            spec["windows"] = [(str(c), str(w)) for c, w in zip(centres, widths)]
        if "VOILUTFunction" in ds:
            spec["function"] = str(ds.VOILUTFunction)
        assert "ModalityLUTSequence" not in ds and "VOILUTSequence" not in ds
        v, voi = display(samples.astype(np.int64), photometric_for_policy, int(ds.BitsStored),
                         spec)
        v.astype("<f4").tofile(folder / (name[:-4] + ".f32"))
        entry["expected"] = f"pydicom/{name[:-4]}.f32"
        entry["voi"] = voi
        entries.append(entry)
    listing = "\n".join(f"- `{name}`: {what}" for name, what in PYDICOM_FILES)
    (folder / "LICENSE-NOTE.md").write_text(PYDICOM_NOTE.format(files=listing))
    return entries


# ----------------------------------------------------------------------------------------------
# Checks with pydicom: every good file reads back and holds the samples intended


def pydicom_window(samples, ds):
    """pydicom's modality LUT + VOI, scaled to [0, 1] the way its output range is built."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    m = apply_modality_lut(samples, ds)
    out = apply_voi_lut(m, ds)
    if "VOILUTSequence" in ds:
        return out / (2 ** ds.VOILUTSequence[0].LUTDescriptor[2] - 1)
    if "ModalityLUTSequence" in ds:
        y_min, y_max = 0, 2 ** ds.ModalityLUTSequence[0].LUTDescriptor[2] - 1
    elif ds.PixelRepresentation == 0:
        y_min, y_max = 0, 2**ds.BitsStored - 1
    else:
        y_min, y_max = -(2 ** (ds.BitsStored - 1)), 2 ** (ds.BitsStored - 1) - 1
    if "RescaleSlope" in ds:
        y_min = y_min * ds.RescaleSlope + ds.RescaleIntercept
        y_max = y_max * ds.RescaleSlope + ds.RescaleIntercept
    return (out - y_min) / (y_max - y_min)


def check():
    for (path, intended), entry in zip(CHECKS, GOOD):
        ds = pydicom.dcmread(path)
        assert ds.SOPInstanceUID == entry["sop_uid"], path
        assert ds.file_meta.TransferSyntaxUID == entry["transfer_syntax"], path
        assert path.read_bytes()[128:132] == b"DICM"
        if intended is None:
            continue
        if entry["photometric"] == "YBR_FULL":
            ds.pixel_array_options(raw=True)  # no conversion to RGB
        arr = ds.pixel_array
        frame0 = arr[0] if entry["frames"] > 1 else arr
        assert np.array_equal(frame0.astype(np.int64), intended), path
        voi = entry["voi"]
        if voi["kind"] == "lut" or (voi["kind"] == "window" and "function_in_file" not in voi):
            expected = np.fromfile(OUT / entry["expected"], "<f4").reshape(frame0.shape)
            theirs = pydicom_window(frame0, ds)
            if entry["photometric"] == "MONOCHROME1":
                theirs = 1 - theirs
            assert np.allclose(theirs, expected, atol=1e-6), path
    # pydicom decodes the files that only this policy refuses (Bits Allocated 1 and 32, High
    # Bit, PALETTE COLOR, YBR_FULL_422); the others are beyond any decoder.
    policy_only = ("bits_allocated_", "high_bit_", "palette_", "ybr_full_422_")
    for entry in BAD:
        if Path(entry["file"]).name.startswith(policy_only):
            continue
        path = OUT / entry["file"]
        try:
            ds = pydicom.dcmread(path)
            ds.pixel_array
        except Exception:
            pass
        else:
            raise AssertionError(f"pydicom decodes {path}")


def main():
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    rng = np.random.default_rng(0)
    make_good(rng)
    make_bad(rng)
    pydicom_entries = make_pydicom()
    (OUT / "expected.json").write_text(
        json.dumps({"good": GOOD, "bad": BAD, "pydicom": pydicom_entries}, indent=1) + "\n"
    )
    check()
    size = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"{len(GOOD)} good, {len(BAD)} bad, {len(pydicom_entries)} from pydicom; "
          f"{size / 1024:.0f} KiB in {OUT}")


if __name__ == "__main__":
    main()

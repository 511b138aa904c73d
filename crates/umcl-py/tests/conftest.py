"""Shared fixtures of the umcl Python tests.

`cargo xtask test` builds the package into .venv-py and runs these tests with UMCL_BIN set to
the umcl CLI it built, so that Python and CLI outputs can be compared. Run by hand
(`pytest crates/umcl-py/tests`), the CLI comparisons skip unless UMCL_BIN names a binary, and
the real-data checks skip on a machine without ../shared/data; each skip says why.
"""

import os
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[3]
FIXTURES = REPO / "crates" / "umcl-data" / "tests" / "fixtures"
SHARED = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def umcl_bin():
    """The umcl CLI (UMCL_BIN, set by `cargo xtask test`)."""
    path = os.environ.get("UMCL_BIN")
    if not path or not Path(path).is_file():
        pytest.skip("UMCL_BIN does not name the umcl CLI (cargo xtask test sets it)")
    return path


def run_cli(umcl_bin, *args):
    """Runs the CLI; fails the test with its stderr when it fails."""
    done = subprocess.run([umcl_bin, *map(str, args)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="session")
def shared():
    """../shared/data, the real datasets (present on CI)."""
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is missing: the real-data checks need ../shared/data")
    return SHARED


def png_bytes(pixels: np.ndarray) -> bytes:
    """A grayscale PNG (8 or 16 bit) of a 2-D uint8 or uint16 array, written by hand so that
    the tests need no imaging library."""
    depth = 16 if pixels.dtype == np.uint16 else 8
    h, w = pixels.shape
    raw = b"".join(b"\x00" + pixels[y].astype(">u2" if depth == 16 else "u1").tobytes() for y in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", w, h, depth, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


@pytest.fixture()
def image_set(tmp_path):
    """Six small PNGs of different shapes and depths, a manifest over them with texts and
    labels, and the folder they are in."""
    rng = np.random.default_rng(0)
    shapes = [(40, 40), (30, 50), (50, 30), (64, 64), (17, 23), (33, 33)]
    rows = ["id,patient,image,report,label"]
    for i, (h, w) in enumerate(shapes):
        if i == 3:
            pixels = rng.integers(0, 65536, size=(h, w), dtype=np.uint16)
        else:
            pixels = rng.integers(0, 256, size=(h, w), dtype=np.uint8)
        (tmp_path / f"img{i}.png").write_bytes(png_bytes(pixels))
        report = "" if i == 4 else f"Report {i}: small left effusion."
        rows.append(f"s{i},p{i // 2},img{i}.png,{report},{'Edema' if i % 2 else 'Pneumonia'}")
    csv = tmp_path / "samples.csv"
    csv.write_text("\n".join(rows) + "\n")
    return tmp_path


def prepare_generic(folder, out=None):
    """The generic adapter over `image_set`'s CSV (the same arguments as the CLI's flags)."""
    import umcl

    return umcl.prepare(
        "generic",
        folder / "samples.csv",
        out=out,
        id_col="id",
        patient_col="patient",
        image_col="image",
        text_cols=["report"],
        label_list_col="label",
    )


GENERIC_FLAGS = [
    "--id-col", "id", "--patient-col", "patient", "--image-col", "image",
    "--text-col", "report", "--label-list-col", "label",
]


def other_thread_stall(call):
    """Runs `call()` while another Python thread keeps taking timestamps; returns the call's
    duration and the longest stretch of it, as a fraction, in which that thread got no step.
    A call that holds the GIL throughout stalls the other thread for all of it (about 1.0);
    one that releases the GIL leaves it running (a small fraction)."""
    import threading
    import time

    stamps = []
    stop = threading.Event()

    def tick():
        while not stop.is_set():
            stamps.append(time.perf_counter())

    thread = threading.Thread(target=tick)
    thread.start()
    while not stamps:
        time.sleep(0.001)
    try:
        start = time.perf_counter()
        call()
        end = time.perf_counter()
    finally:
        stop.set()
        thread.join()
    inside = [start] + [t for t in stamps if start < t < end] + [end]
    gap = max(b - a for a, b in zip(inside, inside[1:]))
    return end - start, gap / (end - start)

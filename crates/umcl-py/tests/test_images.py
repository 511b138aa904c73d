"""umcl.Pipeline: image files to normalised arrays, the same bits as the loader's."""

import numpy as np
import pytest

import umcl
from conftest import png_bytes, prepare_generic


def test_load_is_the_loaders_image_bit_for_bit(image_set):
    table = prepare_generic(image_set)
    for channels, fit, size in [(3, "pad", 24), (1, "crop", 16), (3, "stretch", 9)]:
        pipeline = umcl.Pipeline(size=size, fit=fit, channels=channels)
        loader = umcl.Loader(table, batch_size=6, shuffle=False, size=size, fit=fit,
                             channels=channels, threads=2)
        batch = next(iter(loader))
        assert batch["images"].shape == (6, channels, size, size)
        for i, row in enumerate(table.rows()):
            one = pipeline.load(row["image"])
            assert one.dtype == np.float32 and one.shape == (channels, size, size)
            assert np.array_equal(one, batch["images"][i]), (row["id"], fit)
        stacked = pipeline.load_batch([r["image"] for r in table.rows()])
        assert np.array_equal(stacked, batch["images"])


def test_values_are_normalised_pixels(tmp_path):
    flat = tmp_path / "flat.png"
    flat.write_bytes(png_bytes(np.full((8, 8), 255, dtype=np.uint8)))
    out = umcl.Pipeline(size=4, mean=(0.5, 0.5, 0.5), std=(0.25, 0.5, 1.0)).load(flat)
    assert np.allclose(out[0], 2.0) and np.allclose(out[1], 1.0) and np.allclose(out[2], 0.5)


def test_real_images_load(shared):
    images = sorted((shared / "covid-cxr-512" / "images").iterdir())[:8]
    batch = umcl.Pipeline(size=64).load_batch(images)
    assert batch.shape == (8, 3, 64, 64) and np.isfinite(batch).all()
    assert batch.std() > 0.1


def test_bad_images_raise_naming_the_file(tmp_path):
    pipeline = umcl.Pipeline(size=8)
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(umcl.DataError, match="corrupt.png"):
        pipeline.load(corrupt)
    with pytest.raises(FileNotFoundError, match="absent.png"):
        pipeline.load(tmp_path / "absent.png")
    good = tmp_path / "good.png"
    good.write_bytes(png_bytes(np.zeros((4, 4), dtype=np.uint8)))
    with pytest.raises(umcl.DataError, match="corrupt.png"):
        pipeline.load_batch([good, corrupt, good])
    with pytest.raises(ValueError, match="fit"):
        umcl.Pipeline(fit="squash")
    with pytest.raises(ValueError, match="std"):
        umcl.Pipeline(std=(0.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="mean"):
        umcl.Pipeline(mean=(float("nan"), 0.5, 0.5))
    with pytest.raises(ValueError, match="size"):
        umcl.Pipeline(size=0)
    with pytest.raises(ValueError, match="channels"):
        umcl.Pipeline(channels=2)

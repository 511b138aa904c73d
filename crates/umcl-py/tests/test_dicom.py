"""DICOM through the Python package: Pipeline decodes .dcm files by the policy of
docs/dicom.md, and prepare reads a DICOM folder with frontal_only."""

import pathlib
import shutil

import numpy as np
import pytest

import umcl

FIXTURES = pathlib.Path(__file__).resolve().parents[2] / "umcl-data/tests/dicom/fixtures"


def test_pipeline_inverts_monochrome1():
    # The same stored values as MONOCHROME1 and MONOCHROME2: the resize is linear with
    # weights summing to 1, so the two decoded, resized images sum to 1 everywhere.
    pipe = umcl.Pipeline(size=16, fit="stretch", mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), channels=1)
    one = pipe.load(FIXTURES / "mono1_12in16_window_explicit.dcm")
    two = pipe.load(FIXTURES / "mono2_12in16_window_explicit.dcm")
    assert one.shape == (1, 16, 16)
    assert two.std() > 0.05, "a windowed image, not a flat one"
    np.testing.assert_allclose(one + two, 1.0, atol=1e-5)


def test_pipeline_error_names_the_file_and_the_syntax():
    with pytest.raises(umcl.DataError) as err:
        umcl.Pipeline(size=8).load(FIXTURES / "bad/jpeg2000_unsupported.dcm")
    assert "jpeg2000_unsupported.dcm" in str(err.value)
    assert "1.2.840.10008.1.2.4.90" in str(err.value)


def test_prepare_a_dicom_folder_frontal_only(tmp_path):
    root = tmp_path / "export"
    root.mkdir()
    shutil.copy(FIXTURES / "mono1_12in16_window_explicit.dcm", root / "ap.dcm")
    shutil.copy(FIXTURES / "mono2_window_unknown_function.dcm", root / "lateral.dcm")
    table = umcl.prepare("dicom", root, frontal_only=True)
    assert len(table) == 1
    assert table.left_out == {"LATERAL": 1}
    row = table.rows()[0]
    assert row["meta"]["view"] == "AP"
    assert row["patient_id"] == "UMCL-001"
    with pytest.raises(ValueError, match="table"):
        umcl.prepare("covid-cxr", tmp_path / "x.csv", table=tmp_path / "t.csv")

"""umcl.Labeler and umcl.Synthesizer."""

import csv

import numpy as np
import pytest

import umcl
from conftest import FIXTURES, other_thread_stall, run_cli


def test_one_report_gives_a_dict_of_codes():
    labels = umcl.Labeler().label("Heart size normal. Small left effusion. No pneumothorax.")
    assert list(labels) == umcl.Labeler().keys
    assert labels["pleural_effusion"] == 1
    assert labels["pneumothorax"] == 0
    assert labels["cardiomegaly"] == 0
    assert labels["edema"] is None


def test_sections_and_array_agree_with_single_reports():
    labeler = umcl.Labeler(threads=2)
    reports = [
        "No acute cardiopulmonary process.",
        ["Findings: mild pulmonary edema.", "Impression: possible pneumonia."],
        "Pneumothorax cannot be excluded.",
    ]
    codes = labeler.label_array(reports)
    assert codes.dtype == np.int8 and codes.shape == (3, len(labeler.keys))
    for row, report in zip(codes, reports):
        expected = [umcl.UNMENTIONED if v is None else v for v in labeler.label(report).values()]
        assert row.tolist() == expected
    k = labeler.keys.index
    assert codes[1, k("edema")] == 1 and codes[1, k("pneumonia")] == -1
    assert codes[2, k("pneumothorax")] == -1


def cli_labels(umcl_bin, reports_csv, tmp_path):
    out = tmp_path / "cli.csv"
    run_cli(umcl_bin, "label", "--input", reports_csv, "--output", out)
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    return rows


def python_labels(reports_csv):
    with open(reports_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    labeler = umcl.Labeler()
    codes = labeler.label_array([[r["findings"], r["impression"]] for r in rows])
    return rows, labeler.keys, codes


@pytest.mark.parametrize("which", ["fixture", "iu-xray"])
def test_labels_equal_the_cli(umcl_bin, shared_or_fixture, tmp_path, which):
    reports_csv = shared_or_fixture(which)
    cli = cli_labels(umcl_bin, reports_csv, tmp_path)
    rows, keys, codes = python_labels(reports_csv)
    assert [r["uid"] for r in cli] == [r["uid"] for r in rows]
    for cli_row, code_row in zip(cli, codes):
        python = ["" if c == umcl.UNMENTIONED else str(c) for c in code_row]
        assert [cli_row[k] for k in keys] == python, cli_row["uid"]


@pytest.fixture()
def shared_or_fixture(request):
    def pick(which):
        if which == "fixture":
            return FIXTURES / "iu" / "reports.csv"
        return request.getfixturevalue("shared") / "iu-xray-reports" / "reports-dev.csv"

    return pick


def test_label_array_releases_the_gil():
    labeler = umcl.Labeler(threads=1)
    reports = ["Small left effusion. No pneumothorax. Heart size is normal."] * 20000
    took, stall = other_thread_stall(lambda: labeler.label_array(reports))
    assert took > 0.02, "the batch was too small to tell"
    # Held for the whole call, the GIL would stall the other thread for all of it.
    assert stall < 0.5, f"another thread stood still for {stall:.0%} of {took:.3f} s"


def test_rule_errors_are_python_exceptions(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.toml"):
        umcl.Labeler(rules=tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("this is = = not toml")
    with pytest.raises(umcl.DataError, match="bad.toml"):
        umcl.Labeler(rules=["builtin", bad])
    with pytest.raises(ValueError, match="threads"):
        umcl.Labeler(threads=0)
    with pytest.raises(TypeError):
        umcl.Labeler().label(42)
    # A str that is not valid Unicode (a lone surrogate) cannot reach the labeler.
    with pytest.raises(UnicodeEncodeError):
        umcl.Labeler().label("effusion \ud800")
    with pytest.raises(UnicodeEncodeError):
        umcl.Labeler().label_array(["fine", ["also fine", "\udcff"]])
    with pytest.raises(TypeError, match="list of reports"):
        umcl.Labeler().label_array("one report, not a list")
    with pytest.raises(TypeError, match="sections must be str"):
        umcl.Labeler().label(["findings", None])


def test_synthesizer_is_deterministic_and_says_the_labels():
    synth = umcl.Synthesizer(seed=3)
    labels = {"edema": 1, "pneumothorax": 0, "cardiomegaly": None}
    text = synth.text(labels, "sample-1")
    assert text == synth.text(labels, "sample-1")
    assert text == umcl.Synthesizer(seed=3).text(labels, "sample-1")
    read = umcl.Labeler().label(text)
    assert read["edema"] == 1 and read["pneumothorax"] == 0
    # A row of codes says the same as the dict.
    row = np.full(len(synth.keys), umcl.UNMENTIONED, dtype=np.int8)
    row[synth.keys.index("edema")] = 1
    row[synth.keys.index("pneumothorax")] = 0
    assert synth.text(row, "sample-1") == text
    assert synth.text({}, "x") == ""


def test_synthesizer_rejects_unknown_labels_and_codes():
    synth = umcl.Synthesizer()
    with pytest.raises(ValueError, match="unknown label `oedema`"):
        synth.text({"oedema": 1})
    with pytest.raises(ValueError, match="label code 7"):
        synth.text({"edema": 7})
    with pytest.raises(ValueError, match="3 label codes"):
        synth.text([1, 0, 1])
    with pytest.raises(FileNotFoundError):
        umcl.Synthesizer(schema="no-such-schema.toml")

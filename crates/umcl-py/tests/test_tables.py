"""umcl.prepare, umcl.read_manifest and umcl.split against the CLI."""

import json

import numpy as np
import pytest

import umcl
from conftest import FIXTURES, GENERIC_FLAGS, prepare_generic, run_cli


def test_covid_manifest_equals_the_cli_byte_for_byte(umcl_bin, tmp_path):
    metadata = FIXTURES / "covid" / "metadata.csv"
    for notes in ["full", "imaging"]:
        cli = tmp_path / f"cli-{notes}.jsonl"
        run_cli(umcl_bin, "data", "prepare", "--source", "covid-cxr", "--input", metadata,
                "--out", cli, "--notes", notes, "--skip-bad")
        py = tmp_path / f"py-{notes}.jsonl"
        table = umcl.prepare("covid-cxr", metadata, out=py, notes=notes, skip_bad=True)
        assert py.read_bytes() == cli.read_bytes()
        cli_list = cli.with_name(cli.stem + ".skipped.txt")
        assert table.skipped, "the fixture has a bad row"
        assert table.skipped_list is not None
        assert open(table.skipped_list).read() == cli_list.read_text()
        assert len(table) == len(umcl.read_manifest(py))


def test_generic_manifest_equals_the_cli(umcl_bin, image_set, tmp_path):
    cli = tmp_path / "cli.jsonl"
    run_cli(umcl_bin, "data", "prepare", "--source", "generic", "--input",
            image_set / "samples.csv", "--out", cli, *GENERIC_FLAGS)
    py = tmp_path / "py.jsonl"
    prepare_generic(image_set, out=py)
    assert py.read_bytes() == cli.read_bytes()


def test_real_covid_manifest_equals_the_cli(umcl_bin, shared, tmp_path):
    metadata = shared / "covid-cxr-512" / "metadata.csv"
    cli = tmp_path / "cli.jsonl"
    run_cli(umcl_bin, "data", "prepare", "--source", "covid-cxr", "--input", metadata,
            "--out", cli, "--notes", "imaging", "--skip-bad")
    py = tmp_path / "py.jsonl"
    table = umcl.prepare("covid-cxr", metadata, out=py, notes="imaging", skip_bad=True)
    assert py.read_bytes() == cli.read_bytes()
    assert len(table) > 500


def test_rows_columns_and_labels_describe_the_same_samples(image_set):
    table = prepare_generic(image_set)
    assert len(table) == 6 and table.ids == [f"s{i}" for i in range(6)]
    rows = table.rows()
    assert rows[0]["patient_id"] == "p0" and rows[0]["text"].startswith("Report 0")
    assert rows[4]["text"] is None
    assert rows[1]["labels"]["edema"] == 1 and rows[0]["labels"]["pneumonia"] == 1
    codes = table.labels()
    assert codes.dtype == np.int8 and codes.shape == (6, len(table.keys))
    columns = table.columns()
    for k, key in enumerate(table.keys):
        assert columns[key].tolist() == codes[:, k].tolist()
        assert [r["labels"][key] for r in rows] == [
            None if c == umcl.UNMENTIONED else c for c in codes[:, k]
        ]
    assert columns["id"] == table.ids
    assert all(len(v) == 6 for v in columns.values())


def test_pandas_takes_the_columns(image_set):
    pd = pytest.importorskip("pandas", reason="pandas is not installed in this venv")
    frame = pd.DataFrame(prepare_generic(image_set).columns())
    assert frame.shape[0] == 6 and str(frame["edema"].dtype) == "int8"
    assert frame.loc[frame["edema"] == 1, "id"].tolist() == ["s1", "s3", "s5"]
    assert frame["text"].isna().tolist() == [False] * 4 + [True, False]


def test_bad_rows_name_file_and_line(tmp_path):
    bad = FIXTURES / "covid" / "bad.csv"
    with pytest.raises(umcl.DataError, match=r"bad\.csv:\d+"):
        umcl.prepare("covid-cxr", bad, check_images=False)
    table = umcl.prepare("covid-cxr", bad, check_images=False, skip_bad=True)
    assert table.skipped and all("bad.csv:" in s for s in table.skipped)
    with pytest.raises(FileNotFoundError, match="nothing.csv"):
        umcl.prepare("covid-cxr", tmp_path / "nothing.csv")
    with pytest.raises(ValueError, match="unknown source"):
        umcl.prepare("pacs", bad)
    with pytest.raises(ValueError, match="applies only to source generic"):
        umcl.prepare("covid-cxr", bad, id_col="x")
    with pytest.raises(ValueError, match="notes"):
        umcl.prepare("covid-cxr", bad, notes="some")
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"format": "umcl-manifest"\n')
    with pytest.raises(umcl.DataError, match="broken.jsonl:1"):
        umcl.read_manifest(broken)


def test_split_equals_the_cli(umcl_bin, image_set, tmp_path):
    manifest = tmp_path / "m.jsonl"
    prepare_generic(image_set, out=manifest)
    for args, kwargs in [
        (["--seed", "5", "--fractions", "0.5,0.25,0.25"], dict(seed=5, fractions=(0.5, 0.25, 0.25))),
        (["--folds", "3", "--fold", "1", "--stratify", "none", "--val-percent", "0"],
         dict(folds=3, fold=1, stratify="none", val_percent=0)),
    ]:
        cli_out = tmp_path / "cli.splits.json"
        run_cli(umcl_bin, "data", "split", manifest, "--out", cli_out, *args)
        py_out = tmp_path / "py.splits.json"
        split = umcl.split(manifest, out=py_out, **kwargs)
        assert json.loads(py_out.read_text()) == json.loads(cli_out.read_text())
        assert sorted(split.train + split.val + split.test) == sorted(umcl.read_manifest(manifest).ids)
        parts = split.part_of()
        assert parts[split.test[0]] == "test"
    # Patients never straddle parts: s0/s1 share p0, s2/s3 p1, s4/s5 p2.
    parts = umcl.split(manifest, 1, (0.5, 0.25, 0.25)).part_of()
    assert parts["s0"] == parts["s1"] and parts["s2"] == parts["s3"] and parts["s4"] == parts["s5"]
    assert (tmp_path / "m.splits.json").exists()
    with pytest.raises(ValueError, match="fractions"):
        umcl.split(manifest, fractions=(0.9, 0.9, 0.1))
    with pytest.raises(ValueError, match="stratify"):
        umcl.split(manifest, folds=3, fold=0, stratify="colour")

"""umcl.Loader: batches as numpy arrays for a PyTorch loop."""

import gc

import numpy as np
import pytest

import umcl
from conftest import other_thread_stall, prepare_generic


def all_batches(epoch):
    return [b for b in epoch]


def test_batches_hold_every_sample_once_with_the_documented_arrays(image_set):
    table = prepare_generic(image_set)
    loader = umcl.Loader(table, batch_size=4, size=16, seed=1)
    assert len(loader) == 2 and loader.samples == 6
    batches = all_batches(loader.epoch(0))
    assert [len(b["ids"]) for b in batches] == [4, 2]
    b = batches[0]
    assert b["images"].dtype == np.float32 and b["images"].shape == (4, 3, 16, 16)
    assert b["labels"].dtype == np.int8 and b["labels"].shape == (4, len(table.keys))
    assert b["input_ids"].shape == (4, 0), "no tokenizer, no tokens"
    assert b["has_image"].dtype == np.bool_ and b["has_image"].all()
    assert b["indices"].dtype == np.int64
    ids = sum((x["ids"] for x in batches), [])
    assert sorted(ids) == sorted(table.ids)
    codes = table.labels()
    for x in batches:
        for row, i in zip(x["labels"], x["indices"]):
            assert row.tolist() == codes[i].tolist()


def test_arrays_are_owned_and_shareable_without_a_copy(image_set):
    batch = next(iter(umcl.Loader(prepare_generic(image_set), batch_size=3, size=8)))
    for name in ["images", "input_ids", "attention_mask", "labels"]:
        flags = batch[name].flags
        # What torch.from_numpy needs to share the memory instead of copying.
        assert flags.c_contiguous and flags.writeable and flags.aligned, name
        assert not flags.owndata, f"{name} should wrap the Rust buffer, not a copy"
    try:
        import torch
    except ImportError:
        return  # the flags above are what from_numpy checks; torch is optional here
    t = torch.from_numpy(batch["images"])
    t[0, 0, 0, 0] = 42.0
    assert batch["images"][0, 0, 0, 0] == 42.0


def test_epochs_are_seeded_and_independent_of_threads(image_set):
    table = prepare_generic(image_set)
    kw = dict(batch_size=2, size=12, augment=True, seed=7)
    one = [b["images"] for b in umcl.Loader(table, threads=1, **kw).epoch(3)]
    two = [b["images"] for b in umcl.Loader(table, threads=2, **kw).epoch(3)]
    assert all(np.array_equal(a, b) for a, b in zip(one, two))
    loader = umcl.Loader(table, **kw)
    first = [b["ids"] for b in loader]
    second = [b["ids"] for b in loader]
    assert first != second, "iter() moves to the next epoch"
    loader.set_epoch(0)
    assert [b["ids"] for b in loader] == first


TOKENIZER_JSON = """{
  "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
  "normalizer": {"type": "Lowercase"}, "pre_tokenizer": {"type": "Whitespace"},
  "post_processor": null, "decoder": null,
  "model": {"type": "WordLevel", "unk_token": "[UNK]",
            "vocab": {"[PAD]": 0, "[UNK]": 1, "no": 2, "effusion": 3, "small": 4, "left": 5}}
}"""


def test_texts_tokenized_and_synthesized(image_set, tmp_path):
    tokenizer = tmp_path / "tokenizer.json"
    tokenizer.write_text(TOKENIZER_JSON)
    table = prepare_generic(image_set)
    batches = all_batches(umcl.Loader(table, batch_size=6, shuffle=False, size=8,
                                      tokenizer=tokenizer, max_len=16, padding="max_len"))
    b = batches[0]
    assert b["input_ids"].shape == (6, 16) and b["input_ids"].dtype == np.int64
    assert b["has_text"].tolist() == [True, True, True, True, False, True]
    assert b["attention_mask"][4].sum() == 0
    # "Report 0: small left effusion." -> report 0 : small left effusion .
    assert b["input_ids"][0, :7].tolist() == [1, 1, 1, 4, 5, 3, 1]
    assert b["attention_mask"][0].tolist() == [1] * 7 + [0] * 9
    synth = all_batches(umcl.Loader(table, batch_size=6, shuffle=False, size=8,
                                    tokenizer=tokenizer, synthesize=True))[0]
    assert synth["has_text"].all(), "sample s4 has labels, so it gets a synthesized text"


def test_a_bad_image_raises_naming_sample_and_file(image_set):
    (image_set / "img2.png").write_bytes(b"garbage")
    table = prepare_generic(image_set)
    with pytest.raises(umcl.DataError, match=r"sample `s2`.*img2.png"):
        all_batches(umcl.Loader(table, batch_size=2, size=8))


def test_skip_bad_counts_reports_and_warns(image_set):
    (image_set / "img2.png").write_bytes(b"garbage")
    table = prepare_generic(image_set)
    epoch = umcl.Loader(table, batch_size=2, size=8, skip_bad=True).epoch(0)
    with pytest.warns(UserWarning, match="skipped 1 samples"):
        batches = all_batches(epoch)
    assert sum(len(b["ids"]) for b in batches) == 5
    stats = epoch.stats
    assert stats["samples"] == 5 and stats["batches"] == len(batches)
    assert [s[0] for s in stats["skipped"]] == ["s2"] and "img2.png" in stats["skipped"][0][1]


def test_invalid_options_raise():
    with pytest.raises(FileNotFoundError):
        umcl.Loader("no/such/manifest.jsonl")
    with pytest.raises(TypeError):
        umcl.Loader(42)


def test_invalid_loader_options(image_set):
    table = prepare_generic(image_set)
    with pytest.raises(ValueError, match="batch_size"):
        umcl.Loader(table, batch_size=0)
    with pytest.raises(ValueError, match="threads"):
        umcl.Loader(table, threads=0)
    with pytest.raises(ValueError, match="no sample `nobody`"):
        umcl.Loader(table, ids=["s0", "nobody"])
    with pytest.raises(ValueError, match="padding"):
        umcl.Loader(table, padding="shortest")
    assert umcl.Loader(table, ids=["s0", "s5"]).samples == 2


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def test_no_memory_growth_over_10000_batches(image_set):
    loader = umcl.Loader(prepare_generic(image_set), batch_size=3, size=32, threads=2,
                         augment=True)
    batches = 0
    baseline = None
    while batches < 10_000:
        for batch in loader:
            batches += 1
            if batches == 1_000:
                gc.collect()
                baseline = rss_bytes()
    gc.collect()
    grown = rss_bytes() - baseline
    # 9,000 leaked batches would be 9,000 x 3 x 3 x 32 x 32 x 4 B = 332 MB of images alone.
    assert grown < 16 * 2**20, f"RSS grew {grown / 2**20:.1f} MiB over 9,000 batches"


def test_waiting_for_a_batch_releases_the_gil(image_set):
    loader = umcl.Loader(prepare_generic(image_set), batch_size=6, size=256, threads=1,
                         prefetch=1, augment=True)
    for _ in range(3):
        epoch = iter(loader)  # the first batch is not ready yet: next() waits for it
        took, stall = other_thread_stall(lambda: next(epoch))
        if took > 0.02:
            break
    assert took > 0.02, "the batches came too fast to tell"
    assert stall < 0.5, f"another thread stood still for {stall:.0%} of {took:.3f} s"

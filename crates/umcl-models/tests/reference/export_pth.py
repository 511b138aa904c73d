"""PyTorch checkpoint fixtures for umcl-models' `.pth` reader (crates/umcl-models/src/pth).

Run in the project's reference venv (`cargo xtask ref-venv`):

    .venv-ref/bin/python crates/umcl-models/tests/reference/export_pth.py

writes crates/umcl-models/tests/fixtures/pth/:

- `dtypes.zip.pth` / `dtypes.legacy.pth`: one state dict in the zip format (torch >= 1.6) and
  in the legacy pickle format (`_use_new_zipfile_serialization=False`). Ten dtypes, a 0-d
  tensor, an empty tensor, a parameter (saved through `_rebuild_parameter`), and four tensors
  that share one storage: the base, a row (storage offset), its transpose and a strided column
  slice (non-contiguous views). `dtypes.expected.safetensors` holds every tensor as a
  contiguous copy, under the same name.
- `protocol4.zip.pth`: a small state dict pickled with protocol 4 (FRAME, MEMOIZE,
  SHORT_BINUNICODE); its tensors are in `protocol4.expected.safetensors`.
- `nested.zip.pth`: a training checkpoint, `{"epoch", "best_acc", "state_dict", "optimizer"}`;
  the expected tensors are those of `state_dict` (`nested.expected.safetensors`).
- `foreign.zip.pth`: a state dict plus an `argparse.Namespace` (a foreign object the reader
  must refuse by name); `code.legacy.pth`: an object whose unpickling would call `os.system`
  (refused by name; nothing runs); `module.zip.pth`: a whole `nn.Linear` saved with
  `torch.save(model)` (refused: the reader takes state dicts only).

Every random draw comes from torch.manual_seed(SEED), so a rerun writes identical tensors.
"""

import argparse
import collections
import os
import pathlib

import torch
from safetensors.torch import save_file

SEED = 20261206
OUT = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "pth"


def dtypes_state():
    torch.manual_seed(SEED)
    base = torch.randn(4, 5)
    state = collections.OrderedDict()
    state["f32"] = torch.randn(3, 4)
    state["f64"] = torch.randn(5, dtype=torch.float64)
    state["f16"] = torch.randn(2, 3).half()
    state["bf16"] = torch.randn(4).bfloat16()
    state["i64"] = torch.arange(-3, 3, dtype=torch.int64).reshape(2, 3)
    state["i32"] = torch.tensor([-(2**31), 0, 2**31 - 1], dtype=torch.int32)
    state["i16"] = torch.tensor([-300, 7], dtype=torch.int16)
    state["i8"] = torch.tensor([-128, 5, 127], dtype=torch.int8)
    state["u8"] = torch.tensor([0, 200, 255], dtype=torch.uint8)
    state["bool"] = torch.tensor([True, False, True])
    state["scalar"] = torch.tensor(3.5)
    state["empty"] = torch.zeros(0, 3)
    state["param"] = torch.nn.Parameter(torch.randn(2))
    state["shared.base"] = base
    state["shared.row"] = base[1]
    state["shared.t"] = base.t()
    state["shared.cols"] = base[:, 1:5:2]
    return state


def expected(state, name):
    flat = {k: v.detach().clone().contiguous() for k, v in state.items()}
    save_file(flat, str(OUT / name))


class RunsCode:
    """Unpickling this calls os.system (the reader must refuse it without running it)."""

    def __reduce__(self):
        return (os.system, ("echo this must never run",))


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    state = dtypes_state()
    assert not state["shared.t"].is_contiguous() and not state["shared.cols"].is_contiguous()
    torch.save(state, OUT / "dtypes.zip.pth")
    torch.save(state, OUT / "dtypes.legacy.pth", _use_new_zipfile_serialization=False)
    expected(state, "dtypes.expected.safetensors")

    torch.manual_seed(SEED + 1)
    small = collections.OrderedDict(
        [("layer.weight", torch.randn(2, 3)), ("layer.bias", torch.randn(2))]
    )
    torch.save(small, OUT / "protocol4.zip.pth", pickle_protocol=4)
    expected(small, "protocol4.expected.safetensors")

    checkpoint = {
        "epoch": 3,
        "best_acc": 0.5,
        "state_dict": small,
        "optimizer": {"lr": 0.1, "betas": (0.9, 0.999)},
    }
    torch.save(checkpoint, OUT / "nested.zip.pth")
    expected(small, "nested.expected.safetensors")

    torch.save({"w": torch.ones(2), "args": argparse.Namespace(lr=0.1)}, OUT / "foreign.zip.pth")
    torch.save(
        {"w": torch.ones(2), "hook": RunsCode()},
        OUT / "code.legacy.pth",
        _use_new_zipfile_serialization=False,
    )
    torch.save(torch.nn.Linear(2, 2), OUT / "module.zip.pth")
    for p in sorted(OUT.iterdir()):
        print(f"{p.name}: {p.stat().st_size} bytes")


if __name__ == "__main__":
    main()

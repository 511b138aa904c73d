"""Type stubs of the extension module umcl._umcl (see umcl/__init__.py)."""

import os
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt

_Path = Union[str, "os.PathLike[str]"]
_Report = Union[str, Sequence[str]]
_Labels = Union[Mapping[str, Optional[int]], Sequence[Optional[int]], npt.NDArray[np.int8]]

__version__: str
UNMENTIONED: int
"""The label code of a label the text does not mention (-2)."""

class DataError(ValueError):
    """Bad input data; the message names the file and the line or sample."""

class Labeler:
    """Rule-based chest X-ray report labeler with negation and uncertainty."""

    def __init__(
        self,
        rules: Union[None, _Path, Sequence[_Path]] = None,
        threads: Optional[int] = None,
    ) -> None: ...
    @property
    def keys(self) -> List[str]:
        """The label keys, in the order of `label_array`'s columns."""
    @property
    def name(self) -> str: ...
    def label(self, report: _Report) -> Dict[str, Optional[int]]:
        """`{key: 1 | 0 | -1 | None}` for one report (a text or its sections)."""
    def label_array(self, reports: Sequence[_Report]) -> npt.NDArray[np.int8]:
        """int8 `[n, len(keys)]` codes, labelled in parallel with the GIL released."""
    def imaging_part(self, text: str) -> str:
        """The sentences of `text` the labeler reads as radiological."""

class Synthesizer:
    """Labels to report-like text, deterministic in (seed, sample_id, labels)."""

    def __init__(
        self,
        seed: int = 0,
        schema: str = "chest-xray",
        extra_negatives: int = 0,
        shuffle: bool = True,
    ) -> None: ...
    @property
    def keys(self) -> List[str]: ...
    def text(self, labels: _Labels, sample_id: str = "") -> str: ...

class Table:
    """Unified samples from `prepare` or `read_manifest`."""

    @property
    def keys(self) -> List[str]: ...
    @property
    def ids(self) -> List[str]: ...
    schema: str
    skipped: List[str]
    path: Optional[str]
    skipped_list: Optional[str]
    left_out: Dict[str, int]
    def __len__(self) -> int: ...
    def rows(self) -> List[Dict[str, Any]]:
        """One dict per sample: id, patient_id, image, text, source, labels, meta."""
    def labels(self) -> npt.NDArray[np.int8]:
        """int8 `[n, len(keys)]` label codes."""
    def columns(self) -> Dict[str, Any]:
        """Columns for `pandas.DataFrame`, one int8 array per label key."""

def prepare(
    source: str,
    input: Union[_Path, Sequence[_Path]],
    *,
    out: Optional[_Path] = None,
    schema: str = "chest-xray",
    skip_bad: bool = False,
    check_images: bool = True,
    images: Optional[_Path] = None,
    notes: Optional[str] = None,
    reports: Optional[_Path] = None,
    metadata: Optional[_Path] = None,
    labels: Optional[_Path] = None,
    label_set: Optional[str] = None,
    format: Optional[str] = None,
    source_name: Optional[str] = None,
    id_col: Optional[str] = None,
    patient_col: Optional[str] = None,
    image_col: Optional[str] = None,
    text_cols: Optional[Sequence[str]] = None,
    label_cols: Optional[Sequence[str]] = None,
    label_list_col: Optional[str] = None,
    list_sep: Optional[str] = None,
    table: Optional[_Path] = None,
    frontal_only: bool = False,
) -> Table:
    """Reads a dataset as `umcl data prepare` does; with `out`, writes the manifest."""

def read_manifest(path: _Path) -> Table:
    """Reads a unified manifest (JSON Lines)."""

class Split:
    """Sample ids per part of a patient-level split."""

    train: List[str]
    val: List[str]
    test: List[str]
    patients: Tuple[int, int, int]
    path: str
    def part_of(self) -> Dict[str, str]:
        """`{sample id: "train" | "val" | "test"}`."""

def split(
    manifest: _Path,
    seed: int = 0,
    fractions: Tuple[float, float, float] = (0.8, 0.1, 0.1),
    *,
    folds: Optional[int] = None,
    fold: Optional[int] = None,
    stratify: str = "labels",
    val_percent: int = 10,
    out: Optional[_Path] = None,
) -> Split:
    """Splits by patient as `umcl data split` does and writes STEM.splits.json."""

class Pipeline:
    """Image files to normalised float32 `[C, size, size]` arrays."""

    def __init__(
        self,
        size: int = 224,
        fit: str = "pad",
        mean: Tuple[float, float, float] = (0.485, 0.456, 0.406),
        std: Tuple[float, float, float] = (0.229, 0.224, 0.225),
        channels: int = 3,
        threads: Optional[int] = None,
    ) -> None: ...
    @property
    def size(self) -> int: ...
    @property
    def channels(self) -> int: ...
    def load(self, path: _Path) -> npt.NDArray[np.float32]: ...
    def load_batch(self, paths: Sequence[_Path]) -> npt.NDArray[np.float32]: ...

class Epoch(Iterator[Dict[str, Any]]):
    """One epoch of a Loader: batch dicts of numpy arrays."""

    number: int
    @property
    def stats(self) -> Dict[str, Any]:
        """batches, samples, waited_s and skipped [(id, reason)] so far."""
    def __iter__(self) -> "Epoch": ...
    def __next__(self) -> Dict[str, Any]: ...

class Loader:
    """A manifest's samples as batches of numpy arrays for a PyTorch loop."""

    def __init__(
        self,
        manifest: Union[_Path, Table],
        *,
        ids: Optional[Sequence[str]] = None,
        batch_size: int = 32,
        threads: int = 2,
        prefetch: int = 4,
        seed: int = 0,
        shuffle: bool = True,
        drop_last: bool = False,
        skip_bad: bool = False,
        size: int = 224,
        fit: str = "pad",
        mean: Tuple[float, float, float] = (0.485, 0.456, 0.406),
        std: Tuple[float, float, float] = (0.229, 0.224, 0.225),
        channels: int = 3,
        augment: bool = False,
        tokenizer: Optional[_Path] = None,
        max_len: int = 128,
        padding: str = "longest",
        synthesize: bool = False,
        schema: Optional[str] = None,
    ) -> None: ...
    def __len__(self) -> int: ...
    @property
    def samples(self) -> int: ...
    def epoch(self, epoch: int) -> Epoch: ...
    def set_epoch(self, epoch: int) -> None: ...
    def __iter__(self) -> Epoch: ...

"""umcl's data layer: report labeler, labels-to-text synthesis, dataset adapters, patient
splits, image pipeline and batch loader, implemented in Rust (the crate umcl-data).

    >>> import umcl
    >>> umcl.Labeler().label("No pneumothorax.")["pneumothorax"]
    0
"""

from ._umcl import (
    UNMENTIONED,
    DataError,
    Epoch,
    Labeler,
    Loader,
    Pipeline,
    Split,
    Synthesizer,
    Table,
    __version__,
    prepare,
    read_manifest,
    split,
)

__all__ = [
    "UNMENTIONED",
    "DataError",
    "Epoch",
    "Labeler",
    "Loader",
    "Pipeline",
    "Split",
    "Synthesizer",
    "Table",
    "__version__",
    "prepare",
    "read_manifest",
    "split",
]

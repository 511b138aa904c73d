"""Reference fixture for umcl-losses' prompt-label term (PyTorch, written independently).

Run from the repository root with the reference venv:

    .venv-ref/bin/python crates/umcl-losses/tests/reference/make_prompt_label_fixture.py

It writes `crates/umcl-losses/tests/fixtures/prompt_label.safetensors`: the inputs (fp64),
the expected loss and its gradients. Seeded: rerunning reproduces the committed file.

The term, for each modality's present rows r and each class c:
    z_rc = exp(logit_scale) * cos(e_r, p_c)
    w_rc = 1 if the label is positive or negative, or unmentioned in a sample with at least
           one positive or negative finding; 0 otherwise (uncertain, unlabelled sample)
    L    = sum w_rc * (softplus(z_rc) - y_rc * z_rc) / max(1, sum w_rc)
The weights are decided here sample by sample in plain Python.
"""

import math
import os

import torch
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures")

# K = 5 findings; the classes stand for columns 1, 3 and 4.
LABELS = [
    [1, -2, -2, -2, -2],
    [1, 0, 0, -2, -2],
    [0, 1, 0, 1, -2],
    [0, 1, -1, 1, 0],
    [0, 1, 0, 0, -2],
    [-2, -2, -2, -2, -2],  # unlabelled: no weight at all
    [0, 0, 1, -2, 1],
    [-2, -1, -2, -2, -2],  # only an uncertain finding: unlabelled
    [0, 1, 0, 1, 0],
    [-2, -2, -2, -2, -2],
    [0, 0, -2, -2, -2],
    [0, -1, 0, 1, 0],  # uncertain class column 1: no weight there
]
CLASS_INDEX = [1, 3, 4]
IMAGE_ROWS = [i for i in range(12) if i not in (5, 9)]
TEXT_ROWS = [i for i in range(12) if i != 2]


def weight_and_target(row, column):
    labelled = any(c in (0, 1) for c in row)
    code = row[column]
    if code in (0, 1):
        return 1.0, float(code)
    if code == -2 and labelled:
        return 1.0, 0.0
    return 0.0, 0.0


def main():
    torch.manual_seed(7)
    img = torch.randn(12, 8, dtype=torch.float64, requires_grad=True)
    txt = torch.randn(12, 8, dtype=torch.float64, requires_grad=True)
    classes = torch.randn(3, 8, dtype=torch.float64, requires_grad=True)
    logit_scale = torch.tensor(1.5, dtype=torch.float64, requires_grad=True)

    scale = logit_scale.exp()
    total = torch.zeros((), dtype=torch.float64)
    count = 0.0
    for emb, rows in ((img, IMAGE_ROWS), (txt, TEXT_ROWS)):
        for r in rows:
            for c, column in enumerate(CLASS_INDEX):
                w, y = weight_and_target(LABELS[r], column)
                if w == 0.0:
                    continue
                cos = torch.dot(emb[r], classes[c]) / (emb[r].norm() * classes[c].norm())
                z = scale * cos
                total = total + w * (torch.nn.functional.softplus(z) - y * z)
                count += w
    loss = total / max(1.0, count)
    loss.backward()
    print(f"loss {loss.item():.12f} over {count:.0f} weighted labels")
    save_file(
        {
            "image": img.detach(),
            "text": txt.detach(),
            "classes": classes.detach(),
            "logit_scale": logit_scale.detach().reshape(()),
            "labels": torch.tensor(LABELS, dtype=torch.int64),
            "class_index": torch.tensor(CLASS_INDEX, dtype=torch.int64),
            "image_rows": torch.tensor(IMAGE_ROWS, dtype=torch.int64),
            "text_rows": torch.tensor(TEXT_ROWS, dtype=torch.int64),
            "loss": loss.detach().reshape(()),
            "grad_image": img.grad,
            "grad_text": txt.grad,
            "grad_classes": classes.grad,
            "grad_logit_scale": logit_scale.grad.reshape(()),
        },
        os.path.join(OUT, "prompt_label.safetensors"),
    )


if __name__ == "__main__":
    main()

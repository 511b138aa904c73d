"""PyTorch eager reference for `umcl bench step`: the same training step, timed the same way.

Run with a python that has torch, torchvision and transformers (here `.venv-ref`, pinned in
xtask/requirements-ref.txt; on a GPU host, that host's own torch):

    python crates/umcl-train/benches/reference/train_step.py --model vit-b16-bert-base \
        --batch 64 --steps 5 --warmup 2 --device cpu --threads 2 --json ref.json

Models (random initialisation, the same architectures as umcl's, parameter counts printed):
- resnet50-bert-base / vit-b16-bert-base: torchvision resnet50 (fc removed) or vit_b_16 (heads
  removed; class token after the final norm), transformers BertModel with the bert-base config
  and no pooler, masked mean over tokens, bias-free projections to 512, a learnable logit scale
  (ln 1/0.07, clamped at ln 100), and the Image-Text-Label loss with multi-positive targets
  (umcl-losses' default: uncertain labels ignored, no masking, both directions weighted 0.5).
- resnet50-image-only: torchvision resnet50 with its 1000-class fc, cross-entropy.

One step: zero_grad (set to none), forward (bf16 autocast on CUDA, fp32 on the CPU), loss,
backward, torch.optim.AdamW with that device's defaults (for-each on CUDA, per-tensor on the
CPU; `--optimizer fused` for fused=True), then a synchronisation. Weight decay 0.05 on tensors of
rank >= 2 except the logit scale, as umcl's AdamW. Text lengths and label codes follow the
formulas of `crates/umcl/src/bench_cmd.rs`. Prints one JSON line with the fields umcl prints.
"""

import argparse
import json
import math
import os
import platform
import resource
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

FINDINGS = 14
EMBED_DIM = 512


def text_length(i, seq):
    half = seq // 2
    return half + (i * 37) % (seq - half + 1)


def label_code(i, k):
    r = (i * 131 + k * 71) % 10
    if r <= 3:
        return -2
    if r <= 6:
        return 0
    if r <= 8:
        return 1
    return -1


def multi_positive_targets(codes):
    """T[i, j] = A[i, j] / sum_k A[i, k]; A[i, j] = 1 when i == j or both samples are labelled
    and their positive sets agree on the findings both compare (uncertain: not compared)."""
    pos = (codes == 1).float()
    cmp = (codes != -1).float()
    known = ((codes == 1) | (codes == 0)).any(dim=1)
    # |P_i & C_j| + |P_j & C_i| - 2 |P_i & P_j| counts the findings where the sets differ.
    diff = pos @ cmp.T + cmp @ pos.T - 2.0 * (pos @ pos.T)
    agree = (diff == 0) & known[:, None] & known[None, :]
    a = agree | torch.eye(codes.shape[0], dtype=torch.bool, device=codes.device)
    a = a.float()
    return a / a.sum(dim=1, keepdim=True)


def itl_loss(img, txt, codes, log_scale):
    x = F.normalize(img.float(), dim=1)
    y = F.normalize(txt.float(), dim=1)
    logits = log_scale.exp() * (x @ y.T)
    t = multi_positive_targets(codes)
    i2t = -(t * torch.log_softmax(logits, dim=1)).sum(dim=1).mean()
    t2i = -(t * torch.log_softmax(logits.T, dim=1)).sum(dim=1).mean()
    return 0.5 * i2t + 0.5 * t2i


class DualEncoder(nn.Module):
    def __init__(self, image, image_size):
        super().__init__()
        import torchvision
        from transformers import BertConfig, BertModel

        if image == "resnet50":
            self.image = torchvision.models.resnet50(weights=None)
            self.image.fc = nn.Identity()
            width = 2048
        else:
            self.image = torchvision.models.vit_b_16(weights=None, image_size=image_size)
            self.image.heads = nn.Identity()
            width = 768
        self.text = BertModel(BertConfig(), add_pooling_layer=False)
        self.image_projection = nn.Linear(width, EMBED_DIM, bias=False)
        self.text_projection = nn.Linear(768, EMBED_DIM, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def forward(self, images, input_ids, attention_mask, codes):
        img = self.image_projection(self.image(images))
        h = self.text(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        m = attention_mask.to(h.dtype).unsqueeze(-1)
        pooled = (h * m).sum(dim=1) / m.sum(dim=1).clamp_min(1e-9)
        txt = self.text_projection(pooled)
        scale = self.logit_scale.clamp(max=math.log(100.0)).exp()
        return itl_loss(img, txt, codes, scale.log())


class ImageOnly(nn.Module):
    def __init__(self):
        super().__init__()
        import torchvision

        self.image = torchvision.models.resnet50(weights=None)

    def forward(self, images, classes):
        return F.cross_entropy(self.image(images).float(), classes)


def make_inputs(model, batch, seq, size, device):
    images = torch.randn(batch, 3, size, size, device=device)
    if model == "resnet50-image-only":
        return (images, torch.randint(0, 1000, (batch,), device=device))
    lengths = torch.tensor([text_length(i, seq) for i in range(batch)])
    mask = (torch.arange(seq)[None, :] < lengths[:, None]).long().to(device)
    ids = torch.randint(1000, 30522, (batch, seq), device=device) * mask
    codes = torch.tensor(
        [[label_code(i, k) for k in range(FINDINGS)] for i in range(batch)], device=device
    )
    return (images, ids, mask, codes)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def count_flops(model, name, seq, size, device, bf16):
    """FLOPs of one forward + backward at batch 2 (torch.utils.flop_counter), scaled per
    sample: matmuls, convolutions and attention grow linearly with the batch."""
    from torch.utils.flop_counter import FlopCounterMode

    inputs = make_inputs(name, 2, seq, size, device)
    with FlopCounterMode(display=False) as counter:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = model(*inputs)
        loss.backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / 2


def peak_rss_mb():
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def cpu_model_name():
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True,
                   choices=["resnet50-bert-base", "vit-b16-bert-base", "resnet50-image-only"])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads (CPU)")
    p.add_argument("--fp32", action="store_true", help="no bf16 autocast on CUDA")
    p.add_argument("--optimizer", choices=["default", "fused", "foreach", "single"],
                   default="default", help="torch.optim.AdamW implementation")
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--count-flops", action="store_true",
                   help="count FLOPs per step with torch.utils.flop_counter (adds flops_per_step)")
    p.add_argument("--breakdown", action="store_true",
                   help="also report median forward (with loss), backward and optimizer times")
    p.add_argument("--json", default=None, help="also write the JSON line to this file")
    args = p.parse_args()
    if args.batch < 2 or args.seq < 2 or args.steps < 1:
        sys.exit("train_step.py: needs --batch >= 2, --seq >= 2, --steps >= 1")

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True
    bf16 = cuda and not args.fp32
    torch.manual_seed(args.seed)

    if args.model == "resnet50-image-only":
        model = ImageOnly()
    else:
        image = "resnet50" if args.model.startswith("resnet50") else "vit_b_16"
        model = DualEncoder(image, args.image_size)
    model = model.to(device).train()
    params = [q for q in model.parameters() if q.requires_grad]
    n_params = sum(q.numel() for q in params)
    print(f"train_step.py: {args.model}: {n_params} trainable parameters", file=sys.stderr)

    named = [(n, q) for n, q in model.named_parameters() if q.requires_grad]
    decay = [q for n, q in named if q.dim() >= 2 and not n.endswith("logit_scale")]
    no_decay = [q for n, q in named if not (q.dim() >= 2 and not n.endswith("logit_scale"))]
    groups = [{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}]
    kw = {}
    if args.optimizer == "fused":
        kw["fused"] = True
    elif args.optimizer == "foreach":
        kw["foreach"] = True
    elif args.optimizer == "single":
        kw["foreach"] = False
    opt = torch.optim.AdamW(groups, lr=args.lr, betas=(0.9, 0.999), eps=1e-8, **kw)

    flops = None
    if args.count_flops:
        flops = count_flops(model, args.model, args.seq, args.image_size, device, bf16)
        flops *= args.batch

    inputs = make_inputs(args.model, args.batch, args.seq, args.image_size, device)
    times = []
    phases = []
    loss = None
    for i in range(args.warmup + args.steps):
        sync(device)
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = model(*inputs)
        if args.breakdown:
            sync(device)
            t1 = time.perf_counter()
        loss.backward()
        if args.breakdown:
            sync(device)
            t2 = time.perf_counter()
        opt.step()
        sync(device)
        dt = time.perf_counter() - t0
        if i >= args.warmup:
            times.append(dt)
            if args.breakdown:
                phases.append((t1 - t0, t2 - t1, t0 + dt - t2))
        tag = " (warm-up)" if i < args.warmup else ""
        print(f"train_step.py: {args.model} step {i + 1}/{args.warmup + args.steps} "
              f"{dt:.3f} s{tag}", file=sys.stderr)
    loss_value = float(loss.detach())
    if not math.isfinite(loss_value):
        sys.exit(f"train_step.py: the loss is {loss_value} after the timed steps")
    median = statistics.median(times)
    record = {
        "impl": "pytorch",
        "model": args.model,
        "batch": args.batch,
        "seq": args.seq,
        "image_size": args.image_size,
        "device": device.type,
        "device_name": torch.cuda.get_device_name(device) if cuda else cpu_model_name(),
        "dtype": "bf16-autocast" if bf16 else "fp32",
        "threads": torch.get_num_threads(),
        "optimizer": "adamw-" + args.optimizer,
        "params": n_params,
        "warmup": args.warmup,
        "steps": args.steps,
        "step_times_s": times,
        "median_step_s": median,
        "samples_per_s": args.batch / median,
        "loss": loss_value,
        "peak_rss_mb": peak_rss_mb(),
        "device_mem_used_mb": None,
        "torch": torch.__version__,
    }
    if cuda:
        free, total = torch.cuda.mem_get_info(device)
        record["device_mem_used_mb"] = (total - free) / 2**20
        record["max_memory_allocated_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    if flops is not None:
        record["flops_per_step"] = flops
    if phases:
        med = [statistics.median(p[k] for p in phases) for k in range(3)]
        record["breakdown_s"] = dict(zip(("forward_and_loss", "backward", "optimizer"), med))
    line = json.dumps(record)
    print(line)
    if args.json:
        tmp = args.json + ".tmp"
        with open(tmp, "w") as fh:
            fh.write(line + "\n")
        os.replace(tmp, args.json)


if __name__ == "__main__":
    main()

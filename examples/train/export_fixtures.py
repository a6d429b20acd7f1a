"""Export CNNs the way users do -- torch.onnx.export with the default
(torch.export-based) exporter and with the legacy TorchScript exporter -- and
record onnxruntime's outputs, for precis' frontend tests (dev-side only).

    # small fixtures, committed: tests/fixtures/torch/
    python examples/train/export_fixtures.py --set small
    # torchvision models with random weights, not committed:
    # target/torch-fixtures/ (read by `cargo test -- --ignored torchvision`)
    python examples/train/export_fixtures.py --set large

Each model gets a folder <out>/<model>/ with
  x.npy                  the inputs, float32 [N, C, H, W] (standard normal)
  <export>.onnx          one file per export (+ <export>.onnx.data: the
                         default exporter writes the weights there)
  <export>.out.npy       onnxruntime's outputs for x through that file
  labelled.npz           x with y = torch's argmax, for `precis accuracy`
and <out>/manifest.json lists the models, their exports and, for the models
precis must refuse, what the error must name.

Exports: `dynamo` (the default exporter at its default opset), `dynamo18`
(the same at opset 18), `legacy<opset>` (dynamo=False). Weights are random
(torchvision `weights=None`, seeded); nothing is downloaded. For the large
set the BatchNorm statistics are then set from random inputs (see
set_bn_statistics).
"""
import argparse
import json
import os
import sys
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from torchvision.models.mobilenetv2 import InvertedResidual

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", ".."))


class CustomCnn(nn.Module):
    """Every activation and reshaping op precis reads, in one small network:
    normalisation by constants (Sub/Div), Conv+BN, ReLU6, LeakyReLU, PReLU
    per channel and shared, clamp with one bound, hardtanh, spatial means
    with and without keepdim, an adaptive pooling that divides its input,
    a transpose of size-1 axes, unsqueeze/squeeze."""

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.5, 0.6, 0.7]).view(1, 3, 1, 1))
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.prelu = nn.PReLU(8)
        self.conv3 = nn.Conv2d(8, 8, 3, padding=1, stride=2)
        self.prelu1 = nn.PReLU()
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(8 * 4 + 8, 10)

    def forward(self, x):
        x = (x - self.mean) / self.std
        x = F.relu6(self.bn1(self.conv1(x)))
        x = F.leaky_relu(self.conv2(x), 0.1)
        x = torch.clamp(self.prelu(x), min=-0.5)
        x = self.prelu1(F.hardtanh(self.conv3(x), -1.0, 2.0))
        x = x + x.mean((2, 3), keepdim=True)
        pooled = torch.flatten(self.pool(x), 1).unsqueeze(-1).unsqueeze(-1)
        pooled = pooled.squeeze(-1).squeeze(-1)
        channels = torch.flatten(x.mean((2, 3), keepdim=True).transpose(1, 3), 1)
        return self.fc(torch.cat([pooled, channels + x.mean((2, 3))], 1))


class Block(nn.Module):
    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.down = None
        if stride != 1 or c_in != c_out:
            self.down = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False),
                                      nn.BatchNorm2d(c_out))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + (x if self.down is None else self.down(x)))


class TinyResNet(nn.Module):
    """A user-written ResNet with nn.AdaptiveAvgPool2d((1, 1))."""

    def __init__(self, widths=(8, 16, 32), num_classes=10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True))
        blocks, c = [], widths[0]
        for i, w in enumerate(widths):
            blocks.append(Block(c, w, 1 if i == 0 else 2))
            c = w
        self.blocks = nn.Sequential(*blocks)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.avgpool(self.blocks(self.stem(x))), 1))


class TinyMobileNet(nn.Module):
    """MobileNetV2's own inverted-residual blocks (depthwise convolutions,
    ReLU6), at a few channels."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1, bias=False),
                                  nn.BatchNorm2d(8), nn.ReLU6(inplace=True))
        self.blocks = nn.Sequential(InvertedResidual(8, 8, 1, 2),
                                    InvertedResidual(8, 16, 2, 2),
                                    InvertedResidual(16, 16, 1, 2))
        self.head = nn.Sequential(nn.Conv2d(16, 32, 1, bias=False),
                                  nn.BatchNorm2d(32), nn.ReLU6(inplace=True))
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(32, num_classes))

    def forward(self, x):
        x = self.head(self.blocks(self.stem(x)))
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(x, (1, 1)), 1))


class AdaptiveNonDividing(nn.Module):
    """nn.AdaptiveAvgPool2d(3) on an 8x8 map: the default exporter writes a
    Transpose/GatherND pattern (the legacy exporter refuses to export it)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(3)
        self.fc = nn.Linear(36, 10)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(F.relu(self.conv(x))), 1))


class SiluCnn(nn.Module):
    """An activation precis cannot approximate (SiLU)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.act = nn.SiLU()
        self.fc = nn.Linear(4, 10)

    def forward(self, x):
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(self.act(self.conv(x)), 1), 1))


def tv(name, **kw):
    return lambda: getattr(torchvision.models, name)(weights=None, **kw)


def set_bn_statistics(model, chw, gen, n=16):
    """BatchNorm running statistics from train-mode passes over random
    inputs, as training would set them. With torchvision's initial
    statistics (mean 0, variance 1) the activations of a random network
    drift by orders of magnitude with depth: MobileNetV2's logits at 64x64
    are ~1e-9, below any approximation's absolute error."""
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    if not bns:
        return
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn([n] + chw, generator=gen))
    model.eval()


ALL_EXPORTS = ["dynamo", "dynamo18", "legacy10", "legacy13", "legacy17"]
BOTH = ["dynamo", "legacy13"]

# name -> (constructor, input [C, H, W], samples, exports, expected refusal)
SMALL = {
    "custom_cnn": (CustomCnn, [3, 16, 16], 8, ALL_EXPORTS, None),
    "tiny_resnet": (TinyResNet, [3, 32, 32], 8, BOTH + ["dynamo18"], None),
    "tiny_mobilenet": (TinyMobileNet, [3, 32, 32], 8, BOTH, None),
    "adaptive_nondividing": (AdaptiveNonDividing, [3, 8, 8], 2, ["dynamo"],
                             {"op": "Transpose", "contains": "adaptive average pooling"}),
    "silu_cnn": (SiluCnn, [3, 8, 8], 2, ["dynamo"],
                 {"op": "Sigmoid", "contains": "piecewise-linear"}),
}
LARGE = {
    "resnet18": (tv("resnet18"), [3, 64, 64], 4, BOTH, None),
    "resnet34": (tv("resnet34"), [3, 64, 64], 4, ["dynamo"], None),
    "resnet50": (tv("resnet50"), [3, 64, 64], 4, BOTH, None),
    "squeezenet1_1": (tv("squeezenet1_1"), [3, 64, 64], 4, BOTH, None),
    "mobilenet_v2": (tv("mobilenet_v2"), [3, 64, 64], 4, BOTH, None),
    # VGG and AlexNet end in AdaptiveAvgPool2d((7, 7)) / ((6, 6)): at 224x224
    # it divides (it is the identity); at 64x64 see vgg11_bn_64 below.
    "alexnet": (tv("alexnet"), [3, 224, 224], 2, BOTH, None),
    "vgg11": (tv("vgg11"), [3, 224, 224], 2, BOTH, None),
    "vgg11_bn": (tv("vgg11_bn"), [3, 224, 224], 2, BOTH, None),
    "vgg16_bn": (tv("vgg16_bn"), [3, 224, 224], 2, ["dynamo"], None),
    "vgg11_bn_64": (tv("vgg11_bn"), [3, 64, 64], 1, ["dynamo"],
                    {"op": "Transpose", "contains": "adaptive average pooling"}),
}


def export(model, x, path, kind):
    kw = dict(input_names=["input"], output_names=["logits"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if kind == "dynamo":
            torch.onnx.export(model, (x,), path, **kw)
        elif kind.startswith("dynamo"):
            torch.onnx.export(model, (x,), path, opset_version=int(kind[6:]), **kw)
        else:
            torch.onnx.export(model, (x,), path, dynamo=False,
                              opset_version=int(kind[6:]), **kw)


def run_ort(path, x):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    # The exports have a fixed batch of 1.
    return np.concatenate([sess.run(None, {"input": x[i:i + 1]})[0] for i in range(len(x))])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--set", choices=["small", "large"], required=True)
    p.add_argument("--out", help="default: tests/fixtures/torch or target/torch-fixtures")
    p.add_argument("--only", nargs="*", help="model names")
    args = p.parse_args()
    torch.set_num_threads(1)
    models = SMALL if args.set == "small" else LARGE
    out = args.out or os.path.join(
        ROOT, "tests/fixtures/torch" if args.set == "small" else "target/torch-fixtures")
    os.makedirs(out, exist_ok=True)
    manifest_path = os.path.join(out, "manifest.json")
    manifest = {"torch": torch.__version__, "onnx": onnx.__version__,
                "onnxruntime": ort.__version__, "models": {}}
    if os.path.exists(manifest_path):
        with open(manifest_path) as f:
            manifest["models"] = json.load(f)["models"]
    for seed, (name, (ctor, chw, n, exports, refusal)) in enumerate(models.items()):
        if args.only and name not in args.only:
            continue
        torch.manual_seed(1000 + seed)
        model = ctor().eval()
        if args.set == "large":
            set_bn_statistics(model, chw, torch.Generator().manual_seed(500 + seed))
        d = os.path.join(out, name)
        os.makedirs(d, exist_ok=True)
        for f in os.listdir(d):
            os.remove(os.path.join(d, f))
        gen = torch.Generator().manual_seed(seed)
        x = torch.randn([n] + chw, generator=gen)
        np.save(os.path.join(d, "x.npy"), x.numpy())
        with torch.no_grad():
            want = model(x).numpy()
        np.savez(os.path.join(d, "labelled.npz"), x=x.numpy(), y=want.argmax(1).astype(np.int64))
        entry = {"input": [1] + chw, "samples": n, "exports": {}}
        if refusal:
            entry["refusal"] = refusal
        for kind in exports:
            path = os.path.join(d, f"{kind}.onnx")
            export(model, x[:1], path, kind)
            proto = onnx.load(path, load_external_data=False)
            opset = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
            ops = sorted({node.op_type for node in proto.graph.node})
            if refusal and "node" not in refusal:
                refusal["node"] = next(n.name for n in proto.graph.node
                                       if n.op_type == refusal["op"])
            y = run_ort(path, x.numpy())
            np.save(os.path.join(d, f"{kind}.out.npy"), y.astype(np.float32))
            err = float(np.abs(y - want).max() / np.abs(want).max())
            entry["exports"][kind] = {"opset": opset, "ops": ops,
                                      "external_data": os.path.exists(path + ".data"),
                                      "ort_vs_torch": err}
            print(f"{name:22} {kind:9} opset {opset:2}  ort vs torch {err:.1e}  {' '.join(ops)}")
            if err > 1e-4:
                sys.exit(f"{name} {kind}: onnxruntime and torch disagree ({err:.1e})")
        manifest["models"][name] = entry
    with open(manifest_path, "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()

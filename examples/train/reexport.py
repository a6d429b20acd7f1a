"""Re-export the shipped example models with the default torch.onnx exporter
(torch.export-based; weights in <model>.onnx.data) into examples/models/dynamo/.

The trained checkpoints are not kept, so the weights come from the shipped
legacy exports themselves: each model of models.py is built, its BatchNorm
layers replaced by identities (the legacy exporter folded them into the
convolutions), and every Conv/Linear layer, in the order the forward pass
calls them, takes the weight and bias of the matching Conv/Gemm node of
examples/models/<name>.onnx. The script checks with onnxruntime that both
files compute the same logits before writing anything.

    python examples/train/reexport.py
"""
import hashlib
import json
import os
import shutil
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn as nn
from onnx import numpy_helper

import models

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS_DIR = os.path.normpath(os.path.join(HERE, "..", "models"))
OUT_DIR = os.path.join(MODELS_DIR, "dynamo")


def strip_bn(module):
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            setattr(module, name, nn.Identity())
        else:
            strip_bn(child)


def call_order(model, x):
    """Conv2d/Linear modules in the order the forward pass calls them."""
    order, hooks = [], []
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            hooks.append(m.register_forward_hook(lambda mod, i, o: order.append(mod)))
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return order


def from_legacy(name, path):
    proto = onnx.load(path)
    inits = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    layers = [n for n in proto.graph.node if n.op_type in ("Conv", "Gemm")]
    with open(os.path.join(HERE, "logs", f"{name}.json")) as f:
        hp = json.load(f)["hparams"]
    model = models.build(hp["model"], hp.get("width", 1.0)).eval()
    strip_bn(model)
    with open(os.path.join(MODELS_DIR, f"{name}.json")) as f:
        shape = json.load(f)["input_shape"]
    modules = call_order(model, torch.zeros(shape))
    assert len(modules) == len(layers), f"{name}: {len(modules)} layers vs {len(layers)} nodes"
    for mod, node in zip(modules, layers):
        w = inits[node.input[1]]
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "Gemm":
            assert attrs.get("transB", 0) == 1 and attrs.get("alpha", 1.0) == 1.0
        assert tuple(w.shape) == tuple(mod.weight.shape), f"{node.name}: {w.shape}"
        mod.weight.data = torch.from_numpy(w.copy())
        b = inits[node.input[2]] if len(node.input) > 2 and node.input[2] else np.zeros(w.shape[0], np.float32)
        mod.bias = nn.Parameter(torch.from_numpy(b.copy()))
    return model, shape


def run(path, x):
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return np.concatenate([sess.run(None, {"input": x[i:i + 1]})[0] for i in range(len(x))])


def main():
    torch.manual_seed(0)
    os.makedirs(OUT_DIR, exist_ok=True)
    for name in ["lenet5", "vgg11_bn", "resnet20"]:
        legacy = os.path.join(MODELS_DIR, f"{name}.onnx")
        model, shape = from_legacy(name, legacy)
        x = torch.randn([64] + shape[1:]).numpy()
        want = run(legacy, x)
        with torch.no_grad():
            got = model(torch.from_numpy(x)).numpy()
        err = np.abs(got - want).max() / np.abs(want).max()
        assert err < 1e-5, f"{name}: torch rebuild differs from the legacy export ({err:.1e})"
        out = os.path.join(OUT_DIR, f"{name}.onnx")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (torch.zeros(shape),), out, input_names=["input"],
                              output_names=["logits"])
        y = run(out, x)
        err = np.abs(y - want).max() / np.abs(want).max()
        agree = float((y.argmax(1) == want.argmax(1)).mean())
        assert err < 1e-5 and agree == 1.0, f"{name}: {err:.1e}, argmax {agree}"
        shutil.copy(os.path.join(MODELS_DIR, f"{name}.json"), os.path.join(OUT_DIR, f"{name}.json"))
        proto = onnx.load(out, load_external_data=False)
        opset = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
        ops = sorted({n.op_type for n in proto.graph.node})
        print(f"{name}: opset {opset}, ops {' '.join(ops)}; vs legacy: max rel. diff {err:.1e}, "
              f"argmax agreement {agree:.0%} on 64 random inputs")
    with open(os.path.join(OUT_DIR, "SHA256SUMS"), "w") as f:
        for fn in sorted(os.listdir(OUT_DIR)):
            if fn.endswith((".onnx", ".onnx.data")):
                with open(os.path.join(OUT_DIR, fn), "rb") as g:
                    f.write(f"{hashlib.sha256(g.read()).hexdigest()}  {fn}\n")


if __name__ == "__main__":
    main()

"""Train a CNN on Fashion-MNIST and export it to ONNX for precis.

Examples (run from the repository root, inside the venv):

    nice -n 15 python examples/train/train.py --model lenet5 --epochs 20 --lr 0.05 --threads 1
    nice -n 15 python examples/train/train.py --model resnet20 --pad 0 --epochs 5 \
        --warmup 0.5 --bf16 --channels-last --eval-every 0 --threads 1
    python examples/train/train.py --model resnet20 --pad 0 --bench 4 --threads 1  # time 4 batches

A checkpoint is written after every epoch to examples/train/runs/<name>/;
re-running the same command resumes from it.  At the end the model is exported
to examples/models/<name>.onnx (batch 1, opset 13), the ONNX file is evaluated
with onnxruntime on the 10k test images, and examples/models/<name>.json and
examples/models/SHA256SUMS are (re)written.
"""
import argparse
import hashlib
import json
import math
import os
import random
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fmnist  # noqa: E402
import models  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS_DIR = os.path.normpath(os.path.join(HERE, "..", "models"))
DEFAULT_PAD = {"lenet5": 0, "vgg11_bn": 2, "resnet20": 2, "resnet32": 2, "resnet56": 2}


def parse_args():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True,
                   choices=["lenet5", "vgg11_bn", "resnet20", "resnet32", "resnet56"])
    p.add_argument("--name", help="output name (default: the model name)")
    p.add_argument("--width", type=float, default=1.0, help="vgg11_bn channel multiplier")
    p.add_argument("--pad", type=int, help="zero padding of the 28x28 input (model input is 28+2*pad)")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.1, help="peak learning rate")
    p.add_argument("--warmup", type=float, default=1.0, help="linear warm-up, in epochs")
    p.add_argument("--wd", type=float, default=5e-4)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--crop-pad", type=int, default=2, help="random-crop padding (0: no crop)")
    p.add_argument("--no-flip", action="store_true", help="disable random horizontal flips")
    p.add_argument("--bf16", action="store_true",
                   help="bfloat16 autocast for the training forward pass (weights, "
                        "evaluation and export stay float32)")
    p.add_argument("--channels-last", action="store_true",
                   help="channels-last memory format while training (faster oneDNN convs)")
    p.add_argument("--eval-every", type=int, default=1,
                   help="test accuracy every N epochs (0: only after the last)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--bench", type=int, default=0,
                   help="time this many training batches, print s/epoch estimate, exit")
    p.add_argument("--export-only", action="store_true",
                   help="skip training; export the finished checkpoint")
    a = p.parse_args()
    if a.pad is None:
        a.pad = DEFAULT_PAD[a.model]
    if a.name is None:
        a.name = a.model
    return a


def seed_all(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def lr_at(step, total_steps, warmup_steps, peak):
    """Linear warm-up, then cosine decay to 0."""
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    t = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * peak * (1.0 + math.cos(math.pi * t))


@torch.no_grad()
def evaluate(model, x, y, bs=1000):
    model.eval()
    correct = 0
    for i in range(0, x.shape[0], bs):
        correct += (model(fmnist.normalise(x[i:i + bs])).argmax(1) == y[i:i + bs]).sum().item()
    return correct / x.shape[0]


def train_epoch(model, opt, x, y, args, epoch, step0, total_steps, warmup_steps):
    model.train()
    gen = torch.Generator().manual_seed(args.seed * 100003 + epoch)
    perm = torch.randperm(x.shape[0], generator=gen)
    nb = x.shape[0] // args.batch_size  # drop the last partial batch
    if args.bench:
        nb = min(nb, args.bench)
    loss_sum, correct, seen, step = 0.0, 0, 0, step0
    for b in range(nb):
        idx = perm[b * args.batch_size:(b + 1) * args.batch_size]
        xb = fmnist.normalise(fmnist.augment(x[idx], args.crop_pad, not args.no_flip, gen))
        if args.channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        yb = y[idx]
        for g in opt.param_groups:
            g["lr"] = lr_at(step, total_steps, warmup_steps, args.lr)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            out = model(xb)
            loss = F.cross_entropy(out.float(), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        loss_sum += loss.item() * yb.shape[0]
        correct += (out.argmax(1) == yb).sum().item()
        seen += yb.shape[0]
    return loss_sum / seen, correct / seen, step, nb


def export_and_check(model, args, test_u8, test_y, meta):
    """Export ONNX (batch 1), evaluate it with onnxruntime, write the JSON."""
    model.eval()
    model.to(memory_format=torch.contiguous_format)
    side = 28 + 2 * args.pad
    shape = [1, 1, side, side]
    path = os.path.join(MODELS_DIR, f"{args.name}.onnx")
    os.makedirs(MODELS_DIR, exist_ok=True)
    torch.onnx.export(model, (torch.zeros(shape),), path, input_names=["input"],
                      output_names=["logits"], opset_version=13, do_constant_folding=True,
                      dynamo=False)
    import onnx
    g = onnx.load(path)
    strip_identities(g)
    onnx.checker.check_model(g)
    onnx.save(g, path)

    x = fmnist.preprocess(test_u8, args.pad).numpy()  # float32 [N,1,side,side]
    try:
        import onnxruntime as ort
        so = ort.SessionOptions()
        so.intra_op_num_threads = args.threads
        so.inter_op_num_threads = 1
        sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        preds = np.array([sess.run(None, {"input": x[i:i + 1]})[0].argmax()
                          for i in range(x.shape[0])])
        evaluator = f"onnxruntime {ort.__version__}, batch 1, float32"
    except ImportError:
        with torch.no_grad():
            preds = np.concatenate([model(torch.from_numpy(x[i:i + 1000])).argmax(1).numpy()
                                    for i in range(0, x.shape[0], 1000)])
        evaluator = f"torch {torch.__version__} eval mode, float32"
    acc = float((preds == test_y).mean())
    info = {"model": args.model, "dataset": "fashion-mnist", "input_shape": shape,
            "pad": args.pad, "mean": [fmnist.MEAN], "std": [fmnist.STD],
            "test_accuracy": round(acc, 4), "epochs": meta["epochs"],
            "params": models.num_params(model)}
    with open(os.path.join(MODELS_DIR, f"{args.name}.json"), "w") as f:
        json.dump(info, f)
        f.write("\n")
    write_sha256sums()
    print(f"[{args.name}] ONNX test accuracy {acc:.4f} ({evaluator}); "
          f"torch eval accuracy {meta['torch_test_acc']:.4f}")
    return acc, evaluator


def strip_identities(model):
    """The TorchScript exporter deduplicates equal constants and then emits
    `Identity(initializer)` nodes; replace each by its own copy of the
    initializer so the graph holds only computational ops."""
    import onnx
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    keep = []
    for node in g.node:
        if node.op_type == "Identity" and node.input[0] in inits:
            t = onnx.TensorProto()
            t.CopyFrom(inits[node.input[0]])
            t.name = node.output[0]
            g.initializer.append(t)
        else:
            keep.append(node)
    assert all(n.op_type != "Identity" for n in keep), "unexpected Identity node"
    del g.node[:]
    g.node.extend(keep)


def write_sha256sums():
    lines = []
    for fn in sorted(os.listdir(MODELS_DIR)):
        if fn.endswith(".onnx"):
            with open(os.path.join(MODELS_DIR, fn), "rb") as f:
                lines.append(f"{hashlib.sha256(f.read()).hexdigest()}  {fn}\n")
    with open(os.path.join(MODELS_DIR, "SHA256SUMS"), "w") as f:
        f.writelines(lines)


def main():
    args = parse_args()
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    torch.use_deterministic_algorithms(True, warn_only=True)
    seed_all(args.seed)

    train_u8, train_y = fmnist.load("train")
    test_u8, test_y = fmnist.load("t10k")
    x_train = fmnist.to_unit(train_u8, args.pad)
    y_train = torch.from_numpy(train_y)
    x_test = fmnist.to_unit(test_u8, args.pad)
    y_test = torch.from_numpy(test_y)

    model = models.build(args.model, args.width)
    if args.channels_last:
        model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum,
                          nesterov=True, weight_decay=args.wd)
    steps_per_epoch = x_train.shape[0] // args.batch_size
    total_steps = steps_per_epoch * args.epochs
    warmup_steps = int(args.warmup * steps_per_epoch)
    print(f"[{args.name}] {models.num_params(model)} parameters, input 1x{28 + 2 * args.pad}"
          f"x{28 + 2 * args.pad}, {args.epochs} epochs x {steps_per_epoch} steps, "
          f"{torch.get_num_threads()} threads", flush=True)

    if args.bench:
        train_epoch(model, opt, x_train, y_train, args, 0, 0, total_steps, warmup_steps)
        t0, c0 = time.time(), time.process_time()  # second pass: warmed up
        _, _, _, nb = train_epoch(model, opt, x_train, y_train, args, 1, 0, total_steps,
                                  warmup_steps)
        dt, dc = (time.time() - t0) / nb, (time.process_time() - c0) / nb
        print(f"[{args.name}] bench: {dt:.3f} s/batch of {args.batch_size} wall, {dc:.3f} s CPU"
              f" -> {dt * steps_per_epoch:.0f} s/epoch wall, {dc * steps_per_epoch:.0f} s CPU")
        return

    run_dir = os.path.join(HERE, "runs", args.name)
    os.makedirs(run_dir, exist_ok=True)
    ckpt_path = os.path.join(run_dir, "ckpt.pt")
    hparams = {k: v for k, v in vars(args).items()
               if k not in ("threads", "bench", "export_only", "eval_every")}
    epoch, step, log = 0, 0, []
    if os.path.exists(ckpt_path):
        ck = torch.load(ckpt_path, weights_only=False)
        saved = dict(ck["hparams"])
        for k, v in hparams.items():  # options added later, at their defaults
            if k not in saved and v in (False, None):
                saved[k] = v
        if saved != hparams:
            sys.exit(f"checkpoint {ckpt_path} was made with other settings:\n"
                     f"  {ck['hparams']}\nremove it to start afresh")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        epoch, step, log = ck["epoch"], ck["step"], ck["log"]
        print(f"[{args.name}] resumed after epoch {epoch}", flush=True)

    while epoch < args.epochs and not args.export_only:
        t0 = time.time()
        loss, acc, step, _ = train_epoch(model, opt, x_train, y_train, args, epoch, step,
                                         total_steps, warmup_steps)
        t_train = time.time() - t0
        epoch += 1
        test_acc = None
        if epoch == args.epochs or (args.eval_every and epoch % args.eval_every == 0):
            test_acc = round(evaluate(model, x_test, y_test), 4)
        rec = {"epoch": epoch, "train_loss": round(loss, 4), "train_acc": round(acc, 4),
               "test_acc": test_acc, "train_s": round(t_train, 1),
               "eval_s": round(time.time() - t0 - t_train, 1)}
        log.append(rec)
        print(f"[{args.name}] " + json.dumps(rec), flush=True)
        tmp = ckpt_path + ".tmp"
        torch.save({"hparams": hparams, "model": model.state_dict(),
                    "opt": opt.state_dict(), "epoch": epoch, "step": step, "log": log}, tmp)
        os.replace(tmp, ckpt_path)

    if epoch < args.epochs:
        sys.exit("training not finished; nothing exported")
    torch_acc = log[-1]["test_acc"] if log and log[-1]["test_acc"] is not None \
        else evaluate(model, x_test, y_test)
    meta = {"epochs": epoch, "torch_test_acc": torch_acc}
    onnx_acc, evaluator = export_and_check(model, args, test_u8, test_y, meta)
    summary = {"name": args.name, "hparams": hparams, "params": models.num_params(model),
               "train_s_total": round(sum(r["train_s"] for r in log), 1),
               "torch_test_acc": round(torch_acc, 4), "onnx_test_acc": round(onnx_acc, 4),
               "evaluator": evaluator, "torch_version": torch.__version__, "log": log}
    os.makedirs(os.path.join(HERE, "logs"), exist_ok=True)
    with open(os.path.join(HERE, "logs", f"{args.name}.json"), "w") as f:
        json.dump(summary, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()

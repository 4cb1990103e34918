"""CPU training-step speed of our EVA-02 next to timm's, measured in the same process, and peak memory.

    python benchmarks/bench_train.py                          # Ti and S classifiers at 224, batch 8, and the MIM step
    python benchmarks/bench_train.py --models Ti --batches 8 --runs 6 --no-mim
    python benchmarks/bench_train.py --memory                 # also peak memory, one subprocess per measurement
    python benchmarks/bench_train.py --models= --no-mim       # only the patch-dropout case

A classifier step is forward + cross-entropy + backward + AdamW step + zeroing the gradients, in train mode
(float32, random weights and labels; timm: `eva02_{tiny,small}_patch14_224`, 1000 classes). The MIM step is
EVA-02 pre-training: a frozen EVA-01-style teacher (the g/14 block structure at width 352, 4 blocks) gives per-patch
targets under no_grad, the Ti student sees the image with 105 of 256 patches replaced by the mask token and is
trained on the negative cosine to the targets at the masked positions. The PyTorch step is built from timm's modules
(`eva_giant_patch14_clip_224` shrunk alike for the teacher, `eva02_tiny_patch14_224` for the student, with a mask
token and an `lm_head`). Ours runs with the training runtime settings of our scripts
(`runtime.configure_training_runtime`). Peak memory is the growth of the process's maximum resident set over
warm-up and timed steps, each measurement in its own process (`--memory`).

The patch-dropout case (`--no-patch-dropout` skips it) times one EVA-CLIP image-tower training step with FLIP patch
dropout off and at `--patch-dropout` (0.5, the paper's): EVA02-CLIP-B-16's tower (RoPE, SwiGLU + sub-LN, inner LN)
cut to 4 blocks at 224, random weights, forward + CLIP loss against fixed random text features + backward + AdamW
(ours only; the saving is the ratio of the two).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import statistics
import subprocess
import sys
from typing import Callable, Dict

import paddlemix_eva  # noqa: F401  (before paddle)

# isort: split
import numpy as np
import paddle
from bench_inference import cpu_name, import_timm

from timing import add_timing_arguments, csv_list, markdown_table, parse_timing_arguments, setup_logging, time_in_rounds

ZOO = {"Ti": "eva02_Ti_pt_in21k_ft_in1k_p14", "S": "eva02_S_pt_in21k_ft_in1k_p14"}
TIMM = {"Ti": "eva02_tiny_patch14_224", "S": "eva02_small_patch14_224"}
#: the MIM teacher: EVA01-CLIP-g/14's block structure (GELU MLP, 88-d heads, no RoPE) at width 352, 4 blocks
TEACHER = dict(width=352, layers=4, head_width=88, mlp_ratio=4.3637, embed_dim=1024)
MASKED_PATCHES = 105
#: the patch-dropout case: EVA02-CLIP-B-16's image tower at 224, cut to PD_DEPTH blocks
PD_MODEL, PD_DEPTH = "EVA02-CLIP-B-16", 4

logger = logging.getLogger("bench_train")


# ------------------------------------------------------------------------------------------------- ours
def paddle_classifier_step(tag: str, batch: int) -> Callable[[], float]:
    model = paddlemix_eva.get_model(ZOO[tag], image_size=224)
    model.train()
    optimizer = paddle.optimizer.AdamW(learning_rate=1e-4, parameters=model.parameters(), weight_decay=0.05)
    rng = np.random.default_rng(0)
    images = paddle.to_tensor(rng.standard_normal((batch, 3, 224, 224)).astype(np.float32))
    labels = paddle.to_tensor(rng.integers(0, 1000, batch))

    def step() -> float:
        loss = paddle.nn.functional.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()
        optimizer.clear_grad()
        return float(loss)

    return step


def _mask(batch: int, rng: np.random.Generator) -> np.ndarray:
    mask = np.zeros((batch, 256), bool)
    for row in mask:
        row[rng.choice(256, MASKED_PATCHES, replace=False)] = True
    return mask


def paddle_mim_step(batch: int) -> Callable[[], float]:
    from paddlemix_eva.models.eva02.pretrain import EVA02ForPretrain, EVA02ForPretrainConfig
    from paddlemix_eva.models.eva02.zoo_table import eva02_config

    teacher = dict(embed_dim=TEACHER["embed_dim"], text_cfg=dict(width=32, heads=2, layers=1),
                   vision_cfg=dict(image_size=224, patch_size=14, width=TEACHER["width"], layers=TEACHER["layers"],
                                   head_width=TEACHER["head_width"], mlp_ratio=TEACHER["mlp_ratio"], qkv_bias=True,
                                   rope=False, naiveswiglu=False, subln=False))
    model = EVA02ForPretrain(EVA02ForPretrainConfig(teacher_config=teacher, student_config=eva02_config("Ti", 224)))
    model.train()
    optimizer = paddle.optimizer.AdamW(learning_rate=1e-4, parameters=[p for p in model.parameters()
                                                                       if not p.stop_gradient], beta2=0.98)
    rng = np.random.default_rng(0)
    samples = paddle.to_tensor(rng.standard_normal((batch, 3, 224, 224)).astype(np.float32))
    image = paddle.to_tensor(rng.standard_normal((batch, 3, 224, 224)).astype(np.float32))
    mask = paddle.to_tensor(_mask(batch, rng).reshape(batch, 16, 16))

    def step() -> float:
        loss = model(samples, image, mask)["loss"]
        loss.backward()
        optimizer.step()
        optimizer.clear_grad()
        return float(loss)

    return step


def paddle_clip_vision_step(batch: int, patch_dropout: float) -> Callable[[], float]:
    """One training step of EVA02-CLIP-B-16's image tower (PD_DEPTH blocks) with patch dropout at `patch_dropout`:
    forward, CLIP loss against fixed random unit text features, backward, AdamW."""
    from paddlemix_eva.layers.losses import l2_normalize
    from paddlemix_eva.models.evaclip import EVACLIPVisionConfig, EVACLIPVisionTransformer
    from paddlemix_eva.models.evaclip.zoo_table import ENTRIES

    (entry,) = [e for e in ENTRIES if e.full_name.endswith("/" + PD_MODEL)]
    fields = {**entry.config["vision_cfg"], "embed_dim": entry.config["embed_dim"], "layers": PD_DEPTH}
    paddle.seed(0)
    model = EVACLIPVisionTransformer(EVACLIPVisionConfig(**fields))
    model.init_parameters()
    model.set_patch_dropout(patch_dropout)
    model.train()
    optimizer = paddle.optimizer.AdamW(learning_rate=1e-4, parameters=model.parameters(), weight_decay=0.05)
    rng = np.random.default_rng(0)
    images = paddle.to_tensor(rng.standard_normal((batch, 3, 224, 224)).astype(np.float32))
    text = l2_normalize(paddle.to_tensor(rng.standard_normal((batch, fields["embed_dim"])).astype(np.float32)))
    labels = paddle.arange(batch)

    def step() -> float:
        logits = 100.0 * l2_normalize(model(images)) @ text.T
        loss = (paddle.nn.functional.cross_entropy(logits, labels)
                + paddle.nn.functional.cross_entropy(logits.T, labels)) / 2
        loss.backward()
        optimizer.step()
        optimizer.clear_grad()
        return float(loss)

    return step


def patch_dropout_rows(args) -> list:
    """[step, input, batch, s/step without, s/step with, speed-up] per batch size, both runners timed together."""
    from paddlemix_eva.layers import num_kept_patches

    rows = []
    patches = (224 // 16) ** 2
    tokens = 1 + num_kept_patches(patches, args.patch_dropout)
    for batch in args.batches:
        runners = {rate: paddle_clip_vision_step(batch, rate) for rate in (0.0, args.patch_dropout)}
        times = time_in_rounds(runners, args.warmup, args.runs, args.rounds)
        off, on = statistics.median(times[0.0]), statistics.median(times[args.patch_dropout])
        rows.append([f"{PD_MODEL} image tower, {PD_DEPTH} blocks", "224", str(batch), f"{off:.3f}", f"{on:.3f}",
                     f"{off / on:.2f}"])
        logger.info("patch dropout b%d: %.3f s/step at 0 (%d tokens), %.3f s/step at %g (%d tokens), speed-up %.2f",
                    batch, off, 1 + patches, on, args.patch_dropout, tokens, off / on)
        del runners
    return rows


# ------------------------------------------------------------------------------------------------- timm
def torch_classifier_step(timm, tag: str, batch: int) -> Callable[[], float]:
    import torch

    model = timm.create_model(TIMM[tag], pretrained=False, num_classes=1000).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.standard_normal((batch, 3, 224, 224)).astype(np.float32))
    labels = torch.from_numpy(rng.integers(0, 1000, batch))

    def step() -> float:
        loss = torch.nn.functional.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    return step


def torch_mim_step(timm, batch: int) -> Callable[[], float]:
    """The same MIM step from timm's EVA modules: teacher tokens `head(norm(x))[:, 1:]`, student with the mask
    token substituted before cls / pos_embed / RoPE, `lm_head` on the masked tokens, negative cosine."""
    import torch

    teacher = timm.create_model("eva_giant_patch14_clip_224", pretrained=False, embed_dim=TEACHER["width"],
                                depth=TEACHER["layers"], num_heads=TEACHER["width"] // TEACHER["head_width"],
                                num_classes=TEACHER["embed_dim"]).eval()
    for param in teacher.parameters():
        param.requires_grad_(False)
    student = timm.create_model(TIMM["Ti"], pretrained=False, num_classes=0).train()
    mask_token = torch.nn.Parameter(torch.zeros(1, 1, student.embed_dim))
    lm_head = torch.nn.Linear(student.embed_dim, TEACHER["embed_dim"])
    params = list(student.parameters()) + [mask_token] + list(lm_head.parameters())
    optimizer = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.98))
    rng = np.random.default_rng(0)
    samples = torch.from_numpy(rng.standard_normal((batch, 3, 224, 224)).astype(np.float32))
    image = torch.from_numpy(rng.standard_normal((batch, 3, 224, 224)).astype(np.float32))
    mask = torch.from_numpy(_mask(batch, rng))

    def step() -> float:
        with torch.no_grad():
            target = teacher.head(teacher.forward_features(image)[:, 1:])[mask]
        x = student.patch_embed(samples)
        w = mask.unsqueeze(-1).to(x.dtype)
        x, rope = student._pos_embed(x * (1 - w) + mask_token * w)
        for blk in student.blocks:
            x = blk(x, rope=rope)
        pred = lm_head(student.norm(x)[:, 1:][mask])
        loss = -torch.nn.functional.cosine_similarity(pred, target, dim=-1).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    return step


# ----------------------------------------------------------------------------------------------- driver
def build(framework: str, workload: str, batch: int, timm) -> Callable[[], float]:
    if framework == "paddle":
        return paddle_mim_step(batch) if workload == "MIM" else paddle_classifier_step(workload, batch)
    return torch_mim_step(timm, batch) if workload == "MIM" else torch_classifier_step(timm, workload, batch)


def peak_memory_mib(framework: str, workload: str, batch: int, threads: int, steps: int) -> float:
    """Growth of the maximum RSS over `steps` steps (after building), in a fresh process."""
    code = ("import sys, json, resource; sys.path.insert(0, %r); import bench_train as b; "
            "b.child_memory(%r, %r, %d, %d, %d)"
            % (os.path.dirname(os.path.abspath(__file__)), framework, workload, batch, threads, steps))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=1800)
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-2000:])
    return json.loads(result.stdout.strip().splitlines()[-1])["peak_mib"]


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def child_memory(framework: str, workload: str, batch: int, threads: int, steps: int) -> None:
    """Print the largest resident set seen while stepping (sampled every 2 ms) minus the one before."""
    import threading
    import time

    setup_logging()
    configure(threads)
    timm = import_timm() if framework == "torch" else None
    step = build(framework, workload, batch, timm)
    before, peak, done = _rss_bytes(), [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _rss_bytes())
            time.sleep(0.002)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    for _ in range(steps):
        step()
    done.set()
    sampler.join()
    print(json.dumps({"peak_mib": (max(peak[0], _rss_bytes()) - before) / 2**20}))


def configure(threads: int) -> None:
    from paddlemix_eva.utils.runtime import configure_training_runtime, set_cpu_threads

    configure_training_runtime()
    set_cpu_threads(threads)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="Ti,S", help="classifiers, comma-separated, from: " + ",".join(ZOO))
    parser.add_argument("--no-mim", action="store_true", help="skip the MIM pre-training step")
    parser.add_argument("--memory", action="store_true", help="also measure peak memory (one process each)")
    parser.add_argument("--no-patch-dropout", action="store_true", help="skip the EVA-CLIP patch-dropout case")
    parser.add_argument("--patch-dropout", type=float, default=0.5, help="the ratio it is timed at (vs 0)")
    add_timing_arguments(parser, batches="8", warmup=2, runs=6)
    args = parse_timing_arguments(parser, argv)
    setup_logging()
    args.models = csv_list(args.models)
    for model in args.models:
        if model not in ZOO:
            parser.error(f"unknown model {model!r}; choose from {', '.join(ZOO)}")
    if not 0 < args.patch_dropout < 1:
        parser.error("--patch-dropout must be in (0, 1)")
    configure(args.threads)
    timm = import_timm()
    import torch

    torch.set_num_threads(args.threads)
    logger.info("%s, %d threads, paddle %s, torch %s, timm %s", cpu_name(), args.threads, paddle.__version__,
                torch.__version__, timm.__version__)
    workloads = list(args.models) + ([] if args.no_mim else ["MIM"])
    rows = []
    for workload in workloads:
        for batch in args.batches:
            runners: Dict[str, Callable[[], float]] = {fw: build(fw, workload, batch, timm)
                                                       for fw in ("torch", "paddle")}
            times = time_in_rounds(runners, args.warmup, args.runs, args.rounds)
            ours, theirs = statistics.median(times["paddle"]), statistics.median(times["torch"])
            row = [workload if workload == "MIM" else f"EVA-02 {workload} classifier", "224", str(batch),
                   f"{ours:.3f}", f"{theirs:.3f}", f"{theirs / ours:.2f}"]
            if args.memory:
                mem = {fw: peak_memory_mib(fw, workload, batch, args.threads, args.warmup + 2) for fw in runners}
                row += [f"{mem['paddle']:.0f}", f"{mem['torch']:.0f}"]
            rows.append(row)
            logger.info("%s b%d: ours %.3f s/step, PyTorch %.3f s/step, ours speed / theirs %.2f", workload, batch,
                        ours, theirs, theirs / ours)
            del runners
    header = ["step", "input", "batch", "ours s", "PyTorch (timm) s", "speed ours/PyTorch"]
    align = "llrrrr"
    if args.memory:
        header += ["ours peak MiB", "PyTorch peak MiB"]
        align += "rr"
    if rows:
        logger.info("\n%s", markdown_table(header, align, rows, args.markdown))
    if not args.no_patch_dropout:
        pd_rows = patch_dropout_rows(args)
        pd_header = ["step (ours)", "input", "batch", "patch_dropout 0 s", f"patch_dropout {args.patch_dropout:g} s",
                     "speed-up"]
        markdown = args.markdown and (args.markdown + ".patch_dropout.md" if rows else args.markdown)
        logger.info("%s, %d threads\n%s", cpu_name(), args.threads,
                    markdown_table(pd_header, "llrrrr", pd_rows, markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())

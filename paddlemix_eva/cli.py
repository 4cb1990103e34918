"""`paddlemix-eva` command line: list the zoo, predict images, extract features, export, convert checkpoints."""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import List, Optional, Sequence

from paddlemix_eva.utils.errors import FlagParser, check_writable_dir, check_writable_file, positive_int
from paddlemix_eva.utils.logs import progress

logger = logging.getLogger("paddlemix_eva")


def format_table(rows: Sequence[Sequence[object]], headers: Sequence[str]) -> str:
    cells = [[str(h) for h in headers]] + [["-" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


ZOO_HEADERS = ["model", "task", "input", "patch", "params", "GMACs", "IN-1K top-1"]


def zoo_rows(pattern: Optional[str] = None) -> List[List[object]]:
    """One row per zoo entry: name, task, input size, patch, parameters (counted from the built model), GMACs of
    one image at the input size (counted over a real forward, see `paddlemix_eva.tasks.flops`; the student for
    `mim-pretrain`, the vision tower for `clip`), published ImageNet-1K top-1 (zero-shot for CLIP models)."""
    from paddlemix_eva import zoo
    from paddlemix_eva.tasks import zoo_stats

    names = zoo.list_models(pattern)
    rows = []
    for name in progress(names, "counting parameters and MACs", unit="model"):
        entry = zoo.get_entry(name)
        params = f"{zoo_stats.count_parameters(entry):,}"
        gmacs = f"{zoo_stats.count_image_macs(name) / 1e9:.2f}"
        top1 = f"{entry.top1:.1f}" if entry.top1 is not None else "-"
        rows.append([name, entry.task, entry.input_size, entry.patch_size, params, gmacs, top1])
    return rows


def cmd_list(args: argparse.Namespace) -> int:
    from paddlemix_eva import zoo

    if not zoo.list_models(args.pattern):
        logger.error("no model matches %r", args.pattern)
        return 1
    print(format_table(zoo_rows(args.pattern), ZOO_HEADERS))
    return 0


def _load_for_prediction(args: argparse.Namespace):
    threads = args.threads or os.cpu_count() or 1
    labels = None
    if args.labels is not None:  # checked before any model loads
        if args.backend == "inference":
            raise ValueError("--labels (zero-shot) needs the dygraph backend: "
                             "exports are classifiers with fixed classes")
        from paddlemix_eva.tasks.zeroshot import parse_labels

        labels = parse_labels(args.labels)
    if args.backend == "inference":
        from paddlemix_eva.tasks.export import load_exported

        return load_exported(args.model, num_threads=threads)
    from paddlemix_eva.utils.runtime import set_cpu_threads

    set_cpu_threads(threads)  # Paddle's eager CPU kernels default to one thread
    if labels is not None:
        from paddlemix_eva.tasks.zeroshot import zero_shot_classifier

        return zero_shot_classifier(args.model, labels)
    from paddlemix_eva.tasks.inference import load_classifier_for_inference

    return load_classifier_for_inference(args.model)


def cmd_predict(args: argparse.Namespace) -> int:
    from paddlemix_eva.tasks.inference import inference_model

    model = _load_for_prediction(args)
    results = inference_model(model, list(args.images), topk=args.topk, batch_size=args.batch_size)
    failed = 0
    for path, result in zip(args.images, results):
        print(path)
        if "error" in result:
            print(f"  error: {result['error']}")
            failed += 1
            continue
        for label, score, name in result["topk"]:
            print(f"  {score:7.4f}  {label:6d}  {name}")
    if failed:
        logger.error("%d of %d images could not be read", failed, len(args.images))
    return 1 if failed else 0


def cmd_features(args: argparse.Namespace) -> int:
    import numpy as np

    from paddlemix_eva.tasks.inference import extract_features, list_image_files, load_feature_extractor

    out = args.out if args.out.endswith(".npy") else args.out + ".npy"
    check_writable_file(out, "--out")
    files, shown = [], {}  # shown: how each file is named in the row listing
    for source in args.paths:
        if os.path.isdir(source):
            found = list_image_files(source)
            files += found
            shown.update((path, os.path.relpath(path, source)) for path in found)
        elif os.path.isfile(source):
            files.append(source)
            shown[source] = source
        else:
            raise FileNotFoundError(f"no such image file or folder: {source}")
    model = load_feature_extractor(args.model)
    features, errors = extract_features(model, files, patch_tokens=args.patch_tokens, batch_size=args.batch_size)
    kept = [path for path, error in zip(files, errors) if error is None]
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    np.save(out, features)
    listing = out[: -len(".npy")] + ".files.txt"
    with open(listing, "w", encoding="utf-8") as f:
        f.writelines(shown[path] + "\n" for path in kept)
    print(f"features {list(features.shape)} of {len(kept)} images -> {out} (row order: {listing})")
    skipped = len(files) - len(kept)
    if skipped:
        logger.error("%d of %d image files could not be read (see the warnings above)", skipped, len(files))
    return 1 if skipped else 0


def cmd_export(args: argparse.Namespace) -> int:
    from paddlemix_eva.tasks.export import export_model
    from paddlemix_eva.tasks.inference import load_classifier_for_inference

    check_writable_dir(args.out, "--out")
    model = load_classifier_for_inference(args.model)
    out = export_model(model, args.out, input_size=args.input_size, dtype=args.dtype)
    print(f"exported {args.model} -> {out}; "
          f"run it with `paddlemix-eva predict IMAGE --model {out} --backend inference`")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from paddlemix_eva.convert import convert_checkpoint

    check_writable_dir(args.out, "--out")
    out = convert_checkpoint(args.src, args.format, out=args.out, model=args.model, p14to16=args.p14to16)
    print(f"converted {args.src} -> {out}; load it with from_pretrained({out!r})")
    return 0


def cmd_mae_visualize(args: argparse.Namespace) -> int:
    from paddlemix_eva.models.mae.masking import check_mask_ratio
    from paddlemix_eva.tasks.mae_visualize import save_reconstruction_figure

    if args.mask_ratio is not None:  # before the model loads
        try:
            check_mask_ratio(args.mask_ratio)
        except ValueError as err:
            raise ValueError(f"--mask-ratio: {err}") from None
    check_writable_file(args.out, "--out")
    out = save_reconstruction_figure(args.model, args.image, args.out, mask_ratio=args.mask_ratio, seed=args.seed)
    print(f"original | masked | reconstructed -> {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from paddlemix_eva.convert import FORMATS

    parser = FlagParser(prog="paddlemix-eva", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="also show Paddle's / PaddleNLP's own messages and DEBUG logs")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="list the model zoo with counted parameters and GMACs")
    p.add_argument("pattern", nargs="?", default=None, help="shell-style filter, e.g. '*Ti*'")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("predict", help="top-k classes of images (any classifier; EVA-CLIP zero-shot with --labels)")
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--model", required=True,
                   help="zoo name or model directory (an export directory with --backend inference)")
    p.add_argument("--labels", default=None,
                   help="zero-shot with an EVA-CLIP model: class names, comma-separated (\"cat,dog\") or a file "
                        "with one per line; prompts are the 80 built-in ImageNet templates")
    p.add_argument("--backend", choices=("dygraph", "inference"), default="dygraph",
                   help="dygraph: the Paddle model; inference: a model written by `paddlemix-eva export`")
    p.add_argument("--topk", type=positive_int, default=5, help="how many classes to print per image (default: 5)")
    p.add_argument("--batch-size", type=positive_int, default=8,
                   help="images per forward pass (default: 8); larger is faster and needs more memory")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="CPU threads of either backend (default: all cores)")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("features", help="features of images (files, or every image under folders), saved as .npy")
    p.add_argument("paths", nargs="+", help="image files and/or folders of images (searched recursively)")
    p.add_argument("--model", required=True,
                   help="zoo name or model directory (classifier, encoder, pre-training or CLIP "
                        "model of any family)")
    p.add_argument("--out", required=True, help="output .npy file; the row order is written next to it (.files.txt)")
    p.add_argument("--patch-tokens", action="store_true", help="patch tokens [N, P, D] instead of pooled features")
    p.add_argument("--batch-size", type=positive_int, default=8,
                   help="images per forward pass (default: 8); larger is faster and needs more memory")
    p.set_defaults(func=cmd_features)

    p = sub.add_parser("export", help="export a classifier to a static graph for Paddle Inference")
    p.add_argument("--model", required=True, help="zoo name or model directory")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--input-size", type=positive_int, default=None,
                   help="image size of the exported graph (default: the model's)")
    p.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32",
                   help="bf16 runs oneDNN bfloat16 kernels (CPUs with AVX512-BF16)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("convert", help="convert an official / timm / open_clip / PaddleMIX checkpoint")
    p.add_argument("src", help="weight file (.pt/.pth/.bin, .safetensors, .pdparams, .npz; read without running code)")
    p.add_argument("--format", required=True, choices=FORMATS, help="layout of SRC")
    p.add_argument("--model", default=None, help="zoo name to take the architecture from (default: infer from shapes)")
    p.add_argument("--out", required=True, help="output directory (config.json + model_state.pdparams)")
    p.add_argument("--p14to16", action="store_true", help="also turn a patch-14 model into its patch-16 variant")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("mae-visualize", help="MAE reconstruction: original, masked and reconstructed side by side")
    p.add_argument("image", help="image file")
    p.add_argument("--model", required=True, help="MAE pre-training model with decoder (zoo name or directory)")
    p.add_argument("--out", required=True, help="output PNG")
    p.add_argument("--mask-ratio", type=float, default=None, help="fraction of patches removed (default: the model's)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random masking")
    p.set_defaults(func=cmd_mae_visualize)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    import paddlemix_eva  # noqa: F401  - CPU backend settings before paddle loads

    args = build_parser().parse_args(argv)
    from paddlemix_eva.utils.logs import setup_logging

    setup_logging(args.verbose)
    from paddlemix_eva.utils.errors import exit_on_bad_input

    return exit_on_bad_input(lambda: args.func(args))


if __name__ == "__main__":
    sys.exit(main())

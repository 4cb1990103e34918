"""`paddlemix-eva` command line: list the zoo, predict images, convert checkpoints."""
from __future__ import annotations

import argparse
import logging
import sys
from typing import List, Optional, Sequence

logger = logging.getLogger("paddlemix_eva")


def format_table(rows: Sequence[Sequence[object]], headers: Sequence[str]) -> str:
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


ZOO_HEADERS = ["model", "task", "input", "patch", "params", "IN-1K top-1"]


def zoo_rows(pattern: Optional[str] = None) -> List[List[object]]:
    """One row per zoo entry: name, task, input size, patch, parameters (counted from the built model), published
    ImageNet-1K top-1 (zero-shot for CLIP models)."""
    from . import zoo

    rows = []
    for name in zoo.list_models(pattern):
        entry = zoo.get_entry(name)
        try:
            params = f"{zoo.count_parameters(entry):,}"
        except ImportError:
            params = "-"  # composite teacher+student: built by the pretraining code
        top1 = f"{entry.top1:.1f}" if entry.top1 is not None else "-"
        rows.append([name, entry.task, entry.image_size, entry.patch_size, params, top1])
    return rows


def cmd_list(args: argparse.Namespace) -> int:
    rows = zoo_rows(args.pattern)
    if not rows:
        logger.error("no model matches %r", args.pattern)
        return 1
    print(format_table(rows, ZOO_HEADERS))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from .inference import _as_model, inference_model

    model = _as_model(args.model)
    for path in args.images:
        result = inference_model(model, path, topk=args.topk)
        print(path)
        for label, score, name in result["topk"]:
            print(f"  {score:7.4f}  {label:6d}  {name}")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from .convert import convert_checkpoint

    out = convert_checkpoint(args.src, args.format, out=args.out, model=args.model, p14to16=args.p14to16)
    print(f"converted {args.src} -> {out}; load it with from_pretrained({out!r})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .convert import FORMATS

    parser = argparse.ArgumentParser(prog="paddlemix-eva", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="list the model zoo with counted parameters")
    p.add_argument("pattern", nargs="?", default=None, help="shell-style filter, e.g. '*Ti*'")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("predict", help="top-k ImageNet classes of images")
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--model", required=True, help="zoo name or model directory")
    p.add_argument("--topk", type=int, default=5)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("convert", help="convert an official / timm / open_clip / PaddleMIX checkpoint")
    p.add_argument("src", help="weight file (.pt/.pth/.bin with torch installed, .safetensors, .pdparams, .npz)")
    p.add_argument("--format", required=True, choices=FORMATS, help="layout of SRC")
    p.add_argument("--model", default=None, help="zoo name to take the architecture from (default: infer from shapes)")
    p.add_argument("--out", required=True, help="output directory (config.json + model_state.pdparams)")
    p.add_argument("--p14to16", action="store_true", help="also turn a patch-14 model into its patch-16 variant")
    p.set_defaults(func=cmd_convert)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    import paddlemix_eva  # noqa: F401  - CPU backend settings before paddle loads

    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        return args.func(args)
    except (KeyError, ValueError, FileNotFoundError, OSError, ImportError) as err:
        logger.error("%s", err.args[0] if isinstance(err, KeyError) and err.args else err)
        return 2


if __name__ == "__main__":
    sys.exit(main())

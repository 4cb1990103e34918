"""Zero-shot ImageNet-style classification with an EVA-CLIP model.

    python examples/evaclip/run_zero_shot_eval.py --model paddlemix/EVA/EVA02-CLIP-L-14 --data_path imagenet/val

`--data_path` is an ImageFolder (one sub-folder per class, sorted order = label order). The 1000 ImageNet class
names and the 80 OpenAI templates are built in; `--classnames FILE` / `--templates FILE` (one per line, templates
with `{}` for the class name) set another label set. Class embeddings are cached in `--cache_dir` under a hash of
the text tower's weights and the prompts. Metrics go to the log and to `--output_dir/zeroshot_metrics.json`.
"""
import argparse
import json
import logging
import os

import paddlemix_eva  # noqa: F401  (before paddle: CPU backend settings)

# isort: split

from paddlemix_eva.data.datasets import ImageFolder
from paddlemix_eva.data.transforms import EvalTransform
from paddlemix_eva.models import EVACLIP
from paddlemix_eva.tasks import zeroshot
from paddlemix_eva.utils.errors import FlagParser, check_writable_dir, exit_on_bad_input, positive_int
from paddlemix_eva.utils.logs import setup_logging

logger = logging.getLogger("run_zero_shot_eval")


def parse_args():
    parser = FlagParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="paddlemix/EVA/EVA02-CLIP-L-14", help="zoo name or model directory")
    parser.add_argument("--data_path", required=True, help="ImageFolder of evaluation images")
    parser.add_argument("--classnames", default=None, help="file with one class name per line (default: ImageNet)")
    parser.add_argument("--templates", default=None, help="file with one prompt template per line (default: 80 OpenAI)")
    parser.add_argument("--per_device_eval_batch_size", type=positive_int, default=64, help="images per forward pass")
    parser.add_argument("--dataloader_num_workers", type=int, default=2, help="decoding worker processes")
    parser.add_argument("--crop_pct", type=float, default=1.0, help="resize to size/crop_pct, then centre crop")
    parser.add_argument("--cache_dir", default=None, help="where class embeddings are cached (default: no cache)")
    parser.add_argument("--output_dir", default=None, help="write zeroshot_metrics.json here")
    parser.add_argument("--verbose", action="store_true", help="also show Paddle's / PaddleNLP's own messages")
    return parser.parse_args()


def main():
    args = parse_args()
    setup_logging(args.verbose)
    if args.output_dir:  # before the evaluation, whose metrics go there
        check_writable_dir(args.output_dir)
    classnames = (zeroshot.read_lines(args.classnames, "class names") if args.classnames
                  else zeroshot.default_classnames())
    templates = zeroshot.read_lines(args.templates, "templates") if args.templates else zeroshot.imagenet_templates()
    zeroshot.check_prompts(classnames, templates)
    dataset = ImageFolder(args.data_path)  # its classes are checked before the model loads
    if len(dataset.classes) != len(classnames):
        source = args.classnames or "the built-in ImageNet names"
        raise ValueError(f"{args.data_path} has {len(dataset.classes)} class folders but there are {len(classnames)} "
                         f"class names ({source}); pass --classnames FILE with one name per folder, in sorted "
                         "folder order")
    model = EVACLIP.from_pretrained(args.model)
    model.eval()
    dataset.transform = EvalTransform(model.config.vision_config.image_size, crop_pct=args.crop_pct)
    classifier = zeroshot.build_classifier(model, classnames, templates, cache_dir=args.cache_dir)
    metrics = zeroshot.evaluate(model, dataset, classifier, args.per_device_eval_batch_size,
                                args.dataloader_num_workers)
    logger.info("zero-shot top-1 %.2f%%  top-5 %.2f%%  over %d images", metrics["top1"], metrics["top5"],
                metrics["num_samples"])
    if args.output_dir:
        os.makedirs(args.output_dir, exist_ok=True)
        with open(os.path.join(args.output_dir, "zeroshot_metrics.json"), "w") as f:
            json.dump({"model": args.model, **metrics}, f, indent=2)


if __name__ == "__main__":
    exit_on_bad_input(main)

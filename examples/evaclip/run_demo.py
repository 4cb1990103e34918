"""`make demo-clip`: train a small EVA-CLIP from scratch on captioned scikit-learn digits, then evaluate zero-shot
classification and image-text retrieval on held-out digits.

    python examples/evaclip/run_demo.py [--workdir output/demo_clip] [--digit_epochs 15] [--caption_epochs 3]

Each step runs the same script as the full recipe (run_pretrain_dist.py twice: digit-name captions, then all
captions; run_retrieval_eval.py) with smaller flags; see examples/evaclip/digits_clip_demo.py for the data, the
curriculum and the flags.
"""
import argparse
import os

import paddlemix_eva  # noqa: F401  (before paddle: CPU backend settings)

# isort: split

from paddlemix_eva.utils.errors import exit_on_bad_input
from paddlemix_eva.utils.logs import setup_logging

from digits_clip_demo import run_demo, summary_lines


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default="output/demo_clip", help="data, checkpoints and logs go here")
    parser.add_argument("--digit_epochs", type=int, default=15, help="stage 1: epochs on the digit-name captions")
    parser.add_argument("--caption_epochs", type=int, default=3, help="stage 2: epochs on all captions")
    parser.add_argument("--train_limit", type=int, default=None,
                        help="train on about this many digits (stratified; default: all not held out)")
    parser.add_argument("--verbose", action="store_true", help="also show Paddle's / PaddleNLP's own messages")
    args = parser.parse_args()
    for flag in ("digit_epochs", "caption_epochs"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag} must be at least 1, got {getattr(args, flag)}")
    if args.train_limit is not None and args.train_limit < 32:
        parser.error(f"--train_limit must be at least 32 (their two renders fill a batch of 64), got "
                     f"{args.train_limit}")
    setup_logging(args.verbose)
    examples = os.path.dirname(os.path.abspath(__file__))
    result = run_demo(os.path.abspath(args.workdir), examples, args.digit_epochs, args.caption_epochs,
                      args.train_limit)
    print("\n".join(["", "EVA-CLIP demo: contrastive training from scratch -> zero-shot -> retrieval"]
                    + summary_lines(result)))


if __name__ == "__main__":
    exit_on_bad_input(main)

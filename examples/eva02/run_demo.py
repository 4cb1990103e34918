"""`make demo`: MIM-pretrain a small EVA-02 on scikit-learn's digits, fine-tune it, evaluate it.

    python examples/eva02/run_demo.py [--workdir output/demo]

Each step runs the same script as the full recipe (run_eva02_pretrain_dist.py, run_eva02_finetune_dist.py,
run_eva02_finetune_eval.py) with smaller flags; see examples/eva02/digits_demo.py for them.
"""
import argparse
import os

import paddlemix_eva  # noqa: F401  (before paddle: CPU backend settings)

# isort: split

from paddlemix_eva.utils.errors import exit_on_bad_input
from paddlemix_eva.utils.logs import setup_logging

from digits_demo import run_demo, summary_lines


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default="output/demo", help="data, checkpoints and logs go here")
    parser.add_argument("--pretrain_epochs", type=int, default=3, help="epochs of MIM pre-training")
    parser.add_argument("--finetune_epochs", type=int, default=10, help="epochs of fine-tuning")
    parser.add_argument("--verbose", action="store_true", help="also show Paddle's / PaddleNLP's own messages")
    args = parser.parse_args()
    for flag in ("pretrain_epochs", "finetune_epochs"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag} must be at least 1, got {getattr(args, flag)}")
    setup_logging(args.verbose)
    examples = os.path.dirname(os.path.abspath(__file__))
    result = run_demo(os.path.abspath(args.workdir), examples, args.pretrain_epochs, args.finetune_epochs)
    print("\n".join(["", "EVA-02 demo: MIM pre-training -> fine-tuning -> evaluation"] + summary_lines(result)))


if __name__ == "__main__":
    exit_on_bad_input(main)

"""Image-text retrieval (Recall@1/5/10, image->text and text->image) of an EVA-CLIP model on a Karpathy test split.

    python examples/evaclip/run_retrieval_eval.py --model paddlemix/EVA/EVA02-CLIP-B-16 \
        --data_path coco_karpathy_test.json --image_root coco --output_dir outputs/retrieval \
        [--batch_size 64] [--save_features] [--verbose]

`--model` is a zoo name or a model directory; `--data_path` a Karpathy-format JSON (COCO or Flickr30k) whose image
paths are relative to `--image_root`. The report goes to `--output_dir/retrieval_report.json`; `--save_features`
also writes the normalised features to `--output_dir/features.npz`. Unreadable images are dropped with their
captions (and counted in the report).
"""
from dataclasses import dataclass, field

import paddlemix_eva  # noqa: F401  (before paddle: CPU backend settings)

# isort: split
from paddlemix_eva.trainer.base import run_from_command_line


@dataclass
class RetrievalArguments:
    """The flags of the retrieval evaluation."""

    data_path: str = field(metadata={"help": "Karpathy-format annotation JSON (e.g. coco_karpathy_test.json)"})
    image_root: str = field(metadata={"help": "folder the annotation's image paths are relative to"})
    output_dir: str = field(metadata={"help": "write retrieval_report.json (and features.npz) here"})
    model: str = field(default="paddlemix/EVA/EVA02-CLIP-B-16", metadata={"help": "zoo name or model directory"})
    batch_size: int = field(default=64, metadata={"help": "images / captions per forward"})
    save_features: bool = field(default=False, metadata={"help": "also write the features to features.npz"})

    def __post_init__(self):
        if self.batch_size < 1:
            raise ValueError(f"--batch_size must be at least 1, got {self.batch_size}")


def main(args: RetrievalArguments) -> None:
    from paddlemix_eva.tasks.retrieval import evaluate_retrieval

    evaluate_retrieval(args.model, args.data_path, args.image_root, args.output_dir, args.batch_size,
                       args.save_features)


if __name__ == "__main__":
    run_from_command_line(main, RetrievalArguments)

"""Build each EVA-02 size, classify the sample image shipped with the package, and print the zoo table.

The weights are random here (no download needed), so the predicted classes are meaningless; what the demo
shows is that every published architecture builds, runs at its published input size, and has the published
parameter count. Run it with `python examples/eva02/run_zoo_demo.py`.
"""
import argparse
import logging
import time

import paddlemix_eva  # noqa: F401  (before paddle: CPU backend settings)

# isort: split
import paddle

from paddlemix_eva import get_model
from paddlemix_eva.cli import ZOO_HEADERS, format_table, zoo_rows
from paddlemix_eva.models.modeling_utils import count_parameters
from paddlemix_eva.tasks.inference import inference_model
from paddlemix_eva.utils.logs import setup_logging
from paddlemix_eva.utils.resources import sample_image_path

logger = logging.getLogger("run_zoo_demo")
SIZES = ("Ti", "S", "B", "L")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=SIZES, help="EVA-02 sizes to run")
    parser.add_argument("--verbose", action="store_true", help="also show Paddle's / PaddleNLP's own messages")
    args = parser.parse_args()
    setup_logging(args.verbose)
    paddle.seed(0)
    image = sample_image_path()
    rows = []
    for size in args.sizes:
        name = f"eva02_{size}_pt_in21k_ft_in1k_p14"
        start = time.perf_counter()
        model = get_model(name)
        built = time.perf_counter() - start
        start = time.perf_counter()
        result = inference_model(model, image)
        seconds = time.perf_counter() - start
        rows.append([name, model.config.image_size, f"{count_parameters(model):,}", f"{built:.1f}", f"{seconds:.2f}",
                     result["pred_class"]])
        logger.info("%s: forward on %s at %d px in %.2f s", name, image, model.config.image_size, seconds)
        del model
    print("\nForward pass of each size on the sample image (random weights):")
    print(format_table(rows, ["model", "input", "params", "build s", "forward s", "top-1 (random weights)"]))
    print("\nThe EVA-02 zoo (parameters counted from the built models):")
    print(format_table(zoo_rows(), ZOO_HEADERS))


if __name__ == "__main__":
    main()

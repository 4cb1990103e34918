"""Where the weights of Evo-ViT zoo names come from: none are published in Paddle format, so a zoo name resolves
to the file `paddlemix-eva convert` left in the weight cache, or to an error that says how to make it."""
from __future__ import annotations

import os

from .zoo_table import WEIGHTS_SOURCE


class ConvertedWeightsMixin:
    """`resolve_pretrained` for zoo entries whose weights are converted from PyTorch by the user."""

    @classmethod
    def resolve_pretrained(cls, name_or_path: str, force_download: bool = False):
        from ... import hub, zoo

        entry = None if os.path.isdir(name_or_path) else zoo.find_entry(name_or_path)
        if entry is None or WEIGHTS_SOURCE not in entry.extra:
            return super().resolve_pretrained(name_or_path, force_download=force_download)
        weights = os.path.join(hub.cached_model_dir(entry.full_name), hub.WEIGHTS_NAME)
        if os.path.isfile(weights):
            return os.path.dirname(weights), weights, entry
        fmt = "timm" if "timm" in entry.extra[WEIGHTS_SOURCE] else "official"
        raise FileNotFoundError(
            f"{entry.full_name} has no published Paddle weights (source: {entry.extra[WEIGHTS_SOURCE]}). Convert the "
            f"PyTorch file: `paddlemix-eva convert FILE --format {fmt} --model {entry.name} --out DIR` and load DIR "
            f"(or copy DIR/model_state.pdparams to {weights})"
        )

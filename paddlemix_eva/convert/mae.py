"""Checkpoint conversion of this family (see `paddlemix_eva.convert.FAMILY_CONVERTERS`)."""
from __future__ import annotations

from ..checkpoint import StateDict


def detect(state: StateDict) -> bool:
    """Whether `state` is a checkpoint of this family (none yet)."""
    return False


def convert(state: StateDict, fmt: str, source: str):
    raise NotImplementedError

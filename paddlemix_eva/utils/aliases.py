"""Where modules lived before the package was laid out by architecture (0.1): `import paddlemix_eva.inference`,
`from paddlemix_eva.inference_backend import export_model`, ... keep working and give the module at its new
place (the same module object, so its functions, classes and state are shared)."""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

#: old module -> new module
MOVED = {
    "paddlemix_eva.augment": "paddlemix_eva.data.augment",
    "paddlemix_eva.transforms": "paddlemix_eva.data.transforms",
    "paddlemix_eva.datasets": "paddlemix_eva.data.datasets",
    "paddlemix_eva.masking": "paddlemix_eva.data.masking",
    "paddlemix_eva.mim_data": "paddlemix_eva.data.mim",
    "paddlemix_eva.models.mae.data": "paddlemix_eva.data.mae",
    "paddlemix_eva.checkpoint": "paddlemix_eva.utils.checkpoint",
    "paddlemix_eva.serialization": "paddlemix_eva.utils.serialization",
    "paddlemix_eva.hub": "paddlemix_eva.utils.hub",
    "paddlemix_eva.errors": "paddlemix_eva.utils.errors",
    "paddlemix_eva.logs": "paddlemix_eva.utils.logs",
    "paddlemix_eva.runtime": "paddlemix_eva.utils.runtime",
    "paddlemix_eva.resources": "paddlemix_eva.utils.resources",
    "paddlemix_eva.tensor_parallel": "paddlemix_eva.layers.tensor_parallel",
    "paddlemix_eva.ops": "paddlemix_eva.layers.norm",
    "paddlemix_eva.losses": "paddlemix_eva.layers.losses",
    "paddlemix_eva.inference": "paddlemix_eva.tasks.inference",
    "paddlemix_eva.inference_backend": "paddlemix_eva.tasks.export",
    "paddlemix_eva.evaluation": "paddlemix_eva.tasks.evaluation",
    "paddlemix_eva.zeroshot": "paddlemix_eva.tasks.zeroshot",
    "paddlemix_eva.flops": "paddlemix_eva.tasks.flops",
    "paddlemix_eva.models.mae.visualize": "paddlemix_eva.tasks.mae_visualize",
    "paddlemix_eva.convert.eva02": "paddlemix_eva.models.eva02.convert",
    "paddlemix_eva.convert.evaclip": "paddlemix_eva.models.evaclip.convert",
    "paddlemix_eva.convert.mae": "paddlemix_eva.models.mae.convert",
    "paddlemix_eva.convert.evovit": "paddlemix_eva.models.evovit.convert",
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path=None, target=None):
        return importlib.util.spec_from_loader(name, self) if name in MOVED else None

    def create_module(self, spec):
        return importlib.import_module(MOVED[spec.name])

    def exec_module(self, module) -> None:  # already executed at its new place
        pass


def install() -> None:
    if not any(isinstance(finder, _MovedModules) for finder in sys.meta_path):
        sys.meta_path.append(_MovedModules())

"""paddlemix-eva: EVA-02, EVA-CLIP, MAE and Evo-ViT for PaddlePaddle."""
import os

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def read_requirements(name: str):
    """Requirement lines of a requirements file, its `-r` includes and pip options left out."""
    with open(os.path.join(HERE, name)) as f:
        return [line.strip() for line in f if line.strip() and not line.startswith(("#", "-"))]


def read_version():
    with open(os.path.join(HERE, "paddlemix_eva", "version.py")) as f:
        scope = {}
        exec(f.read(), scope)
        return scope["__version__"]


# Parity peers. torchvision is installed separately with --no-deps (see Makefile): the only wheels reachable
# next to the CPU torch are CUDA builds, and pip would otherwise pull a multi-GB CUDA torch.
TEST_REQUIRES = [
    "pytest",
    "torch==2.13.0",
    "timm==1.0.31",
    "open_clip_torch==3.3.0",
    "scikit-learn",  # the digits data of `make demo`, which the learning tests use too
    "ruff==0.17.6",  # `make lint`, which `make test` runs first (configuration: ruff.toml)
]
# PaddlePaddle is not an install requirement: its CPU (`paddlepaddle`) and CUDA (`paddlepaddle-gpu`) wheels are
# different distributions of one package. `pip install .[cpu]` adds the CPU wheel; see requirements-gpu.txt.

setup(
    name="paddlemix-eva",
    version=read_version(),
    description="EVA-02 / EVA-CLIP / MAE / Evo-ViT visual representation learning for PaddlePaddle",
    long_description=open(os.path.join(HERE, "README.md")).read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["paddlemix_eva", "paddlemix_eva.*"]),
    package_data={"paddlemix_eva": ["assets/*"]},
    include_package_data=True,
    python_requires=">=3.9",
    install_requires=read_requirements("requirements.txt"),
    extras_require={"test": TEST_REQUIRES, "cpu": read_requirements("requirements-cpu.txt")},
    entry_points={"console_scripts": ["paddlemix-eva=paddlemix_eva.cli:main"]},
    license="Apache-2.0",
)

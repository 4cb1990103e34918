"""Installation: the CPU and CUDA paths install one Paddle wheel each, the runtime requirements are complete."""
import importlib.metadata
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _requirement_names(lines):
    return [re.split(r"[=<>;\[ ]", line.strip(), maxsplit=1)[0].lower() for line in lines]


def _lines(name):
    with open(os.path.join(ROOT, name)) as f:
        return [line.strip() for line in f if line.strip() and not line.startswith("#")]


def test_each_device_file_installs_exactly_one_paddle_wheel_of_the_same_version():
    cpu, gpu, common = _lines("requirements-cpu.txt"), _lines("requirements-gpu.txt"), _lines("requirements.txt")
    assert not {"paddlepaddle", "paddlepaddle-gpu"} & set(_requirement_names(common))
    assert "paddlepaddle==3.3.1" in cpu and "-r requirements.txt" in cpu
    assert "paddlepaddle-gpu==3.3.1" in gpu and "-r requirements.txt" in gpu
    assert any(line.startswith("--extra-index-url https://www.paddlepaddle.org.cn/packages/stable/cu") for line in gpu)
    assert "paddlepaddle" not in _requirement_names(gpu)


def test_installed_metadata_does_not_pull_the_cpu_wheel_and_carries_ftfy():
    """`pip install .` next to paddlepaddle-gpu must not add the CPU wheel; ftfy is a runtime requirement."""
    requires = importlib.metadata.requires("paddlemix-eva")
    runtime = [r for r in requires if "extra ==" not in r]
    assert "ftfy" in _requirement_names(runtime)
    assert not {"paddlepaddle", "paddlepaddle-gpu"} & set(_requirement_names(runtime))
    assert 'paddlepaddle==3.3.1; extra == "cpu"' in requires


def test_make_install_takes_the_gpu_requirements_with_device_gpu(tmp_path):
    dry = subprocess.run(["make", "-n", "install", "DEVICE=gpu", f"VENV={tmp_path / 'venv'}"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    assert "pip install -r requirements-gpu.txt" in dry and "requirements-cpu.txt" not in dry
    dry = subprocess.run(["make", "-n", "install", f"VENV={tmp_path / 'venv'}"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    assert "pip install -r requirements-cpu.txt" in dry


def test_import_without_paddle_says_how_to_install_it():
    # -S: no site-packages, so no Paddle; the package itself comes from the checkout
    code = f"import sys; sys.path.insert(0, {ROOT!r}); import paddlemix_eva"
    result = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 1
    assert "needs PaddlePaddle" in result.stderr and "requirements-gpu.txt" in result.stderr

"""`--help` as a user reads it: the example scripts show their own flags (and the EVA additions) first, each with
a help line, in well under 150 lines; PaddleNLP's ~200 training flags wait behind `--help-all`. Every flag of the
`paddlemix-eva` CLI has a help line."""
import glob
import os
import re
import subprocess
import sys
from typing import Dict, List, Tuple

import pytest

from launch import run_in_one_process

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: the example scripts parsed by `run_from_command_line` (PaddleNLP's dataclass parser)
SCRIPTS = sorted(os.path.relpath(path, ROOT) for path in glob.glob(os.path.join(ROOT, "examples", "*", "run_*.py"))
                 if "run_from_command_line(" in open(path, encoding="utf-8").read())
TRAINING_SCRIPTS = [s for s in SCRIPTS if not s.endswith("_eval.py")]


def _help(*command: str) -> str:
    """stdout of `python *command` on an 80-column terminal (the narrowest usual one: the most lines)."""
    result = subprocess.run([sys.executable, *command], capture_output=True, text=True, cwd=ROOT, timeout=300,
                            env={**os.environ, "COLUMNS": "80"})
    return _checked(result.returncode, result.stdout, result.stderr)


def _checked(returncode: int, stdout: str, stderr: str) -> str:
    assert returncode == 0, stderr[-3000:]
    assert "Traceback" not in stderr, stderr
    return stdout


@pytest.fixture(scope="module")
def script_helps() -> Dict[Tuple[str, str], str]:
    """(script, flag) -> the script's `--help` / `--help-all` text, all run by one interpreter."""
    cases = [(script, [flag]) for script in SCRIPTS for flag in ("--help", "--help-all")]
    results = run_in_one_process([(os.path.join(ROOT, s), a) for s, a in cases], cwd=ROOT,
                                 env={**os.environ, "COLUMNS": "80"})
    return {(script, args[0]): _checked(r["returncode"], r["stdout"], r["stderr"])
            for (script, args), r in zip(cases, results)}


def options_without_help(help_text: str) -> List[str]:
    """The options of an argparse help text whose help is empty (or only says the default)."""
    lines = help_text.splitlines()
    missing = []
    for i, line in enumerate(lines):
        match = re.match(r"^  (-[^\s,]+)", line)
        if not match:
            continue
        parts = re.split(r"\s{2,}", line.strip(), maxsplit=1)
        if len(parts) > 1:
            text = parts[1]
        else:  # a long invocation: the help starts on the next, deeper-indented line
            following = lines[i + 1] if i + 1 < len(lines) else ""
            text = following if following.startswith(" " * 6) else ""
        if not re.sub(r"\(default: [^)]*\)", "", text).strip():
            missing.append(match.group(1))
    return missing


def test_the_scripts_are_found():
    assert len(TRAINING_SCRIPTS) >= 6 and len(SCRIPTS) > len(TRAINING_SCRIPTS), SCRIPTS


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_help_is_short_and_every_flag_is_explained(script, script_helps):
    text = script_helps[script, "--help"]
    assert len(text.splitlines()) < 150, text
    options = re.findall(r"^  (--\w[\w-]*)", text, flags=re.M)
    assert len(options) >= 5 and options_without_help(text) == [], options_without_help(text)
    assert "--help-all" in text
    if script in TRAINING_SCRIPTS:
        assert "--gradient_accumulation_steps" not in text  # PaddleNLP's: behind --help-all
        entry = text[text.index("--resume_from_checkpoint"):].split("\n  -")[0]
        assert "last" in entry and "true" in entry, entry
        assert "--output_dir" in text and "--help-all" in text.splitlines()[-1]  # said at the end


@pytest.mark.parametrize("script", TRAINING_SCRIPTS)
def test_help_all_adds_paddlenlp_flags(script, script_helps):
    short, full = script_helps[script, "--help"], script_helps[script, "--help-all"]
    assert "--gradient_accumulation_steps" in full and "--sharding" in full
    assert len(full.splitlines()) > len(short.splitlines()) + 100
    assert full.index("--resume_from_checkpoint") < full.index("--gradient_accumulation_steps")  # ours first


def test_every_cli_flag_has_help():
    from paddlemix_eva.cli import build_parser

    commands = ["list", "predict", "features", "export", "convert", "mae-visualize"]
    texts = {"": _help("-m", "paddlemix_eva.cli", "--help")}
    parser = build_parser()
    for command in commands:
        texts[command] = parser._subparsers._group_actions[0].choices[command].format_help()
    for command, text in texts.items():
        assert options_without_help(text) == [], (command, options_without_help(text))
    assert "--topk" in texts["predict"] and "--batch-size" in texts["features"]


def test_the_help_reader_sees_a_missing_help_line():
    text = "options:\n  -h, --help            show this help\n  --topk TOPK\n  --batch-size BATCH_SIZE  (default: 8)\n"
    assert options_without_help(text) == ["--topk", "--batch-size"]

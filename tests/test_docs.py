"""The front page and the guides stay true to the checkout: every relative link (and its #anchor) resolves, every
repository path they name exists, every `from paddlemix_eva... import ...` in their Python examples imports, and
the README's zoo table is what `paddlemix-eva list` prints for EVA-02."""
import glob
import importlib
import importlib.util
import os
import re
from typing import Dict, List, Tuple

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = [os.path.join(ROOT, "README.md")] + sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))
GUIDES = ["install", "eva02", "evaclip", "mae", "evovit", "conversion", "deployment", "performance",
          "fused_layernorm", "development"]

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
#: repository paths as the documents name them (relative to the repository root)
REPO_PATH = re.compile(r"(?<![\w./-])((?:paddlemix_eva|examples|benchmarks|tests|external_ops|docs)/[\w./-]*)")
PY_IMPORT = re.compile(r"^\s*from (paddlemix_eva[\w.]*) import (.+)$")


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def _split_fences(text: str) -> Tuple[List[str], List[Tuple[str, List[str]]]]:
    """(prose lines, [(language, lines) of each fenced block])."""
    prose, blocks, block = [], [], None
    for line in text.splitlines():
        if line.startswith("```"):
            if block is None:
                block = (line[3:].strip(), [])
            else:
                blocks.append(block)
                block = None
            continue
        (prose if block is None else block[1]).append(line)
    return prose, blocks


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(path: str) -> set:
    prose, _ = _split_fences(_read(path))
    seen: Dict[str, int] = {}
    anchors = set()
    for line in prose:
        match = re.match(r"#{1,6} (.+)", line)
        if match:
            slug = _slug(match.group(1))
            anchors.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
            seen[slug] = seen.get(slug, 0) + 1
    return anchors


def _name(path: str) -> str:
    return os.path.relpath(path, ROOT)


def test_every_guide_exists_and_the_front_page_links_it():
    readme = _read(os.path.join(ROOT, "README.md"))
    for guide in GUIDES:
        assert os.path.isfile(os.path.join(ROOT, "docs", f"{guide}.md")), guide
        assert f"(docs/{guide}.md)" in readme, f"README.md does not link docs/{guide}.md"
    found = {os.path.splitext(os.path.basename(p))[0] for p in glob.glob(os.path.join(ROOT, "docs", "*.md"))}
    assert found <= set(GUIDES) | {"README"}, f"guides not linked from the front page: {found - set(GUIDES)}"


def test_the_first_two_commands_are_make_demo_and_make_test():
    _, blocks = _split_fences(_read(os.path.join(ROOT, "README.md")))
    commands = [c for _, lines in blocks for c in (line.split("#")[0].strip() for line in lines) if c]
    assert commands[:2] == ["make demo", "make test"], commands[:2]


@pytest.mark.parametrize("doc", DOCS, ids=_name)
def test_relative_links_resolve(doc):
    broken = []
    for target in LINK.findall(_read(doc)):
        if re.match(r"[a-z]+:", target):  # http(s), mailto
            continue
        path, _, anchor = target.partition("#")
        full = os.path.normpath(os.path.join(os.path.dirname(doc), path)) if path else doc
        if not os.path.exists(full):
            broken.append(f"{target} (no such file)")
        elif anchor and full.endswith(".md") and anchor not in _anchors(full):
            broken.append(f"{target} (no heading with anchor #{anchor} in {_name(full)})")
    assert not broken, f"{_name(doc)}: " + "; ".join(broken)


@pytest.mark.parametrize("doc", DOCS, ids=_name)
def test_named_repository_paths_exist(doc):
    missing = sorted({path.rstrip(".,:;") for path in REPO_PATH.findall(_read(doc))
                      if not os.path.exists(os.path.join(ROOT, path.rstrip(".,:;")))})
    assert not missing, f"{_name(doc)} names paths that do not exist: {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=_name)
def test_python_examples_import(doc):
    import paddlemix_eva  # noqa: F401  (installs the aliases of old module paths, as a user's import does)

    _, blocks = _split_fences(_read(doc))
    failures = []
    for language, lines in blocks:
        if language != "python":
            continue
        for line in lines:
            match = PY_IMPORT.match(line.split("#")[0])
            if not match:
                continue
            module = importlib.import_module(match.group(1))
            for name in (n.strip() for n in match.group(2).split(",")):
                submodule = hasattr(module, "__path__") and importlib.util.find_spec(f"{module.__name__}.{name}")
                if not hasattr(module, name) and not submodule:
                    failures.append(f"{match.group(1)}.{name}")
    assert not failures, f"{_name(doc)}: these imports fail: {failures}"


def _readme_zoo_rows() -> List[List[str]]:
    lines = _read(os.path.join(ROOT, "README.md")).splitlines()
    start = lines.index("| model | task | input | patch | params | GMACs | IN-1K top-1 |")
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def test_readme_zoo_table_lists_the_eva02_entries_of_the_registry():
    from paddlemix_eva import zoo

    expected = [[name, e.task, str(e.input_size), str(e.patch_size), f"{e.top1:.1f}" if e.top1 is not None else "-"]
                for name in zoo.list_models() for e in [zoo.get_entry(name)]
                if e.full_name.startswith("paddlemix/EVA/EVA02/")]
    assert [[row[0], row[1], row[2], row[3], row[6]] for row in _readme_zoo_rows()] == expected


@pytest.mark.slow
def test_readme_zoo_table_is_what_list_prints():
    from paddlemix_eva import zoo
    from paddlemix_eva.cli import zoo_rows

    names = [n for n in zoo.list_models() if zoo.get_entry(n).full_name.startswith("paddlemix/EVA/EVA02/")]
    assert zoo.list_models("eva02_*") == names
    printed = [["-" if c is None else str(c) for c in row] for row in zoo_rows("eva02_*")]
    assert _readme_zoo_rows() == printed

"""Every Python snippet in the README and in the docs runs, and the quick-start example runs.

Snippets are the fenced blocks marked ``python`` in ``README.md`` and in every Markdown page
under ``docs/`` (recursively); each runs on its own, in a fresh namespace, as one test. Blocks
that must not run (shell commands, printed tables) take another language: ``bash``, ``text``...
"""

import re
import runpy
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
#: languages a fence may carry; a block that should run must say ``python``
FENCE_LANGUAGES = {"python", "bash", "console", "text", "yaml", "toml", "json"}
#: optional extras a snippet may import; without them installed its test is skipped
OPTIONAL_MODULES = {"escnn", "lightning", "accelerate", "timm", "transformers", "torch_geometric", "mlxtend", "peft",
                    "onnx", "onnxscript", "onnxruntime"}


def test_quickstart_example_runs_and_reaches_round_off(capsys):
    runpy.run_path(str(ROOT / "examples" / "quickstart.py"), run_name="__main__")
    out = capsys.readouterr().out
    wrapped = [float(v) for v in re.findall(r"wrapped ([0-9.e+-]+)", out)]
    assert len(wrapped) == 3 and max(wrapped) <= 1e-5, out


def fences(markdown: Path) -> list[tuple[int, str, str]]:
    """``(line, language, code)`` of every fenced block of a Markdown file (fences at any indent)."""
    blocks, opening, language, body = [], None, "", []
    for number, line in enumerate(markdown.read_text().splitlines(), start=1):
        match = re.match(r"\s*```\s*(\S*)", line)
        if opening is None and match:
            opening, language, body = number, match.group(1), []
        elif opening is not None and match and not match.group(1):
            blocks.append((opening, language, textwrap.dedent("\n".join(body) + "\n")))
            opening = None
        elif opening is not None:
            body.append(line)
    assert opening is None, f"{markdown}: the fence opened on line {opening} is never closed"
    return blocks


def snippets() -> list:
    params = []
    for page in PAGES:
        name = page.relative_to(ROOT).as_posix()
        python = [(line, code) for line, language, code in fences(page) if language == "python"]
        params += [pytest.param(name, line, code, id=f"{name}:{line}") for line, code in python]
    return params


def test_the_docs_have_snippets_in_every_strategy_page():
    pages = {param.values[0] for param in snippets()}
    strategy_pages = {p.relative_to(ROOT).as_posix() for p in (ROOT / "docs" / "strategies").glob("*.md")}
    assert "README.md" in pages
    assert strategy_pages - {"docs/strategies/index.md"} <= pages


@pytest.mark.parametrize("page", [p.relative_to(ROOT).as_posix() for p in PAGES])
def test_every_fence_names_a_known_language(page):
    """An unmarked (or ``py``) fence would silently skip a snippet that looks like code."""
    for line, language, _ in fences(ROOT / page):
        assert language in FENCE_LANGUAGES, (
            f"{page}:{line}: fence language {language!r}; use 'python' for code that runs in the tests, "
            f"or one of {sorted(FENCE_LANGUAGES - {'python'})} for blocks that do not run"
        )


@pytest.mark.parametrize(("page", "line", "code"), snippets())
def test_python_snippets_in_the_docs_run(page, line, code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a snippet that writes files leaves nothing in the repository
    try:
        exec(compile(code, f"{page}:{line}", "exec"), {"__name__": "__snippet__"})
    except ModuleNotFoundError as error:
        if (error.name or "").split(".")[0] in OPTIONAL_MODULES:
            pytest.skip(f"{page}:{line} needs the optional package {error.name!r}")
        raise

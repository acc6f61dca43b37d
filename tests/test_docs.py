"""The README and docs/architecture.md name only files that exist, and the architecture doc maps every module."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = (ROOT / "README.md", ROOT / "docs" / "architecture.md")
ARCHITECTURE = ROOT / "docs" / "architecture.md"
# The repository's top-level folders: a path starting with one of them names a file or folder of the repository
# (a home-folder path such as lake/raw/... starts otherwise).
REPO_DIRS = ("pipelines", "assets", "cli", "simulator", "sql", "tests", "benchmarks", "scripts", "docs")
# Any x/y.py or x/y.sql, whatever its first folder; globs such as sql/summary/*.sql included.
CODE_PATH = re.compile(r"(?<![\w./*<>-])((?:[\w.*-]+/)+[\w.*-]*\.(?:py|sql))(?![\w/])")
REPO_PATH = re.compile(r"(?<![\w./*<>-])((?:" + "|".join(REPO_DIRS) + r")/[\w.*/-]*)")
MODULE_PACKAGES = ("pipelines", "assets", "cli", "simulator")


def named_paths(text: str) -> set[str]:
    """Every repository path a document names: x/y.py and x/y.sql anywhere, and anything under a top-level folder."""
    found = set(CODE_PATH.findall(text)) | {p.rstrip(".") for p in REPO_PATH.findall(text)}
    return {p.rstrip("/") for p in found if p.rstrip("/")}


def generated(path: str) -> bool:
    """Whether `path` is output the repository ignores (.gitignore), such as benchmarks/out/: absent from a clone."""
    ignored = [line.strip().strip("/") for line in (ROOT / ".gitignore").read_text().splitlines()]
    return any(entry and "/" in entry and (path == entry or path.startswith(entry + "/")) for entry in ignored)


def exists(path: str) -> bool:
    """A file or folder of the repository, a glob that matches at least one, or ignored generated output."""
    return generated(path) or (any(ROOT.glob(path)) if "*" in path else (ROOT / path).exists())


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_path_a_document_names_exists(doc: Path) -> None:
    missing = sorted(path for path in named_paths(doc.read_text(encoding="utf-8")) if not exists(path))
    assert not missing, f"{doc.name} names files that do not exist: {missing}"


def test_the_path_finder_catches_a_wrong_path() -> None:
    """The check itself sees the kinds of path it exists for, and leaves home-folder paths and URLs alone."""
    text = (
        "See `useapi/feeds.py`, pipelines/nothing.py, sql/views/*.sql, sql/nothing/*.sql and `assets/gone/`;"
        " not lake/raw/created_date=D/x.parquet, https://docs.example.com/a/b, nor sql/checks/<name>.sql."
    )
    paths = named_paths(text)
    assert paths == {
        "useapi/feeds.py",
        "pipelines/nothing.py",
        "sql/views/*.sql",
        "sql/nothing/*.sql",
        "assets/gone",
        "sql/checks",
    }
    assert {path for path in paths if not exists(path)} == {
        "useapi/feeds.py",
        "pipelines/nothing.py",
        "sql/nothing/*.sql",
        "assets/gone",
    }


def test_the_architecture_doc_lists_every_module() -> None:
    """The doc is the map of the code: each module of the four packages has its line (`__init__` aside)."""
    text = ARCHITECTURE.read_text(encoding="utf-8")
    modules = sorted(
        str(path.relative_to(ROOT))
        for package in MODULE_PACKAGES
        for path in (ROOT / package).rglob("*.py")
        if path.name != "__init__.py"
    )
    unlisted = [module for module in modules if f"`{module}`" not in text]
    assert not unlisted, f"docs/architecture.md does not list: {unlisted}"


def test_the_architecture_doc_is_a_map_not_a_changelog() -> None:
    headings = [line for line in ARCHITECTURE.read_text(encoding="utf-8").splitlines() if line.startswith("#")]
    history = [h for h in headings if re.search(r"changelog|history|added while|changes|what's new", h, re.I)]
    assert not history, f"history headings in docs/architecture.md: {history}"

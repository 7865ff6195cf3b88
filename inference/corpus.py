"""Training text every machine has offline: docstrings of the Python standard library, gathered with ``ast``.

Nothing is imported (so no module runs code); source files are parsed and their module, class and function
docstrings collected. Files are visited in sorted order and split into train/held-out by a hash of their relative
path, so the split is deterministic for a given Python version (recorded with the model).
"""

from __future__ import annotations

import ast
import functools
import hashlib
import sys
import sysconfig
import warnings
from dataclasses import dataclass
from pathlib import Path

SKIP_DIRS = {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__", "lib2to3", "turtledemo"}
MIN_CHARS = 40
HELDOUT_PERCENT = 10


@dataclass(frozen=True)
class Doc:
    """One docstring and the file it came from."""

    source: str
    text: str


def stdlib_root() -> Path:
    """Directory of the running interpreter's standard library."""
    return Path(sysconfig.get_paths()["stdlib"])


@functools.cache
def stdlib_files(root: Path | None = None) -> tuple[tuple[str, Path], ...]:
    """(relative POSIX path, path) of the standard library's .py files, sorted, tests and vendored code excluded."""
    root = root or stdlib_root()
    out = []
    for p in root.rglob("*.py"):
        rel = p.relative_to(root)
        if SKIP_DIRS.isdisjoint(rel.parts[:-1]):
            out.append((rel.as_posix(), p))
    return tuple(sorted(out))


def file_docstrings(path: Path) -> list[str]:
    """Docstrings of a module and of every class and function in it (in ``ast.walk`` order)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = ast.parse(path.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError, ValueError, OSError):
        return []
    nodes = [tree, *(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef))]
    docs = (ast.get_docstring(n, clean=True) for n in nodes)
    return [d for d in docs if d and len(d) >= MIN_CHARS]


def is_heldout(relpath: str) -> bool:
    """Deterministic file-level split: about HELDOUT_PERCENT% of files are held out."""
    return int(hashlib.sha256(relpath.encode()).hexdigest()[:8], 16) % 100 < HELDOUT_PERCENT


def gather(max_files: int | None = None) -> tuple[list[Doc], list[Doc]]:
    """(train, held-out) docstrings of the standard library."""
    train: list[Doc] = []
    heldout: list[Doc] = []
    for rel, path in stdlib_files()[:max_files]:
        target = heldout if is_heldout(rel) else train
        target.extend(Doc(rel, text) for text in file_docstrings(path))
    return train, heldout


def heldout_texts(max_chars: int = 60_000, max_files: int | None = None) -> list[str]:
    """The held-out docstrings in order, up to ``max_chars`` characters in all (the drift-check text)."""
    out, total = [], 0
    for doc in gather(max_files)[1]:
        if total + len(doc.text) > max_chars:
            break
        out.append(doc.text)
        total += len(doc.text)
    return out


def corpus_fingerprint(texts: list[str]) -> str:
    """sha256 of the texts (to tell whether two machines score the same held-out text)."""
    digest = hashlib.sha256()
    for t in texts:
        digest.update(t.encode("utf-8") + b"\0")
    return digest.hexdigest()


def python_version() -> str:
    """The interpreter version whose standard library the corpus comes from."""
    return ".".join(map(str, sys.version_info[:3]))

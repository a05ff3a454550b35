"""Every ``python`` snippet of docs/reader.md runs as pasted, next to a shardify output in ``./out``.

Each snippet runs alone in a fresh interpreter (as a user would paste it into a file), in a
directory where ``out`` is the shared reader build.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.fixtures.reader import ReaderBuild

DOC = REPO / "docs" / "reader.md"
SNIPPET = re.compile(r"^```python\n(.*?)^```$", re.DOTALL | re.MULTILINE)


def _snippets() -> list[str]:
    return SNIPPET.findall(DOC.read_text())


def _params() -> list[object]:
    params: list[object] = []
    for index, code in enumerate(_snippets()):
        marks = [pytest.mark.slow]
        if re.search(r"^import ray", code, re.MULTILINE):
            marks.append(pytest.mark.ray)
        params.append(pytest.param(code, id=f"snippet{index}", marks=marks))
    return params


def test_the_doc_has_snippets() -> None:
    assert len(_snippets()) >= 7  # a broken pattern would silently test nothing


@pytest.mark.torch
@pytest.mark.parametrize("code", _params())
def test_snippet_runs_as_pasted(code: str, reader_build: ReaderBuild, tmp_path: Path) -> None:
    (tmp_path / "out").symlink_to(reader_build.out, target_is_directory=True)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, f"{code}\n---\n{proc.stderr[-3000:]}"

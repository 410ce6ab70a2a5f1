"""Every Python code block of README.md and of the docs' getting-started tour runs as written.

A block whose first line is ``# needs: PATH`` (PATH relative to the repository root, like the
README's commands) is skipped with a reason when that file is missing.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = ("README.md", "docs/getting-started.md")
BLOCKS = {
    f"{page}:{i}": code
    for page in PAGES
    for i, code in enumerate(re.findall(r"^```python\n(.*?)^```", (ROOT / page).read_text(), flags=re.S | re.M))
}


def test_the_readme_has_python_blocks_and_stays_short():
    assert sum(key.startswith("README.md:") for key in BLOCKS) >= 5
    assert len((ROOT / "README.md").read_text().splitlines()) <= 300


@pytest.mark.parametrize("code", BLOCKS.values(), ids=BLOCKS.keys())
def test_readme_block_runs(code, tmp_path, monkeypatch):
    needs = re.match(r"# needs: (\S+)", code)
    if needs and not (ROOT / needs.group(1)).exists():
        pytest.skip(f"README block needs {needs.group(1)}, which is missing")
    # Run from a scratch copy of the repository's place in the tree, so relative paths such as
    # ../shared/data/... resolve as they do from the root, and files the block writes land in tmp.
    (tmp_path / "repo").mkdir()
    if (ROOT.parent / "shared").exists():
        (tmp_path / "shared").symlink_to(ROOT.parent / "shared")
    monkeypatch.chdir(tmp_path / "repo")
    exec(compile(code, "<readme block>", "exec"), {"__name__": "__readme__"})

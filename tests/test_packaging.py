"""Release hygiene: one version source, the sample corpus in data/sample, the constraints `make test` installs."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


def test_the_version_is_written_once_in_slovo_init_and_read_by_the_build():
    meta = pyproject()
    assert "version" not in meta["project"] and "version" in meta["project"]["dynamic"]
    assert meta["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "slovo.__version__"}
    init = (REPO / "src" / "slovo" / "__init__.py").read_text(encoding="utf-8")
    assert len(re.findall(r"^__version__ = ", init, flags=re.M)) == 1
    assert "## Unreleased" in (REPO / "CHANGELOG.md").read_text(encoding="utf-8")


def test_slovo_sample_names_the_checkouts_data_sample_corpus():
    from slovo.data.sources import SAMPLE_CORPUS

    assert SAMPLE_CORPUS == REPO / "data" / "sample" / "ruslit-sample.jsonl.gz" and SAMPLE_CORPUS.is_file()
    assert not (REPO / "src" / "slovo" / "sample").exists()  # no data files inside the package


def test_make_test_installs_within_pinned_constraints_that_leave_torch_to_the_makefile():
    lines = [x for x in (REPO / "constraints.txt").read_text().splitlines() if x and not x.startswith("#")]
    assert lines and all(re.fullmatch(r"[A-Za-z0-9_.\-]+(\[[^\]]+\])?==[^\s=]+", x) for x in lines), lines
    names = {x.split("==")[0].lower().replace("_", "-") for x in lines}
    assert "torch" not in names and "slovo-lm" not in names
    assert {"pytest", "ruff", "numpy", "gguf", "transformers"} <= names
    makefile = (REPO / "Makefile").read_text()
    assert '-e ".[test]" -c constraints.txt' in makefile and "test-lowest:" in makefile

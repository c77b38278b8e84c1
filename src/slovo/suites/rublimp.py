"""RuBLiMP (Russian Benchmark of Linguistic Minimal Pairs, Taktasheva et al., EMNLP 2024): reading it.

45 phenomena x 1,000 pairs of a grammatical sentence (`source_sentence`) and its minimally changed
ungrammatical twin (`target_sentence`); `PID` names the phenomenon (one CSV file each), `phenomenon` its group,
`level` Morphology / Syntax / Semantics. Where it is read from:

- `rublimp`: `$SLOVO_RUBLIMP_DIR` when set, else the shared copy beside the checkout
  (`../shared/benchmarks/rublimp/datasets`), else the HF hub dataset;
- `rublimp:DIR`: a folder of the published CSV files;
- `rublimp:hub`: the HF hub dataset `RussianNLP/rublimp` (one config per phenomenon; needs `datasets` and a network).

`select_pairs` picks the fixed, stratified subset `--pairs N` and `eval.suite_pairs` score.
"""

from __future__ import annotations

import csv
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from slovo.errors import SlovoError, first_line

HUB_REPO = "RussianNLP/rublimp"
# the columns slovo reads; the published files have these and more (id, source_word, subtype, domain, ...)
REQUIRED_COLUMNS = ("source_sentence", "target_sentence", "PID", "phenomenon", "level")
SHARED_DIR = Path(__file__).resolve().parents[3].parent / "shared" / "benchmarks" / "rublimp" / "datasets"


@dataclass
class MinimalPairs:
    """A suite as parallel lists, one entry per pair; `good[i]` is the sentence a model should prefer."""

    name: str
    source: str  # where it was read from (a folder or the hub repo), for the record
    good: list[str] = field(default_factory=list)
    bad: list[str] = field(default_factory=list)
    phenomenon: list[str] = field(default_factory=list)  # the finest unit (RuBLiMP's PID), accuracy per each
    group: list[str] = field(default_factory=list)  # RuBLiMP's `phenomenon` column, e.g. "Noun Phrase Agreement"
    level: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.good)

    def swapped(self) -> MinimalPairs:
        """The same pairs with good and bad exchanged (a check: every criterion's accuracy becomes 1 - it)."""
        return MinimalPairs(self.name, self.source, self.bad, self.good, self.phenomenon, self.group, self.level)


def load_rublimp(arg: str = "") -> MinimalPairs:
    """`arg`: "" (env, shared copy, else hub), "hub", or a folder of the CSV files."""
    if arg == "hub":
        return load_hub()
    if arg:
        return load_csv_folder(arg)
    env = os.environ.get("SLOVO_RUBLIMP_DIR")
    if env:
        return load_csv_folder(env, where="$SLOVO_RUBLIMP_DIR")
    if SHARED_DIR.is_dir():
        return load_csv_folder(SHARED_DIR)
    return load_hub()


def load_csv_folder(folder: str | Path, where: str | None = None) -> MinimalPairs:
    """Every `*.csv` of `folder` (sorted by name), each checked for the columns and non-empty sentences."""
    folder = Path(folder).expanduser()
    label = f"{where} ({folder})" if where else str(folder)
    if not folder.exists():
        raise SlovoError(f"rublimp:{label}: no such folder (expected RuBLiMP's datasets/*.csv)")
    if not folder.is_dir():
        raise SlovoError(f"rublimp:{label}: is a file, expected a folder of RuBLiMP's CSV files")
    files = sorted(folder.glob("*.csv"))
    if not files:
        raise SlovoError(f"rublimp:{label}: holds no .csv files (expected RuBLiMP's datasets/*.csv)")
    suite = MinimalPairs("rublimp", str(folder.resolve()))
    for path in files:
        try:
            with open(path, encoding="utf-8", newline="") as f:
                reader = csv.DictReader(f)
                missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
                if missing:
                    raise SlovoError(
                        f"{path}: lacks the column(s) {', '.join(missing)}; a RuBLiMP file has "
                        f"{', '.join(REQUIRED_COLUMNS)} (and more)"
                    )
                for line, row in enumerate(reader, start=2):
                    _add_row(suite, row, f"{path}:{line}")
        except UnicodeDecodeError:
            raise SlovoError(f"{path}: not UTF-8 text") from None
        except csv.Error as e:
            raise SlovoError(f"{path}: not a readable CSV file ({first_line(e)})") from None
    if not len(suite):
        raise SlovoError(f"rublimp:{label}: the CSV files hold no pairs")
    return suite


def load_hub(repo: str = HUB_REPO) -> MinimalPairs:
    """The hub dataset (one config per phenomenon), through `datasets`; offline or missing = one line."""
    try:
        import datasets
    except ImportError:
        raise SlovoError("rublimp:hub needs the datasets package: pip install 'slovo[hf]'") from None
    suite = MinimalPairs("rublimp", f"hf://{repo}")
    try:
        for config in sorted(datasets.get_dataset_config_names(repo)):
            parts = datasets.load_dataset(repo, config)
            for split in parts.values():  # one split per phenomenon as published
                missing = [c for c in REQUIRED_COLUMNS if c not in split.column_names]
                if missing:
                    raise SlovoError(f"hf://{repo} ({config}): lacks the column(s) {', '.join(missing)}")
                for i, row in enumerate(split):
                    _add_row(suite, row, f"hf://{repo} ({config}) row {i}")
    except SlovoError:
        raise
    except Exception as e:  # network, cache, hub errors: datasets raises many kinds
        raise SlovoError(
            f"rublimp:hub: could not load {repo} from the Hugging Face hub ({first_line(e)}); "
            "offline? pass a local copy: --suite rublimp:FOLDER"
        ) from None
    if not len(suite):
        raise SlovoError(f"rublimp:hub: {repo} holds no pairs")
    return suite


def _add_row(suite: MinimalPairs, row: dict, where: str) -> None:
    good, bad = (row.get("source_sentence") or "").strip(), (row.get("target_sentence") or "").strip()
    if not good or not bad:
        raise SlovoError(f"{where}: empty source_sentence or target_sentence")
    suite.good.append(good)
    suite.bad.append(bad)
    suite.phenomenon.append(str(row["PID"]))
    suite.group.append(str(row["phenomenon"]))
    suite.level.append(str(row["level"]))


def select_pairs(suite: MinimalPairs, per_phenomenon: int = 0, seed: int = 0, first: bool = False) -> np.ndarray:
    """Indices of up to `per_phenomenon` pairs of each phenomenon (0 = all), in the suite's order.

    Each phenomenon's pairs are drawn from its own fixed permutation (seeded by `seed` and the phenomenon's
    name), so the subset is the same for every run and every machine, and a smaller subset is part of a
    larger one. `first`: each phenomenon's first pairs in the suite's order instead (what another tool, e.g. an
    lm-evaluation-harness task over the first N rows of each file, scores).
    """
    if per_phenomenon <= 0:
        return np.arange(len(suite))
    names = np.asarray(suite.phenomenon)
    chosen = []
    for name in dict.fromkeys(suite.phenomenon):
        members = np.flatnonzero(names == name)
        if first:
            chosen.append(members[:per_phenomenon])
            continue
        rng = np.random.default_rng([seed, zlib.crc32(name.encode("utf-8"))])
        chosen.append(members[rng.permutation(len(members))[:per_phenomenon]])
    return np.sort(np.concatenate(chosen))

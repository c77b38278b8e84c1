"""`slovo compare`: two or more configs trained over the same N seeds, then whether one is better and by how much.

Each config (a preset, a YAML file, a finished run folder's config.yaml, or a `--variant` of a base config) runs
N times with train.seed = base seed + i for i < N, so seed i of every config starts from the same initial
weights and reads the same batches (slovo.data.loader draws batch k from (seed, k); batch sizes must agree for
the order to be the same). The pairs go to a paired t-test (slovo.stats.paired): what the seed does to both
configs alike cancels, which is why a few seeds can tell differences that unpaired runs could not.

The runs are one ordinary sweep (slovo.sweep: a grid over the parameter `variant`, `seeds: N`), so a
comparison resumes where it stopped, takes `--workers`, and spreads over machines with `--storage`. The
compare folder is the sweep folder: `compare.yaml` (the sweep file), `trials/`, the leaderboard, and
`verdict.json` / `verdict.md` (written by `write_verdict`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slovo import stats
from slovo.errors import SlovoError
from slovo.format import format_bpb, format_float

MIN_SEEDS = 2  # a paired test needs two pairs to have a spread


@dataclass
class Candidate:
    """One config in a comparison: its name and how to build it (the sweep file's `variants` entry)."""

    name: str
    body: dict[str, Any]  # {"preset": ...} or {"config": path}, plus dotted overrides
    dataset: str | None = None  # the dataset a finished run folder trained on


def parse_assignments(text: str, where: str) -> dict[str, Any]:
    """'optim.lr=0.002,schedule.name=wsd' -> {dotted: value}; values are read as YAML (numbers, true, lists)."""
    from slovo.config import parse_override

    out: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in re.split(r",(?=\s*[\w.]+=)", text))):
        key, value = parse_override(part)
        if not key:
            raise SlovoError(f"{where}: expected KEY=VALUE[,KEY=VALUE...], got {text!r}")
        out[key] = value
    if not out:
        raise SlovoError(f"{where}: expected KEY=VALUE[,KEY=VALUE...], got {text!r}")
    return out


def candidate_from_arg(arg: str) -> Candidate:
    """A positional argument: a finished run folder (its config.yaml), a YAML file, or a preset name."""
    from slovo.config import preset_names, read_yaml

    path = Path(arg).expanduser()
    if path.is_dir():
        if not (path / "config.yaml").is_file():
            raise SlovoError(f"{arg}: not a run folder (no config.yaml)")
        data = (read_yaml(path / "config.yaml").get("data") or {}).get("path")
        return Candidate(path.resolve().name, {"config": str((path / "config.yaml").resolve())}, data)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise SlovoError(f"{arg}: no such file")
        return Candidate(path.stem, {"config": str(path.resolve())})
    if arg in preset_names():
        return Candidate(arg, {"preset": arg})
    raise SlovoError(f"{arg}: not a run folder, a YAML file or a preset (presets: {', '.join(preset_names())})")


def build_candidates(args: list[str], variants: list[str], preset: str | None, config: str | None) -> list[Candidate]:
    """The configs to compare: each positional argument, then each `--variant` of the base (--preset/--config)."""
    if preset and config:
        raise SlovoError("give either --preset or --config, not both")
    out = [candidate_from_arg(a) for a in args]
    base = {"config": str(Path(config).resolve())} if config else {"preset": preset or "tiny"}
    for text in variants:
        out.append(Candidate(text.replace(" ", ""), {**base, **parse_assignments(text, f"--variant {text}")}))
    if len(out) < 2:
        raise SlovoError(
            f"compare: needs two or more configs, got {len(out)} (give presets, YAML files or run folders, "
            f"or --variant KEY=VALUE twice)"
        )
    seen: dict[str, int] = {}
    for c in out:  # names are the variants' keys: keep them unique
        seen[c.name] = seen.get(c.name, 0) + 1
        if seen[c.name] > 1:
            c.name = f"{c.name}#{seen[c.name]}"
    return out


def sweep_document(
    candidates: list[Candidate],
    data: str | None,
    seeds: int,
    budget: dict[str, Any],
    sets: dict[str, Any],
    name: str | None = None,
) -> dict:
    """The sweep file of a comparison (refusing what could not be compared), with its name."""
    if seeds < MIN_SEEDS:
        raise SlovoError(
            f"--seeds: a comparison needs at least {MIN_SEEDS} paired seeds to estimate its noise, got {seeds}"
        )
    if data is None:
        datasets = {c.dataset for c in candidates}
        if None in datasets or len(datasets) != 1:
            raise SlovoError(
                "compare: --data DIR is needed"
                if None in datasets
                else f"compare: the run folders were trained on different datasets ({', '.join(sorted(datasets))}); "
                "their bpb do not compare: pass --data DIR to train all of them on one"
            )
        data = datasets.pop()
    if not any(budget.values()):
        raise SlovoError("compare: give a per-run budget: --time 5m, --max-steps N or --max-tokens N")
    variants = {c.name: {**c.body, **sets} for c in candidates}
    doc = {
        "method": "grid",
        "metric": {"name": "eval/bpb", "goal": "minimize"},
        "data": str(Path(data).resolve()),
        # every budget key, so a run folder's own limits do not cut one side short
        "budget": {
            "time": budget.get("time"),
            "max_steps": budget.get("max_steps") or 0,
            "max_tokens": budget.get("max_tokens") or 0,
        },
        "seeds": seeds,
        "variants": variants,
    }
    digest = hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:8]
    doc["name"] = name or f"compare-{digest}"
    return doc


def check_comparable(spec) -> None:
    """Refuse configs that score different eval sets: their bpb are over different text (one line)."""
    from slovo.sweep.spec import VARIANT

    seen: dict[tuple, str] = {}
    for name in spec.variants:
        cfg = spec.build_config({VARIANT: name})
        key = (cfg.model.seq_len, cfg.eval.tokens)
        seen.setdefault(key, name)
        if len(seen) > 1:
            (a_key, a), (b_key, b) = list(seen.items())[:2]
            raise SlovoError(
                f"compare: {a} and {b} score different eval sets (model.seq_len, eval.tokens = {a_key} against "
                f"{b_key}); set both alike (--set eval.tokens=N) so their bpb are over the same windows"
            )


def group_results(runs: list[dict], metric: str = "eval/bpb") -> dict[str, dict[int, dict]]:
    """Finished trials by variant and seed index: {variant: {seed: {"value", "se", "run_dir"}}}."""
    from slovo.utils import read_json_dict

    out: dict[str, dict[int, dict]] = {}
    for r in runs:
        if r["status"] != "finished" or r.get(metric) is None:
            continue
        summary = read_json_dict(Path(r["run_dir"]) / "summary.json")
        out.setdefault(str(r["params"]["variant"]), {})[int(r["seed_index"])] = {
            "value": float(r[metric]),
            "se": summary.get("eval/bpb_se"),
            "run_dir": r["run_dir"],
            "eval_set": _eval_set(Path(r["run_dir"])),
        }
    return out


def _eval_set(run_dir: Path) -> tuple | None:
    from slovo.utils import read_json_dict

    ds = read_json_dict(run_dir / "run.json").get("dataset") or {}
    return (ds.get("fingerprint"), ds.get("eval_windows"), ds.get("eval_tokens")) if ds else None


def verdict(groups: dict[str, dict[int, dict]], order: list[str]) -> dict:
    """The comparison's figures and lines: per config its mean, sd and eval se; with two configs the paired
    verdict, with more each against the best (p Holm-adjusted over every pair of configs), and which are
    indistinguishable from the best."""
    sets = {m["eval_set"] for g in groups.values() for m in g.values() if m["eval_set"] is not None}
    if len(sets) > 1:
        raise SlovoError("compare: the runs scored different datasets or eval sets; their bpb do not compare")
    rows = []
    for name in order:
        members = groups.get(name, {})
        values = [m["value"] for m in members.values()]
        ses = [m["se"] for m in members.values() if isinstance(m["se"], (int, float)) and math.isfinite(m["se"])]
        s = stats.spread(values) if values else None
        rows.append(
            {
                "name": name,
                "seeds": len(values),
                "mean": s.mean if s else None,
                "sd": s.std if s else None,
                "eval_se": stats.spread(ses).mean if ses else None,
                "values": {str(k): v["value"] for k, v in sorted(members.items())},
            }
        )
    values = {n: {k: v["value"] for k, v in groups.get(n, {}).items()} for n in order}
    means = {n: sum(v.values()) / len(v) for n, v in values.items() if v}
    # every pair tested, Holm over all of them: the best is picked from these same runs
    best, tied, adjusted = stats.tied_with_best(means, lambda a, b: stats.seed_pvalue(values[a], values[b]))
    for r in rows:
        r["best"] = r["name"] == best
        r["indistinguishable_from_best"] = r["name"] in tied
    lines, pairs = [], []
    family = len(means) * (len(means) - 1) // 2
    against = [(order[0], order[1])] if len(order) == 2 else [(n, best) for n in order if n != best and best]
    for a, b in against:
        shared = sorted(set(values[a]) & set(values[b]))
        if len(shared) < MIN_SEEDS:
            lines.append(f"{a} against {b}: {len(shared)} seed(s) finished on both sides; a verdict needs {MIN_SEEDS}")
            continue
        result = stats.paired([values[a][s] for s in shared], [values[b][s] for s in shared])
        if family > 1:  # the p that decides is the Holm-adjusted one; the interval stays the pair's own
            result = dataclasses.replace(result, p=adjusted.get(a if b == best else b, result.p))
        lines.append(stats.verdict_line(a, b, result, family=family))
        pairs.append({"a": a, "b": b, "seeds": shared, **dataclasses.asdict(result), "line": lines[-1]})
    return {"rows": rows, "best": best, "pairs": pairs, "lines": lines}


def verdict_markdown(result: dict, title: str) -> str:
    head = "| config | seeds | eval/bpb mean ± sd | eval se | vs best |\n|---|---|---|---|---|\n"
    body = "".join(
        f"| {r['name']} | {r['seeds']} | {format_float(r['mean'], std=r['sd'])} | "
        f"{format_float(r['eval_se'])} | {_mark(r)} |\n"
        for r in result["rows"]
    )
    return f"# {title}\n\n{head}{body}\n" + "".join(f"- {line}\n" for line in result["lines"])


def _mark(row: dict) -> str:
    if row["best"]:
        return "best"
    return "≈ best (within noise)" if row["indistinguishable_from_best"] else "worse"


def write_verdict(result: dict, folder: Path, title: str) -> None:
    from slovo.utils import atomic_write_json, atomic_write_text

    atomic_write_json(folder / "verdict.json", result)
    atomic_write_text(folder / "verdict.md", verdict_markdown(result, title))


def print_verdict(result: dict, title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col, justify in (
        ("config", "left"),
        ("seeds", "right"),
        ("eval/bpb mean ± sd", "right"),
        ("eval se", "right"),
        ("vs best", "left"),
    ):
        table.add_column(col, justify=justify)
    for r in result["rows"]:
        table.add_row(
            r["name"], str(r["seeds"]), format_float(r["mean"], std=r["sd"]), format_bpb(r["eval_se"]), _mark(r)
        )
    console = Console()
    console.print(table)
    for line in result["lines"]:  # plain print: rich would wrap the verdict at the terminal's width
        print(line, flush=True)

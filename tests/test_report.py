"""`slovo report`: one self-contained HTML page comparing runs, checked as text and in headless Chromium."""

from __future__ import annotations

import html
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from slovo.cli import main
from slovo.report import write_report
from tests.fake_runs import SCRIPT_SAMPLE, make_fake_run, make_fake_sweep

REPO = Path(__file__).resolve().parents[1]
SCHEDULES = ("cosine", "wsd", "step_drop")


@pytest.fixture(scope="module")
def three_runs(tmp_path_factory):
    """Three short runs with different schedules; one wrote a <script> sample, one has an <img> prompt."""
    root = tmp_path_factory.mktemp("report") / "runs"
    for i, schedule in enumerate(SCHEDULES):
        texts = [" и было слово", SCRIPT_SAMPLE] if schedule == "wsd" else None
        make_fake_run(
            root,
            f"sched-{schedule}",
            schedule=schedule,
            seed=i,
            sample_texts=texts,
            overrides={"sample.prompts": ["<img src=x onerror=alert(2)>"]} if schedule == "cosine" else None,
        )
    return root


@pytest.fixture(scope="module")
def report_html(three_runs):
    """The report of the three runs, written once through the command line for the tests that read it."""
    out = three_runs.parent / "report.html"
    assert main(["report", str(three_runs), "-o", str(out)]) == 0
    return out


def _figures(page: str) -> list[str]:
    return re.findall(r'<figure class="plot"[^>]*>(.*?)</figure>', page, flags=re.S)


def test_report_of_three_runs_has_curves_config_and_samples(report_html):
    page = report_html.read_text(encoding="utf-8")
    figures = _figures(page)
    assert len(figures) == 9  # loss, eval loss, bpb vs time and tokens; lr, grad norm, tokens/s
    for fig in figures:  # every plot has a line for each of the three runs
        assert fig.startswith("<svg") and all(f'id="run{i}-' in fig for i in range(3))
    metrics = re.findall(r'<figure class="plot" data-metric="([^"]+)" data-x="([^"]+)"', page)
    assert ("eval/bpb", "tokens") in metrics and ("train/loss", "train_runtime") in metrics
    # the schedule differs between the runs, so its row is highlighted; the seed does not
    assert re.search(
        r'<tr class="diff"><td class="key">schedule\.name</td><td>cosine</td>'
        r"<td>step_drop</td><td>wsd</td>",
        page,
    )  # runs in folder-name order
    assert not re.search(r'<tr class="diff"><td class="key">train\.seed<', page)
    assert page.count(" и было слово") >= 3  # the wsd run's samples, at its evals


def test_report_opens_offline(report_html):
    page = report_html.read_text(encoding="utf-8")
    assert not re.search(r"<script[^>]+src=|<link\b|<img[^>]+src=\"?https?:|url\(\s*['\"]?https?:|@import", page)
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)


def test_generated_text_and_config_values_are_escaped(report_html):
    page = report_html.read_text(encoding="utf-8")
    assert html.escape(SCRIPT_SAMPLE) in page
    assert "<script>alert(1)" not in page and "alert(1)</script>" not in page
    assert "&lt;img src=x onerror=alert(2)&gt;" in page and "<img src=x" not in page
    assert page.count("<script>") == 2  # the page's own two inline scripts, nothing else


def test_sweep_report_has_leaderboard_and_importance(tmp_path):
    sweep = make_fake_sweep(tmp_path / "sweeps", "lr-sweep", trials=3)
    out = tmp_path / "sweep.html"
    assert main(["report", str(sweep), "-o", str(out)]) == 0
    page = out.read_text(encoding="utf-8")
    assert '<section id="sweep-lr-sweep">' in page and "<th>schedule.name</th>" in page
    assert 'data-metric="importance"' in page and "optim.lr" in page
    assert len(_figures(page)) == 10
    # the trials are listed best first
    names = re.findall(r'<tr(?: class="best")?><td data-run="\d+"><span[^>]*></span>(trial-\d+)</td>', page)
    board = re.findall(r"<tr><td>(\d+)</td><td>\d+</td><td>(trial-\d+)</td>", page)
    assert names[:3] == [name for _, name in sorted(board, key=lambda x: int(x[0]))]


def test_sweep_without_importances_or_leaderboard_says_so(tmp_path):
    sweep = make_fake_sweep(tmp_path / "sweeps", "s", trials=2, importances=False)
    (sweep / "leaderboard.csv").unlink()
    info = write_report([sweep], tmp_path / "s.html")
    page = (tmp_path / "s.html").read_text(encoding="utf-8")
    assert "no importances.json" in page and "no leaderboard.csv" in page
    assert info["runs"] == 2 and info["sweeps"] == 1 and len(_figures(page)) == 9


def test_report_bad_input_is_a_one_line_error(tmp_path, three_runs, capsys):
    assert main(["report", str(tmp_path / "nope"), "-o", str(tmp_path / "r.html")]) == 2
    assert "nope: no such run or folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty"), "-o", str(tmp_path / "r.html")]) == 2
    assert "no run folders" in capsys.readouterr().err
    assert main(["report", str(three_runs), "-o", str(tmp_path / "r.png")]) == 2
    assert not (tmp_path / "r.html").exists() and not (tmp_path / "r.png").exists()


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if path := shutil.which(name):
            return path
    return None


def _headless(chromium: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--enable-logging=stderr",
        "--v=0",
        f"--user-data-dir={profile}",
    ]
    return subprocess.run([chromium, *flags, *args], capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_report_renders_in_headless_chromium(tmp_path, report_html):
    chromium = _chromium()
    if chromium is None:
        pytest.skip("chromium not found (Debian: apt-get install chromium; `make test` installs it when root)")
    out = report_html
    url = out.resolve().as_uri()

    dom = _headless(chromium, tmp_path / "profile", "--virtual-time-budget=5000", "--dump-dom", url)
    check = re.search(r'<p id="render-check"[^>]*data-plots="(\d+)" data-drawn="(\d+)" data-errors="(\d+)"', dom.stdout)
    assert check, f"the page script did not run; chromium said: {dom.stderr[-1500:]}"
    plots, drawn, errors = map(int, check.groups())
    assert plots == 9 and drawn == plots and errors == 0, check.group(0)
    assert not re.search(r"CONSOLE.*(Uncaught|Error)", dom.stderr), dom.stderr[-1500:]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom.stdout  # still text once parsed

    shot = tmp_path / "report.png"
    result = _headless(chromium, tmp_path / "profile", "--window-size=1400,2400", f"--screenshot={shot}", url)
    assert shot.exists() and shot.stat().st_size > 20_000, result.stderr[-1500:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    keep = REPO / "reports"  # gitignored: a copy for a person to look at
    keep.mkdir(exist_ok=True)
    shutil.copyfile(shot, keep / "test_report_three_runs.png")
    shutil.copyfile(out, keep / "test_report_three_runs.html")

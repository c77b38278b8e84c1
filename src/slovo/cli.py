"""The `slovo` command line: one subcommand per stage of the flow.

Each subcommand lives in `slovo.commands.<name>` with two functions, `add_arguments(parser)` and
`run(args) -> int`. Those modules import torch and friends inside `run`, so `slovo --help` is fast.
User errors (`SlovoError`) become one line on stderr and a non-zero exit, without a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from slovo import __version__
from slovo.errors import SlovoError

COMMANDS = {
    "prepare": "read text sources, train or reuse a tokenizer, write token shards",
    "train": "train a model under a time/step/token budget (or --resume a run)",
    "eval": "loss, perplexity and bits per byte of a run on a dataset or text source",
    "generate": "sample text from a run",
    "export": "write a run as a transformers model folder (with --gguf also for llama.cpp; --push-to-hub)",
    "sweep": "run a hyperparameter sweep (wandb sweep YAML, Optuna engine)",
    "compare": "train configs over the same seeds and say whether one is better, by how much, how sure",
    "tune": "find the model size, batch and lr that make the most of a total time on this machine, and train it",
    "runs": "table of the runs in a folder",
    "report": "self-contained HTML report comparing runs",
    "config": "list the config keys with their defaults and what they mean",
}


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (plus where to look: the subcommand's own help), like every other
    slovo error."""

    def error(self, message: str):
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


class VersionAction(argparse.Action):
    """`slovo --version`: slovo's, torch's (and its CUDA's) and Python's versions, for bug reports. torch is
    imported only here, so the plain help stays fast."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        import platform

        try:
            import torch

            cuda = torch.version.cuda or "none"
            found = f", {torch.cuda.device_count()} GPU(s) visible" if torch.version.cuda else ""
            torch_text = f"torch {torch.__version__} (CUDA {cuda}{found})"
        except ImportError:
            torch_text = "torch not installed"
        print(f"slovo {__version__}, {torch_text}, Python {platform.python_version()}")
        parser.exit()


def _examples(doc: str | None) -> str | None:
    """A command's --help epilog: its module docstring after the first paragraph (examples, notes)."""
    parts = (doc or "").strip().split("\n\n", 1)
    return parts[1] if len(parts) > 1 else None


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="slovo", description="Train small GPT-style language models from scratch under a wall-clock budget."
    )
    parser.add_argument("--version", action=VersionAction, help="slovo's, torch's, CUDA's and Python's versions")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        module = importlib.import_module(f"slovo.commands.{name}")
        p = sub.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=_examples(module.__doc__),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    parser.commands = sub.choices  # name -> its parser, whose error() points at `slovo NAME --help`
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # argparse would leave these to the top-level parser, whose message points at `slovo --help`
        parser.commands.get(getattr(args, "command", None), parser).error(
            f"unrecognized arguments: {' '.join(unknown)}"
        )
    if not getattr(args, "command", None):  # a usage error: the help goes to stderr, as argparse's errors do
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args._run(args) or 0)
    except SlovoError as e:
        print(f"slovo {args.command}: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"slovo {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `slovo runs | head`: the reader went away; that is not an error of ours.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    raise SystemExit(main())

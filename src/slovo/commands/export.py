"""`slovo export RUN_DIR OUT_DIR`: write a run as a folder transformers loads without custom code.

from transformers import AutoModelForCausalLM, AutoTokenizer
model = AutoModelForCausalLM.from_pretrained(OUT_DIR); tok = AutoTokenizer.from_pretrained(OUT_DIR)
"""

from __future__ import annotations


def add_arguments(parser):
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run folder (newest checkpoint) or a checkpoint folder")
    parser.add_argument("out_dir", metavar="OUT_DIR", help="the model folder to write (must be empty or new)")
    parser.add_argument("--force", action="store_true", help="replace OUT_DIR if it is not empty")


def run(args) -> int:
    from slovo.export import export_run

    out = export_run(args.run_dir, args.out_dir, force=args.force)
    files = ", ".join(sorted(p.name for p in out.iterdir()))
    print(f"exported {args.run_dir} -> {out} ({files})")
    return 0

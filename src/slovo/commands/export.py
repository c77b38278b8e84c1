"""`slovo export RUN_DIR OUT_DIR`: write a run as a folder transformers loads without custom code; with --gguf
also a GGUF file for llama.cpp; with --push-to-hub upload the folder to the Hugging Face Hub.

examples:
  slovo export runs/demo hf/demo
  slovo export runs/demo hf/demo --gguf --gguf-type q8_0       # + hf/demo/model-q8_0.gguf for llama.cpp
  slovo export runs/demo hf/demo --push-to-hub user/demo --private

from transformers import AutoModelForCausalLM, AutoTokenizer
model = AutoModelForCausalLM.from_pretrained(OUT_DIR); tok = AutoTokenizer.from_pretrained(OUT_DIR)
"""

from __future__ import annotations

GGUF_TYPES = ("f32", "bf16", "q8_0")  # slovo.export_gguf.GGUF_TYPES (not imported: it needs numpy and torch)


def add_arguments(parser):
    add = parser.add_argument
    add("run_dir", metavar="RUN_DIR", help="a run folder (newest checkpoint) or a checkpoint folder")
    add("out_dir", metavar="OUT_DIR", help="the model folder to write (must be empty or new)")
    add("--force", action="store_true", help="replace OUT_DIR if it is not empty")
    add("--gguf", action="store_true", help="also write OUT_DIR/model-<type>.gguf for llama.cpp (extra: gguf)")
    add(
        "--gguf-type",
        choices=GGUF_TYPES,
        default=None,
        help="the GGUF's weights: f32 (exact, default), bf16 or q8_0 (8-bit); implies --gguf",
    )
    add("--push-to-hub", metavar="REPO", default=None, help="upload OUT_DIR to this Hub model repo (user/name)")
    add("--private", action="store_true", help="with --push-to-hub: create the repo private")
    add("--language", default="ru", help="the model card's language code (default ru)")
    add("--license", default="mit", help="the model card's license id (default mit); your corpus may need another")
    add("--dataset", action="append", default=[], metavar="ID", help="a Hub dataset id for the card (may repeat)")


def run(args) -> int:
    from slovo.errors import SlovoError
    from slovo.export import export_run

    if args.private and not args.push_to_hub:
        raise SlovoError("--private: only with --push-to-hub REPO")
    if args.push_to_hub:
        from slovo.hub import check_repo_id

        check_repo_id(args.push_to_hub)
    gguf_type = args.gguf_type or ("f32" if args.gguf else None)
    card = {"language": args.language, "license": args.license, "datasets": args.dataset}
    out = export_run(args.run_dir, args.out_dir, force=args.force, gguf_type=gguf_type, card=card)
    files = ", ".join(sorted(p.name for p in out.iterdir()))
    print(f"exported {args.run_dir} -> {out} ({files})")
    if args.push_to_hub:
        from slovo.hub import push_folder

        url = push_folder(out, args.push_to_hub, private=args.private)
        print(f"pushed {out} -> {args.push_to_hub} ({url})")
    return 0

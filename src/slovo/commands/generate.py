"""`slovo generate RUN_DIR`: sample text from a run (its newest checkpoint) or one checkpoint folder.

With one sample the text is printed as it is produced; with several, each sample is printed when it
is done. Sampling options default to the run's own `sample.*` settings. Speed goes to stderr, so
stdout holds only the text.

examples:
  slovo generate runs/demo --prompt "В начале было слово" --max-new-tokens 64
  slovo generate runs/demo --greedy
  slovo generate runs/demo --num-samples 4 --temperature 0.9 --top-p 0.95 --seed 1
"""

from __future__ import annotations

import sys
from pathlib import Path

from slovo.config import DEFAULT_PROMPT
from slovo.errors import SlovoError


def add_arguments(parser):
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run folder (newest checkpoint) or a checkpoint folder")
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--prompt", default=None, help=f"text to continue (default: {DEFAULT_PROMPT!r})")
    src.add_argument("--prompts-file", default=None, metavar="FILE", help="a UTF-8 text file, one prompt per line")
    add = parser.add_argument
    add("--max-new-tokens", type=int, default=64, metavar="N", help="tokens to add (default 64)")
    add("--greedy", action="store_true", help="always take the most likely token")
    add("--temperature", type=float, default=None, metavar="T", help="default: the run's sample.temperature")
    add("--top-k", type=int, default=None, metavar="K", help="0 = off; default: the run's sample.top_k")
    add("--top-p", type=float, default=None, metavar="P", help="1 = off; default: the run's sample.top_p")
    add("--repetition-penalty", type=float, default=1.0, metavar="R", help="1 = off (default)")
    add("--num-samples", type=int, default=1, metavar="N", help="samples per prompt, decoded as one batch")
    add("--seed", type=int, default=None, help="seed for reproducible samples (default: random, printed)")
    add(
        "--stop",
        action="append",
        default=[],
        metavar="STR",
        help="end a sample at this string (may repeat); <|endoftext|> always ends one",
    )
    add(
        "--truncate-prompt",
        action="store_true",
        help="cut a prompt longer than the context from the left (default: an error)",
    )
    add("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps (default auto)")
    add(
        "--threads",
        type=int,
        default=0,
        metavar="N",
        help="CPU threads for torch (default: torch's own); 1 keeps small models fast on a busy CPU",
    )


def read_prompts(path: str) -> list[str]:
    p = Path(path)
    if not p.is_file():
        raise SlovoError(f"{p}: prompts file not found")
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise SlovoError(f"{p}: not UTF-8 text") from None
    prompts = [line for line in lines if line.strip()]
    if not prompts:
        raise SlovoError(f"{p}: no prompts (expected one prompt per line)")
    return prompts


def run(args) -> int:
    import random
    import time

    from slovo.checkpoint import load_for_inference
    from slovo.config import check_sampling
    from slovo.device import pick_device, set_threads
    from slovo.generate import encode_prompt, generate_text
    from slovo.terminal import undertrained_note
    from slovo.utils import read_json_dict

    if args.prompts_file:
        prompts = read_prompts(args.prompts_file)
    else:
        prompts = [DEFAULT_PROMPT if args.prompt is None else args.prompt]
    if args.threads < 0:
        raise SlovoError(f"--threads: must be 0 (torch's default) or more, got {args.threads}")
    set_threads(args.threads)
    model, cfg, tokenizer = load_for_inference(args.run_dir, device=pick_device(args.device))
    note = undertrained_note(read_json_dict(Path(args.run_dir) / "summary.json"), args.run_dir)
    if note:
        print(note, file=sys.stderr)
    s = cfg.sample
    sampling = dict(
        greedy=args.greedy,
        temperature=s.temperature if args.temperature is None else args.temperature,
        top_k=s.top_k if args.top_k is None else args.top_k,
        top_p=s.top_p if args.top_p is None else args.top_p,
        repetition_penalty=args.repetition_penalty,
    )
    flag_names = {
        "temperature": "--temperature",
        "top_k": "--top-k",
        "top_p": "--top-p",
        "repetition_penalty": "--repetition-penalty",
        "max_new_tokens": "--max-new-tokens",
        "num_samples": "--num-samples",
    }
    try:
        check_sampling(
            sampling["temperature"],
            sampling["top_k"],
            sampling["top_p"],
            sampling["repetition_penalty"],
            args.max_new_tokens,
            args.num_samples,
        )
        for prompt in prompts:  # every prompt is checked before any text is printed
            encode_prompt(tokenizer, prompt, cfg.model.seq_len, truncate=args.truncate_prompt)
    except SlovoError as e:
        name, _, rest = str(e).partition(":")
        raise SlovoError(f"{flag_names.get(name, name)}:{rest}") from None
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)

    streaming = args.num_samples == 1
    out = sys.stdout
    new_tokens, seconds = 0, 0.0
    for p_i, prompt in enumerate(prompts):
        shown = []  # the prompt is written with the first piece, after any truncation warning

        def on_text(_i: int, piece: str, prompt: str = prompt, shown: list = shown) -> None:
            if not shown:
                out.write(prompt)
                shown.append(True)
            out.write(piece)
            out.flush()

        t0 = time.perf_counter()
        samples = generate_text(
            model,
            tokenizer,
            prompt,
            args.max_new_tokens,
            num_samples=args.num_samples,
            stop=args.stop,
            truncate_prompt=args.truncate_prompt,
            on_text=on_text if streaming else None,
            seed=seed + p_i,
            **sampling,
        )
        seconds += time.perf_counter() - t0
        new_tokens += sum(len(smp.ids) for smp in samples)
        if streaming:
            if not shown:  # the sample ended at once
                out.write(prompt)
            out.write("\n\n" if p_i < len(prompts) - 1 else "\n")
        else:
            for smp in samples:
                out.write(f"--- sample {smp.index + 1}/{args.num_samples} ---\n{prompt}{smp.text}\n\n")
        out.flush()
    rate = new_tokens / seconds if seconds > 0 else float("inf")
    if args.greedy or sampling["temperature"] == 0:
        mode = "greedy"
    else:
        mode = (
            f"temperature {sampling['temperature']:g}, top-k {sampling['top_k']}, top-p {sampling['top_p']:g}; "
            f"seed {seed}"
        )
    if sampling["repetition_penalty"] != 1:
        mode += f"; repetition penalty {sampling['repetition_penalty']:g}"
    print(
        f"{new_tokens} new tokens in {seconds:.2f}s ({rate:.1f} tokens/s) on {next(model.parameters()).device}; {mode}",
        file=sys.stderr,
    )
    return 0

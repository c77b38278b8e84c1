"""A probe for the torchrun tests, imported by every Python process whose PYTHONPATH starts with this folder.

In a torchrun worker (RANK set) with SLOVO_PROBE_DIR set, it records to SLOVO_PROBE_DIR/rank{R}.jsonl:
  {"loss": x}      each training forward's loss on this rank (before ranks average anything): which batches it saw
  {"params": h}    before each gradient clipping (once per optimizer step), a sha256 of the whole weights
                   (FSDP shards are gathered): ranks that train one model agree on every step's hash
and SLOVO_PROBE_SLOW="R:SECONDS" makes rank R sleep that long inside every optimizer step, so its training clock
runs ahead of the others', and SLOVO_PROBE_SLOW_SAVE="R:SECONDS" makes rank R sleep that long in every checkpoint
save (in safetensors' save_model, which every checkpoint's weights go through), and
SLOVO_PROBE_SLOW_START="R:SECONDS" makes rank R start that much later (its clock reads later from the start).
  {"rmtree": path, "group": bool}  each shutil.rmtree, and whether the process group existed then
  {"compile": true}                each torch.compile call
  {"subset": n}                    the size of the eval subset a rank chose (slovo.evaluate.subset_indices)
and SLOVO_PROBE_FAST_COMPILE="R" gives rank R a speed cache in which compiling pays off at once (train.compile=auto
would compile there, from its own figures), and SLOVO_PROBE_SLOW_SUITE="R:SECONDS" makes rank R's suite scoring
take that much longer (slovo.suites.scoring.suite_subset_metrics).
It wraps functions every slovo
version calls (cross_entropy, clip_grad_norm_, save_model), so the same test runs against older code.
"""

import os

if os.environ.get("SLOVO_PROBE_DIR") and "RANK" in os.environ:
    import hashlib
    import json
    import time

    import torch
    import torch.nn.functional as F

    _rank = int(os.environ["RANK"])
    _out = os.path.join(os.environ["SLOVO_PROBE_DIR"], f"rank{_rank}.jsonl")
    _slow_rank, _, _slow_s = os.environ.get("SLOVO_PROBE_SLOW", "-1:0").partition(":")
    _sleep = float(_slow_s) if int(_slow_rank) == _rank else 0.0

    def _record(**fields):
        with open(_out, "a") as f:
            f.write(json.dumps(fields) + "\n")

    _cross_entropy = F.cross_entropy

    def _probed_cross_entropy(*args, **kwargs):
        loss = _cross_entropy(*args, **kwargs)
        if torch.is_grad_enabled():  # a training forward, not an eval
            _record(loss=float(loss))
        return loss

    _clip = torch.nn.utils.clip_grad_norm_

    def _probed_clip(parameters, *args, **kwargs):
        parameters = list(parameters)
        h = hashlib.sha256()
        for p in parameters:
            whole = p.full_tensor() if hasattr(p, "full_tensor") else p  # a collective under FSDP: all ranks call it
            h.update(whole.detach().float().cpu().numpy().tobytes())
        _record(params=h.hexdigest())
        if _sleep:
            time.sleep(_sleep)
        return _clip(parameters, *args, **kwargs)

    _save_rank, _, _save_s = os.environ.get("SLOVO_PROBE_SLOW_SAVE", "-1:0").partition(":")
    if int(_save_rank) == _rank and float(_save_s) > 0:
        import safetensors.torch

        _save_model = safetensors.torch.save_model

        def _slow_save_model(*args, **kwargs):
            time.sleep(float(_save_s))
            return _save_model(*args, **kwargs)

        safetensors.torch.save_model = _slow_save_model

    import shutil

    _rmtree = shutil.rmtree

    def _probed_rmtree(path, *args, **kwargs):
        import torch.distributed as dist

        _record(rmtree=str(path), group=dist.is_available() and dist.is_initialized())
        return _rmtree(path, *args, **kwargs)

    shutil.rmtree = _probed_rmtree
    _start_rank, _, _start_s = os.environ.get("SLOVO_PROBE_SLOW_START", "-1:0").partition(":")
    if int(_start_rank) == _rank:
        time.sleep(float(_start_s))

    _compile = torch.compile

    def _probed_compile(*args, **kwargs):
        _record(compile=True)
        return _compile(*args, **kwargs)

    torch.compile = _probed_compile
    if os.environ.get("SLOVO_PROBE_FAST_COMPILE") == str(_rank):
        import slovo.accel

        slovo.accel.measured = lambda key: {"compile_s": 0.01, "eager_step_s": 1.0, "compiled_step_s": 0.1}

    import slovo.evaluate

    _subset_indices = slovo.evaluate.subset_indices

    def _probed_subset_indices(n_windows, n_subset):
        _record(subset=int(n_subset))
        return _subset_indices(n_windows, n_subset)

    slovo.evaluate.subset_indices = _probed_subset_indices
    _suite_rank, _, _suite_s = os.environ.get("SLOVO_PROBE_SLOW_SUITE", "-1:0").partition(":")
    if int(_suite_rank) == _rank:
        import slovo.suites.scoring

        _suite_metrics = slovo.suites.scoring.suite_subset_metrics

        def _slow_suite_metrics(*args, **kwargs):
            time.sleep(float(_suite_s))
            return _suite_metrics(*args, **kwargs)

        slovo.suites.scoring.suite_subset_metrics = _slow_suite_metrics

    F.cross_entropy = _probed_cross_entropy
    torch.nn.utils.clip_grad_norm_ = _probed_clip

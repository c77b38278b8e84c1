"""Batches of training windows from a token memmap, deterministic from (seed, batch index).

Each micro-batch draws `batch_size` random windows of `seq_len + 1` tokens. The offsets come from a
generator seeded with (seed, micro-batch index, rank), so the loader's whole state is one integer:
resuming from a checkpoint at micro-batch N gives exactly the batches an uninterrupted run would.

`prefetch()` builds the next micro-batch ahead (on CUDA its copy to the card is queued behind the work already
there): the training step calls it while the card still runs the step, before it waits for the step's figures.
It hands out the same batch `next_batch()` would have; the state counts handed-out batches only.
"""

from __future__ import annotations

import numpy as np
import torch


class BatchLoader:
    def __init__(
        self, tokens: np.ndarray, batch_size: int, seq_len: int, seed: int, rank: int = 0, device: str = "cpu"
    ):
        if len(tokens) < seq_len + 2:
            raise ValueError(f"{len(tokens)} training tokens are fewer than one window of {seq_len + 1}")
        self.tokens = tokens
        self.batch_size = batch_size
        self.seq_len = seq_len
        self.seed = seed
        self.rank = rank
        self.device = device
        self.position = 0  # micro-batches handed out so far
        self._ahead: tuple[int, tuple[torch.Tensor, torch.Tensor]] | None = None  # (position, batch) prefetched

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        ahead, self._ahead = self._ahead, None
        batch = ahead[1] if ahead is not None and ahead[0] == self.position else self._build(self.position)
        self.position += 1
        return batch

    def prefetch(self) -> None:
        """Build the next micro-batch now, so `next_batch` finds it ready."""
        if self._ahead is None or self._ahead[0] != self.position:
            self._ahead = (self.position, self._build(self.position))

    def _build(self, position: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng((self.seed, position, self.rank))
        starts = rng.integers(0, len(self.tokens) - self.seq_len - 1, size=self.batch_size)
        windows = np.stack([np.asarray(self.tokens[s : s + self.seq_len + 1], dtype=np.int64) for s in starts])
        batch = torch.from_numpy(windows)
        if self.device.startswith("cuda"):
            batch = batch.pin_memory().to(self.device, non_blocking=True)
        else:
            batch = batch.to(self.device)
        return batch[:, :-1], batch[:, 1:]

    def state_dict(self) -> dict:
        return {"position": self.position, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        self.position = int(state["position"])
        self._ahead = None

"""A training cell's resume point: ``checkpoint.pt`` in the cell's folder.

What is written is what resume needs and nothing else: the model and optimiser state, the
learning-rate scheduler's state, the global torch random state (dropout and any other draw from
it), the epoch, the best-so-far validation macro-F1 with its epoch, weights and validation
probabilities, and the history rows. The best epoch's weights are written only when they differ
from the current model's (``best_state`` None means "the last epoch is the best").

**When.** After an epoch when at least ``checkpoint_every_min`` minutes have passed since the last
write (or since training started), and always after the last epoch trained; ``0`` writes after
every epoch. A run killed between two writes resumes from the last one and repeats the epochs
after it; as every epoch's randomness is a function of (seed, epoch) and the global random state
is restored, the numbers are those of an uninterrupted run on the CPU.

**How.** Through a temporary name and a rename (:func:`imbench.io.write_with`), so a kill during a
write leaves the previous checkpoint. A checkpoint is resumed only when its identity (the cell,
its resolved settings and the content of its data, see :func:`imbench.train.train_cell`) is the
current one; otherwise, or when it cannot be read, one line says why, it is removed and training
starts from scratch. Loading uses ``weights_only=True``: a checkpoint never runs pickled code.
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
from pathlib import Path

import torch

from .io import write_with

__all__ = ["Checkpoint", "checkpoint_mismatch", "identity_hash"]


def identity_hash(payload: dict) -> str:
    """16 hex digits of the SHA-256 of ``payload`` as sorted JSON."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def checkpoint_mismatch(old, new: dict) -> str:
    """Why a checkpoint of identity ``old`` is not resumed for identity ``new`` (a few words)."""
    if not isinstance(old, dict):
        return "it records no comparable identity (written by an older version)"
    names = {"data": "other data (cache or split content)", "settings": "other settings"}
    differs = [names.get(k, f"another {k}") for k in new if old.get(k) != new[k]]
    return "it was written for " + (", ".join(differs) if differs else "another identity")


class Checkpoint:
    """The checkpoint file of one cell: load, decide when to write, write atomically, remove.

    ``every_min``: minimum minutes between two writes (0: every epoch). ``seconds`` and ``writes``
    add up the time spent writing (recorded in ``run.json``'s timings)."""

    def __init__(self, path: str | Path, identity: dict, every_min: float, log=print):
        self.path = Path(path)
        self.identity = identity
        self.hash = identity_hash(identity)
        self.every_s = 60.0 * float(every_min)
        self.log = log
        self.last_write = time.monotonic()
        self.seconds = 0.0
        self.writes = 0

    def load(self, device: torch.device) -> dict | None:
        """The checkpoint's content when it exists, is readable and has this identity; else None
        (an unusable file is reported in one line and removed)."""
        if not self.path.exists():
            return None
        try:
            state = torch.load(self.path, map_location=device, weights_only=True)
        except Exception as exc:  # truncated or corrupt: never trust it
            self.log(
                f"ignoring unreadable checkpoint {self.path} ({type(exc).__name__}: {exc}); "
                "starting from scratch"
            )
            self.path.unlink()
            return None
        if not isinstance(state, dict) or state.get("identity_hash") != self.hash:
            old = state.get("identity") if isinstance(state, dict) else None
            self.log(
                f"ignoring {self.path}: {checkpoint_mismatch(old, self.identity)}; "
                "training from scratch"
            )
            self.path.unlink(missing_ok=True)
            return None
        torch.set_rng_state(state["rng"].cpu())
        return state

    def due(self) -> bool:
        """Whether ``every_min`` minutes have passed since the last write."""
        return time.monotonic() - self.last_write >= self.every_s

    def save(self, **state) -> None:
        """Write ``state`` (plus the identity and the global torch random state) atomically."""
        t0 = time.perf_counter()
        payload = {
            "identity_hash": self.hash,
            "identity": self.identity,
            "rng": torch.get_rng_state(),
            **state,
        }
        write_with(self.path, functools.partial(torch.save, payload))
        self.seconds += time.perf_counter() - t0
        self.writes += 1
        self.last_write = time.monotonic()

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)

"""Checkpoints: atomic writes, ``weights_only`` loads, RNG states stored as tensors."""

from __future__ import annotations

import contextlib
import os
import pathlib
import random
import tempfile
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["CHECKPOINT_NAME", "save_atomic", "load_checkpoint", "capture_rng", "restore_rng", "check_state_dict"]

CHECKPOINT_NAME = "last.pt"
FORMAT_VERSION = 1


def save_atomic(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file beside ``path``, fsync it, then ``os.replace``.

    A crash while writing leaves the previous file intact: ``os.replace`` within one directory is atomic.
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint written by :func:`depthlib.train.fit` (``weights_only=True``, on the CPU)."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated or foreign file: say which one
        raise ValueError(f"{path}: not a readable depthlib.train checkpoint ({err})") from err
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT_VERSION:
        raise ValueError(
            f"{path}: not a depthlib.train checkpoint of format {FORMAT_VERSION} "
            f"(format={ckpt.get('format') if isinstance(ckpt, dict) else type(ckpt).__name__!r})"
        )
    return ckpt


def check_state_dict(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Raise ``ValueError`` naming missing, unexpected and mis-shaped keys before ``load_state_dict``."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k}: {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        for label, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes)):
            if keys:
                shown = ", ".join(keys[:8]) + (f", ... ({len(keys)} in all)" if len(keys) > 8 else "")
                parts.append(f"{label}: {shown}")
        raise ValueError(f"{source} does not match the model ({type(model).__name__}): " + "; ".join(parts))


def capture_rng(loader_generator: torch.Generator | None = None) -> dict[str, Any]:
    """Every RNG state a training epoch consumes, as tensors (``weights_only``-loadable)."""
    version, mt_state, gauss_next = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": torch.tensor(mt_state, dtype=torch.int64),
        "python_version": version,
        "python_gauss": gauss_next,
        "numpy": torch.from_numpy(np_keys.astype(np.int64)),
        "numpy_pos": int(np_pos),
        "numpy_has_gauss": int(np_has_gauss),
        "numpy_gauss": float(np_gauss),
        "numpy_name": np_name,
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    if loader_generator is not None:
        state["loader"] = loader_generator.get_state()
    return state


def restore_rng(state: dict[str, Any], loader_generator: torch.Generator | None = None) -> None:
    """Inverse of :func:`capture_rng`."""
    torch.set_rng_state(state["torch"])
    random.setstate((state["python_version"], tuple(int(v) for v in state["python"].tolist()), state["python_gauss"]))
    np.random.set_state((
        state["numpy_name"],
        state["numpy"].numpy().astype(np.uint32),
        state["numpy_pos"],
        state["numpy_has_gauss"],
        state["numpy_gauss"],
    ))
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if loader_generator is not None and "loader" in state:
        loader_generator.set_state(state["loader"])

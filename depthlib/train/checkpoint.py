"""Checkpoints: atomic writes, ``weights_only`` loads, RNG states stored as tensors."""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import pathlib
import random
import tempfile
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = [
    "CHECKPOINT_NAME", "save_atomic", "load_checkpoint", "capture_rng", "restore_rng", "check_state_dict",
    "model_metadata", "check_model_metadata", "nonfinite_entries", "remove_stale_temporaries", "dataset_fingerprint",
]

CHECKPOINT_NAME = "last.pt"
# 2: the checkpoint records what the weights belong to ("model_meta") and what they were trained on ("data").
FORMAT_VERSION = 2
_READABLE_FORMATS = (1, 2)
# Keys of intermediate prediction heads (removed for deployment) and of the recorded input normalisation (absent
# from files written before it was recorded): optional when loading weights for inference.
_OPTIONAL_PREFIX = ("decoder.aux_heads.", "input_mean", "input_std")
_STATE_DICT_WRAPPERS = ("model", "state_dict", "model_state_dict")


def save_atomic(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file beside ``path``, fsync it, then ``os.replace``.

    A crash while writing leaves the previous file intact: ``os.replace`` within one directory is atomic.
    A ``kill -9`` can leave the temporary ``.<name>.*.tmp`` behind; :func:`remove_stale_temporaries` removes
    it on the next start.
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


def remove_stale_temporaries(path: str | os.PathLike) -> list[pathlib.Path]:
    """Delete the temporaries :func:`save_atomic` leaves beside ``path`` when killed mid-write.

    Only files named ``.<name>.*.tmp`` in ``path``'s folder are touched; returns those removed.
    """
    path = pathlib.Path(path)
    removed = []
    if path.parent.is_dir():
        for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
            if tmp.is_file():
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
                    removed.append(tmp)
    return removed


def _plain(value: Any) -> Any:
    """``value`` as weights_only-loadable primitives (paths as str, tuples as lists)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return repr(value)


def model_metadata(model: nn.Module) -> dict[str, Any]:
    """What a state dict belongs to: ``{"class", "preset", "overrides", "weights"}``.

    ``preset``, ``overrides`` and ``weights`` come from ``model.preset_config``, which
    :func:`depthlib.models.create_model` sets (the preset name, its keyword overrides and the weights the
    encoder was initialised with); a model built otherwise records its class and, if it has one, its ``name``.
    """
    meta: dict[str, Any] = {"class": f"{type(model).__module__}.{type(model).__qualname__}"}
    preset = getattr(model, "preset_config", None)
    if isinstance(preset, dict):
        meta.update({k: _plain(preset.get(k)) for k in ("preset", "overrides", "weights")})
    elif isinstance(getattr(model, "name", None), str):
        meta["preset"] = model.name
    return meta


def check_model_metadata(saved: dict[str, Any] | None, model: nn.Module, source: str, *,
                         weights: bool = False) -> None:
    """Raise ``ValueError`` when ``saved`` (a checkpoint's ``model_meta``) describes another network.

    The class, preset name and overrides must match: ``fastdepth-noskip`` and ``fastdepth`` have the same
    keys and shapes, so only these tell them apart. ``weights=True`` (resume) also compares the weights
    entry the encoder was initialised with: a resumed run must continue the same run. Keys absent on either
    side (checkpoints of format 1, plain state dicts, models not built by ``create_model``) are not compared.
    """
    if not saved:
        return
    own = model_metadata(model)
    keys = ["class", "preset", "overrides"] + (["weights"] if weights else [])
    diffs = [f"{k}: checkpoint {saved[k]!r}, model {own[k]!r}"
             for k in keys if k in saved and k in own and _plain(saved[k]) != _plain(own[k])]
    if diffs:
        raise ValueError(
            f"{source} was written for another network than {own.get('preset') or own['class']!r} "
            f"({'; '.join(diffs)}): build the model with the checkpoint's preset and overrides, "
            f"create_model({saved.get('preset')!r}, **{saved.get('overrides') or {}!r})")


def nonfinite_entries(state: dict[str, Any], prefix: str = "") -> list[str]:
    """Names of floating tensors holding NaN or inf in a (nested) state dict: weights, buffers such as
    BatchNorm's running statistics, optimiser moments."""
    bad = []
    items = state.items() if isinstance(state, dict) else enumerate(state) if isinstance(state, (list, tuple)) else ()
    for key, value in items:
        name = f"{prefix}{key}"
        if isinstance(value, torch.Tensor):
            if value.is_floating_point() and not bool(torch.isfinite(value).all()):
                bad.append(name)
        elif isinstance(value, (dict, list, tuple)):
            bad.extend(nonfinite_entries(value, f"{name}."))
    return bad


def _read(path: pathlib.Path) -> dict[str, Any]:
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    if not path.is_file():
        raise ValueError(f"checkpoint {path} is not a file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated, foreign, or a pickle weights_only refuses: say which file
        raise ValueError(f"{path}: not a readable checkpoint (truncated, corrupt, or objects that "
                         f"weights_only=True refuses): {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
                         ) from err
    if isinstance(obj, dict) and "format" in obj:
        if obj["format"] not in _READABLE_FORMATS:
            raise ValueError(f"{path}: checkpoint format {obj['format']!r}; this depthlib reads {_READABLE_FORMATS}")
        if not isinstance(obj.get("model"), dict):
            raise ValueError(f"{path}: checkpoint has no 'model' state dict")
        return obj
    # A plain state dict, or one wrapped under "model" / "state_dict" / "model_state_dict" (other trainers).
    if isinstance(obj, dict):
        for key in _STATE_DICT_WRAPPERS:
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return {"format": None, "model": obj}
    raise ValueError(f"{path}: neither a depthlib checkpoint nor a state dict (a mapping of names to tensors), "
                     f"got {type(obj).__name__}")


def load_checkpoint(path: str | os.PathLike, model: nn.Module | None = None, *, strict: bool = True) -> dict[str, Any]:
    """Read a checkpoint (``weights_only=True``, on the CPU) and, given ``model``, load its weights into it.

    The one way to read weights back: a checkpoint written by :func:`depthlib.train.fit` (``last.pt``), or a
    plain state dict file (also one wrapped under ``"model"``, ``"state_dict"`` or ``"model_state_dict"``).

    Args:
        path: the file.
        model: when given, its state is replaced by the checkpoint's (in place), after checking that the
            checkpoint was written for the same network: the same preset and overrides (recorded by ``fit``
            from ``model.preset_config``), the same keys and shapes. Intermediate-head keys
            (``decoder.aux_heads.*``) may be absent on either side (heads are removed for deployment).
        strict: ``False`` loads the keys that match and skips the rest (and a preset mismatch) silently.

    Returns:
        the checkpoint as a dict: ``ckpt["model"]`` the state dict; for ``fit``'s checkpoints also
        ``epoch``, ``history``, ``config``, ``model_meta``, ``optimizer``, ...; for a plain state dict file
        ``{"format": None, "model": state}``.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: a truncated or foreign file, a pickle ``weights_only`` refuses, or (``strict``) a
            checkpoint of another network: another preset or overrides, missing or unexpected keys, or
            mis-shaped tensors, each named.
    """
    path = pathlib.Path(path)
    ckpt = _read(path)
    if model is None:
        return ckpt
    state = ckpt["model"]
    if strict:
        check_model_metadata(ckpt.get("model_meta"), model, f"checkpoint {path}")
        check_state_dict(model, state, f"checkpoint {path}", optional_prefix=_OPTIONAL_PREFIX)
    own = model.state_dict()
    model.load_state_dict({k: v for k, v in state.items() if k in own and v.shape == own[k].shape}, strict=False)
    return ckpt


def check_state_dict(model: nn.Module, state: dict[str, torch.Tensor], source: str, *,
                     optional_prefix: str | tuple[str, ...] | None = None) -> None:
    """Raise ``ValueError`` naming missing, unexpected and mis-shaped keys before ``load_state_dict``.

    Keys starting with ``optional_prefix`` (one prefix or a tuple) may be missing on either side.
    """
    own = model.state_dict()
    optional = (lambda k: k.startswith(optional_prefix)) if optional_prefix else (lambda k: False)
    missing = sorted(k for k in set(own) - set(state) if not optional(k))
    unexpected = sorted(k for k in set(state) - set(own) if not optional(k))
    shapes = [f"{k}: {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        for label, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes)):
            if keys:
                shown = ", ".join(keys[:8]) + (f", ... ({len(keys)} in all)" if len(keys) > 8 else "")
                parts.append(f"{label}: {shown}")
        arch = getattr(model, "name", None) or type(model).__name__
        raise ValueError(f"{source} does not match the model {arch!r} (another architecture?): " + "; ".join(parts))


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


def _identity(value: Any, depth: int = 0) -> Any:
    """A JSON-able summary of what a dataset attribute says about which samples it serves, or None."""
    if depth > 3:
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        if isinstance(value, str) and ("/" in value or os.sep in value):
            return "/".join(pathlib.PurePath(value).parts[-3:])
        return value
    if isinstance(value, os.PathLike):
        # The last parts only: the same dataset moved to another folder or machine is the same dataset.
        return "/".join(pathlib.PurePath(value).parts[-3:])
    if isinstance(value, np.ndarray):
        return hashlib.sha256(np.ascontiguousarray(value).tobytes()).hexdigest()[:16]
    if isinstance(value, torch.Tensor):
        return hashlib.sha256(value.detach().cpu().contiguous().numpy().tobytes()).hexdigest()[:16]
    if isinstance(value, range):
        return ["range", value.start, value.stop, value.step]
    if isinstance(value, dict) and "path" in value:  # a sample held in memory: its source names it
        return _identity(value["path"], depth)
    if isinstance(value, (list, tuple)):
        items = [_identity(v, depth + 1) for v in value]
        return items if all(i is not None or v is None for i, v in zip(items, value)) else None
    if isinstance(value, torch.utils.data.Dataset):
        return dataset_fingerprint(value, depth + 1)
    return None


def dataset_fingerprint(data: Any, depth: int = 0) -> dict[str, Any]:
    """``{"class", "len", "identity"}`` of a dataset, without reading a sample.

    ``identity`` hashes the dataset's public attributes that say which samples it serves (file lists,
    roots by their last path components, split, seed, size, indices of a ``Subset``, the datasets of a
    ``ConcatDataset``, the ``"path"`` of each sample of a list held in memory), not its transform: :func:`depthlib.train.fit` records it in the checkpoint and
    refuses to resume on another dataset.
    """
    fields = {}
    if isinstance(data, (list, tuple)):  # samples held in memory (a list of sample dicts)
        fields["samples"] = _identity(list(data), depth)
    for key, value in sorted(getattr(data, "__dict__", {}).items()):
        if key.startswith("_") or key == "transform":
            continue
        ident = _identity(value, depth)
        if ident is not None:
            fields[key] = ident
    try:
        n = len(data)
    except TypeError:
        n = None
    text = json.dumps(fields, sort_keys=True, default=str)
    return {"class": f"{type(data).__module__}.{type(data).__qualname__}", "len": n,
            "identity": hashlib.sha256(text.encode()).hexdigest()[:16]}

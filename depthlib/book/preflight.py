"""Preflight: what each chapter of a profile needs (datasets, weights files, device), checked before anything runs.

``depthlib book --profile paper --check`` prints the table in seconds and exits 1 when a chapter cannot run;
``depthlib book --profile paper`` runs the same check first and stops before the first chapter when something
is missing (``--skip-unavailable`` runs the chapters that can run and skips the others). Nothing is
downloaded or trained here: files are looked up, weights caches probed, the device queried.

The needs are read from each chapter's profile values by name:

- ``train_data``/``train_root`` and ``batch_train_data``/``batch_train_root``: a real training set
  (``nyu_h5``, ``nyu_labeled``) under the project;
- ``pretrained`` with ``models`` (presets) or ``train_configs`` (``[encoder, decoder, skip]``): the encoders'
  weights (``imagenet`` is required; ``auto`` falls back to random initialisation, so it is listed as optional);
- ``data: auto``: DenseDepth's real NYU test pairs (optional: the procedural scenes stand in);
- ``device``: ``cuda`` needs a GPU that torch can see.
"""

from __future__ import annotations

import pathlib
from typing import Any

from . import _paths
from .params import load_profile, profile_values

__all__ = ["preflight", "format_preflight", "blocked_chapters"]

_DATASETS = {
    # kind: (manifest name for `depthlib download`, what the reader needs at the root)
    "nyu_h5": ("nyudepthv2", "FastDepth's NYU Depth v2 h5 tree (train/, val/)"),
    "nyu_labeled": ("nyu_labeled", "nyu_depth_v2_labeled.mat (+ splits.mat beside it)"),
}

# data_roots keys (chapter 11's sets) -> their download manifests
_ROOT_MANIFESTS = {"diw": "diw", "redweb": "redweb", "mc": "mannequin", "nyu": "nyudepthv2"}


def _dataset_rows(chapter: str, values: dict[str, Any], root: pathlib.Path) -> list[dict[str, Any]]:
    rows = []
    for data_key, root_key in (("train_data", "train_root"), ("batch_train_data", "batch_train_root")):
        kind = values.get(data_key)
        if kind not in _DATASETS:
            continue
        manifest, what = _DATASETS[kind]
        path = root / str(values.get(root_key) or "")
        url = None
        try:
            from depthlib.data.download import load_manifest

            url = ", ".join(f.url for f in load_manifest(manifest).files)
        except Exception:  # noqa: BLE001 - the URL is a hint; a broken manifest must not hide the table
            url = None
        rows.append({"chapter": chapter, "kind": "dataset", "need": f"{kind}: {what}", "where": str(path),
                     "required": True, "present": path.exists(),
                     "get": f"depthlib download {manifest} --root {path.parent}" + (f"  ({url})" if url else "")})
    for kind, rel in (values.get("data_roots") or {}).items():  # chapter 11: {diw, redweb, mc, nyu: root}
        manifest = _ROOT_MANIFESTS.get(kind, kind)
        path = root / str(rel)
        rows.append({"chapter": chapter, "kind": "dataset", "need": f"{kind}: data/README.md", "where": str(path),
                     "required": True, "present": path.exists(),
                     "get": f"depthlib download {manifest} --root {path.parent}"})
    if values.get("data") == "auto":
        found = _paths.find_nyu_data()
        rows.append({"chapter": chapter, "kind": "dataset", "need": "nyu_data: DenseDepth's NYU test pairs",
                     "where": str(found) if found else "data/nyu_data", "required": False, "present": found is not None,
                     "get": "data/README.md (DenseDepth's nyu_test.zip, unpacked to data/nyu_data); "
                            "without it the procedural scenes stand in"})
    return rows


def _encoders(values: dict[str, Any]) -> list[str]:
    from depthlib.models import preset_encoder

    encoders = []
    for preset in values.get("models") or []:
        encoder = preset_encoder(preset)
        if encoder:
            encoders.append(encoder)
    for config in values.get("train_configs") or []:
        encoders.append(str(config[0]))
    return list(dict.fromkeys(encoders))


def _weights_rows(chapter: str, values: dict[str, Any]) -> list[dict[str, Any]]:
    from depthlib.models.weights import get_weights, list_weights, resolve_weights

    setting = values.get("pretrained")
    if setting in (None, "none"):
        return []
    rows = []
    for encoder in _encoders(values):
        try:
            entry = resolve_weights(encoder, "imagenet" if setting == "auto" else setting)
        except (ValueError, FileNotFoundError) as err:
            files = [get_weights(n) for n in list_weights(encoder) if get_weights(n).source == "file"]
            if not files:
                rows.append({"chapter": chapter, "kind": "weights", "need": f"{encoder}: {setting}", "where": "",
                             "required": setting != "auto", "present": False, "get": str(err)})
                continue
            entry = files[0]  # only a file provides them (no library has this layout): that file is the need
        if entry is None:
            continue
        path = entry.local_path()
        how = entry.url or ""
        if entry.source == "torchvision":
            how = f"{entry.url} (into torch.hub's cache, on a machine with internet: python -c \"import torchvision; " \
                  f"torchvision.models.get_model('{entry.meta.get('arch')}', weights='DEFAULT')\")"
        elif entry.source == "timm":
            how = f"{entry.url} (into the Hugging Face cache, on a machine with internet: python -c \"import timm; " \
                  f"timm.create_model('{entry.meta.get('timm')}', pretrained=True)\")"
        elif entry.source == "file":
            how = f"{entry.url}; put {entry.filename} in data/weights/ or $DEPTHLIB_WEIGHTS"
        rows.append({"chapter": chapter, "kind": "weights", "need": f"{encoder}: {entry.name} ({entry.license})",
                     "where": str(path) if path else "", "required": setting != "auto", "present": path is not None,
                     "get": how + (" (else random initialisation)" if setting == "auto" else "")})
    return rows


def _device_rows(chapter: str, values: dict[str, Any]) -> list[dict[str, Any]]:
    device = str(values.get("device") or "cpu")
    if not device.startswith("cuda"):
        return []
    import torch

    ok = torch.cuda.is_available()
    name = torch.cuda.get_device_name(0) if ok else ""
    return [{"chapter": chapter, "kind": "device", "need": device, "where": name, "required": True, "present": ok,
             "get": "a machine with an NVIDIA GPU and a CUDA build of torch (or run another profile: --profile quick)"}]


def preflight(profile: str, root: str | pathlib.Path | None = None, chapters: list[str] | None = None):
    """What every chapter of ``profile`` needs, and whether it is there.

    Returns:
        DataFrame with ``chapter kind need where required present get`` (one row per need; ``get`` is the
        command or URL that provides a missing one).
    """
    import pandas as pd

    from .runner import toc_chapters

    root = pathlib.Path(root).resolve() if root is not None else _paths.project_root()
    load_profile(profile)
    rows: list[dict[str, Any]] = []
    sections = load_profile(profile)["notebooks"]
    for chapter in chapters or toc_chapters(root):
        try:
            values = profile_values(chapter, profile)
        except ValueError:
            continue  # a chapter without a section needs nothing of the profile
        own = set(sections.get(chapter) or {})
        # the profile's defaults (data, device) reach every chapter; only the chapters that read data or
        # train (their own section names a data set or epochs) need them
        if not own & {"train_data", "n_real", "n_stats"}:
            values.pop("data", None)
        if "epochs" not in own:
            values.pop("device", None)
        rows += _dataset_rows(chapter, values, root) + _weights_rows(chapter, values) + _device_rows(chapter, values)
    return pd.DataFrame(rows, columns=["chapter", "kind", "need", "where", "required", "present", "get"])


def blocked_chapters(table) -> list[str]:
    """Chapters with a required need that is missing."""
    missing = table[table["required"] & ~table["present"]]
    return list(dict.fromkeys(missing["chapter"]))


def format_preflight(table, profile: str) -> str:
    """The table as text: one line per need, ``ok``/``MISSING``/``optional``, and how to get what is missing."""
    lines = [f"[depthlib book] preflight, profile {profile}:"]
    if table.empty:
        lines.append("  nothing to check: no chapter needs a dataset, weights file or device")
    for r in table.itertuples(index=False):
        state = "ok" if r.present else ("MISSING" if r.required else "absent (optional)")
        lines.append(f"  {r.chapter:28s} {r.kind:8s} {state:18s} {r.need}" + (f"  [{r.where}]" if r.where else ""))
        if not r.present:
            lines.append(f"  {'':28s} {'':8s} {'':18s} get: {r.get}")
    blocked = blocked_chapters(table)
    lines.append("  all chapters can run" if not blocked else f"  cannot run: {', '.join(blocked)}")
    return "\n".join(lines)

"""Pretrained weights as data, the torchvision way: one :class:`WeightsEntry` per set of weights.

An entry names where the weights come from (a converted file, torchvision's or timm's ImageNet weights), how
to check them (sha256), their licence, the input preprocessing they expect (``mean``/``std``, or none) and
their metadata. :func:`depthlib.models.create_model` takes ``weights=`` as ``None``, an entry or its name,
``"auto"``, ``"imagenet"`` or a path, resolves it here once (:func:`resolve_weights`) and records the entry's
preprocessing on the model (``model.normalization``), which training, evaluation, prediction and export then
take from the model: there is no second switch.

>>> from depthlib.models import list_weights, get_weights
>>> get_weights("mobilenet_v2.tflite_imagenet").transforms()
{'mean': (0.485, 0.456, 0.406), 'std': (0.229, 0.224, 0.225)}

Where local files are searched (:func:`weights_dirs`): ``$DEPTHLIB_WEIGHTS`` (``os.pathsep``-separated),
``$DEPTHLIB_SHARED/weights``, then ``data/weights`` and ``shared/weights`` in the working directory and each of
its parents, then beside the package's source tree. No project checkout is needed: an installed wheel finds a
file put in ``$DEPTHLIB_WEIGHTS``.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import pathlib
from collections.abc import Mapping
from typing import Any

__all__ = [
    "IMAGENET_MEAN", "IMAGENET_STD", "WeightsEntry", "list_weights", "get_weights", "resolve_weights",
    "weights_dirs", "find_weights_file", "weights_spec", "describe_weights",
]

#: torchvision's (and timm's default) ImageNet normalisation, for images in [0, 1].
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


@dataclasses.dataclass(frozen=True)
class WeightsEntry:
    """One set of pretrained encoder weights.

    Attributes:
        name: ``"<encoder>.<variant>"``, e.g. ``"mobilenet_v1.tflite_imagenet"``.
        encoder: the :func:`depthlib.models.list_encoders` name the weights fit.
        source: ``"file"`` (a local state dict), ``"torchvision"`` or ``"timm"`` (their weight APIs), or
            ``"path"`` (a file given by path, not one of the registered entries).
        filename: the file's name (``"file"``) or path (``"path"``).
        url: where a user with internet gets the weights (or the page that says how).
        sha256: the file's checksum (``"file"``), or the hash prefix torch.hub checks (``"torchvision"``).
        license: the weights' licence.
        mean, std: the per-channel normalisation the weights expect for images in [0, 1], or ``None`` when
            they take the images as they are.
        meta: free-form metadata (how they were made, their ImageNet accuracy when known).
    """

    name: str
    encoder: str
    source: str
    filename: str | None = None
    url: str | None = None
    sha256: str | None = None
    license: str = "unknown"
    mean: tuple[float, ...] | None = IMAGENET_MEAN
    std: tuple[float, ...] | None = IMAGENET_STD
    meta: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def transforms(self) -> dict[str, tuple[float, ...]] | None:
        """``{"mean": (3,), "std": (3,)}`` the weights expect, or ``None`` (images as they are)."""
        return None if self.mean is None else {"mean": tuple(self.mean), "std": tuple(self.std)}

    def local_path(self) -> pathlib.Path | None:
        """The local copy of the weights, or ``None`` when absent (never downloads)."""
        if self.source == "path":
            path = pathlib.Path(self.filename)
            return path if path.is_file() else None
        if self.source == "file":
            return find_weights_file(self.filename, sha256=self.sha256)
        if self.source == "torchvision":
            import torch

            cached = pathlib.Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(self.url)
            return cached if cached.is_file() else None
        if self.source == "timm":
            from huggingface_hub import try_to_load_from_cache

            for filename in ("model.safetensors", "pytorch_model.bin"):
                hit = try_to_load_from_cache(repo_id=self.meta["hf_hub_id"], filename=filename)
                if isinstance(hit, str):
                    return pathlib.Path(hit)
        return None

    def encoder_argument(self) -> str:
        """What :func:`depthlib.models.create_encoder` takes: the local file's path, or ``"imagenet"`` (the
        torchvision/timm weight API, which fails at once with a clear message offline)."""
        if self.source in ("file", "path"):
            path = self.local_path()
            if path is None:
                raise FileNotFoundError(
                    f"weights {self.name!r}: file {self.filename!r} not found in {[str(d) for d in weights_dirs()]}; "
                    f"get it from {self.url} and put it in one of them (or set DEPTHLIB_WEIGHTS)")
            return str(path)
        return "imagenet"


# --------------------------------------------------------------------------------------------- the entries
_TFLITE_URL = "https://github.com/google-coral/test_data (converted; see ../shared/weights/README.md)"

_FILE_ENTRIES = (
    WeightsEntry(
        "mobilenet_v1.tflite_imagenet", "mobilenet_v1", "file", "mobilenet_v1_imagenet_from_tflite.pth",
        url=_TFLITE_URL, sha256="d159fa8d09e92f9e88e8b5829f9d3535e2f941eae478a2e5c33775bd896bd3c1",
        license="Apache-2.0 (google-coral/test_data)",
        meta={"made_from": "mobilenet_v1_1.0_224_quant_embedding_extractor.tflite",
              "layout": "FastDepth's MobileNet v1 (model.k.*), no classifier",
              "note": "TF's [-1, 1] input scaling is folded into the first conv: feed ImageNet-normalised input"}),
    WeightsEntry(
        "mobilenet_v2.tflite_imagenet", "mobilenet_v2", "file", "mobilenet_v2_imagenet_from_tflite.pth",
        url=_TFLITE_URL, sha256="762693509a4209313549e75e28ac6157c15e3600bf1d63bbb1739bbf3602c6aa",
        license="Apache-2.0 (google-coral/test_data)",
        meta={"made_from": "tf2_mobilenet_v2_1.0_224_ptq.tflite", "layout": "torchvision mobilenet_v2()",
              "note": "TF's [-1, 1] input scaling is folded into the first conv: feed ImageNet-normalised input"}),
)


@functools.lru_cache(maxsize=1)
def _registry() -> dict[str, WeightsEntry]:
    from depthlib.models.encoders import _SPECS

    entries = {e.name: e for e in _FILE_ENTRIES}
    for encoder, spec in sorted(_SPECS.items()):
        if spec.source == "torchvision":
            from torchvision.models import get_model_weights

            tv = get_model_weights(spec.arch).DEFAULT
            # torch.hub checks the sha256 prefix in the file name (arch-<hash>.pth) when it downloads
            prefix = os.path.basename(tv.url).rsplit("-", 1)[-1].split(".")[0]
            entries[f"{encoder}.imagenet"] = WeightsEntry(
                f"{encoder}.imagenet", encoder, "torchvision", url=tv.url, sha256=prefix,
                license="BSD-3-Clause (torchvision); ImageNet terms of use apply",
                meta={"torchvision": str(tv), "arch": spec.arch, "acc@1": tv.meta.get("_metrics", {}).get("ImageNet-1K", {}).get("acc@1")})
        elif spec.source in ("timm", "timm-vit"):  # timm CNNs and ViTs: timm's pretrained config says it all
            import timm

            cfg = timm.models.get_pretrained_cfg(spec.arch)
            mean = tuple(cfg.mean) if cfg is not None and cfg.mean else IMAGENET_MEAN
            std = tuple(cfg.std) if cfg is not None and cfg.std else IMAGENET_STD
            hub = cfg.hf_hub_id if cfg is not None else None
            entries[f"{encoder}.imagenet"] = WeightsEntry(
                f"{encoder}.imagenet", encoder, "timm", url=f"https://huggingface.co/{hub}" if hub else None,
                license=(cfg.license if cfg is not None and cfg.license else "see the timm model card"),
                mean=mean, std=std, meta={"timm": spec.arch, "hf_hub_id": hub})
    return entries


def list_weights(encoder: str | None = None) -> list[str]:
    """Names of the weights entries (of one encoder, aliases accepted)."""
    from depthlib.models.encoders import _resolve

    key = _resolve(encoder) if encoder is not None else None
    return sorted(n for n, e in _registry().items() if key is None or e.encoder == key)


def get_weights(name: str) -> WeightsEntry:
    """The entry called ``name``; an unknown name raises a ValueError listing the available ones."""
    entries = _registry()
    if name not in entries:
        raise ValueError(f"unknown weights {name!r}; available weights: {', '.join(sorted(entries))} "
                         "(or None, 'auto', 'imagenet', or a path to a state dict)")
    return entries[name]


# ------------------------------------------------------------------------------------------- local files
def weights_dirs() -> list[pathlib.Path]:
    """The folders searched for weights files, in order (see the module docstring)."""
    dirs: list[pathlib.Path] = []
    for part in os.environ.get("DEPTHLIB_WEIGHTS", "").split(os.pathsep):
        if part:
            dirs.append(pathlib.Path(part).expanduser())
    if os.environ.get("DEPTHLIB_SHARED"):
        dirs.append(pathlib.Path(os.environ["DEPTHLIB_SHARED"]).expanduser() / "weights")
    cwd = pathlib.Path.cwd().resolve()
    source_tree = pathlib.Path(__file__).resolve().parents[2]  # above the package: a checkout or editable install
    for base in (cwd, *cwd.parents, source_tree, source_tree.parent):
        dirs += [base / "data" / "weights", base / "shared" / "weights"]
    return list(dict.fromkeys(dirs))


@functools.lru_cache(maxsize=32)
def _sha256(path: str, size: int, mtime: float) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def find_weights_file(filename: str, *, sha256: str | None = None) -> pathlib.Path | None:
    """The first ``filename`` in :func:`weights_dirs` (whose sha256 matches, when given), or ``None``.

    A file of the right name but the wrong checksum is skipped with a warning naming it: a truncated
    download must not silently initialise a network.
    """
    import warnings

    for folder in weights_dirs():
        path = folder / filename
        if not path.is_file():
            continue
        if sha256 is not None:
            stat = path.stat()
            got = _sha256(str(path), stat.st_size, stat.st_mtime)
            if got != sha256:
                warnings.warn(f"weights file {path} has sha256 {got[:16]}..., expected {sha256[:16]}...: skipped",
                              stacklevel=2)
                continue
        return path.resolve()
    return None


# ------------------------------------------------------------------------------------------- resolution
_FILE_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors", ".ckpt", ".tar")

def resolve_weights(encoder: str, weights: Any) -> WeightsEntry | None:
    """What ``weights=`` means for ``encoder``, as one entry (or ``None``: random initialisation).

    - ``None`` or ``"none"``: random initialisation.
    - a :class:`WeightsEntry` or its name: that entry (it must fit ``encoder``).
    - ``"auto"``: the best weights available locally: the converted file, else torchvision's/timm's ImageNet
      weights when already in their cache, else ``None`` (random).
    - ``"imagenet"``: the converted file when present, else torchvision's/timm's ImageNet weights (which need
      internet or a populated cache and fail at once with a clear message otherwise).
    - a path (``str`` or ``os.PathLike``): that state dict; when its name and checksum are a registered file
      entry's, that entry; else an entry of source ``"path"`` expecting ImageNet normalisation (pass
      ``normalization=`` to :func:`~depthlib.models.create_model` when it does not). For a timm ViT encoder
      (source ``"timm-vit"``, where the file is a ``timm.create_model(arch)`` state dict) the path entry
      expects the normalisation of timm's pretrained config instead (mean = std = 0.5 for these ViTs), as its
      ``"imagenet"`` entry does.

    Raises:
        ValueError: an unknown name (listing the available ones), or an entry of another encoder.
        FileNotFoundError: a path that does not exist.
    """
    from depthlib.models.encoders import _resolve

    key = _resolve(encoder)
    if weights is None or weights == "none":
        return None
    if isinstance(weights, WeightsEntry):
        entry = weights
    elif isinstance(weights, str) and weights in ("auto", "imagenet"):
        own = [e for e in _registry().values() if e.encoder == key]
        files = [e for e in own if e.source == "file" and e.local_path() is not None]
        if files:
            return files[0]
        library = [e for e in own if e.source in ("torchvision", "timm")]
        if weights == "imagenet":
            if not library:
                raise ValueError(f"no ImageNet weights for encoder {key!r} are available here or from a library; "
                                 f"its entries: {list_weights(key) or 'none'}")
            return library[0]
        cached = [e for e in library if e.local_path() is not None]
        return cached[0] if cached else None
    elif isinstance(weights, str) and weights in _registry():
        entry = _registry()[weights]
    elif isinstance(weights, (str, os.PathLike)):
        path = pathlib.Path(weights).expanduser()
        if not path.is_file():
            if isinstance(weights, str) and os.sep not in weights and path.suffix not in _FILE_SUFFIXES:
                get_weights(weights)  # raises, listing the available names
            raise FileNotFoundError(f"weights file {str(path)!r} does not exist")
        for e in _FILE_ENTRIES:
            if e.filename == path.name and e.encoder == key:
                stat = path.stat()
                if _sha256(str(path.resolve()), stat.st_size, stat.st_mtime) == e.sha256:
                    return dataclasses.replace(e, source="path", filename=str(path.resolve()))
        from depthlib.models.encoders import _SPECS

        library = _registry().get(f"{key}.imagenet")
        if _SPECS[key].source == "timm-vit" and library is not None:
            # a timm ViT state dict: it expects what timm's weights of that ViT expect (0.5/0.5), not ImageNet's
            return WeightsEntry(f"file:{path.name}", key, "path", str(path.resolve()), mean=library.mean,
                                std=library.std, meta={"note": "a user-given timm ViT state dict; assumed to expect "
                                                               "timm's normalisation of that ViT"})
        return WeightsEntry(f"file:{path.name}", key, "path", str(path.resolve()),
                            meta={"note": "a user-given state dict; assumed to expect ImageNet normalisation"})
    else:
        raise ValueError(f"weights must be None, a WeightsEntry or its name, 'auto', 'imagenet' or a path; "
                         f"got {weights!r}")
    if entry.encoder != key:
        raise ValueError(f"weights {entry.name!r} are for encoder {entry.encoder!r}, not {key!r}")
    return entry


def weights_spec(weights: Any, encoders: Any = None) -> dict[str, Any]:
    """What ``weights`` resolves to for each encoder (default: every encoder with a weights entry), as JSON:
    part of a cache key, so that a result trained from random init is not reused once weights appear
    locally (a converted file, or torchvision's/timm's weights in their caches), nor the other way round."""
    if encoders is None:
        encoders = sorted({e.encoder for e in _registry().values()})
    out = {}
    for enc in encoders:
        entry = resolve_weights(enc, weights) if not isinstance(weights, WeightsEntry) else weights
        out[enc] = None if entry is None else {"name": entry.name, "sha256": entry.sha256, "source": entry.source}
    return {"setting": weights if isinstance(weights, (str, type(None))) else str(weights), "resolved": out}


def describe_weights(weights: Any) -> str:
    """The encoders' initialisation in words, for the provenance column of reproduced numbers.

    Example: ``"init: ImageNet (TFLite-converted file) for mobilenet_v1, mobilenet_v2; random otherwise"``.
    """
    if weights in (None, "none"):
        return "init: random"
    if weights not in ("auto", "imagenet"):
        return f"init: {getattr(weights, 'name', weights)}"
    resolved = weights_spec(weights)["resolved"]
    local = sorted(enc for enc, e in resolved.items() if e is not None and e["source"] == "file")
    library = sorted(enc for enc, e in resolved.items() if e is not None and e["source"] != "file")
    if weights == "imagenet":
        library, rest = [], "ImageNet (torchvision/timm weights)"
    else:
        rest = "random"
    parts = []
    if local:
        parts.append(f"ImageNet (TFLite-converted file) for {', '.join(local)}")
    if library:
        parts.append(f"ImageNet (torchvision/timm, from the local cache) for {', '.join(library)}")
    if not parts:
        return f"init: {rest}"
    return f"init: {'; '.join(parts)}; {rest} otherwise"

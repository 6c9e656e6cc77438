"""Readers of the studies' dataset formats, protocol transforms and a procedural RGB-D scene generator.

One entry point, :func:`open_dataset`, returns a :class:`torch.utils.data.Dataset` of sample dicts:

- ``"image"``: ``(3, H, W)`` float32 RGB in [0, 1];
- ``"depth"``: ``(1, H, W)`` float32 metres, 0 where invalid;
- ``"mask"``: ``(1, H, W)`` bool, valid pixels;
- ``"path"``: source file (``synth:<scene>:<seed>:<index>`` for generated samples);
- ``"intrinsics"``: ``(4,)`` float32 ``[fx, fy, cx, cy]`` in pixels of the returned image (NaN when unknown);
- DIW, ReDWeb (and ``synth`` with ``pairs=K``): ``"pairs"`` ``(K, 4)`` long ``[yA, xA, yB, xB]`` and
  ``"relation"`` ``(K,)`` long, ``sign(depth_A - depth_B)`` (checked by :func:`check_ordinal`);
- ReDWeb: ``"relative"`` ``(1, H, W)`` float32 relative disparity in [0, 1] (larger = closer) and
  ``"relative_mask"`` ``(1, H, W)`` bool; Mannequin Challenge: ``"depth"`` up to an unknown scale.

The procedural stand-ins of DIW, ReDWeb, Mannequin Challenge and NYU for the ordinal chapter:
:func:`relative_standin`; that chapter's data: :func:`relative_chapter_data`.

With ``transform=None`` samples are at native resolution and native values. Units and conventions of every
format: ``data/README.md``.
"""

from __future__ import annotations

from typing import Any, Callable

from torch.utils.data import Dataset

from ._common import DataFormatError, check_ordinal
from .chapters import RELATIVE_SETS, TRAIN_SETS, chapter_data, relative_chapter_data
from .diw import DIW
from .kitti import KITTIDepth
from .mai2021 import MAI2021
from .mannequin import MannequinChallenge
from .nyu import NYUH5, NYULabeled, NYUPng
from .redweb import ReDWeb
from .relative import relative_standin
from .synth import SynthDataset

__all__ = ["DataFormatError", "open_dataset", "list_datasets", "chapter_data", "TRAIN_SETS", "check_ordinal",
           "relative_standin", "relative_chapter_data", "RELATIVE_SETS"]

_KINDS: dict[str, tuple[type, str]] = {
    "nyu_h5": (NYUH5, "NYU Depth v2, FastDepth's h5 tree root/{train,val}/<scene>/<n>.h5"),
    "nyu_labeled": (NYULabeled, "NYU Depth v2 labeled subset, nyu_depth_v2_labeled.mat (+ splits.mat)"),
    "nyu_png": (NYUPng, "NYU Depth v2, DenseDepth's nyu_data layout (data/nyu2_{train,test}.csv)"),
    "kitti": (KITTIDepth, "KITTI depth benchmark ground truth + raw RGB"),
    "diw": (DIW, "Depth in the Wild ordinal pairs"),
    "mai2021": (MAI2021, "MAI-2021 challenge rgb/ + depth/ (16-bit mm)"),
    "redweb": (ReDWeb, "ReDWeb_V1 web stereo: Imgs/*.jpg + RDs/*.png 8-bit relative disparity, sampled pairs"),
    "mannequin": (MannequinChallenge, "Mannequin Challenge frames + user-reconstructed MVS depth (up to scale)"),
    "synth": (SynthDataset, "procedural indoor/outdoor RGB-D scenes (no root needed)"),
}


def list_datasets() -> list[str]:
    """Names accepted by :func:`open_dataset`."""
    return list(_KINDS)


def open_dataset(kind: str, root=None, split: str = "train", transform: Callable[[dict], dict] | None = None,
                 **options: Any) -> Dataset:
    """Open a dataset of one of the studies' formats, or the procedural generator.

    Args:
        kind: one of :func:`list_datasets`.
        root: the dataset folder (or file for ``nyu_labeled``); unused by ``synth``.
        split: the kind's split name: ``"train"``/``"val"`` (``nyu_h5``, ``kitti``), ``"train"``/``"test"``
            (``nyu_png``, ``diw``), ``"train"``/``"all"``/``"fit"``/``"val"`` (``redweb``), ``"train"``/``"validation"``/
            ``"test"`` (``mannequin``), ``"train"``/``"test"``/``"all"`` (``nyu_labeled``, official 795/654 split or
            all 1449 frames), a sub-folder name (``mai2021``), ``"train"``/``"val"``/``"test"`` streams (``synth``).
        transform: ``sample -> sample`` callable, e.g. :func:`depthlib.data.transforms.fastdepth_val_transform`.
        **options: per-kind options (``eval_crop``, ``max_depth``, ``on_missing``, ``n``, ``size``, ...), see
            each reader's docstring.

    Returns:
        a Dataset whose items are sample dicts (see the module docstring).

    Raises:
        ValueError: unknown kind, split or option value. FileNotFoundError: a missing root or file.
        DataFormatError: a file whose content does not match its format.
    """
    if kind not in _KINDS:
        raise ValueError(f"open_dataset: unknown kind {kind!r}; available: {list_datasets()}")
    cls = _KINDS[kind][0]
    kwargs: dict[str, Any] = dict(options, split=split)
    if kind == "synth":
        if root is not None:
            raise ValueError("open_dataset('synth') takes no root; write files with `depthlib synth --out DIR`")
        try:
            return cls(transform=transform, **kwargs)
        except TypeError as err:
            if "unexpected keyword argument" not in str(err):
                raise
            raise ValueError(f"open_dataset('synth'): {err}") from None
    try:
        return cls(root, transform=transform, **kwargs)
    except TypeError as err:
        if "unexpected keyword argument" not in str(err):
            raise
        # An unknown option: say which kind refused it instead of a bare signature error.
        raise ValueError(f"open_dataset({kind!r}): {err}") from None

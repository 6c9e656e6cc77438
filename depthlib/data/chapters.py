"""The training and evaluation sets a chapter's profile names, assembled from :func:`depthlib.data.open_dataset`.

Procedural scenes are rendered once and held in memory (through the ``cache`` the caller gives: the book passes
:func:`depthlib.book.cached`), the real NYU test pairs are added as an evaluation set when present, and the NYU
trees of the paper profile are read lazily.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset

__all__ = ["TRAIN_SETS", "chapter_data"]

#: ``cache(key, spec, fn)``: returns ``fn()``, possibly stored under ``(key, spec)``.
Cache = Callable[[str, Any, Callable[[], Any]], Any]

#: Training sets :func:`chapter_data` knows, with the evaluation set that goes with each.
TRAIN_SETS = {
    "synth": "procedural indoor scenes (depthlib.data.synth), rendered at the training size",
    "nyu_h5": "FastDepth's NYU Depth v2 h5 tree (root/train, root/val), FastDepth's transforms",
    "nyu_labeled": "the 1449-image NYU labeled subset (sagar2021's ablations), train/test split of splits.mat",
}


def _materialize(dataset: Dataset) -> list[dict[str, Any]]:
    keep = ("image", "depth", "mask", "path")
    return [{k: v for k, v in dataset[i].items() if k in keep} for i in range(len(dataset))]


def _synth_samples(split: str, n: int, size: Sequence[int], seed: int, scene: str, cache: Cache | None
                   ) -> list[dict[str, Any]]:
    from depthlib.data import open_dataset

    spec = {"split": split, "n": int(n), "size": [int(size[0]), int(size[1])], "seed": int(seed), "scene": scene}

    def render() -> dict[str, Any]:
        samples = _materialize(open_dataset("synth", split=split, n=int(n), size=tuple(size), seed=int(seed),
                                            scene=scene))
        return {"image": torch.stack([s["image"] for s in samples]), "depth": torch.stack([s["depth"] for s in samples]),
                "mask": torch.stack([s["mask"] for s in samples]), "path": [s["path"] for s in samples]}

    # rendering is the slow part of a quick run (tenths of a second per frame): once per spec and code version
    stacked = cache("data/synth", spec, render) if cache is not None else render()
    return [{"image": stacked["image"][i], "depth": stacked["depth"][i], "mask": stacked["mask"][i],
             "path": stacked["path"][i]} for i in range(len(stacked["path"]))]


def chapter_data(train: str, *, size: Sequence[int], n_train: int, n_val: int, seed: int = 0,
                 train_root: Any = None, nyu_root: Any = None, scene: str = "indoor",
                 cache: Cache | None = None) -> dict[str, Any]:
    """The training set and the evaluation sets of a chapter, as its profile describes them.

    Args:
        train: one of :data:`TRAIN_SETS`: ``"synth"`` (quick and smoke profiles), ``"nyu_h5"`` or
            ``"nyu_labeled"`` (paper profile).
        size: ``(H, W)`` of the network input, for training and evaluation (multiples of 32 for FastDepth).
        n_train, n_val: number of training and validation samples; ``0`` means the whole split (real data).
        seed: the procedural data's seed (the data stays fixed while the runs' seeds vary).
        train_root: the dataset root for ``nyu_h5`` / ``nyu_labeled``.
        nyu_root: DenseDepth's ``nyu_data`` folder (the real NYU test pairs) or ``None``; when given, its
            test split becomes the evaluation set ``"nyu"``, through FastDepth's validation transform.
        scene: the procedural scene kind.
        cache: ``cache(key, spec, fn) -> value`` storing the rendered procedural scenes (the book passes
            :func:`depthlib.book.cached`); ``None`` renders them every time.

    Returns:
        ``{"train": Dataset, "evaluations": {name: Dataset}, "primary": name of the evaluation set the
        chapter reports (``"nyu"`` when present), "describe": str for the ``data`` column of
        the reproduced numbers, "spec": the JSON description, for cache keys}``.
        Procedural and small real sets are held in memory; the large NYU trees are read lazily.

    Raises:
        ValueError: an unknown ``train``; FileNotFoundError: a missing root (from :func:`open_dataset`).
    """
    from depthlib.data import open_dataset
    from depthlib.data.transforms import fastdepth_train_transform, fastdepth_val_transform

    if train not in TRAIN_SETS:
        raise ValueError(f"chapter_data: train={train!r} is not one of {list(TRAIN_SETS)}")
    size = (int(size[0]), int(size[1]))
    evaluations: dict[str, Dataset] = {}
    parts = []

    def head(ds: Dataset, n: int) -> Dataset:
        return torch.utils.data.Subset(ds, range(min(n, len(ds)))) if n else ds

    if train == "synth":
        train_set = _synth_samples("train", n_train, size, seed, scene, cache)
        evaluations["synth"] = _synth_samples("val", n_val, size, seed, scene, cache)
        parts.append(f"train: synth {scene} {len(train_set)} @{size[0]}x{size[1]} (data seed {seed}); "
                     f"eval: synth val {n_val}")
    else:
        # the real training sets, each evaluated on its own held-out split (FastDepth's val, the labeled test)
        title, eval_split = {"nyu_h5": ("NYU h5", "val"), "nyu_labeled": ("NYU labeled", "test")}[train]
        name = f"{train}_{eval_split}"
        train_set = head(open_dataset(train, train_root, split="train",
                                      transform=fastdepth_train_transform(size)), n_train)
        evaluations[name] = head(open_dataset(train, train_root, split=eval_split,
                                              transform=fastdepth_val_transform(size)), n_val)
        parts.append(f"train: {title} {len(train_set)} @{size[0]}x{size[1]}; eval: {title} {eval_split} "
                     f"{len(evaluations[name])}")
    if nyu_root is not None:
        evaluations["nyu"] = _materialize(open_dataset("nyu_png", nyu_root, split="test",
                                                       transform=fastdepth_val_transform(size)))
        parts.append(f"NYU test {len(evaluations['nyu'])} real pairs")
    primary = "nyu" if "nyu" in evaluations and train == "synth" else next(iter(evaluations))
    spec = {"train": train, "size": list(size), "n_train": int(n_train), "n_val": int(n_val), "seed": int(seed),
            "scene": scene, "train_root": str(train_root) if train_root is not None else None,
            "nyu": len(evaluations["nyu"]) if "nyu" in evaluations else 0}
    return {"train": train_set, "evaluations": evaluations, "primary": primary, "describe": ", ".join(parts),
            "spec": spec}

"""The training and evaluation sets a chapter's profile names, assembled from :func:`depthlib.data.open_dataset`.

Procedural scenes are rendered once and held in memory (through the ``cache`` the caller gives: the book passes
:func:`depthlib.book.cached`), the real NYU test pairs are added as an evaluation set when present, and the NYU
trees of the paper profile are read lazily.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import hashlib
import json
import os
import pathlib
import tempfile

import torch
from torch.utils.data import Dataset

__all__ = ["TRAIN_SETS", "chapter_data", "synth_mai2021_root", "RELATIVE_SETS", "relative_chapter_data"]

#: ``cache(key, spec, fn)``: returns ``fn()``, possibly stored under ``(key, spec)``.
Cache = Callable[[str, Any, Callable[[], Any]], Any]

#: Training sets :func:`chapter_data` knows, with the evaluation set that goes with each.
TRAIN_SETS = {
    "synth": "procedural indoor scenes (depthlib.data.synth), rendered at the training size",
    "nyu_h5": "FastDepth's NYU Depth v2 h5 tree (root/train, root/val), FastDepth's transforms",
    "nyu_labeled": "the 1449-image NYU labeled subset (sagar2021's ablations), train/test split of splits.mat",
    "mai2021": "the MAI-2021 challenge training data (root/train or root: rgb/ + depth/), a seeded train/val split",
    "synth_mai2021": "procedural scenes written in the MAI-2021 layout (root/train, root/val) and read back with "
                     "open_dataset('mai2021')",
}

#: Splits of this many samples or fewer are read once and held in memory (a quick profile's 480x640 frames).
IN_MEMORY = 256


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


def synth_mai2021_root(root: Any, *, n_train: int, n_val: int, size: Sequence[int], seed: int,
                       scene: str = "indoor") -> pathlib.Path:
    """Procedural frames written once in the MAI-2021 layout under ``root/<spec hash>`` and that folder returned.

    ``<folder>/train`` holds ``n_train`` frames and ``<folder>/val`` ``n_val`` (different procedural sequences),
    written by :func:`depthlib.data.writer.write_mai2021`; ``<folder>/spec.json``, written last and atomically,
    marks a complete dataset, so a second call (or a re-run of a chapter) reads what is there and a folder a
    killed run left incomplete is rewritten. Nothing outside ``root/<spec hash>`` is touched.

    Args:
        root: parent folder (a chapter passes its cache folder). n_train, n_val: frames (>= 1).
        size: ``(H, W)`` of the frames (MAI: 480x640). seed, scene: the procedural sequence.
    """
    from .writer import write_mai2021

    spec = {"layout": "mai2021", "n_train": int(n_train), "n_val": int(n_val), "size": [int(size[0]), int(size[1])],
            "seed": int(seed), "scene": scene, "version": 2}
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]
    folder = pathlib.Path(root) / f"mai2021-{spec['size'][0]}x{spec['size'][1]}-{digest}"
    marker = folder / "spec.json"
    if marker.is_file():
        return folder
    # no marker: nothing, or what a killed run left; the folder is this spec's alone, so rewriting it is safe
    for split, n in (("train", n_train), ("val", n_val)):
        write_mai2021(folder, n, tuple(size), seed, scene, split, overwrite=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".spec.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(spec, f, indent=1)
    os.replace(tmp, marker)
    return folder


def _mai2021_split(root: Any, n_train: int, n_val: int, seed: int, transform: Any) -> tuple[Dataset, Dataset]:
    """The real MAI-2021 data split into training and validation sets.

    zhang2021 split the 7385 training pairs into 7000 and 385 but did not publish which: the ``n_val``
    validation pairs here are the first of a permutation seeded with ``seed``, the training pairs the rest
    (headed to ``n_train`` when it is not 0). A root with its own ``val`` folder is used as it is.
    """
    from depthlib.data import open_dataset

    root = pathlib.Path(root)
    if (root / "val" / "rgb").is_dir():
        train_set, val_set = (open_dataset("mai2021", root, split=s, transform=transform) for s in ("train", "val"))
        return (torch.utils.data.Subset(train_set, range(min(n_train, len(train_set)))) if n_train else train_set,
                torch.utils.data.Subset(val_set, range(min(n_val, len(val_set)))) if n_val else val_set)
    full = open_dataset("mai2021", root, split="train", transform=transform)
    if not 0 < n_val < len(full):
        raise ValueError(f"chapter_data('mai2021'): n_val={n_val} must be between 1 and {len(full) - 1} "
                         f"(the {len(full)} pairs in {root} are split into training and validation)")
    order = torch.randperm(len(full), generator=torch.Generator().manual_seed(int(seed))).tolist()
    val_idx, train_idx = order[:n_val], order[n_val:]
    if n_train:
        train_idx = train_idx[:n_train]
    return torch.utils.data.Subset(full, train_idx), torch.utils.data.Subset(full, val_idx)


def chapter_data(train: str, *, size: Sequence[int], n_train: int, n_val: int, seed: int = 0,
                 train_root: Any = None, nyu_root: Any = None, scene: str = "indoor",
                 cache: Cache | None = None) -> dict[str, Any]:
    """The training set and the evaluation sets of a chapter, as its profile describes them.

    Args:
        train: one of :data:`TRAIN_SETS`: ``"synth"`` (quick and smoke profiles), ``"nyu_h5"`` or
            ``"nyu_labeled"`` (paper profile); ``"synth_mai2021"`` (procedural frames written in the MAI layout
            under ``train_root`` by :func:`synth_mai2021_root` and read back with the real reader) or
            ``"mai2021"`` (the challenge data in ``train_root``). The MAI sets keep their frames at ``size``
            through a plain resize (:func:`~depthlib.data.transforms.mai2021_transform`, no augmentation:
            zhang2021 names none), evaluated as ``"mai2021_val"``, and so do the real NYU pairs with them.
        size: ``(H, W)`` of the network input, for training and evaluation (multiples of 32 for FastDepth).
        n_train, n_val: number of training and validation samples; ``0`` means the whole split (real data).
        seed: the procedural data's seed (the data stays fixed while the runs' seeds vary).
        train_root: the dataset root for ``nyu_h5`` / ``nyu_labeled`` / ``mai2021``; for ``synth_mai2021`` the
            folder under which the frames are written.
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
    from depthlib.data.transforms import fastdepth_train_transform, fastdepth_val_transform, mai2021_transform

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
    elif train in ("mai2021", "synth_mai2021"):
        if train_root is None:
            raise ValueError(f"chapter_data({train!r}): train_root is required (the "
                             + ("folder to write the frames under" if train == "synth_mai2021" else "MAI-2021 root")
                             + ")")
        resize = mai2021_transform(size)
        if train == "synth_mai2021":
            folder = synth_mai2021_root(train_root, n_train=n_train, n_val=n_val, size=size, seed=seed, scene=scene)
            train_set, val_set = (open_dataset("mai2021", folder, split=s, transform=resize) for s in ("train", "val"))
            title = f"synth {scene} in the MAI layout (data seed {seed})"
        else:
            train_set, val_set = _mai2021_split(train_root, n_train, n_val, seed, resize)
            title = "MAI-2021"
        train_set = _materialize(train_set) if len(train_set) <= IN_MEMORY else train_set
        evaluations["mai2021_val"] = _materialize(val_set) if len(val_set) <= IN_MEMORY else val_set
        parts.append(f"train: {title} {len(train_set)} @{size[0]}x{size[1]}; eval: {title} val "
                     f"{len(evaluations['mai2021_val'])}")
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
        # FastDepth's centre crop for the NYU chapters; the MAI ones take whole 480x640 frames, as the challenge
        nyu_transform = mai2021_transform(size) if "mai2021" in train else fastdepth_val_transform(size)
        evaluations["nyu"] = _materialize(open_dataset("nyu_png", nyu_root, split="test", transform=nyu_transform))
        parts.append(f"NYU test {len(evaluations['nyu'])} real pairs")
    primary = "nyu" if "nyu" in evaluations and train == "synth" else next(iter(evaluations))
    spec = {"train": train, "size": list(size), "n_train": int(n_train), "n_val": int(n_val), "seed": int(seed),
            "scene": scene, "train_root": (None if train_root is None or train == "synth_mai2021" else str(train_root)),
            "nyu": len(evaluations["nyu"]) if "nyu" in evaluations else 0}
    return {"train": train_set, "evaluations": evaluations, "primary": primary, "describe": ", ".join(parts),
            "spec": spec}


#: Training sets of the ordinal-depth chapter (Yucel et al., CVPRW 2021): :func:`relative_chapter_data`.
RELATIVE_SETS = {
    "nyu": "NYU Depth v2 (metric): FastDepth's h5 tree (real) or synth indoor frames (stand-in)",
    "diw": "Depth in the Wild, one ordinal pair per image (real) or its synth stand-in",
    "redweb": "ReDWeb_V1 relative disparity + 3000 sampled pairs per image (real) or its synth stand-in",
    "mc": "Mannequin Challenge, MVS depth up to scale (real: user-reconstructed) or its synth stand-in",
}
#: The evaluation sets of the chapter: RMSE on NYU, WHDR on DIW, si-RMSE on MC (Yucel et al., Table 3).
RELATIVE_EVALUATIONS = ("nyu", "diw", "mc")


def _materialize_all(dataset: Dataset) -> list[dict[str, Any]]:
    """Every sample of a small dataset, read once, with all its keys (pairs, relative disparity, ...)."""
    return [dict(dataset[i]) for i in range(len(dataset))]


def relative_chapter_data(train_sets: Sequence[str], *, size: Sequence[int], n_train: int,
                          n_test: int | Mapping[str, int],
                          seed: int = 0, roots: dict[str, Any] | None = None, nyu_root: Any = None,
                          cache: Cache | None = None) -> dict[str, Any]:
    """The training sets and evaluation sets of the ordinal-depth chapter (Yucel et al., CVPRW 2021).

    Args:
        train_sets: names from :data:`RELATIVE_SETS` (``"nyu"``, ``"diw"``, ``"redweb"``, ``"mc"``), in training
            order (the paper's baseline trains MC -> ReDWeb -> DIW sequentially).
        size: ``(H, W)`` of every returned image, in pixels.
        n_train, n_test: samples per training set and per evaluation set; ``0`` means the whole split (real
            data only; the stand-ins need a count >= 1). ``n_test`` may name each evaluation set's count
            (``{"nyu": 64, "diw": 512, "mc": 64}``): one DIW image is one pair, so WHDR on 64 of them has a
            binomial error of about 0.06 on its own.
        seed: the data seed of the stand-ins (the data stays fixed while the runs' seeds vary).
        roots: ``None``: the procedural stand-ins of :func:`depthlib.data.relative.relative_standin` (quick
            profile). Else the real data (paper profile): ``{"nyu": FastDepth's h5 tree, "diw": the DIW
            release, "redweb": ReDWeb_V1, "mc": the reconstructed Mannequin Challenge tree}``; every training
            set must have its root, and the evaluations are those of ``"nyu"`` (h5 ``val``), ``"diw"``
            (``test``) and ``"mc"`` (``test``) whose root is given. NYU goes through FastDepth's transforms
            (``fastdepth_train_transform`` / ``fastdepth_val_transform``), the others through a plain resize
            to ``size`` (:func:`~depthlib.data.transforms.diw_transform`, which moves the pairs with the image).
        nyu_root: DenseDepth's ``nyu_data`` folder (the real NYU test pairs) or ``None``; when given, its test
            split is added as the evaluation ``"nyu_real"`` through FastDepth's validation transform, as in
            :func:`chapter_data`.
        cache: ``cache(key, spec, fn) -> value`` storing the rendered stand-ins (the book passes
            :func:`depthlib.book.cached`).

    Returns:
        ``{"train": {name: Dataset or list of samples, in training order}, "evaluations": {"nyu": ..., "diw":
        ..., "mc": ... [, "nyu_real": ...]}, "describe": one line (what is trained and evaluated on, sizes, data
        seed), "spec": JSON-able dict for cache keys}``. Stand-ins and small real sets (<= :data:`IN_MEMORY`
        samples) are held in memory; larger real sets are read lazily.

    Raises:
        ValueError: an unknown or repeated name in ``train_sets`` (naming it and the valid names), an empty
            ``train_sets``, an unknown key of ``roots`` or a training set without its root.
        FileNotFoundError: a missing root (from :func:`open_dataset`, saying how to get the data).
    """
    from depthlib.data import open_dataset
    from depthlib.data.transforms import diw_transform, fastdepth_train_transform, fastdepth_val_transform

    from .relative import relative_standin

    if isinstance(train_sets, str):
        train_sets = [train_sets]
    train_sets = list(train_sets)
    for name in train_sets:
        if name not in RELATIVE_SETS:
            raise ValueError(f"relative_chapter_data: unknown training set {name!r}; valid names: {list(RELATIVE_SETS)}")
    if not train_sets:
        raise ValueError(f"relative_chapter_data: train_sets is empty; name some of {list(RELATIVE_SETS)}")
    if len(set(train_sets)) != len(train_sets):
        raise ValueError(f"relative_chapter_data: train_sets={train_sets} names a set twice")
    if isinstance(n_test, Mapping):
        wrong = sorted(set(n_test) ^ set(RELATIVE_EVALUATIONS))
        if wrong:
            raise ValueError(f"relative_chapter_data: n_test={dict(n_test)!r} must name exactly the evaluation sets "
                             f"{list(RELATIVE_EVALUATIONS)} (wrong or missing: {wrong})")
        n_tests = {k: n_test[k] for k in RELATIVE_EVALUATIONS}
    else:
        n_tests = {k: n_test for k in RELATIVE_EVALUATIONS}
    for name, value in (("n_train", n_train), *((f"n_test[{k!r}]" if isinstance(n_test, Mapping) else "n_test", v)
                                               for k, v in n_tests.items())):
        if isinstance(value, bool) or not isinstance(value, int) or value < (1 if roots is None else 0):
            raise ValueError(f"relative_chapter_data: {name}={value!r} must be an int >= "
                             + ("1 for the stand-ins" if roots is None else "0 (0: the whole split)"))
    size = (int(size[0]), int(size[1]))
    at = f"@{size[0]}x{size[1]}"
    train: dict[str, Any] = {}
    evaluations: dict[str, Any] = {}

    def head(ds: Dataset, n: int) -> Dataset:
        return torch.utils.data.Subset(ds, range(min(n, len(ds)))) if n else ds

    def hold(ds: Dataset) -> Any:
        return _materialize_all(ds) if len(ds) <= IN_MEMORY else ds

    if roots is None:
        for name in train_sets:
            train[name] = relative_standin(name, split="train", n=n_train, size=size, seed=seed, cache=cache)
        for name in RELATIVE_EVALUATIONS:
            evaluations[name] = relative_standin(name, split="test", n=n_tests[name], size=size, seed=seed, cache=cache)
        kind = "stand-in"
        describe = (f"train: {' -> '.join(f'{n} stand-in {len(train[n])}' for n in train_sets)} {at} "
                    f"(synth, data seed {seed}); eval: "
                    + ", ".join(f"{n} stand-in {len(evaluations[n])}" for n in RELATIVE_EVALUATIONS))
    else:
        unknown = sorted(set(roots) - set(RELATIVE_SETS))
        if unknown:
            raise ValueError(f"relative_chapter_data: roots has unknown keys {unknown}; valid names: {list(RELATIVE_SETS)}")
        missing = [n for n in train_sets if roots.get(n) is None]
        if missing:
            raise ValueError(f"relative_chapter_data: no root for the training sets {missing} "
                             f"(roots={ {k: str(v) for k, v in roots.items()} })")
        resize = diw_transform(size)
        readers = {"nyu": ("nyu_h5", "train", "val"), "diw": ("diw", "train", "test"),
                   "redweb": ("redweb", "train", None), "mc": ("mannequin", "train", "test")}
        for name in train_sets:
            kind_name, split, _ = readers[name]
            transform = fastdepth_train_transform(size) if name == "nyu" else resize
            train[name] = hold(head(open_dataset(kind_name, roots[name], split=split, transform=transform), n_train))
        for name in RELATIVE_EVALUATIONS:
            if roots.get(name) is None:
                continue
            kind_name, _, split = readers[name]
            transform = fastdepth_val_transform(size) if name == "nyu" else resize
            evaluations[name] = hold(head(open_dataset(kind_name, roots[name], split=split, transform=transform),
                                          n_tests[name]))
        kind = "real"
        absent = [n for n in RELATIVE_EVALUATIONS if n not in evaluations]
        describe = (f"train: {' -> '.join(f'{n} {len(train[n])}' for n in train_sets)} {at}; eval: "
                    + ", ".join(f"{n} {len(evaluations[n])}" for n in evaluations)
                    + (f" (no root for {absent})" if absent else ""))
    if nyu_root is not None:
        evaluations["nyu_real"] = _materialize_all(open_dataset("nyu_png", nyu_root, split="test",
                                                                transform=fastdepth_val_transform(size)))
        describe += f", NYU test {len(evaluations['nyu_real'])} real pairs"
    spec = {"train_sets": train_sets, "data": kind, "size": list(size), "n_train": int(n_train),
            "n_test": {k: int(v) for k, v in n_tests.items()} if isinstance(n_test, Mapping) else int(n_test),
            "seed": int(seed),
            "roots": None if roots is None else {k: str(v) for k, v in sorted(roots.items()) if v is not None},
            "nyu_real": len(evaluations["nyu_real"]) if "nyu_real" in evaluations else 0}
    return {"train": train, "evaluations": evaluations, "describe": describe, "spec": spec}

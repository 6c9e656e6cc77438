"""Sequential training as one call (yucel2021's MC -> RedWeb -> DIW): :class:`Stage` and :func:`fit_sequence`."""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Sequence

import pandas as pd
from torch import nn
from torch.utils.data import Dataset

from .config import TrainConfig
from .distill import DistillTerm, TeacherCache

__all__ = ["Stage", "fit_sequence", "stage_dir_name"]


@dataclasses.dataclass
class Stage:
    """One stage of :func:`fit_sequence`: a :func:`depthlib.train.fit` call of its own.

    Args:
        name: the stage's name (``"mc"``, ``"redweb"``, ``"diw"``): non-empty, unique in the sequence, no ``"/"``
            or ``"\\\\"``; its folder is ``out_dir/<k>-<name>`` (``k`` 1-based, two digits) and its rows of the
            history have ``stage == name``.
        train_data: map-style dataset of sample dicts.
        config: the stage's recipe (loss, optimiser, schedule, epochs...): a fresh optimiser and schedule.
        val_data: optional validation dataset.
        distill: ``True``: this stage distils from ``fit_sequence``'s ``teacher`` with its ``distill`` terms
            (and ``teacher_cache``); ``False`` trains on the stage's data alone.
    """

    name: str
    train_data: Dataset
    config: TrainConfig
    val_data: Dataset | None = None
    distill: bool = False


def stage_dir_name(k: int, stage: Stage) -> str:
    """``"<k>-<name>"`` with ``k`` 1-based on two digits: stage 2 ``"redweb"`` trains in ``02-redweb``."""
    return f"{k:02d}-{stage.name}"


def fit_sequence(
    model: nn.Module,
    stages: Sequence[Stage],
    out_dir: str | os.PathLike | None = None,
    *,
    resume: bool = True,
    teacher: nn.Module | None = None,
    distill: list[DistillTerm] | None = None,
    teacher_cache: TeacherCache | None = None,
    stop_after: tuple[str, int] | None = None,
) -> pd.DataFrame:
    """Train ``model`` through ``stages`` one after the other (yucel2021, Table 3: MC -> RedWeb -> DIW).

    Each stage is one :func:`depthlib.train.fit` of the same model, in place: stage ``k`` starts from the final
    weights of stage ``k - 1``, with a fresh optimiser and schedule from its own ``config`` (and the seeding of
    that config); its checkpoint and history go to ``out_dir/<k>-<name>`` (:func:`stage_dir_name`).

    Resume: with ``out_dir`` and ``resume=True`` every stage resumes from its folder. A stage whose checkpoint
    has all its epochs done trains no epoch: ``fit`` restores its final weights and its history, and the next
    stage continues from them. So calling ``fit_sequence`` again after an interruption anywhere (a killed
    process, or ``stop_after``) continues bit-identically to a run that was never interrupted (each ``fit``
    reseeds everything when it starts). ``out_dir=None`` writes nothing and resumes nothing.

    Everything is checked before any training: the stages (a list of :class:`Stage`, names non-empty, unique,
    without ``"/"``; ``train_data`` a ``Dataset``; ``val_data`` ``None`` or a ``Dataset``; ``config`` a valid
    ``TrainConfig``), a teacher and terms for every ``distill=True`` stage, ``stop_after``.

    Args:
        model: the network, trained in place.
        stages: the :class:`Stage` list, in training order.
        out_dir: the sequence's folder, or ``None``.
        resume: resume every stage from its folder.
        teacher, distill, teacher_cache: the distillation of the stages with ``distill=True`` (as in ``fit``).
        stop_after: ``(stage name, epoch)``: stop after that (1-based) epoch of that stage, the later stages not
            started (a long sequence split into sessions; call again without it to continue).

    Returns:
        The stages' histories, one row per epoch, with the columns of ``fit`` plus ``stage`` (the stage's name)
        and ``global_epoch`` (1-based over the whole sequence; ``epoch`` restarts at 1 every stage). Columns a
        stage lacks (another loss's distillation terms) are NaN there. With rebalancing in some stages,
        ``df.attrs["rebalance"]`` holds their per-rebalance records with a ``stage`` column.

    Raises:
        ValueError: naming the stage, for the checks above (before any training); ``fit``'s own errors.
    """
    stages = list(stages) if isinstance(stages, (list, tuple)) else stages
    if not isinstance(stages, list) or not stages:
        raise ValueError(f"fit_sequence: stages must be a non-empty list of Stage, got {stages!r}")
    seen: set[str] = set()
    for k, st in enumerate(stages, 1):
        if not isinstance(st, Stage):
            raise ValueError(f"fit_sequence: stages[{k - 1}] must be a Stage, got {type(st).__name__}")
        if not isinstance(st.name, str) or not st.name.strip() or st.name in (".", ".."):
            raise ValueError(f"fit_sequence: stage {k} has no usable name ({st.name!r}): give it a non-empty name")
        if "/" in st.name or "\\" in st.name:
            raise ValueError(f"fit_sequence: stage {k} name {st.name!r} contains a path separator ('/' or '\\\\'); "
                             "it names the stage's folder")
        if st.name in seen:
            raise ValueError(f"fit_sequence: stage name {st.name!r} repeats (stage {k}); stage names must differ")
        seen.add(st.name)
        if not isinstance(st.train_data, (Dataset, list, tuple)):
            raise ValueError(f"fit_sequence: stage {st.name!r}: train_data must be a torch Dataset (or a list of "
                             f"sample dicts, as the chapters hold small sets in memory), got "
                             f"{type(st.train_data).__name__}")
        if st.val_data is not None and not isinstance(st.val_data, (Dataset, list, tuple)):
            raise ValueError(f"fit_sequence: stage {st.name!r}: val_data must be None or a torch Dataset, got "
                             f"{type(st.val_data).__name__}")
        if not isinstance(st.config, TrainConfig):
            raise ValueError(f"fit_sequence: stage {st.name!r}: config must be a TrainConfig, got "
                             f"{type(st.config).__name__}")
        try:
            st.config.validate()
        except ValueError as err:
            raise ValueError(f"fit_sequence: stage {st.name!r}: {err}") from None
        if not isinstance(st.distill, bool):
            raise ValueError(f"fit_sequence: stage {st.name!r}: distill must be True or False, got {st.distill!r}")
        if st.distill and (teacher is None or not distill):
            raise ValueError(f"fit_sequence: stage {st.name!r} has distill=True but fit_sequence got "
                             f"{'no teacher' if teacher is None else 'no distill terms'}: pass teacher=... and "
                             "distill=[DistillTerm(...)]")
    if stop_after is not None:
        if (not isinstance(stop_after, (tuple, list)) or len(stop_after) != 2 or stop_after[0] not in seen
                or isinstance(stop_after[1], bool) or not isinstance(stop_after[1], int) or stop_after[1] < 1):
            raise ValueError(f"fit_sequence: stop_after must be (a stage name of {sorted(seen)}, a positive epoch), "
                             f"got {stop_after!r}")
    from .loop import fit

    histories, rebalances = [], []
    done_epochs = 0
    for k, st in enumerate(stages, 1):
        folder = None if out_dir is None else pathlib.Path(out_dir) / stage_dir_name(k, st)
        stop = stop_after[1] if stop_after is not None and stop_after[0] == st.name else None
        kwargs = dict(teacher=teacher, distill=distill, teacher_cache=teacher_cache) if st.distill else {}
        hist = fit(model, st.train_data, st.val_data, st.config, folder, resume=resume, stop_after_epoch=stop,
                   **kwargs)
        rb = hist.attrs.get("rebalance")
        hist = hist.copy()
        hist.attrs = {}
        hist.insert(0, "stage", st.name)
        hist.insert(2, "global_epoch", done_epochs + hist["epoch"])
        histories.append(hist)
        if rb is not None and len(rb):
            rebalances.append(rb.assign(stage=st.name))
        done_epochs += len(hist)
        if stop is not None:
            break
    df = pd.concat(histories, ignore_index=True, sort=False)
    if rebalances:
        df.attrs["rebalance"] = pd.concat(rebalances, ignore_index=True, sort=False)
    return df

"""``fit`` and ``evaluate``: a plain PyTorch training loop, resumable bit for bit."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import pathlib
import time
import warnings
from collections.abc import Iterator
from typing import Any

import pandas as pd
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm.auto import tqdm

from . import _engine
from .checkpoint import (
    CHECKPOINT_NAME,
    FORMAT_VERSION,
    capture_rng,
    check_model_metadata,
    check_state_dict,
    dataset_fingerprint,
    load_checkpoint,
    model_metadata,
    nonfinite_entries,
    remove_stale_temporaries,
    restore_rng,
    save_atomic,
)
from .config import TrainConfig
from .distill import DistillTerm, Distiller, IndexedDataset, TeacherCache, check_arguments, check_resume
from .distributed import DistContext, setup_distributed, teardown_distributed
from .rebalance import Rebalancing

__all__ = ["fit", "evaluate", "NonFiniteLossError"]

logger = logging.getLogger("depthlib.train")

# Fields a resumed run may change without changing what is computed (or, for num_workers and
# device, changing only how; bit-identity then holds only with the same values).
_RESUME_MAY_CHANGE = frozenset({"epochs", "log_every", "progress", "num_workers", "device", "eval_batch_size",
                                "persistent_workers", "compile", "fused_optimizer"})


class NonFiniteLossError(FloatingPointError):
    """A NaN or infinite training loss (or gradient), or a model state that became non-finite during an
    epoch (BatchNorm running statistics can overflow while the loss stays finite); ``epoch`` (1-based),
    ``batch`` (0-based; ``None`` for the end-of-epoch state check) and ``paths`` (the batch's sample paths,
    when it has them) say where."""

    def __init__(self, message: str, *, epoch: int, batch: int | None, paths: list[str] | None) -> None:
        super().__init__(message)
        self.epoch = epoch
        self.batch = batch
        self.paths = paths


def fit(
    model: nn.Module,
    train_data: Dataset,
    val_data: Dataset | None = None,
    config: TrainConfig | None = None,
    out_dir: str | os.PathLike | None = None,
    *,
    resume: bool = True,
    stop_after_epoch: int | None = None,
    teacher: nn.Module | None = None,
    distill: list[DistillTerm] | None = None,
    teacher_cache: TeacherCache | None = None,
) -> pd.DataFrame:
    """Train ``model`` in place and return the history, one row per epoch.

    Samples are depthlib dicts (``"image"`` ``(3, H, W)`` in [0, 1] plus the loss's targets, e.g.
    ``"depth"`` ``(1, H, W)`` and ``"mask"`` ``(1, H, W)``; see ``TrainConfig.target_keys``). The model maps ``(B, 3, H, W)`` to
    ``(B, 1, H, W)``, or in training mode to ``{"depth": (B, 1, H, W), "aux": [(B, 1, h_i, w_i)]}``: the
    loss is then applied to every head (see :func:`depthlib.train._engine.compute_loss`) with
    ``config.aux_weights``; validation runs in ``model.eval()``.

    Determinism: torch, Python and NumPy are seeded with ``config.seed`` (+ rank under DDP) when ``fit``
    starts, the data order is ``DistributedSampler``'s permutation seeded with ``(config.seed, epoch)`` (the
    same permutation for 1 or N processes), worker RNGs derive from a seeded loader ``torch.Generator``
    (``seed_worker`` seeds their ``random``/``numpy``), and with ``config.deterministic`` the run uses
    ``torch.use_deterministic_algorithms``. The contract: two CPU runs of the same config **from the same
    initial weights** give identical results. ``fit`` does not choose the initial weights: the model's
    random initialisation happened in ``create_model``, from torch's global generator, before ``fit`` was
    called, so seed that too (``torch.manual_seed(config.seed)`` right before ``create_model``) or load the
    same weights; two runs whose models were built unseeded start apart and stay apart.

    Checkpoints: with ``out_dir``, after every epoch (validation included) ``out_dir/last.pt`` is
    written atomically with the model, optimiser, scheduler, GradScaler, epoch, history (list of
    dicts), config, every RNG state (as tensors, per rank), what the model is (``model_meta``: class,
    preset, overrides, weights entry) and what it was trained on (``data``: a fingerprint of
    ``train_data``), plus ``out_dir/history.csv``. The model and optimiser states are checked finite
    before each write (BatchNorm running statistics included): a diverged state is never written. With
    ``resume=True`` an existing ``last.pt`` is loaded (``weights_only=True``), checked against this
    call (config, model, dataset, ``epochs`` not below the epochs done) before the first sample is read,
    and training continues from the next epoch, bit-identically to a run that was never interrupted.
    Temporaries a killed checkpoint write left in ``out_dir`` are removed when ``fit`` starts.

    Distillation (issue 12): with a ``teacher`` and ``distill`` terms (:class:`depthlib.train.DistillTerm`:
    zhang2021's feature L2 at a layer pair with a learned 1x1 adapter where channel counts differ, yucel2021's
    pixel-wise RMSE on every prediction head and pair-wise affinity terms, Liu et al.'s holistic adversarial term)
    the objective is ``config.loss + sum_k weight_k * term_k``.
    The teacher is frozen **in place** (``eval()``, ``requires_grad_(False)``; it stays frozen after ``fit``),
    runs once per batch under ``torch.no_grad()`` on the student's input and never receives gradients; with a
    ``teacher_cache`` (:class:`depthlib.train.TeacherCache`, refused on randomly augmented data) its outputs
    are kept per sample across the ``fit`` calls of a seed sweep. Before the first step one probe sample
    (every RNG state restored afterwards) checks the teacher's device, the layer names (an unknown one lists
    the modules there are), the output and feature sizes, and sizes the adapters. Checkpoints hold the
    student and the adapters (``ckpt["model"]`` is the student's state dict alone, so ``load_checkpoint``
    loads it for deployment; ``ckpt["distill"]`` holds the terms, the adapters and the teacher's identity,
    not its weights); resume checks the terms and the teacher's weights hash and continues bit-identically.
    The history gains one column ``train_<term name>`` per term (unweighted, averaged over the samples; a
    ``pixel_rmse`` term's heads combined with the head weights) and, per ``"holistic"`` term, ``train_<name>_d``
    (its discriminator's hinge loss, averaged over the epoch's iterations that updated it; NaN when none did).
    A holistic term's discriminator, its Adam state and the global iteration counter are in ``ckpt["distill"]``.

    Loss rebalancing (``config.rebalance``, see :class:`~depthlib.train.TrainConfig`): the supervised loss
    (``"loss"``, or ``"loss/0"``, ``"loss/1"``, ... per head with ``wrap_aux=False``) and every non-holistic
    distillation term are weighted by a :class:`depthlib.losses.MultiLossRebalancer` (its weights replace
    ``DistillTerm.weight``; holistic terms keep theirs): the objective is ``sum_i w_i L_i (+ holistic terms)``,
    the weights updated ``per_epoch`` times an epoch from the mean losses since the last update. The
    rebalancer's state is checkpointed (``ckpt["rebalance"]``; resume is bit-identical). Recorded: the history's
    ``w_<term>`` columns (the weights at the end of each epoch), ``out_dir/rebalance.csv`` and the returned
    DataFrame's ``df.attrs["rebalance"]``, both a DataFrame with one row per rebalance: ``epoch`` (float, epochs
    completed: 0.2, 0.4, ... with 5 per epoch), ``lam``, ``w_<term>`` (after the update), ``loss_<term>`` (the
    period's mean).

    Distributed: inside an initialised process group or a ``torchrun`` launch the model is wrapped in
    ``DistributedDataParallel``, each process loads ``config.batch_size / world_size`` samples per step,
    validation runs on rank 0 and is broadcast, and only rank 0 writes checkpoints and shows progress.

    Args:
        model: the network; moved to ``config.device`` and trained in place.
        train_data: map-style dataset of sample dicts (not a DataLoader: fit owns sampling and seeding).
        val_data: optional dataset evaluated after every epoch with :func:`evaluate`.
        config: the recipe (default ``TrainConfig()``).
        out_dir: folder for ``last.pt`` and ``history.csv``; ``None`` writes nothing.
        resume: continue from ``out_dir/last.pt`` when it exists.
        stop_after_epoch: stop after this (1-based) epoch although the schedule spans
            ``config.epochs``: a long run split into sessions, resumed later.
        teacher: a frozen network to distil from (any ``nn.Module`` mapping ``(B, 3, H, W)`` to
            ``(B, 1, H, W)``), on the student's device; ``None`` trains without distillation.
        distill: the distillation terms (needs ``teacher``; a teacher needs at least one term).
        teacher_cache: a :class:`~depthlib.train.TeacherCache` to read and fill with the teacher's outputs per
            training sample (share one object across the runs of a sweep); ``None`` runs the teacher on every
            batch.

    Returns:
        DataFrame with columns ``epoch`` (1-based), ``lr`` (used during the epoch), ``train_loss`` (the
        optimised objective, heads weighted, averaged over the epoch's samples), ``val_<metric>`` for every metric of :func:`evaluate` (when
        ``val_data`` is given), ``images_per_s`` (training images per second, all processes) and
        ``time_s`` (epoch wall time, validation included); with distillation ``train_<term>`` (and
        ``train_<holistic>_d``), with rebalancing ``w_<term>`` and ``df.attrs["rebalance"]``. A resumed run whose
        checkpoint has all ``config.epochs`` done restores the model (its final weights) and returns the saved
        history without training.

    Raises:
        NonFiniteLossError: a NaN or infinite loss; names the epoch, batch and sample paths and leaves
            the last good checkpoint untouched.
        ValueError: an invalid config, an ``out_dir`` that is a file, or a checkpoint that does not
            match the model (another preset or overrides), the config, the dataset or the epochs; all
            raised before the first sample is read. With distillation, before the first step: terms without
            a teacher or a teacher without terms, a teacher that is the student, a teacher on another
            device, an unknown layer name, a teacher whose output size differs from the student's (pixel
            term) or features of another spatial size, a cache on randomly augmented data, a checkpoint
            written with other terms or another teacher.
    """
    cfg = TrainConfig() if config is None else config
    if not isinstance(cfg, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(cfg).__name__}")
    cfg.validate()
    if isinstance(train_data, DataLoader) or isinstance(val_data, DataLoader):
        raise TypeError(
            "fit takes datasets, not DataLoaders: it builds the loaders itself to control the sampling, "
            "the seeds and DDP (set TrainConfig.batch_size / num_workers instead)"
        )
    if stop_after_epoch is not None and (not isinstance(stop_after_epoch, int) or isinstance(stop_after_epoch, bool)
                                         or stop_after_epoch < 1):
        raise ValueError(f"stop_after_epoch must be a positive int or None, got {stop_after_epoch!r}")
    if out_dir is not None:
        _check_out_dir(pathlib.Path(out_dir))
    terms = check_arguments(model, teacher, distill, teacher_cache)
    ctx, device = setup_distributed(cfg.device)
    try:
        with _deterministic(cfg.deterministic, device), contextlib.ExitStack() as cleanup:
            distillation = None if terms is None else (teacher, terms, teacher_cache, cleanup)
            return _fit(model, train_data, val_data, cfg, out_dir, resume, stop_after_epoch, ctx, device,
                        distillation)
    finally:
        teardown_distributed(ctx)


def _fit(
    model: nn.Module,
    train_data: Dataset,
    val_data: Dataset | None,
    cfg: TrainConfig,
    out_dir: str | os.PathLike | None,
    resume: bool,
    stop_after_epoch: int | None,
    ctx: DistContext,
    device: torch.device,
    distillation: tuple[nn.Module, list[DistillTerm], TeacherCache | None, contextlib.ExitStack] | None = None,
) -> pd.DataFrame:
    if cfg.batch_size % ctx.world_size:
        raise ValueError(
            f"TrainConfig.batch_size={cfg.batch_size} (the global batch) is not divisible by the "
            f"{ctx.world_size} DDP processes"
        )
    _engine.seed_everything(cfg.seed + ctx.rank)
    model.to(device)
    speed = _engine.Speed(cfg, device, distributed=ctx.enabled)
    if speed.channels_last:
        model.to(memory_format=torch.channels_last)
    loss_fn = _engine.resolve_loss(cfg)
    keys = _engine.target_keys(cfg, loss_fn)
    data_fp = dataset_fingerprint(train_data)
    distiller = None
    loader_data = train_data
    if distillation is not None:
        teacher, terms, teacher_cache, cleanup = distillation
        if speed.compile and any(t.student_layer for t in terms):
            warnings.warn("TrainConfig.compile=True: not applied with distillation feature taps (forward hooks); "
                          "training eagerly", RuntimeWarning, stacklevel=3)
            speed.compile = False
        distiller = Distiller(
            model, teacher, terms, cache=teacher_cache, train_data=train_data, data_fingerprint=data_fp,
            device=device, channels_last=speed.channels_last,
            autocast=speed.autocast if speed.cpu_bf16 else (lambda: _engine.autocast(device, cfg.amp)),
            autocast_mode="cpu_bf16" if speed.cpu_bf16 else str(cfg.amp), seed=cfg.seed,
            prepare=lambda b: _engine.prepare_batch(b, device, cfg, ())[0])
        cleanup.callback(distiller.close)
        if teacher_cache is not None:
            loader_data = IndexedDataset(train_data)  # the cache's key: each sample's index
    # the adapters (if any) train with the student, in the same optimiser, after the student's parameters
    trained = model if distiller is None or not len(distiller.adapters) else nn.ModuleList([model, distiller.adapters])
    optimizer = _engine.build_optimizer(trained, cfg)
    scheduler = _engine.build_scheduler(optimizer, cfg)
    scaler = torch.amp.GradScaler(device.type) if cfg.amp == "fp16" else None

    # DistributedSampler also in a single process: its permutation depends only on (seed, epoch), so
    # one process with batch B sees exactly the global batches of W processes with B / W each.
    sampler = DistributedSampler(
        train_data, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=cfg.seed, drop_last=False
    )
    loader_gen = torch.Generator()
    loader_gen.manual_seed(cfg.seed + ctx.rank)
    loader = DataLoader(
        loader_data,
        batch_size=cfg.batch_size // ctx.world_size,
        sampler=sampler,
        num_workers=cfg.num_workers,
        worker_init_fn=_engine.seed_worker,
        generator=loader_gen,
        drop_last=cfg.drop_last,
        pin_memory=device.type == "cuda",
        persistent_workers=cfg.persistent_workers and cfg.num_workers > 0,
    )
    if len(loader) == 0:
        raise ValueError(
            f"train_data has {len(train_data)} samples: no batch of {cfg.batch_size // ctx.world_size} "
            f"per process with drop_last={cfg.drop_last}"
        )

    rebalancing = None
    if cfg.rebalance is not None:
        rebalancing = Rebalancing(cfg.rebalance, [] if distiller is None else
                                  [(n, t.kind) for n, t in zip(distiller.names, distiller.terms)], len(loader))

    ckpt_path = pathlib.Path(out_dir) / CHECKPOINT_NAME if out_dir is not None else None
    if ckpt_path is not None and ctx.is_main:
        for tmp in remove_stale_temporaries(ckpt_path):
            logger.warning("removed %s, left by a checkpoint write that was interrupted", tmp)
    history: list[dict[str, Any]] = []
    start_epoch = 0
    if resume and ckpt_path is not None and ckpt_path.is_file():
        # Restored last: nothing between here and the first batch may consume a random number.
        start_epoch, history = _restore(ckpt_path, cfg, ctx, model, optimizer, scheduler, scaler, loader_gen, data_fp,
                                        distiller, rebalancing)

    net: nn.Module = model
    if ctx.enabled:
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    end_epoch = cfg.epochs if stop_after_epoch is None else min(cfg.epochs, stop_after_epoch)
    eval_cfg = dataclasses.replace(cfg, device=str(device))  # cuda:LOCAL_RANK under DDP
    disable = _tqdm_disable(cfg.progress, ctx)
    for epoch in range(start_epoch, end_epoch):
        t0 = time.perf_counter()
        sampler.set_epoch(epoch)
        lr = optimizer.param_groups[0]["lr"]
        train_loss, n_images, train_time, terms_mean = _train_epoch(
            net, loader, optimizer, scaler, loss_fn, keys, cfg, ctx, device, epoch, disable, ckpt_path, len(history),
            speed, distiller, rebalancing,
        )
        _check_finite_state(model, optimizer, epoch, ckpt_path, len(history), ctx, device,
                            distiller.state_tensors() if distiller is not None else None)
        row: dict[str, Any] = {"epoch": epoch + 1, "lr": float(lr), "train_loss": train_loss}
        row.update({f"train_{name}": v for name, v in terms_mean.items()})
        if rebalancing is not None:
            row.update({f"w_{name}": w for name, w in rebalancing.weights().items()})
        if val_data is not None:
            metrics = None
            if ctx.is_main:
                try:
                    metrics = evaluate(model, val_data, eval_cfg, progress=cfg.progress)
                except ValueError as err:  # e.g. a diverged model's NaN predictions
                    raise ValueError(f"validation after epoch {epoch + 1} failed (no checkpoint written): {err}") from err
            metrics = ctx.broadcast(metrics)
            row.update({f"val_{k}": v for k, v in metrics.items()})
        if scheduler is not None:
            scheduler.step()
        row["images_per_s"] = n_images / train_time if train_time > 0 else math.nan
        row["time_s"] = time.perf_counter() - t0
        row = ctx.broadcast(row)
        history.append(row)
        rng = ctx.gather(capture_rng(loader_gen))
        if ctx.is_main:
            logger.info("epoch %d/%d %s", epoch + 1, cfg.epochs,
                        " ".join(f"{k}={v:.4g}" for k, v in row.items() if k != "epoch"))
            if ckpt_path is not None:
                ckpt = {
                    "format": FORMAT_VERSION,
                    "epoch": epoch + 1,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict() if scheduler is not None else None,
                    "scaler": scaler.state_dict() if scaler is not None else None,
                    "history": history,
                    "config": cfg.to_dict(),
                    "world_size": ctx.world_size,
                    "rng": rng,
                    "model_meta": model_metadata(model),
                    "data": data_fp,
                }
                if distiller is not None:
                    ckpt["distill"] = distiller.state_dict()
                if rebalancing is not None:
                    ckpt["rebalance"] = rebalancing.state_dict()
                save_atomic(ckpt, ckpt_path)
                _write_csv(pd.DataFrame(history), ckpt_path.parent / "history.csv")
                if rebalancing is not None:
                    _write_csv(rebalancing.history_frame(), ckpt_path.parent / "rebalance.csv")
        ctx.barrier()  # no rank starts an epoch that a crash of rank 0's checkpoint write would orphan
    df = pd.DataFrame(history)
    if rebalancing is not None:
        df.attrs["rebalance"] = rebalancing.history_frame()
    return df


def _train_epoch(
    net: nn.Module,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    loss_fn: _engine.LossFn,
    keys: tuple[str, ...],
    cfg: TrainConfig,
    ctx: DistContext,
    device: torch.device,
    epoch: int,
    disable: bool | None,
    ckpt_path: pathlib.Path | None,
    last_good_epoch: int,
    speed: _engine.Speed | None = None,
    distiller: Distiller | None = None,
    rebalancing: Rebalancing | None = None,
) -> tuple[float, int, float, dict[str, float]]:
    """One pass over ``loader``; returns (mean loss over all processes' samples, images, seconds, the mean of
    each distillation term by name and, as ``<name>_d``, of each holistic term's discriminator loss over the
    iterations that updated it)."""
    net.train()
    params = [p for p in net.parameters() if p.requires_grad]
    if distiller is not None:
        params += distiller.adapter_parameters
        term_sums = torch.zeros(len(distiller.terms), dtype=torch.float64, device=device)
    # delta1 of raw relative-depth predictions means nothing: the bar shows it for metric models only.
    metric_output = getattr(_unwrap(net), "output_kind", "metric") == "metric"
    split = rebalancing is not None and rebalancing.split
    holistic = distiller.holistic_names if distiller is not None else []
    holistic_w = {n: t.weight for n, t in zip(distiller.names, distiller.terms)} if distiller is not None else {}
    d_sums = {n: 0.0 for n in holistic}
    d_counts = {n: 0 for n in holistic}
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    count = 0
    t0 = time.perf_counter()
    bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch", disable=disable, leave=False)
    for i, batch in enumerate(bar):
        image, targets = _engine.prepare_batch(batch, device, cfg, keys)
        # the teacher (no_grad, eval mode) or its cached outputs; the student's feature taps record meanwhile
        teacher_out = distiller.teacher_outputs(batch, image) if distiller is not None else None
        with distiller.capturing() if distiller is not None else contextlib.nullcontext():
            if speed is not None and speed.cpu_bf16:
                # bf16 forward on the CPU; the loss (and its backward's first steps) in float32
                with speed.autocast():
                    output = speed.forward(net, image)
                loss, final, heads = _supervised(_engine.float_output(output), targets, loss_fn, cfg, split)
            else:
                with _engine.autocast(device, cfg.amp):
                    output = speed.forward(net, image) if speed is not None else net(image)
                    loss, final, heads = _supervised(output, targets, loss_fn, cfg, split)
        if rebalancing is None:
            if distiller is not None:  # float32, outside autocast; pixel_rmse on every head
                distill_loss, term_values = distiller.loss(output, teacher_out, image, aux_weights=cfg.aux_weights)
                loss = loss + distill_loss
                term_sums += term_values * image.shape[0]
        else:
            rebalancing.ensure(len(_engine.split_output(output)[1]))
            parts = {"loss": loss} if heads is None else {f"loss/{h}": v for h, v in enumerate(heads)}
            dparts: dict[str, torch.Tensor] = {}
            if distiller is not None:
                dparts, term_values = distiller.term_losses(output, teacher_out, image, aux_weights=cfg.aux_weights,
                                                            split_heads=split)
                parts.update(dparts)
                term_sums += term_values * image.shape[0]
            loss = rebalancing.objective(parts)
            for name in holistic:  # not rebalanced: the generator loss has no sign
                loss = loss + holistic_w[name] * dparts[name]
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
        else:
            loss.backward()
        if distiller is not None and ctx.enabled and len(distiller.adapters):
            distiller.all_reduce_adapter_grads(ctx.world_size)
        # Checked between backward and step, so a bad batch never reaches the weights.
        _check_finite(loss, params, scaler is not None, batch, epoch, i, ctx, ckpt_path, last_good_epoch)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        if rebalancing is not None:
            names = rebalancing.rebalancer.names  # type: ignore[union-attr]
            vals = torch.stack([parts[k].detach().double() for k in names])
            if ctx.enabled:  # every rank rebalances with the global means, so the weights stay equal
                torch.distributed.all_reduce(vals)
                vals /= ctx.world_size
            rebalancing.after_batch(dict(zip(names, vals.tolist())), i + 1, epoch)
        if distiller is not None:
            try:
                d_losses = distiller.update_discriminators(image, final.detach(), teacher_out, ctx.world_size)
            except FloatingPointError as err:
                paths = list(batch["path"]) if isinstance(batch.get("path"), (list, tuple)) else None
                raise NonFiniteLossError(f"training stopped at epoch {epoch + 1}, batch {i}: {err}", epoch=epoch + 1,
                                         batch=i, paths=paths) from None
            for name, v in d_losses.items():
                d_sums[name] += v
                d_counts[name] += 1
        bs = image.shape[0]
        loss_sum += loss.detach().double() * bs
        count += bs
        # delta1 is a metrics pass over the batch: only every log_every batches, only when shown.
        if not bar.disable and (i % cfg.log_every == 0 or i == len(loader) - 1):
            postfix = {"loss": f"{loss.item():.4f}"}
            d1 = _batch_delta1(final, batch, cfg, device) if metric_output else None
            if d1 is not None:
                postfix["delta1"] = f"{d1:.3f}"
            postfix["img/s"] = f"{count * ctx.world_size / (time.perf_counter() - t0):.1f}"
            bar.set_postfix(postfix)
    bar.close()
    if distiller is None:
        term_sums = torch.zeros(0, dtype=torch.float64, device=device)
    if ctx.enabled:
        totals = torch.cat([torch.stack([loss_sum, torch.tensor(float(count), dtype=torch.float64, device=device)]),
                            term_sums])
        torch.distributed.all_reduce(totals)
        loss_sum, total, term_sums = totals[0], int(totals[1].item()), totals[2:]
    else:
        total = count
    elapsed = time.perf_counter() - t0
    names = distiller.names if distiller is not None else []
    terms_mean = {n: float(v) / total for n, v in zip(names, term_sums.tolist())}
    terms_mean.update({f"{n}_d": d_sums[n] / d_counts[n] if d_counts[n] else math.nan for n in holistic})
    return float(loss_sum.item() / total), total, elapsed, terms_mean


def _supervised(output: Any, targets: tuple[Any, ...], loss_fn: _engine.LossFn, cfg: TrainConfig,
                split: bool) -> tuple[torch.Tensor | None, torch.Tensor, list[torch.Tensor] | None]:
    """``(weighted loss over the heads, final (B, 1, H, W), None)``, or with ``split`` (rebalancing every head)
    and auxiliary heads ``(None, final, [loss per head, unweighted])``."""
    if split and _engine.split_output(output)[1]:
        heads, final = _engine.head_losses(output, targets, loss_fn)
        if cfg.loss_weight != 1.0:
            heads = [cfg.loss_weight * h for h in heads]
        return None, final, heads
    loss, final = _engine.compute_loss(output, targets, loss_fn, cfg.aux_weights)
    if cfg.loss_weight != 1.0:
        loss = cfg.loss_weight * loss
    return loss, final, None


def _check_finite(
    loss: torch.Tensor,
    params: list[torch.Tensor],
    scaled: bool,
    batch: dict[str, Any],
    epoch: int,
    index: int,
    ctx: DistContext,
    ckpt_path: pathlib.Path | None,
    last_good_epoch: int,
) -> None:
    """Stop at a NaN/inf loss, or a finite loss with NaN/inf gradients, before the optimiser step.

    One device sync per step. Under DDP the gradients are already all-reduced, so a NaN loss on one rank
    makes every rank's gradients NaN and all ranks stop together, without a collective of their own;
    with a GradScaler (fp16) inf gradients are the scaler's business (it skips the step), so the loss
    flag is all-reduced instead.
    """
    loss_ok = torch.isfinite(loss.detach())
    if scaled:
        ok = loss_ok
        if ctx.enabled:
            ok = ok.to(torch.int32)
            torch.distributed.all_reduce(ok, op=torch.distributed.ReduceOp.MIN)
    else:
        grads = [p.grad for p in params if p.grad is not None]
        ok = loss_ok & torch.isfinite(torch.nn.utils.get_total_norm(grads)) if grads else loss_ok
    if bool(ok):
        return
    paths = list(batch["path"]) if isinstance(batch.get("path"), (list, tuple)) else None
    where = f"epoch {epoch + 1}, batch {index}" + (f" on rank {ctx.rank}" if ctx.enabled else "")
    if not bool(loss_ok):
        what = f"loss {loss.item()}"
    elif ctx.enabled:
        what = f"non-finite gradients (loss {loss.item():.6g} here; another rank's loss or gradients)"
    else:
        what = f"non-finite gradients from a finite loss ({loss.item():.6g})"
    if ckpt_path is None:
        kept = "no checkpoint is written (out_dir=None)"
    elif last_good_epoch > 0:
        kept = f"the last good checkpoint {ckpt_path} (epoch {last_good_epoch}) is left untouched"
    else:
        kept = f"no checkpoint was written yet to {ckpt_path}"
    samples = f" (samples: {', '.join(paths)})" if paths else ""
    raise NonFiniteLossError(
        f"training stopped: {what} at {where}{samples}; {kept}",
        epoch=epoch + 1,
        batch=index,
        paths=paths,
    )


def _batch_delta1(final: torch.Tensor, batch: dict[str, Any], cfg: TrainConfig, device: torch.device) -> float | None:
    """delta1 of a training batch for the progress bar (None without dense ground truth)."""
    if "depth" not in batch or "mask" not in batch or not bool(batch["mask"].any()):
        return None
    from depthlib.metrics import NegativeDepthWarning, depth_metrics

    try:
        with warnings.catch_warnings():  # a progress-bar number: the validation metrics warn about negatives
            warnings.simplefilter("ignore", NegativeDepthWarning)
            m = depth_metrics(
                final.detach().float(),
                batch["depth"].to(device),
                batch["mask"].to(device),
                max_depth=cfg.max_depth,
                min_depth=cfg.min_depth,
            )
    except ValueError:  # no pixel left inside (min_depth, max_depth]: nothing to show, not an error
        return None
    return float(m["delta1"])


def _restore(
    path: pathlib.Path,
    cfg: TrainConfig,
    ctx: DistContext,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    scaler: torch.amp.GradScaler | None,
    loader_gen: torch.Generator,
    data_fp: dict[str, Any],
    distiller: Distiller | None = None,
    rebalancing: Rebalancing | None = None,
) -> tuple[int, list[dict[str, Any]]]:
    ckpt = load_checkpoint(path)
    if ckpt.get("format") is None:
        raise ValueError(f"{path} is a plain state dict, not a checkpoint fit can resume from; "
                         "load it with load_checkpoint(path, model) and pass resume=False or another out_dir")
    _check_resume_config(ckpt["config"], cfg, path)
    if int(ckpt["epoch"]) > cfg.epochs:
        raise ValueError(
            f"{path} holds {ckpt['epoch']} trained epochs but TrainConfig.epochs={cfg.epochs}: a run cannot resume "
            "to fewer epochs than it has done; raise epochs, or pass resume=False / another out_dir to start over")
    check_model_metadata(ckpt.get("model_meta"), model, f"checkpoint {path}", weights=True)
    saved_fp = ckpt.get("data")
    if saved_fp is not None and saved_fp != data_fp:
        diffs = ", ".join(f"{k}: {saved_fp.get(k)!r} -> {data_fp.get(k)!r}"
                          for k in ("class", "len", "identity") if saved_fp.get(k) != data_fp.get(k))
        raise ValueError(
            f"{path} was trained on another dataset than this train_data ({diffs}); resume with the same "
            "training data, or pass resume=False / another out_dir to start over")
    check_resume(ckpt.get("distill"), distiller, f"checkpoint {path}")
    check_state_dict(model, ckpt["model"], f"checkpoint {path}")
    model.load_state_dict(ckpt["model"])
    if distiller is not None:
        distiller.load_state_dict(ckpt["distill"], f"checkpoint {path}")
    if rebalancing is not None:
        rebalancing.load_state_dict(ckpt.get("rebalance"), f"checkpoint {path}")
    optimizer.load_state_dict(ckpt["optimizer"])
    if scheduler is not None:
        scheduler.load_state_dict(ckpt["scheduler"])
    if scaler is not None and ckpt["scaler"] is not None:
        scaler.load_state_dict(ckpt["scaler"])
    rng = ckpt["rng"]
    if len(rng) == ctx.world_size:
        restore_rng(rng[ctx.rank], loader_gen)
    else:
        warnings.warn(
            f"{path} was written by {len(rng)} process(es), this run has {ctx.world_size}: the RNG states "
            "cannot be restored per rank, so the data order is kept but augmentations are reseeded and "
            "the run is not bit-identical to an uninterrupted one",
            stacklevel=3,
        )
        _engine.seed_everything(cfg.seed + ctx.rank + 7919 * int(ckpt["epoch"]))
        loader_gen.manual_seed(cfg.seed + ctx.rank + 7919 * int(ckpt["epoch"]))
    if ctx.is_main:
        logger.info("resumed from %s after epoch %d", path, ckpt["epoch"])
    return int(ckpt["epoch"]), list(ckpt["history"])


def _check_resume_config(saved: dict[str, Any], cfg: TrainConfig, path: pathlib.Path) -> None:
    current = cfg.to_dict()
    changed = sorted(k for k in set(saved) | set(current)
                     if k not in _RESUME_MAY_CHANGE and saved.get(k) != current.get(k))
    if cfg.schedule == "poly" and saved.get("epochs") != cfg.epochs:
        changed.append("epochs (the poly schedule spans them)")
    if changed:
        detail = ", ".join(f"{k}: {saved.get(k.split()[0])!r} -> {current.get(k.split()[0])!r}" for k in changed)
        raise ValueError(
            f"{path} was written with another TrainConfig ({detail}); resume with the same config, "
            "or pass resume=False / another out_dir to start over"
        )


def _check_out_dir(out_dir: pathlib.Path) -> None:
    """``out_dir`` must be a folder (or not exist yet) with no folder where ``last.pt`` goes."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"out_dir={str(out_dir)!r} is an existing file, not a folder for last.pt and history.csv")
    for parent in out_dir.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(f"out_dir={str(out_dir)!r}: {parent} is a file, not a folder")
            break
    for name in (CHECKPOINT_NAME, "history.csv"):
        if (out_dir / name).is_dir():
            raise ValueError(f"out_dir={str(out_dir)!r}: {out_dir / name} is a folder; fit writes a file there")


def _check_finite_state(model: nn.Module, optimizer: torch.optim.Optimizer, epoch: int,
                        ckpt_path: pathlib.Path | None, last_good_epoch: int, ctx: DistContext,
                        device: torch.device, extra: dict[str, Any] | None = None) -> None:
    """Stop when the epoch left NaN/inf in the model (BatchNorm running statistics included) or the optimiser.

    The per-step check sees the loss and the gradients only: in training mode BatchNorm normalises with the
    batch's statistics, so its running statistics can overflow while the loss stays finite, and a checkpoint
    written then would hold a model that predicts NaN in ``eval()`` mode.
    """
    bad = nonfinite_entries(model.state_dict())
    bad += [f"distill.{k}" for k in nonfinite_entries(extra or {})]
    bad += [f"optimizer.{k}" for k in nonfinite_entries(optimizer.state_dict().get("state", {}))]
    if ctx.enabled:  # every rank stops together (ranks' BatchNorm buffers may differ)
        ok = torch.tensor(0 if bad else 1, dtype=torch.int32, device=device)
        torch.distributed.all_reduce(ok, op=torch.distributed.ReduceOp.MIN)
        if bool(ok):
            return
        bad = bad or ["(on another rank)"]
    elif not bad:
        return
    if ckpt_path is None:
        kept = "no checkpoint is written (out_dir=None)"
    elif last_good_epoch > 0:
        kept = f"the last good checkpoint {ckpt_path} (epoch {last_good_epoch}) is left untouched"
    else:
        kept = f"no checkpoint was written to {ckpt_path}"
    shown = ", ".join(bad[:6]) + (f", ... ({len(bad)} in all)" if len(bad) > 6 else "")
    raise NonFiniteLossError(
        f"training stopped after epoch {epoch + 1}: the model state holds NaN or inf values ({shown}) although "
        f"every loss and gradient was finite (the learning rate is probably too high); {kept}",
        epoch=epoch + 1, batch=None, paths=None)


@contextlib.contextmanager
def _deterministic(enabled: bool, device: torch.device) -> Iterator[None]:
    """``torch.use_deterministic_algorithms(True)`` for the duration of ``fit``, then the caller's setting."""
    if not enabled:
        yield
        return
    if device.type == "cuda":
        # cuBLAS needs this before its first call to be deterministic; harmless when already set.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    prev = torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    prev_bench = torch.backends.cudnn.benchmark
    prev_fill = torch.utils.deterministic.fill_uninitialized_memory
    # warn_only: an op without a deterministic kernel (some CUDA backward passes) warns, it does not abort
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    # Deterministic mode also fills every new tensor with NaN (a debugging aid against reads of uninitialised
    # memory): ~2000 fills per FastDepth step, 15% of a CPU step measured. The kernels' results do not
    # depend on it, so it is off while fit runs.
    torch.utils.deterministic.fill_uninitialized_memory = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(prev, warn_only=prev_warn)
        torch.backends.cudnn.benchmark = prev_bench
        torch.utils.deterministic.fill_uninitialized_memory = prev_fill


def _unwrap(net: nn.Module) -> nn.Module:
    return net.module if isinstance(net, DistributedDataParallel) else net


def _tqdm_disable(progress: bool | None, ctx: DistContext | None = None) -> bool | None:
    """tqdm's ``disable``: bars on rank 0 only; ``None`` lets tqdm decide (shown on a TTY or in a notebook)."""
    if ctx is not None and not ctx.is_main:
        return True
    return None if progress is None else not progress


def _write_csv(df: pd.DataFrame, path: pathlib.Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    df.to_csv(tmp, index=False)
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------------------
# evaluation


def evaluate(
    model: nn.Module,
    data: Dataset | DataLoader,
    config: TrainConfig | None = None,
    *,
    batch_size: int | None = None,
    progress: bool | None = False,
    align: str | None = "auto",
    **metric_kwargs: Any,
) -> dict[str, float]:
    """Metrics of ``model`` (in ``eval()`` mode) over ``data``, with :mod:`depthlib.metrics` conventions.

    Each batch: ``image`` ``(B, 3, H, W)`` is prepared as in training (device,
    ``channels_last``), the model predicts ``(B, 1, H, W)`` and a :class:`depthlib.metrics.DepthMetrics`
    accumulator takes ``(pred, depth (B, 1, H, W), mask (B, 1, H, W))``.

    Args:
        model: the network; its training mode is restored afterwards.
        data: a dataset of sample dicts (or a DataLoader yielding collated ones).
        config: device, normalisation, AMP and metric defaults (``max_depth``, ``min_depth``,
            ``metric_reduction``); default ``TrainConfig()``.
        batch_size: default ``config.eval_batch_size`` or ``config.batch_size``.
        progress: tqdm bar (``None``: on a terminal or in a notebook).
        align: ``"inverse"`` or ``"depth"`` aligns each prediction to the ground truth with
            :func:`depthlib.metrics.align_scale_shift` in that space before the metrics (relative-depth
            models); ``None`` never; ``"auto"`` aligns in inverse space exactly when
            ``model.output_kind == "inverse_relative"`` (MiDaS small: the step haly2021 skipped).
        **metric_kwargs: passed to the accumulator, overriding the config's: ``reduction``,
            ``crop``, ``max_depth``, ``min_depth``...

    Returns:
        ``{"rmse", "mae", "absrel", ...}`` as floats.
    """
    from depthlib.metrics import DepthMetrics, align_scale_shift

    if align not in ("auto", None, "inverse", "depth"):
        raise ValueError(f"align must be 'auto', None, 'inverse' or 'depth', got {align!r}")
    if align == "auto":
        align = "inverse" if getattr(model, "output_kind", "metric") == "inverse_relative" else None
    cfg = TrainConfig() if config is None else config
    device = torch.device(cfg.device)
    if isinstance(data, DataLoader):
        loader = data
    else:
        gen = torch.Generator()
        gen.manual_seed(cfg.seed)  # own generator: evaluating never moves the training RNG
        loader = DataLoader(
            data,
            batch_size=batch_size or cfg.eval_batch_size or cfg.batch_size,
            shuffle=False,
            num_workers=cfg.num_workers,
            worker_init_fn=_engine.seed_worker,
            generator=gen,
            pin_memory=device.type == "cuda",
        )
    options = {"reduction": cfg.metric_reduction, "max_depth": cfg.max_depth, "min_depth": cfg.min_depth}
    options.update(metric_kwargs)
    acc = DepthMetrics(**options)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for batch in tqdm(loader, desc="eval", unit="batch", disable=_tqdm_disable(progress), leave=False):
                image, (depth, mask) = _engine.prepare_batch(batch, device, cfg, ("depth", "mask"))
                with _engine.autocast(device, cfg.amp):
                    pred, _ = _engine.split_output(model(image))
                pred = pred.float()
                if align is not None:
                    pred = align_scale_shift(pred, depth, mask, space=align, max_depth=options["max_depth"])
                acc.update(pred, depth, mask)
    finally:
        model.train(was_training)
    return {k: float(v) for k, v in acc.compute().items()}

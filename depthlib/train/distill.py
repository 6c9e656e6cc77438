"""Distillation in :func:`depthlib.train.fit`: a frozen teacher, weighted distillation terms, feature taps by
module name, learned 1x1 adapters and a per-sample cache of the teacher's outputs (issue 12).

- :class:`DistillTerm` one weighted term: ``"feature_l2"`` (zhang2021: L2 between features at a named layer
  pair, through a learned 1x1 convolution when the channel counts differ), ``"pixel_rmse"`` (yucel2021's
  pixel-wise ``L_aux-RMSE``: RMSE between the student's predictions, every head, and the teacher's),
  ``"pairwise"`` (yucel2021's pair-wise ``L_pa``: affinity matrices of the features at a layer pair) or
  ``"holistic"`` (Liu et al.'s holistic adversarial term as yucel2021 tried it: a hinge-loss
  :class:`DepthDiscriminator` updated every ``every`` iterations). The losses are
  :func:`depthlib.losses.distill_feature_l2`, :func:`~depthlib.losses.distill_rmse` and
  :func:`~depthlib.losses.distill_pairwise`; the holistic ones are :func:`holistic_generator_loss` and
  :func:`discriminator_hinge_loss`.
- :class:`DepthDiscriminator` the holistic term's patch discriminator on ``(image, depth)``.
- :class:`TeacherCache` the teacher's outputs per training sample, shared by the ``fit`` calls of a seed
  sweep so that the teacher runs once per sample instead of once per sample, epoch and seed.
- :func:`random_augmentations` the random transforms a dataset applies (why a cache is refused).

``fit(model, train, val, config, out_dir, teacher=..., distill=[DistillTerm(...), ...], teacher_cache=...)``
builds a :class:`Distiller` for the run; nothing else in the package needs it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import hashlib
import math
import warnings
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset, default_collate

__all__ = ["DistillTerm", "TeacherCache", "Distiller", "DepthDiscriminator", "holistic_generator_loss",
           "discriminator_hinge_loss", "random_augmentations", "KINDS", "HOLISTIC_DEFAULTS"]

#: The term kinds and the loss each one uses (a :mod:`depthlib.losses` name; ``"holistic"``: this module's
#: :func:`holistic_generator_loss`, with :func:`discriminator_hinge_loss` for its discriminator).
KINDS = {"feature_l2": "distill_feature_l2", "pixel_rmse": "distill_rmse", "pairwise": "distill_pairwise",
         "holistic": "holistic_generator_loss"}
_FEATURE_KINDS = ("feature_l2", "pairwise")
#: Kinds that compare the student's predictions with the teacher's final output (they need ``"output"``).
_OUTPUT_KINDS = ("pixel_rmse", "holistic")
#: The ``"holistic"`` term's options and their defaults: the discriminator is updated at the training
#: iterations ``0, every, 2 * every, ...`` (yucel2021: every two) by Adam with ``lr`` and ``betas``;
#: ``width`` is the channel count of its first convolution.
HOLISTIC_DEFAULTS: dict[str, Any] = {"every": 2, "lr": 1e-4, "betas": (0.5, 0.999), "width": 32}
#: Batch key under which fit's index wrapper passes each sample's index in the training set (cache key).
INDEX_KEY = "_distill_index"
# Transforms whose output is random although their class name does not start with "Random".
_RANDOM_CLASSES = {"ColorJitter", "GaussianBlur", "GaussianNoise", "ElasticTransform", "AugMix", "AutoAugment",
                   "RandAugment", "TrivialAugmentWide", "RandomApply", "RandomChoice", "RandomOrder"}


@dataclasses.dataclass(frozen=True)
class DistillTerm:
    """One weighted distillation term of :func:`depthlib.train.fit`; the objective is
    ``supervised loss + sum_k weight_k * term_k``.

    Kinds:

    - ``"feature_l2"`` (zhang2021, line 41: "the features before the last activation layer", L2 distance):
      :func:`depthlib.losses.distill_feature_l2` between the student's output of module ``student_layer``,
      ``(B, C_s, h, w)``, and the teacher's output of ``teacher_layer``, ``(B, C_t, H, W)``. When
      ``C_s != C_t`` a learned 1x1 convolution ``C_s -> C_t`` (with bias) maps the student's features first;
      it is trained with the student by the same optimiser and saved in the student's checkpoint
      (``ckpt["distill"]["adapters"]``). Equal channel counts use no adapter. Different spatial sizes need
      ``options={"interpolate": True}``: the student's features are resized bilinearly to ``(H, W)``, before
      the adapter when ``C_s < C_t`` (the two commute; the thinner map is cheaper to resize), else after.
    - ``"pixel_rmse"`` (yucel2021, eq. 5, ``L_aux-RMSE``): :func:`depthlib.losses.distill_rmse` between the
      student's predictions and the teacher's final prediction ``(B, 1, H, W)``, over every pixel. A student
      that returns auxiliary heads in training mode (``{"depth", "aux"}``) is compared on **every** head, as
      eq. 5 asks: ``deep_supervision(distill_rmse, output, teacher_output, weights=head weights)`` with the
      supervised loss's head weights (``TrainConfig.aux_weights``, default 0.5 / 0.25 / 0.25), the auxiliary
      heads ``(B, 1, h_i, w_i)`` upsampled bilinearly to ``(H, W)``. The layers must be ``None``; the final
      outputs must have the same size.
    - ``"holistic"`` (Liu et al.'s holistic loss as yucel2021 uses it, lines 232-233: "hinge loss for adversarial
      training ... loss weight 0.05 ... update the discriminator every two iterations"): a
      :class:`DepthDiscriminator` ``D`` scores ``concat(image (B, 3, H, W), depth (B, 1, H, W))`` with patch
      scores ``(B, 1, h, w)``; real is the teacher's final output, fake the student's final output. The term
      (added with ``weight``, recorded as ``train_<name>``) is the generator loss ``-D(image, fake).mean()``,
      computed with ``D`` in eval mode and its parameters frozen (``D`` never gets the student's gradient).
      ``D`` is trained on its hinge loss ``relu(1 - D(image, real)).mean() + relu(1 + D(image, fake.detach())).mean()``
      (recorded as ``train_<name>_d``, averaged over the epoch's updating iterations) by its own Adam
      optimiser, at the global training iterations ``0, every, 2 * every, ...`` (0-based, counted across
      epochs and resumes), after the student's step; the fake is detached, so the student gets no gradient
      from it. Options (:data:`HOLISTIC_DEFAULTS`): ``every`` (positive int, default 2), ``lr`` (> 0, default
      1e-4), ``betas`` (default (0.5, 0.999)), ``width`` (the discriminator's first channels, default 32).
      ``D``, its optimiser state and the iteration counter are saved in ``ckpt["distill"]``. The layers must
      be ``None``; the outputs must have the same size.
    - ``"pairwise"`` (yucel2021's ``L_pa``, Liu et al.'s structured KD): :func:`depthlib.losses.distill_pairwise`
      between the features ``(B, C_s, H, W)`` and ``(B, C_t, H, W)`` at the layer pair: channel counts may
      differ (cosine affinities need no adapter), spatial sizes must match. ``options={"scale": ...}``.

    A layer is a name of ``dict(model.named_modules())`` (``"decoder.head.0"``); its output is read with a
    forward hook (the output of its last call in a forward pass) and copied at once, so an in-place
    activation after it (``ReLU(inplace=True)``) does not change what is distilled: the features *before*
    that activation, as zhang2021 asks.

    Args:
        kind: ``"feature_l2"``, ``"pixel_rmse"``, ``"pairwise"`` or ``"holistic"``.
        weight: finite, ``>= 0`` (0 records the term in the history without training on it). Under
            ``TrainConfig.rebalance`` the rebalancer's weight replaces it (except for ``"holistic"``, whose
            generator loss has no sign and keeps this weight).
        student_layer, teacher_layer: module names (feature kinds), ``None`` for ``"pixel_rmse"`` and
            ``"holistic"``.
        options: keyword options of the loss function (``interpolate`` for feature_l2, ``scale`` for
            pairwise); for ``"holistic"`` the discriminator's (``every``, ``lr``, ``betas``, ``width``; the
            defaults are filled in).
        name: the term's name in the history (column ``train_<name>``) and in the checkpoint; default its
            kind, numbered ``<kind>_2``, ``<kind>_3`` ... when a kind repeats.

    Raises:
        ValueError: naming the field and value: an unknown kind, a negative or non-finite weight, missing or
            superfluous layers, an option the loss does not take, a name with a ``"."``.
    """

    kind: str
    weight: float = 1.0
    student_layer: str | None = None
    teacher_layer: str | None = None
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    name: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"DistillTerm.kind must be one of {tuple(KINDS)}, got {self.kind!r}")
        w = self.weight
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
            raise ValueError(f"DistillTerm.weight must be a finite number >= 0, got {w!r} (term {self.kind!r})")
        object.__setattr__(self, "weight", float(w))
        if self.kind in _FEATURE_KINDS:
            for field in ("student_layer", "teacher_layer"):
                value = getattr(self, field)
                if not isinstance(value, str) or not value:
                    raise ValueError(f"DistillTerm.{field} must name a module (dict(model.named_modules())) for "
                                     f"kind={self.kind!r}, got {value!r}")
        elif self.student_layer is not None or self.teacher_layer is not None:
            raise ValueError(f"DistillTerm(kind={self.kind!r}) compares the predictions: student_layer and "
                             f"teacher_layer must be None, got {self.student_layer!r}, {self.teacher_layer!r}")
        if not isinstance(self.options, Mapping):
            raise ValueError(f"DistillTerm.options must be a dict of loss options, got {self.options!r}")
        object.__setattr__(self, "options", dict(self.options))
        if self.kind == "holistic":
            object.__setattr__(self, "options", _holistic_options(self.options))
        else:
            from depthlib.losses import get_loss

            try:
                get_loss(KINDS[self.kind], **self.options)
            except ValueError as err:
                raise ValueError(f"DistillTerm.options={self.options!r} (kind {self.kind!r}): {err}") from None
        if self.name is not None and (not isinstance(self.name, str) or not self.name or "." in self.name):
            raise ValueError(f"DistillTerm.name must be a non-empty string without '.', got {self.name!r}")

    def loss_fn(self) -> Callable[..., torch.Tensor]:
        """The :mod:`depthlib.losses` function of this kind with ``options`` bound (``"holistic"``:
        :func:`holistic_generator_loss`, called with the discriminator)."""
        if self.kind == "holistic":
            return holistic_generator_loss
        from depthlib.losses import get_loss

        return get_loss(KINDS[self.kind], **self.options)

    def to_dict(self) -> dict[str, Any]:
        """Primitives only, for checkpoints (``weights_only``-loadable)."""
        return {"kind": self.kind, "weight": self.weight, "student_layer": self.student_layer,
                "teacher_layer": self.teacher_layer, "options": _plain(self.options), "name": self.name}


def _holistic_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """The ``"holistic"`` term's options with the defaults filled in; ``ValueError`` naming a bad one."""
    unknown = sorted(set(options) - set(HOLISTIC_DEFAULTS))
    if unknown:
        raise ValueError(f"DistillTerm.options={dict(options)!r} (kind 'holistic'): unknown option(s) {unknown}; "
                         f"the options are {sorted(HOLISTIC_DEFAULTS)}")
    out = {**HOLISTIC_DEFAULTS, **options}
    for key in ("every", "width"):
        v = out[key]
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"DistillTerm.options['{key}'] (kind 'holistic') must be a positive int, got {v!r}")
    lr = out["lr"]
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
        raise ValueError(f"DistillTerm.options['lr'] (kind 'holistic') must be a positive finite number, got {lr!r}")
    betas = out["betas"]
    if (not isinstance(betas, (tuple, list)) or len(betas) != 2
            or not all(isinstance(b, (int, float)) and not isinstance(b, bool) and 0.0 <= b < 1.0 for b in betas)):
        raise ValueError(f"DistillTerm.options['betas'] (kind 'holistic') must be a pair of numbers in [0, 1), "
                         f"got {betas!r}")
    out["lr"] = float(lr)
    out["betas"] = (float(betas[0]), float(betas[1]))
    return out


# ------------------------------------------------------------------------------------------ holistic


class DepthDiscriminator(nn.Module):
    """The holistic term's discriminator: patch scores of ``(image, depth)`` pairs (Liu et al.'s conditional
    discriminator, as a small PatchGAN).

    ``n_layers`` convolutions 4x4 / stride 2 (``width``, ``2 width``, ... channels), each followed by
    LeakyReLU(0.2), then a 3x3 convolution to one channel; every convolution is spectrally normalised
    (``torch.nn.utils.parametrizations.spectral_norm``: one power iteration per forward in training mode, none
    in eval mode). Input ``image (B, 3, H, W)`` and ``depth (B, 1, H, W)``, concatenated along the channels;
    output ``(B, 1, ceil(H / 2^n_layers), ceil(W / 2^n_layers))`` unbounded scores (real high, fake low).
    """

    def __init__(self, width: int = 32, n_layers: int = 3, spectral: bool = True) -> None:
        super().__init__()
        from torch.nn.utils.parametrizations import spectral_norm

        norm = spectral_norm if spectral else (lambda m: m)
        layers: list[nn.Module] = []
        c_in = 4
        for k in range(n_layers):
            c_out = width * 2 ** k
            layers += [norm(nn.Conv2d(c_in, c_out, 4, stride=2, padding=1)), nn.LeakyReLU(0.2)]
            c_in = c_out
        layers.append(norm(nn.Conv2d(c_in, 1, 3, padding=1)))
        self.net = nn.Sequential(*layers)

    def forward(self, image: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
        if image.dim() != 4 or depth.dim() != 4 or image.shape[1] != 3 or depth.shape[1] != 1 \
                or image.shape[0] != depth.shape[0] or image.shape[2:] != depth.shape[2:]:
            raise ValueError(f"DepthDiscriminator: image must be (B, 3, H, W) and depth (B, 1, H, W), got "
                             f"{tuple(image.shape)} and {tuple(depth.shape)}")
        return self.net(torch.cat([image.float(), depth.float()], dim=1))


def holistic_generator_loss(discriminator: nn.Module, image: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """The student's holistic term ``-D(image, fake).mean()``, with ``D`` in eval mode and its parameters frozen
    for the call: the gradient reaches ``fake`` (B, 1, H, W) only, never ``D``'s parameters."""
    was_training = discriminator.training
    flags = [p.requires_grad for p in discriminator.parameters()]
    discriminator.eval()
    discriminator.requires_grad_(False)
    try:
        return -discriminator(image, fake).mean()
    finally:
        for p, f in zip(discriminator.parameters(), flags):
            p.requires_grad_(f)
        discriminator.train(was_training)


def discriminator_hinge_loss(discriminator: nn.Module, image: torch.Tensor, real: torch.Tensor,
                             fake: torch.Tensor) -> torch.Tensor:
    """The discriminator's hinge loss ``relu(1 - D(image, real)).mean() + relu(1 + D(image, fake)).mean()``;
    ``real``, ``fake`` and ``image`` are detached here, so no gradient leaves ``D``."""
    image, real, fake = image.detach(), real.detach(), fake.detach()
    return F.relu(1.0 - discriminator(image, real)).mean() + F.relu(1.0 + discriminator(image, fake)).mean()


def term_names(terms: Sequence[DistillTerm]) -> list[str]:
    """Each term's name: its ``name``, else its kind, numbered from the second of a kind on."""
    names, seen = [], {}
    for t in terms:
        if t.name is not None:
            name = t.name
        else:
            seen[t.kind] = seen.get(t.kind, 0) + 1
            name = t.kind if seen[t.kind] == 1 else f"{t.kind}_{seen[t.kind]}"
        names.append(name)
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"distill: term names {dup} repeat; give the terms distinct DistillTerm.name values")
    return names


# --------------------------------------------------------------------------------------------------- cache


@dataclasses.dataclass
class _Entry:
    checksum: int  # CRC-32 of the input image's bytes
    image_shape: tuple[int, ...]
    tensors: dict[str, torch.Tensor]  # "output" (1, H, W) and "feat:<layer>" (C, h, w)


class TeacherCache:
    """The teacher's outputs per training sample, kept across :func:`depthlib.train.fit` calls.

    Pass the same object to every ``fit`` of a seed sweep: the teacher runs on each sample once (in the first
    epoch of the first run) and every later batch, epoch and seed reads its outputs from here. Entries are
    keyed by the sample's index in ``train_data`` within a namespace of (the teacher's identity: class and a
    hash of its weights and buffers; the training set's fingerprint; the outputs the terms read; device and
    autocast mode), so another teacher, other weights, other data or other taps never read these entries.

    **Only valid without random augmentation.** A cached output is the teacher's answer for the image the
    sample had when it was computed; with a random transform (flip, rotation, colour jitter...) the student
    sees another view of the sample in every epoch, and the cached teacher output would belong to a different
    image (a flipped depth map for an unflipped input). So ``fit`` refuses a cache when ``train_data`` applies a
    random transform it can see (:func:`random_augmentations`: ``Random*`` classes and ``ColorJitter`` in
    ``transform``, through ``Compose``, ``Subset`` and ``ConcatDataset``). Randomness it cannot see (a plain
    function that draws random numbers) is still caught: each entry keeps a CRC-32 of the input image's bytes,
    and an entry whose image differs from the current one is recomputed and replaced (with one warning per
    ``fit``): the result is then the uncached one, at the uncached cost.

    With the cache, the run equals the uncached one bit for bit when the teacher's output for a sample does not
    depend on the other samples of its batch (eval mode: BatchNorm uses its running statistics; true of the
    convolution networks tested on the CPU, checked by ``tests/test_distill.py``; a GPU's batch-size-dependent
    kernels may differ in the last bits).

    Tensors are kept on the training device, in float32: ``nbytes`` says how much; ``max_bytes`` (``None``:
    no limit) stops adding entries (with one warning) once reached, and the samples left out run the teacher
    every time.

    Attributes:
        hits, misses: samples served from the cache / computed by the teacher, over all fits.
        stale: cached entries found with another image and recomputed.
    """

    def __init__(self, max_bytes: int | None = None) -> None:
        if max_bytes is not None and (isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 0):
            raise ValueError(f"TeacherCache.max_bytes must be None or a non-negative int, got {max_bytes!r}")
        self.max_bytes = max_bytes
        self._spaces: dict[str, dict[int, _Entry]] = {}
        self.nbytes = 0
        self.hits = 0
        self.misses = 0
        self.stale = 0

    def __len__(self) -> int:
        return sum(len(s) for s in self._spaces.values())

    def __repr__(self) -> str:
        return (f"TeacherCache({len(self)} samples in {len(self._spaces)} namespaces, {self.nbytes / 2**20:.1f} MiB, "
                f"hits={self.hits}, misses={self.misses}, stale={self.stale})")

    def clear(self) -> None:
        """Drop every entry (the counters stay)."""
        self._spaces.clear()
        self.nbytes = 0

    def _space(self, key: str) -> dict[int, _Entry]:
        return self._spaces.setdefault(key, {})

    def _put(self, space: dict[int, _Entry], index: int, entry: _Entry) -> bool:
        size = sum(t.numel() * t.element_size() for t in entry.tensors.values())
        old = space.get(index)
        old_size = sum(t.numel() * t.element_size() for t in old.tensors.values()) if old is not None else 0
        if self.max_bytes is not None and self.nbytes - old_size + size > self.max_bytes:
            return False
        space[index] = entry
        self.nbytes += size - old_size
        return True


def random_augmentations(data: Any, _depth: int = 0) -> list[str]:
    """The random transforms a dataset applies to its samples, as their ``repr``; ``[]`` when none is seen.

    Looks at ``transform`` / ``transforms`` attributes (through ``Compose``-like ``.transforms`` lists and
    torchvision's ``RandomApply``), ``Subset.dataset`` and ``ConcatDataset.datasets``. A transform counts as
    random when its class name starts with ``Random`` or is one of torchvision's random ones (``ColorJitter``,
    ``GaussianBlur``, ``AutoAugment``...). A plain function is not inspected (see :class:`TeacherCache`).
    """
    if _depth > 6:
        return []
    found: list[str] = []
    for attr in ("transform", "transforms"):
        t = getattr(data, attr, None)
        if t is not None and not isinstance(t, (str, bytes)):
            found += _random_in_transform(t, 0)
    inner = getattr(data, "dataset", None)
    if isinstance(inner, Dataset):
        found += random_augmentations(inner, _depth + 1)
    for d in getattr(data, "datasets", None) or ():
        if isinstance(d, Dataset):
            found += random_augmentations(d, _depth + 1)
    return list(dict.fromkeys(found))


def _random_in_transform(t: Any, depth: int) -> list[str]:
    if depth > 8:
        return []
    if isinstance(t, (list, tuple)):
        return [r for x in t for r in _random_in_transform(x, depth + 1)]
    name = type(t).__name__
    if name.startswith("Random") or name in _RANDOM_CLASSES:
        return [repr(t)]
    inner = getattr(t, "transforms", None)
    if isinstance(inner, (list, tuple, nn.ModuleList)):
        return [r for x in inner for r in _random_in_transform(x, depth + 1)]
    inner = getattr(t, "jitter", None)  # depthlib's ColorJitter wraps torchvision's
    if inner is not None:
        return _random_in_transform(inner, depth + 1)
    return []


class IndexedDataset(Dataset):
    """``data`` with each sample's index added under :data:`INDEX_KEY` (the cache's key); reads nothing else."""

    def __init__(self, data: Dataset) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Any:
        sample = self.data[index]
        if isinstance(sample, dict):
            sample = dict(sample)
            sample[INDEX_KEY] = index
        return sample


# ----------------------------------------------------------------------------------------------- distiller


class _Tap:
    """Forward hooks that copy named modules' outputs into ``store`` while ``active``."""

    def __init__(self, model: nn.Module, layers: Sequence[str], who: str, field: str) -> None:
        modules = dict(model.named_modules())
        self.store: dict[str, torch.Tensor] = {}
        self.active = False
        self.handles = []
        for layer in dict.fromkeys(layers):
            if layer not in modules:
                raise ValueError(_unknown_layer(layer, modules, model, who, field))
            self.handles.append(modules[layer].register_forward_hook(self._hook(layer, who, field)))

    def _hook(self, layer: str, who: str, field: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            if not self.active:
                return
            if not torch.is_tensor(output) or output.dim() != 4:
                got = tuple(output.shape) if torch.is_tensor(output) else type(output).__name__
                raise ValueError(f"DistillTerm.{field}={layer!r}: the {who}'s module {layer!r} "
                                 f"({type(module).__name__}) returns {got}, not a (B, C, H, W) feature map")
            # a copy: an in-place activation after this module must not change the tapped features
            self.store[layer] = output.clone()
        return hook

    def close(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []
        self.store.clear()

    @contextlib.contextmanager
    def capturing(self) -> Iterator[dict[str, torch.Tensor]]:
        self.store.clear()
        self.active = True
        try:
            yield self.store
        finally:
            self.active = False


def _unknown_layer(layer: str, modules: dict[str, nn.Module], model: nn.Module, who: str, field: str) -> str:
    names = [n for n in modules if n]
    close = difflib.get_close_matches(layer, names, n=8, cutoff=0.5)
    top = [n for n, _ in model.named_children()]
    # the children of the longest existing prefix: where the path stopped matching
    parts, prefix = layer.split("."), ""
    for i in range(len(parts), 0, -1):
        if ".".join(parts[:i]) in modules:
            prefix = ".".join(parts[:i])
            break
    under = [f"{prefix}.{n}" for n, _ in modules[prefix].named_children()] if prefix else []
    msg = (f"DistillTerm.{field}={layer!r} is not a module of the {who} ({type(model).__name__}, "
           f"{len(names)} named modules)")
    if close:
        msg += f"; close names: {', '.join(close)}"
    if under:
        msg += f"; modules under {prefix!r}: {', '.join(under[:20])}"
    msg += f"; top-level modules: {', '.join(top) if top else '(none)'}"
    return msg + "; list them all with dict(model.named_modules())"


def check_arguments(model: nn.Module, teacher: Any, distill: Any, teacher_cache: Any) -> list[DistillTerm] | None:
    """What ``fit`` checks before anything else: types, a teacher for the terms, terms for the teacher, a
    teacher that is not (and shares no parameter with) the student. Returns the terms, or ``None``."""
    terms = None if distill is None else list(distill) if isinstance(distill, (list, tuple)) else distill
    if terms is not None and not isinstance(terms, list):
        raise TypeError(f"distill must be a list of DistillTerm, got {type(distill).__name__}")
    for i, t in enumerate(terms or []):
        if not isinstance(t, DistillTerm):
            raise TypeError(f"distill[{i}] must be a DistillTerm, got {type(t).__name__}: {t!r}")
    if teacher_cache is not None and not isinstance(teacher_cache, TeacherCache):
        raise TypeError(f"teacher_cache must be a TeacherCache or None, got {type(teacher_cache).__name__}")
    if teacher is None:
        if terms:
            raise ValueError(f"distill has {len(terms)} term(s) ({', '.join(t.kind for t in terms)}) but "
                             "teacher=None: pass the frozen teacher model to distil from")
        if teacher_cache is not None:
            raise ValueError("teacher_cache is given but teacher=None: the cache holds a teacher's outputs")
        return None
    if not isinstance(teacher, nn.Module):
        raise TypeError(f"teacher must be a torch.nn.Module, got {type(teacher).__name__}")
    if not terms:
        raise ValueError("teacher is given but distill is empty: pass distill=[DistillTerm(...), ...], the terms "
                         "that use the teacher")
    if teacher is model:
        raise ValueError("teacher is the student itself (the same object): pass a frozen copy, "
                         "e.g. copy.deepcopy(model), or another network")
    own = {id(p) for p in model.parameters()}
    shared = [n for n, p in teacher.named_parameters() if id(p) in own]
    if shared:
        raise ValueError(f"teacher shares {len(shared)} parameter(s) with the student ({', '.join(shared[:4])}"
                         f"{', ...' if len(shared) > 4 else ''}): fit freezes the teacher in place, which would "
                         "freeze the student too; pass copy.deepcopy(teacher)")
    term_names(terms)
    return terms


def teacher_fingerprint(teacher: nn.Module) -> str:
    """A hash of the teacher's class, ``model_metadata`` and every weight and buffer (names, dtypes, shapes,
    bytes): the teacher's identity for the cache and for resume."""
    from .checkpoint import model_metadata

    h = hashlib.sha256(repr(sorted(model_metadata(teacher).items())).encode())
    for name, t in teacher.state_dict().items():
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        if t.numel():
            h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().data)
    return h.hexdigest()[:24]


def _same_device(a: torch.device, b: torch.device) -> bool:
    if a.type != b.type:
        return False
    if a.type != "cuda":
        return True
    ia = torch.cuda.current_device() if a.index is None else a.index
    ib = torch.cuda.current_device() if b.index is None else b.index
    return ia == ib


def _checksum(image: torch.Tensor) -> int:
    return zlib.crc32(image.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().data)


class Distiller:
    """The distillation of one :func:`depthlib.train.fit` run (built by ``fit``; not needed elsewhere).

    Construction (before the optimiser is built and before the first step) checks and prepares everything:
    the teacher's device against the student's; the layer names (hooks on ``dict(model.named_modules())``);
    the teacher frozen **in place** (``teacher.eval()`` and ``requires_grad_(False)``, and in
    ``channels_last`` memory format when the student is: it stays so after ``fit`` returns; no copy of a large
    teacher is made); one probe sample (``train_data[0]``, the student in
    ``eval()`` mode, both under ``no_grad``, every RNG state restored afterwards so the run is the one it would
    be without the probe) that checks the output and feature shapes and sizes the adapters; the cache refused
    on randomly augmented data. Adapters are initialised from a generator seeded with ``seed`` (the global
    RNG does not move).

    Per step: :meth:`teacher_outputs` (the teacher in ``no_grad``, or the cache), the student's forward inside
    :meth:`capturing`, then :meth:`loss`.
    """

    def __init__(self, model: nn.Module, teacher: nn.Module, terms: Sequence[DistillTerm], *,
                 cache: TeacherCache | None, train_data: Dataset, data_fingerprint: dict[str, Any],
                 device: torch.device, channels_last: bool, autocast: Callable[[], contextlib.AbstractContextManager],
                 autocast_mode: str, seed: int, prepare: Callable[[Any], torch.Tensor]) -> None:
        self.terms = list(terms)
        self.names = term_names(self.terms)
        self.teacher = teacher
        self.device = device
        self.channels_last = channels_last
        self._autocast = autocast
        self._warned_stale = False
        self._warned_full = False
        t_dev = next(iter(teacher.parameters()), None)
        t_dev = t_dev if t_dev is not None else next(iter(teacher.buffers()), None)
        if t_dev is not None and not _same_device(t_dev.device, device):
            raise ValueError(f"teacher is on device {str(t_dev.device)!r} but the student trains on {str(device)!r} "
                             f"(TrainConfig.device={str(device)!r}): move it first, teacher.to({str(device)!r})")
        if cache is not None:
            rand = random_augmentations(train_data)
            if rand:
                raise ValueError(
                    f"teacher_cache: train_data applies random augmentation ({', '.join(rand)}), so a sample's "
                    "image differs from epoch to epoch and a cached teacher output would belong to another view "
                    "of it; pass teacher_cache=None (the teacher then runs on every batch) or train without "
                    "random augmentation (see TeacherCache)")
        self.cache = cache
        self._student_tap = _Tap(model, [t.student_layer for t in self.terms if t.student_layer],
                                 "student", "student_layer")
        try:
            self._teacher_tap = _Tap(teacher, [t.teacher_layer for t in self.terms if t.teacher_layer],
                                     "teacher", "teacher_layer")
        except BaseException:
            self._student_tap.close()
            raise
        teacher.eval()
        teacher.requires_grad_(False)
        if channels_last:  # the student's layout (TrainConfig.channels_last), for the same kernels and speed
            teacher.to(memory_format=torch.channels_last)
        self.needs_output = any(t.kind in _OUTPUT_KINDS for t in self.terms)
        self.keys = (["output"] if self.needs_output else []) + [
            f"feat:{layer}" for layer in dict.fromkeys(t.teacher_layer for t in self.terms if t.teacher_layer)]
        self.fingerprint = teacher_fingerprint(teacher)
        self.teacher_meta = _teacher_meta(teacher, self.fingerprint)
        self._space: dict[int, _Entry] | None = None
        if cache is not None:
            key = repr((self.fingerprint, sorted(data_fingerprint.items()), self.keys, device.type, autocast_mode))
            self._space = cache._space(hashlib.sha256(key.encode()).hexdigest()[:24])
        self._fns = [t.loss_fn() for t in self.terms]
        try:
            self.adapters = self._probe(model, train_data, seed, prepare)
        except BaseException:
            self.close()
            raise
        self.adapters.to(device)
        if channels_last:
            self.adapters.to(memory_format=torch.channels_last)
        # the holistic terms' discriminators: seeded from the run's seed, the global RNG untouched
        self.discriminators = nn.ModuleDict()
        self.discriminator_optimizers: dict[str, torch.optim.Optimizer] = {}
        for i, (term, name) in enumerate(zip(self.terms, self.names)):
            if term.kind != "holistic":
                continue
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed * 1009 + i)
                disc = DepthDiscriminator(width=term.options["width"])
            disc.to(device)
            self.discriminators[name] = disc
            self.discriminator_optimizers[name] = torch.optim.Adam(
                disc.parameters(), lr=term.options["lr"], betas=term.options["betas"])
        #: training iterations done (global across epochs and resumes): the holistic schedule's clock
        self.iteration = 0

    # ------------------------------------------------------------------------------------------- set-up
    def _probe(self, model: nn.Module, train_data: Dataset, seed: int,
               prepare: Callable[[Any], torch.Tensor]) -> nn.ModuleDict:
        from . import _engine
        from .checkpoint import capture_rng, restore_rng

        rng = capture_rng()
        was_training = model.training
        try:
            sample = train_data[0]
            batch = default_collate([sample])
            image = prepare(batch)
            model.eval()
            with torch.no_grad(), self._autocast(), self._student_tap.capturing() as feats:
                student_out, _ = _engine.split_output(model(image))
            feats = dict(feats)
            t_out = self._lookup_or_run(batch, image, store=False)
        finally:
            model.train(was_training)
            restore_rng(rng)
        not_called = [t.student_layer for t in self.terms if t.student_layer and t.student_layer not in feats]
        if not_called:
            raise ValueError(f"DistillTerm.student_layer: the student's modules {sorted(set(not_called))} were not "
                             "called in its forward pass on train_data[0]: tap modules that compute the prediction")
        s_shape, adapters = tuple(student_out.shape), nn.ModuleDict()
        for i, (term, name) in enumerate(zip(self.terms, self.names)):
            if term.kind in _OUTPUT_KINDS:
                t_shape = tuple(t_out["output"].shape)
                if t_shape != s_shape:
                    raise ValueError(
                        f"teacher: its output {t_shape} differs from the student's {s_shape} on train_data[0] "
                        f"(distill term {name!r}, kind {term.kind!r}, compares them pixel for pixel): use a "
                        "teacher that predicts at the student's output size")
                kinds = (getattr(model, "output_kind", None), getattr(self.teacher, "output_kind", None))
                if None not in kinds and kinds[0] != kinds[1]:
                    raise ValueError(f"teacher.output_kind={kinds[1]!r} but the student's is {kinds[0]!r}: the "
                                     f"{term.kind} term {name!r} compares predictions in one space")
                continue
            s = tuple(feats[term.student_layer].shape)
            t = tuple(t_out[f"feat:{term.teacher_layer}"].shape)
            where = (f"distill term {name!r} ({term.kind}): student {term.student_layer!r} gives {s}, "
                     f"teacher {term.teacher_layer!r} gives {t} on train_data[0]")
            if s[2:] != t[2:] and not (term.kind == "feature_l2" and term.options.get("interpolate")):
                hint = ("; DistillTerm(..., options={'interpolate': True}) resizes the student's features"
                        if term.kind == "feature_l2" else "; pick layers with the same spatial size")
                raise ValueError(f"{where}: the spatial sizes differ{hint}")
            if term.kind == "feature_l2" and s[1] != t[1]:
                gen = torch.Generator().manual_seed(seed * 1009 + i)
                with torch.random.fork_rng(devices=[]):  # the constructor's own init must not move the global RNG
                    conv = nn.Conv2d(s[1], t[1], 1)
                with torch.no_grad():  # PyTorch's default init (bound 1 / sqrt(fan_in)), from the run's seed
                    bound = 1.0 / math.sqrt(s[1])
                    conv.weight.uniform_(-bound, bound, generator=gen)
                    conv.bias.uniform_(-bound, bound, generator=gen)
                adapters[name] = conv
        return adapters

    def close(self) -> None:
        """Remove the hooks (``fit`` calls it when it returns or fails)."""
        self._student_tap.close()
        self._teacher_tap.close()

    @property
    def adapter_parameters(self) -> list[nn.Parameter]:
        return list(self.adapters.parameters())

    # ------------------------------------------------------------------------------------------ teacher
    def _run_teacher(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """The teacher on ``image (b, 3, H, W)``: ``{"output": (b, 1, H, W), "feat:<layer>": (b, C, h, w)}``,
        float32 and contiguous (one layout, so cached and fresh outputs reduce alike in the losses)."""
        from . import _engine

        if self.teacher.training:  # someone switched it back: fit's contract is a teacher in eval mode
            self.teacher.eval()
        with torch.no_grad(), self._autocast(), self._teacher_tap.capturing() as feats:
            out = self.teacher(image)
            final, _ = _engine.split_output(out)
            res = {"output": final} if self.needs_output else {}
            res.update({f"feat:{k}": v for k, v in feats.items()})
        missing = [k for k in self.keys if k not in res]
        if missing:
            raise ValueError(f"teacher: the modules {[k[5:] for k in missing]} (DistillTerm.teacher_layer) were not "
                             "called in its forward pass")
        return {k: res[k].float().contiguous() for k in self.keys}

    def teacher_outputs(self, batch: dict[str, Any], image: torch.Tensor) -> dict[str, torch.Tensor]:
        """The teacher's outputs for a training batch (``image (B, 3, H, W)`` on the device, ``batch`` as
        collated): from the cache where it holds the sample with the same image, else computed (and cached)."""
        return self._lookup_or_run(batch, image, store=True)

    def _lookup_or_run(self, batch: dict[str, Any], image: torch.Tensor, *, store: bool) -> dict[str, torch.Tensor]:
        if self._space is None:
            return self._run_teacher(image)
        cache, space = self.cache, self._space
        assert cache is not None
        if INDEX_KEY in batch:
            indices = [int(i) for i in batch[INDEX_KEY]]
        else:  # the probe reads train_data[0] itself
            indices = [0]
        cpu_images = batch["image"]
        sums = [_checksum(cpu_images[j]) for j in range(len(indices))]
        shape = tuple(cpu_images.shape[1:])
        found: list[_Entry | None] = []
        for idx, s in zip(indices, sums):
            e = space.get(idx)
            if e is not None and (e.checksum != s or e.image_shape != shape):
                cache.stale += int(store)
                if store and not self._warned_stale:
                    self._warned_stale = True
                    warnings.warn(
                        f"TeacherCache: the image of training sample {idx} differs from the one its cached teacher "
                        "output was computed from (random augmentation that random_augmentations() cannot see, or "
                        "another dataset with the same fingerprint): such samples are recomputed", RuntimeWarning,
                        stacklevel=4)
                e = None
            found.append(e)
        missing = [j for j, e in enumerate(found) if e is None]
        if store:
            cache.hits += len(indices) - len(missing)
            cache.misses += len(missing)
        if not missing:
            return {k: torch.stack([e.tensors[k] for e in found]) for k in self.keys}  # type: ignore[union-attr]
        if len(missing) == len(indices):
            fresh = self._run_teacher(image)
        else:
            sub = image[missing]
            if self.channels_last:
                sub = sub.contiguous(memory_format=torch.channels_last)
            fresh = self._run_teacher(sub)
        if store:
            for row, j in enumerate(missing):
                entry = _Entry(sums[j], shape, {k: fresh[k][row].clone() for k in self.keys})
                if not cache._put(space, indices[j], entry) and not self._warned_full:
                    self._warned_full = True
                    warnings.warn(f"TeacherCache: max_bytes={cache.max_bytes} reached ({cache.nbytes} bytes held); "
                                  "the samples not cached run the teacher every time", RuntimeWarning, stacklevel=4)
        if len(missing) == len(indices):
            return fresh
        rows = {j: r for r, j in enumerate(missing)}
        return {k: torch.stack([fresh[k][rows[j]] if e is None else e.tensors[k] for j, e in enumerate(found)])
                for k in self.keys}

    # ---------------------------------------------------------------------------------------- student
    def capturing(self) -> contextlib.AbstractContextManager:
        """Context of the student's training forward: the student's tapped features are copied meanwhile."""
        return self._student_tap.capturing()

    def loss(self, output: Any, teacher_out: dict[str, torch.Tensor], image: torch.Tensor | None = None, *,
             aux_weights: Sequence[float] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(sum_k weight_k * term_k, the unweighted terms (K,) detached, float64)`` for one batch.

        ``output`` is the student's whole training output (``(B, 1, H, W)`` or ``{"depth": (B, 1, H, W), "aux":
        [(B, 1, h_i, w_i)]}``); its features were captured during the forward inside :meth:`capturing`;
        ``teacher_out`` comes from :meth:`teacher_outputs`; ``image (B, 3, H, W)`` is the student's input (needed
        by a ``"holistic"`` term); ``aux_weights`` is ``TrainConfig.aux_weights`` (the heads' weights of the
        ``"pixel_rmse"`` terms, see :func:`depthlib.train._engine.head_weights`).
        """
        parts, values = self.term_losses(output, teacher_out, image, aux_weights=aux_weights)
        final, _ = _split(output)
        total = final.new_zeros((), dtype=torch.float32)
        for term, name in zip(self.terms, self.names):
            total = total + term.weight * parts[name]
        return total, values

    def term_losses(self, output: Any, teacher_out: dict[str, torch.Tensor], image: torch.Tensor | None = None, *,
                    aux_weights: Sequence[float] | None = None,
                    split_heads: bool = False) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """The unweighted terms of one batch: ``(parts, values)``.

        ``parts`` maps each term's name to its value (a scalar tensor with gradient; arguments as :meth:`loss`).
        With ``split_heads`` and a student with auxiliary heads, a ``"pixel_rmse"`` term is given per head
        instead, unweighted, as ``"<name>/0"`` (final), ``"<name>/1"``, ... (aux heads upsampled to the final
        size), for a rebalancer that weighs every head (``TrainConfig.rebalance["wrap_aux"] = False``).
        ``values`` is ``(K,)`` float64, detached: each term as the history records it (a pixel_rmse term's heads
        combined with the head weights).
        """
        from depthlib.losses import deep_supervision

        from . import _engine

        feats = self._student_tap.store
        output = _engine.float_output(output)
        final, aux = _split(output)
        head_w = _engine.head_weights(len(aux), None if aux_weights is None else tuple(aux_weights))
        parts: dict[str, torch.Tensor] = {}
        values = []
        for term, name, fn in zip(self.terms, self.names, self._fns):
            if term.kind == "pixel_rmse":
                real = teacher_out["output"]
                if not aux:
                    v = fn(final, real)
                    parts[name] = v
                elif split_heads:
                    heads = [fn(p if p.shape[-2:] == final.shape[-2:] else
                                F.interpolate(p, size=final.shape[-2:], mode="bilinear", align_corners=False), real)
                             for p in [final, *aux]]
                    for h, hv in enumerate(heads):
                        parts[f"{name}/{h}"] = hv
                    v = sum(w * hv.detach() for w, hv in zip(head_w, heads))
                else:
                    v = deep_supervision(fn, output, real, weights=head_w)
                    parts[name] = v
            elif term.kind == "holistic":
                if image is None:
                    raise ValueError(f"Distiller.loss: the holistic term {name!r} needs the student's input image")
                v = fn(self.discriminators[name], image, final)
                parts[name] = v
            else:
                s = feats[term.student_layer].float()
                t = teacher_out[f"feat:{term.teacher_layer}"]
                if name in self.adapters:
                    adapter = self.adapters[name]
                    if s.shape[2:] != t.shape[2:] and adapter.in_channels < adapter.out_channels:
                        # a 1x1 convolution and a bilinear resize commute (the resize's weights sum to 1): resize
                        # the thinner map, then adapt; distill_feature_l2 then meets equal sizes
                        s = F.interpolate(s, size=t.shape[2:], mode="bilinear", align_corners=False)
                    s = adapter(s)
                v = fn(s, t)
                parts[name] = v
            values.append(torch.as_tensor(v).detach().double())
        feats.clear()
        return parts, torch.stack(values)

    @property
    def holistic_names(self) -> list[str]:
        """The names of the ``"holistic"`` terms (each has a discriminator)."""
        return list(self.discriminators.keys())

    def update_discriminators(self, image: torch.Tensor, fake: torch.Tensor, teacher_out: dict[str, torch.Tensor],
                              world_size: int = 1) -> dict[str, float]:
        """One training iteration's discriminator updates, after the student's step; advances :attr:`iteration`.

        Each holistic term's discriminator is updated (hinge loss, :func:`discriminator_hinge_loss`, its own
        Adam step; gradients averaged over ``world_size`` DDP processes) when ``iteration % every == 0``, i.e. at
        the global iterations ``0, every, 2 * every, ...``. ``fake`` is the student's final prediction
        ``(B, 1, H, W)`` of this iteration (detached here), real the teacher's ``teacher_out["output"]``.

        Returns:
            ``{name: hinge loss}`` of the discriminators updated at this iteration (empty when none).

        Raises:
            FloatingPointError: a non-finite discriminator loss or gradient (no step taken).
        """
        done: dict[str, float] = {}
        it = self.iteration
        for term, name in zip(self.terms, self.names):
            if term.kind != "holistic" or it % term.options["every"]:
                continue
            disc, opt = self.discriminators[name], self.discriminator_optimizers[name]
            disc.train()
            opt.zero_grad(set_to_none=True)
            d_loss = discriminator_hinge_loss(disc, image, teacher_out["output"], fake.float())
            d_loss.backward()
            if world_size > 1:
                for p in disc.parameters():
                    if p.grad is not None:
                        torch.distributed.all_reduce(p.grad)
                        p.grad /= world_size
            grads = [p.grad for p in disc.parameters() if p.grad is not None]
            ok = torch.isfinite(d_loss.detach())
            if grads:
                ok = ok & torch.isfinite(torch.nn.utils.get_total_norm(grads))
            if not bool(ok):
                raise FloatingPointError(f"the discriminator of the holistic term {name!r} got a non-finite loss "
                                         f"({d_loss.item()}) or gradients at training iteration {it}")
            opt.step()
            done[name] = float(d_loss.detach())
        self.iteration = it + 1
        return done
    def all_reduce_adapter_grads(self, world_size: int) -> None:
        """Average the adapters' gradients over DDP processes (they are not inside the DDP-wrapped student)."""
        for p in self.adapters.parameters():
            if p.grad is not None:
                torch.distributed.all_reduce(p.grad)
                p.grad /= world_size

    # ----------------------------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        """What the student's checkpoint records: ``{"terms", "names", "teacher", "adapters", "discriminators",
        "discriminator_optimizers", "iteration"}`` (the last three: the holistic terms' state, by term name)."""
        return {"terms": [t.to_dict() for t in self.terms], "names": list(self.names), "teacher": self.teacher_meta,
                "adapters": self.adapters.state_dict(),
                "discriminators": {k: d.state_dict() for k, d in self.discriminators.items()},
                "discriminator_optimizers": {k: o.state_dict() for k, o in self.discriminator_optimizers.items()},
                "iteration": self.iteration}

    def state_tensors(self) -> dict[str, Any]:
        """The learned state besides the student (adapters, discriminators, their optimisers), for finiteness
        checks."""
        return {"adapters": self.adapters.state_dict(),
                "discriminators": {k: d.state_dict() for k, d in self.discriminators.items()},
                "discriminator_optimizers": {k: o.state_dict().get("state", {})
                                             for k, o in self.discriminator_optimizers.items()}}

    def load_state_dict(self, saved: dict[str, Any], source: str) -> None:
        """Check that ``saved`` (a checkpoint's ``"distill"``) was written for these terms and this teacher,
        then load the adapters."""
        check_resume(saved, self, source)
        own = self.adapters.state_dict()
        state = saved["adapters"]
        bad = sorted(set(own) ^ set(state)) + sorted(k for k in own if k in state and own[k].shape != state[k].shape)
        if bad:
            raise ValueError(f"{source}: the distillation adapters do not match ({', '.join(bad)})")
        self.adapters.load_state_dict(state)
        discs = saved.get("discriminators", {})
        if sorted(discs) != sorted(self.discriminators.keys()):
            raise ValueError(f"{source}: holds discriminators {sorted(discs)}, this run's holistic terms are "
                             f"{sorted(self.discriminators.keys())}")
        for name, disc in self.discriminators.items():
            disc.load_state_dict(discs[name])
            self.discriminator_optimizers[name].load_state_dict(saved["discriminator_optimizers"][name])
        self.iteration = int(saved.get("iteration", 0))


def _split(output: Any) -> tuple[torch.Tensor, list[torch.Tensor]]:
    from . import _engine

    return _engine.split_output(output)


def _teacher_meta(teacher: nn.Module, fingerprint: str) -> dict[str, Any]:
    from .checkpoint import model_metadata

    return {**model_metadata(teacher), "fingerprint": fingerprint}


def check_resume(saved: dict[str, Any] | None, distiller: Distiller | None, source: str) -> None:
    """Raise ``ValueError`` when a checkpoint's distillation (``ckpt.get("distill")``) is not this run's: terms
    added, removed or changed, or another teacher (class or weights)."""
    if saved is None and distiller is None:
        return
    if saved is None:
        raise ValueError(f"{source} was written without distillation; this fit has a teacher and "
                         f"{len(distiller.terms)} term(s): resume without teacher/distill, or pass "  # type: ignore[union-attr]
                         "resume=False / another out_dir to start over")
    if distiller is None:
        kinds = ", ".join(t["kind"] for t in saved["terms"])
        raise ValueError(f"{source} was written with distillation ({kinds}; teacher "
                         f"{saved['teacher'].get('preset') or saved['teacher'].get('class')!r}): pass the same "
                         "teacher and distill terms to resume, or resume=False / another out_dir to start over")
    own = [t.to_dict() for t in distiller.terms]
    if list(saved["terms"]) != own:
        raise ValueError(f"{source} was written with other distillation terms ({saved['terms']!r} -> {own!r}); "
                         "resume with the same terms, or pass resume=False / another out_dir to start over")
    if saved["teacher"].get("fingerprint") != distiller.fingerprint:
        was = saved["teacher"].get("preset") or saved["teacher"].get("class")
        now = distiller.teacher_meta.get("preset") or distiller.teacher_meta.get("class")
        raise ValueError(f"{source} was written with another teacher ({was!r}, weights "
                         f"{saved['teacher'].get('fingerprint')}) than this one ({now!r}, weights "
                         f"{distiller.fingerprint}): resume with the same teacher weights, or pass resume=False / "
                         "another out_dir to start over")


def _plain(value: Any) -> Any:
    from .checkpoint import _plain as plain

    return plain(value)

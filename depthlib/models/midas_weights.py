"""The official MiDaS v2.1 small weights (Ranftl et al.; the model haly2021 pruned), mapped onto ``midas-small``.

The checkpoint is isl-org/MiDaS's ``midas_v21_small-70d6b9c8.pt`` (release v2_1); its name carries the first
eight hex digits of its sha256, which :func:`torch.hub.load_state_dict_from_url` checks (``check_hash=True``).
Its keys are MiDaS's: ``pretrained.layer1..4`` (timm's EfficientNet-Lite3 stem and blocks regrouped) and
``scratch.*`` (the decoder, whose names ``midas-small`` keeps). Offline the download fails at once with a
message naming the URL and where to put the file.

>>> from depthlib.models import create_model
>>> from depthlib.models.midas_weights import load_midas_v21_small
>>> net = load_midas_v21_small(create_model("midas-small"))        # doctest: +SKIP
"""

from __future__ import annotations

import os
import pathlib

import torch
from torch import nn

__all__ = ["MIDAS_V21_SMALL_URL", "MIDAS_V21_SMALL_SHA256_PREFIX", "midas_v21_small_state", "load_midas_v21_small"]

MIDAS_V21_SMALL_URL = "https://github.com/isl-org/MiDaS/releases/download/v2_1/midas_v21_small-70d6b9c8.pt"
MIDAS_V21_SMALL_SHA256_PREFIX = "70d6b9c8"

# MiDaS's _make_efficientnet_backbone: layer1 = (conv_stem, bn1, act1, blocks[0], blocks[1]), layer2 = (blocks[2],),
# layer3 = (blocks[3], blocks[4]), layer4 = (blocks[5], blocks[6]).
_ENCODER_PREFIXES = {
    "pretrained.layer1.0.": "encoder.body.conv_stem.", "pretrained.layer1.1.": "encoder.body.bn1.",
    "pretrained.layer1.3.": "encoder.body.blocks_0.", "pretrained.layer1.4.": "encoder.body.blocks_1.",
    "pretrained.layer2.0.": "encoder.body.blocks_2.", "pretrained.layer3.0.": "encoder.body.blocks_3.",
    "pretrained.layer3.1.": "encoder.body.blocks_4.", "pretrained.layer4.0.": "encoder.body.blocks_5.",
    "pretrained.layer4.1.": "encoder.body.blocks_6.",
}


def midas_v21_small_state(source: str | os.PathLike | None = None) -> dict[str, torch.Tensor]:
    """The official state dict: downloaded (hash-checked) when ``source`` is None, else read from that file."""
    if source is None:
        try:
            return torch.hub.load_state_dict_from_url(MIDAS_V21_SMALL_URL, map_location="cpu", check_hash=True,
                                                      weights_only=True)
        except (OSError, RuntimeError) as err:  # URLError is an OSError
            raise RuntimeError(f"cannot fetch MiDaS v2.1 small weights from {MIDAS_V21_SMALL_URL} ({err}); offline, "
                               f"download it elsewhere and pass its path (its sha256 starts with "
                               f"{MIDAS_V21_SMALL_SHA256_PREFIX})") from None
    path = pathlib.Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"no MiDaS v2.1 small checkpoint at {path} (get it from {MIDAS_V21_SMALL_URL})")
    return torch.load(path, map_location="cpu", weights_only=True)


def load_midas_v21_small(model: nn.Module, source: str | os.PathLike | None = None) -> nn.Module:
    """Load the official MiDaS v2.1 small weights into ``create_model("midas-small")`` (strict, keys mapped).

    Raises:
        ValueError: checkpoint keys that map to no parameter of ``model`` or parameters left unfilled (named).
    """
    state = midas_v21_small_state(source)
    mapped = {}
    for key, value in state.items():
        if key.startswith("scratch.refinenet4.resConfUnit1."):
            continue  # built by MiDaS, never called (see MidasSmallDecoder)
        if key.startswith("scratch."):
            mapped["decoder." + key[len("scratch."):]] = value
            continue
        prefix = next((p for p in _ENCODER_PREFIXES if key.startswith(p)), None)
        if prefix is None:
            raise ValueError(f"MiDaS checkpoint key {key!r} maps to no layer of midas-small")
        mapped[_ENCODER_PREFIXES[prefix] + key[len(prefix):]] = value
    own = model.state_dict()
    # the model's recorded input normalisation (create_model(..., normalization="imagenet"), which MiDaS expects)
    # is not part of MiDaS's checkpoint
    missing = sorted(set(own) - set(mapped) - {k for k in own if k.endswith("num_batches_tracked") or k.startswith("input_")})
    extra = sorted(set(mapped) - set(own))
    if missing or extra:
        raise ValueError(f"MiDaS v2.1 small checkpoint does not fit midas-small: missing {missing[:5]}, "
                         f"unexpected {extra[:5]}")
    model.load_state_dict(mapped, strict=False)
    return model

"""Encoders, decoders and the registry of paper presets.

>>> import torch
>>> from depthlib.models import create_model, list_models
>>> model = create_model("fastdepth")            # MobileNet v1 + NNConv5dw + additive skips, random init
>>> model(torch.rand(1, 3, 224, 224)).shape      # (B, 1, H, W), metres
torch.Size([1, 1, 224, 224])

``create_model(name, weights=...)`` takes ``None``, a weights entry or its name (``list_weights()``), ``"auto"``,
``"imagenet"`` or a path; the model records the input normalisation the weights expect (``model.normalization``)
and applies it first in ``forward``: feed images in [0, 1].

``list_models()`` names every preset; ``model_doc(name)`` says which paper table it reproduces and at which
resolution (``model.default_input_size``). ``model.output_kind`` is ``"metric"`` or ``"inverse_relative"``
(``midas-small``), ``model.input_multiple`` the spatial multiple the input needs.
"""

from depthlib.models.decoders import DECODER_BLOCKS, SKIP_MODES, LightFusionDecoder, MidasSmallDecoder, UNetDecoder
from depthlib.models import hourglass as _hourglass  # noqa: F401  (registers chen2016-hourglass)
from depthlib.models.encoders import Encoder, create_encoder, list_encoders, load_state_dict_file
from depthlib.models.mobilenet_v1 import MobileNetV1
from depthlib.models.registry import (DepthNet, create_model, list_models, model_doc, preset_encoder,
                                      register_model)
from depthlib.models.weights import (IMAGENET_MEAN, IMAGENET_STD, WeightsEntry, describe_weights, get_weights,
                                     list_weights, resolve_weights, weights_spec)

__all__ = [
    "create_model", "list_models", "register_model", "model_doc", "DepthNet",
    "create_encoder", "list_encoders", "Encoder", "load_state_dict_file", "MobileNetV1",
    "UNetDecoder", "LightFusionDecoder", "MidasSmallDecoder", "DECODER_BLOCKS", "SKIP_MODES", "preset_encoder",
    "WeightsEntry", "list_weights", "get_weights", "resolve_weights", "weights_spec", "describe_weights",
    "IMAGENET_MEAN", "IMAGENET_STD",
]

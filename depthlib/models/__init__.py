"""Encoders, decoders and the registry of paper presets.

>>> import torch
>>> from depthlib.models import create_model, list_models
>>> model = create_model("fastdepth")            # MobileNet v1 + NNConv5dw + additive skips
>>> model(torch.rand(1, 3, 224, 224)).shape      # (B, 1, H, W), metres
torch.Size([1, 1, 224, 224])

``list_models()`` names every preset; ``model_doc(name)`` says which paper table it reproduces and at which
resolution (``model.default_input_size``). ``model.output_kind`` is ``"metric"`` or ``"inverse_relative"``
(``midas-small``), ``model.input_multiple`` the spatial multiple the input needs.
"""

from depthlib.models.decoders import DECODER_BLOCKS, SKIP_MODES, LightFusionDecoder, MidasSmallDecoder, UNetDecoder
from depthlib.models.encoders import Encoder, create_encoder, list_encoders, load_state_dict_file
from depthlib.models.mobilenet_v1 import MobileNetV1
from depthlib.models.registry import DepthNet, create_model, list_models, model_doc, register_model

__all__ = [
    "create_model", "list_models", "register_model", "model_doc", "DepthNet",
    "create_encoder", "list_encoders", "Encoder", "load_state_dict_file", "MobileNetV1",
    "UNetDecoder", "LightFusionDecoder", "MidasSmallDecoder", "DECODER_BLOCKS", "SKIP_MODES",
]

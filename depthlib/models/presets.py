"""Named presets: one per configuration in a paper table of the five studies.

Name scheme: ``<encoder>-<decoder>[-variant]``. FastDepth's ablation grid ({mobilenet, resnet18} x
{nnconv5, nnconv5dw, upconv, upproj, deconv3} x {none, add, concat}) is reached through overrides of
``fastdepth`` rather than 30 names::

    create_model("fastdepth", encoder="resnet18", decoder="upproj", skip="concat")

``fastdepth-noskip`` and ``fastdepth-concat`` are named because FastDepth reports them as rows.
Parameter counts quoted below are the papers'; ``tests/test_models_presets.py`` checks ours against them and
``benchmarks/bench_models.py`` prints the full table.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from depthlib.models.decoders import LightFusionDecoder, MidasSmallDecoder, UNetDecoder
from depthlib.models.encoders import STRIDES, create_encoder
from depthlib.models.registry import DepthNet, register_model

Weights = str | os.PathLike | None

FASTDEPTH_WIDTHS = (512, 256, 128, 64, 32)


def _fastdepth_like(name: str, *, pretrained_encoder: Weights, encoder: str, decoder: str, skip: str,
                    channels: Sequence[int] = FASTDEPTH_WIDTHS, skip_strides: Sequence[int] = (8, 4, 2),
                    upsample: str = "nearest", encoder_head: bool = False,
                    input_size: tuple[int, int] = (224, 224), encoder_kwargs: dict | None = None) -> DepthNet:
    enc = create_encoder(encoder, pretrained_encoder, head=encoder_head, **(encoder_kwargs or {}))
    dec = UNetDecoder(enc.channels, block=decoder, channels=channels, skip=skip, skip_strides=skip_strides,
                      upsample=upsample, head="fastdepth")
    return DepthNet(enc, dec, name=name, input_multiple=32, default_input_size=input_size)


@register_model("fastdepth")
def fastdepth(*, pretrained_encoder: Weights = None, encoder: str = "mobilenet_v1", decoder: str = "nnconv5dw",
              skip: str = "add", upsample: str = "nearest") -> DepthNet:
    """FastDepth (Wofk et al., ICRA 2019; wofk2019): MobileNet v1 + NNConv5 (depthwise) + additive skips, 224x224.

    Decoder widths 512-256-128-64-32, 5x5 depthwise + pointwise convs, nearest x2, skips added at strides 8, 4, 2
    (encoder layers 5, 3, 1), then ``pointwise(32, 1)`` with BN and ReLU, exactly as dwofk/fast-depth
    ``MobileNetSkipAdd``. Paper: 3.93 M weights, 0.74 GMACs (checked by the profiler test).

    Overrides (FastDepth's ablation grid): ``encoder`` (``"mobilenet_v1"``/``"mobilenet"``, ``"resnet18"``, or any
    :func:`~depthlib.models.encoders.list_encoders` name), ``decoder`` (``nnconv5``, ``nnconv5dw``, ``upconv``,
    ``upproj``, ``deconv3``), ``skip`` (``none``, ``add``, ``concat``). The decoder widths stay FastDepth's;
    where an encoder map's width differs at an additive skip, a 1x1 conv + BN projects it.
    """
    return _fastdepth_like("fastdepth", pretrained_encoder=pretrained_encoder, encoder=encoder, decoder=decoder,
                           skip=skip, upsample=upsample)


@register_model("fastdepth-noskip", encoder="mobilenet_v1")
def fastdepth_noskip(*, pretrained_encoder: Weights = None, decoder: str = "nnconv5dw") -> DepthNet:
    """FastDepth without skip connections (FastDepth, Fig. 4 (c) / skip ablation), 224x224."""
    return _fastdepth_like("fastdepth-noskip", pretrained_encoder=pretrained_encoder, encoder="mobilenet_v1",
                           decoder=decoder, skip="none")


@register_model("fastdepth-concat", encoder="mobilenet_v1")
def fastdepth_concat(*, pretrained_encoder: Weights = None, decoder: str = "nnconv5dw") -> DepthNet:
    """FastDepth with concatenated skips (FastDepth's skip ablation; dwofk/fast-depth ``MobileNetSkipConcat``),
    224x224: the encoder map is concatenated after stages 2-4, widening the next stage's input."""
    return _fastdepth_like("fastdepth-concat", pretrained_encoder=pretrained_encoder, encoder="mobilenet_v1",
                           decoder=decoder, skip="concat")


@register_model("mbv2-nnconv5-narrow", encoder="mobilenet_v2")
def mbv2_nnconv5_narrow(*, pretrained_encoder: Weights = None) -> DepthNet:
    """sagar2021, Tables 1-2: torchvision MobileNetV2 (with its 1x1 conv to 1280) + NNConv5 *narrowed* to the
    encoder's skip widths.

    Decoder 1280 -> 512 -> 32 -> 24 -> 16 -> 32 -> 1: depthwise 5x5 + pointwise stages, bilinear x2, additive
    skips where the encoder has the same width (strides 8, 4, 2: 32, 24, 16 channels, Fig. 2), 224x224.
    Paper: 11.8 MB fp32, 5.9 MB fp16. What differs from ``mbv2-nnconv5`` (yucel2021): the decoder widths
    (32-24-16 after the first stage, not FastDepth's 256-128-64, so no 1x1 skip projections) and bilinear,
    not nearest, upsampling.
    """
    return _fastdepth_like("mbv2-nnconv5-narrow", pretrained_encoder=pretrained_encoder, encoder="mobilenet_v2",
                           decoder="nnconv5dw", skip="add", channels=(512, 32, 24, 16, 32), upsample="bilinear")


# What each yucel2021 preset's parameter count matches or not (depthlib.profiler.param_candidates counts the
# candidates); appended to the preset docstrings.
_YUCEL2021_NOTES: dict[str, str] = {
    "ghostnet-nnconv5": (
        "GhostNet is the whole timm ghostnet_100 up to conv_head (the stride-32 bottlenecks timm's feature taps\n"
        "leave out included, see encoders._timm_tail); the paper's 5.4 M stays unexplained by any documented\n"
        "width (ghostnet_050/130), head or classifier reading.\n"),
    "ghostnet-fbnet": (
        "GhostNet is the whole timm ghostnet_100 up to conv_head (the stride-32 bottlenecks timm's feature taps\n"
        "leave out included, see encoders._timm_tail): this matches the paper's 4.3 M within its rounding.\n"),
    "mixnet-m-fbnet": "The paper's 3.6 M stays unexplained (no expansion, head or classifier reading fits).\n",
    "effnet-es-fbnet": "The paper's 4.7 M stays unexplained (this is the closest documented reading).\n",
}

# --- yucel2021 (Yucel et al., CVPRW 2021), Table 1: encoders with the NNConv5 decoder, NYUv2 224x224 ----------

def _yucel2021_nnconv5(name: str, encoder: str, paper_params: float):
    def factory(*, pretrained_encoder: Weights = None, encoder_head: bool = True,
                encoder_kwargs: dict | None = None) -> DepthNet:
        return _fastdepth_like(name, pretrained_encoder=pretrained_encoder, encoder=encoder, decoder="nnconv5dw",
                               skip="add", encoder_head=encoder_head, encoder_kwargs=encoder_kwargs)

    factory.__name__ = name.replace("-", "_")
    factory.encoder = encoder
    factory.__doc__ = (
        f"yucel2021, Table 1 row '{encoder}': {encoder} encoder (with its classifier's 1x1 head conv on the\n"
        f"stride-32 map) + FastDepth's NNConv5 decoder (depthwise, widths 512-256-128-64-32, additive skips at\n"
        f"strides 8/4/2 with 1x1 projections where widths differ), 224x224. Paper: {paper_params} M parameters.\n"
        + _YUCEL2021_NOTES.get(name, "")
        + "Overrides (the parameter-count candidates of depthlib.profiler.param_candidates): ``encoder_head``\n"
        "(False: the decoder reads the stride-32 map before the head conv), ``encoder_kwargs`` (passed to\n"
        "create_encoder, e.g. ``{'width': 1.3}`` for GhostNet).")
    register_model(name)(factory)


for _name, _enc, _params in (
        ("shufflenetv2-nnconv5", "shufflenet_v2", 2.0),
        ("mnasnet-nnconv5", "mnasnet", 4.0),
        ("mbv2-nnconv5", "mobilenet_v2", 3.1),
        ("mbv3-nnconv5", "mobilenet_v3_large", 5.1),
        ("effnet-es-nnconv5", "efficientnet_es", 5.0),
        ("effnet-b0-nnconv5", "efficientnet_b0", 4.9),
        ("ghostnet-nnconv5", "ghostnet", 5.4),
        ("mixnet-m-nnconv5", "mixnet_m", 4.5),
        ("mixnet-s-nnconv5", "mixnet_s", 3.6)):
    _yucel2021_nnconv5(_name, _enc, _params)


# --- yucel2021, Table 2: FBNet-style decoders ---------------------------------------------------------------

FBNET_EXPANSION = 3.0


def _fbnet(name: str, encoder: str, *, pretrained_encoder: Weights, x112: bool, aux_heads: int,
           encoder_head: bool = True, encoder_kwargs: dict | None = None,
           expansion: float = FBNET_EXPANSION, relative: bool = False) -> DepthNet:
    enc = create_encoder(encoder, pretrained_encoder, head=encoder_head, **(encoder_kwargs or {}))
    # Stage widths follow the encoder at strides 16, 8, 4, 2 so the five additive skips need no projection.
    widths = [enc.channels[STRIDES.index(s)] for s in (16, 8, 4, 2)]
    channels = widths if x112 else widths + [widths[-1]]
    if aux_heads not in (0, 1, 2):
        raise ValueError(f"aux_heads={aux_heads}; yucel2021 uses 0, 1 or 2 intermediate heads")
    aux_after = (1, 2)[:aux_heads]
    dec = UNetDecoder(enc.channels, block="fbnet", channels=channels, skip="add", skip_strides=(16, 8, 4, 2),
                      expansion=expansion, head="linear" if relative else "conv", aux_after=aux_after)
    return DepthNet(enc, dec, name=name, input_multiple=32, default_input_size=(224, 224),
                    output_kind="relative" if relative else "metric")


def _yucel2021_fbnet(name: str, encoder: str, paper_params: float, x112: bool = False):
    def factory(*, pretrained_encoder: Weights = None, aux_heads: int = 0, encoder_head: bool = True,
                encoder_kwargs: dict | None = None, expansion: float = FBNET_EXPANSION,
                relative: bool = False) -> DepthNet:
        if not isinstance(relative, bool):
            raise ValueError(f"{name}: relative={relative!r} must be True or False")
        return _fbnet(name, encoder, pretrained_encoder=pretrained_encoder, x112=x112, aux_heads=aux_heads,
                      encoder_head=encoder_head, encoder_kwargs=encoder_kwargs, expansion=expansion,
                      relative=relative)

    factory.__name__ = name.replace("-", "_")
    factory.encoder = encoder
    factory.__doc__ = (
        f"yucel2021, Table 2 row '{encoder} + FBNet{' x112' if x112 else ''}': {encoder} encoder (with head conv) +\n"
        f"FBNet-style inverted-residual decoder (expansion {FBNET_EXPANSION:g} of the output width, 5x5 depthwise,\n"
        f"nearest x2), additive skips at strides 16/8/4/2, 224x224. Paper: {paper_params} M parameters.\n"
        + ("x112: the last decoder layer is replaced by plain bilinear upsampling of the stride-2 prediction.\n"
           if x112 else "")
        + "``aux_heads=2`` adds the intermediate heads after decoder layers 2 and 3 (training only; yucel2021\n"
        "Tables 4-7, loss weights 0.5/0.25/0.25); ``model.remove_aux_heads()`` before export.\n"
        "``relative=True``: the heads have no final ReLU and ``output_kind == \"relative\"`` (the ordinal-depth\n"
        "pipeline of Tables 3-7, whose prediction is log depth up to an additive constant).\n"
        + _YUCEL2021_NOTES.get(name, "")
        + "Overrides (the parameter-count candidates of depthlib.profiler.param_candidates): ``encoder_head``,\n"
        "``encoder_kwargs`` (as for the NNConv5 presets), ``expansion`` (of each block's output width).")
    register_model(name)(factory)


for _name, _enc, _params, _x112 in (
        ("effnet-es-fbnet", "efficientnet_es", 4.7, False),
        ("mixnet-m-fbnet", "mixnet_m", 3.6, False),
        ("ghostnet-fbnet", "ghostnet", 4.3, False),
        ("mbv2-fbnet", "mobilenet_v2", 2.6, False),
        ("mbv2-fbnet-x112", "mobilenet_v2", 2.6, True)):
    _yucel2021_fbnet(_name, _enc, _params, _x112)


# --- zhang2021 (Zhang et al., MAI 2021 winner), Table 2: four model sizes -------------------------------------

# torchvision MobileNetV3-Large width multipliers for models 1-4. The paper gives only "fewer channels than the
# original" and each model's FLOPs at 128x160 (27.7 M, 48.8 M, 90.0 M, 189.0 M); these multipliers (searched in
# steps of 0.05) are the ones whose MACs (our profiler, decoder included) come closest: 27.0 M, 51.5 M, 88.8 M,
# 184.8 M, i.e. the paper's "Flops" read as multiply-accumulates. tests/test_profiler.py checks the match.
# torchvision has ImageNet weights only for width 1.0, so pretrained_encoder="imagenet" needs width_mult=1.0.
MAI2021_WIDTHS = {1: 0.45, 2: 0.65, 3: 0.9, 4: 1.35}
MAI2021_FLOPS_M = {1: 27.7, 2: 48.8, 3: 90.0, 4: 189.0}


def _mai2021(model_id: int):
    name = f"mai2021-{model_id}"

    def factory(*, pretrained_encoder: Weights = None, width_mult: float = MAI2021_WIDTHS[model_id],
                internal_size: tuple[int, int] = (128, 160)) -> DepthNet:
        if len(internal_size) != 2 or any(int(v) % 32 or int(v) < 32 for v in internal_size):
            raise ValueError(f"{name}: internal_size={tuple(internal_size)} must be two multiples of 32 (the "
                             f"encoder's stride); the paper uses (128, 160)")
        enc = create_encoder("mobilenet_v3_large", pretrained_encoder, width_mult=width_mult)
        dec = LightFusionDecoder(enc.channels)
        return DepthNet(enc, dec, name=name, input_multiple=1, default_input_size=(480, 640),
                        internal_size=tuple(internal_size))

    factory.__name__ = name.replace("-", "_")
    factory.encoder = "mobilenet_v3_large"
    factory.__doc__ = (
        f"zhang2021 (MAI-2021 winner), Table 2 model #{model_id}: MobileNetV3-Large (width "
        f"{MAI2021_WIDTHS[model_id]}) + light\n"
        f"decoder with feature fusion at strides 16/8/4/2. Input 480x640 (any size works: input_multiple 1) is\n"
        f"resized to 128x160 inside the model (fast downsampling) and the prediction resized back.\n"
        f"Paper: {MAI2021_FLOPS_M[model_id]} M FLOPs at 128x160.")
    register_model(name)(factory)


for _i in (1, 2, 3, 4):
    _mai2021(_i)


@register_model("mai2021-teacher")
def mai2021_teacher(*, pretrained_encoder: Weights = None, encoder: str = "mobilenet_v2",
                    internal_size: tuple[int, int] = (256, 320)) -> DepthNet:
    """zhang2021's teacher for distillation: a larger encoder with the students' light fusion decoder.

    The paper's teacher is a ViT-Large trained from ImageNet weights on the MAI data (section 2.2; its decoder
    is not described): ``encoder="vit_large"`` with ``internal_size=(384, 512)`` in the paper profile (needs
    the ViT encoders of :mod:`depthlib.models.encoders`). On a CPU the default is the largest model that trains
    within a quick profile's budget: MobileNetV2 (the converted ImageNet weights when present) at 256x320
    inside, twice the students' internal resolution, so that it sees the detail fast downsampling throws away.
    Input 480x640 (any size: input_multiple 1), resized to ``internal_size`` inside and the prediction resized
    back, like the students; the decoder's last convolution (``decoder.head.0``, before the final ReLU) is the
    layer whose output zhang2021 distils.
    """
    if len(internal_size) != 2 or any(int(v) % 32 or int(v) < 32 for v in internal_size):
        raise ValueError(f"mai2021-teacher: internal_size={tuple(internal_size)} must be two multiples of 32 (the "
                         f"encoder's stride)")
    enc = create_encoder(encoder, pretrained_encoder)
    return DepthNet(enc, LightFusionDecoder(enc.channels), name="mai2021-teacher", input_multiple=1,
                    default_input_size=(480, 640), internal_size=tuple(int(v) for v in internal_size))


# --- haly2021: MiDaS v2.1 small ------------------------------------------------------------------------------

@register_model("midas-small", encoder="efficientnet_lite3")
def midas_small(*, pretrained_encoder: Weights = None) -> DepthNet:
    """MiDaS v2.1 small (Ranftl et al.; haly2021): EfficientNet-Lite3 + RefineNet-style fusion decoder
    (features 64, expand), 256x256, output relative *inverse* depth (``output_kind == "inverse_relative"``):
    compare with metric depth only after scale-and-shift alignment (``depthlib.metrics.align_scale_shift``).
    haly2021 counts 16,600,929 parameters: what runs (MiDaS builds 4.7 M more in a never-called unit)."""
    enc = create_encoder("efficientnet_lite3", pretrained_encoder)
    return DepthNet(enc, MidasSmallDecoder(enc.channels), name="midas-small", input_multiple=32,
                    default_input_size=(256, 256), output_kind="inverse_relative")

"""Shared fixtures. Real samples in ../shared are used when present and skipped with a reason otherwise."""

from __future__ import annotations

import os
import pathlib

import pytest
import torch

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = pathlib.Path(os.environ.get("DEPTHLIB_SHARED", REPO.parent / "shared"))

# Two cores: one intra-op thread per test process keeps timings and results reproducible.
torch.set_num_threads(1)


def _shared_path(*parts: str) -> pathlib.Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent: real samples live in ../shared beside a developer's checkout, not in a fresh clone")
    return path


@pytest.fixture(scope="session")
def shared_nyu_data() -> pathlib.Path:
    """DenseDepth layout root with 40 real NYU Depth v2 test pairs (``nyu_data/``)."""
    return _shared_path("data", "nyu_data")


@pytest.fixture(scope="session")
def shared_fastdepth_sample() -> pathlib.Path:
    """FastDepth's deploy sample: rgb.npy, depth.npy and FastDepth's own pred.npy."""
    return _shared_path("data", "fastdepth_deploy_sample")


@pytest.fixture(scope="session")
def shared_weights() -> pathlib.Path:
    """ImageNet MobileNet v1/v2 state dicts converted from TFLite."""
    return _shared_path("weights")

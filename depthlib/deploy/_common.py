"""Errors and small checks shared by the exporters and runtimes."""

from __future__ import annotations

import importlib
import pathlib
from collections.abc import Sequence
from types import ModuleType

from depthlib.data import DataFormatError

__all__ = ["RuntimeNotAvailable", "ArtifactError", "UnsupportedOperatorError", "require", "check_input_size",
           "check_artifact"]

#: Why a runtime cannot be installed beside the project's pinned torch (pip's resolver, on this project's pins).
NOT_INSTALLABLE = {
    "litert_torch": (
        "litert-torch cannot be installed beside torch==2.14.1: pip's resolver says 'litert-torch 0.9.4 depends on "
        "torch<2.14.0 and >=2.4.0' (0.9.0-0.9.3: torch<2.13.0 or <2.12.0; 0.8.0: torch<2.10.0) - "
        "ResolutionImpossible. The LiteRT interpreter (ai-edge-litert) installs and runs .tflite files made "
        "elsewhere."),
}

_EXTRA_HINT = "install the deploy extra: pip install -e '.[deploy]' (or `make install`)"


class RuntimeNotAvailable(ImportError):
    """A runtime's Python package is missing (or cannot be installed beside the pinned torch)."""


class ArtifactError(DataFormatError):
    """An exported file (.onnx, .pte, .tflite, TVM library) is missing, truncated or corrupt."""


class UnsupportedOperatorError(RuntimeError):
    """A converter cannot take an operator of the model; the message names the runtime and the operator."""

    def __init__(self, runtime: str, operator: str, detail: str = "") -> None:
        self.runtime, self.operator = runtime, operator
        super().__init__(f"{runtime} cannot convert operator {operator!r}" + (f": {detail}" if detail else ""))


def require(module: str, runtime: str) -> ModuleType:
    """Import ``module`` or raise :class:`RuntimeNotAvailable` naming the runtime and how to get it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        top = module.split(".")[0]
        if top in NOT_INSTALLABLE:
            raise RuntimeNotAvailable(f"{runtime} is not available: {NOT_INSTALLABLE[top]}") from err
        raise RuntimeNotAvailable(f"{runtime} needs the Python package {top!r} ({err}); {_EXTRA_HINT}") from err


def check_input_size(input_size: Sequence[int]) -> tuple[int, int, int, int]:
    """``(B, 3, H, W)`` with positive ints, else a ValueError naming ``input_size``."""
    size = tuple(int(s) for s in input_size)
    if len(size) != 4 or min(size) < 1 or size[1] != 3:
        raise ValueError(f"input_size must be (B, 3, H, W) with positive entries, got {tuple(input_size)}")
    return size  # type: ignore[return-value]


def check_artifact(path, suffixes: Sequence[str], what: str) -> pathlib.Path:
    """An existing, non-empty file with one of ``suffixes``, else an error naming it."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} file {path} does not exist")
    if path.suffix not in suffixes:
        raise ValueError(f"{path}: expected a {what} file ({', '.join(suffixes)}), got suffix {path.suffix!r}")
    if path.stat().st_size == 0:
        raise ArtifactError(f"{path}: empty {what} file (truncated or an interrupted export)")
    return path

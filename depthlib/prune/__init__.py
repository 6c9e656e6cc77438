"""Pruning that makes depth networks smaller and faster, and the pruning that does not.

- :mod:`depthlib.prune.structured`: channel pruning on Torch-Pruning's dependency graph to a ratio, a MAC
  count or a measured latency, with L1 / L2 / Taylor importance; the result is a smaller *dense* network
  (:func:`prune`), saved and loaded with :func:`save_pruned` / :func:`load_pruned`.
- :mod:`depthlib.prune.netadapt`: NetAdapt (Yang et al., ECCV 2018), FastDepth's pruning, checkpointed and
  resumable (:func:`netadapt`), by MACs, parameters or measured latency.
- :mod:`depthlib.prune.ordinal`: yucel2021's pruned relative networks (Table 7), NetAdapt by parameter count
  then the pipeline's DIW fine-tune (:func:`ordinal_netadapt`).
- :mod:`depthlib.prune.unstructured`: haly2021's two sweeps with ``torch.nn.utils.prune`` (fine-grained L1
  and whole-layer), made permanent, with true non-zero counts and sizes on disk (:func:`sparsity_report`).

Evaluating a relative-depth model (MiDaS small) their way or correctly is a switch of
:func:`depthlib.train.evaluate`: ``align=None`` compares raw inverse depth with metres (haly2021's Tables 1-2),
``align="inverse"`` fits scale and shift by least squares in inverse depth first.
"""

from depthlib.prune.netadapt import HISTORY_COLUMNS, NetAdaptResult, load_iteration, netadapt, netadapt_fit
from depthlib.prune.structured import (IMPORTANCES, apply_shapes, channel_table, get_importance, load_pruned, prunable_layers,
                                       prune, save_pruned)
from depthlib.prune.unstructured import (HALY_FINE_SPARSITIES, HALY_LAYER_SPARSITIES, layers_by_magnitude, make_permanent,
                                         nominal_params, prune_unstructured, prune_whole_layers, sparsity_report)

__all__ = [
    "prune", "prunable_layers", "channel_table", "get_importance", "IMPORTANCES", "save_pruned", "load_pruned",
    "apply_shapes", "netadapt", "netadapt_fit", "load_iteration", "NetAdaptResult", "HISTORY_COLUMNS", "prune_unstructured", "prune_whole_layers",
    "make_permanent", "nominal_params", "sparsity_report", "layers_by_magnitude", "HALY_FINE_SPARSITIES",
    "HALY_LAYER_SPARSITIES",
]
from depthlib.prune.study import METHODS, ssi_disparity, sweep  # noqa: E402  (above train: imports it lazily)

__all__ += ["METHODS", "ssi_disparity", "sweep"]
from depthlib.prune.ordinal import ordinal_netadapt  # noqa: E402  (yucel2021's Table 7 pruned rows)

__all__ += ["ordinal_netadapt"]

"""Training: a plain PyTorch loop with the papers' optimisers and schedules, bit-identical resume,
the LR range test and DDP through torchrun.

- :class:`TrainConfig` the recipe (optimizer, schedule, loss, seeds, AMP, ...), validated.
- :func:`fit` trains, checkpoints ``out_dir/last.pt`` every epoch, resumes, returns the history; with a
  ``teacher`` and ``distill=[DistillTerm(...)]`` it distils (:mod:`depthlib.train.distill`).
- :class:`DistillTerm` a weighted distillation term (``"feature_l2"``, ``"pixel_rmse"`` on every head,
  ``"pairwise"``, ``"holistic"`` with a :class:`~depthlib.train.distill.DepthDiscriminator`);
  :class:`TeacherCache` the teacher's outputs per sample, shared across the fits of a seed sweep.
- :class:`TrainConfig` ``rebalance={...}``: Lee & Kim's multi-loss rebalancing inside ``fit`` (yucel2021: five
  times an epoch, hard losses first), the weights in the history (``w_<term>``), ``out_dir/rebalance.csv`` and
  ``df.attrs["rebalance"]``.
- :func:`fit_sequence` ``(model, stages, out_dir=None, *, resume=True, teacher=None, distill=None,
  teacher_cache=None, stop_after=None)`` sequential training (yucel2021's MC -> RedWeb -> DIW) as one call:
  each :class:`Stage` ``(name, train_data, config, val_data=None, distill=False)`` is one ``fit`` into
  ``out_dir/<k>-<name>``, starting from the previous stage's weights; resumable anywhere, bit-identically;
  returns all stages' rows with ``stage`` and ``global_epoch`` columns.
- :func:`evaluate` the depth metrics of a model over a dataset.
- :func:`lr_range_test` Smith's (2017) LR range test and a suggested LR.
- :func:`train_eval`, :func:`lr_search`, :func:`predict`: one run of a chapter (:mod:`depthlib.train.runs`).
- :func:`load_checkpoint` ``(path, model=None)`` reads a checkpoint or state dict file (``weights_only=True``);
  given a model, it checks the recorded preset and overrides, keys and shapes and loads the weights into it.
  The one way to read weights back (``depthlib.models`` has no loader of its own).
"""

from ._engine import seed_everything
from .checkpoint import load_checkpoint
from .config import TrainConfig
from .distill import DistillTerm, TeacherCache
from .loop import NonFiniteLossError, evaluate, fit
from .lr_finder import lr_range_test
from .sequence import Stage, fit_sequence
from .runs import build_model, lr_search, mean_valid_depth, predict, rebuild_model, train_eval, train_eval_run

__all__ = ["TrainConfig", "DistillTerm", "TeacherCache", "fit", "Stage", "fit_sequence", "evaluate", "lr_range_test", "load_checkpoint", "NonFiniteLossError",
           "build_model", "rebuild_model", "mean_valid_depth", "predict", "train_eval", "train_eval_run", "lr_search", "seed_everything"]

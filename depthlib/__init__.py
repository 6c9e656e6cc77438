"""depthlib: the building blocks of the book "Fast Monocular Depth on Mobile".

Subpackages
-----------
- :mod:`depthlib.data`     readers of the studies' dataset formats, protocol transforms, procedural scenes.
- :mod:`depthlib.models`   encoders, decoders and the registry of paper presets (``create_model``).
- :mod:`depthlib.losses`   masked depth losses, ranking and distillation losses.
- :mod:`depthlib.metrics`  depth metrics with explicit conventions.
- :mod:`depthlib.profiler` parameters, MACs, size and latency.
- :mod:`depthlib.train`    the training loop, schedules, LR range test, one run of a chapter (``train_eval``).
- :mod:`depthlib.transfer` procedural-only training evaluated on real NYU pairs (sim-to-real transfer).
- :mod:`depthlib.stats`    mean and spread over seeds, which differences survive (``summarize``, ``compare``).
- :mod:`depthlib.reported` the papers' numbers, recorded results and the scorecard join.
- :mod:`depthlib.book`     profiles, parameter checks, results cache, grids of runs, the book runner and its
  preflight. The top layer: nothing else in depthlib imports it, and the rest works from an installed wheel.
"""

__version__ = "0.1.0"

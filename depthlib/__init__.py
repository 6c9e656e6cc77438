"""depthlib: the building blocks of the book "Fast Monocular Depth on Mobile".

Subpackages
-----------
- :mod:`depthlib.data`     readers of the studies' dataset formats, protocol transforms, procedural scenes.
- :mod:`depthlib.models`   encoders, decoders and the registry of paper presets (``create_model``).
- :mod:`depthlib.losses`   masked depth losses, ranking and distillation losses.
- :mod:`depthlib.metrics`  depth metrics with explicit conventions.
- :mod:`depthlib.profiler` parameters, MACs, size and latency.
- :mod:`depthlib.train`    the training loop, schedules, LR range test.
- :mod:`depthlib.transfer` procedural-only training evaluated on real NYU pairs (sim-to-real transfer).
- :mod:`depthlib.book`     profiles, parameter checks, results cache and the book runner.
"""

__version__ = "0.1.0"

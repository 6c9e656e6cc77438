"""depthlib.deploy: the latency harness, exports and runtimes, quantization, accuracy checks, bad input."""

from __future__ import annotations

import functools
import importlib.util
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from torch import nn

from depthlib.deploy import (
    ArtifactError,
    ExecuTorchRunner,
    OrtRunner,
    RuntimeNotAvailable,
    TorchRunner,
    TvmRunner,
    accuracy_change,
    build_forms,
    calibration_batches,
    export_executorch,
    export_litert,
    export_onnx,
    gemm_peak,
    harness,
    load_runner,
    machine_info,
    measure_forms,
    onnx_input_size,
    onnx_int8_dynamic,
    onnx_int8_static,
    predict,
    time_fn,
    time_interleaved,
    time_isolated,
)
from depthlib.deploy._common import require
from depthlib.models import create_model

HAS_ET = importlib.util.find_spec("executorch") is not None
HAS_TVM = importlib.util.find_spec("tvm") is not None
# ExecuTorch and TVM load native runtimes with process-wide state (thread pools, LLVM): in the full suite, after the
# other test files, an ExecuTorch export once aborted the whole pytest process (it passes alone). Their round trips
# therefore run in a fresh pytest process started by test_native_runtimes_in_a_fresh_process, where an abort is
# one failing test with its output, not a dead suite.
IN_CHILD = os.environ.get("DEPTHLIB_DEPLOY_CHILD") == "1"
child_only = pytest.mark.skipif(not IN_CHILD, reason="runs in a fresh process: test_native_runtimes_in_a_fresh_process")


class FakeClock:
    """perf_counter replacement: time advances only when a timed function says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def work(self, ms: float):
        def fn():
            self.now += ms / 1e3
        return fn


# ---- harness ----------------------------------------------------------------------------------------------------

def test_time_fn_known_durations(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(harness.time, "perf_counter", clock)
    durations = iter([1000.0, 1000.0] + [10.0, 11.0, 12.0, 13.0, 50.0])  # 2 warm-up calls are slow, then 5 timed

    def fn():
        clock.now += next(durations) / 1e3

    t = time_fn(fn, warmup=2, repeats=5, threads=1)
    assert t.median_ms == pytest.approx(12.0)
    assert (t.q1_ms, t.q3_ms) == (pytest.approx(11.0), pytest.approx(13.0))
    assert t.iqr_ms == pytest.approx(2.0) and t.min_ms == pytest.approx(10.0)
    assert t.timer == "perf_counter" and t.repeats == 5 and not t.isolated


def test_time_fn_real_sleep_lower_bound():
    # sleep guarantees at least its duration: the median cannot be below it (no upper bound: a shared machine)
    t = time_fn(functools.partial(time.sleep, 0.01), warmup=1, repeats=3)
    assert t.median_ms >= 10.0


def test_time_fn_restores_threads_and_checks_arguments():
    before = torch.get_num_threads()
    seen = []
    time_fn(lambda: seen.append(torch.get_num_threads()), warmup=0, repeats=2, threads=2)
    assert seen == [2, 2] and torch.get_num_threads() == before
    with pytest.raises(ValueError, match="repeats"):
        time_fn(lambda: None, repeats=0)
    with pytest.raises(ValueError, match="warmup"):
        time_fn(lambda: None, warmup=-1)
    with pytest.raises(ValueError, match="threads"):
        time_fn(lambda: None, threads=0)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            time_fn(lambda: None, device="cuda")


def test_time_interleaved_rounds(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(harness.time, "perf_counter", clock)
    order = []

    def make(name, ms):
        def fn():
            order.append(name)
            clock.now += ms / 1e3
        return fn

    out = time_interleaved({"a": make("a", 5.0), "b": make("b", 20.0)}, warmup=1, repeats=4, rounds=2)
    assert out["a"].median_ms == pytest.approx(5.0) and out["b"].median_ms == pytest.approx(20.0)
    assert out["a"].repeats == 4
    # warm-up once each, then rounds alternate: a a a b b b | a a b b
    assert order == ["a"] * 3 + ["b"] * 3 + ["a"] * 2 + ["b"] * 2
    with pytest.raises(ValueError, match="rounds"):
        time_interleaved({"a": lambda: None}, repeats=2, rounds=3)


@pytest.mark.slow
def test_time_isolated_runs_in_a_child_process():
    # factory(*args) builds the timed callable inside a fresh process
    t = time_isolated(functools.partial, time.sleep, 0.005, warmup=0, repeats=2)
    assert t.isolated and t.median_ms >= 5.0


def test_machine_info_and_gemm_peak():
    info = machine_info()
    assert {"cpu", "flags", "logical_cpus", "torch"} <= set(info)
    g = gemm_peak(1, n=64, repeats=2)
    assert g["gmac_per_s"] > 0 and g["n"] == 64
    with pytest.raises(ValueError, match="n must be"):
        gemm_peak(1, n=4)


def test_latency_record_gmacs():
    t = harness.Timing(median_ms=10.0, q1_ms=9.0, q3_ms=11.0, min_ms=8.0, repeats=3, warmup=1, threads=2,
                       device="cpu", timer="perf_counter", isolated=False)
    row = harness.latency_record(t, runtime="onnxruntime", precision="fp32", input_size=(1, 3, 8, 8),
                                 macs=2_000_000_000, peak_gmac_per_s=400.0, machine=machine_info())
    assert row["gmac_per_s"] == pytest.approx(200.0) and row["fraction_of_peak"] == pytest.approx(0.5)
    assert row["input_size"] == "1x3x8x8" and row["threads"] == 2 and row["iqr_ms"] == pytest.approx(2.0)


# ---- exports and runtimes ----------------------------------------------------------------------------------------

def _eager(model, x):
    return TorchRunner(model)(x)


@pytest.mark.parametrize("name,size", [("fastdepth", (64, 64)), ("mai2021-1", (96, 128)),
                                       ("mbv2-nnconv5", (64, 64))])
def test_onnx_round_trip(tmp_path, name, size):
    # FastDepth, a MAI-2021 preset (its resize layers inside the graph) and a Yucel et al. preset
    torch.manual_seed(0)
    model = create_model(name).eval()
    x = torch.rand(1, 3, *size)
    path = export_onnx(model, tmp_path / f"{name}.onnx", x.shape)
    runner = load_runner(path, threads=1)
    assert isinstance(runner, OrtRunner) and runner.input_shape == tuple(x.shape)
    out, ref = runner(x), _eager(model, x)
    assert out.shape == (1, 1, *size)
    np.testing.assert_allclose(out, ref, rtol=1e-3, atol=1e-4)
    assert onnx_input_size(path) == tuple(x.shape)


def test_onnx_fp16_halves_the_file_and_stays_close(tmp_path):
    model = create_model("fastdepth").eval()
    x = torch.rand(1, 3, 64, 64)
    p32 = export_onnx(model, tmp_path / "a.onnx", x.shape)
    p16 = export_onnx(model, tmp_path / "b.onnx", x.shape, precision="fp16")
    assert p16.stat().st_size < 0.6 * p32.stat().st_size
    ref = _eager(model, x)
    np.testing.assert_allclose(OrtRunner(p16, precision="fp16")(x), ref, atol=0.02 * np.abs(ref).max() + 1e-3)
    assert next(model.parameters()).dtype == torch.float32  # the model itself is not cast


def test_writers_do_not_overwrite(tmp_path):
    model = create_model("fastdepth").eval()
    path = export_onnx(model, tmp_path / "m.onnx", (1, 3, 32, 32))
    with pytest.raises(FileExistsError, match="overwrite"):
        export_onnx(model, path, (1, 3, 32, 32))
    export_onnx(model, path, (1, 3, 32, 32), overwrite=True)


def test_static_export_rejects_other_shapes(tmp_path):
    path = export_onnx(create_model("fastdepth"), tmp_path / "m.onnx", (1, 3, 64, 64))
    runner = OrtRunner(path)
    with pytest.raises(ValueError, match=r"\(1, 3, 64, 64\)"):
        runner(np.zeros((1, 3, 96, 96), np.float32))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        runner(np.zeros((3, 64, 64), np.float32))


def test_corrupt_and_truncated_files_name_the_file(tmp_path):
    good = export_onnx(create_model("fastdepth"), tmp_path / "m.onnx", (1, 3, 32, 32))
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"this is not a model" * 10)
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    for bad in (truncated, garbage, empty):
        with pytest.raises(ArtifactError, match=bad.name):
            OrtRunner(bad)
    with pytest.raises(FileNotFoundError, match="missing.onnx"):
        OrtRunner(tmp_path / "missing.onnx")
    with pytest.raises(ValueError, match="suffix"):
        load_runner(tmp_path / "model.bin")


def test_missing_runtime_names_the_extra():
    with pytest.raises(RuntimeNotAvailable, match=r"\[deploy\]"):
        require("surely_not_a_module_xyz", "Some runtime")


def test_litert_is_reported_not_available_with_the_resolver_reason(tmp_path):
    if importlib.util.find_spec("litert_torch") is not None:
        pytest.skip("litert-torch is installed here: the conversion path is exercised instead")
    with pytest.raises(RuntimeNotAvailable, match="torch<2.14"):
        export_litert(create_model("fastdepth"), tmp_path / "m.tflite", (1, 3, 32, 32))


def test_torch_runner_modes_checked():
    model = create_model("fastdepth")
    with pytest.raises(ValueError, match="mode"):
        TorchRunner(model, mode="fast")
    with pytest.raises(ValueError, match="input_shape"):
        TorchRunner(model, mode="compile")
    with pytest.raises(ValueError, match="CUDA"):
        TorchRunner(model, mode="cudagraphs", input_shape=(1, 3, 32, 32))


# ---- quantization ------------------------------------------------------------------------------------------------

def test_calibration_set_checks():
    with pytest.raises(ValueError, match="empty"):
        calibration_batches([], (1, 3, 32, 32))
    with pytest.raises(ValueError, match=r"32x32"):
        calibration_batches(torch.rand(4, 3, 64, 64), (1, 3, 32, 32))
    assert len(calibration_batches(torch.rand(5, 3, 32, 32), (2, 3, 32, 32))) == 2
    samples = [{"image": torch.rand(3, 32, 32)} for _ in range(3)]
    assert len(calibration_batches(samples, (1, 3, 32, 32))) == 3


def test_int8_static_keeps_outputs_close(tmp_path):
    torch.manual_seed(0)
    model = create_model("fastdepth").eval()
    images = torch.rand(8, 3, 64, 64)
    fp32 = export_onnx(model, tmp_path / "m.onnx", (1, 3, 64, 64))
    q = onnx_int8_static(fp32, tmp_path / "q.onnx", images[:6])
    ref = predict(OrtRunner(fp32), images[6:])
    out = predict(OrtRunner(q, precision="int8-static"), images[6:])
    # int8 noise relative to the output's spread: a small fraction of it, not a different model
    assert float((out - ref).abs().mean() / ref.std()) < 0.15
    assert q.stat().st_size < 0.4 * fp32.stat().st_size
    with pytest.raises(ValueError, match="empty"):
        onnx_int8_static(fp32, tmp_path / "q2.onnx", torch.empty(0, 3, 64, 64))
    with pytest.raises(ValueError, match="64x64"):
        onnx_int8_static(fp32, tmp_path / "q3.onnx", torch.rand(2, 3, 32, 32))


def test_int8_dynamic_runs(tmp_path):
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 1, 1)).eval()
    fp32 = export_onnx(model, tmp_path / "m.onnx", (1, 3, 16, 16))
    q = onnx_int8_dynamic(fp32, tmp_path / "d.onnx")
    x = torch.rand(1, 3, 16, 16)
    ref = OrtRunner(fp32)(x)
    assert np.abs(OrtRunner(q)(x) - ref).max() < 0.1 * np.abs(ref).max() + 1e-3


# ---- accuracy and the side-by-side table -------------------------------------------------------------------------

def test_accuracy_change_known_values():
    depth = torch.full((2, 1, 4, 4), 2.0)
    ref = torch.full((2, 1, 4, 4), 2.2)
    same = accuracy_change(ref.clone(), ref, depth)
    assert same["max_abs_diff"] == 0 and same["delta1_change"] == 0 and same["rmse_change_pct"] == 0
    worse = accuracy_change(depth * 1.5, depth * 1.1, depth)  # RMSE 0.2 -> 1.0, delta1 1 -> 0 (1.5 > 1.25)
    assert worse["rmse_change_pct"] == pytest.approx(400.0, rel=1e-4)
    assert worse["delta1_change"] == pytest.approx(-1.0)
    assert worse["max_abs_diff"] == pytest.approx(0.8)
    with pytest.raises(ValueError, match="same"):
        accuracy_change(ref, ref[:1], depth)


def test_build_and_measure_forms(tmp_path):
    torch.manual_seed(0)
    model = create_model("fastdepth").eval()
    images = torch.rand(4, 3, 32, 32)
    depths = torch.rand(4, 1, 32, 32) * 3 + 0.5
    forms = build_forms(model, tmp_path, (1, 3, 32, 32),
                        forms=[("pytorch", "fp32"), ("onnxruntime", "fp32"), ("onnxruntime", "int8-static"),
                               ("litert", "fp32")], calibration=images[:2])
    assert [f.available for f in forms][:3] == [True, True, True]
    table = measure_forms(forms, threads=(1,), images=images[2:], depths=depths[2:], macs=10**6, warmup=1,
                          repeats=2, rounds=1, peak=False)
    ok = table[table["available"]].set_index(["runtime", "precision"])
    assert ok.loc[("pytorch", "fp32"), "ratio_eager"] == pytest.approx(1.0)
    assert ok.loc[("onnxruntime", "fp32"), "ratio_ort"] == pytest.approx(1.0)
    assert ok.loc[("onnxruntime", "fp32"), "max_abs_diff"] < 1e-3
    assert (ok["median_ms"] > 0).all() and (ok["gmac_per_s"] > 0).all()
    if importlib.util.find_spec("litert_torch") is None:
        row = table[table["runtime"] == "litert"].iloc[0]
        assert not row["available"] and "torch<2.14" in row["reason"]
    with pytest.raises(ValueError, match="unknown form"):
        build_forms(model, tmp_path, (1, 3, 32, 32), forms=[("coreml", "fp32")])


# ---- the other runtimes (the [deploy] extra) ---------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.native
@pytest.mark.skipif(not (HAS_ET or HAS_TVM), reason="executorch and apache-tvm are not installed (the [deploy] extra)")
def test_native_runtimes_in_a_fresh_process():
    # os._exit: the tests' verdict is pytest's exit code; ExecuTorch's and TVM's native libraries can crash in
    # the interpreter's teardown after every test has passed (seen here: SIGSEGV at exit), which is not a result
    # of the round trips. A crash during a test still fails it (no exit code comes back).
    runner = (f"import os, pytest; os._exit(pytest.main(['-q', '-p', 'no:cacheprovider', {str(__file__)!r}, "
              "'-k', 'executorch_round_trip or tvm_round_trip']))")
    run = subprocess.run([sys.executable, "-c", runner],
                         env={**os.environ, "DEPTHLIB_DEPLOY_CHILD": "1"}, capture_output=True, text=True, timeout=1500)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    assert " passed" in run.stdout and "skipped" not in run.stdout.splitlines()[-1], run.stdout[-2000:]


@pytest.mark.slow
@child_only
@pytest.mark.skipif(not HAS_ET, reason="executorch is not installed (the [deploy] extra)")
def test_executorch_round_trip_and_int8(tmp_path):
    torch.manual_seed(0)
    model = create_model("fastdepth").eval()
    images = torch.rand(4, 3, 64, 64)
    path = export_executorch(model, tmp_path / "m.pte", (1, 3, 64, 64))
    runner = load_runner(path, threads=1)
    assert isinstance(runner, ExecuTorchRunner) and runner.input_shape == (1, 3, 64, 64)
    ref = _eager(model, images[:1])
    np.testing.assert_allclose(runner(images[:1]), ref, rtol=1e-3, atol=1e-4)
    with pytest.raises(ValueError, match=r"\(1, 3, 64, 64\)"):
        runner(np.zeros((1, 3, 32, 32), np.float32))
    q = export_executorch(model, tmp_path / "q.pte", (1, 3, 64, 64), quantize="int8", calibration=images[:3])
    # The int8 program loads with the export's shape. It is not executed here: executing it at this size
    # segfaulted inside executorch's execute() in about one run of three on this machine (XNNPACK int8; the 224x224
    # benchmark runs it without fault); kept out of the suite until that is understood.
    assert ExecuTorchRunner(q, precision="int8-static").input_shape == (1, 3, 64, 64)
    bad = tmp_path / "bad.pte"
    bad.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ArtifactError, match="bad.pte"):
        ExecuTorchRunner(bad)


@pytest.mark.slow
@child_only
@pytest.mark.skipif(not HAS_TVM, reason="apache-tvm is not installed (the [deploy] extra)")
def test_tvm_round_trip(tmp_path):
    from depthlib.deploy import build_tvm

    torch.manual_seed(0)
    model = create_model("fastdepth").eval()
    x = torch.rand(1, 3, 32, 32)
    path = build_tvm(model, tmp_path / "m.so", x.shape)
    affinity = os.sched_getaffinity(0)
    runner = load_runner(path, threads=1)
    assert isinstance(runner, TvmRunner) and runner.input_shape == (1, 3, 32, 32)
    np.testing.assert_allclose(runner(x), _eager(model, x), rtol=1e-3, atol=1e-4)
    runner.bind(x)()
    # TVM's thread pool pinned the calling thread to core 0: every runtime timed after it then ran on one core
    assert os.sched_getaffinity(0) == affinity
    bad = tmp_path / "bad.so"
    bad.write_bytes(b"\x7fELF" + b"\0" * 64)
    (tmp_path / "bad.so.json").write_text('{"input_shape": [1, 3, 32, 32]}')
    with pytest.raises(ArtifactError, match="bad.so"):
        TvmRunner(bad)


def test_briefly_trained_predicts_at_the_scale_of_its_data():
    """The deployment check's weights must have a metric scale: with FastDepth's head at 0 m a few dozen Adam
    steps left about half the pixels at 0 m, so every accuracy change of a shipped form was noise."""
    from depthlib.data import open_dataset
    from depthlib.deploy.forms import briefly_trained

    data = list(open_dataset("synth", n=8, size=(64, 64), seed=0))
    model = briefly_trained("fastdepth", data, epochs=1).eval()
    depth = torch.cat([s["depth"][s["mask"]] for s in data])
    with torch.no_grad():
        pred = model(torch.stack([s["image"] for s in data]))
    assert float((pred <= 0).float().mean()) < 0.05
    assert 0.5 < float(pred.median()) / float(depth.median()) < 2.0


def test_ort_runner_does_not_spin_unless_asked(tmp_path):
    # a spinning ORT worker held the second core after each run: the next runtime timed beside it ran 2x slower
    path = export_onnx(create_model("fastdepth").eval(), tmp_path / "m.onnx", (1, 3, 32, 32))
    for spinning, value in ((False, "0"), (True, "1")):
        opts = OrtRunner(path, threads=2, spinning=spinning).session.get_session_options()
        assert opts.get_session_config_entry("session.intra_op.allow_spinning") == value
    with pytest.raises(ValueError, match="spinning"):
        OrtRunner(path, spinning="no")

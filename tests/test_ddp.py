"""fit() under DDP: ``torchrun --nproc_per_node 2`` with the gloo backend on the CPU.

The file is also the worker script torchrun runs. What is checked:

- both ranks end with bit-identical parameters (DDP applies the same all-reduced gradient everywhere);
- the 2-process run equals a single-process run with the same global batch, up to float rounding
  (the all-reduce sums in another order). This holds here because the setting makes the two runs the
  same mathematical optimisation: ``fit`` draws the data order from ``DistributedSampler`` in both
  cases, so the 2 local batches of 2 together are the single process's batch of 4; the model has no
  BatchNorm (per-rank batch statistics would differ) and no dropout/augmentation (per-rank RNG
  streams); every pixel is valid, so the mean of the two local masked L1 means equals the global mean;
- only rank 0 wrote the checkpoint, and it records the 2 ranks' RNG states;
- with a teacher (feature L2 through a 1x1 adapter, which lives outside the DDP-wrapped student, and the
  pair-wise term; both are means over the batch, so two local halves average to the global one) the same holds,
  the adapter's gradients averaged over the ranks included.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

REPO = pathlib.Path(__file__).resolve().parents[1]
SIZE = (12, 12)


class SmallNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 6, 3, padding=1)
        self.c2 = nn.Conv2d(6, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.softplus(self.c2(F.relu(self.c1(x)))) + 0.1


class AllValid(Dataset):
    def __len__(self) -> int:
        return 16

    def __getitem__(self, i: int) -> dict:
        g = torch.Generator().manual_seed(1000 + i)
        image = torch.rand(3, *SIZE, generator=g)
        depth = 1.0 + 2.0 * image[:1] + image[2:]
        return {"image": image, "depth": depth, "mask": torch.ones_like(depth, dtype=torch.bool), "path": f"v:{i}"}


def make_run():
    from depthlib.train import TrainConfig

    torch.manual_seed(0)
    model = SmallNet()
    cfg = TrainConfig(epochs=2, batch_size=4, optimizer="sgd", lr=0.05, momentum=0.9, schedule="step",
                      step_size=1, gamma=0.5, loss="l1", progress=False, seed=7)
    return model, cfg


class WideTeacher(SmallNet):
    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 9, 3, padding=1)
        self.c2 = nn.Conv2d(9, 1, 3, padding=1)


def distillation() -> dict:
    from depthlib.train import DistillTerm

    torch.manual_seed(5)
    return {"teacher": WideTeacher(), "distill": [DistillTerm("feature_l2", 1.0, "c1", "c1"),
                                                  DistillTerm("pairwise", 1.0, "c1", "c1", options={"scale": None})]}


def _worker(out: pathlib.Path, distil: bool = False) -> None:
    """Run by torchrun in each of the 2 processes."""
    from depthlib.train import fit

    model, cfg = make_run()
    history = fit(model, AllValid(), AllValid(), cfg, out_dir=out / "ckpt", **(distillation() if distil else {}))
    rank = int(os.environ["RANK"])
    torch.save({"state": model.state_dict(), "history": history.to_dict(orient="list"),
                "world_size": int(os.environ["WORLD_SIZE"])}, out / f"rank{rank}.pt")


def _torchrun(tmp_path: pathlib.Path, *args: str) -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(pathlib.Path(__file__)), str(tmp_path), *args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def test_ddp_two_processes_match_each_other_and_one_process(tmp_path):
    _torchrun(tmp_path)

    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert r0["world_size"] == 2
    for k in r0["state"]:
        assert torch.equal(r0["state"][k], r1["state"][k]), k
    assert r0["history"] == r1["history"]  # rank 0's row is broadcast

    from depthlib.train import fit, load_checkpoint

    model, cfg = make_run()
    single = fit(model, AllValid(), AllValid(), cfg)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(r0["state"][k], v, rtol=1e-5, atol=1e-6)
    for col in ("train_loss", "val_rmse", "val_delta1", "val_absrel", "lr"):
        torch.testing.assert_close(torch.tensor(r0["history"][col]), torch.tensor(single[col].to_list()),
                                   rtol=1e-5, atol=1e-7)
    # the run did train: the parameters moved away from the initialisation
    init, _ = make_run()
    assert not torch.allclose(init.c1.weight, model.c1.weight)

    ckpt_dir = tmp_path / "ckpt"
    assert sorted(p.name for p in ckpt_dir.iterdir()) == ["history.csv", "last.pt"]
    ckpt = load_checkpoint(ckpt_dir / "last.pt")
    assert ckpt["epoch"] == 2 and ckpt["world_size"] == 2 and len(ckpt["rng"]) == 2
    for k, v in ckpt["model"].items():  # saved unwrapped: no "module." prefix, loadable without DDP
        assert torch.equal(v, r0["state"][k])


def test_ddp_with_a_teacher_matches_one_process_adapter_included(tmp_path):
    _torchrun(tmp_path, "distil")
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    for k in r0["state"]:
        assert torch.equal(r0["state"][k], r1["state"][k]), k
    from depthlib.train import fit, load_checkpoint

    model, cfg = make_run()
    single = fit(model, AllValid(), AllValid(), cfg, out_dir=tmp_path / "single", **distillation())
    for k, v in model.state_dict().items():
        torch.testing.assert_close(r0["state"][k], v, rtol=1e-5, atol=1e-6)
    for col in ("train_loss", "train_feature_l2", "train_pairwise", "val_rmse"):
        torch.testing.assert_close(torch.tensor(r0["history"][col]), torch.tensor(single[col].to_list()),
                                   rtol=1e-5, atol=1e-7)
    ddp_adapter = load_checkpoint(tmp_path / "ckpt" / "last.pt")["distill"]["adapters"]
    one_adapter = load_checkpoint(tmp_path / "single" / "last.pt")["distill"]["adapters"]
    assert tuple(ddp_adapter["feature_l2.weight"].shape) == (9, 6, 1, 1)
    for k, v in one_adapter.items():
        torch.testing.assert_close(ddp_adapter[k], v, rtol=1e-5, atol=1e-6)


if __name__ == "__main__":
    _worker(pathlib.Path(sys.argv[1]), distil=sys.argv[2:] == ["distil"])

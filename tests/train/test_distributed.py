"""torchrun with the gloo backend, 2 processes: data-parallel training equals one process."""

import json
import shutil
import subprocess
import sys

import pytest
import torch
import yaml
from safetensors.torch import load_file

from tests.conftest import SHARED_DATA

pytestmark = pytest.mark.distributed


def _weights(out):
    ckpt = out / "checkpoints"
    return load_file(str(ckpt / (ckpt / "latest").read_text().strip() / "model.safetensors"))


@pytest.mark.skipif(
    not (SHARED_DATA / "moleculenet" / "delaney.csv").exists(), reason="shared data missing"
)
@pytest.mark.needs("rdkit")
def test_two_process_gloo_run_matches_single_process(tmp_path):
    cfg = {
        "seed": 0,
        "data": {
            "source": "table",
            "path": str(SHARED_DATA / "moleculenet" / "delaney.csv"),
            "featurizer": {"kind": "ecfp", "bits": 256},
        },
        "tasks": [{"name": "logp", "kind": "regression"}],
        "model": {"trunk": {"hidden": [32], "dropout": 0.0}},
        "train": {"steps": 8, "batch_size": 64, "eval_every": 4, "grad_clip": None},
    }  # fully labelled data and an even batch: the averaged gradient is the full-batch gradient
    path = tmp_path / "reg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    torchrun = shutil.which("torchrun") or f"{sys.executable} -m torch.distributed.run"
    common = ["-m", "polytask.cli.main", "train", str(path), "--no-progress"]
    one = subprocess.Popen(
        [sys.executable, *common, "--out", str(tmp_path / "one")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )  # the single-process reference, beside the torchrun
    ddp = subprocess.run(
        [*torchrun.split(), "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port", "29517", *common, "--out", str(tmp_path / "ddp")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert ddp.returncode == 0, ddp.stderr[-2000:]
    _, err = one.communicate(timeout=300)
    assert one.returncode == 0, err[-2000:]
    w_ddp, w_one = _weights(tmp_path / "ddp"), _weights(tmp_path / "one")
    assert w_ddp.keys() == w_one.keys()
    for k in w_one:
        torch.testing.assert_close(w_ddp[k], w_one[k], rtol=1e-5, atol=1e-6)
    assert ddp.stdout.count("report.json") == 1  # only rank 0 reports
    # rank 0 logged the loss of its half of the batch, not of the whole batch: the data was sharded
    first = [
        json.loads((tmp_path / run / "logs" / "train.jsonl").read_text().splitlines()[0])["loss"]
        for run in ("ddp", "one")
    ]
    assert first[0] != pytest.approx(first[1], rel=1e-4)


def test_shard_keeps_contrastive_pairs_together() -> None:
    from polytask.tasks.data import Group
    from polytask.tasks.ssl import partner_targets
    from polytask.train.distributed import shard

    b = 5
    x = torch.arange(b, dtype=torch.float32)
    views = torch.cat([x, x + 100.0])[:, None]  # row i and its partner: same value mod 100
    group = Group(views, {"views": partner_targets(b)}, frozenset({"views"}))
    seen: list[float] = []
    for rank in range(2):
        (part,) = shard([group], rank, 2)
        t = part.targets["views"].long()
        rows = part.inputs[:, 0]  # type: ignore[index]
        assert torch.equal(t[t], torch.arange(len(t)))  # an involution on the kept rows
        assert torch.equal(rows % 100, rows[t] % 100)  # each row's partner is its other view
        assert part.paired == frozenset({"views"})
        seen += rows.tolist()
    assert sorted(seen) == sorted(views[:, 0].tolist())  # the ranks split the rows exactly

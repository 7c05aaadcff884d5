"""Multi-modal trunk: a masked or missing modality never reaches the forward pass."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from polytask._core import PolytaskError
from polytask.models import MultiTaskModel, build_heads
from polytask.models.multimodal import MASK_KEY, MultiModalTrunk, multimodal_trunk
from polytask.tasks import Task, TaskSet
from polytask.tasks.data import JointLoader, TensorData
from polytask.tasks.ssl.modality_mask import (
    MASK_KEY as SSL_MASK_KEY,
)
from polytask.tasks.ssl.modality_mask import (
    ModalityMaskLoader,
    ModalityMaskPretext,
    draw_modality_mask,
)
from polytask.train import Trainer


def _model(fusion: str, batch_norm: bool = False) -> MultiTaskModel:
    torch.manual_seed(0)
    enc = {
        "a": nn.Sequential(nn.Linear(6, 4), nn.BatchNorm1d(4) if batch_norm else nn.Identity()),
        "b": nn.Sequential(nn.Linear(3, 4), nn.Tanh()),
    }
    for m in enc.values():
        m.out_dim = 4  # type: ignore[assignment]
    trunk = MultiModalTrunk(enc, fusion)  # type: ignore[arg-type]
    tasks = [Task("y", "binary"), Task("r", "regression")]
    return MultiTaskModel(trunk, build_heads(tasks, trunk.out_dim))


def _inputs(seed: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"a": torch.randn(5, 6, generator=g), "b": torch.randn(5, 3, generator=g)}


def _run(model: MultiTaskModel, inputs: dict[str, torch.Tensor]) -> tuple[dict, dict]:
    model.zero_grad(set_to_none=True)
    out = model(inputs)
    (out["y"].sum() + out["r"].pow(2).sum()).backward()
    grads = {
        n: (p.grad.clone() if p.grad is not None else None) for n, p in model.named_parameters()
    }
    return {k: v.detach() for k, v in out.items()}, grads


@pytest.mark.parametrize("fusion", ["mean", "attention", "concat"])
def test_masked_modality_never_leaks(fusion: str) -> None:
    model = _model(fusion, batch_norm=True)
    x = _inputs()
    mask = torch.tensor([[1, 0], [1, 1], [0, 1], [1, 0], [1, 1]], dtype=torch.bool)
    out1, g1 = _run(model, {**x, MASK_KEY: mask})
    # change the masked entries of every modality, including NaN and Inf
    x2 = {k: v.clone() for k, v in x.items()}
    x2["b"][~mask[:, 1]] = torch.tensor([float("nan"), float("inf"), 1e30])
    x2["a"][~mask[:, 0]] = -7.0
    out2, g2 = _run(model, {**x2, MASK_KEY: mask})
    for k in out1:
        assert torch.equal(out1[k], out2[k])
    for n in g1:
        assert (g1[n] is None and g2[n] is None) or torch.equal(g1[n], g2[n]), n
    # and the unmasked entries do matter
    x3 = {k: v.clone() for k, v in x.items()}
    x3["b"][1] += 1.0
    out3, _ = _run(model, {**x3, MASK_KEY: mask})
    assert not torch.equal(out1["y"][1], out3["y"][1])
    assert torch.equal(out1["y"][0], out3["y"][0])  # row 0 never sees modality b


def test_masked_out_encoder_gets_no_gradient() -> None:
    model = _model("mean")
    x = _inputs()
    mask = torch.zeros(5, 2, dtype=torch.bool)
    mask[:, 0] = True
    _, grads = _run(model, {**x, MASK_KEY: mask})
    assert all(grads[n] is None for n in grads if n.startswith("trunk.encoders.b."))
    assert all(grads[n] is not None for n in grads if n.startswith("trunk.encoders.a."))
    # a missing key is the same as a column of False
    model2 = _model("mean")
    _, grads2 = _run(model2, {"a": x["a"]})
    for n in grads:
        assert (grads[n] is None and grads2[n] is None) or torch.equal(grads[n], grads2[n])


def test_mean_fusion_values_and_missing_modality() -> None:
    enc = {"a": nn.Identity(), "b": nn.Identity()}
    for m in enc.values():
        m.out_dim = 2  # type: ignore[attr-defined]
    trunk = MultiModalTrunk(enc, "mean")  # type: ignore[arg-type]
    a = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    b = torch.tensor([[5.0, 6.0], [7.0, 8.0]])
    assert trunk(a=a, b=b).tolist() == [[3.0, 4.0], [5.0, 6.0]]
    assert trunk(a=a).tolist() == a.tolist()  # b missing at inference
    mask = torch.tensor([[True, False], [False, True]])
    assert trunk(a=a, b=b, modality_mask=mask).tolist() == [[1.0, 2.0], [7.0, 8.0]]
    none = torch.zeros(2, 2, dtype=torch.bool)
    assert trunk(a=a, b=b, modality_mask=none).tolist() == [[0.0, 0.0], [0.0, 0.0]]
    concat = MultiModalTrunk(enc, "concat")  # type: ignore[arg-type]
    assert concat(b=b).tolist() == [[0.0, 0.0, 5.0, 6.0], [0.0, 0.0, 7.0, 8.0]]


def test_attention_fusion_is_softmax_over_present() -> None:
    enc = {"a": nn.Identity(), "b": nn.Identity()}
    for m in enc.values():
        m.out_dim = 1  # type: ignore[attr-defined]
    trunk = MultiModalTrunk(enc, "attention")  # type: ignore[arg-type]
    assert trunk.score is not None
    with torch.no_grad():
        trunk.score.weight.fill_(1.0)
        trunk.score.bias.fill_(0.0)
    a, b = torch.tensor([[0.0]]), torch.tensor([[torch.log(torch.tensor(3.0)).item()]])
    # scores 0 and ln 3 -> weights 1/4 and 3/4 -> 0.75 * ln 3
    assert trunk(a=a, b=b).item() == pytest.approx(0.75 * 1.0986123, abs=1e-6)
    assert trunk(a=a, b=b, modality_mask=torch.tensor([[True, False]])).item() == 0.0


def test_trunk_errors() -> None:
    t = multimodal_trunk({"a": 4, "b": 2}, (3,))
    with pytest.raises(PolytaskError, match="unknown modality 'c'"):
        t(a=torch.zeros(2, 4), c=torch.zeros(2, 1))
    with pytest.raises(PolytaskError, match=r"modality_mask must be \[2, 2\]"):
        t(a=torch.zeros(2, 4), modality_mask=torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(PolytaskError, match="one output width"):
        MultiModalTrunk(
            {"a": multimodal_trunk({"x": 2}, (3,)), "b": multimodal_trunk({"x": 2}, (4,))}
        )
    with pytest.raises(PolytaskError, match="reserved"):
        multimodal_trunk({"modality_mask": 2}, (3,))
    assert MASK_KEY == SSL_MASK_KEY


def test_draw_mask_keeps_one_and_respects_availability() -> None:
    avail = torch.tensor([[True, True, True]] * 500 + [[False, True, False]] * 10)
    m = draw_modality_mask(avail, 0.9, torch.Generator().manual_seed(3))
    assert bool(m.any(dim=1).all())
    assert not bool((m & ~avail).any())
    assert torch.equal(m[500:], avail[500:])  # the only available modality is always kept
    # p = 0.9 over 3 modalities: each kept w.p. 0.1 plus the re-kept one of the 0.729 empty rows
    assert m[:500].float().mean().item() == pytest.approx(0.1 + 0.729 / 3, abs=0.04)


def _data() -> TensorData:
    g = torch.Generator().manual_seed(0)
    inputs = {"a": torch.randn(40, 6, generator=g), "b": torch.randn(40, 3, generator=g)}
    return TensorData(inputs, {"y": (torch.rand(40, generator=g) > 0.5).float()})


def test_mask_loader_targets_and_resume() -> None:
    base = JointLoader(_data(), 16, seed=1)
    loader = ModalityMaskLoader(base, ("a", "b"), p=0.5, seed=2, reconstruct={"rec_b": "b"})
    (g,) = loader.batch(3)
    mask = g.inputs[MASK_KEY]
    assert mask.shape == (16, 2) and bool(mask.any(dim=1).all())
    target = g.targets["rec_b"]
    masked_b = ~mask[:, 1]
    assert bool(masked_b.any()) and bool(mask[:, 1].any())
    assert torch.equal(target[masked_b], g.inputs["b"][masked_b])
    assert bool(torch.isnan(target[~masked_b]).all())
    assert torch.equal(g.targets["y"], base.batch(3)[0].targets["y"])
    # same (seed, step) -> same batch, whatever came before
    fresh = ModalityMaskLoader(JointLoader(_data(), 16, seed=1), ("a", "b"), 0.5, 2, {"rec_b": "b"})
    assert torch.equal(fresh.batch(3)[0].inputs[MASK_KEY], mask)
    with pytest.raises(PolytaskError, match="reconstructs modality 'c'"):
        ModalityMaskLoader(base, ("a", "b"), reconstruct={"rec": "c"})


def test_mask_pretext() -> None:
    x = _data().inputs
    assert isinstance(x, dict)
    pretext = ModalityMaskPretext(("a", "b"), "a", p=0.5)
    seen, target = pretext(x, torch.Generator().manual_seed(0))
    assert isinstance(seen, dict)
    masked = ~seen[MASK_KEY][:, 0]
    assert torch.equal(target[masked], x["a"][masked])
    assert bool(torch.isnan(target[~masked]).all())
    with pytest.raises(PolytaskError, match="reconstruction target 'c'"):
        ModalityMaskPretext(("a", "b"), "c")


def _fit(out, steps: int, resume: bool = False) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    trunk = multimodal_trunk({"a": 6, "b": 3}, (8,), dropout=0.1)
    tasks = [Task("y", "binary"), Task("rec_b", "reconstruction", num_classes=3, auxiliary=True)]
    model = MultiTaskModel(trunk, build_heads(tasks, trunk.out_dim))
    loader = ModalityMaskLoader(JointLoader(_data(), 8, seed=1), ("a", "b"), 0.5, 2, {"rec_b": "b"})
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    Trainer(
        model, TaskSet(tasks), loader, opt, max_steps=steps, out_dir=out, checkpoint_every=3,
        progress=False,
    ).fit(resume=resume)  # fmt: skip
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_masked_training_resumes_bit_identically(tmp_path) -> None:
    straight = _fit(tmp_path / "a", 6)
    _fit(tmp_path / "b", 3)
    resumed = _fit(tmp_path / "b", 6, resume=True)
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)

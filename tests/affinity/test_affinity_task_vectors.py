"""Task-vector cosine, streamed per tensor, equals the in-memory cosine; mismatched bases fail."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from polytask._core import PolytaskError
from polytask.affinity import task_vector_similarity, task_vector_similarity_from_paths

SHAPES = {"enc.0.weight": (6, 5), "enc.0.bias": (6,), "enc.1.weight": (4, 6), "head.weight": (2, 4)}


class DictReader:
    """An in-memory reader that records which keys were read and how often."""

    def __init__(self, tensors: dict[str, torch.Tensor], name: str) -> None:
        self.tensors, self.name, self.reads = tensors, name, []

    def keys(self) -> list[str]:
        return list(self.tensors)

    def get(self, key: str) -> torch.Tensor:
        self.reads.append(key)
        return self.tensors[key].clone()


def _models(
    seed: int = 0, m: int = 3
) -> tuple[dict[str, torch.Tensor], list[dict[str, torch.Tensor]]]:
    gen = torch.Generator().manual_seed(seed)
    base = {k: torch.randn(s, generator=gen) for k, s in SHAPES.items()}
    base["steps"] = torch.tensor([3], dtype=torch.int64)  # integer buffer: skipped
    fts = []
    for t in range(m):
        ft = {
            k: v + 0.1 * (t + 1) * torch.randn(v.shape, generator=gen)
            if v.is_floating_point()
            else v.clone()
            for k, v in base.items()
        }
        fts.append(ft)
    return base, fts


def _in_memory_cosine(
    base: dict[str, torch.Tensor], fts: list[dict[str, torch.Tensor]], keys: list[str]
) -> torch.Tensor:
    taus = torch.stack(
        [torch.cat([(ft[k] - base[k]).double().reshape(-1) for k in keys]) for ft in fts]
    )
    return torch.nn.functional.cosine_similarity(taus[:, None], taus[None, :], dim=-1)


def test_streaming_equals_in_memory_with_small_chunks() -> None:
    base, fts = _models()
    readers = {f"task{t}": DictReader(ft, f"ft{t}") for t, ft in enumerate(fts)}
    result = task_vector_similarity(DictReader(base, "base"), readers, chunk=7)
    expected = _in_memory_cosine(base, fts, list(SHAPES))
    assert torch.allclose(result.cosine, expected, atol=1e-12)
    assert torch.equal(result.cosine, result.cosine.T)
    assert result.keys == tuple(SHAPES)
    assert result.n_params == sum(torch.Size(s).numel() for s in SHAPES.values())
    for r in readers.values():  # every tensor read exactly once per checkpoint
        assert sorted(r.reads) == sorted(SHAPES)


def test_include_exclude_filters() -> None:
    base, fts = _models(1)
    readers = {f"task{t}": DictReader(ft, f"ft{t}") for t, ft in enumerate(fts)}
    result = task_vector_similarity(
        DictReader(base, "base"), readers, include=["enc.*"], exclude=["*.bias"]
    )
    assert result.keys == ("enc.0.weight", "enc.1.weight")
    expected = _in_memory_cosine(base, fts, ["enc.0.weight", "enc.1.weight"])
    assert torch.allclose(result.cosine, expected, atol=1e-12)
    with pytest.raises(PolytaskError, match="no tensor"):
        task_vector_similarity(DictReader(base, "base"), readers, include=["decoder.*"])


def test_pinned_orthogonal_and_opposite() -> None:
    base = {"w": torch.zeros(3)}
    fts = {
        "a": {"w": torch.tensor([1.0, 0.0, 0.0])},
        "b": {"w": torch.tensor([0.0, 2.0, 0.0])},
        "c": {"w": torch.tensor([-3.0, 0.0, 0.0])},
    }
    r = task_vector_similarity(
        DictReader(base, "base"), {k: DictReader(v, k) for k, v in fts.items()}
    )
    assert r.cosine.tolist() == [[1.0, 0.0, -1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 1.0]]
    assert r.norms.tolist() == [1.0, 2.0, 3.0]


def test_files_from_different_bases(tmp_path: Path) -> None:
    base, fts = _models(2, m=2)
    save_file(base, tmp_path / "base.safetensors")
    save_file(fts[0], tmp_path / "a.safetensors")
    wrong = dict(fts[1])
    wrong["enc.1.weight"] = torch.zeros(4, 7)
    save_file(wrong, tmp_path / "b.safetensors")
    with pytest.raises(PolytaskError, match=r"'enc.1.weight'.*b\.safetensors.*base\.safetensors"):
        task_vector_similarity_from_paths(
            tmp_path / "base.safetensors",
            {"a": tmp_path / "a.safetensors", "b": tmp_path / "b.safetensors"},
        )
    missing = {k: v for k, v in fts[1].items() if k != "head.weight"}
    save_file(missing, tmp_path / "c.safetensors")
    with pytest.raises(
        PolytaskError, match=r"'head.weight' is in .*base\.safetensors but not in .*c\.safetensors"
    ):
        task_vector_similarity_from_paths(
            tmp_path / "base.safetensors",
            {"a": tmp_path / "a.safetensors", "c": tmp_path / "c.safetensors"},
        )


def test_files_equal_in_memory(tmp_path: Path) -> None:
    base, fts = _models(3)
    save_file(base, tmp_path / "base.safetensors")
    paths = {}
    for t, ft in enumerate(fts):
        paths[f"t{t}"] = tmp_path / f"t{t}.safetensors"
        save_file(ft, paths[f"t{t}"])
    result = task_vector_similarity_from_paths(tmp_path / "base.safetensors", paths)
    assert torch.allclose(result.cosine, _in_memory_cosine(base, fts, list(SHAPES)), atol=1e-12)


def test_bad_input() -> None:
    base, fts = _models(4, m=2)
    with pytest.raises(PolytaskError, match="at least 2 tasks"):
        task_vector_similarity(DictReader(base, "base"), {"a": DictReader(fts[0], "a")})
    with pytest.raises(PolytaskError, match="zero task vector"):
        task_vector_similarity(
            DictReader(base, "base"),
            {"a": DictReader(fts[0], "a"), "same": DictReader(base, "same")},
        )


def test_running_statistics_are_left_out_unless_asked() -> None:
    # weights: τ_a = [1, 0], τ_b = [0, 1] (orthogonal); running means shift by 10 in both
    base = {"w": torch.zeros(2), "bn.running_mean": torch.zeros(1)}
    a = {"w": torch.tensor([1.0, 0.0]), "bn.running_mean": torch.tensor([10.0])}
    b = {"w": torch.tensor([0.0, 1.0]), "bn.running_mean": torch.tensor([10.0])}
    readers = {"a": DictReader(a, "a"), "b": DictReader(b, "b")}
    weights = task_vector_similarity(DictReader(base, "base"), readers)
    assert weights.cosine[0, 1].item() == 0.0 and weights.keys == ("w",)
    both = task_vector_similarity(DictReader(base, "base"), readers, buffers=True)
    # [1, 0, 10] · [0, 1, 10] / 101 = 100 / 101
    assert both.cosine[0, 1].item() == pytest.approx(100 / 101)
    assert both.keys == ("w", "bn.running_mean")

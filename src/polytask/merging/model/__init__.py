"""Model-level merges: methods that need the whole model or data (TALL masks, Consensus, Fisher,
RegMean, AdaMerging). Each implements :class:`ModelMerge` and takes its data explicitly."""

from polytask.merging.model.adamerging import (
    AdaMerging,
    bernoulli_entropy,
    merged_state,
    prediction_entropy,
)
from polytask.merging.model.bitpack import pack_mask, packed_nbytes, unpack_mask
from polytask.merging.model.consensus import ConsensusMerge, consensus_mask, usage_counts
from polytask.merging.model.fisher import FisherMerge
from polytask.merging.model.protocol import MergeOutcome, ModelMerge
from polytask.merging.model.regmean import RegMean, regmean_weight
from polytask.merging.model.tall import TallMasks, tall_masks
from polytask.merging.model.tall_store import TallMaskSet, TallStorage

__all__ = [
    "AdaMerging",
    "ConsensusMerge",
    "FisherMerge",
    "MergeOutcome",
    "ModelMerge",
    "RegMean",
    "TallMaskSet",
    "TallMasks",
    "TallStorage",
    "bernoulli_entropy",
    "consensus_mask",
    "merged_state",
    "pack_mask",
    "packed_nbytes",
    "prediction_entropy",
    "regmean_weight",
    "tall_masks",
    "unpack_mask",
    "usage_counts",
]

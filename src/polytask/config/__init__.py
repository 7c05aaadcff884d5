"""Layer 4: pure data. The pydantic schemas of every artefact (:mod:`.schema` for training,
:mod:`.merge`, :mod:`.affinity`, :mod:`.stages`), the name → class registries (resolved on first
use, so importing this package imports no torch code) and YAML loading (:mod:`.load`)."""

"""Help text derived from the config schemas and registries, built only when help is shown.

Nothing here imports torch or a method module: the registries and schemas of
:mod:`polytask.config` are pure data, and the merge methods' options are read from their source
(:mod:`polytask.cli.fields`).
"""

from __future__ import annotations

from typing import Any

from polytask.cli.fields import class_summary, dataclass_fields, find_class

__all__ = ["affinity_epilog", "merge_epilog", "method_help", "train_epilog"]


def method_help(name: str) -> tuple[str, str, list[str]]:
    """``(class name, docstring summary, ["option: type = default", ...])`` of merge method
    ``name``, read from source; if the source cannot be read, from the imported class."""
    from polytask.config.merge import DATA_METHODS, MERGE_METHODS, MODEL_METHODS, method_package

    registry = {**MERGE_METHODS, **MODEL_METHODS, **DATA_METHODS}
    try:
        cls = find_class(method_package(name), registry[name])
        options = [
            f"{f.name}: {f.type}" + ("" if f.default is None else f" = {f.default}")
            for f in dataclass_fields(cls)
        ]
        return registry[name], class_summary(cls), options
    except (LookupError, OSError, SyntaxError):  # no source (e.g. a compiled install)
        return _imported_help(name)


def _imported_help(name: str) -> tuple[str, str, list[str]]:
    from polytask.config.merge import method_class, method_options

    cls = method_class(name)
    summary = ((cls.__doc__ or "").strip().splitlines() or [""])[0].replace("``", "")
    options = [f"{option}: {kind} = {default!r}" for option, kind, default in method_options(name)]
    return cls.__name__, summary, options


def merge_epilog() -> list[str]:
    """Every merge method with its summary and options, by kind (from the registries)."""
    from polytask.config.merge import DATA_METHODS, DATA_SPLITS, MERGE_METHODS, MODEL_METHODS

    lines = ["Methods and their options (option: type = default):"]
    groups = (
        ("Per tensor, streamed (memory: a few tensors):", MERGE_METHODS),
        ("Whole model, no data (memory: every selected tensor of all models):", MODEL_METHODS),
    )
    for title, registry in groups:
        lines.append(title)
        for name in registry:
            _, summary, options = method_help(name)
            lines += [f"  {name}: {summary}", *(f"      {o}" for o in options)]
    lines += [
        "Need a model and task data: give `run:` (a single-task run) instead of base_model and",
        "models, and optionally `data: {split, batches, batch_size}`:",
    ]
    for name in DATA_METHODS:
        cls_name, summary, options = method_help(name)
        split = DATA_SPLITS[name]
        lines += [f"  {name} ({cls_name}, data.split default {split}): {summary}"]
        lines += [f"      {o}" for o in options]
    return lines


def train_epilog() -> list[str]:
    """The sections of a training config and the balancing methods (from the schema)."""
    from polytask.config.balancing import BALANCING_METHODS
    from polytask.config.schema import TrainConfig

    return [
        f"CONFIG sections: {', '.join(TrainConfig.model_fields)}.",
        f"balancing.method: {', '.join(BALANCING_METHODS)}.",
    ]


def _default(field: Any) -> str:
    if field.is_required():
        return "required"
    return repr(field.get_default(call_default_factory=True))


def affinity_epilog() -> list[str]:
    """The keys of the ``affinity:`` section with their defaults (from the schema)."""
    from polytask.config.affinity import AffinitySection

    keys = [f"  {k} = {_default(f)}" for k, f in AffinitySection.model_fields.items()]
    return ["CONFIG: a training config (see train --help) plus `affinity:` with:", *keys]

"""Build a merge method from a validated :class:`~polytask.config.merge.MergeConfig`: options
type-checked against the method's fields, per-model ``weight`` / ``density`` turned into the
method's per-model tuples, the seed passed on."""

from __future__ import annotations

import dataclasses
import typing

from pydantic import TypeAdapter, ValidationError

from polytask._core import PolytaskError
from polytask.config.merge import MergeConfig, method_class
from polytask.merging.model import ModelMerge
from polytask.merging.tensor import TensorMerge


def build_merge_method(
    config: MergeConfig, where: str = "merge config"
) -> TensorMerge | ModelMerge:
    """Instantiate the configured method with its options and per-model parameters.

    Per-tensor methods (:data:`MERGE_METHODS`) are streamed; whole-model methods
    (:data:`MODEL_METHODS`) return a :class:`~polytask.merging.model.ModelMerge`.
    """
    cls = method_class(config.method)
    fields = {f.name for f in dataclasses.fields(cls) if f.init}
    options = dict(config.options)
    for key in options:
        if key not in fields:
            known = ", ".join(sorted(fields)) or "none"
            raise PolytaskError(
                f"{where}: key 'options.{key}': unknown option for method {config.method!r} (options: {known})"
            )
    _per_model(options, fields, config, "weight", "weights", where)
    _per_model(options, fields, config, "density", "density", where)
    if config.seed is not None and "seed" in fields:
        if "seed" in options:
            raise PolytaskError(f"{where}: give the seed once, either 'seed' or 'options.seed'")
        options["seed"] = config.seed
    hints = typing.get_type_hints(cls)
    checked: dict[str, object] = {}
    for key, value in options.items():
        try:
            checked[key] = TypeAdapter(hints[key]).validate_python(value)
        except ValidationError as exc:
            msg = exc.errors()[0]["msg"]
            raise PolytaskError(f"{where}: key 'options.{key}': {msg} (got {value!r})") from None
    try:
        method = cls(**checked)
    except PolytaskError as exc:
        raise PolytaskError(f"{where}: {exc}") from None
    if isinstance(method, ModelMerge):
        return method
    tensor_method: TensorMerge = method
    tensor_method.check_models(len(config.models or ()))
    return tensor_method


def _per_model(
    options: dict[str, object],
    fields: set[str],
    config: MergeConfig,
    entry: str,
    option: str,
    where: str,
) -> None:
    values = [getattr(m, entry) for m in config.models or ()]
    if all(v is None for v in values):
        return
    if option not in fields:
        raise PolytaskError(
            f"{where}: key 'models.{entry}': method {config.method!r} has no per-model {entry}"
        )
    if option in options and not isinstance(options[option], int | float):
        raise PolytaskError(
            f"{where}: set {entry} either per model or in 'options.{option}', not both"
        )
    default = options.get(option, 1.0 if entry == "weight" else _default(config.method, option))
    options[option] = tuple(default if v is None else v for v in values)


def _default(method: str, option: str) -> object:
    return next(f.default for f in dataclasses.fields(method_class(method)) if f.name == option)

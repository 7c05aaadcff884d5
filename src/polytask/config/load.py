"""Load and validate YAML configs, with one-line errors that name the file and the key."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from polytask._core import PolytaskError

M = TypeVar("M", bound=BaseModel)


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise PolytaskError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise PolytaskError(f"{path}: not valid YAML ({first})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise PolytaskError(
            f"{path}: the top level must be a mapping of keys, got {type(data).__name__}"
        )
    return data


def _user_loc(loc: tuple[int | str, ...], data: Any) -> str:
    """The key path as the user wrote it. pydantic puts discriminated-union tags (``ecfp``,
    ``mlp``, ...) in ``loc``; a name that is not a key of the data and is not the last element
    (a missing key is the last) is such a tag and is dropped."""
    parts: list[str] = []
    node = data
    for i, p in enumerate(loc):
        if isinstance(node, dict) and isinstance(p, str) and p not in node:
            if i < len(loc) - 1:
                continue
            parts.append(p)
            node = None
            continue
        parts.append(str(p))
        if isinstance(node, dict):
            node = node.get(p)
        elif isinstance(node, list) and isinstance(p, int) and 0 <= p < len(node):
            node = node[p]
        else:
            node = None
    return ".".join(parts)


def format_validation_error(exc: ValidationError, where: str, data: Any = None) -> str:
    err = exc.errors()[0]
    loc = _user_loc(tuple(err["loc"]), data) if data is not None else ".".join(map(str, err["loc"]))
    msg = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    extra = f" (and {len(exc.errors()) - 1} more problem(s))" if len(exc.errors()) > 1 else ""
    if not loc:  # a rule across keys: the message names them
        return f"{where}: {msg}{extra}"
    return f"{where}: key '{loc}': {msg}{extra}"


def validate(model: type[M], data: dict[str, Any], where: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise PolytaskError(format_validation_error(exc, where, data)) from None


def load_config(model: type[M], path: str | Path) -> M:
    """Read YAML at ``path`` and validate it against ``model``."""
    return validate(model, read_yaml(path), str(path))


def config_hash(config: BaseModel, ignore: tuple[str, ...] = ()) -> str:
    """A stable hash of a config's content (keys in ``ignore`` left out)."""
    data = config.model_dump(mode="json")
    for key in ignore:
        data.pop(key, None)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]

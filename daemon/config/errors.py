"""pydantic validation errors -> `FILE:LINE: key.path: message` lines, never quoting an input.

pydantic reports a location as a tuple of keys and indexes; the YAML loader recorded the line of
each one, so a problem points at the key that holds it (or, for a missing key, at its parent).
"""
import difflib
from typing import Any, Iterable, List, Mapping, Optional, Sequence, Tuple, Type

from pydantic import BaseModel, ValidationError

from daemon.config.yaml_loader import KeyPath, LoadedYaml, format_error, line_of


def _unwrap_model(annotation: Any) -> Optional[Type[BaseModel]]:
    """The pydantic model inside Optional[...] / Tuple[..., ...], if any."""
    for _ in range(3):
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            return annotation
        args = [a for a in getattr(annotation, "__args__", ()) if a is not type(None) and a is not Ellipsis]
        if len(args) != 1:
            return None
        annotation = args[0]
    return None


def _model_at(root: Type[BaseModel], path: KeyPath) -> Optional[Type[BaseModel]]:
    """The model that validates the mapping at `path` (to list the keys it allows)."""
    model: Optional[Type[BaseModel]] = root
    for part in path:
        if isinstance(part, int):
            continue
        info = model.model_fields.get(part) if model is not None else None
        model = _unwrap_model(info.annotation) if info is not None else None
    return model


def _message(error: Mapping[str, Any], path: KeyPath, root: Type[BaseModel]) -> str:
    """pydantic's message made to read as a config error; never the input value."""
    kind, message = error["type"], str(error["msg"])
    if kind == "extra_forbidden":
        model = _model_at(root, path[:-1])
        allowed = sorted(model.model_fields) if model is not None else []
        close = difflib.get_close_matches(str(path[-1]), allowed, n=1)
        if close:
            return "unknown key (did you mean '%s'?)" % close[0]
        return "unknown key (expected one of: %s)" % ", ".join(allowed)
    if kind == "missing":
        return "required key is missing"
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            return message[len(prefix):]
    if message.startswith("Input should be "):
        return "must be " + message[len("Input should be "):]
    return message


Problem = Tuple[Optional[int], KeyPath, str]
"""(line, key path, message) of one config problem, before it is formatted."""


def validation_problems(exc: ValidationError, loaded: LoadedYaml, root: Type[BaseModel]) -> List[Problem]:
    """One (line, path, message) per pydantic error."""
    found = []
    for error in exc.errors():
        path = tuple(part for part in error["loc"] if isinstance(part, (str, int)))
        found.append((line_of(loaded.locations, path), path, _message(error, path, root)))
    return found


def unshadowed(problems: Iterable[Problem], shadowed: Sequence[KeyPath]) -> List[Problem]:
    """`problems` less those at or under a `shadowed` path: a value the loader refused (and
    reported) reaches validation as nothing, so what validation says of it is noise."""
    return [p for p in problems if not any(p[1][:len(q)] == q for q in shadowed)]


def problem_lines(source: str, problems: Iterable[Problem]) -> List[str]:
    """`FILE:LINE: key: message` lines in file order."""
    ordered = sorted(problems, key=lambda p: p[0] or 0)
    return [format_error(source, line, path, message) for line, path, message in ordered]


def validation_lines(exc: ValidationError, loaded: LoadedYaml, root: Type[BaseModel]) -> List[str]:
    """One line per pydantic error, in the order the keys appear in the file."""
    return problem_lines(loaded.source, validation_problems(exc, loaded, root))

"""Strict YAML reading for config files: plain data plus the line of every key, nothing clever.

PyYAML's `safe_load` keeps the last of duplicate keys without a word and expands aliases, so a
470-byte alias bomb costs seconds and gigabytes once something walks the result. This loader
refuses anchors and aliases while composing (before anything is expanded), refuses duplicate
keys, records where every mapping key and sequence item starts so validation errors can name
`FILE:LINE`, and expands `${VAR}` / `${VAR:-default}` in string values from the environment.

Text that cannot be encoded as UTF-8 (a lone surrogate written as "\\ud800", a variable holding
non-UTF-8 bytes, which Python decodes to surrogates) is refused here: it would pass every later
check and then fail each frame in the tokenizer, or the first time it is logged or published.

A problem inside the document (a duplicate key, a tag, a bad value, an unset variable) is recorded
and reading goes on, so `blipd check` lists every one; only what stops PyYAML itself (a syntax
error, an anchor or alias, excessive nesting) ends reading at once.
"""
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Match, Optional, Tuple, Union

import yaml

from daemon.errors import ConfigError

KeyPath = Tuple[Union[str, int], ...]
"""Where a value sits in the document: ("streams", 1, "prompts", 0, "exit")."""

MAX_BYTES = 1024 * 1024
"""A config is a page or two; anything larger is a mistake (or an attack), refused before parsing."""

MAX_DEPTH = 16
"""The schema nests 5 levels; deeper input would only exhaust the recursive composer."""

_TAG = "tag:yaml.org,2002:"
_SCALAR_TAGS = {_TAG + name for name in ("str", "int", "float", "bool", "null")}
_REFERENCE = re.compile(r"\$\$\{|\$\{[^}]*\}|\$\{")
_VARIABLE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?", re.DOTALL)


@dataclass(frozen=True)
class LoadedYaml:
    """A parsed config document.

    data:      the top-level mapping (str keys; str, int, float, bool, None, list, dict values)
    locations: 1-based (line, column) of every mapping key and sequence item, by key path
    source:    the file name as given by the caller, used at the start of every error line
    problems:  with `load_yaml(..., collect=True)`: (line, key path, message) of each problem
               found while reading (the values concerned are left out of `data`)
    """

    data: Dict[str, Any]
    locations: Dict[KeyPath, Tuple[int, int]]
    source: str
    problems: Tuple[Tuple[Optional[int], KeyPath, str], ...] = ()

    def problem_lines(self) -> List[str]:
        """`FILE:LINE: key: message` of every recorded problem."""
        return [format_error(self.source, line, path, message) for line, path, message in self.problems]


class _Rejected(Exception):
    """A problem found while building the data; becomes one ConfigError line."""

    def __init__(self, mark: Any, path: KeyPath, message: str) -> None:
        super().__init__(message)
        self.line = mark.line + 1 if mark is not None else None
        self.path = path
        self.message = message


class _NoAliasLoader(yaml.SafeLoader):
    """SafeLoader whose composer refuses anchors and aliases at the first one it meets.

    It keeps the key path of the node being composed (composition is depth first, so the top of
    the stack is always the parent) to name the key in that error.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._paths: List[KeyPath] = []

    def compose_node(self, parent: Any, index: Any) -> Any:
        path = self._paths[-1] if self._paths else ()
        if isinstance(index, yaml.ScalarNode):
            path = path + (index.value,)
        elif isinstance(index, int) and not isinstance(index, bool):
            path = path + (index,)
        event = self.peek_event()
        if len(self._paths) >= MAX_DEPTH:
            raise _Rejected(event.start_mark, path, "nested deeper than %d levels" % MAX_DEPTH)
        if isinstance(event, yaml.AliasEvent):
            raise _Rejected(event.start_mark, path, "YAML aliases (*%s) are not allowed" % event.anchor)
        if getattr(event, "anchor", None) is not None:
            raise _Rejected(event.start_mark, path, "YAML anchors (&%s) are not allowed" % event.anchor)
        self._paths.append(path)
        try:
            return super().compose_node(parent, index)
        finally:
            self._paths.pop()


def format_key_path(path: KeyPath) -> str:
    """("streams", 1, "prompts", 0, "exit") -> "streams[1].prompts[0].exit"."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += "[%d]" % part
        else:
            text += ("." if text else "") + str(part)
    return text


def format_error(source: str, line: Optional[int], path: KeyPath, message: str) -> str:
    """One error line: `FILE:LINE: key.path: message` (line and path left out when unknown)."""
    where = source if line is None else "%s:%d" % (source, line)
    if path:
        return "%s: %s: %s" % (where, format_key_path(path), message)
    return "%s: %s" % (where, message)


def line_of(locations: Mapping[KeyPath, Tuple[int, int]], path: KeyPath) -> Optional[int]:
    """Line of `path`, or of its closest ancestor present in the file (a missing key's parent)."""
    for end in range(len(path), -1, -1):
        found = locations.get(tuple(path[:end]))
        if found is not None:
            return found[0]
    return None


_NOT_UTF8 = ("text that cannot be encoded as UTF-8 (a lone surrogate such as \\ud800, or an "
             "environment variable holding non-UTF-8 bytes)")


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class _Builder:
    """Turns the composed node tree into plain data, recording locations on the way; a problem is
    recorded in `problems` and its value left out, so one pass finds every problem."""

    def __init__(self, loader: yaml.SafeLoader, env: Mapping[str, str]) -> None:
        self.loader = loader
        self.env = env
        self.locations: Dict[KeyPath, Tuple[int, int]] = {}
        self.problems: List[_Rejected] = []

    def build(self, node: yaml.Node, path: KeyPath) -> Any:
        """The value of `node`; None (and a problem recorded) for one that is refused."""
        try:
            if isinstance(node, yaml.MappingNode):
                return self._mapping(node, path)
            if isinstance(node, yaml.SequenceNode):
                if node.tag != _TAG + "seq":
                    raise _Rejected(node.start_mark, path, "unsupported YAML tag %s" % node.tag)
                items: List[Any] = []
                for index, item in enumerate(node.value):
                    self._locate(path + (index,), item)
                    items.append(self.build(item, path + (index,)))
                return items
            return self._scalar(node, path)
        except _Rejected as exc:
            self.problems.append(exc)
            return None

    def _locate(self, path: KeyPath, node: yaml.Node) -> None:
        self.locations[path] = (node.start_mark.line + 1, node.start_mark.column + 1)

    def _mapping(self, node: yaml.MappingNode, path: KeyPath) -> Dict[str, Any]:
        if node.tag != _TAG + "map":
            raise _Rejected(node.start_mark, path, "unsupported YAML tag %s" % node.tag)
        result: Dict[str, Any] = {}
        first_line: Dict[str, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _TAG + "merge":
                self.problems.append(_Rejected(key_node.start_mark, path, "merge keys (<<) are not allowed"))
                continue
            key = key_node.value if key_node.tag == _TAG + "str" else None
            if not isinstance(key, str):
                self.problems.append(_Rejected(key_node.start_mark, path,
                                               "keys must be strings (quote yes/no/on/off/numbers)"))
                continue
            if not _encodable(key):
                self.problems.append(_Rejected(key_node.start_mark, path, "a key holds " + _NOT_UTF8))
                continue
            if key in result:
                self.problems.append(_Rejected(key_node.start_mark, path + (key,),
                                               "duplicate key (first defined at line %d)" % first_line[key]))
                continue
            first_line[key] = key_node.start_mark.line + 1
            self._locate(path + (key,), key_node)
            result[key] = self.build(value_node, path + (key,))
        return result

    def _expand(self, text: str, path: KeyPath, mark: Any) -> str:
        """Replace `${VAR}` and `${VAR:-default}`; `$${` stands for a literal `${`.

        An unset variable without a default is recorded as a problem naming the variable (never
        any value) and loading goes on, so one run reports every missing variable.
        """

        def substitute(match: Match) -> str:
            token = match.group(0)
            if token == "$${":
                return "${"
            parsed = _VARIABLE.fullmatch(token[2:-1]) if token.endswith("}") else None
            if parsed is None:
                raise _Rejected(mark, path, "malformed variable reference (use ${NAME} or ${NAME:-default})")
            name, default = parsed.group(1), parsed.group(2)
            value = self.env.get(name)
            if value is None or (value == "" and default is not None):
                if default is None:
                    self.problems.append(_Rejected(mark, path, "environment variable %s is not set" % name))
                    return token
                return default
            return value

        return _REFERENCE.sub(substitute, text)

    def _scalar(self, node: yaml.Node, path: KeyPath) -> Any:
        if node.tag == _TAG + "timestamp":
            return node.value  # no field takes a date: keep the text, the schema judges it
        if node.tag not in _SCALAR_TAGS:
            raise _Rejected(node.start_mark, path, "unsupported YAML tag %s" % node.tag)
        if node.tag == _TAG + "str":
            text = self._expand(node.value, path, node.start_mark)
            if not _encodable(text):
                raise _Rejected(node.start_mark, path, _NOT_UTF8)
            return text
        try:
            return self.loader.construct_object(node, deep=True)
        except Exception:  # the constructors' messages quote the value, which may be secret
            raise _Rejected(node.start_mark, path, "invalid value for YAML tag %s" % node.tag) from None


def _read_text(path: Path, source: str, max_bytes: int) -> str:
    """The file as text; every failure one line naming the file, never its content."""
    try:
        with open(str(path), "rb") as handle:
            raw = handle.read(max_bytes + 1)
    except OSError as exc:
        raise ConfigError(format_error(source, None, (), "cannot read: %s" % (exc.strerror or exc))) from None
    if len(raw) > max_bytes:
        raise ConfigError(format_error(source, None, (), "larger than %d bytes" % max_bytes))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError(format_error(source, line, (), "not UTF-8 (byte %d)" % exc.start)) from None
    return text[1:] if text.startswith("\ufeff") else text


def _yaml_error_line(source: str, text: str, exc: yaml.YAMLError) -> str:
    """A PyYAML error as one line, from its problem and mark only (its snippet quotes the file)."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        if exc.context and exc.problem:
            problem = "%s (%s)" % (exc.problem, exc.context)
        return format_error(source, mark.line + 1 if mark else None, (), problem)
    position = getattr(exc, "position", None)
    if isinstance(position, int):
        line = text.count("\n", 0, position) + 1
        return format_error(source, line, (), "character #x%04x is not allowed" % getattr(exc, "character", 0))
    return format_error(source, None, (), "invalid YAML")


def load_yaml(path: Union[str, Path], env: Mapping[str, str], max_bytes: int = MAX_BYTES,
              collect: bool = False) -> LoadedYaml:
    """Read a config file into plain data with key locations.

    ConfigError (one line per problem) for any problem; with `collect`, problems inside the
    document are returned in `problems` instead (the caller adds its own and raises once), and
    only a file that cannot be read or parsed raises."""
    source = str(path)
    text = _read_text(Path(path), source, max_bytes)
    loader = _NoAliasLoader(text)
    try:
        root = loader.get_single_node()
        if root is None or (isinstance(root, yaml.ScalarNode) and root.tag == _TAG + "null"):
            raise ConfigError(format_error(source, None, (), "the file is empty"))
        if not isinstance(root, yaml.MappingNode):
            kind = "a list" if isinstance(root, yaml.SequenceNode) else "a single value"
            raise ConfigError(format_error(source, root.start_mark.line + 1, (),
                                           "the top level must be a mapping of sections, not %s" % kind))
        builder = _Builder(loader, env)
        builder.locations[()] = (root.start_mark.line + 1, root.start_mark.column + 1)
        data = builder.build(root, ())
        problems = tuple((p.line, p.path, p.message) for p in builder.problems)
        if problems and not collect:
            raise ConfigError([format_error(source, *problem) for problem in problems])
    except _Rejected as exc:
        raise ConfigError(format_error(source, exc.line, exc.path, exc.message)) from None
    except yaml.YAMLError as exc:
        raise ConfigError(_yaml_error_line(source, text, exc)) from None
    finally:
        loader.dispose()
    return LoadedYaml(data=data, locations=builder.locations, source=source, problems=problems)

"""YAML config -> validated, frozen settings; every error one `FILE:LINE: key.path: message` line.

One pydantic model per YAML section (`extra="forbid"`, frozen, inputs hidden from errors).
Relative paths resolve against the config file's folder; relative `*_file`/`*_dir` paths of the
CURVE section against `$CREDENTIALS_DIRECTORY` when systemd set it (`LoadCredential=`).

Secrets: a stream URL is a `SecretStr`, so `repr()`, `str()` and `model_dump_json()` show
`**********`. `display_url` (password and token parameters replaced by `***`) is what logs, errors
and events show; `secret_url()` is the one accessor that returns the real URL, for the decoder.
"""
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, FrozenSet, List, Mapping, Optional, Set, Tuple, Union

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, ValidationError, create_model, field_validator
from typing_extensions import Annotated, Literal

from daemon.config.checks import (  # noqa: F401  (LIVE_SCHEMES, normalize_url: part of this API)
    LIVE_SCHEMES, check_credential_dir, check_endpoint, check_name, check_secret_file, cross_checks, is_live_url,
    normalize_url,
)
from daemon.config.errors import Problem, problem_lines, unshadowed, validation_problems
from daemon.errors import ConfigError
from blip.redact import redact_url, url_secrets
from daemon.config.yaml_loader import KeyPath, LoadedYaml, format_error, line_of, load_yaml

_LOG_LEVELS = ("debug", "info", "warning", "error", "critical")

Seconds = Annotated[float, Field(gt=0)]
Fraction = Annotated[float, Field(ge=0, le=1)]


@dataclass(frozen=True)
class _Context:
    """Where relative paths point; passed to validators as pydantic's validation context."""

    base_dir: Path
    credentials_dir: Optional[Path]


def _context(info: Any) -> _Context:
    found = (info.context or {}).get("blipd") if info is not None else None
    if isinstance(found, _Context):
        return found
    credentials = os.environ.get("CREDENTIALS_DIRECTORY")
    return _Context(Path.cwd(), Path(credentials) if credentials else None)


def _non_empty_text(value: Any) -> Any:
    if isinstance(value, str) and not value.strip():
        raise ValueError("must not be empty")
    return value


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True, allow_inf_nan=False)


class ModelSettings(_Section):
    """`model:` which package runs, on which backend and device, with how many workers."""

    package: Path
    backend: Literal["auto", "onnxruntime", "sail"] = "auto"
    device: int = Field(0, ge=0)
    threads: Optional[int] = Field(None, ge=1)
    workers: int = Field(1, ge=1)
    preprocess: Literal["cpu", "tpu"] = "cpu"

    _text = field_validator("package", mode="before")(_non_empty_text)

    @field_validator("package")
    @classmethod
    def _resolve(cls, value: Path, info: Any) -> Path:
        return Path(os.path.normpath(str(_context(info).base_dir / value)))


class SnapshotSettings(_Section):
    """`publish.snapshot:` a JPEG of the frame as a third message part."""

    enabled: bool = False
    max_side: int = Field(640, ge=16, le=8192)
    quality: int = Field(80, ge=1, le=100)
    max_bytes: int = Field(262144, ge=4096, le=16 * 1024 * 1024)
    """Largest JPEG sent: a bigger one is re-encoded at lower quality, then smaller, until it fits.
    With `publish.max_buffer_mb` it bounds the memory a stopped subscriber can pin."""


class CurveSettings(_Section):
    """`publish.curve:` CURVE encryption; only clients whose public keys are in `clients_dir` connect."""

    secret_key_file: Path
    clients_dir: Path

    _text = field_validator("secret_key_file", "clients_dir", mode="before")(_non_empty_text)

    @field_validator("secret_key_file", "clients_dir")
    @classmethod
    def _resolve(cls, value: Path, info: Any) -> Path:
        context = _context(info)
        base = context.credentials_dir or context.base_dir
        path = Path(os.path.normpath(str(base / value)))
        if info.field_name == "secret_key_file":
            check_secret_file(path)
        else:
            check_credential_dir(path)
        return path


class PublishSettings(_Section):
    """`publish:` the ZeroMQ PUB endpoint and its bounds."""

    bind: str = "tcp://127.0.0.1:5556"
    send_hwm: int = Field(1000, ge=1)
    linger_ms: int = Field(1000, ge=0)
    queue_size: int = Field(1000, ge=1)
    max_buffer_mb: int = Field(128, ge=1)
    """Memory, in MiB, the publisher's queue and each subscriber's socket queue may hold (with
    snapshots on, send_hwm is lowered to fit); what does not fit is counted as dropped/overflow."""
    heartbeat_s: Seconds = 60.0
    stats_every_s: Seconds = 10.0
    snapshot: SnapshotSettings = SnapshotSettings()
    curve: Optional[CurveSettings] = None

    _bind = field_validator("bind")(classmethod(lambda cls, v: check_endpoint(v)))


class MetricsSettings(_Section):
    """`metrics:` the Prometheus HTTP endpoint."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(9464, ge=0, le=65535)

    _text = field_validator("host", mode="before")(_non_empty_text)

    @property
    def active(self) -> bool:
        """Whether to serve metrics at all (`port: 0` also turns them off)."""
        return self.enabled and self.port != 0


class StreamDefaults(_Section):
    """`defaults:` sampling, scheduling and reconnect settings every stream inherits."""

    sample_every_s: Seconds = 1.0
    max_frame_age_s: Seconds = 2.0
    scene_change: Fraction = 0.02
    max_skip_s: Seconds = 30.0
    slot_size: int = Field(1, ge=1)
    stall_timeout_s: Seconds = 10.0
    open_timeout_s: Seconds = 10.0
    read_timeout_s: Seconds = 10.0
    backoff_initial_s: Seconds = 1.0
    backoff_max_s: Seconds = 60.0
    update_every_s: Seconds = 5.0
    realtime: bool = True
    """Files only: false reads as fast as the workers keep up (no frame dropped for age)."""

    @field_validator("backoff_max_s")
    @classmethod
    def _backoff(cls, value: float, info: Any) -> float:
        initial = info.data.get("backoff_initial_s")
        if initial is not None and value < initial:
            raise ValueError("must be at least backoff_initial_s (%g)" % initial)
        return value


DEFAULT_FIELDS: Tuple[str, ...] = tuple(StreamDefaults.model_fields)
"""The `defaults:` keys; each may also be set on a stream to override it there."""


class CaptionSettings(_Section):
    """`streams[].caption:` whether and how often to caption."""

    enabled: bool = True
    every_s: Seconds = 5.0


class PromptConfig(_Section):
    """`streams[].prompts[]:` a text matched against frames, tracked with hysteresis and dwell."""

    id: str
    text: str
    enter: float = Field(0.7, gt=0, le=1)
    exit: float = Field(0.5, ge=0, lt=1)
    dwell_s: float = Field(2.0, ge=0)
    smoothing: float = Field(0.5, gt=0, le=1)
    cooldown_s: float = Field(0.0, ge=0)
    """Minimum time between a match's `end` and the prompt's next `start`."""

    _id = field_validator("id")(check_name)
    _text = field_validator("text", mode="before")(_non_empty_text)

    @field_validator("exit")
    @classmethod
    def _below_enter(cls, value: float, info: Any) -> float:
        enter = info.data.get("enter")
        if enter is not None and value >= enter:
            raise ValueError("must be below enter (%g)" % enter)
        return value


class QuestionConfig(_Section):
    """`streams[].questions[]:` a question asked about frames every `every_s` seconds."""

    id: str
    text: str
    every_s: Seconds = 10.0

    _id = field_validator("id")(check_name)
    _text = field_validator("text", mode="before")(_non_empty_text)


def _overrides(model: Any) -> Dict[str, Any]:
    """Every field of `model` again as an optional per-stream override (None = inherit), with its
    constraints, for `create_model`: the settings are declared once, in StreamDefaults."""
    fields: Dict[str, Any] = {}
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if info.metadata:
            annotation = Annotated[(annotation,) + tuple(info.metadata)]  # type: ignore[misc]
        fields[name] = (Optional[annotation], Field(None, description=info.description))
    return fields


class _StreamSource(_Section):
    """What only a stream has: its name, source, decoder and tasks (no inheritable setting)."""

    name: str
    url: SecretStr
    decoder: Literal["auto", "opencv", "pyav", "sail"] = "auto"
    loop: bool = False
    hwaccel: bool = False
    caption: CaptionSettings = CaptionSettings()
    prompts: Tuple[PromptConfig, ...] = ()
    questions: Tuple[QuestionConfig, ...] = ()

    @property
    def display_url(self) -> str:
        """The URL with its password and token parameters replaced by `***`."""
        return redact_url(self.url.get_secret_value())

    @property
    def is_live(self) -> bool:
        """rtsp(s):// or http(s):// (reconnect forever, stall watchdog) rather than a file."""
        return is_live_url(self.url.get_secret_value())

    def secret_url(self) -> str:
        """The real URL, password included: pass it to the decoder and nowhere else."""
        return self.url.get_secret_value()

    def secrets(self) -> List[str]:
        """Spellings of this URL's secrets, for `redact_text` on decoder messages."""
        return url_secrets(self.secret_url())


class ResolvedStream(_StreamSource, StreamDefaults):
    """Everything one stream runs with, defaults filled in; what the reader and workers receive.

    Its fields are _StreamSource's and StreamDefaults' (declared there, once). url is a SecretStr
    (masked in repr); `secret_url()` is for the decoder only, `display_url` for everything else.
    Built by `StreamConfig.resolved` from values already validated; compared field by field by
    `diff_streams`.
    """


class _StreamConfigBase(_StreamSource):
    _name = field_validator("name")(check_name)

    @field_validator("url")
    @classmethod
    def _url(cls, value: SecretStr, info: Any) -> SecretStr:
        return SecretStr(normalize_url(value.get_secret_value(), _context(info).base_dir))

    @field_validator("loop")
    @classmethod
    def _loop(cls, value: bool, info: Any) -> bool:
        url = info.data.get("url")
        if value and url is not None and is_live_url(url.get_secret_value()):
            raise ValueError("loop applies to files only, not to live URLs")
        return value

    def resolved(self, defaults: StreamDefaults) -> ResolvedStream:
        """This stream with every setting it does not override taken from `defaults`."""
        values = {name: getattr(self, name) for name in _StreamSource.model_fields}
        for name in DEFAULT_FIELDS:
            override = getattr(self, name)
            values[name] = getattr(defaults, name) if override is None else override
        return ResolvedStream.model_construct(**values)


StreamConfig = create_model(  # type: ignore[call-overload]
    "StreamConfig", __base__=_StreamConfigBase, __module__=__name__, **_overrides(StreamDefaults))
StreamConfig.__doc__ = ("`streams[]:` one source, how to decode it, and what to run on it; any `defaults:` "
                        "setting may be given here too, overriding the default for this stream (None = inherit).")


class Settings(_Section):
    """The whole config file. Built by `load_config`, which also records where it came from."""

    name: Optional[str] = None
    """This box's name: every event carries it as `source` so a fleet's subscribers tell boxes apart."""
    model: ModelSettings
    publish: PublishSettings = PublishSettings()
    metrics: MetricsSettings = MetricsSettings()
    log_level: str = "info"
    defaults: StreamDefaults = StreamDefaults()
    streams: Tuple[StreamConfig, ...]

    _name = field_validator("name")(check_name)
    _source: str = PrivateAttr(default="<config>")
    _source_path: Optional[Path] = PrivateAttr(default=None)
    _locations: Dict[KeyPath, Tuple[int, int]] = PrivateAttr(default_factory=dict)

    @field_validator("streams")
    @classmethod
    def _some_streams(cls, value: Tuple[StreamConfig, ...]) -> Tuple[StreamConfig, ...]:
        if not value:
            raise ValueError("list at least one stream")
        return value

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        if value.lower() not in _LOG_LEVELS:
            raise ValueError("must be one of %s" % ", ".join(_LOG_LEVELS))
        return value.lower()

    @property
    def source_path(self) -> Optional[Path]:
        """Absolute path of the file this was loaded from (None when built from a dict)."""
        return self._source_path

    def error_line(self, path: KeyPath, message: str) -> str:
        """`FILE:LINE: key.path: message` for a problem found after loading (e.g. a missing task)."""
        return format_error(self._source, line_of(self._locations, path), path, message)

    def stream(self, name: str) -> StreamConfig:
        """The stream called `name`; KeyError if there is none."""
        for stream in self.streams:
            if stream.name == name:
                return stream
        raise KeyError("no stream named %r" % name)

    def resolved_streams(self) -> Tuple[ResolvedStream, ...]:
        """Every stream resolved against `defaults`, in file order."""
        return tuple(stream.resolved(self.defaults) for stream in self.streams)

    def tasks_needed(self) -> Set[str]:
        """Model tasks some stream uses: caption, match (prompts), answer (questions)."""
        needed: Set[str] = set()
        for stream in self.streams:
            if stream.caption.enabled:
                needed.add("caption")
            if stream.prompts:
                needed.add("match")
            if stream.questions:
                needed.add("answer")
        return needed

    def secrets(self) -> FrozenSet[str]:
        """Every URL secret of every stream, for `redact_text` on text that may quote any URL."""
        return frozenset(s for stream in self.streams for s in url_secrets(stream.secret_url()))


def check_tasks(settings: Settings, available: Set[str]) -> None:
    """Raise ConfigError naming each stream key that needs a task the model package lacks."""
    lines = []
    for index, stream in enumerate(settings.streams):
        for task, key, needed in (("caption", "caption", stream.caption.enabled),
                                  ("match", "prompts", bool(stream.prompts)),
                                  ("answer", "questions", bool(stream.questions))):
            if needed and task not in available:
                lines.append(settings.error_line(("streams", index, key),
                                                 "the model package has no '%s' task" % task))
    if lines:
        raise ConfigError(lines)


@dataclass(frozen=True)
class StreamDiff:
    """What a reload changes, by stream name (each tuple in the new, or for `removed` the old, order)."""

    added: Tuple[str, ...] = ()
    removed: Tuple[str, ...] = ()
    changed: Tuple[str, ...] = ()
    unchanged: Tuple[str, ...] = ()


def diff_streams(old: Settings, new: Settings) -> StreamDiff:
    """Compare streams by name; `changed` when anything a stream resolves to differs (inherited
    defaults included), so a reload restarts exactly those and leaves the rest running."""
    before = {stream.name: stream for stream in old.resolved_streams()}
    after = {stream.name: stream for stream in new.resolved_streams()}
    return StreamDiff(
        added=tuple(name for name in after if name not in before),
        removed=tuple(name for name in before if name not in after),
        changed=tuple(name for name in after if name in before and before[name] != after[name]),
        unchanged=tuple(name for name in after if name in before and before[name] == after[name]),
    )


def parse_config(loaded: LoadedYaml, base_dir: Path, credentials_dir: Optional[Path],
                 source_path: Optional[Path] = None) -> Settings:
    """Validate already-read YAML data (see `load_config`); ConfigError lists every problem: those
    the loader recorded, then pydantic's, then (when the models validate) the cross-checks'."""
    context = {"blipd": _Context(base_dir, credentials_dir)}
    problems: List[Problem] = list(loaded.problems)
    shadowed = [path for _, path, _ in loaded.problems]
    try:
        settings = Settings.model_validate(loaded.data, context=context)
    except ValidationError as exc:
        found = problems + unshadowed(validation_problems(exc, loaded, Settings), shadowed)
        raise ConfigError(problem_lines(loaded.source, found)) from None
    settings._source = loaded.source
    settings._source_path = source_path
    settings._locations = dict(loaded.locations)
    problems += [(line_of(loaded.locations, path), path, message) for path, message in cross_checks(settings)]
    if problems:
        raise ConfigError(problem_lines(loaded.source, problems))
    return settings


def load_config(path: Union[str, Path], env: Optional[Mapping[str, str]] = None) -> Settings:
    """Read, expand `${VAR}` from `env` (default os.environ) and validate a config file.

    Raises ConfigError with one `FILE:LINE: key.path: message` line per problem; no message
    contains a secret value.
    """
    environment = os.environ if env is None else env
    loaded = load_yaml(path, environment, collect=True)
    absolute = Path(os.path.abspath(str(path)))
    credentials = environment.get("CREDENTIALS_DIRECTORY")
    return parse_config(loaded, absolute.parent, Path(credentials) if credentials else None, absolute)

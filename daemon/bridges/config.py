"""bridge.yaml / relay.yaml -> validated, frozen settings; errors are `FILE:LINE: key: message` lines.

The same strict YAML loader as the daemon (no aliases, no duplicate keys, `${VAR}` expansion).
Secrets never sit in these files: MQTT passwords and webhook secrets come from `*_file` (relative to
`$CREDENTIALS_DIRECTORY` when systemd set it, else the config's folder) or `*_env`, and are read
into `SecretStr`s whose repr is masked. A password inside the MQTT URL is refused.
"""
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Mapping, Optional, Tuple, Union
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, ValidationError, field_validator, model_validator
from typing_extensions import Literal

from daemon.config.checks import check_endpoint, check_name
from daemon.config.errors import validation_lines
from daemon.config.yaml_loader import LoadedYaml, format_error, load_yaml
from daemon.errors import ConfigError

_TOPIC_PART = re.compile(r"^[A-Za-z0-9_/-]{1,128}$")
EVENT_TYPES = ("caption", "match", "answer", "stream", "stats")


@dataclass(frozen=True)
class _Context:
    base_dir: Path
    credentials_dir: Optional[Path]
    env: Mapping[str, str]


def _context(info: Any) -> _Context:
    found = (info.context or {}).get("bridge") if info is not None else None
    if isinstance(found, _Context):
        return found
    credentials = os.environ.get("CREDENTIALS_DIRECTORY")
    return _Context(Path.cwd(), Path(credentials) if credentials else None, os.environ)


def _credential_path(value: Path, info: Any) -> Path:
    context = _context(info)
    base = context.credentials_dir or context.base_dir
    return Path(os.path.normpath(str(base / value)))


def _config_path(value: Path, info: Any) -> Path:
    return Path(os.path.normpath(str(_context(info).base_dir / value)))


def _read_secret(path: Optional[Path], env_name: Optional[str], info: Any, what: str) -> Optional[SecretStr]:
    """The secret from a file (first line, stripped) or an environment variable; never quoted."""
    if path is not None:
        try:
            with open(str(path), "r", encoding="utf-8") as handle:
                return SecretStr(handle.readline().strip())
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError("%s file %s: %s" % (what, path, getattr(exc, "strerror", None) or "unreadable"))
    if env_name is not None:
        value = _context(info).env.get(env_name)
        if value is None:
            raise ValueError("environment variable %s is not set" % env_name)
        return SecretStr(value)
    return None


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True, allow_inf_nan=False)


class CurveClient(_Section):
    """CURVE for a SUB socket: the server's public key file and this client's `.key_secret` file."""

    server_key: Path
    client_key_file: Path

    _paths = field_validator("server_key", "client_key_file")(classmethod(lambda cls, v, info: _credential_path(v, info)))

    @field_validator("server_key", "client_key_file")
    @classmethod
    def _exists(cls, value: Path) -> Path:
        if not value.is_file():
            raise ValueError("file not found: %s" % value)
        return value


class SourceSettings(_Section):
    """`sources[]:` one daemon bus to subscribe to."""

    connect: str
    curve: Optional[CurveClient] = None

    _endpoint = field_validator("connect")(classmethod(lambda cls, v: check_endpoint(v)))


class TlsSettings(_Section):
    """`mqtt.tls:` verify the broker against `ca_file`; `cert_file`/`key_file` for client certificates."""

    ca_file: Optional[Path] = None
    cert_file: Optional[Path] = None
    key_file: Optional[Path] = None

    @field_validator("ca_file", "cert_file", "key_file")
    @classmethod
    def _exists(cls, value: Optional[Path], info: Any) -> Optional[Path]:
        if value is None:
            return None
        path = _credential_path(value, info)
        if not path.is_file():
            raise ValueError("file not found: %s" % path)
        return path

    @model_validator(mode="after")
    def _pair(self) -> "TlsSettings":
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        return self


class HomeAssistantSettings(_Section):
    """`mqtt.home_assistant:` MQTT discovery; with `daemon_config` the entities are known up front."""

    enabled: bool = False
    discovery_prefix: str = "homeassistant"
    daemon_config: Optional[Path] = None

    _config = field_validator("daemon_config")(classmethod(lambda cls, v, info: None if v is None else _config_path(v, info)))

    @field_validator("discovery_prefix")
    @classmethod
    def _topic(cls, value: str) -> str:
        if not _TOPIC_PART.match(value):
            raise ValueError("must be letters, digits, '_', '-' and '/'")
        return value


class MqttSettings(_Section):
    """`mqtt:` the broker, credentials, QoS, topic prefix and the bounded queue in front of it."""

    url: str
    client_id: Optional[str] = None
    password_file: Optional[Path] = None
    password_env: Optional[str] = None
    tls: Optional[TlsSettings] = None
    qos: Literal[0, 1, 2] = 1
    prefix: str = "blipd"
    queue_size: int = Field(10000, ge=1)
    max_inflight: int = Field(100, ge=1)
    keepalive_s: int = Field(30, ge=5)
    backoff_initial_s: float = Field(1.0, gt=0)
    backoff_max_s: float = Field(30.0, gt=0)
    snapshots: bool = True
    stale_after_s: float = Field(60.0, gt=0)
    """A stream with no event for this long is marked offline (keep it above the daemon's stats_every_s)."""
    home_assistant: HomeAssistantSettings = HomeAssistantSettings()
    _password: Optional[SecretStr] = PrivateAttr(None)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("mqtt", "mqtts"):
            raise ValueError("must be mqtt://[USER@]HOST[:PORT] or mqtts://...")
        if parts.password is not None:
            raise ValueError("no password in the URL: use password_file or password_env")
        if not parts.hostname:
            raise ValueError("the URL has no host")
        try:
            parts.port
        except ValueError:
            raise ValueError("the port must be a number 0-65535") from None
        return value

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not _TOPIC_PART.match(value):
            raise ValueError("must be letters, digits, '_', '-' and '/'")
        return value

    _file = field_validator("password_file")(classmethod(lambda cls, v, info: None if v is None else _credential_path(v, info)))

    @model_validator(mode="after")
    def _secret(self, info: Any) -> "MqttSettings":
        if self.password_file is not None and self.password_env is not None:
            raise ValueError("password_file and password_env: give one")
        self._password = _read_secret(self.password_file, self.password_env, info, "password")
        return self

    @property
    def password(self) -> Optional[SecretStr]:
        return self._password

    @property
    def host(self) -> str:
        return str(urlsplit(self.url).hostname)

    @property
    def port(self) -> int:
        parts = urlsplit(self.url)
        return parts.port or (8883 if parts.scheme == "mqtts" else 1883)

    @property
    def username(self) -> Optional[str]:
        return urlsplit(self.url).username

    @property
    def use_tls(self) -> bool:
        return self.tls is not None or urlsplit(self.url).scheme == "mqtts"


class WebhookSettings(_Section):
    """`webhooks[]:` POST chosen events as JSON, signed with HMAC-SHA256 when a secret is set."""

    url: str
    secret_file: Optional[Path] = None
    secret_env: Optional[str] = None
    types: Tuple[Literal["caption", "match", "answer", "stream", "stats"], ...] = ("match",)
    streams: Tuple[str, ...] = ()
    prompts: Tuple[str, ...] = ()
    phases: Tuple[Literal["start", "update", "end"], ...] = ("start", "end")
    queue_size: int = Field(1000, ge=1)
    timeout_s: float = Field(5.0, gt=0)
    max_attempts: int = Field(5, ge=1)
    backoff_initial_s: float = Field(1.0, gt=0)
    backoff_max_s: float = Field(60.0, gt=0)
    _secret: Optional[SecretStr] = PrivateAttr(None)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL")
        if parts.username is not None or parts.password is not None:  # urllib would not send them
            raise ValueError("no user or password in the URL (never sent): use a token in its path or "
                             "query, or sign with secret_file")
        return value

    _file = field_validator("secret_file")(classmethod(lambda cls, v, info: None if v is None else _credential_path(v, info)))

    @model_validator(mode="after")
    def _load_secret(self, info: Any) -> "WebhookSettings":
        if self.secret_file is not None and self.secret_env is not None:
            raise ValueError("secret_file and secret_env: give one")
        self._secret = _read_secret(self.secret_file, self.secret_env, info, "secret")
        return self

    @property
    def secret(self) -> Optional[SecretStr]:
        return self._secret


class MetricsSettings(_Section):
    """`metrics:` Prometheus endpoint; port 0 = off."""

    host: str = "127.0.0.1"
    port: int = Field(0, ge=0, le=65535)


class BridgeSettings(_Section):
    """The whole bridge.yaml."""

    name: str = "bridge"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    sources: Tuple[SourceSettings, ...]
    mqtt: Optional[MqttSettings] = None
    webhooks: Tuple[WebhookSettings, ...] = ()
    metrics: MetricsSettings = MetricsSettings()
    stats_every_s: float = Field(60.0, gt=0)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_name(value)

    @field_validator("sources")
    @classmethod
    def _some(cls, value: Tuple[SourceSettings, ...]) -> Tuple[SourceSettings, ...]:
        if not value:
            raise ValueError("list at least one daemon bus to subscribe to")
        return value

    @model_validator(mode="after")
    def _a_sink(self) -> "BridgeSettings":
        if self.mqtt is None and not self.webhooks:
            raise ValueError("configure at least one sink: mqtt or webhooks")
        return self

    def secrets(self) -> List[str]:
        """Secret values, for the log redaction filter."""
        found = [self.mqtt.password] if self.mqtt is not None else []
        found += [hook.secret for hook in self.webhooks]
        return [s.get_secret_value() for s in found if s is not None and s.get_secret_value()]


class PublishSide(_Section):
    """`publish:` the relay's XPUB bind, CURVE server keys (a set separate from the upstreams')."""

    bind: str = "tcp://127.0.0.1:5560"
    send_hwm: int = Field(10000, ge=1)
    secret_key_file: Optional[Path] = None
    clients_dir: Optional[Path] = None

    _endpoint = field_validator("bind")(classmethod(lambda cls, v: check_endpoint(v)))
    _paths = field_validator("secret_key_file", "clients_dir")(
        classmethod(lambda cls, v, info: None if v is None else _credential_path(v, info)))

    @model_validator(mode="after")
    def _pair(self) -> "PublishSide":
        if (self.secret_key_file is None) != (self.clients_dir is None):
            raise ValueError("secret_key_file and clients_dir go together")
        return self


class RelaySettings(_Section):
    """The whole relay.yaml."""

    name: str = "relay"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    upstreams: Tuple[SourceSettings, ...]
    publish: PublishSide = PublishSide()
    metrics: MetricsSettings = MetricsSettings()
    stats_every_s: float = Field(10.0, gt=0)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_name(value)

    @field_validator("upstreams")
    @classmethod
    def _some(cls, value: Tuple[SourceSettings, ...]) -> Tuple[SourceSettings, ...]:
        if not value:
            raise ValueError("list at least one daemon bus")
        return value


Model = Union[BridgeSettings, RelaySettings]


def _parse(loaded: LoadedYaml, model: Any, env: Mapping[str, str]) -> Any:
    absolute = Path(os.path.abspath(loaded.source))
    credentials = env.get("CREDENTIALS_DIRECTORY")
    context = {"bridge": _Context(absolute.parent, Path(credentials) if credentials else None, env)}
    try:
        return model.model_validate(loaded.data, context=context)
    except ValidationError as exc:
        raise ConfigError(validation_lines(exc, loaded, model)) from None


def load_bridge_config(path: Union[str, Path], env: Optional[Mapping[str, str]] = None) -> BridgeSettings:
    """Read and validate bridge.yaml; ConfigError lists every problem, one line each."""
    environment = os.environ if env is None else env
    return _parse(load_yaml(path, environment), BridgeSettings, environment)  # type: ignore[no-any-return]


def load_relay_config(path: Union[str, Path], env: Optional[Mapping[str, str]] = None) -> RelaySettings:
    """Read and validate relay.yaml."""
    environment = os.environ if env is None else env
    return _parse(load_yaml(path, environment), RelaySettings, environment)  # type: ignore[no-any-return]


def bridge_from_data(data: Mapping[str, Any], env: Optional[Mapping[str, str]] = None) -> BridgeSettings:
    """Settings from command-line options (no file): errors name the option."""
    environment = os.environ if env is None else env
    loaded = LoadedYaml(data=dict(data), locations={}, source="command line")
    return _parse(loaded, BridgeSettings, environment)  # type: ignore[no-any-return]


__all__ = ["BridgeSettings", "RelaySettings", "MqttSettings", "WebhookSettings", "SourceSettings",
           "load_bridge_config", "load_relay_config", "bridge_from_data", "format_error", "EVENT_TYPES"]

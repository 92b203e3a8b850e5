"""console.yaml -> validated, frozen settings; errors are `FILE:LINE: key.path: message` lines.

The same strict YAML loader and error mapping as the daemon's config (no aliases, no duplicate
keys, `${VAR}` from the environment). Relative paths resolve against the config file's folder;
credential files (`auth.*_file`, CURVE keys) against `$CREDENTIALS_DIRECTORY` when systemd set it.
"""
import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Tuple, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from daemon.config.checks import check_endpoint, check_secret_file
from daemon.config.errors import validation_lines
from daemon.config.yaml_loader import load_yaml
from daemon.errors import ConfigError

DEFAULT_LISTEN = "127.0.0.1:8080"


@dataclass(frozen=True)
class _Context:
    base_dir: Path
    credentials_dir: Optional[Path]


def _context(info: Any) -> _Context:
    found = (info.context or {}).get("console") if info is not None else None
    if isinstance(found, _Context):
        return found
    credentials = os.environ.get("CREDENTIALS_DIRECTORY")
    return _Context(Path.cwd(), Path(credentials) if credentials else None)


def _credential_path(value: Path, info: Any) -> Path:
    context = _context(info)
    return Path(os.path.normpath(str((context.credentials_dir or context.base_dir) / value)))


def default_data_dir(environ: Optional[Mapping[str, str]] = None) -> Path:
    """$STATE_DIRECTORY (systemd StateDirectory=), else $XDG_STATE_HOME or ~/.local/state, /blipd-console."""
    env = os.environ if environ is None else environ
    if env.get("STATE_DIRECTORY"):
        return Path(env["STATE_DIRECTORY"].split(":")[0])
    base = env.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "blipd-console"


def split_listen(value: str) -> Tuple[str, int]:
    """'127.0.0.1:8080' / '[::1]:8080' / 'localhost:8080' -> (host, port); ValueError otherwise."""
    match = re.match(r"^(?:\[([0-9A-Fa-f:.]+)\]|([^:\[\]]+)):(\d{1,5})$", value.strip())
    if match is None:
        raise ValueError("must be HOST:PORT (e.g. 127.0.0.1:8080 or [::1]:8080)")
    host, port = match.group(1) or match.group(2), int(match.group(3))
    if not 0 <= port <= 65535:
        raise ValueError("port must be 0-65535")
    return host, port


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True, allow_inf_nan=False)


class BusCurve(_Section):
    """`buses[].curve:` the daemon's public key and this console's key pair (its public half in the
    daemon's clients_dir)."""

    server_key_file: Path
    client_secret_key_file: Path

    @field_validator("server_key_file", "client_secret_key_file")
    @classmethod
    def _resolve(cls, value: Path, info: Any) -> Path:
        path = _credential_path(value, info)
        if info.field_name == "client_secret_key_file":
            check_secret_file(path)
        elif not path.is_file():
            raise ValueError("file not found: %s" % path)
        return path


class Bus(_Section):
    """`buses[]:` one daemon's ZeroMQ endpoint to subscribe to."""

    endpoint: str
    curve: Optional[BusCurve] = None

    _endpoint = field_validator("endpoint")(classmethod(lambda cls, v: check_endpoint(v, ("tcp", "ipc"))))


class Retention(_Section):
    """`retention:` events older than max_age_days, or the oldest beyond max_total_mb, are deleted."""

    max_age_days: float = Field(30.0, gt=0)
    max_total_mb: float = Field(2048.0, gt=0)
    check_every_s: float = Field(10.0, gt=0)


class Snapshots(_Section):
    """`snapshots:` the daemon's JPEGs kept as files beside the database, while the disk allows."""

    enabled: bool = True
    min_free_mb: float = Field(1024.0, ge=0)


class Auth(_Section):
    """`auth:` required to listen on anything but loopback; a bearer token or users (user:password lines)."""

    token_file: Optional[Path] = None
    users_file: Optional[Path] = None

    @field_validator("token_file", "users_file")
    @classmethod
    def _resolve(cls, value: Optional[Path], info: Any) -> Optional[Path]:
        if value is None:
            return None
        path = _credential_path(value, info)
        check_secret_file(path)
        return path

    @model_validator(mode="after")
    def _one(self) -> "Auth":
        if self.token_file is None and self.users_file is None:
            raise ValueError("give token_file or users_file")
        return self


class ConsoleSettings(_Section):
    """The whole console.yaml."""

    buses: Tuple[Bus, ...]
    listen: str = DEFAULT_LISTEN
    data_dir: Optional[Path] = None
    retention: Retention = Retention()
    snapshots: Snapshots = Snapshots()
    auth: Optional[Auth] = None
    commit_every_s: float = Field(0.25, gt=0, le=1.0)
    log_level: str = "info"

    @field_validator("buses")
    @classmethod
    def _some(cls, value: Tuple[Bus, ...]) -> Tuple[Bus, ...]:
        if not value:
            raise ValueError("list at least one bus to subscribe to")
        return value

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        split_listen(value)
        return value

    @field_validator("data_dir")
    @classmethod
    def _data(cls, value: Optional[Path], info: Any) -> Optional[Path]:
        if value is None:
            return None
        return Path(os.path.normpath(str(_context(info).base_dir / value)))

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        if value.lower() not in ("debug", "info", "warning", "error", "critical"):
            raise ValueError("must be one of debug, info, warning, error, critical")
        return value.lower()

    @model_validator(mode="after")
    def _exposed_needs_auth(self) -> "ConsoleSettings":
        host, _ = split_listen(self.listen)
        if self.auth is None and not is_loopback(host):
            raise ValueError(exposure_message(self.listen))
        return self

    @property
    def host(self) -> str:
        return split_listen(self.listen)[0]

    @property
    def port(self) -> int:
        return split_listen(self.listen)[1]

    def data_path(self) -> Path:
        return self.data_dir or default_data_dir()


def exposure_message(listen: str) -> str:
    return ("listen %s is not a loopback address: anyone who can reach it would see the cameras' "
            "history; set auth (token_file or users_file) or listen on 127.0.0.1" % listen)


def parse_settings(data: Any, source: str, loaded: Any = None, base_dir: Optional[Path] = None,
                   credentials_dir: Optional[Path] = None) -> ConsoleSettings:
    """Validate plain data (from YAML or built from command-line options); ConfigError on problems."""
    context = {"console": _Context(base_dir or Path.cwd(), credentials_dir)}
    try:
        return ConsoleSettings.model_validate(data, context=context)
    except ValidationError as exc:
        if loaded is not None:
            raise ConfigError(validation_lines(exc, loaded, ConsoleSettings)) from None
        lines = []
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"]) or "options"
            message = str(error["msg"]).replace("Value error, ", "")
            lines.append("%s: %s: %s" % (source, where, message))
        raise ConfigError(lines) from None


def load_settings(path: Union[str, Path], env: Optional[Mapping[str, str]] = None) -> ConsoleSettings:
    """Read and validate console.yaml; ConfigError with one `FILE:LINE: key: message` per problem."""
    environment = os.environ if env is None else env
    loaded = load_yaml(path, environment)
    credentials = environment.get("CREDENTIALS_DIRECTORY")
    return parse_settings(loaded.data, str(path), loaded, Path(os.path.abspath(str(path))).parent,
                          Path(credentials) if credentials else None)

"""Settings: the one source of every default, and the TOML file that changes them.

Every command-line flag ``--some-flag`` has the config key ``some_flag``; a flag
given on the command line beats the file, which beats the default.  The table
``[service.NAME]`` is handed to service NAME as its ``options``.  Directories
in a config file are relative to that file.  Every program's flags are read
with OneLineParser, so a mistake is one line on stderr and exit status 2.
"""

import argparse
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 10000
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMATS = ("text", "json")


class ConfigError(ValueError):
    """A setting that cannot be used; the message says which and why."""


class UsageError(Exception):
    """Command-line arguments that cannot be used (exit status 2)."""


class OneLineParser(argparse.ArgumentParser):
    """The flags of every smanager program: a mistake is one line, not a usage block."""

    def error(self, message):
        raise UsageError(message)


def bundled_services_dir() -> Path:
    """The services shipped with smanager: beside the package in a checkout,
    inside it once installed."""
    package = Path(__file__).resolve().parent
    installed = package / "bundled_services"
    return installed if installed.is_dir() else package.parent / "services"


@dataclass
class Config:
    """Every setting of the server, with its default; ``updated()`` applies a
    file's or the command line's values, each checked."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    services: list[str] = field(default_factory=list)  # more directories to load services from
    no_default_services: bool = False
    log_level: str = "INFO"
    log_file: str = ""  # append the log here, not to stderr (cli/logs.py)
    log_format: str = "text"  # or "json": one object a line
    command_timeout: float = 30.0  # seconds a command may run (a stream: between chunks)
    shutdown_timeout: float = 10.0  # seconds for commands in flight, and for each hook
    max_line: int = 65536  # bytes in one line before the connection is closed
    oneshot_delay: float = 0.2  # seconds of silence after an unterminated first line
    insecure: bool = False  # allow listening beyond loopback without authentication
    tcp: bool = True  # listen on host:port (off: only on the Unix socket)
    unix_socket: str = ""  # also (or only) listen on this Unix socket path
    unix_socket_mode: str = "600"  # its permissions, in octal
    max_connections: int = 1000
    max_connections_per_address: int = 100
    # Connections the kernel queues before accept (capped by net.core.somaxconn): a
    # burst of cron one-liners beyond it waits a 1-second SYN retry.  asyncio's 100 did.
    backlog: int = 1024
    idle_timeout: float = 3600.0  # seconds a connection may send and run nothing
    line_timeout: float = 120.0  # seconds to finish a line once begun
    send_timeout: float = 60.0  # seconds a client may leave our output unread
    tls_cert: str = ""  # with tls_key: the TCP listener speaks TLS only
    tls_key: str = ""
    tls_client_ca: str = ""  # require client certificates signed by this CA
    users_file: str = ""  # users and their levels: connections log in (it must name one)
    unauthenticated: list[str] = field(default_factory=lambda: ["help"])  # before login
    login_max_line: int = 1024  # before logging in: bytes in a line...
    login_max_commands: int = 10  # ...lines sent...
    login_timeout: float = 60.0  # ...and seconds connected
    login_backoff_max: float = 60.0  # longest wait forced on an address after failed logins
    audit_log: str = ""  # a file for the audit trail, "-" for stderr; none by default
    audit_log_max_bytes: int = 10 * 1024 * 1024  # rotate the file at this size...
    audit_log_backups: int = 5  # ...keeping this many old ones
    service: dict[str, dict] = field(default_factory=dict)  # [service.NAME] tables
    config_file: str = ""  # the file these settings came from: set by --config, not by a file

    @property
    def service_dirs(self) -> list[Path]:
        bundled = [] if self.no_default_services else [bundled_services_dir()]
        return bundled + [Path(directory) for directory in self.services]

    def updated(self, settings: Mapping[str, Any]) -> "Config":
        """A copy with these settings applied, each checked."""
        known = {f.name: f for f in fields(self)}
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        for key, value in settings.items():
            key = key.replace("-", "_")
            if key not in known:
                raise ConfigError(f"unknown setting {key!r}")
            values[key] = _checked(key, value, type(getattr(Config(), key)))
        return Config(**values)


def _checked(key, value, kind):
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if kind is list and isinstance(value, str):
        value = [value]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{key} must be {kind.__name__}, not {value!r}")
    if key == "port" and not 0 <= value <= 65535:
        raise ConfigError(f"port must be 0-65535, not {value}")
    if key == "log_level":
        value = value.upper()
        if value not in LOG_LEVELS:
            raise ConfigError(f"log_level must be one of {', '.join(LOG_LEVELS)}")
    if key == "log_format" and value not in LOG_FORMATS:
        raise ConfigError(f"log_format must be one of {', '.join(LOG_FORMATS)}, not {value!r}")
    if kind is float and value <= 0:
        raise ConfigError(f"{key} must be more than 0, not {value}")
    if key in ("max_line", "login_max_line") and value < 80:
        raise ConfigError(f"{key} must be at least 80, not {value}")
    if key in ("login_max_commands", "max_connections", "max_connections_per_address",
               "audit_log_backups", "audit_log_max_bytes", "backlog") and value < 1:
        raise ConfigError(f"{key} must be at least 1, not {value}")
    if key == "unix_socket_mode" and not (value.isdigit() and set(value) <= set("01234567")
                                          and int(value, 8) <= 0o777):
        raise ConfigError(f"unix_socket_mode must be octal permissions like 600, not {value!r}")
    if key == "users_file" and not value.strip():
        # --users-file "$UNSET" would otherwise start a server open to everyone.
        raise ConfigError("users_file must name a file")
    if key == "services" and not all(isinstance(item, str) for item in value):
        raise ConfigError("services must be a list of directories")
    if key == "unauthenticated":
        value = [item for item in value if item != ""]  # --unauthenticated '': nothing
        if not all(isinstance(item, str) and 1 <= len(item.split()) <= 2 for item in value):
            raise ConfigError("unauthenticated must list commands: NAME, SERVICE or "
                              "'SERVICE COMMAND'")
        value = [" ".join(item.lower().split()) for item in value]
    if key == "service" and not all(isinstance(item, dict) for item in value.values()):
        raise ConfigError("each [service.NAME] must be a table")
    return value


# Settings that name files or directories.  In a [service.NAME] table (and
# the tables inside it), a key named so is one: dir, file, path, cwd, or ending
# in _dir, _file or _path (capture_dir, env_file).
PATH_SETTINGS = frozenset({"services", "users_file", "audit_log", "tls_cert", "tls_key",
                           "tls_client_ca", "unix_socket", "log_file"})
_PATH_KEY = re.compile(r"(?:^|_)(?:dir|file|path)$|^cwd$")
_NOT_PATHS = frozenset({"env", "params"})  # tables of a program's own names and values


def read_file(path: str | Path) -> dict[str, Any]:
    """The settings in a TOML file, with every path in it made absolute: a
    relative one is relative to the file, wherever the server is started."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            settings = tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    if "config_file" in settings:
        raise ConfigError(f"{path}: config_file is not a setting (it is the file's own name)")
    base = path.absolute().parent  # as named: a symlinked file keeps its own place
    for key in PATH_SETTINGS & settings.keys():
        settings[key] = _anchored(base, settings[key])
    if isinstance(settings.get("service"), dict):
        settings["service"] = anchored_table(base, settings["service"])
    return settings


def anchored_table(base: Path, table: Mapping[str, Any]) -> dict[str, Any]:
    """A service's table with the values of its path keys made absolute
    (relative ones are relative to ``base``, the directory of their file)."""
    return {key: value if key in _NOT_PATHS
            else anchored_table(base, value) if isinstance(value, dict)
            else _anchored(base, value) if _PATH_KEY.search(key) else value
            for key, value in table.items()}


def _anchored(base, value):
    """A path (or a list of them) relative to ``base``; anything else as it is
    ("-" is stderr; an absolute or ~ path stays, and so does one a template's
    $parameter will give)."""
    if isinstance(value, list):
        return [_anchored(base, item) for item in value]
    if not isinstance(value, str) or value in ("", "-") or value.startswith(("~", "$")):
        return value
    return str(base / value)

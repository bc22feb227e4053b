"""The settings rules shared by the socket fleet and the Q&A core (docs/configuration.md).

Both programs describe their settings as a frozen pydantic-settings model built once at
start-up by :meth:`HeraldSettings.from_env`, from an environment mapping the entry point
passes in (no module reads ``os.environ`` on its own, and building a model directly reads
nothing). The rules, the same for both:

* each field ``name`` is read from ``<prefix><NAME>`` (``HERALD_`` for the fleet,
  ``HERALD_QA_`` for the Q&A core); an empty variable counts as unset;
* the settings both programs must agree on (:class:`BusSettings`: the Redis URL, the key
  prefix, history retention, the namespace file, the log level) have one shared name,
  ``HERALD_<NAME>``, that both read; ``REDIS_URL`` is the documented alias of
  ``HERALD_REDIS_URL``;
* a ``*_pem`` field may instead name a file with ``<prefix><NAME without _pem>_FILE``;
* booleans take ``1/0/true/false/yes/no/on/off``, tuples are comma-separated;
* a value that cannot work raises :class:`SettingsError`, whose message names the environment
  variable it came from and, for a choice, lists the valid values.

This module also owns the one log format of every Herald process (:func:`configure_logging`,
:func:`uvicorn_log_config`) and the port check the launchers make before they start anything
(:func:`cannot_bind`). The publishing library never imports it: pydantic is not one of
its dependencies.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import (
    BeforeValidator,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from herald_contract.errors import HeraldError
from herald_contract.history import HistorySettings
from herald_contract.namespaces import Namespaces
from herald_contract.namespaces_file import NamespaceFileError, load_namespaces
from herald_contract.redis_urls import check_redis_url

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
BOOLEAN_WORDS = "1, 0, true, false, yes, no, on, off"


class SettingsError(HeraldError, ValueError):
    """A setting whose value cannot work.

    *name* is the field, *env* the environment variable the value came from (None when it
    came from a command-line flag or a default), *why* what is wrong. The message starts with
    the variable (or the field) so that a one-line start-up failure says what to change.
    """

    def __init__(self, name: str, why: str, *, env: str | None = None) -> None:
        self.name = name
        self.env = env
        self.why = why
        where = env if env is not None else f"setting {name}"
        super().__init__(f"{where}: {why}")


class SettingProblem(ValueError):
    """Raised inside a model validator to blame *name* (pydantic would blame the model)."""

    def __init__(self, name: str, why: str) -> None:
        self.name = name
        self.why = why
        super().__init__(why)


def _comma_separated(value: object) -> object:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


def _upper(value: object) -> object:
    return value.upper() if isinstance(value, str) else value


PositiveInt = Annotated[int, Field(ge=1)]
PositiveSeconds = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonEmpty = Annotated[str, Field(min_length=1)]
CommaTuple = Annotated[tuple[str, ...], BeforeValidator(_comma_separated)]
LogLevel = Annotated[
    Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], BeforeValidator(_upper)
]


class HeraldSettings(BaseSettings):
    """Base of both programs' settings: the source, the env names, errors, ``replace``."""

    model_config = SettingsConfigDict(frozen=True, extra="forbid", validate_default=True)

    ENV_PREFIX: ClassVar[str] = "HERALD_"
    ENV_NAMES: ClassVar[Mapping[str, tuple[str, ...]]] = {}
    """Fields read from other names than ``ENV_PREFIX + NAME``, in order of precedence."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Only the arguments: the environment is read by :meth:`from_env`, never implicitly."""
        return (init_settings,)

    @classmethod
    def env_names(cls, name: str) -> tuple[str, ...]:
        """The environment variables of field *name*, the one that wins first."""
        return cls.ENV_NAMES.get(name, (cls.ENV_PREFIX + name.upper(),))

    @classmethod
    def from_env(cls, env: Mapping[str, str], **overrides: Any) -> Self:
        """Settings from *env*, then *overrides* (command-line flags), validated once.

        Raises :class:`SettingsError` naming the variable (or the flag's field) at fault.
        """
        source = EnvironmentSource(cls, env)
        return cls.build(source.used, **{**source(), **overrides})

    @classmethod
    def build(cls, env_of: Mapping[str, str] | None = None, **values: Any) -> Self:
        """The settings of *values*, or :class:`SettingsError`; *env_of* maps a field to the
        variable its value was read from, for the message."""
        try:
            return cls(**values)
        except ValidationError as exc:
            raise _settings_error(cls, exc, env_of or {}) from None

    def replace(self, **changes: Any) -> Self:
        """A copy with *changes*, validated like the original."""
        return self.build(None, **{**dict(self), **changes})


class BusSettings(HeraldSettings):
    """What the fleet and every publisher must agree on; the same variables for both."""

    SHARED: ClassVar[Mapping[str, tuple[str, ...]]] = {
        "redis_url": ("HERALD_REDIS_URL", "REDIS_URL"),
        "key_prefix": ("HERALD_KEY_PREFIX",),
        "history_size": ("HERALD_HISTORY_SIZE",),
        "history_ttl_s": ("HERALD_HISTORY_TTL_S",),
        "meta_ttl_s": ("HERALD_META_TTL_S",),
        "idempotency_ttl_s": ("HERALD_IDEMPOTENCY_TTL_S",),
        "namespaces_file": ("HERALD_NAMESPACES_FILE",),
        "log_level": ("HERALD_LOG_LEVEL",),
    }

    OWN_NAME_FIRST: ClassVar[frozenset[str]] = frozenset()
    """Shared fields a program may also set under its own prefix (that name wins)."""

    @classmethod
    def env_names(cls, name: str) -> tuple[str, ...]:
        shared = cls.SHARED.get(name)
        if shared is None:
            return super().env_names(name)
        own = cls.ENV_PREFIX + name.upper()
        return (own, *shared) if name in cls.OWN_NAME_FIRST and own not in shared else shared

    redis_url: str | None = None
    """None: the in-process bus (one process only)."""
    key_prefix: NonEmpty = "herald"
    history_size: PositiveInt = 500
    history_ttl_s: PositiveSeconds = 900.0
    meta_ttl_s: PositiveSeconds = 30 * 86400.0
    idempotency_ttl_s: PositiveSeconds = 86400.0
    namespaces_file: str | None = None
    """The namespace file (docs/namespaces.md); None: the shipped one. Read and checked when
    the settings are built, so a bad file stops a program at start with one line."""
    log_level: LogLevel = "INFO"

    _namespaces: Namespaces | None = PrivateAttr(default=None)

    @field_validator("redis_url")
    @classmethod
    def _redis_url_has_a_scheme(cls, value: str | None) -> str | None:
        if value is not None:
            check_redis_url(value)  # redis_urls.py: the forms, Sentinel's included
        return value

    @model_validator(mode="after")
    def _load_namespaces(self) -> Self:
        try:
            self._namespaces = load_namespaces(self.namespaces_file)
        except NamespaceFileError as exc:
            raise SettingProblem("namespaces_file", str(exc)) from None
        return self

    def namespaces(self) -> Namespaces:
        """The channel kinds of this installation, from ``namespaces_file``."""
        assert self._namespaces is not None  # set by the validator
        return self._namespaces

    def history_settings(self) -> HistorySettings:
        """The retention every publication of this installation is made with: the settings,
        and each kind's own where the namespace file sets it."""
        return HistorySettings(
            self.history_size,
            self.history_ttl_s,
            self.meta_ttl_s,
            self.idempotency_ttl_s,
            self.namespaces().retention(),
        )


class EnvironmentSource(PydanticBaseSettingsSource):
    """A pydantic-settings source over an environment mapping handed in by the caller.

    Reads each field from :meth:`HeraldSettings.env_names` (the first set, non-empty one
    wins) and each ``*_pem`` field also from its ``_FILE`` variable when no PEM is given.
    ``used`` records, per field, the variable its value came from.
    """

    def __init__(self, settings_cls: type[HeraldSettings], env: Mapping[str, str]) -> None:
        super().__init__(settings_cls)
        self._names = settings_cls
        self._env = env
        self.used: dict[str, str] = {}

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        for name in self._names.env_names(field_name):
            raw = self._env.get(name)
            if raw:
                return raw, name, False
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for field_name, field in self.settings_cls.model_fields.items():
            raw, name, _ = self.get_field_value(field, field_name)
            if raw is None and field_name.endswith("_pem"):
                raw, name = self._pem_file(field_name)
            if raw is not None:
                values[field_name] = raw
                self.used[field_name] = name
        return values

    def _pem_file(self, field_name: str) -> tuple[str | None, str]:
        name = self._names.ENV_PREFIX + field_name.removesuffix("_pem").upper() + "_FILE"
        path = self._env.get(name)
        if not path:
            return None, name
        try:
            return Path(path).read_text(encoding="ascii"), name
        except (OSError, UnicodeDecodeError) as exc:
            raise SettingsError(field_name, f"cannot read {path}: {exc}", env=name) from None


def _settings_error(
    cls: type[HeraldSettings], exc: ValidationError, env_of: Mapping[str, str]
) -> SettingsError:
    """The first problem of *exc* as a :class:`SettingsError` naming its variable.

    A problem across fields (a missing secret) names the variable to set even when the
    value came from elsewhere; a bad value names the variable it came from, if any.
    """
    error = exc.errors()[0]
    cause = error.get("ctx", {}).get("error")
    if isinstance(cause, SettingProblem):
        env = env_of.get(cause.name) or cls.env_names(cause.name)[0]
        return SettingsError(cause.name, cause.why, env=env)
    name = str(error["loc"][0]) if error["loc"] else "settings"
    return SettingsError(name, _why(error), env=env_of.get(name))


def _why(error: Any) -> str:
    """A short reason for one pydantic error, with the valid values where there is a list."""
    kind, value = error["type"], error.get("input")
    if kind in ("int_parsing", "int_from_float", "int_type"):
        return f"cannot read {value!r} as a whole number"
    if kind in ("float_parsing", "float_type"):
        return f"cannot read {value!r} as a number"
    if kind in ("bool_parsing", "bool_type"):
        return f"cannot read {value!r} as a boolean: use one of {BOOLEAN_WORDS}"
    if kind in ("literal_error", "enum"):
        return f"{value!r} is not one of {error['ctx']['expected']}"
    if kind == "value_error":
        return str(error["ctx"]["error"])
    if kind == "extra_forbidden":
        return "is not a setting"
    message = str(error["msg"]).replace("Input should be", "must be")
    return f"{message}, not {value!r}"


def configure_logging(level: str, tag: str = "") -> None:
    """Every Herald process logs ``time level logger message``; *tag* names a worker.

    Per-connection lines are logged at DEBUG, so INFO stays readable with many clients.
    """
    logging.basicConfig(level=level, format=LOG_FORMAT.replace("%(name)s", f"{tag}%(name)s"))


def uvicorn_log_config(level: str) -> dict[str, Any]:
    """uvicorn's ``log_config`` in the same format as :func:`configure_logging`."""
    formatter = {"format": LOG_FORMAT}
    handler = {"class": "logging.StreamHandler", "formatter": "herald"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"herald": formatter},
        "handlers": {"herald": {**handler, "stream": "ext://sys.stderr"}},
        "loggers": {
            name: {"handlers": ["herald"], "level": level, "propagate": False}
            for name in ("uvicorn", "uvicorn.error", "uvicorn.access")
        },
    }


def cannot_bind(host: str, port: int) -> str | None:
    """None if *host*:*port* can be bound now (with SO_REUSEADDR, as servers here bind), else
    why not (``Address already in use``). Lets a launcher refuse in one line before it starts
    anything; port 0 always binds."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            return exc.strerror or str(exc)
    return None

"""apexcal's configuration: a TOML file (DESIGN.md §4) parsed into frozen pydantic models.

``load_config(path)`` reads, overrides from ``APEXCAL_<SECTION>__<KEY>``
environment variables, validates, and raises :class:`apexcal.errors.ConfigError`
listing every problem with its file and key path.  Secrets (API token, CalDAV
passwords) come from ``*_file`` keys, the environment or systemd's
``$CREDENTIALS_DIRECTORY`` and are held as ``SecretStr``: never printed.
``config.example.toml`` at the repository root documents every key.
"""

from apexcal.config.calendars import FeedConfig, MappingConfig, TargetConfig, WindowConfig
from apexcal.config.durations import (
    Duration,
    DurationOrZero,
    format_duration,
    parse_duration,
)
from apexcal.config.loader import ENV_PREFIX, config_from_dict, env_value, load_config
from apexcal.config.models import (
    Config,
    LogConfig,
    ServerConfig,
    SourceConfig,
    StateConfig,
    SyncConfig,
    WorkerConfig,
    default_state_url,
)
from apexcal.config.secrets import TOKEN_ENV, read_secret_file, resolve_secrets
from apexcal.config.values import (
    ACTIVITY_URL_PLACEHOLDERS,
    CREDENTIAL_TOKEN,
    FILTER_KEYS,
    SUMMARY_PLACEHOLDERS,
    ActivityFilter,
    credential_password,
    template_fields,
)
from apexcal.errors import UnreadableSecrets

__all__ = [
    "ACTIVITY_URL_PLACEHOLDERS",
    "CREDENTIAL_TOKEN",
    "ENV_PREFIX",
    "FILTER_KEYS",
    "SUMMARY_PLACEHOLDERS",
    "TOKEN_ENV",
    "ActivityFilter",
    "Config",
    "Duration",
    "DurationOrZero",
    "FeedConfig",
    "LogConfig",
    "MappingConfig",
    "ServerConfig",
    "SourceConfig",
    "StateConfig",
    "SyncConfig",
    "TargetConfig",
    "UnreadableSecrets",
    "WindowConfig",
    "WorkerConfig",
    "config_from_dict",
    "credential_password",
    "default_state_url",
    "env_value",
    "format_duration",
    "load_config",
    "parse_duration",
    "read_secret_file",
    "resolve_secrets",
    "template_fields",
]

"""A config directory: one TOML file per organization plus ``apexcal.toml`` for what all share.

``DIR/apexcal.toml`` (optional) holds ``[state]``, ``[server]``, ``[sync]``
defaults, ``[worker]`` and ``[log]``; every other ``DIR/*.toml`` is one
organization in the single-file schema (``[source]``, ``[mapping]``,
``[[targets]]``, ``[[feeds]]`` and, to override the shared defaults, its own
``[sync]``), keyed by its file stem.  Each organization is validated into a
:class:`~apexcal.config.models.Config` of its own with the shared sections
merged in, so everything downstream (cycles, feeds, the store) sees the same
model as with ``--config FILE``.  Every problem of every file is reported at
once, each naming its file and key.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from apexcal.config.loader import _apply_env, _problem, _read_toml, _validate
from apexcal.config.models import Config, LogConfig, ServerConfig, StateConfig, WorkerConfig, _Table
from apexcal.config.secrets import resolve_secrets as _resolve_secrets
from apexcal.config.values import NAME_PATTERN
from apexcal.errors import ConfigError, Problem, SecretError, UnreadableSecrets

SHARED_FILE = "apexcal.toml"
# Sections only apexcal.toml may hold (one database, one server, one worker setup).
SHARED_ONLY = ("state", "server", "worker", "log")
SINGLE_ORGANIZATION = ""
"""The organization key of a config read with ``--config FILE`` (and of stores written before keys)."""


class SharedConfig(_Table):
    """``DIR/apexcal.toml``: the sections every organization of a directory shares."""

    state: StateConfig = StateConfig()
    server: ServerConfig | None = None
    sync: dict[str, Any] = {}  # noqa: RUF012  (validated per organization, merged under its own [sync])
    worker: WorkerConfig = WorkerConfig()
    log: LogConfig = LogConfig()


@dataclass(frozen=True)
class ConfigDir:
    """A loaded config directory: the shared file and every organization, by key (sorted)."""

    path: Path
    shared: SharedConfig
    organizations: Mapping[str, Config] = field(default_factory=dict)

    def organization(self, key: str) -> Config:
        """The config of organization ``key``; ``KeyError`` if there is none."""
        return self.organizations[key]

    def __iter__(self) -> Iterator[tuple[str, Config]]:
        return iter(self.organizations.items())

    @property
    def state_url(self) -> str:
        """The database every organization shares."""
        return self.shared.state.url


def load_config_dir(
    path: str | Path,
    *,
    env: Mapping[str, str] | None = None,
    resolve_secrets: bool = False,
) -> ConfigDir:
    """Read and validate every file of the config directory ``path``.

    Raises :class:`ConfigError` listing every problem of every file (each
    naming its file and key path), or, with ``resolve_secrets``,
    :class:`UnreadableSecrets` listing every secret that cannot be read.
    """
    directory = Path(path)
    env = os.environ if env is None else env
    if not directory.is_dir():
        what = "not found" if not directory.exists() else "not a directory"
        raise ConfigError([Problem(file=str(directory), path="", message=what)])
    problems: list[Problem] = []
    shared_file = directory / SHARED_FILE
    shared_raw: dict[str, Any] = {}
    shared = SharedConfig()
    if shared_file.exists():
        try:
            shared_raw, shared = _load_shared(shared_file, env)
        except ConfigError as exc:
            problems.extend(exc.problems)
            shared_raw = {}
    files = sorted(p for p in directory.glob("*.toml") if p.name != SHARED_FILE)
    if not files:
        problems.append(
            Problem(
                file=str(directory),
                path="",
                message=f"no organization files (*.toml besides {SHARED_FILE})",
            )
        )
    organizations: dict[str, Config] = {}
    for file in files:
        key = file.stem
        try:
            organizations[key] = _load_organization(file, key, shared_raw, env)
        except ConfigError as exc:
            problems.extend(exc.problems)
    problems.extend(_cross_checks(organizations))
    if problems:
        raise ConfigError(list(dict.fromkeys(problems)))
    if resolve_secrets:
        organizations = _resolve_all(organizations, env)
    return ConfigDir(path=directory, shared=shared, organizations=organizations)


def load_organizations(
    path: str | Path, files: Iterable[Path], *, env: Mapping[str, str] | None = None
) -> dict[str, Config]:
    """The organizations of ``files`` (some files of directory ``path``), secrets resolved.

    Each is read as :func:`load_config_dir` reads it: ``apexcal.toml`` merged
    in, and the cross-file checks run among these organizations only — what
    reloading the sound files of a partly broken directory needs.  Raises
    :class:`ConfigError` or :class:`UnreadableSecrets` with every problem.
    """
    env = os.environ if env is None else env
    shared_file = Path(path) / SHARED_FILE
    shared = _load_shared(shared_file, env)[0] if shared_file.exists() else {}
    problems: list[Problem] = []
    organizations: dict[str, Config] = {}
    for file in files:
        try:
            organizations[file.stem] = _load_organization(file, file.stem, shared, env)
        except ConfigError as exc:
            problems.extend(exc.problems)
    problems.extend(_cross_checks(organizations))
    if problems:
        raise ConfigError(problems)
    return _resolve_all(organizations, env)


def _load_shared(file: Path, env: Mapping[str, str]) -> tuple[dict[str, Any], SharedConfig]:
    name = str(file)
    raw = _read_toml(file, name)
    origins, problems = _apply_env(raw, env, name)
    try:
        shared = SharedConfig.model_validate(raw, context={"env": env})
    except ValidationError as exc:
        raise ConfigError([_problem(e, name, origins) for e in exc.errors()] + problems) from None
    if problems:
        raise ConfigError(problems)
    sync = raw.get("sync", {})
    if isinstance(sync, Mapping):
        # The shared [sync] is validated as part of each organization; check it
        # once here too, so its problems name apexcal.toml rather than every file.
        _validate({"source": {"organization_id": 1}, "sync": dict(sync)}, file=name, env={},
                  base_dir=None)
    return raw, shared


def _load_organization(
    file: Path, key: str, shared: Mapping[str, Any], env: Mapping[str, str]
) -> Config:
    name = str(file)
    problems: list[Problem] = []
    if not NAME_PATTERN.fullmatch(key):
        problems.append(
            Problem(
                file=name, path="",
                message=f"{key!r} is not a valid organization key (the file name): "
                "use letters, digits, '.', '_' and '-' only",
            )
        )
    raw = _read_toml(file, name)
    for section in SHARED_ONLY:
        if section in raw:
            problems.append(
                Problem(file=name, path=section,
                        message=f"[{section}] is shared: set it in {SHARED_FILE}")
            )
            del raw[section]
    for section in SHARED_ONLY:
        if section in shared:
            raw[section] = shared[section]
    own_sync = raw.get("sync")
    shared_sync = shared.get("sync")
    if isinstance(shared_sync, Mapping):
        raw["sync"] = {**shared_sync, **own_sync} if isinstance(own_sync, Mapping) else (
            dict(shared_sync) if own_sync is None else own_sync
        )
    try:
        config = _validate(raw, file=name, env=env, base_dir=file.parent)
    except ConfigError as exc:
        problems.extend(exc.problems)
        raise ConfigError(problems) from None
    if problems:
        raise ConfigError(problems)
    config._path = file
    return config


def _cross_checks(organizations: Mapping[str, Config]) -> list[Problem]:
    """Across files: one mirror per API organization, one writer per feed file."""
    problems: list[Problem] = []
    sources: dict[tuple[str, int], str] = {}
    paths: dict[str, str] = {}
    for config in organizations.values():
        file = str(config.path)
        source = (config.source.base_url.rstrip("/"), config.source.organization_id)
        if source in sources:
            problems.append(
                Problem(
                    file=file, path="source.organization_id",
                    message=f"organization {source[1]} of {source[0]} is already "
                    f"configured in {sources[source]}",
                )
            )
        else:
            sources[source] = file
        for index, feed in enumerate(config.feeds):
            normal = os.path.normpath(str(feed.path))
            if normal in paths:
                problems.append(
                    Problem(file=file, path=f"feeds[{index}].path",
                            message=f"duplicate path: {paths[normal]} already writes {feed.path}")
                )
            else:
                paths[normal] = f"{file} feeds[{index}]"
    return problems


def _resolve_all(organizations: Mapping[str, Config], env: Mapping[str, str]) -> dict[str, Config]:
    resolved: dict[str, Config] = {}
    problems: list[Problem] = []
    for key, config in organizations.items():
        file = str(config.path)
        try:
            resolved[key] = _resolve_secrets(config, env=env, file=file)
        except UnreadableSecrets as exc:
            problems.extend(exc.problems)
        except SecretError as exc:
            problems.append(Problem(file=file, path=exc.key, message=exc.reason))
    if problems:
        raise UnreadableSecrets(problems)
    return resolved


def load_one(
    config: str | Path | None,
    config_dir: str | Path | None,
    org: str | None,
    *,
    env: Mapping[str, str] | None = None,
    resolve_secrets: bool = False,
) -> tuple[Config, str]:
    """The config and organization key a command acting on one organization works with.

    Exactly one of ``config`` (a file: key ``''``) and ``config_dir`` (with
    ``org``, which may be left out when the directory holds one organization).
    Raises :class:`UsageError` for a wrong combination or an unknown ``org``.
    """
    from apexcal.config.loader import load_config
    from apexcal.errors import UsageError

    if (config is None) == (config_dir is None):
        raise UsageError("give exactly one of --config FILE or --config-dir DIR")
    if config is not None:
        if org is not None:
            raise UsageError("--org needs --config-dir")
        loaded = load_config(config, env=env, resolve_secrets=resolve_secrets)
        return loaded, SINGLE_ORGANIZATION
    assert config_dir is not None
    configs = load_config_dir(config_dir, env=env, resolve_secrets=resolve_secrets)
    keys = list(configs.organizations)
    if org is None:
        if len(keys) != 1:
            raise UsageError(f"--org is needed: {config_dir} holds {', '.join(keys)}")
        org = keys[0]
    if org not in configs.organizations:
        raise UsageError(f"--org {org}: no such organization (configured: {', '.join(keys)})")
    return configs.organization(org), org

"""Reloading the organizations of a config directory in one ``apexcal run`` process.

``apexcal run --config-dir DIR`` (no ``--org``) runs every organization of
the directory (its feeds served as :mod:`apexcal.daemon.served` says).  A SIGHUP re-reads the directory with :func:`reload_directory`: organizations
added or removed are added or removed; an organization whose file is broken
keeps running on its previous config (or, new, is left out) while the others
take their new config, and every problem names its file.  A broken
``apexcal.toml`` keeps every organization on its previous config.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from apexcal.config import Config
from apexcal.errors import ConfigError, Problem, SecretError, UnreadableSecrets


@dataclass(frozen=True, kw_only=True)
class Reloaded:
    """What a re-read of a config directory gives: the organizations to run, and the problems found.

    ``kept`` names the organizations left on their previous config because
    their file (or the shared file) has problems; ``skipped`` the new ones
    left out for the same reason.
    """

    organizations: dict[str, Config]
    problems: list[Problem]
    kept: list[str]
    skipped: list[str]


def reload_directory(
    path: Path,
    old: Mapping[str, Config],
    *,
    only: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Reloaded:
    """Re-read config directory ``path`` (secrets resolved), keeping what is broken on ``old``.

    With ``only``, just that organization is wanted (``apexcal run --org``).
    """
    from apexcal.config.directory import SHARED_FILE, load_config_dir, load_organizations

    env = os.environ if env is None else env
    try:
        loaded = dict(load_config_dir(path, env=env, resolve_secrets=True).organizations)
    except (ConfigError, UnreadableSecrets) as exc:
        problems = list(exc.problems)
    except SecretError as exc:
        problems = [Problem(file=str(path), path=exc.key, message=exc.reason)]
    else:
        if only is not None:
            if only not in loaded:
                return Reloaded(
                    organizations=dict(old),
                    problems=[Problem(file=str(path / f"{only}.toml"), path="",
                                      message="not found: the organization keeps its config")],
                    kept=[only], skipped=[],
                )
            loaded = {only: loaded[only]}
        return Reloaded(organizations=loaded, problems=[], kept=[], skipped=[])
    broken = {Path(p.file) for p in problems}
    files = sorted(p for p in path.glob("*.toml") if p.name != SHARED_FILE)
    if only is not None:
        files = [f for f in files if f.stem == only]
        # Problems of the other organizations' files are not this process's.
        problems = [p for p in problems if Path(p.file) not in _others(path, only)]
    if path in broken or path / SHARED_FILE in broken or not files:
        # Nothing can be trusted apart from the old config.
        return Reloaded(organizations=dict(old), problems=problems, kept=sorted(old), skipped=[])
    # Read the sound files again on their own: a directory holding just them.
    sound = [f for f in files if f not in broken]
    organizations: dict[str, Config] = {}
    if sound:
        try:
            organizations = load_organizations(path, sound, env=env)
        except (ConfigError, UnreadableSecrets) as exc:  # cross-file problems among the sound ones
            problems.extend(p for p in exc.problems if p not in problems)
            return Reloaded(organizations=dict(old), problems=problems, kept=sorted(old),
                            skipped=[])
    kept: list[str] = []
    skipped: list[str] = []
    for file in files:
        if file in broken:
            if file.stem in old:
                organizations[file.stem] = old[file.stem]
                kept.append(file.stem)
            else:
                skipped.append(file.stem)
    return Reloaded(organizations=dict(sorted(organizations.items())), problems=problems,
                    kept=kept, skipped=skipped)


def reread_file(path: Path, old: Mapping[str, Config]) -> Reloaded:
    """Re-read config file ``path`` (secrets resolved) for the one organization of ``old``; a bad file keeps ``old``."""
    from apexcal.config import load_config

    try:
        new = load_config(path, resolve_secrets=True)
    except (ConfigError, SecretError) as exc:
        problems = list(getattr(exc, "problems", ())) or [
            Problem(file=str(path), path="", message=str(exc))
        ]
        return Reloaded(organizations=dict(old), problems=problems, kept=list(old), skipped=[])
    return Reloaded(organizations={next(iter(old)): new}, problems=[], kept=[], skipped=[])


def _others(path: Path, only: str) -> set[Path]:
    from apexcal.config.directory import SHARED_FILE

    return {p for p in path.glob("*.toml") if p.name != SHARED_FILE and p.stem != only}

"""The work of ``apexcal config check FILE|DIR [--secrets]``, free of the command-line framework.

The console script's light front (:mod:`apexcal.cli.front`) calls it directly
for a plain ``config check``; the typer command calls it for everything else.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from urllib.parse import urlsplit

from apexcal.config import Config, UnreadableSecrets, load_config
from apexcal.errors import ConfigError, Problem, SecretError


def check_config(file: str, secrets: bool) -> int:
    """Validate ``file`` (or every file of a directory): print every problem to stderr and return 2, or ``ok`` and 0."""
    try:
        if Path(file).is_dir():
            from apexcal.config.directory import load_config_dir

            load_config_dir(file, env=os.environ, resolve_secrets=secrets)
        else:
            config = load_config(file, env=os.environ, resolve_secrets=secrets)
            for warning in shared_account_warnings(config):
                print(f"{file}: warning: {warning}", file=sys.stderr)
    except ConfigError as exc:
        return _report(exc.problems)
    except UnreadableSecrets as exc:
        return _report(exc.problems)
    except SecretError as exc:
        return _report([Problem(file=file, path=exc.key, message=exc.reason)])
    print("ok")
    return 0


def _report(problems: tuple[Problem, ...] | list[Problem]) -> int:
    for problem in problems:
        print(problem, file=sys.stderr)
    return 2


def _values(value: object) -> set[str]:
    if isinstance(value, (list, tuple, set, frozenset)):
        return {str(v) for v in value}
    return {str(value)}


def _filters_can_overlap(a: dict[str, object], b: dict[str, object]) -> bool:
    """False only when some key both filters set has disjoint values (then no activity matches both)."""
    return not any(_values(a[k]).isdisjoint(_values(b[k])) for k in a.keys() & b.keys())


def shared_account_warnings(config: Config) -> list[str]:
    """One line per pair of targets in one CalDAV account (same host and user name) whose filters can overlap.

    Cyrus (and Fastmail) keep UIDs unique per account: an activity both
    targets want can live in only one of their calendars.
    """
    lines: list[str] = []
    targets = list(config.targets)
    for i, a in enumerate(targets):
        for b in targets[i + 1 :]:
            host = urlsplit(str(a.url)).hostname
            if a.username is None or a.username != b.username or host != urlsplit(str(b.url)).hostname:
                continue
            if _filters_can_overlap(dict(a.filter or {}), dict(b.filter or {})):
                lines.append(
                    f"targets {a.name!r} and {b.name!r} share the account {a.username}@{host} and their "
                    "filters can overlap; two targets of one Cyrus/Fastmail account must not share activities"
                )
    return lines

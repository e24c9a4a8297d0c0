"""The work of ``apexcal config check FILE|DIR [--secrets]``, free of the command-line framework.

The console script's light front (:mod:`apexcal.cli.front`) calls it directly
for a plain ``config check``; the typer command calls it for everything else.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from apexcal.config import UnreadableSecrets, load_config
from apexcal.config.accounts import shared_account_warnings
from apexcal.errors import ConfigError, Problem, SecretError


def check_config(file: str, secrets: bool) -> int:
    """Validate ``file`` (or every file of a directory): print every problem to stderr and return 2, or ``ok`` and 0."""
    try:
        if Path(file).is_dir():
            from apexcal.config.directory import load_config_dir

            loaded = load_config_dir(file, env=os.environ, resolve_secrets=secrets)
            for key, org_config in loaded:
                for warning in shared_account_warnings(org_config):
                    print(f"{Path(file) / key}.toml: warning: {warning}", file=sys.stderr)
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


"""``apexcal run``: read the config file or directory, start the :class:`~apexcal.daemon.service.Daemon`, serve until a signal."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from apexcal.config import Config
from apexcal.daemon.organizations import Reloaded
from apexcal.daemon.process import exit_now
from apexcal.daemon.service import Daemon
from apexcal.log import configure_from


def run(config_path: Path | None, *, log_level: str | None = None,
        on_ready: Callable[[Daemon], None] | None = None,
        config_dir: Path | None = None, org: str | None = None) -> int:
    """``apexcal run``: read the config (secrets included), start the daemon, serve until a signal.

    The config is ``config_path``; or, with ``config_dir``, organization
    ``org`` of that directory (its state keyed by ``org``), or without
    ``org`` every organization of the directory in this one process.  SIGHUP
    re-reads the file or the directory.  Operator errors at start (bad
    config, unreadable secret, unusable state store, a token the API
    refuses, a port in use) are raised before anything is logged, for the
    CLI to print as one line with exit code 2.
    """
    from apexcal.config.directory import load_config_dir, load_one
    from apexcal.daemon.organizations import reload_directory
    from apexcal.errors import is_operator_error
    from apexcal.log import held_back

    if config_dir is not None and org is None:
        configs = load_config_dir(config_dir, resolve_secrets=True)
        organizations = dict(configs.organizations)
        first = next(iter(organizations.values()))
        configure_from(first.log, log_level)
        daemon = Daemon(
            organizations=organizations, config_path=config_dir, log_level=log_level,
            reread=lambda old: reload_directory(config_dir, old),
        )
    else:
        config, key = load_one(config_path, config_dir, org, resolve_secrets=True)
        configure_from(config.log, log_level)
        reread = None
        if config_dir is not None:
            def reread(old: Mapping[str, Config]) -> Reloaded:
                return reload_directory(config_dir, old, only=key)
        daemon = Daemon(config, config_path=config_path or config.path, log_level=log_level,
                        organization=key, reread=reread)
    with held_back(drop_if=is_operator_error):
        daemon.start()
    if on_ready is not None:
        on_ready(daemon)
    code = daemon.serve()
    if not daemon.clean_exit:
        exit_now(code)
    return code

"""``apexcal sync --config FILE | --config-dir DIR --org KEY [--target NAME] [--force] [--dry-run [--json]]``: one cycle of every (or one) target, then the feeds.

``--dry-run`` prints, per target, what the cycle would do — creates,
updates (with the owned properties that change), deletes, adoptions,
writebacks — and writes nothing anywhere: no calendar write, no API PATCH, no
change to the state store (it works on a throwaway copy), no feeds.
``--json`` prints that as one JSON document: ``{"dry_run": true, "targets":
[{"target", "creates", "updates", "deletes", "adopts", "writebacks",
"error"}]}``.

Exit codes: 0 when every target synced, 1 when any target (or feed) failed,
2 for operator errors (bad config, unreadable secret, unusable state store,
the API refusing the token, an unknown ``--target``).  Each target runs in
isolation: one failing target is reported and the others still sync.  One
line per target goes to stdout; logs go to stderr.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from apexcal.cli.app import app

if TYPE_CHECKING:
    from apexcal.apex.client import ApexClient
    from apexcal.config import Config, TargetConfig
    from apexcal.state import Store


@app.command("sync")
def sync_command(
    config_path: Annotated[
        Path | None, typer.Option("--config", "-c", help="The config file.")
    ] = None,
    config_dir: Annotated[
        Path | None,
        typer.Option("--config-dir", help="A config directory (with --org).", file_okay=False),
    ] = None,
    org: Annotated[
        str | None, typer.Option("--org", help="The organization (file stem) of --config-dir.")
    ] = None,
    target: Annotated[
        str | None, typer.Option("--target", "-t", help="Sync only this target.")
    ] = None,
    force: Annotated[
        bool,
        typer.Option("--force", help="Allow a cycle to delete more than the configured share."),
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Print what each target's cycle would do and write nothing anywhere (calendar, CRM, state).",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="With --dry-run: print the plan as JSON.")] = False,
    log_level: Annotated[
        str | None, typer.Option("--log-level", help="debug, info, warning or error.")
    ] = None,
) -> None:
    """Run exactly one sync cycle of every (or the named) target, then rebuild the feeds."""
    from apexcal.apex.client import ApexClient
    from apexcal.clock import utcnow
    from apexcal.config.directory import load_one
    from apexcal.errors import (
        ApexcalError,
        Forbidden,
        NotAuthenticated,
        StoreUnavailable,
        UsageError,
    )
    from apexcal.log import configure_from
    from apexcal.state import Store
    from apexcal.sync.pull import pull
    from apexcal.sync.run import run_target_cycle

    if config_path is None and config_dir is None:
        raise UsageError(
            "Missing option '--config' FILE (or '--config-dir' DIR) (see 'apexcal sync --help')"
        )
    config, org_key = load_one(config_path, config_dir, org, resolve_secrets=True)
    configure_from(config.log, log_level)
    targets = list(config.targets)
    if target is not None:
        targets = [t for t in targets if t.name == target]
        if not targets:
            names = ", ".join(t.name for t in config.targets) or "none"
            raise UsageError(f"--target {target}: no such target (configured: {names})")
    if as_json and not dry_run:
        raise UsageError("--json goes with --dry-run (see 'apexcal sync --help')")
    if dry_run:
        _dry_run(config, org_key, targets, force=force, as_json=as_json)
        return
    failed = False
    with ApexClient.for_source(config.source) as client:
        _check_access(client)
        with Store.open(config.state.url) as opened:
            store = opened.for_organization(org_key)
            pulled = False
            for t in targets:
                try:
                    summary = run_target_cycle(config, t, store, client=client, force=force)
                except (NotAuthenticated, Forbidden, StoreUnavailable):
                    raise
                except ApexcalError as exc:
                    failed = True
                    print(f"{t.name}: failed: {exc}".replace("\n", " "), flush=True)
                    continue
                pulled = True
                failed = failed or not summary.ok
                print(summary.line(), flush=True)
            if config.feeds:
                # Feeds are built from the mirror: bring it up to date first when no
                # target cycle did, and never rebuild from a mirror a pull could not refresh.
                if not pulled:
                    try:
                        pull(config, store, client, now=utcnow(), force=force)
                    except (NotAuthenticated, Forbidden, StoreUnavailable):
                        raise
                    except ApexcalError as exc:
                        print(f"feeds: pull failed: {exc}".replace("\n", " "), flush=True)
                        raise typer.Exit(1) from None
                failed = _build_feeds(config, store) or failed
    if failed:
        raise typer.Exit(1)


def _dry_run(config: Config, org_key: str, targets: list[TargetConfig], *, force: bool, as_json: bool) -> None:
    """Preview every target on a throwaway copy of the store; exit 1 when one could not be planned."""
    import json

    from apexcal.apex.client import ApexClient
    from apexcal.errors import ApexcalError, Forbidden, NotAuthenticated, StoreUnavailable
    from apexcal.state import Store
    from apexcal.state.scratch import scratch_store
    from apexcal.sync.dry_run import TargetPreview, preview_target

    previews: list[TargetPreview] = []
    with ApexClient.for_source(config.source) as client:
        _check_access(client)
        with Store.open(config.state.url, migrate_schema=False) as opened, scratch_store(
            opened.for_organization(org_key)
        ) as scratch:
            for t in targets:
                try:
                    preview = preview_target(config, t, scratch, client=client, force=force)
                except (NotAuthenticated, Forbidden, StoreUnavailable):
                    raise
                except ApexcalError as exc:
                    preview = TargetPreview(target=t.name, error=str(exc))
                previews.append(preview)
                if not as_json:
                    print("\n".join(preview.lines()), flush=True)
    if as_json:
        print(json.dumps({"dry_run": True, "targets": [p.as_dict() for p in previews]}, indent=2))
    if any(p.error is not None for p in previews):
        raise typer.Exit(1)


def _check_access(client: ApexClient) -> None:
    """One request before any cycle, so a refused token or an unreachable API is one line, exit 2.

    Other API failures are left to the cycles, which report them per target.
    """
    from apexcal.errors import ApiError, ApiTransportError, Forbidden, NotAuthenticated

    try:
        client.check_access()
    except (NotAuthenticated, Forbidden, ApiTransportError):
        raise
    except ApiError:
        return


def _build_feeds(config: Config, store: Store) -> bool:
    """Rebuild every feed; return True when it failed."""
    from apexcal.errors import ApexcalError
    from apexcal.feeds import build_all_feeds

    try:
        results = build_all_feeds(config, store)
    except (ApexcalError, OSError) as exc:
        print(f"feeds: failed: {exc}".replace("\n", " "), flush=True)
        return True
    for r in results:
        state = "changed" if r.changed else "unchanged"
        print(f"feed {r.name}: {state} count={r.count}", flush=True)
    return False

"""``apexcal hook url|rotate|revoke|list``: the secret URLs of an organization's sync webhook.

``POST <public_url>/hooks/<secret>/sync`` asks for a sync of the organization
now (:mod:`apexcal.serve.hooks`).  Like a feed URL, the secret is random, the
state store keeps only its hash, and the URL is shown once, when created.
An organization may have several (one per CRM automation), each with a
label, revoked one by one or all at once by ``rotate``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from apexcal.cli.app import app
from apexcal.clock import utcnow
from apexcal.errors import UsageError

if TYPE_CHECKING:
    from apexcal.config import Config
    from apexcal.state import Store

hook_app = typer.Typer(
    name="hook",
    help="Manage the secret URLs of the sync webhook (create, rotate, revoke, list).",
    no_args_is_help=True,
)
app.add_typer(hook_app, name="hook")

ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="The config file.", dir_okay=False)
]
ConfigDirOption = Annotated[
    Path | None,
    typer.Option("--config-dir", help="A config directory (with --org).", file_okay=False),
]
OrgOption = Annotated[
    str | None,
    typer.Option("--org", help="The organization (its file stem in --config-dir)."),
]
LabelOption = Annotated[
    str | None, typer.Option("--label", help="Which CRM automation this URL is for.")
]


@contextmanager
def _opened(
    config_path: Path | None, config_dir: Path | None, org: str | None
) -> Iterator[tuple[Config, Store]]:
    """The organization's config and the store scoped to it."""
    from apexcal.config import load_config
    from apexcal.config.directory import load_config_dir
    from apexcal.log import configure
    from apexcal.state import Store

    if (config_path is None) == (config_dir is None):
        raise UsageError("give exactly one of --config FILE or --config-dir DIR")
    if config_path is not None:
        if org is not None:
            raise UsageError("--org goes with --config-dir")
        config, key, url = load_config(config_path), "", None
    else:
        assert config_dir is not None
        configs = load_config_dir(config_dir)
        keys = list(configs.organizations)
        if org is None and len(keys) == 1:
            org = keys[0]
        if org is None or org not in configs.organizations:
            what = "--org is needed" if org is None else f"--org {org}: no such organization"
            raise UsageError(f"{what} (configured: {', '.join(keys)})")
        config, key, url = configs.organization(org), org, configs.state_url
    # Stdout carries the URLs only; anything worth a warning goes to stderr.
    configure("warning")
    with Store.open(url or config.state.url) as store:
        yield config, store.for_organization(key)


def _issue(store: Store, config: Config, label: str | None, at: datetime) -> str:
    """Create a secret, store its hash, and return the webhook URL."""
    from apexcal.cli.feed_cmd import public_base_url
    from apexcal.feeds.tokens import hash_token, new_token
    from apexcal.serve.hooks import hook_url

    secret = new_token()
    url = hook_url(public_base_url(config), secret)
    store.add_hook_secret(hash_token(secret), label, at)
    return url


@hook_app.command("url")
def url_command(
    config: ConfigOption = None,
    config_dir: ConfigDirOption = None,
    org: OrgOption = None,
    label: LabelOption = None,
) -> None:
    """Create a new secret webhook URL for an organization and print it.

    POST to it to sync the organization now.  The URL is shown only now: only
    a hash of its secret is stored.
    """
    with _opened(config, config_dir, org) as (cfg, store):
        print(_issue(store, cfg, label, utcnow()))


@hook_app.command("rotate")
def rotate_command(
    config: ConfigOption = None,
    config_dir: ConfigDirOption = None,
    org: OrgOption = None,
    label: LabelOption = None,
) -> None:
    """Revoke every webhook URL of an organization and print a new one."""
    with _opened(config, config_dir, org) as (cfg, store):
        at = utcnow()
        revoked = store.revoke_hook_secrets(at=at)
        print(_issue(store, cfg, label, at))
        print(f"revoked {revoked} earlier webhook URL(s)", file=sys.stderr)


@hook_app.command("revoke")
def revoke_command(
    config: ConfigOption = None,
    config_dir: ConfigDirOption = None,
    org: OrgOption = None,
    secret_id: Annotated[
        int | None, typer.Option("--id", help="The id shown by 'apexcal hook list'.")
    ] = None,
    all_secrets: Annotated[
        bool, typer.Option("--all", help="Revoke every webhook URL of the organization.")
    ] = False,
) -> None:
    """Revoke one webhook URL (--id N) or all of them (--all)."""
    if (secret_id is None) == (not all_secrets):
        raise UsageError("give exactly one of --id N or --all")
    with _opened(config, config_dir, org) as (_cfg, store):
        revoked = store.revoke_hook_secrets(secret_id, at=utcnow())
        if secret_id is not None and revoked == 0:
            raise UsageError(f"no active webhook URL with id {secret_id}")
        print(f"revoked {revoked} webhook URL(s)")


def _when(moment: datetime | None) -> str:
    if moment is None:
        return "-"
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@hook_app.command("list")
def list_command(
    config: ConfigOption = None,
    config_dir: ConfigDirOption = None,
    org: OrgOption = None,
) -> None:
    """List an organization's webhook URLs: id, label, created, revoked (never the secrets)."""
    with _opened(config, config_dir, org) as (_cfg, store):
        print("id\tlabel\tcreated\trevoked")
        for secret in store.hook_secrets():
            print(
                f"{secret.id}\t{secret.label or '-'}\t"
                f"{_when(secret.created_at)}\t{_when(secret.revoked_at)}"
            )

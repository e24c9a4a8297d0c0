"""``apexcal emulator``: the AchieveApex API emulator alone, on a loopback port."""

from __future__ import annotations

import gc
import json
from pathlib import Path
from typing import Annotated

import typer

from apexcal.cli.app import app
from apexcal.errors import UsageError


@app.command("emulator")
def emulator_command(
    port: Annotated[int, typer.Option(help="TCP port; 0 picks a free one.")] = 8000,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    users: Annotated[
        Path | None,
        typer.Option(help='JSON users file: {"organizations": [...], "users": [...]} with tokens.'),
    ] = None,
    seed_org: Annotated[
        int | None, typer.Option(help="Organization to seed sample activities into.")
    ] = None,
    seed_count: Annotated[int, typer.Option(help="Number of sample activities to seed.")] = 0,
    seed: Annotated[
        int, typer.Option(help="Seed number of the sample data (same seed, same data).")
    ] = 0,
    paginate_max: Annotated[
        int, typer.Option(help="Largest page the server returns ($limit cap).")
    ] = 100,
) -> None:
    """Run the AchieveApex API emulator until interrupted."""
    from apexcal.emulator import EmulatorState, create_app
    from apexcal.emulator.server import base_url, bind, serve_forever
    from apexcal.emulator.state import DEMO_ORG_ID

    if paginate_max < 1:
        raise UsageError("--paginate-max must be at least 1")
    if seed_count < 0:
        raise UsageError("--seed-count must not be negative")
    state = EmulatorState(demo_users=users is None)
    if users is not None:
        state.set_users(_read_users(users))
    if seed_count:
        org = (
            seed_org
            if seed_org is not None
            else (DEMO_ORG_ID if users is None else min(state.organizations))
        )
        state.seed(org, seed_count, seed=seed)
        # The seeded records live as long as the process: keep the collector off them.
        gc.freeze()
    try:
        sock = bind(host, port)
    except OSError as exc:
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None

    def ready() -> None:
        print(f"apexcal emulator listening on {base_url(sock)}", flush=True)
        if users is None:
            for user in state.users.values():
                orgs = ",".join(str(o) for o in sorted(user["organizations"]))
                print(
                    f"  user {user['id']} {user['full_name']} (organizations {orgs}): token {user['token']}",
                    flush=True,
                )

    serve_forever(create_app(state, paginate_max=paginate_max), sock, ready)


def _read_users(path: Path) -> object:
    """Read and check a users file; one clear :class:`UsageError` when it is unusable."""
    from apexcal.emulator.state import parse_users

    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the users file: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise UsageError(f"{path}: not valid JSON: {exc}") from None
    try:
        parse_users(doc)
    except ValueError as exc:
        raise UsageError(f"{path}: {exc}") from None
    return doc

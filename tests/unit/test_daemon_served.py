"""The feed library of ``apexcal run --config-dir``: a token opens its own organization's feed file."""

from __future__ import annotations

from pathlib import Path

from apexcal.clock import utcnow
from apexcal.config import Config, config_from_dict
from apexcal.daemon.served import DirectoryFeeds
from apexcal.feeds.tokens import hash_token
from apexcal.serve.tokens import MISS
from apexcal.state import Store


def _config(tmp_path: Path, key: str, org: int) -> Config:
    return config_from_dict({
        "source": {"base_url": "http://127.0.0.1:9", "organization_id": org},
        "feeds": [{"name": "team", "path": str(tmp_path / key / "team.ics")}],
    })


def test_each_token_opens_its_own_organizations_feed(tmp_path: Path) -> None:
    orgs = {"acme": _config(tmp_path, "acme", 1), "beta": _config(tmp_path, "beta", 2)}
    for key in orgs:
        (tmp_path / key).mkdir()
        (tmp_path / key / "team.ics").write_bytes(f"BEGIN:VCALENDAR\r\nX-ORG:{key}\r\nEND:VCALENDAR\r\n".encode())
    with Store.open(f"sqlite:///{tmp_path}/s.db") as store:
        for key in orgs:
            store.for_organization(key).add_feed_token("team", hash_token(f"token-{key}"), None, utcnow())
        library = DirectoryFeeds(store, lambda: orgs)
        assert library.grant(hash_token("unknown")) is None
        for key in orgs:
            grant = library.grant(hash_token(f"token-{key}"))
            assert grant is not None
            assert (grant.scope, grant.feed, grant.revoked) == (key, "team", False)
            assert library.servable_now(key, "team") is MISS  # nothing read yet
            found = library.servable(key, "team")
            assert found is not None
            assert found.version is not None
            assert f"X-ORG:{key}".encode() in found.version.body
            again = library.servable_now(key, "team")
            assert not isinstance(again, type(MISS))
            assert again is not None
            assert again.version is found.version  # answered from memory
        assert library.servable("acme", "other") is None
        del orgs["beta"]  # removed by a reload
        assert library.servable("beta", "team") is None
        assert library.servable_now("beta", "team") is None

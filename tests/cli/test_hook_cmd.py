"""``apexcal hook url|rotate|revoke|list`` with a config directory, as real subprocesses."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from apexcal.feeds.tokens import hash_token
from apexcal.state import Store

APEXCAL = str(Path(sys.executable).parent / "apexcal")

ORG = """\
[source]
base_url = "http://127.0.0.1:9"
organization_id = {org_id}
"""


def _hook(conf: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [APEXCAL, "hook", *args, "--config-dir", str(conf)],
        capture_output=True, text=True, timeout=60, check=False,
    )


class TestHookCommands:
    def test_urls_are_per_organization_shown_once_and_revoked_by_id_or_rotation(self, tmp_path: Path) -> None:
        """url needs --org among several; the store keeps hashes only; revoke --id and rotate end URLs."""
        conf = tmp_path / "conf"
        conf.mkdir()
        db = tmp_path / "state.db"
        (conf / "apexcal.toml").write_text(
            f'[state]\nurl = "sqlite:///{db}"\n\n[server]\npublic_url = "https://cal.example.com/x/"\n'
        )
        (conf / "acme.toml").write_text(ORG.format(org_id=27))
        (conf / "beta.toml").write_text(ORG.format(org_id=28))

        missing = _hook(conf, "url")
        assert missing.returncode == 2
        assert "--org is needed (configured: acme, beta)" in missing.stderr

        first = _hook(conf, "url", "--org", "acme", "--label", "crm")
        assert first.returncode == 0, first.stderr
        url = first.stdout.strip()
        assert url.startswith("https://cal.example.com/x/hooks/")
        assert url.endswith("/sync")
        secret = url.split("/")[-2]
        with Store.open(f"sqlite:///{db}") as store:
            assert store.hook_organization(hash_token(secret)) == ("acme", hash_token(secret))
            assert store.for_organization("beta").hook_secrets() == []

        listed = _hook(conf, "list", "--org", "acme")
        assert listed.stdout.splitlines()[0] == "id\tlabel\tcreated\trevoked"
        row = listed.stdout.splitlines()[1].split("\t")
        assert row[1:2] == ["crm"]
        assert row[3] == "-"
        assert secret not in listed.stdout

        revoked = _hook(conf, "revoke", "--org", "acme", "--id", row[0])
        assert revoked.stdout.strip() == "revoked 1 webhook URL(s)"

        rotated = _hook(conf, "rotate", "--org", "beta")
        assert rotated.returncode == 0, rotated.stderr
        with Store.open(f"sqlite:///{db}") as store:
            assert store.hook_organization(hash_token(secret)) is None
            new = rotated.stdout.strip().split("/")[-2]
            assert store.hook_organization(hash_token(new)) == ("beta", hash_token(new))

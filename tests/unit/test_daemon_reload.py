"""Re-reading a config directory on SIGHUP (``apexcal run --config-dir``): what is broken keeps its old config."""

from __future__ import annotations

from pathlib import Path

import pytest

from apexcal.config import Config
from apexcal.config.directory import load_config_dir
from apexcal.daemon.organizations import reload_directory

ORG = """\
[source]
base_url = "http://127.0.0.1:9"
token = "t-{key}"
organization_id = {org}

[[feeds]]
name = "{feed}"
path = "{dir}/{key}.ics"
"""


def _write(conf: Path, key: str, org: int, feed: str = "team") -> None:
    (conf / f"{key}.toml").write_text(ORG.format(key=key, org=org, feed=feed, dir=conf.parent))


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "apexcal.toml").write_text(f'[state]\nurl = "sqlite:///{tmp_path}/s.db"\n')
    _write(conf, "acme", 1)
    _write(conf, "beta", 2)
    return conf


@pytest.fixture
def old(conf: Path) -> dict[str, Config]:
    return dict(load_config_dir(conf, resolve_secrets=True).organizations)


def _feeds(configs: dict[str, Config]) -> dict[str, list[str]]:
    return {key: [f.name for f in c.feeds] for key, c in configs.items()}


def test_a_clean_directory_replaces_everything(conf: Path, old: dict[str, Config]) -> None:
    _write(conf, "acme", 1, feed="sales")
    (conf / "beta.toml").unlink()
    _write(conf, "gamma", 3)
    got = reload_directory(conf, old)
    assert (got.problems, got.kept, got.skipped) == ([], [], [])
    assert _feeds(got.organizations) == {"acme": ["sales"], "gamma": ["team"]}


def test_a_broken_file_keeps_its_organization_and_the_others_reload(conf: Path, old: dict[str, Config]) -> None:
    _write(conf, "acme", 1, feed="sales")
    (conf / "beta.toml").write_text("[source]\norganization_id = 0\n")
    (conf / "delta.toml").write_text("[source\n")
    got = reload_directory(conf, old)
    assert {p.file for p in got.problems} == {str(conf / "beta.toml"), str(conf / "delta.toml")}
    assert (got.kept, got.skipped) == (["beta"], ["delta"])
    assert got.organizations["beta"] is old["beta"]
    assert _feeds(got.organizations) == {"acme": ["sales"], "beta": ["team"]}


def test_a_broken_shared_file_keeps_every_organization(conf: Path, old: dict[str, Config]) -> None:
    _write(conf, "acme", 1, feed="sales")
    (conf / "apexcal.toml").write_text("[state]\nurl = 3\n")
    got = reload_directory(conf, old)
    assert {p.file for p in got.problems} == {str(conf / "apexcal.toml")}
    assert got.organizations == old
    assert got.kept == ["acme", "beta"]


def test_a_new_file_naming_a_configured_organization_is_left_out(conf: Path, old: dict[str, Config]) -> None:
    """Two files naming one API organization: the one reported (the later) waits, the others reload."""
    _write(conf, "acme", 1, feed="sales")
    _write(conf, "gamma", 2)  # the same API organization as beta
    got = reload_directory(conf, old)
    assert [(p.file, p.path) for p in got.problems] == [(str(conf / "gamma.toml"), "source.organization_id")]
    assert got.skipped == ["gamma"]
    assert _feeds(got.organizations) == {"acme": ["sales"], "beta": ["team"]}


def test_an_unreadable_secret_is_reported_by_file(conf: Path, old: dict[str, Config]) -> None:
    (conf / "beta.toml").write_text(
        (conf / "beta.toml").read_text().replace('token = "t-beta"', 'token_file = "missing.token"')
    )
    got = reload_directory(conf, old)
    assert {p.file for p in got.problems} == {str(conf / "beta.toml")}
    assert got.kept == ["beta"]
    assert got.organizations["beta"] is old["beta"]
    assert got.organizations["acme"] == old["acme"]


class TestOneOrganization:
    """``apexcal run --config-dir DIR --org KEY``: only that organization's file matters."""

    def test_another_broken_file_does_not_stop_the_reload(self, conf: Path, old: dict[str, Config]) -> None:
        _write(conf, "acme", 1, feed="sales")
        (conf / "beta.toml").write_text("[source\n")
        got = reload_directory(conf, {"acme": old["acme"]}, only="acme")
        assert got.problems == []
        assert _feeds(got.organizations) == {"acme": ["sales"]}

    def test_its_broken_file_keeps_its_config(self, conf: Path, old: dict[str, Config]) -> None:
        (conf / "acme.toml").write_text("[source\n")
        got = reload_directory(conf, {"acme": old["acme"]}, only="acme")
        assert [p.file for p in got.problems] == [str(conf / "acme.toml")]
        assert got.organizations == {"acme": old["acme"]}

    def test_its_file_gone_keeps_its_config(self, conf: Path, old: dict[str, Config]) -> None:
        (conf / "acme.toml").unlink()
        got = reload_directory(conf, {"acme": old["acme"]}, only="acme")
        assert [p.file for p in got.problems] == [str(conf / "acme.toml")]
        assert got.organizations == {"acme": old["acme"]}

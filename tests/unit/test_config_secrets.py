"""Secrets in the config: where they come from, and that they never show."""

from __future__ import annotations

import json
import string
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from apexcal.config import (
    UnreadableSecrets,
    config_from_dict,
    load_config,
    resolve_secrets,
)
from apexcal.errors import ConfigError, SecretError

BASE = """\
[source]
organization_id = 27
{source}
[[targets]]
name = "jane"
url = "https://dav.example.com/jane/"
username = "jane"
{target}
"""


def write(tmp_path: Path, source: str = "", target: str = "") -> Path:
    """Write a config with one target that has a username."""
    path = tmp_path / "config.toml"
    path.write_text(BASE.format(source=source, target=target), encoding="utf-8")
    return path


def secret(path: Path, value: str) -> Path:
    """Write a secret file (with the trailing newline editors add)."""
    path.write_text(value + "\n", encoding="utf-8")
    return path


class TestSecretSources:
    def test_secret_files_are_read_only_when_asked(self, tmp_path: Path) -> None:
        """Without resolve_secrets nothing is read; with it the files fill the SecretStr, newline dropped."""
        token = secret(tmp_path / "token", "api-token-123")
        password = secret(tmp_path / "jane.pw", "dav-password-456")
        file = write(tmp_path, f'token_file = "{token}"', f'password_file = "{password}"')
        unresolved = load_config(file, env={})
        assert unresolved.source.token is None
        assert unresolved.targets[0].password is None
        config = load_config(file, env={}, resolve_secrets=True)
        assert config.source.token is not None
        assert config.source.token.get_secret_value() == "api-token-123"
        assert config.targets[0].password is not None
        assert config.targets[0].password.get_secret_value() == "dav-password-456"
        assert config.path == file

    def test_token_from_the_environment_wins(self, tmp_path: Path) -> None:
        """$APEXCAL_TOKEN is used even when token_file points nowhere."""
        password = secret(tmp_path / "pw", "dav-password")
        file = write(tmp_path, 'token_file = "/nonexistent/token"', f'password_file = "{password}"')
        config = load_config(file, env={"APEXCAL_TOKEN": "env-token-789"}, resolve_secrets=True)
        assert config.source.token is not None
        assert config.source.token.get_secret_value() == "env-token-789"

    def test_credentials_directory_supplies_token_and_password(self, tmp_path: Path) -> None:
        """$CREDENTIALS_DIRECTORY/apex-token and /<target>-dav are used when nothing else is set."""
        credentials = tmp_path / "credentials"
        credentials.mkdir()
        secret(credentials / "apex-token", "cred-token")
        secret(credentials / "jane-dav", "cred-password")
        file = write(tmp_path)
        env = {"CREDENTIALS_DIRECTORY": str(credentials)}
        assert load_config(file, env=env).targets[0].password is None  # valid without reading
        config = load_config(file, env=env, resolve_secrets=True)
        assert config.source.token is not None
        assert config.source.token.get_secret_value() == "cred-token"
        assert config.targets[0].password is not None
        assert config.targets[0].password.get_secret_value() == "cred-password"

    def test_inline_secrets_are_kept(self) -> None:
        """Inline token and password are used as they are."""
        config = config_from_dict(
            {
                "source": {"organization_id": 1, "token": "inline-token"},
                "targets": [
                    {"name": "t", "url": "http://d/", "username": "u", "password": "inline-pw"}
                ],
            }
        )
        resolved = resolve_secrets(config, env={})
        assert resolved.source.token is not None
        assert resolved.source.token.get_secret_value() == "inline-token"
        assert resolved.targets[0].password is not None
        assert resolved.targets[0].password.get_secret_value() == "inline-pw"

    def test_require_token_refuses_unresolved_configs(self) -> None:
        """require_token gives the token after resolving and a SecretError naming source.token before."""
        config = config_from_dict({"source": {"organization_id": 1}})
        with pytest.raises(SecretError, match=r"^source\.token: "):
            config.source.require_token()
        resolved = resolve_secrets(config, env={"APEXCAL_TOKEN": "env-token"})
        assert resolved.source.require_token() == "env-token"

    def test_target_without_username_needs_no_password(self, tmp_path: Path) -> None:
        """A target without a username resolves with no password."""
        config = config_from_dict(
            {
                "source": {"organization_id": 1, "token": "t-t-t"},
                "targets": [{"name": "t", "url": "http://d/"}],
            }
        )
        assert resolve_secrets(config, env={}).targets[0].password is None


class TestUnreadableSecrets:
    def test_missing_password_file_names_the_key_and_the_file(self, tmp_path: Path) -> None:
        """An unreadable password_file raises SecretError `targets[0].password_file: cannot read PATH: reason`."""
        missing = tmp_path / "nope.pw"
        file = write(tmp_path, 'token = "inline-token"', f'password_file = "{missing}"')
        with pytest.raises(SecretError) as info:
            load_config(file, env={}, resolve_secrets=True)
        assert info.value.key == "targets[0].password_file"
        assert (
            str(info.value)
            == f"targets[0].password_file: cannot read {missing}: No such file or directory"
        )

    def test_every_unreadable_secret_is_listed(self, tmp_path: Path) -> None:
        """All unreadable secrets are collected; the message stays one line."""
        empty = tmp_path / "empty"
        empty.write_text("\n", encoding="utf-8")
        file = write(tmp_path, f'token_file = "{empty}"', 'password_file = "missing.pw"')
        with pytest.raises(UnreadableSecrets) as info:
            load_config(file, env={}, resolve_secrets=True)
        assert [(p.path, p.message) for p in info.value.problems] == [
            ("source.token_file", f"cannot read {empty}: the file is empty"),
            (
                "targets[0].password_file",
                f"cannot read {tmp_path / 'missing.pw'}: No such file or directory",
            ),
        ]
        assert "\n" not in str(info.value)
        assert str(info.value).endswith("(and 1 more unreadable secret)")

    def test_no_token_anywhere_is_an_error_when_resolving(self, tmp_path: Path) -> None:
        """With no token source at all, resolving names source.token and every place a token may come from."""
        password = secret(tmp_path / "pw", "pw-pw-pw")
        file = write(tmp_path, "", f'password_file = "{password}"')
        with pytest.raises(SecretError, match=r"^source\.token: no API token: .*APEXCAL_TOKEN"):
            load_config(file, env={}, resolve_secrets=True)

    def test_missing_credential_file_names_the_key(self, tmp_path: Path) -> None:
        """A username whose $CREDENTIALS_DIRECTORY file is missing names targets[0].password."""
        file = write(tmp_path, 'token = "inline-token"')
        with pytest.raises(SecretError) as info:
            load_config(file, env={"CREDENTIALS_DIRECTORY": str(tmp_path)}, resolve_secrets=True)
        assert info.value.key == "targets[0].password"
        assert "jane-dav" in info.value.reason


printable = st.text(
    alphabet=string.ascii_letters + string.digits + "!#%&*+-./:;<=>?@^_|~ ",
    min_size=10,
    max_size=40,
)


class TestSecretsNeverShow:
    @settings(max_examples=25, deadline=None)
    @given(token=printable, password=printable)
    def test_secrets_stay_out_of_every_rendering(self, token: str, password: str) -> None:
        """Neither repr, str, JSON dumps nor any problem message of a config contain its secrets."""
        assume(token.strip() == token and password.strip() == password)
        # The same renderings with other secrets: a generated secret that is a
        # substring of ordinary text (a key name, a message) proves nothing.
        baseline = "\n".join(_renderings("sentinel-token-0", "sentinel-password-0"))
        assume(token not in baseline and password not in baseline)
        for text in _renderings(token, password):
            assert token not in text
            assert password not in text

    def test_secret_file_content_never_reaches_the_error(self, tmp_path: Path) -> None:
        """A secret file that is not UTF-8 is refused without echoing its bytes."""
        blob = tmp_path / "pw"
        blob.write_bytes(b"s3cr3t-\xff-value")
        file = write(tmp_path, 'token = "inline-token"', f'password_file = "{blob}"')
        with pytest.raises(SecretError) as info:
            load_config(file, env={}, resolve_secrets=True)
        assert "s3cr3t" not in str(info.value)
        assert str(info.value) == f"targets[0].password_file: cannot read {blob}: not UTF-8 text"


def _renderings(token: str, password: str) -> list[str]:
    """Every text a config holding these secrets produces: reprs, dumps and problem messages."""
    data = {
        "source": {"organization_id": 1, "token": token},
        "targets": [{"name": "t", "url": "http://d/", "username": "u", "password": password}],
    }
    config = resolve_secrets(config_from_dict(data), env={})
    texts = [
        repr(config),
        str(config),
        config.model_dump_json(),
        json.dumps(config.model_dump(mode="json")),
        repr(config.source),
        repr(config.targets[0]),
    ]
    broken = [
        {**data, "source": {**data["source"], "organization_id": "x", "tokn": token}},
        {**data, "targets": [{**data["targets"][0], "password": [password], "url": password}]},
        {**data, "targets": [{**data["targets"][0], "password_file": "/p", "pasword": password}]},
        {**data, "source": {**data["source"], "token_file": "/t"}},
    ]
    for case in broken:
        with pytest.raises(ConfigError) as info:
            config_from_dict(case)
        texts.append(str(info.value))
    return texts

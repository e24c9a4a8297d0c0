"""Reading secrets: the API token and CalDAV passwords, never from the command line.

Sources, first match wins:

* API token: ``$APEXCAL_TOKEN``; ``[source] token`` (inline, discouraged) or
  ``token_file``; ``$CREDENTIALS_DIRECTORY/apex-token`` (systemd ``LoadCredential=``).
* A target's password: ``password`` (inline, discouraged) or ``password_file``;
  ``$CREDENTIALS_DIRECTORY/<target-name>-dav`` when the target has a username.

A secret file's trailing newline is dropped.  Errors name the config key and
the file, never the secret.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import SecretStr

from apexcal.config.models import Config
from apexcal.config.values import CREDENTIAL_TOKEN, credential_password
from apexcal.errors import Problem, UnreadableSecrets

TOKEN_ENV = "APEXCAL_TOKEN"  # noqa: S105  (the name of a variable, not a secret)
"""The environment variable holding the API token."""



def read_secret_file(path: Path) -> str:
    """The secret in ``path`` without its trailing newline; ``ValueError`` says why not."""
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or type(exc).__name__}") from None
    except UnicodeDecodeError:
        raise ValueError(f"cannot read {path}: not UTF-8 text") from None
    secret = text.rstrip("\r\n")
    if not secret:
        raise ValueError(f"cannot read {path}: the file is empty")
    return secret


def resolve_secrets(
    config: Config, *, env: Mapping[str, str] | None = None, file: str | None = None
) -> Config:
    """A copy of ``config`` with ``source.token`` and every needed target ``password`` filled.

    Raises :class:`UnreadableSecrets` (a ``SecretError``) naming every key whose
    secret cannot be read.  Resolved secrets are registered with the log
    redactor so they can never appear in a log line.
    """
    env = os.environ if env is None else env
    file = file if file is not None else str(config.path or "<config>")
    credentials = env.get("CREDENTIALS_DIRECTORY") or None
    problems: list[Problem] = []
    found: list[str] = []

    def read(key: str, path: Path) -> SecretStr | None:
        try:
            value = read_secret_file(path)
        except ValueError as exc:
            problems.append(Problem(file=file, path=key, message=str(exc)))
            return None
        found.append(value)
        return SecretStr(value)

    source = config.source
    token = source.token
    if env.get(TOKEN_ENV):
        token = SecretStr(env[TOKEN_ENV])
    elif token is not None:
        pass
    elif source.token_file is not None:
        token = read("source.token_file", source.token_file)
    elif credentials:
        token = read("source.token", Path(credentials, CREDENTIAL_TOKEN))
    else:
        problems.append(
            Problem(
                file=file,
                path="source.token",
                message=f"no API token: set source.token_file, ${TOKEN_ENV} "
                f"or $CREDENTIALS_DIRECTORY/{CREDENTIAL_TOKEN}",
            )
        )
    if token is not None:
        found.append(token.get_secret_value())

    targets = []
    for index, target in enumerate(config.targets):
        password = target.password
        if password is None and target.password_file is not None:
            password = read(f"targets[{index}].password_file", target.password_file)
        elif password is None and target.username is not None:
            if credentials:
                path = Path(credentials, credential_password(target.name))
                password = read(f"targets[{index}].password", path)
            else:
                problems.append(
                    Problem(
                        file=file,
                        path=f"targets[{index}].password",
                        message="username is set but there is no password: set password_file, "
                        f"or provide $CREDENTIALS_DIRECTORY/{credential_password(target.name)}",
                    )
                )
        elif password is not None:
            found.append(password.get_secret_value())
        targets.append(target.model_copy(update={"password": password}))

    if problems:
        raise UnreadableSecrets(problems)
    from apexcal import log  # here, not at import: structlog is slow to import and rarely needed

    log.redactor.add(*found)
    return config.model_copy(
        update={"source": source.model_copy(update={"token": token}), "targets": targets}
    )

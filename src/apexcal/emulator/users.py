"""Who may call the emulator: the users-file format, its validation and the demo users.

A users file is JSON: ``{"organizations": [{"id": 27, "name": "…"}], "users": [{"id": 46,
"full_name": "John Doe", "email": "…", "organizations": [27], "token": "…"}]}``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

DEMO_ORG_ID = 27
DEMO_OTHER_ORG_ID = 28
DEMO_TOKEN = "demo-token-john-46"  # noqa: S105  (a published demo token, not a secret)
DEMO_OTHER_TOKEN = "demo-token-olga-60"  # noqa: S105  (same)

DEMO_USERS: dict[str, Any] = {
    "organizations": [
        {"id": DEMO_ORG_ID, "name": "Acme Sales"},
        {"id": DEMO_OTHER_ORG_ID, "name": "Globex Field Services"},
    ],
    "users": [
        {
            "id": 45,
            "full_name": "Jane Smith",
            "email": "jane.smith@example.com",
            "organizations": [27],
            "token": "demo-token-jane-45",
        },
        {
            "id": 46,
            "full_name": "John Doe",
            "email": "john.doe@example.com",
            "organizations": [27],
            "token": DEMO_TOKEN,
        },
        {
            "id": 47,
            "full_name": "María García",
            "email": "maria.garcia@example.com",
            "organizations": [27],
            "token": "demo-token-maria-47",
        },
        {
            "id": 48,
            "full_name": "Wei Chen",
            "email": "wei.chen@example.com",
            "organizations": [27, 28],
            "token": "demo-token-wei-48",
        },
        {
            "id": 60,
            "full_name": "Olga Petrova",
            "email": "olga.petrova@example.com",
            "organizations": [28],
            "token": DEMO_OTHER_TOKEN,
        },
    ],
}

# The five types of the Activity Types document, seeded for every organization.
DEFAULT_TYPES: tuple[dict[str, str], ...] = (
    {
        "name": "Call",
        "color": "#10B981",
        "icon_key": "phone",
        "created_at": "2025-03-01T10:00:00.000Z",
    },
    {
        "name": "Email",
        "color": "#3B82F6",
        "icon_key": "mail",
        "created_at": "2025-03-01T10:00:00.000Z",
    },
    {
        "name": "Meeting",
        "color": "#F59E0B",
        "icon_key": "users",
        "created_at": "2025-03-01T10:00:00.000Z",
    },
    {
        "name": "Task",
        "color": "#EC4899",
        "icon_key": "check-square",
        "created_at": "2025-03-01T10:00:00.000Z",
    },
    {
        "name": "Customer Training",
        "color": "#4F46E5",
        "icon_key": "graduation-cap",
        "created_at": "2025-03-10T14:22:17.562Z",
    },
)


class _OrgDoc(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: int = Field(gt=0)
    name: str = Field(min_length=1)


class _UserDoc(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: int = Field(gt=0)
    full_name: str = Field(min_length=1)
    email: str | None = None
    organizations: list[int]
    token: str = Field(min_length=1)


class UsersDoc(BaseModel):
    """The users file: organizations and users with their bearer tokens."""

    model_config = ConfigDict(extra="forbid")
    organizations: list[_OrgDoc]
    users: list[_UserDoc]


def parse_users(doc: Any) -> UsersDoc:
    """Validate a users document; ``ValueError`` with a one-line reason when it is wrong."""
    try:
        parsed = UsersDoc.model_validate(doc)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "(document)"
        raise ValueError(f"{where}: {first['msg']}") from None
    orgs = {o.id for o in parsed.organizations}
    tokens: set[str] = set()
    for i, user in enumerate(parsed.users):
        unknown = [o for o in user.organizations if o not in orgs]
        if unknown:
            raise ValueError(f"users.{i}.organizations: unknown organization {unknown[0]}")
        if user.token in tokens:
            raise ValueError(f"users.{i}.token: the same token is given to two users")
        tokens.add(user.token)
    return parsed

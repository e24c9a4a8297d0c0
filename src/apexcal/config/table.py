"""The base of every config table: unknown keys are errors, values are frozen."""

from __future__ import annotations

import os
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, ValidationInfo


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True, defer_build=True)


def _env(info: ValidationInfo) -> Mapping[str, str]:
    context = info.context
    if isinstance(context, Mapping) and isinstance(context.get("env"), Mapping):
        env: Mapping[str, str] = context["env"]
        return env
    return os.environ

"""The exception tree: drawn once in ``apexcal.errors``, and the only place errors are defined."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re

import pytest

import apexcal
from apexcal import errors
from apexcal.errors import ApexcalError, is_operator_error

# A tree line: box-drawing prefix, "── ", the class name, then its description.
_TREE_LINE = re.compile(r"^[│ ├└]*── (?P<name>\w+)\s*(?P<text>.*)$")

def _drawn_tree() -> dict[str, tuple[str, str]]:
    """Each class drawn in the docstring of apexcal.errors → (its parent there, its text)."""
    doc = errors.__doc__ or ""
    drawn: dict[str, tuple[str, str]] = {}
    stack: list[str] = []
    root_column = 0
    for line in doc.splitlines():
        if line.strip() == "ApexcalError":
            stack = ["ApexcalError"]
            root_column = line.index("A")
            continue
        match = _TREE_LINE.match(line[root_column:])
        if match is None or not stack:
            continue
        depth = line.index("── ") // 4 - root_column // 4 + 1
        del stack[depth:]
        drawn[match["name"]] = (stack[-1], match["text"])
        stack.append(match["name"])
    return drawn


def _error_classes() -> dict[str, type[ApexcalError]]:
    return {
        name: cls
        for name, cls in vars(errors).items()
        if inspect.isclass(cls) and issubclass(cls, ApexcalError) and cls is not ApexcalError
    }


class TestDrawnTree:
    """The docstring of apexcal.errors draws exactly the classes it defines."""

    def test_every_class_is_drawn_under_its_base(self) -> None:
        """Each error class appears in the drawing, below one of its apexcal bases."""
        drawn = _drawn_tree()
        for name, cls in _error_classes().items():
            assert name in drawn, f"{name} is not drawn in the errors docstring"
            bases = {b.__name__ for b in cls.__bases__ if issubclass(b, ApexcalError)}
            assert drawn[name][0] in bases, name

    def test_every_drawn_name_is_a_class(self) -> None:
        """The drawing names no class that does not exist."""
        assert set(_drawn_tree()) <= set(_error_classes())

    def test_exit_two_marks_match_the_classes(self) -> None:
        """A class is marked ``[exit 2]`` (or is a UserError) exactly when the CLI exits 2 for it."""
        for name, (_, text) in _drawn_tree().items():
            cls = _error_classes()[name]
            marked = "[exit 2]" in text or issubclass(cls, errors.UserError)
            assert (cls.exit_code == 2) == marked, name


class TestOneHome:
    """No module of apexcal defines an error class of its own."""

    def test_errors_live_in_the_errors_module(self) -> None:
        """An exception class outside apexcal.errors is no ApexcalError and is named in its docstring."""
        doc = errors.__doc__ or ""
        elsewhere = []
        for info in pkgutil.walk_packages(apexcal.__path__, "apexcal."):
            if ".migrations" in info.name or info.name in {"apexcal.__main__", "apexcal.errors"}:
                continue
            module = importlib.import_module(info.name)
            for name, obj in vars(module).items():
                if (
                    inspect.isclass(obj)
                    and issubclass(obj, BaseException)
                    and obj.__module__ == info.name
                    and (issubclass(obj, ApexcalError) or f"``{name}``" not in doc)
                ):
                    elsewhere.append(f"{info.name}.{name}")
        assert elsewhere == []


class TestOperatorErrors:
    """What the CLI turns into one line and exit code 2 comes from the tree."""

    @pytest.mark.parametrize(
        "exc",
        [
            errors.UsageError("--from: not a date"),
            errors.SecretError("source.token_file", "cannot read"),
            errors.StoreUnavailable("open", "unreachable"),
            errors.NotAuthenticated("bad token", method="GET", url="/activities"),
            errors.Forbidden("no access", method="GET", url="/activities"),
            errors.ApiTransportError("refused", method="GET", url="/activities"),
        ],
    )
    def test_operator_mistakes_exit_two(self, exc: ApexcalError) -> None:
        """Bad input, refused credentials and an unreachable API are the operator's to fix."""
        assert is_operator_error(exc)

    @pytest.mark.parametrize(
        "exc",
        [
            errors.ServerError("boom", method="GET", url="/activities"),
            errors.SyncError("cycle failed"),
            errors.StoreFailure("commit", "disk I/O error"),
            ValueError("a bug"),
        ],
    )
    def test_other_failures_are_not_operator_errors(self, exc: BaseException) -> None:
        """Server failures, failed cycles and bugs are not reported as operator mistakes."""
        assert not is_operator_error(exc)

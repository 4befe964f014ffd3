"""What every backend checks on the way in and out: identifiers that are about to become URL segments (from
the spec or from the cloud's own answers), and response bodies that must match a wire model.

Nothing may smuggle a path segment or a query into a request, and a malformed answer is a transient cloud
failure (``CloudUnavailable``: the next read may be fine), never a crash.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

import pydantic

from azswitch.errors import CloudUnavailable, ConfigError

_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")

M = TypeVar("M", bound=pydantic.BaseModel)


def validate_id(field: str, value: str) -> str:
    """Return ``value`` if it is a safe identifier, else raise ``ConfigError`` (a ValueError) naming it."""
    if not isinstance(value, str) or not _SAFE_ID.fullmatch(value):
        raise ConfigError(
            f"{field} must be 1-128 characters of letters, digits, '.', '_' or '-', "
            f"starting with a letter or digit; got {value!r}"
        )
    return value


def parse_model(model: type[M], data: Any, *, operation: str, what: str) -> M:
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(root)"
        raise CloudUnavailable(
            f"unexpected {what} in the response: {where}: {first['msg']}", operation=operation
        ) from None


def cloud_id(field: str, value: str, *, operation: str) -> str:
    # An identifier the cloud returned and we are about to put into a URL.
    if not _SAFE_ID.fullmatch(value):
        raise CloudUnavailable(
            f"the cloud returned a malformed {field}: {value[:130]!r}", operation=operation
        )
    return value


def check_page_size(page_size: int, largest: int) -> int:
    """A LIST page size a backend may ask for (1..``largest``), else ``ConfigError``."""
    if not 1 <= page_size <= largest:
        raise ConfigError(f"page_size must be between 1 and {largest}, got {page_size}")
    return page_size

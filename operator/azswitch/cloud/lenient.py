"""Lenient parsing shared by every backend's wire models: the clouds' answers disagree with their own docs
(timestamps with and without a zone or a ``T``, numbers where strings are documented, ``null`` where a value
is documented), and none of that may break observation.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict


def lenient_datetime(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        parsed = value
    else:
        text = str(value).strip().replace(" ", "T")
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            return None
    # The documented examples carry no zone; the cloud's clocks are UTC.
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def text_or(default: str) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        return default if value in (None, "") else str(value)

    return convert


#: A documented string that real responses may send as a number or null ("0" means no fault).
FaultLevel = Annotated[str, BeforeValidator(text_or("0"))]
#: IDs are strings on the wire; a number must not fail observation.
WireID = Annotated[str, BeforeValidator(text_or(""))]


class Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)

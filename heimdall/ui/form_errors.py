"""Problems with a submitted admin form, each shown next to its field and listed above the form.

A page turns what refused the input (a pydantic ``ValidationError`` at some location, or a
``GatewayError`` from the management API's handlers) into messages keyed by form field name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from pydantic import ValidationError

from heimdall.errors import GatewayError

Location = tuple[int | str, ...]
#: Maps a problem's location to the form field that should show it (None: only above the form).
FieldFor = Callable[[Location], str | None]


def plain(message: str) -> str:
    """pydantic prefixes a ValueError's text with "Value error, "; the field already says what failed."""
    return message.removeprefix("Value error, ")


@dataclass
class FormErrors:
    #: Form field name -> the first problem with it.
    fields: dict[str, str] = field(default_factory=dict)
    #: Every problem, in the order found, for the summary above the form.
    summary: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.summary)

    def add(self, field_name: str | None, message: str) -> None:
        if field_name is not None:
            self.fields.setdefault(field_name, message)
        if message not in self.summary:
            self.summary.append(message)

    def add_validation(self, exc: ValidationError, field_for: FieldFor, *, prefix: Location = ()) -> None:
        """Add pydantic's problems, each at the field ``field_for`` names for its location.

        ``prefix`` is dropped from the front of each location (e.g. the body's own name).
        """
        for err in exc.errors():
            loc: Location = tuple(err["loc"])
            if loc[: len(prefix)] == prefix:
                loc = loc[len(prefix) :]
            self.add(field_for(loc), plain(err["msg"]))

    def add_gateway_error(self, exc: GatewayError, field_for_param: dict[str, str] | None = None) -> None:
        """A refusal from a management-API handler; its ``param`` (when it names one) picks the field."""
        target = (field_for_param or {}).get(exc.param or "")
        self.add(target, exc.message)

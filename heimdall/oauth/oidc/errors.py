"""The one error type of the OIDC sign-in: a message safe to show, and where to send the user back."""

from __future__ import annotations


class OIDCError(Exception):
    """A sign-in that cannot proceed. ``message`` never contains a code, token or secret.

    ``flow_id`` is set when the sign-in belongs to a consent flow: the error page links back to it.
    """

    def __init__(
        self, message: str, *, status_code: int = 400, flow_id: str | None = None, title: str = "Sign-in failed"
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.flow_id = flow_id
        self.title = title

    def for_flow(self, flow_id: str | None) -> OIDCError:
        """The same error, linked to ``flow_id`` (when it is not linked yet)."""
        if self.flow_id is None and flow_id is not None:
            self.flow_id = flow_id
        return self

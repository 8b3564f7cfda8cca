"""The provider's error answer, as one exception that the routes turn into a JSON response.

Validation and upload parsing are pure functions; raising ``ApiError`` lets them stay free of
HTTP plumbing while every refusal still reaches the client in the one shape the provider uses:
``{"error": {"message": ..., "type": <code>, "code": <code>}}``.
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """A refusal with its HTTP status, the provider's error code and a human message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def body(self) -> dict[str, Any]:
        """The JSON body the provider sends for this refusal."""
        return {"error": {"message": self.message, "type": self.code, "code": self.code}}

"""The error answer every CrowdTwist endpoint gives: a status and ``{"error": CODE, "message": TEXT}``.

One exception type carries both through the sandbox, so a rule written anywhere (validation, auth,
routing) turns into exactly the body a real client has to parse.
"""

from __future__ import annotations


class ApiError(Exception):
    """An answer of ``status`` with CrowdTwist's error body; raised by any rule the request breaks."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    def body(self) -> dict[str, str]:
        return {"error": self.code, "message": self.message}


def input_error(message: str) -> ApiError:
    return ApiError(400, "input_error", message)


def param_error(message: str) -> ApiError:
    return ApiError(400, "param_error", message)


def not_found(message: str = "User does not exist.") -> ApiError:
    return ApiError(404, "page_not_found", message)


def auth_error(message: str) -> ApiError:
    return ApiError(401, "auth_error", message)


def forbidden(message: str) -> ApiError:
    return ApiError(403, "forbidden", message)


def invalid_api_key() -> ApiError:
    """The 403 reading of a credential failure (O:UserDelete, O:UserDeletionStatus)."""
    return ApiError(403, "forbidden", "Invalid API key")

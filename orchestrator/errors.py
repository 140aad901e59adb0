"""Typed errors the engine raises; the REST layer maps them to HTTP statuses."""

from __future__ import annotations


class ApiError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def body(self) -> dict[str, object]:
        err: dict[str, object] = {"code": self.code, "message": self.message}
        if self.field is not None:
            err["field"] = self.field
        return {"error": err}


class Invalid(ApiError):
    status = 422
    code = "validation_error"


class NotFound(ApiError):
    status = 404
    code = "not_found"


class Conflict(ApiError):
    status = 409
    code = "conflict"


class Unauthorized(ApiError):
    status = 401
    code = "unauthorized"


class Forbidden(ApiError):
    """A valid API key without the scope the route needs."""

    status = 403
    code = "forbidden"


class TooLarge(ApiError):
    status = 413
    code = "too_large"


class DatabaseUnavailable(ApiError):
    """The database cannot be reached (down, restarting, connections refused): the
    request may be sent again later (503 with ``Retry-After``)."""

    status = 503
    code = "database_unavailable"
    retry_after = 5


class StorageFull(ApiError):
    """The database has no room left for a write (SQLite: disk or max_page_count full)."""

    status = 507
    code = "storage_full"

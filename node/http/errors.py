"""How the HTTP API fails: one status and one line per cause, as an OperationOutcome under
/fhir and as {"error": {...}} elsewhere.

The node's own errors map to statuses here, once, so every route answers the
same cause with the same code: an unknown record is 404, a missing grant 403,
too few nodes or holders 503.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from node.ledger.service import LedgerError
from node.records.errors import (
    NO_MANIFEST,
    TOO_FEW_HOLDERS,
    NetworkTooSmall,
    NoGrant,
    RecordError,
    UnknownRecord,
)
from node.records.fetch import TooFewShards
from storage.errors import StorageError

FHIR_JSON = "application/fhir+json"


class ApiError(Exception):
    """An answer other than success: HTTP status, FHIR issue code, one line of why."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def from_node_error(exc: Exception) -> ApiError:
    """The HTTP form of an error the node's services raise."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, RecordError) and exc.reason in _UNAVAILABLE:
        return ApiError(503, "transient", str(exc))
    for kinds, status, code in _STATUSES:
        if isinstance(exc, kinds):
            return ApiError(status, code, str(exc))
    return ApiError(500, "exception", "internal error (see the node's log)")


# Refusals that say too few nodes answered: the record may be back when they are.
_UNAVAILABLE = frozenset({NO_MANIFEST, TOO_FEW_HOLDERS})

# The first match wins: subclasses of RecordError before RecordError.
_STATUSES: tuple[tuple[tuple[type[Exception], ...], int, str], ...] = (
    ((UnknownRecord,), 404, "not-found"),
    ((NoGrant,), 403, "forbidden"),
    ((NetworkTooSmall, TooFewShards), 503, "transient"),
    ((RecordError, LedgerError), 409, "processing"),
    ((StorageError,), 500, "exception"),
)


NODE_ERRORS: tuple[type[Exception], ...] = (
    ApiError,
    RecordError,
    LedgerError,
    TooFewShards,
    StorageError,
)


def outcome(code: str, message: str, severity: str = "error") -> dict[str, object]:
    """A FHIR R4 OperationOutcome with one issue."""
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": severity, "code": code, "diagnostics": message}],
    }


def error_response(request: Request, error: ApiError) -> Response:
    headers = {}
    if request.method in ("POST", "PUT", "PATCH"):
        # The body may be unread (refused before reading it): the server then drops the
        # connection, so say so, or a client reusing it sees its next request fail.
        headers["Connection"] = "close"
    if error.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="medvault"'
        if request.url.path == "/":  # a browser asks for the token as a password
            headers["WWW-Authenticate"] = 'Basic realm="medvault status"'
    if request.url.path.startswith("/fhir"):
        return JSONResponse(
            outcome(error.code, error.message),
            status_code=error.status,
            headers=headers,
            media_type=FHIR_JSON,
        )
    return JSONResponse(
        {"error": {"status": error.status, "code": error.code, "message": error.message}},
        status_code=error.status,
        headers=headers,
    )

"""The one exception type that carries a client-facing error through the gateway.

Frontends render it in their own API's format (status, error type, message, param); the kinds
are the IR's `ErrorKind` so that no layer below the frontends knows any client format.
"""

from __future__ import annotations

from tokenrelay.ir import Error, ErrorKind, RateLimit


class GatewayError(Exception):
    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        status: int,
        *,
        param: str | None = None,
        code: str | None = None,
        retry_after: float | None = None,
        limit: RateLimit | None = None,
    ) -> None:
        super().__init__(message)
        self.kind: ErrorKind = kind
        self.message = message
        self.status = status
        self.param = param
        self.code = code
        self.retry_after = retry_after
        self.limit: RateLimit | None = limit  # rate_limit: which limit (requests | tokens)

    @classmethod
    def from_ir(cls, err: Error) -> GatewayError:
        return cls(
            err.kind,
            err.message,
            err.http_status,
            param=err.param,
            code=err.code,
            retry_after=err.retry_after,
            limit=err.limit,
        )

    def to_ir(self) -> Error:
        return Error(
            self.kind,
            self.message,
            self.status,
            self.retry_after,
            self.param,
            self.code,
            self.limit,
        )


def invalid(message: str, param: str | None = None) -> GatewayError:
    """400 for a malformed client request; `param` names the offending field."""
    return GatewayError("invalid_request", message, 400, param=param)

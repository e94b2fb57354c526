"""Errors of the OpenAI-compatible vendors: OpenAI, DeepSeek and a generic compatible server share
a shape (messages differ), xAI has its own."""

from __future__ import annotations

from tokenrelay.emulator.wire import Req, Resp, bearer, is_bad_key, json_resp, mask_key

# status → (message, type, code) per vendor; xAI bodies are {"code": <status text>, "error": msg}
_OPENAI_ERRORS: dict[int, tuple[str, str, str | None]] = {
    400: ("Emulated bad request.", "invalid_request_error", None),
    401: (
        "Incorrect API key provided. You can find your API key at "
        "https://platform.openai.com/account/api-keys.",
        "invalid_request_error",
        "invalid_api_key",
    ),
    403: (
        "Country, region, or territory not supported",
        "request_forbidden",
        "unsupported_country_region_territory",
    ),
    429: (
        "Rate limit reached for requests per min (RPM): Limit 500, Used 500, Requested 1. "
        "Please try again in 120ms.",
        "requests",
        "rate_limit_exceeded",
    ),
    500: (
        "The server had an error while processing your request. Sorry about that!",
        "server_error",
        None,
    ),
    503: ("The engine is currently overloaded, please try again later", "server_error", None),
}
_DEEPSEEK_ERRORS: dict[int, tuple[str, str, str | None]] = {
    400: ("Invalid request", "invalid_request_error", "invalid_request_error"),
    401: ("Authentication Fails (no such user)", "authentication_error", "invalid_request_error"),
    402: ("Insufficient Balance", "unknown_error", "invalid_request_error"),
    422: ("Invalid Parameters", "invalid_request_error", "invalid_request_error"),
    429: ("Rate Limit Reached", "rate_limit_error", "rate_limit_exceeded"),
    500: ("Server Error", "server_error", "server_error"),
    503: ("Server Overloaded", "server_error", "server_error"),
}
# The dialect of a generic compatible server (vLLM, Ollama, Mistral, ...) under any name:
# OpenAI's error shape, neutral messages.
COMPATIBLE = "compatible"
_COMPATIBLE_ERRORS: dict[int, tuple[str, str, str | None]] = {
    400: ("Bad request", "invalid_request_error", None),
    401: ("Invalid API key", "invalid_request_error", "invalid_api_key"),
    403: ("Forbidden", "permission_error", None),
    404: ("Not found", "invalid_request_error", None),
    429: ("Too many requests", "rate_limit_error", "rate_limit_exceeded"),
    500: ("Internal server error", "server_error", None),
    503: ("Service unavailable", "server_error", None),
}
_TABLES: dict[str, dict[int, tuple[str, str, str | None]]] = {
    "deepseek": _DEEPSEEK_ERRORS,
    COMPATIBLE: _COMPATIBLE_ERRORS,
}
_XAI_CODES = {
    400: "Client specified an invalid argument",
    401: "Unauthenticated",
    403: "The caller does not have permission to execute the specified operation",
    404: "Some requested entity was not found",
    422: "Failed to deserialize the JSON body",
    429: "Some resource has been exhausted",
    500: "Internal error",
    503: "The service is currently unavailable",
}


class Invalid(Exception):
    def __init__(
        self, message: str, status: int = 400, param: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.param, self.code = status, param, code


def error(
    vendor: str,
    status: int,
    message: str | None = None,
    param: str | None = None,
    code: str | None = None,
    etype: str | None = None,
) -> Resp:
    headers = [("retry-after", "1")] if status == 429 else []
    if vendor == "xai":
        text = _XAI_CODES.get(status, "Internal error" if status >= 500 else "Unknown")
        return json_resp(
            status, {"code": text, "error": message or f"Emulated error {status}"}, headers
        )
    table = _TABLES.get(vendor, _OPENAI_ERRORS)
    d_msg, d_type, d_code = table.get(
        status,
        (
            f"Emulated error {status}",
            "server_error" if status >= 500 else "invalid_request_error",
            None,
        ),
    )
    return json_resp(
        status,
        {
            "error": {
                "message": message or d_msg,
                "type": etype or d_type,
                "param": param,
                "code": code if code is not None or message else d_code,
            }
        },
        headers,
    )


def auth(req: Req, vendor: str) -> Resp | None:
    key = bearer(req)
    if vendor == "xai":
        if not key:
            return error(
                vendor,
                400,
                "No API key provided. Please provide an API key in the "
                "Authorization header as 'Bearer <key>'.",
            )
        if is_bad_key(key):
            return error(
                vendor,
                400,
                f"Incorrect API key provided: {mask_key(key)}. You can "
                "obtain an API key from https://console.x.ai.",
            )
        return None
    if vendor == "deepseek":
        if not key or is_bad_key(key):
            return error(
                vendor,
                401,
                f"Authentication Fails, Your api key: ****{(key or '')[-4:]} is invalid",
                None,
                "invalid_request_error",
                "authentication_error",
            )
        return None
    if vendor == COMPATIBLE:
        if not key or is_bad_key(key):
            message = "Invalid API key" if key else "Missing API key"
            return error(vendor, 401, message, None, "invalid_api_key")
        return None
    if not key:
        return error(
            vendor,
            401,
            "You didn't provide an API key. You need to provide your API "
            "key in an Authorization header using Bearer auth (i.e. "
            "Authorization: Bearer YOUR_KEY), or as the password field "
            "(with blank username) if you're accessing the API from your "
            "browser and are prompted for a username and password. You can "
            "obtain an API key from https://platform.openai.com/account/"
            "api-keys.",
            None,
            None,
        )
    if is_bad_key(key):
        return error(
            vendor,
            401,
            f"Incorrect API key provided: {mask_key(key)}. You can find "
            "your API key at https://platform.openai.com/account/api-keys.",
            None,
            "invalid_api_key",
        )
    return None

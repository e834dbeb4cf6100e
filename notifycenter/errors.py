"""One error shape for the whole API: {"code", "message", "fields"}.

Services below this layer raise their own exceptions carrying `error_code`, `message`, `fields`
and `http_status`; they cannot import this module (layers point down), so it reads those names.
"""

import logging

from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.http import Http404, JsonResponse
from django.views import defaults
from kombu.exceptions import OperationalError as BrokerError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

logger = logging.getLogger(__name__)

_DRF_CODES = {
    exceptions.NotAuthenticated: "not_authenticated",
    exceptions.AuthenticationFailed: "authentication_failed",
    exceptions.PermissionDenied: "permission_denied",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.ParseError: "malformed_json",
    exceptions.Throttled: "rate_limited",
    exceptions.ValidationError: "invalid",
}


# A dependency away (PostgreSQL, or Redis where nothing could do without it) is a 503 the client
# retries, with the error shape and Retry-After, never a 500 that reads like a bug.
RETRY_AFTER_SECONDS = 5
UNAVAILABLE = {
    OperationalError: ("database_unavailable", "The database is unavailable; retry shortly."),
    InterfaceError: ("database_unavailable", "The database is unavailable; retry shortly."),
    RedisConnectionError: ("dependency_unavailable", "A dependency is unavailable; retry shortly."),
    RedisTimeoutError: ("dependency_unavailable", "A dependency is unavailable; retry shortly."),
    BrokerError: ("dependency_unavailable", "A dependency is unavailable; retry shortly."),
}


def unavailable(exc) -> tuple[str, str] | None:
    """(code, message) when `exc` says a dependency is down, else None."""
    for cls, answer in UNAVAILABLE.items():
        if isinstance(exc, cls):
            return answer
    return None


def unavailable_response(code: str, message: str, response_class=JsonResponse):
    logger.warning("answered 503 %s", code)
    response = response_class(error_body(code, message), status=503)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def error_body(code: str, message: str, fields: dict | None = None) -> dict:
    return {"code": code, "message": message, "fields": fields or {}}


def flatten(detail, prefix="") -> dict:
    """DRF's nested error detail as {"a.b.0.c": ["message", ...]}."""
    out: dict[str, list[str]] = {}
    if isinstance(detail, dict):
        for key, value in detail.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            out.update(flatten(value, path))
    elif isinstance(detail, list) and detail and not all(isinstance(d, str) for d in detail):
        for index, value in enumerate(detail):
            out.update(flatten(value, f"{prefix}.{index}" if prefix else str(index)))
    else:
        items = detail if isinstance(detail, list) else [detail]
        out[prefix or "non_field_errors"] = [str(item) for item in items]
    return out


def api_exception_handler(exc, context):
    if hasattr(exc, "error_code") and hasattr(exc, "http_status"):
        response = Response(error_body(exc.error_code, exc.message, exc.fields), status=exc.http_status)
        if getattr(exc, "retry_after", None):
            response["Retry-After"] = str(exc.retry_after)
        return response
    down = unavailable(exc)
    if down is not None:
        return unavailable_response(*down, response_class=Response)
    if isinstance(exc, RequestDataTooBig):  # Django's own cap (DATA_UPLOAD_MAX_MEMORY_SIZE), same limit
        return Response(error_body("payload_too_large", "The body is larger than the limit."), status=413)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    response = exception_handler(exc, context)
    if response is None:
        logger.exception("unhandled error in %s", context.get("view"))
        return Response(error_body("server_error", "Internal server error."), status=500)
    code = getattr(exc, "error_code", None) or _code_for(exc)
    if getattr(exc, "auth_scheme", None):
        response["WWW-Authenticate"] = exc.auth_scheme
    if isinstance(exc, exceptions.ValidationError):
        response.data = error_body(code, "The request is invalid.", flatten(exc.detail))
    else:
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        response.data = error_body(code, detail)
    return response


def _code_for(exc) -> str:
    specific = getattr(exc.detail, "code", None)
    if specific and specific != exc.default_code:
        return specific  # a code the view or permission gave, e.g. missing_scope
    for cls, code in _DRF_CODES.items():
        if isinstance(exc, cls):
            return code
    return getattr(exc, "default_code", "error")


def _json_error(code: str, message: str, status_code: int):
    return JsonResponse(error_body(code, message), status=status_code)


# Django-level handlers, so that /api/ paths outside DRF views answer in the same shape; the
# admin and other pages keep Django's HTML pages.
def handler404(request, exception=None):
    if request.path.startswith("/api/"):
        return _json_error("not_found", "Not found.", status.HTTP_404_NOT_FOUND)
    return defaults.page_not_found(request, exception)


def handler500(request):
    if request.path.startswith("/api/"):
        return _json_error("server_error", "Internal server error.", status.HTTP_500_INTERNAL_SERVER_ERROR)
    return defaults.server_error(request)

"""How drf-spectacular describes our two authentication schemes in the OpenAPI document."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "notifycenter.auth.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Api-Key <key>`, made with `manage.py create_api_key`; scopes per endpoint.",
        }


class InboxTokenScheme(OpenApiAuthenticationExtension):
    target_class = "notifycenter.auth.InboxTokenAuthentication"
    name = "InboxJWT"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "Issued by the hospital backend: claims sub, role (patient|doctor|pharmacist), aud, exp.",
        }


ERROR_SCHEMA = {
    "type": "object",
    "description": "Every error: a stable `code` clients branch on, an English message, and the offending fields "
    "by path (`data.department`, `recipients.patient.0.phone`).",
    "properties": {
        "code": {"type": "string", "example": "invalid_data"},
        "message": {"type": "string"},
        "fields": {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}}},
    },
    "required": ["code", "message", "fields"],
}
# The 409s of operations outside /api/v1/events, each with its own codes.
CONFLICTS = {
    ("/api/v1/broadcasts", "post"): "`idempotency_conflict`: the key was used with another body (the same body "
    "again is answered 200 with the first broadcast).",
    ("/api/v1/broadcasts/{broadcast_id}/cancel", "post"): "`broadcast_finished`: the broadcast has already ended "
    "with nothing left to send.",
}
# The 400 codes an operation has of its own, beside `invalid` and `malformed_json`.
_PREFERENCES_400 = "`invalid_preferences`: an unknown channel or category, or a value not true/false, by field."
OWN_400 = {
    ("/api/v1/events", "post"): "`unknown_event`, `invalid_data` (the scenario's data schema), `invalid_event` "
    "(what the event cannot be delivered as: rendered lengths, ids and dates taken from `data`), `use_otp_endpoint`.",
    ("/api/v1/events/batch", "post"): "`invalid_batch` (not a list of 1 to 500 events, or over 5,000 recipients in "
    "all); a bad item is answered in its own slot of the 200, as POST /api/v1/events would answer it.",
    ("/api/v1/broadcasts", "post"): "`invalid_broadcast`, naming each field (`recipients.17`, `channels.1`).",
    ("/api/v1/otp", "post"): "`unknown_purpose`, `not_a_code_purpose`, and the event codes for bad `data`.",
    ("/api/v1/otp/verify", "post"): "`otp_invalid` (tries left in the message), `otp_locked`, `otp_expired`, "
    "`otp_used`, `otp_not_found`.",
    ("/api/v1/inbox/preferences", "put"): _PREFERENCES_400,
    ("/api/v1/recipients/{audience}/{external_id}/preferences", "put"): _PREFERENCES_400,
}
RETRY_AFTER = {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait before retrying."}}
ERRORS = {
    "400": "Bad input: `invalid` (with field paths: NUL bytes, lone surrogates, numbers out of range, nesting past "
    "16 levels, lengths past their limits), `malformed_json`, and the endpoint's own codes.",
    "401": "`not_authenticated`, `invalid_api_key`, `token_expired`, `token_invalid`, `token_wrong_audience`.",
    "403": "`missing_scope` (the key lacks the endpoint's scope), `permission_denied`.",
    "404": "`not_found`.",
    "409": "`idempotency_conflict` (the key was used with another body), `scenario_disabled`, "
    "`scenario_misconfigured` (the scenario's data schema or a rule's condition, as configured, is not a valid JSON "
    "Schema: nothing is stored; operations must fix it).",
    "413": "`payload_too_large`: the body is over API_MAX_BODY_BYTES (2 MiB by default).",
    "415": "`unsupported_media_type`: the body is not `application/json`.",
    "429": "`rate_limited` (the key's requests per minute), `otp_rate_limited`; with Retry-After.",
    "503": "`database_unavailable` or `dependency_unavailable`: retry after Retry-After seconds.",
}


def error_responses(result, generator, request, public):
    """drf-spectacular postprocessing hook: every operation documents the error answers it can
    give, in the one error shape; 429 and 503 carry Retry-After."""
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    ref = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            codes = ["401", "403", "429", "503"]
            if "requestBody" in operation or operation.get("parameters"):
                codes.append("400")
            if "requestBody" in operation:
                codes.extend(("413", "415"))
            if "{" in path:
                codes.append("404")
            if path == "/api/v1/events" and method == "post":  # a batch answers these in each item's slot
                codes.append("409")
            conflict = CONFLICTS.get((path, method))
            if conflict:
                codes.append("409")
            if path.startswith("/api/v1/inbox") and method != "get":
                codes.append("404")
            for code in sorted(set(codes)):
                if code in operation["responses"]:
                    continue
                described = conflict if code == "409" and conflict else ERRORS[code]
                if code == "400" and (path, method) in OWN_400:
                    described = f"{described} Here: {OWN_400[(path, method)]}"
                answer = {"description": described, "content": ref}
                if code in ("429", "503"):
                    answer["headers"] = RETRY_AFTER
                operation["responses"][code] = answer
    return result

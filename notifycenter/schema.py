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

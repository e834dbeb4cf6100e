from rest_framework.permissions import BasePermission


def scope(name: str) -> type[BasePermission]:
    """Allows a backend whose API key carries the scope `name`; 403 `missing_scope` otherwise."""

    class HasScope(BasePermission):
        message = f"The API key lacks the scope {name!r}."
        code = "missing_scope"

        def has_permission(self, request, view):
            return bool(request.user) and name in getattr(request.user, "scopes", ())

    HasScope.__name__ = f"HasScope_{name.replace('-', '_')}"
    return HasScope

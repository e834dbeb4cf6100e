from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.utils import translation

from inbox.cycles import view_release

from .errors import error_body, unavailable, unavailable_response


class DrfCyclesMiddleware:
    """Lets reference counting free an API request's objects once its answer is rendered, instead
    of leaving them to Python's cyclic garbage collector.

    DRF links the view, its request and its response in cycles: the view holds both, the request's
    `parser_context` and the response's `renderer_context` hold the view and themselves. Nothing
    but the collector frees such a cycle, nor what hangs from it (Django's request, the headers,
    the body): 58 objects a request. Under load they piled up to 40,000-44,000 objects at each
    young collection, and each such collection stopped every thread of the web process for 37-103
    ms (bench/ab.py, 2026-11-30), a share of the single events' p99. Both contexts have served once the
    answer is rendered (Django renders it before any middleware sees it); emptied, no cycle is left.
    A view with `get` also holds itself (Django's `head`): dropped too (inbox/cycles.py).
    Serializers are released where a view uses them (`cycles.validated`)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        context = getattr(response, "renderer_context", None)
        if isinstance(context, dict) and getattr(response, "is_rendered", False):
            parsed = getattr(context.get("request"), "parser_context", None)
            if isinstance(parsed, dict):
                parsed.clear()
            view_release(context.get("view"))
            context.clear()
        # Django's own, in the full chain: the lazy user and its async twin close over the request
        # (AuthenticationMiddleware), the message storage holds it (MessageMiddleware). Read by
        # nothing once the answer is out.
        for name in ("user", "auser", "_messages"):
            request.__dict__.pop(name, None)
        return response


class ApiInEnglishMiddleware:
    """The admin speaks the hospital's language; the API answers in one language, English, so
    that a message never mixes DRF's translated words with ours. Clients branch on `code`.

    It also refuses NUL bytes in an API path or query (PostgreSQL cannot compare them): 400, and
    marks the API's answers `Cache-Control: no-store` unless a view chose otherwise: they carry
    people's messages and masked addresses, which no shared proxy or browser cache should keep."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self._answer(request)
        if request.path.startswith("/api/v1/") and not response.has_header("Cache-Control"):
            response["Cache-Control"] = "no-store"
        return response

    def _answer(self, request):
        if request.path.startswith("/api/"):
            translation.activate("en")
            request.LANGUAGE_CODE = "en"
            bad = [name for name, values in request.GET.lists() if any("\x00" in v for v in values)]
            if "\x00" in request.path:
                bad.append("path")
            if bad:
                return JsonResponse(
                    error_body(
                        "invalid", "The request is invalid.", {n: ["Null characters are not allowed."] for n in bad}
                    ),
                    status=400,
                )
        return self.get_response(request)


class ChosenLanguageMiddleware:
    """zh-hans for everyone unless they chose another language (the switch in the admin header
    sets the language cookie). Unlike Django's LocaleMiddleware, the browser's Accept-Language is
    not consulted: operations staff on an English system still get the Chinese console."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        chosen = request.COOKIES.get(settings.LANGUAGE_COOKIE_NAME)
        language = chosen if chosen in dict(settings.LANGUAGES) else settings.LANGUAGE_CODE
        translation.activate(language)
        request.LANGUAGE_CODE = language
        response = self.get_response(request)
        response.headers.setdefault("Content-Language", language)
        return response


class DependencyDownMiddleware:
    """Outside DRF's views too (the admin, the health pages): a database or Redis outage answers
    503 with Retry-After, never a 500 (JSON in the error shape under /api/)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        down = unavailable(exception)
        if down is None:
            return None
        if request.path.startswith("/api/"):
            return unavailable_response(*down)
        response = HttpResponse(down[1], status=503, content_type="text/plain; charset=utf-8")
        response["Retry-After"] = "5"
        return response

from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.utils import translation

from .errors import error_body, unavailable, unavailable_response


class ApiInEnglishMiddleware:
    """The admin speaks the hospital's language; the API answers in one language, English, so
    that a message never mixes DRF's translated words with ours. Clients branch on `code`.

    It also refuses NUL bytes in an API path or query (PostgreSQL cannot compare them): 400."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
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

from django.conf import settings
from django.utils import translation


class ApiInEnglishMiddleware:
    """The admin speaks the hospital's language; the API answers in one language, English, so
    that a message never mixes DRF's translated words with ours. Clients branch on `code`."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path.startswith("/api/"):
            translation.activate("en")
            request.LANGUAGE_CODE = "en"
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

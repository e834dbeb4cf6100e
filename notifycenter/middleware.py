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

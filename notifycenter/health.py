from django.db import connection
from django.http import JsonResponse


def healthz(request):
    """Liveness and the database: 200 when a query goes through, 503 otherwise."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as err:
        return JsonResponse({"status": "error", "database": str(err)}, status=503)
    return JsonResponse({"status": "ok"})

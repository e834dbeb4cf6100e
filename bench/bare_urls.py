"""The bare view bench/ingest.py measures the intake against: the request body stored as one row
(`bench_raw`, made by the raw psycopg peer), answered 202 with a small JSON body. No parsing, no
validation, no authentication: what Django and the web server cost on this machine, and one INSERT."""

import uuid

from django.db import connection
from django.http import JsonResponse
from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt


@csrf_exempt
def insert_one(request):
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO bench_raw (k, body, at) VALUES (%s, %s, now()) RETURNING id",
            [uuid.uuid4().hex, request.body.decode()],
        )
        (row_id,) = cursor.fetchone()
    return JsonResponse({"id": row_id}, status=202)


# Under /api/, as the events are: the same chain of middleware (notifycenter/handlers.py).
urlpatterns = [path("api/bare", insert_one), path("", include("notifycenter.urls"))]

"""The durable endpoint at /api/durable, beside the project's own URLs."""

from django.http import HttpRequest, JsonResponse
from django.urls import include, path

from examples.functions import etl, orders
from sdk import Client
from sdk.django import urls

FUNCTIONS = [*orders.FUNCTIONS, *etl.FUNCTIONS]

client = Client(app_id="orders-app")


def home(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"app": "orders-app", "durable_endpoint": "/api/durable",
                         "functions": [f.name for f in FUNCTIONS]})


urlpatterns = [
    path("", home),
    path("api/durable", include(urls(client, FUNCTIONS))),
]

"""Django adapter: ``urls(client, functions)`` for ``include()``, or ``view(...)``.

Django is not an SDK dependency (``pip install durable-orchestrator[django]``); only this
module imports it. The request is answered by ``sdk.wsgi.SyncEndpoint`` (the ASGI
endpoint on the adapter's own event loop), so task bodies may be sync or async. The view
is exempt from CSRF checks: every request is verified by its signature instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, path
from django.views.decorators.csrf import csrf_exempt

from sdk.client import Client
from sdk.function import Runnable
from sdk.wsgi import SyncEndpoint

View = Callable[[HttpRequest], HttpResponse]


def view(client: Client, functions: Iterable[Runnable]) -> View:
    """A Django view answering GET and POST: ``path("api/durable", view(client, FNS))``."""
    endpoint = SyncEndpoint(client, functions)

    def durable(request: HttpRequest) -> HttpResponse:
        resp = endpoint.respond(request.method, request.headers.items(), request.read)
        return HttpResponse(resp.body, status=resp.status, headers=resp.headers)

    exempt: View = csrf_exempt(durable)  # (django ships no type hints)
    return exempt


def urls(client: Client, functions: Iterable[Runnable], route: str = "") -> list[URLPattern]:
    """URL patterns to include: ``path("api/durable", include(urls(client, FNS)))``."""
    return [path(route, view(client, functions), name="durable")]

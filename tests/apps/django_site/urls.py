from django.urls import include, path

from sdk.django import urls
from tests.apps.testapp import FUNCTIONS, client

urlpatterns = [path("api/durable", include(urls(client, FUNCTIONS)))]

"""Settings of the example Django project: no database, no apps; only the SDK's view."""

import os

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "dev-only-not-secret")
DEBUG = False
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost").split(",")
ROOT_URLCONF = "examples.functions.django_app.urls"
INSTALLED_APPS: list[str] = []
MIDDLEWARE = ["django.middleware.common.CommonMiddleware",
              "django.middleware.csrf.CsrfViewMiddleware"]
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True

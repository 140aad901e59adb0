"""A minimal Django project serving the test app's functions at /api/durable."""

SECRET_KEY = "test-only"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "tests.apps.django_site.urls"
INSTALLED_APPS: list[str] = []
MIDDLEWARE = ["django.middleware.common.CommonMiddleware",
              "django.middleware.csrf.CsrfViewMiddleware"]
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True

"""The WSGI application of the example Django project (``gunicorn ...django_app.wsgi``)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "examples.functions.django_app.settings")
application = get_wsgi_application()

"""The example app's functions in a Django project (``pip install
durable-orchestrator[django] gunicorn``): ``urls.py`` includes the SDK's URL patterns at
/api/durable.

Run it with ``DJANGO_SETTINGS_MODULE=examples.functions.django_app.settings gunicorn -b
:8000 --threads 8 examples.functions.django_app.wsgi`` next to an orchestrator.
Configuration comes from the environment (DURABLE_*; DJANGO_SECRET_KEY,
DJANGO_ALLOWED_HOSTS).
"""

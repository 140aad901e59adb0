"""The example app's functions in a Flask app: the SDK endpoint is a blueprint at
/api/durable (``pip install durable-orchestrator[flask] waitress``).

Run it with ``waitress-serve --port 8000 examples.functions.flask_app:app`` (or
``gunicorn -b :8000 --threads 8 examples.functions.flask_app:app``) next to an
orchestrator. Configuration comes from the environment (DURABLE_*).

``durable`` is the same endpoint as a Google Cloud Run function: deploy this module as
``main.py`` with ``--entry-point durable`` (Cloud Run functions call it with the Flask
request).
"""

from __future__ import annotations

from flask import Flask

from examples.functions import etl, orders
from sdk import Client
from sdk.flask import blueprint, cloud_function

FUNCTIONS = [*orders.FUNCTIONS, *etl.FUNCTIONS]

client = Client(app_id="orders-app")

app = Flask(__name__)
app.register_blueprint(blueprint(client, FUNCTIONS))


@app.get("/")
def home() -> dict[str, object]:
    return {"app": "orders-app", "durable_endpoint": "/api/durable",
            "functions": [f.name for f in FUNCTIONS]}


durable = cloud_function(client, FUNCTIONS)

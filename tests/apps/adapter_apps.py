"""The test app's functions (``tests.apps.testapp``) behind the WSGI and Lambda adapters."""

from __future__ import annotations

from flask import Flask

from sdk import aws_lambda
from sdk.flask import blueprint
from sdk.wsgi import serve_wsgi
from tests.apps.testapp import FUNCTIONS, client

flask_app = Flask(__name__)
flask_app.register_blueprint(blueprint(client, FUNCTIONS))

# the bare WSGI app (what a Cloud Run function or ``gunicorn module:wsgi_app`` serves)
wsgi_app = serve_wsgi(client, FUNCTIONS)

lambda_handler = aws_lambda.handler(client, FUNCTIONS)

"""The example app's functions as an AWS Lambda function
(``pip install durable-orchestrator[lambda]``).

Set the function's handler to ``examples.functions.lambda_handler.handler`` and put a
function URL (or an API Gateway HTTP or REST API) in front of it; register that URL with
the orchestrator. Configuration comes from the function's environment (DURABLE_*).
"""

from __future__ import annotations

from examples.functions import etl, orders
from sdk import Client, aws_lambda

FUNCTIONS = [*orders.FUNCTIONS, *etl.FUNCTIONS]

client = Client(app_id="orders-app")

handler = aws_lambda.handler(client, FUNCTIONS)

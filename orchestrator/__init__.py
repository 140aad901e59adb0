"""The durable-workflow orchestrator server."""

"""The engine: dispatcher, invoker, reducer, ingest; reaches the database via the store."""

"""The REST API (JSON, versioned under /api/v1)."""

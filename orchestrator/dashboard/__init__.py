"""The web dashboard served at ``/`` (server-rendered Jinja2 pages with htmx; see
docs/dashboard.md). It calls the ``Engine`` facade in-process."""

from orchestrator.dashboard.app import DashboardPaths, create_dashboard

__all__ = ["DashboardPaths", "create_dashboard"]

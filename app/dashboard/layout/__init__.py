"""Component factories for the dashboard page (pure: data in, components out)."""

from app.dashboard.layout.page import build_layout

__all__ = ["build_layout"]

"""Tracking numbers bought and released through the carriers' number APIs (issue 19)."""

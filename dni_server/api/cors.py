"""CORS for the public snippet API: any page may call it (sites are checked by key)."""

from __future__ import annotations

from flask import Blueprint
from flask_cors import CORS


def enable_cors(bp: Blueprint) -> None:
    # No credentials: the snippet keeps its own ids in first-party storage, so a wildcard
    # origin is safe and lets browsers cache the (rare) preflight for a day.
    CORS(bp, origins="*", methods=["POST", "OPTIONS"], allow_headers=["Content-Type"],
         max_age=86_400, supports_credentials=False)

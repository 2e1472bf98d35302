"""Builds the OpenAPI document from the marshmallow schemas (filled in below)."""


def build_spec() -> dict:
    return {"openapi": "3.0.3", "info": {"title": "DNI service", "version": "0.1.0"}, "paths": {}}

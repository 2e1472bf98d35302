"""The heartbeat's quick loader accepts and refuses exactly what its schema does."""

import pytest
from marshmallow import ValidationError

from dni_server.api.schemas import HeartbeatRequestSchema, QuickLoader

BODIES = [
    {"site": "k" * 20},
    {"site": "k", "url": None, "visitor_id": None},
    {"site": "k", "url": "https://example.com/a", "visitor_id": "v" * 128},
    {"site": "k", "visitor_id": "v" * 129},
    {"site": "k", "url": "u" * 4097},
    {"site": ""},
    {"site": "k" * 65},
    {"site": None},
    {},
    {"site": 5},
    {"site": "k", "url": 12},
    {"site": "k", "url": ["x"]},
    {"site": "k", "unknown": {"deep": 1}},
    {"site": "k", "visitor_id": True},
]


@pytest.mark.parametrize("body", BODIES)
def test_quick_loader_agrees_with_its_schema(body):
    schema = HeartbeatRequestSchema()
    quick = QuickLoader(schema)
    try:
        expected = schema.load(body)
    except ValidationError as exc:
        with pytest.raises(ValidationError) as caught:
            quick.load(body)
        assert caught.value.messages == exc.messages
    else:
        assert quick.load(body) == expected


def test_quick_loader_refuses_schemas_it_cannot_check():
    from marshmallow import Schema, fields

    class Numbers(Schema):
        count = fields.Integer()

    with pytest.raises(TypeError):
        QuickLoader(Numbers())

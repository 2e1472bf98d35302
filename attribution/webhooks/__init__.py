"""Outgoing webhooks: signed event notifications for CRMs and call-centre tools.

- ``events``: the known event types (one list) and the emit functions the call, routing and
  recorder code call in their own transactions;
- ``models``: subscriptions, the delivery queue, its attempts log, per-subject emit marks;
- ``subscriptions``: the admin service (validation, secret generation and sealing, replay);
- ``signing``: the ``DNI-Signature`` header (Stripe's scheme) and its verification;
- ``delivery``: the worker's half, sharing the conversions outbox's claim scheme, back-off,
  SSRF-guarded HTTP client and credential box.
"""

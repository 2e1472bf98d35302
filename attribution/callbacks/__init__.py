"""Web callbacks: a visitor leaves a number on the page and is called back.

``intake`` takes the request (validation, evidence, abuse limits, calling hours),
``hours`` says when a number may be called, ``limits`` runs the abuse limits in Redis,
``dialing`` places the calls through a carrier's REST API, ``calling`` is the worker's
step that drives each callback to its end and records the resulting call (its business leg
rung through a ``BusinessRouter``: ``routing.callback_offers`` offers it to a routing plan's
buyers), and ``announce`` queues the outgoing webhook events (``callback.requested``,
``callback.completed``, ``callback.failed``).
"""

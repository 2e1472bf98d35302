"""What a call's stored insight says for fraud checks, as plain functions of the JSON.

``attribution.fraud`` calls these with ``call.insight`` (nothing here queries or imports
it): each answers None when the recording has not been analysed (or could not be), so
"not yet known" is never taken for "no".
"""

from __future__ import annotations


def _analysed(insight: dict | None) -> dict | None:
    return insight if isinstance(insight, dict) and insight.get("status") == "ok" else None


def one_sided(insight: dict | None) -> bool | None:
    """Only one side talked (a parked or scripted call); None when unknown, including a
    mono recording, whose sides cannot be told apart."""
    found = _analysed(insight)
    return None if found is None or found.get("one_sided") is None else bool(found["one_sided"])


def voicemail(insight: dict | None) -> bool | None:
    """A machine answered (a greeting then a beep, or "leave a message"); None when unknown."""
    found = _analysed(insight)
    return None if found is None else bool(found.get("voicemail"))


def fraud_signals(insight: dict | None) -> list[str]:
    """Every fraud signal the analysis raised: ``one_sided``, ``voicemail`` and the site's
    ``fraud:<name>`` keywords heard (by name); [] when unknown."""
    found = _analysed(insight)
    return list(found.get("fraud_signals") or []) if found is not None else []


def talk_share(insight: dict | None) -> float | None:
    """The caller's share of the talk (0..1); None when unknown or nobody talked."""
    found = _analysed(insight)
    talk = (found or {}).get("talk_seconds") or {}
    caller, agent = talk.get("caller"), talk.get("agent")
    if caller is None or agent is None or caller + agent <= 0:
        return None
    return caller / (caller + agent)

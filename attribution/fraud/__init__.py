"""Fraud and call quality: signals on every call, a named risk score, the site's policy
(flag, challenge, block), the block list, and the review of held calls.

``signals`` (pure facts), ``score`` (named contributions), ``policy`` (thresholds),
``lists`` (block-list matching and its service), ``directory`` (what the pre-ring check
reads, cached per process and mirrored in Redis), ``screen`` (the pre-ring check: no SQL,
one Redis round trip), ``assess`` (the signals the match and the call's end add),
``review`` (the queue of held calls).
"""

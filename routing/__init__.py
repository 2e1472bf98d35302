"""Pay-per-call routing: which buyer gets a call, and what the call earns.

Below the web layer (nothing here imports Flask) and above ``attribution``: it reads a
call's attribution and the buyers' rules, runs the plan's IVR, offers the call to buyers
tier by tier, and holds each buyer's caps and live calls in Redis (``capacity``).
"""

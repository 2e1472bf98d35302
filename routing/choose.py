"""The order buyers are tried in: tiers in order; in a weighted tier at random by weight.

A weighted tier is drawn as a weighted random order (weighted sampling without replacement),
and its buyers are tried in that order until one has room. The first with room among those
eligible is then picked with probability weight / (sum of the eligible's weights), exactly
as if the ineligible had been dropped first, yet without asking Redis about buyers that are
never reached.
"""

from __future__ import annotations

import random


def weighted_order(weights: dict[int, int], rng: random.Random) -> list[int]:
    """``weights`` (buyer id -> weight) in a random order where a heavier buyer tends to come
    first: each place is drawn by weight among those not placed yet. Weight 0 comes last."""
    # Efraimidis-Spirakis keys: u ** (1 / w), largest first, is that same draw in one sort.
    keyed = [(rng.random() ** (1.0 / w) if w > 0 else -1.0, b) for b, w in weights.items()]
    return [b for _, b in sorted(keyed, key=lambda kw: kw[0], reverse=True)]


def buyer_weight(buyer: dict) -> int:
    """A buyer's weight in a weighted tier: the sum of its targets' weights."""
    return sum(int(t.get("weight", 1)) for t in buyer["targets"])


def candidates(tier: dict, buyers: dict[int, dict], tried: set[int],
               rng: random.Random) -> list[int]:
    """The tier's buyers not tried yet for this call, in the order to try them: weighted
    random for a weighted tier, as listed for a simultaneous one (all are rung)."""
    left = [b for b in tier["buyers"] if b not in tried and b in buyers]
    if tier.get("mode", "weighted") == "simultaneous":
        return left
    return weighted_order({b: buyer_weight(buyers[b]) for b in left}, rng)

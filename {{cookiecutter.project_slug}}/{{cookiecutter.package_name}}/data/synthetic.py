"""A seeded generator of implicit-feedback interactions that behaves like real logs where it matters.

- Item popularity follows a power law (Zipf with `popularity_exponent`), over a random permutation of ids.
- User activity is log-normal (`activity_sigma`), so a few users are heavy and most are light.
- Latent structure: every item belongs to one of `n_topics` tastes, every user has a sparse mixture of tastes
  (Dirichlet 0.1). A share `topic_affinity` of each user's events is drawn from their tastes, the rest from
  global popularity. A model that learns co-occurrence (EASE, BPR) therefore beats popularity clearly.
- Timestamps are uniform over `days` from `start`; ratings grow with the user's affinity for the item's taste.

Sampling costs O(events x log items), in blocks, so ten million events fit in memory without trouble.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from ..settings import SyntheticConfig
from . import schema

_BLOCK = 1_000_000  # events per block when drawing tastes, to bound memory


def generate(cfg: SyntheticConfig, seed: int) -> pl.DataFrame:
    """`cfg.n_interactions` unique (user, item) events, sorted by time; same seed, same frame."""
    if cfg.n_interactions > _MAX_DENSITY * cfg.n_users * cfg.n_items:
        raise ValueError(
            f"synthetic: {cfg.n_interactions} interactions do not fit {cfg.n_users} users x "
            f"{cfg.n_items} items at density <= {_MAX_DENSITY}; raise n_users or n_items"
        )
    rng = np.random.default_rng(seed)
    world = _World(
        popularity=_zipf_popularity(cfg.n_items, cfg.popularity_exponent, rng),
        item_topic=rng.integers(0, cfg.n_topics, size=cfg.n_items),
        tastes=rng.dirichlet(np.full(cfg.n_topics, 0.1), size=cfg.n_users),
        activity=rng.lognormal(0.0, cfg.activity_sigma, size=cfg.n_users),
    )
    # Repeated (user, item) draws collapse into one implicit event: draw rounds until enough pairs are unique.
    frame = pl.DataFrame(schema=_SCHEMA)
    for _ in range(_MAX_ROUNDS):
        missing = cfg.n_interactions - frame.height
        if missing <= 0:
            break
        drawn = _draw_events(cfg, world, rng, size=int(missing * 1.5) + 100)
        frame = pl.concat([frame, drawn]).unique(["user_id", "item_id"], keep="first", maintain_order=True)
    frame = frame.head(cfg.n_interactions).sort("timestamp", "user_id", "item_id")
    if not cfg.with_rating:
        frame = frame.drop("rating")
    return schema.conform(frame, "synthetic")


_MAX_DENSITY = 0.3
_MAX_ROUNDS = 50
_SCHEMA = {"user_id": pl.Int64, "item_id": pl.Int64, "timestamp": pl.Int64, "rating": pl.Float64}


@dataclass(frozen=True)
class _World:
    popularity: np.ndarray  # (items,) probabilities
    item_topic: np.ndarray  # (items,) taste of each item
    tastes: np.ndarray  # (users, topics) mixture per user
    activity: np.ndarray  # (users,) relative activity


def _draw_events(cfg: SyntheticConfig, world: _World, rng: np.random.Generator, size: int) -> pl.DataFrame:
    users = rng.choice(cfg.n_users, size=size, p=world.activity / world.activity.sum())
    items = np.empty(size, dtype=np.int64)
    from_taste = rng.random(size) < cfg.topic_affinity
    items[~from_taste] = _draw(world.popularity, rng, int((~from_taste).sum()))

    topics = _draw_topics(world.tastes, users[from_taste], rng)
    taste_items = np.empty(topics.size, dtype=np.int64)
    for topic in range(cfg.n_topics):
        chosen = topics == topic
        if not chosen.any():
            continue
        members = np.flatnonzero(world.item_topic == topic)
        if members.size:
            taste_items[chosen] = members[_draw(world.popularity[members], rng, int(chosen.sum()))]
        else:  # a taste no item has: fall back to global popularity
            taste_items[chosen] = _draw(world.popularity, rng, int(chosen.sum()))
    items[from_taste] = taste_items

    affinity = world.tastes[users, world.item_topic[items]]
    rating = np.clip(np.rint(2.0 + 3.0 * np.sqrt(affinity) + rng.normal(0.0, 0.7, size=size)), 1, 5)
    return pl.DataFrame(
        {
            "user_id": users.astype(np.int64) + 1,
            "item_id": items + 1,
            "timestamp": cfg.start + rng.integers(0, cfg.days * 86_400, size=size),
            "rating": rating.astype(np.float64),
        },
        schema=_SCHEMA,
    )


def _zipf_popularity(n_items: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    ranks = rng.permutation(n_items) + 1
    weights = ranks.astype(np.float64) ** -exponent
    return weights / weights.sum()


def _draw(weights: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    """Indices drawn with probability proportional to `weights`, by inverse CDF (no n x m matrix)."""
    cdf = np.cumsum(weights, dtype=np.float64)
    picks = np.searchsorted(cdf, rng.random(size) * cdf[-1], side="right")
    return np.minimum(picks, weights.size - 1)


def _draw_topics(tastes: np.ndarray, users: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    cdf = np.cumsum(tastes, axis=1)
    out = np.empty(users.size, dtype=np.int64)
    for start in range(0, users.size, _BLOCK):
        block = users[start : start + _BLOCK]
        u = rng.random(block.size)[:, None] * cdf[block, -1:]
        out[start : start + _BLOCK] = np.minimum((u >= cdf[block]).sum(axis=1), tastes.shape[1] - 1)
    return out

"""Redis clients for the app, its health probe and the CLI: one place that makes them."""

from __future__ import annotations

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry


def make_redis(url: str, timeout_s: float):
    """A client that fails fast instead of retrying: the caller decides what a failure means."""
    options = dict(decode_responses=True, socket_timeout=timeout_s,
                   socket_connect_timeout=timeout_s, retry=Retry(NoBackoff(), 0))
    if url.startswith("redis+cluster://"):
        return make_cluster_client(url, options)
    return redis.Redis.from_url(url, **options)


def make_cluster_client(url: str, options: dict):
    """``redis+cluster://[user:password@]host:port[,host:port...]``: any listed node that
    answers tells the client the whole cluster, so list several to start with one down."""
    from redis.cluster import ClusterNode, RedisCluster

    rest = url.removeprefix("redis+cluster://")
    netloc, slash, tail = rest.partition("/")
    credentials, at, hosts = netloc.rpartition("@")
    first, *others = hosts.split(",")
    nodes = []
    for other in others:
        host, _, port = other.rpartition(":")
        nodes.append(ClusterNode(host or other, int(port) if port.isdigit() else 6379))
    return RedisCluster.from_url(f"redis://{credentials}{at}{first}{slash}{tail}",
                                 startup_nodes=nodes, **options)

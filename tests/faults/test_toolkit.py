"""The fault-injection tools do what they claim, against real servers."""

from __future__ import annotations

import time

import pytest
from redis import Redis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from tests.faults.toolkit import PrivateRedis, fault_proxy, wait_until
from tests.timing import scaled

pytestmark = [pytest.mark.faults, pytest.mark.redis]


@pytest.fixture
def private_redis(tmp_path):
    server = PrivateRedis(tmp_path / "redis").start()
    yield server
    server.stop()


def test_private_redis_loses_everything_when_killed(private_redis):
    conn = Redis.from_url(private_redis.url)
    conn.set("k", "v")
    private_redis.restart_empty()
    assert Redis.from_url(private_redis.url).get("k") is None


def test_proxy_passes_adds_latency_cuts_and_heals(private_redis):
    with fault_proxy(private_redis.port) as proxy:
        conn = Redis(port=proxy.port, socket_timeout=2, socket_connect_timeout=1)
        assert conn.ping()

        proxy.set_latency(0.2)
        started = time.monotonic()
        conn.ping()
        assert time.monotonic() - started >= 0.2

        proxy.cut()
        with pytest.raises((RedisConnectionError, RedisTimeoutError)):
            Redis(port=proxy.port, socket_timeout=1, socket_connect_timeout=1).ping()

        proxy.heal()
        healed = Redis(port=proxy.port, socket_timeout=2, socket_connect_timeout=1)
        assert wait_until(healed.ping, timeout=5, what="ping through the healed proxy") < scaled(5)


def test_blackholed_proxy_times_out_instead_of_answering(private_redis):
    with fault_proxy(private_redis.port) as proxy:
        conn = Redis(
            port=proxy.port,
            socket_timeout=0.5,
            socket_connect_timeout=0.5,
            retry=Retry(NoBackoff(), 0),
        )
        assert conn.ping()
        proxy.blackhole()
        with pytest.raises(RedisTimeoutError):
            conn.ping()

"""The EVS zone index (issue 16): the index itself on a fake clock, and the client's listing strategies over a
scripted transport for the readings of the docs the simulator does not play (ids refused, listings
forbidden, a malformed pair)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from azswitch.cloud import ConsistencyGroup, EvsClient, RateLimiter, RetryPolicy
from azswitch.cloud.evs_zones import ZoneIndex, ZoneListing
from azswitch.errors import CloudUnavailable

PROJECT = "0123456789abcdef0123456789abcdef"
A, B, C = "az1.dc1", "az2.dc2", "az3.dc3"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


LISTING = ZoneListing({"p1": ("v1", "v2"), "p2": ("v3", "v4")}, {"v1": A, "v2": B, "v3": A, "v4": B})


# --- the index ---------------------------------------------------------------------------------------------


def test_zones_of_needs_every_pair_and_disk() -> None:
    assert LISTING.zones_of(["p1", "p2"]) == [A, B]
    assert LISTING.zones_of(["p1", "p9"]) is None
    assert LISTING.zones_of([]) is None
    assert ZoneListing({"p1": ("v1", "v9")}, {"v1": A}).zones_of(["p1"]) is None
    assert ZoneListing({"p1": ()}, {}).zones_of(["p1"]) is None


class Builds:
    def __init__(self, *results: ZoneListing | Exception, gate: asyncio.Event | None = None) -> None:
        self.results = list(results)
        self.calls = 0
        self.gate = gate

    async def __call__(self) -> ZoneListing:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        result = self.results.pop(0) if len(self.results) > 1 else self.results[0]
        if isinstance(result, Exception):
            raise result
        return result


async def test_concurrent_lookups_share_one_build() -> None:
    gate = asyncio.Event()
    build = Builds(LISTING, gate=gate)
    index = ZoneIndex(clock=Clock())
    waiters = [asyncio.create_task(index.lookup(["p1"], build)) for _ in range(100)]
    await asyncio.sleep(0)
    gate.set()
    assert await asyncio.gather(*waiters) == [[A, B]] * 100
    assert build.calls == 1 and index.builds == 1


async def test_a_miss_rebuilds_only_once_the_index_is_old_enough() -> None:
    clock = Clock()
    newer = ZoneListing({**LISTING.pairs, "p3": ("v5", "v6")}, {**LISTING.volume_zones, "v5": A, "v6": C})
    build = Builds(LISTING, newer)
    index = ZoneIndex(clock=clock, rebuild_after=60, ttl=300)
    assert await index.lookup(["p1"], build) == [A, B]
    assert await index.lookup(["p3"], build) is None  # young: no rebuild for one group
    assert build.calls == 1
    clock.now += 61
    assert await index.lookup(["p3"], build) == [A, C]
    assert build.calls == 2


async def test_the_index_expires() -> None:
    clock = Clock()
    build = Builds(LISTING)
    index = ZoneIndex(clock=clock, ttl=300)
    await index.lookup(["p1"], build)
    clock.now += 299
    await index.lookup(["p1"], build)
    assert build.calls == 1
    clock.now += 1
    assert index.listing is None
    await index.lookup(["p1"], build)
    assert build.calls == 2


async def test_a_failed_build_reaches_every_waiter_and_is_not_kept() -> None:
    gate = asyncio.Event()
    build = Builds(CloudUnavailable("boom", operation="list_replication_pairs"), LISTING, gate=gate)
    index = ZoneIndex(clock=Clock())
    waiters = [asyncio.create_task(index.lookup(["p1"], build)) for _ in range(5)]
    await asyncio.sleep(0)
    gate.set()
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(r, CloudUnavailable) for r in results)
    assert index.listing is None
    assert await index.lookup(["p1"], build) == [A, B]
    assert build.calls == 2


async def test_a_cancelled_waiter_does_not_cancel_the_build_for_the_others() -> None:
    gate = asyncio.Event()
    build = Builds(LISTING, gate=gate)
    index = ZoneIndex(clock=Clock())
    first = asyncio.create_task(index.lookup(["p1"], build))
    second = asyncio.create_task(index.lookup(["p2"], build))
    await asyncio.sleep(0)
    first.cancel()
    gate.set()
    assert await second == [A, B]
    with pytest.raises(asyncio.CancelledError):
        await first
    assert build.calls == 1


def test_a_broken_hook_never_breaks_a_read() -> None:
    def broken(method: str) -> None:
        raise RuntimeError(method)

    ZoneIndex(on_discovery=broken).counted("listing")


# --- the client's listing strategies -----------------------------------------------------------------------

Handler = Callable[[httpx.Request], httpx.Response]


def _pair(pid: str, *volumes: str, group: str | None = "g") -> dict[str, Any]:
    return {"id": pid, "volume_ids": ",".join(volumes), "replication_consistency_group_id": group}


def _disk(vid: str, az: str) -> dict[str, Any]:
    return {"id": vid, "availability_zone": az, "status": "in-use"}


def _client(handler: Handler, log: list[httpx.Request], **kwargs: Any) -> EvsClient:
    def record(request: httpx.Request) -> httpx.Response:
        log.append(request)
        return handler(request)

    http = httpx.AsyncClient(base_url="https://evs.example", transport=httpx.MockTransport(record))

    async def no_wait(_seconds: float) -> None:
        return None

    return EvsClient(
        http,
        project_id=PROJECT,
        auth=httpx.Auth(),
        retry=RetryPolicy(max_attempts=1, sleep=no_wait),
        limiter=RateLimiter(1e6, 1000),
        **kwargs,
    )


def _ok(body: dict[str, Any]) -> httpx.Response:
    return httpx.Response(200, content=json.dumps(body).encode())


def _error(status: int) -> httpx.Response:
    return httpx.Response(status, content=b'{"error": {"code": "EVS.0001", "message": "no"}}')


def _paths(log: list[httpx.Request]) -> list[str]:
    return [r.url.path.removeprefix(f"/v2/{PROJECT}/") for r in log]


GROUP = ConsistencyGroup(id="g", replication_ids=["p1", "p2"])
PAIRS = [_pair("p1", "v1", "v2"), _pair("p2", "v3", "v4")]
DISKS = [_disk("v1", A), _disk("v2", B), _disk("v3", A), _disk("v4", B), _disk("other", C)]


def _cloud(
    *, ids: str = "honoured", pairs: int = 200, extra_pairs: tuple[dict[str, Any], ...] = ()
) -> Handler:
    def handle(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        query = parse_qs(request.url.query.decode())
        if path.endswith("/os-vendor-replications"):
            return _error(pairs) if pairs != 200 else _ok({"replications": [*PAIRS, *extra_pairs]})
        if path.endswith("/cloudvolumes/detail"):
            if "ids" in query and ids == "refused":
                return _error(400)
            if "ids" in query and ids == "honoured":
                wanted = {v.strip("'") for v in query["ids"][0].strip("[]").split(",")}
                return _ok({"volumes": [d for d in DISKS if d["id"] in wanted]})
            return _ok({"volumes": DISKS, "count": len(DISKS)})
        if "/os-vendor-replications/" in path:
            pid = path.rsplit("/", 1)[1]
            return _ok({"replication": next(p for p in PAIRS if p["id"] == pid)})
        if "/volumes/" in path:
            vid = path.rsplit("/", 1)[1]
            return _ok({"volume": next(d for d in DISKS if d["id"] == vid)})
        return _error(404)

    return handle


async def test_ids_honoured_one_request_for_a_small_project() -> None:
    log: list[httpx.Request] = []
    seen: list[str] = []
    client = _client(_cloud(), log, zone_index=ZoneIndex(on_discovery=seen.append))
    assert await client.availability_zones(GROUP) == [A, B]
    assert _paths(log) == ["os-vendor-replications", "cloudvolumes/detail"]
    assert parse_qs(log[1].url.query.decode())["ids"] == ["['v1','v2','v3','v4']"]
    assert seen == ["listing"]


async def test_ids_refused_pages_the_whole_disk_listing() -> None:
    log: list[httpx.Request] = []
    client = _client(_cloud(ids="refused"), log)
    assert await client.availability_zones(GROUP) == [A, B]
    assert _paths(log) == ["os-vendor-replications", "cloudvolumes/detail", "cloudvolumes/detail"]
    assert "ids" not in parse_qs(log[2].url.query.decode())


async def test_ids_ignored_is_noticed_and_its_answer_used() -> None:
    log: list[httpx.Request] = []
    client = _client(_cloud(ids="ignored"), log)
    assert await client.availability_zones(GROUP) == [A, B]
    # The unfiltered answer held every wanted disk: nothing more to page.
    assert _paths(log) == ["os-vendor-replications", "cloudvolumes/detail"]


@pytest.mark.parametrize("status", [403, 400])
async def test_a_refused_pair_listing_falls_back_to_per_group_reads(status: int) -> None:
    log: list[httpx.Request] = []
    seen: list[str] = []
    client = _client(_cloud(pairs=status), log, zone_index=ZoneIndex(on_discovery=seen.append))
    assert await client.availability_zones(GROUP) == [A, B]
    assert _paths(log)[0] == "os-vendor-replications"
    assert _paths(log)[1:] == [
        "os-vendor-replications/p1",
        "os-vendor-replications/p2",
        "volumes/v1",
        "volumes/v2",
        "volumes/v3",
        "volumes/v4",
    ]
    assert seen == ["per_group"]
    # The refusal is remembered like a listing (empty), not asked again for the next group.
    log.clear()
    await client.availability_zones(GROUP)
    assert "os-vendor-replications" not in _paths(log)


async def test_a_pair_with_a_malformed_disk_id_only_affects_its_group() -> None:
    log: list[httpx.Request] = []
    client = _client(_cloud(extra_pairs=(_pair("p3", "v5", "../x"),)), log)
    assert await client.availability_zones(GROUP) == [A, B]
    assert client.zone_index.listing is not None and "p3" not in client.zone_index.listing.pairs


def test_ids_chunk_is_bounded_by_the_documented_sixty() -> None:
    with pytest.raises(ValueError, match="ids_chunk"):
        _client(_cloud(), [], ids_chunk=61)

"""The kube harness (``kube.py``) proves here what the operator tests will lean on.

Two clients are exercised against the emulated API, as the operator uses them: the official
``kubernetes`` client (Secrets, ``/status`` merge patches with optimistic concurrency, Events) and kopf
in-process (list + watch: created, modified, deleted objects; resumption; a clean stop). If one of these
ever fails after a kmock upgrade, the operator tests built on the harness cannot be trusted either.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

import kmock
import kopf
import kubernetes.client
import pytest
from kube import (
    EVENTS,
    GROUP,
    KIND,
    NAMESPACES,
    PLURAL,
    RG,
    VERSION,
    KubeAPI,
    kube_api,
    operator_settings,
    run_operator,
    wait_for,
)
from kubernetes.client.exceptions import ApiException


@pytest.fixture
async def kube() -> AsyncIterator[KubeAPI]:
    async with kube_api(namespaces=["ns1", "ns2"]) as api:
        yield api


def rg(name: str, namespace: str = "ns1", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec or {"primary": "az1"},
    }


def apis(kube: KubeAPI) -> tuple[kubernetes.client.CoreV1Api, kubernetes.client.CustomObjectsApi]:
    client = kube.api_client()
    return kubernetes.client.CoreV1Api(client), kubernetes.client.CustomObjectsApi(client)


async def call(fn: Callable[..., object], *args: Any) -> dict[str, Any]:
    """A custom-objects call off the event loop, as the operator makes it (those return plain dicts)."""
    return cast(dict[str, Any], await asyncio.to_thread(fn, *args))


async def patch_status(
    custom: kubernetes.client.CustomObjectsApi, name: str, body: dict[str, Any], namespace: str = "ns1"
) -> dict[str, Any]:
    """As the operator writes status: a JSON merge patch of /status with the official client."""
    return await call(
        custom.patch_namespaced_custom_object_status, GROUP, VERSION, namespace, PLURAL, name, body
    )


# ------------------------------------------------------------------- the server and the official client


async def test_server_listens_on_a_free_port_and_serves_discovery(kube: KubeAPI) -> None:
    assert kube.url.startswith("http://127.0.0.1:") and not kube.url.endswith(":0")
    async with kube.emulator.get("/apis/azswitch.io/v1alpha1") as response:
        discovery = await response.json()
    names = {resource["name"]: resource for resource in discovery["resources"]}
    # What kopf needs to find: the kind, the scope, list+watch, and the status subresource.
    assert names[PLURAL]["kind"] == KIND
    assert names[PLURAL]["namespaced"] is True
    assert {"list", "watch", "patch"} <= set(names[PLURAL]["verbs"])
    assert f"{PLURAL}/status" in names


async def test_secret_is_read_with_the_official_client(kube: KubeAPI) -> None:
    core, _ = apis(kube)
    kube.create_secret("ns1", "cloud-creds", {"ak": "AK123", "sk": "SK456"})

    secret = await asyncio.to_thread(core.read_namespaced_secret, "cloud-creds", "ns1")

    assert secret.data is not None and secret.metadata is not None
    assert base64.b64decode(secret.data["ak"]) == b"AK123"
    assert secret.metadata.resource_version  # server-owned metadata is there
    with pytest.raises(ApiException) as caught:
        await asyncio.to_thread(core.read_namespaced_secret, "missing", "ns1")
    assert caught.value.status == 404
    assert json.loads(caught.value.body or "{}")["reason"] == "NotFound"


async def test_create_answers_201_and_fills_server_owned_metadata(kube: KubeAPI) -> None:
    _, custom = apis(kube)
    body = rg("rg1") | {"status": {"phase": "Ignored"}}

    created = await call(custom.create_namespaced_custom_object, GROUP, VERSION, "ns1", PLURAL, body)

    # kmock alone answers 200, and the official client then returns None for a create.
    assert created is not None
    meta = created["metadata"]
    assert meta["uid"] and meta["creationTimestamp"] and meta["generation"] == 1
    assert int(meta["resourceVersion"]) == kube.emulator.revision
    assert "status" not in created  # dropped on create, as for any CRD with a status subresource
    fetched = await call(custom.get_namespaced_custom_object, GROUP, VERSION, "ns1", PLURAL, "rg1")
    assert fetched == created == kube.get("ns1", "rg1")
    with pytest.raises(ApiException) as caught:
        await call(custom.create_namespaced_custom_object, GROUP, VERSION, "ns1", PLURAL, body)
    assert caught.value.status == 409


async def test_status_patch_changes_only_status(kube: KubeAPI) -> None:
    _, custom = apis(kube)
    before = kube.create(rg("rg1"))

    after = await patch_status(
        custom,
        "rg1",
        {"status": {"phase": "Ready"}, "spec": {"primary": "az2"}, "metadata": {"labels": {"x": "y"}}},
    )

    assert after["status"] == {"phase": "Ready"}
    assert after["spec"] == before["spec"]  # /status ignores everything else
    assert "labels" not in after["metadata"]
    assert int(after["metadata"]["resourceVersion"]) > int(before["metadata"]["resourceVersion"])
    assert after["metadata"]["generation"] == 1  # status is not the spec
    [request] = kube.requests_to("PATCH", subresource="status")
    assert request.headers["Content-Type"] == "application/merge-patch+json"  # the client's default here

    # And the object's own endpoint cannot change the status, while a spec change bumps the generation.
    patched = await call(
        custom.patch_namespaced_custom_object,
        GROUP,
        VERSION,
        "ns1",
        PLURAL,
        "rg1",
        {"spec": {"primary": "az2"}, "status": {"phase": "Hacked"}},
    )
    assert patched["status"] == {"phase": "Ready"}
    assert patched["metadata"]["generation"] == 2


async def test_stale_resource_version_gets_409_and_changes_nothing(kube: KubeAPI) -> None:
    _, custom = apis(kube)
    stale = kube.create(rg("rg1"))["metadata"]["resourceVersion"]
    current = kube.patch("ns1", "rg1", {"spec": {"primary": "az2"}})["metadata"]["resourceVersion"]

    with pytest.raises(ApiException) as caught:
        await patch_status(
            custom, "rg1", {"metadata": {"resourceVersion": stale}, "status": {"phase": "Stale"}}
        )
    assert caught.value.status == 409
    assert json.loads(caught.value.body or "{}")["reason"] == "Conflict"
    assert "status" not in (kube.get("ns1", "rg1") or {})

    written = await patch_status(
        custom, "rg1", {"metadata": {"resourceVersion": current}, "status": {"phase": "Ok"}}
    )
    assert written["status"] == {"phase": "Ok"}


async def test_noop_patch_keeps_the_resource_version(kube: KubeAPI) -> None:
    _, custom = apis(kube)
    kube.create(rg("rg1"))
    first = await patch_status(custom, "rg1", {"status": {"phase": "Ready"}})
    again = await patch_status(custom, "rg1", {"status": {"phase": "Ready"}})
    # The apiserver does not write (nor notify watchers of) a patch that changes nothing.
    assert again["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
    assert len(kube.versions("ns1", "rg1")) == 2


async def test_patch_content_types_are_honoured(kube: KubeAPI) -> None:
    kube.create(rg("rg1"))
    url = f"/apis/{GROUP}/{VERSION}/namespaces/ns1/{PLURAL}/rg1"

    json_patch = [{"op": "add", "path": "/metadata/labels", "value": {"a": "b"}}]
    headers = {"Content-Type": "application/json-patch+json"}
    async with kube.emulator.patch(url, data=json.dumps(json_patch), headers=headers) as response:
        assert response.status == 200
    assert (kube.get("ns1", "rg1") or {})["metadata"]["labels"] == {"a": "b"}

    # Strategic merge patch is not defined for custom resources: a real apiserver says 415 too.
    headers = {"Content-Type": "application/strategic-merge-patch+json"}
    async with kube.emulator.patch(url, data=json.dumps({"spec": {}}), headers=headers) as response:
        assert response.status == 415


async def test_missing_objects_are_404(kube: KubeAPI) -> None:
    _, custom = apis(kube)
    with pytest.raises(ApiException) as caught:
        await call(custom.get_namespaced_custom_object, GROUP, VERSION, "ns1", PLURAL, "nope")
    assert caught.value.status == 404
    with pytest.raises(ApiException) as caught:
        await patch_status(custom, "nope", {"status": {"phase": "Ready"}})
    assert caught.value.status == 404


async def test_events_are_created_with_generate_name(kube: KubeAPI) -> None:
    core, _ = apis(kube)
    event = kubernetes.client.CoreV1Event(
        metadata=kubernetes.client.V1ObjectMeta(generate_name="rg1."),
        involved_object=kubernetes.client.V1ObjectReference(kind=KIND, name="rg1", namespace="ns1"),
        reason="SwitchoverStarted",
        message="moving to az2",
        type="Normal",
    )

    first = await asyncio.to_thread(core.create_namespaced_event, "ns1", event)
    second = await asyncio.to_thread(core.create_namespaced_event, "ns1", event)

    assert first.metadata is not None and second.metadata is not None
    assert first.metadata.name != second.metadata.name
    assert (first.metadata.name or "").startswith("rg1.")
    assert [e["reason"] for e in kube.events("ns1")] == ["SwitchoverStarted"] * 2
    assert kube.events("ns2") == []
    assert len(kube.requests_to("POST", resource=EVENTS)) == 2


async def test_namespaces_are_served(kube: KubeAPI) -> None:
    core, _ = apis(kube)
    # kmock 0.8 alone crashes on these URLs; kopf lists and watches them in namespaced mode.
    listed = await asyncio.to_thread(core.list_namespace)
    fetched = await asyncio.to_thread(core.read_namespace, "ns1")
    assert {ns.metadata.name for ns in listed.items if ns.metadata} == {"ns1", "ns2"}
    assert fetched.metadata is not None and fetched.metadata.name == "ns1"
    assert kube.requests_to("GET", resource=NAMESPACES, name="ns1")


async def test_deletion_waits_for_finalizers(kube: KubeAPI) -> None:
    kube.create(
        rg("rg1") | {"metadata": {"name": "rg1", "namespace": "ns1", "finalizers": ["azswitch.io/f"]}}
    )
    marked = kube.delete("ns1", "rg1")
    assert marked["metadata"]["deletionTimestamp"]
    assert kube.get("ns1", "rg1") is not None

    kube.patch("ns1", "rg1", {"metadata": {"finalizers": None}})
    assert kube.get("ns1", "rg1") is None
    assert kube.versions("ns1", "rg1")[-1] is None
    # As the apiserver: marking is a MODIFIED (generation bumped); releasing is just the DELETED.
    changes = [
        (c.type, c.object["metadata"]["generation"]) for c in kube.emulator.journal if c.resource == RG
    ]
    assert changes == [("ADDED", 1), ("MODIFIED", 2), ("DELETED", 2)]


async def test_injected_fault_answers_and_leaves_the_object_alone(kube: KubeAPI) -> None:
    _, custom = apis(kube)
    kube.create(rg("rg1"))
    kube.emulator[kmock.method.PATCH, kmock.subresource("status")] << 503

    with pytest.raises(ApiException) as caught:
        await patch_status(custom, "rg1", {"status": {"phase": "Ready"}})

    assert caught.value.status == 503
    assert "status" not in (kube.get("ns1", "rg1") or {})


async def test_watch_resumes_from_a_resource_version(kube: KubeAPI) -> None:
    kube.create(rg("old"))
    async with kube.emulator.get(f"/apis/{GROUP}/{VERSION}/{PLURAL}") as response:
        listing = await response.json()
    kube.create(rg("new"))
    kube.patch("ns1", "old", {"spec": {"primary": "az2"}})

    params = {"watch": "true", "resourceVersion": listing["metadata"]["resourceVersion"]}
    params |= {"timeoutSeconds": "0.2", "allowWatchBookmarks": "true"}
    async with kube.emulator.get(f"/apis/{GROUP}/{VERSION}/{PLURAL}", params=params) as response:
        lines = [json.loads(line) async for line in response.content if line.strip()]

    # Only what happened after the listing; then the server-side timeout ends it with a bookmark.
    seen = [(e["type"], e["object"]["metadata"].get("name")) for e in lines]
    assert seen == [("ADDED", "new"), ("MODIFIED", "old"), ("BOOKMARK", None)]
    assert lines[-1]["object"]["metadata"]["resourceVersion"] == str(kube.emulator.revision)


# ------------------------------------------------------------------- kopf in-process


def recording_registry(kube: KubeAPI, seen: list[tuple[str | None, str, str]]) -> kopf.OperatorRegistry:
    """A registry with a custom login (as the operator has) and an event handler that records."""
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return kube.connection_info()

    @kopf.on.event(GROUP, VERSION, PLURAL, registry=registry)
    def on_event(event: kopf.RawEvent, **_: Any) -> None:
        meta = event["object"]["metadata"]
        seen.append((event["type"], meta["name"], meta["resourceVersion"]))

    return registry


async def test_kopf_sees_listed_created_modified_and_deleted_objects(kube: KubeAPI) -> None:
    seen: list[tuple[str | None, str, str]] = []
    kube.create(rg("existing"))

    async with run_operator(recording_registry(kube, seen), kube, clusterwide=True):
        await wait_for(lambda: "existing" in {name for _, name, _ in seen})
        kube.create(rg("rg1", namespace="ns2"))
        await wait_for(lambda: ("ADDED", "rg1") in {(t, n) for t, n, _ in seen})
        kube.patch("ns2", "rg1", {"spec": {"primary": "az2"}})
        await wait_for(lambda: ("MODIFIED", "rg1") in {(t, n) for t, n, _ in seen})
        kube.delete("ns2", "rg1")
        await wait_for(lambda: ("DELETED", "rg1") in {(t, n) for t, n, _ in seen})

    # The pre-existing object arrives once, from the listing (kopf marks it type=None), never replayed.
    assert [(t, n) for t, n, _ in seen] == [
        (None, "existing"),
        ("ADDED", "rg1"),
        ("MODIFIED", "rg1"),
        ("DELETED", "rg1"),
    ]
    # Event handlers only: kopf wrote nothing (no progress or diff-base annotations, no finalizers).
    assert kube.requests_to("PATCH", resource=None) == []


async def test_kopf_in_namespaces_ignores_other_namespaces(kube: KubeAPI) -> None:
    seen: list[tuple[str | None, str, str]] = []
    async with run_operator(recording_registry(kube, seen), kube, namespaces=["ns1"]):
        kube.create(rg("elsewhere", namespace="ns2"))
        kube.create(rg("here", namespace="ns1"))
        await wait_for(lambda: seen)
        await asyncio.sleep(0.1)  # time enough for a wrong event to arrive too
    assert [name for _, name, _ in seen] == ["here"]
    # Namespaced mode lists and watches Namespaces (kmock alone cannot serve them).
    assert kube.requests_to("GET", resource=NAMESPACES, watch=True)


async def test_kopf_resumes_after_server_side_watch_timeouts(kube: KubeAPI) -> None:
    seen: list[tuple[str | None, str, str]] = []
    settings = operator_settings()
    settings.watching.server_timeout = 0.2  # the emulator honours timeoutSeconds

    async with run_operator(recording_registry(kube, seen), kube, clusterwide=True, settings=settings):
        kube.create(rg("rg1"))
        await wait_for(lambda: len(kube.requests_to("GET", watch=True)) >= 3)  # two reconnects at least
        kube.patch("ns1", "rg1", {"spec": {"primary": "az2"}})
        await wait_for(lambda: len(seen) >= 2)
        await asyncio.sleep(0.3)  # and one more reconnect, which must not replay anything

    assert [(t, n) for t, n, _ in seen] == [("ADDED", "rg1"), ("MODIFIED", "rg1")]
    resumed = [int(r.params["resourceVersion"]) for r in kube.requests_to("GET", watch=True)]
    assert resumed == sorted(resumed)  # every reconnect continues from the last version seen


async def test_kopf_handler_writes_status_and_events_like_the_operator(kube: KubeAPI) -> None:
    """End to end: kopf's event -> the official client -> /status (with resourceVersion) -> kopf's event."""
    core, custom = apis(kube)
    registry = kopf.OperatorRegistry()
    seen: list[str] = []

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return kube.connection_info()

    @kopf.on.event(GROUP, VERSION, PLURAL, registry=registry)
    async def reconcile(event: kopf.RawEvent, **_: Any) -> None:
        obj = event["object"]
        seen.append(obj.get("status", {}).get("phase", "-"))
        if event["type"] == "DELETED" or obj.get("status"):
            return  # our own write coming back: nothing to do
        meta = obj["metadata"]
        body = {"metadata": {"resourceVersion": meta["resourceVersion"]}, "status": {"phase": "Ready"}}
        await patch_status(custom, meta["name"], body, namespace=meta["namespace"])
        event_body = kubernetes.client.CoreV1Event(
            metadata=kubernetes.client.V1ObjectMeta(generate_name=f"{meta['name']}."),
            involved_object=kubernetes.client.V1ObjectReference(
                kind=KIND, name=meta["name"], namespace=meta["namespace"], uid=meta["uid"]
            ),
            reason="Reconciled",
            message="ready",
            type="Normal",
        )
        await asyncio.to_thread(core.create_namespaced_event, meta["namespace"], event_body)

    async with run_operator(registry, kube, clusterwide=True):
        kube.create(rg("rg1"))
        await wait_for(lambda: (kube.get("ns1", "rg1") or {}).get("status"))
        await wait_for(lambda: "Ready" in seen)  # kopf saw the status write
        started = time.monotonic()
    stopped_in = time.monotonic() - started

    assert seen == ["-", "Ready"]
    assert len(kube.requests_to("PATCH", subresource="status")) == 1
    assert [e["reason"] for e in kube.events("ns1", involving="rg1")] == ["Reconciled"]
    # The official client's connections did not hold kopf's shutdown (its 5 s wait for "hung" tasks).
    assert stopped_in < 2.0

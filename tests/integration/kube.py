"""A Kubernetes API for integration tests: kmock's emulator, made strict where our operator depends on it.

Why: the operator talks to Kubernetes twice over — kopf watches ``ReplicationGroup`` resources, and the
official ``kubernetes`` client reads Secrets, merge-patches ``/status`` with ``metadata.resourceVersion``
(so a stale write must get 409) and posts Events. Monkeypatching either client would test our guesses about
those clients; a real HTTP server tests the contract. ``kmock.KubernetesEmulator`` is such a server, but out
of the box (kmock 0.8) it is too forgiving for what we rely on:

* no ``metadata.resourceVersion``/``uid``/``generation``/``creationTimestamp`` on objects; lists report
  ``resourceVersion: "..."``; so no optimistic concurrency (no 409 on a stale ``resourceVersion``);
* a PATCH to ``/status`` merges the whole body (spec and metadata too), and a PATCH to the object changes
  status — there is no status subresource; the Content-Type of a PATCH is ignored (any body is a merge);
* a watch ignores ``resourceVersion`` (it replays every object as ADDED, so a kopf that LISTed first sees
  each object twice), ignores ``timeoutSeconds`` and never sends bookmarks; an event that happens while a
  watch replays the snapshot can be lost (the bus is subscribed after the snapshot is sent);
* CREATE answers 200 (the official client maps only 201 for creates and so returns ``None``),
  ``generateName`` is not supported (a second Event with the same ``generateName`` is a 409);
* ``/api/v1/namespaces`` and ``/api/v1/namespaces/{name}`` crash its URL parser (500, ValueError: it
  reads "namespaces" as the prefix of a namespaced URL), and kopf lists and watches exactly these in
  namespaced mode (and never starts watching anything if ``namespaces`` is missing from discovery);
* state changes happen before user reactions run, so a fault injected with ``kmock[...] << 500`` still
  changes the object.

``KubeEmulator`` below fixes these by overriding the emulator's fallback handlers (its documented extension
point: "if you need special treatment, inherit") and, for the Namespace URLs only, the request parsing;
everything else — API discovery, request recording, the reaction DSL, ``kmock.objects`` — is kmock's.

Deliberately NOT emulated (the server answers loudly instead of pretending): PUT/replace (kmock does not
route PUT), server-side apply and strategic merge patch on custom resources (415, as a real apiserver
does), label/field selectors (400); list pagination (``limit`` is ignored), admission, RBAC are absent.

The harness runs the server, the official client, and kopf in one event loop (pytest-asyncio's); see
``run_operator`` for what that requires from kopf's shutdown.
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import contextlib
import copy
import dataclasses
import datetime
import inspect
import json
import random
import re
import signal
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any, TypeVar

import aiohttp.web
import attrs
import jsonpatch
import kmock
import kopf
import kubernetes.client

# Private: kmock 0.8 does not export Response (needed for a 201) nor StreamingError (see __call__).
from kmock._internal.rendering import Response, StreamingError

# The official client imports CoreV1Api lazily, ~1.7 s on first touch: pay it at collection, not in a test.
_ = kubernetes.client.CoreV1Api

T = TypeVar("T")
JSON = dict[str, Any]

GROUP = "azswitch.io"
VERSION = "v1alpha1"
PLURAL = "replicationgroups"
KIND = "ReplicationGroup"

RG = kmock.resource(GROUP, VERSION, PLURAL)
SECRETS = kmock.resource("", "v1", "secrets")
EVENTS = kmock.resource("", "v1", "events")
NAMESPACES = kmock.resource("", "v1", "namespaces")
ZD = kmock.resource(GROUP, VERSION, "zonedrains")

_ALL_VERBS = frozenset({"create", "delete", "get", "list", "patch", "update", "watch"})

# What the harness serves. Discovery matters: kopf serves only resources it finds there with both
# "list" and "watch" verbs, and patches /status only when "status" is listed as a subresource.
DEFAULT_RESOURCES: Mapping[kmock.resource, kmock.ResourceInfo] = {
    RG: kmock.ResourceInfo(
        kind=KIND,
        singular="replicationgroup",
        namespaced=True,
        verbs=_ALL_VERBS,
        subresources={"status"},
    ),
    # Cluster-scoped, like the real CRD: kopf watches it cluster-wide; the operator patches its /status.
    ZD: kmock.ResourceInfo(
        kind="ZoneDrain", singular="zonedrain", namespaced=False, verbs=_ALL_VERBS, subresources={"status"}
    ),
    SECRETS: kmock.ResourceInfo(kind="Secret", singular="secret", namespaced=True, verbs=_ALL_VERBS),
    EVENTS: kmock.ResourceInfo(kind="Event", singular="event", namespaced=True, verbs=_ALL_VERBS),
    # kopf needs namespaces in discovery even cluster-wide: its namespace observer waits for the resource.
    NAMESPACES: kmock.ResourceInfo(
        kind="Namespace", singular="namespace", namespaced=False, verbs=_ALL_VERBS
    ),
}

MERGE_PATCH = "application/merge-patch+json"

# The Namespace URLs kmock's parser gets wrong (namespaces have only these two subresources).
_NAMESPACES_PATH = re.compile(
    r"/api/v1/namespaces(?:/(?P<name>[^/]+)(?:/(?P<subresource>status|finalize))?)?/?"
)

# Fields the server owns: a client patch cannot change them (the apiserver ignores or rejects such changes).
_SERVER_OWNED_METADATA = (
    "name",
    "namespace",
    "uid",
    "creationTimestamp",
    "generation",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
)


def api_error(status: int, reason: str, message: str, **details: Any) -> kmock.KubernetesError:
    """A ``Status`` failure as the apiserver sends it (kmock renders ``KubernetesError`` as such)."""
    return kmock.KubernetesError(status=status, reason=reason, message=message, details=details or {})


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: dicts merge recursively, ``None`` deletes, anything else replaces."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge_patch(result.get(key), value)
    return result


@dataclasses.dataclass(frozen=True)
class Change:
    """One committed change, as a watch sees it. ``revision`` is the global, etcd-like counter."""

    revision: int
    type: str  # ADDED, MODIFIED, DELETED
    resource: kmock.resource
    namespace: str | None
    name: str
    object: JSON  # a snapshot: later changes never mutate it


@attrs.define(kw_only=True)
class KubeEmulator(kmock.KubernetesEmulator):
    """``kmock.KubernetesEmulator`` with resource versions, a status subresource, and resumable watches.

    State changes live in the fallback handlers (not in ``_handle`` as in kmock), so a reaction added
    with the kmock DSL in front of them — ``emulator[kmock.method.PATCH] << 500`` — is a real fault
    injection: the request is answered and the stored object stays as it was.

    State changes are synchronous (no awaits), so they are atomic in the event loop that serves the
    requests; call ``create_object``/``patch_object``/``delete_object`` from that loop's thread only.
    """

    _revision: int = attrs.field(default=0, init=False)
    _journal: list[Change] = attrs.field(factory=list, init=False)
    # Replaced on every commit: watchers await the one they saw, so no wake-up is ever lost.
    _pulse: asyncio.Event = attrs.field(factory=asyncio.Event, init=False)
    _watchers: dict[kmock.resource, int] = attrs.field(factory=dict, init=False)

    @property
    def revision(self) -> int:
        """The latest resourceVersion handed out (as an int; the API sends it as a string)."""
        return self._revision

    @property
    def journal(self) -> list[Change]:
        """Every change so far, oldest first: what watchers were sent, in order."""
        return list(self._journal)

    def watchers(self, resource: kmock.resource) -> int:
        """How many watch streams of ``resource`` are open right now (kopf's readiness, seen server-side)."""
        return self._watchers.get(resource, 0)

    # ------------------------------------------------------------------ state changes (API semantics)

    def resource_info(self, resource: kmock.resource) -> kmock.ResourceInfo:
        if resource not in self._get_resources():
            raise api_error(404, "NotFound", f"the server could not find the requested resource ({resource})")
        return self.resources[resource]

    def read_object(self, resource: kmock.resource, namespace: str | None, name: str) -> JSON | None:
        """The stored object (its nested parts are shared: do not mutate), or None if there is none."""
        key = (resource, namespace, name)
        if key not in self._objects or self._objects[key].deleted:
            return None
        return self._objects[key].raw

    def create_object(
        self, resource: kmock.resource, namespace: str | None, body: Any, *, via_api: bool = True
    ) -> JSON:
        """POST semantics: fill in server-owned metadata, 409 if it exists, 404 if its namespace does not.

        ``via_api=False`` (the test's own seeding) keeps ``status`` and creates a missing namespace;
        the apiserver drops ``status`` on create when a status subresource exists.
        """
        info = self.resource_info(resource)
        if not isinstance(body, Mapping):
            raise api_error(400, "BadRequest", "the body of the request must be a JSON object")
        obj: JSON = copy.deepcopy(dict(body))
        meta = obj.setdefault("metadata", {})
        body_namespace = meta.get("namespace")
        if namespace is not None and body_namespace not in (None, namespace):
            raise api_error(
                400,
                "BadRequest",
                "the namespace of the provided object does not match the namespace sent on the request",
            )
        namespace = namespace or body_namespace
        # An undeclared resource (known to kmock only from objects or reactions) is scoped as requested.
        namespaced = info.namespaced if info.namespaced is not None else namespace is not None
        if namespaced and not namespace:
            raise api_error(400, "BadRequest", "a namespace is required for a namespaced resource")
        if not namespaced:
            namespace = None
        elif namespace is not None and self.read_object(NAMESPACES, None, namespace) is None:
            if via_api:
                raise api_error(
                    404, "NotFound", f'namespaces "{namespace}" not found', name=namespace, kind="namespaces"
                )
            self.create_object(NAMESPACES, None, {"metadata": {"name": namespace}}, via_api=False)

        name = meta.get("name")
        if not name and meta.get("generateName"):
            # The apiserver appends 5 random characters from this alphabet.
            alphabet = "bcdfghjklmnpqrstvwxz2456789"
            while not name or self.read_object(resource, namespace, name) is not None:
                name = meta["generateName"] + "".join(random.choices(alphabet, k=5))
        if not name:
            raise api_error(422, "Invalid", "metadata.name or metadata.generateName is required")
        if self.read_object(resource, namespace, name) is not None:
            raise api_error(
                409, "AlreadyExists", f'{self._qualified(resource)} "{name}" already exists', name=name
            )

        self._revision += 1
        meta.update(
            name=name,
            uid=str(uuid.uuid4()),
            resourceVersion=str(self._revision),
            creationTimestamp=_now(),
            generation=1,
        )
        meta.pop("deletionTimestamp", None)
        if namespace is not None:
            meta["namespace"] = namespace
        obj.setdefault(
            "apiVersion", f"{resource.group}/{resource.version}" if resource.group else resource.version
        )
        if info.kind:
            obj.setdefault("kind", info.kind)
        if via_api and "status" in info.subresources:
            obj.pop("status", None)

        key = (resource, namespace, name)
        if key in self._objects:
            self._objects[key].create(obj)  # a new life after a deletion: the history continues
        else:
            self._objects[key] = obj
        self._commit("ADDED", resource, namespace, name, obj)
        return copy.deepcopy(obj)

    def patch_object(
        self,
        resource: kmock.resource,
        namespace: str | None,
        name: str,
        patch: Any,
        *,
        content_type: str = MERGE_PATCH,
        subresource: str | None = None,
    ) -> JSON:
        """PATCH semantics: the status subresource, optimistic concurrency, no-op detection, generation."""
        info = self.resource_info(resource)
        old = self._existing(resource, namespace, name)
        if subresource not in (None, *info.subresources):
            raise api_error(
                404, "NotFound", f"the server could not find the requested resource ({subresource})"
            )

        patched: Any
        match content_type:
            case "application/merge-patch+json":
                if not isinstance(patch, Mapping):
                    raise api_error(400, "BadRequest", "a merge patch must be a JSON object")
                patched = _merge_patch(copy.deepcopy(old), patch)
            case "application/json-patch+json":
                try:
                    patched = jsonpatch.apply_patch(old, patch)
                except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, TypeError) as e:
                    raise api_error(422, "Invalid", f"the JSON patch cannot be applied: {e}") from e
            case "application/strategic-merge-patch+json" if resource.group == "":
                # Built-ins only; approximated as a merge patch (no list-merge keys here).
                patched = _merge_patch(copy.deepcopy(old), patch)
            case _:
                raise api_error(
                    415,
                    "UnsupportedMediaType",
                    f"the body of the request was in an unknown format: {content_type}",
                )

        if not isinstance(patched, dict) or not isinstance(patched.get("metadata", {}), dict):
            raise api_error(422, "Invalid", "the patched object is not an object with metadata")

        # Optimistic concurrency: a resourceVersion in the patched result must be the current one.
        wanted = patched.get("metadata", {}).get("resourceVersion")
        if wanted is not None and wanted != old["metadata"]["resourceVersion"]:
            raise api_error(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on {self._qualified(resource)} "{name}": '
                "the object has been modified; please apply your changes to the latest version and try again",
                name=name,
            )

        new: JSON
        if subresource == "status":
            new = copy.deepcopy(old)  # /status changes only .status, whatever else the patch says
            if patched.get("status") is None:
                new.pop("status", None)
            else:
                new["status"] = patched["status"]
        else:
            new = patched
            if "status" in info.subresources:  # the main resource cannot change .status
                if "status" in old:
                    new["status"] = copy.deepcopy(old["status"])
                else:
                    new.pop("status", None)
        for field in _SERVER_OWNED_METADATA:
            if field in old["metadata"]:
                new.setdefault("metadata", {})[field] = old["metadata"][field]
            else:
                new.get("metadata", {}).pop(field, None)
        new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]

        if new == old:
            return copy.deepcopy(old)  # a no-op: the apiserver neither bumps resourceVersion nor notifies
        if self._spec_of(new, info) != self._spec_of(old, info):
            new["metadata"]["generation"] = old["metadata"].get("generation", 0) + 1
        if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers"):
            # The last finalizer is gone: the apiserver deletes instead of writing (watchers see only
            # DELETED, of the last stored state) and answers with the patched object.
            final = self._remove(resource, namespace, name)
            new["metadata"]["resourceVersion"] = final["metadata"]["resourceVersion"]
            return copy.deepcopy(new)
        self._revision += 1
        new["metadata"]["resourceVersion"] = str(self._revision)
        self._objects[resource, namespace, name].history.append(new)
        self._commit("MODIFIED", resource, namespace, name, new)
        return copy.deepcopy(new)

    def delete_object(self, resource: kmock.resource, namespace: str | None, name: str) -> JSON:
        """DELETE semantics: with finalizers, only mark (deletionTimestamp); otherwise remove."""
        self.resource_info(resource)
        old = self._existing(resource, namespace, name)
        if old["metadata"].get("deletionTimestamp"):
            return copy.deepcopy(old)
        if not old["metadata"].get("finalizers"):
            return self._remove(resource, namespace, name)
        new = copy.deepcopy(old)
        self._revision += 1
        new["metadata"].update(
            deletionTimestamp=_now(),
            deletionGracePeriodSeconds=0,
            generation=old["metadata"].get("generation", 0) + 1,
            resourceVersion=str(self._revision),
        )
        self._objects[resource, namespace, name].history.append(new)
        self._commit("MODIFIED", resource, namespace, name, new)
        return copy.deepcopy(new)

    def _remove(self, resource: kmock.resource, namespace: str | None, name: str) -> JSON:
        final = copy.deepcopy(self._existing(resource, namespace, name))
        self._revision += 1
        final["metadata"]["resourceVersion"] = str(self._revision)
        self._objects[resource, namespace, name].history.append(final)
        self._objects[resource, namespace, name].delete()
        self._commit("DELETED", resource, namespace, name, final)
        return copy.deepcopy(final)

    def _existing(self, resource: kmock.resource, namespace: str | None, name: str) -> JSON:
        obj = self.read_object(resource, namespace, name)
        if obj is None:
            raise api_error(
                404,
                "NotFound",
                f'{self._qualified(resource)} "{name}" not found',
                name=name,
                kind=resource.plural,
            )
        return obj

    def _commit(
        self, type_: str, resource: kmock.resource, namespace: str | None, name: str, obj: JSON
    ) -> None:
        assert obj["metadata"]["resourceVersion"] == str(self._revision)
        self._journal.append(Change(self._revision, type_, resource, namespace, name, copy.deepcopy(obj)))
        pulse, self._pulse = self._pulse, asyncio.Event()
        pulse.set()

    @staticmethod
    def _spec_of(obj: Mapping[str, Any], info: kmock.ResourceInfo) -> JSON:
        """What bumps metadata.generation: everything but metadata (and status, if it is a subresource)."""
        ignored = {"metadata", "status"} if "status" in info.subresources else {"metadata"}
        return {key: value for key, value in obj.items() if key not in ignored}

    @staticmethod
    def _qualified(resource: kmock.resource) -> str:
        return f"{resource.plural}.{resource.group}" if resource.group else str(resource.plural)

    # ------------------------------------------------------------------ HTTP (kmock fallback handlers)

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        match = _NAMESPACES_PATH.fullmatch(raw_request.path)
        if match is None:
            return await super().__call__(raw_request)

        # kmock 0.8 crashes (500, ValueError) parsing /api/v1/namespaces[/{name}]: it takes "namespaces" for
        # the prefix of a namespaced URL. Parse these few URLs here, then serve them as kmock would.
        body = await raw_request.read()
        try:
            data = json.loads(body) if body else None
        except ValueError:
            data = None
        method = kmock.method(raw_request.method)
        name = match["name"]
        action: kmock.action | None
        if method == kmock.method.GET:
            watch = raw_request.query.get("watch") == "true"
            action = kmock.action.WATCH if watch else kmock.action.FETCH if name else kmock.action.LIST
        else:
            verbs = (
                {kmock.method.POST: kmock.action.CREATE}
                if name is None
                else {
                    kmock.method.PATCH: kmock.action.UPDATE,
                    kmock.method.DELETE: kmock.action.DELETE,
                }
            )
            action = verbs.get(method)
        request = kmock.Request(
            id=len(self._requests),
            raw_request=raw_request,
            method=method,
            url=raw_request.url,
            params=dict(raw_request.query),
            headers=dict(raw_request.headers),
            cookies=dict(raw_request.cookies),
            body=body,
            text=body.decode("utf-8", errors="replace"),
            data=data,
            action=action,
            resource=NAMESPACES,
            name=name,
            subresource=match["subresource"],
        )
        self._requests.append(request)

        # The rest is RawHandler.__call__'s error handling: record the error, answer with a Status.
        raw_response: aiohttp.web.StreamResponse | None = None
        try:
            try:
                return await self._handle(request)
            except StreamingError as e:
                raw_response = e.args[0]
                raise e.__cause__ or e from None
        except Exception as e:
            self._errors[-1].append(e)
            if raw_response is None or not raw_response.prepared:
                return await self._render_error(e)
            await self._stream_error(e, raw_response)
            await raw_response.write_eof()
            return raw_response

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        # Skip KubernetesEmulator._handle: it changes objects before user reactions can intercept the
        # request. Our fallbacks below do it instead, only when no reaction answered first.
        response = await super(kmock.KubernetesEmulator, self)._handle(request)
        if not response.prepared:  # i.e. not a watch stream
            response.force_close()  # no idle keep-alive connections: see run_operator()
        return response

    async def _render_error(self, exc: Exception) -> aiohttp.web.StreamResponse:
        response = await super()._render_error(exc)
        response.force_close()
        return response

    @staticmethod
    def _reject_selectors(request: kmock.Request) -> None:
        for param in ("labelSelector", "fieldSelector"):
            if request.params.get(param):
                raise api_error(400, "BadRequest", f"kube harness: {param} is not emulated")

    async def _serve_create(self, request: kmock.Request) -> kmock.Payload:
        assert request.resource is not None
        obj = self.create_object(request.resource, request.namespace, request.data)
        return Response(status=201, payload=obj)

    async def _serve_update(self, request: kmock.Request) -> kmock.Payload:
        assert request.resource is not None and request.name is not None
        content_type = request.headers.get("Content-Type", "").split(";")[0].strip()
        return self.patch_object(
            request.resource,
            request.namespace,
            request.name,
            request.data,
            content_type=content_type,
            subresource=request.subresource,
        )

    async def _serve_delete(self, request: kmock.Request) -> kmock.Payload:
        assert request.resource is not None and request.name is not None
        return self.delete_object(request.resource, request.namespace, request.name)

    async def _serve_fetch(self, request: kmock.Request) -> kmock.Payload:
        assert request.resource is not None and request.name is not None
        info = self.resource_info(request.resource)
        if request.subresource not in (None, *info.subresources):
            raise api_error(
                404, "NotFound", f"the server could not find the requested resource ({request.subresource})"
            )
        return copy.deepcopy(self._existing(request.resource, request.namespace, request.name))

    async def _serve_list(self, request: kmock.Request) -> kmock.Payload:
        assert request.resource is not None
        info = self.resource_info(request.resource)
        self._reject_selectors(request)
        items = [
            copy.deepcopy(obj.raw)
            for (resource, namespace, _), obj in self._objects.items()
            if resource == request.resource
            and not obj.deleted
            and (request.namespace is None or namespace == request.namespace)
        ]
        return {
            "apiVersion": f"{request.resource.group}/{request.resource.version}".lstrip("/"),
            "kind": f"{info.kind or 'Object'}List",
            "metadata": {"resourceVersion": str(self._revision)},
            "items": items,
        }

    async def _serve_watch(self, request: kmock.Request) -> AsyncIterator[kmock.Payload]:
        assert request.resource is not None
        resource = request.resource
        info = self.resource_info(resource)
        self._reject_selectors(request)
        params = request.params
        loop = asyncio.get_running_loop()
        timeout = params.get("timeoutSeconds")
        deadline = loop.time() + float(timeout) if timeout else None
        since = params.get("resourceVersion") or "0"
        initial = params.get("sendInitialEvents") == "true"
        if not since.isdigit():
            raise api_error(400, "BadRequest", f"invalid resourceVersion: {since!r}")

        def matches(namespace: str | None, name: str) -> bool:
            return (request.namespace is None or namespace == request.namespace) and (
                request.name is None or name == request.name
            )

        self._watchers[resource] = self._watchers.get(resource, 0) + 1
        try:
            # Send the headers now: a client waits for them before it reads any event.
            yield b""

            # No resourceVersion (or "0"): the current state as ADDED first, as the apiserver does.
            start = int(since)
            if start == 0 or initial:
                start = self._revision
                snapshot = [
                    copy.deepcopy(obj.raw)
                    for (res, namespace, name), obj in self._objects.items()
                    if res == resource and not obj.deleted and matches(namespace, name)
                ]
                for obj in snapshot:
                    yield {"type": "ADDED", "object": obj}
                if initial:
                    yield self._bookmark(resource, info, start, {"k8s.io/initial-events-end": "true"})

            # Then everything after `start` from the journal, and live as it comes (no gap, no replay).
            cursor = bisect.bisect_right(self._journal, start, key=lambda change: change.revision)
            while True:
                while cursor < len(self._journal):
                    change = self._journal[cursor]
                    cursor += 1
                    if change.resource == resource and matches(change.namespace, change.name):
                        yield {"type": change.type, "object": copy.deepcopy(change.object)}
                # No await between the last length check and taking the pulse: no change slips through.
                pulse = self._pulse
                remaining = None if deadline is None else deadline - loop.time()
                if remaining is not None and remaining <= 0:
                    break
                try:
                    await asyncio.wait_for(pulse.wait(), remaining)
                except TimeoutError:
                    break
            # A server-side timeout ends the stream cleanly; the client resumes from the last version.
            if params.get("allowWatchBookmarks") == "true":
                yield self._bookmark(resource, info, self._revision, {})
        finally:
            self._watchers[resource] -= 1

    @staticmethod
    def _bookmark(
        resource: kmock.resource, info: kmock.ResourceInfo, revision: int, annotations: JSON
    ) -> JSON:
        return {
            "type": "BOOKMARK",
            "object": {
                "apiVersion": f"{resource.group}/{resource.version}".lstrip("/"),
                "kind": info.kind,
                "metadata": {"resourceVersion": str(revision), "annotations": annotations},
            },
        }


# ---------------------------------------------------------------------------------------------- the harness


@dataclasses.dataclass
class KubeAPI:
    """What a test gets from ``kube_api()``: the server's URL, clients for it, and its state.

    The object helpers (``create``/``get``/``patch``/``delete``/...) act on the emulator directly, with
    the same semantics as the HTTP API (resourceVersion, generation, watch events), but without HTTP: so
    ``requests`` holds only what the code under test sent.
    """

    emulator: KubeEmulator
    url: str
    _api_clients: list[kubernetes.client.ApiClient] = dataclasses.field(default_factory=list)

    # -------------------------------------------------------------- clients

    def configuration(self) -> kubernetes.client.Configuration:
        """A fresh official-client configuration for this server (plain HTTP, no credentials)."""
        return kubernetes.client.Configuration(host=self.url)

    def api_client(self) -> kubernetes.client.ApiClient:
        """An official ``ApiClient`` for this server; closed when ``kube_api()`` exits."""
        client = kubernetes.client.ApiClient(self.configuration())
        self._api_clients.append(client)
        return client

    def connection_info(self) -> kopf.ConnectionInfo:
        """What a ``@kopf.on.login`` handler returns to point kopf at this server."""
        return kopf.ConnectionInfo(server=self.url)

    # -------------------------------------------------------------- objects

    def create(self, obj: Mapping[str, Any], *, resource: kmock.resource | None = None) -> JSON:
        """Store a new object (a ReplicationGroup unless ``resource``): ADDED for watchers; returns it.

        Unlike a POST, ``status`` is kept and a missing namespace is created, to make seeding short.
        """
        namespace = obj.get("metadata", {}).get("namespace")
        return self.emulator.create_object(resource or RG, namespace, obj, via_api=False)

    def get(self, namespace: str | None, name: str, *, resource: kmock.resource = RG) -> JSON | None:
        """A copy of the current object, or None if there is none."""
        obj = self.emulator.read_object(resource, namespace, name)
        return None if obj is None else copy.deepcopy(obj)

    def patch(
        self,
        namespace: str | None,
        name: str,
        patch: Mapping[str, Any],
        *,
        resource: kmock.resource = RG,
        subresource: str | None = None,
    ) -> JSON:
        """Merge-patch an object as a client would (``subresource="status"`` for ``/status``)."""
        return self.emulator.patch_object(resource, namespace, name, patch, subresource=subresource)

    def delete(self, namespace: str | None, name: str, *, resource: kmock.resource = RG) -> JSON:
        """Delete an object as a client would (only marked for deletion while it has finalizers)."""
        return self.emulator.delete_object(resource, namespace, name)

    def create_secret(self, namespace: str, name: str, data: Mapping[str, str | bytes]) -> JSON:
        """A Secret with ``data`` base64-encoded, as the apiserver stores it."""
        encoded = {
            key: base64.b64encode(value if isinstance(value, bytes) else value.encode()).decode()
            for key, value in data.items()
        }
        body = {"metadata": {"name": name, "namespace": namespace}, "type": "Opaque", "data": encoded}
        return self.create(body, resource=SECRETS)

    def versions(
        self, namespace: str | None, name: str, *, resource: kmock.resource = RG
    ) -> list[JSON | None]:
        """Every stored state of an object, oldest first; None marks a deletion."""
        key = (resource, namespace, name)
        if key not in self.emulator.objects:
            return []
        return [None if v is None else copy.deepcopy(v.raw) for v in self.emulator.objects[key].history]

    def events(self, namespace: str | None = None, *, involving: str | None = None) -> list[JSON]:
        """core/v1 Events that exist now, oldest first: in ``namespace`` and about ``involving`` if given."""
        return [
            copy.deepcopy(obj.raw)
            for (resource, ns, _), obj in self.emulator.objects.items()
            if resource == EVENTS
            and not obj.deleted
            and (namespace is None or ns == namespace)
            and (involving is None or obj.raw.get("involvedObject", {}).get("name") == involving)
        ]

    # -------------------------------------------------------------- requests

    @property
    def requests(self) -> list[kmock.Request]:
        """Every HTTP request the server received, in order."""
        return list(self.emulator)

    def requests_to(
        self,
        method: str | None = None,
        *,
        resource: kmock.resource | None = RG,
        namespace: str | None = None,
        name: str | None = None,
        subresource: str | None = None,
        watch: bool | None = None,
    ) -> list[kmock.Request]:
        """The requests matching all the given criteria (``None`` matches anything).

        E.g. ``requests_to("PATCH", subresource="status")`` — the status writes of the code under test.
        """
        return [
            request
            for request in self.emulator
            if (method is None or request.method == method.upper())
            and (resource is None or request.resource == resource)
            and (namespace is None or request.namespace == namespace)
            and (name is None or request.name == name)
            and (subresource is None or request.subresource == subresource)
            and (watch is None or (request.action == kmock.action.WATCH) == watch)
        ]

    @property
    def errors(self) -> list[Exception]:
        """What the server answered with errors (4xx are API answers, anything else is a harness bug)."""
        return list(self.emulator.errors)


@contextlib.asynccontextmanager
async def kube_api(
    *,
    namespaces: Iterable[str] = ("default",),
    resources: Mapping[kmock.resource, kmock.ResourceInfo] = DEFAULT_RESOURCES,
) -> AsyncIterator[KubeAPI]:
    """Serve a fresh emulated Kubernetes API on a free local port for the duration of the block.

    On exit, fails if the server itself crashed on a request (a bug in the harness or kmock), as opposed
    to answering with an API error such as 404 or 409, which the code under test is expected to handle.
    """
    emulator = KubeEmulator()
    for resource, info in resources.items():
        emulator.resources[resource] = copy.deepcopy(info)
    async with emulator, kmock.Server(emulator) as server:
        kube = KubeAPI(emulator=emulator, url=str(server.url).rstrip("/"))
        for namespace in namespaces:
            emulator.create_object(NAMESPACES, None, {"metadata": {"name": namespace}}, via_api=False)
        try:
            yield kube
        finally:
            for client in kube._api_clients:
                client.close()  # type: ignore[no-untyped-call]
            crashes = [e for e in emulator.errors if not isinstance(e, kmock.KubernetesError)]
        if crashes:
            raise ExceptionGroup("the emulated API server crashed on some requests", crashes)


async def wait_for(
    predicate: Callable[[], T | Awaitable[T]],
    timeout: float = 2.0,  # noqa: ASYNC109  -- a polling bound, not a cancellation scope
    *,
    interval: float = 0.01,
    message: str | None = None,
) -> T:
    """Poll ``predicate`` (sync or async) until it returns a truthy value, and return that value.

    Raises TimeoutError after ``timeout`` seconds, showing the last value seen: tests waiting on
    background work (kopf, watches) must be bounded, and a failure must say what was there instead.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = predicate()
        value: T = await result if inspect.isawaitable(result) else result
        if value:
            return value
        if loop.time() >= deadline:
            raise TimeoutError(f"{message or 'condition not met'} within {timeout}s; last value: {value!r}")
        await asyncio.sleep(interval)


# ---------------------------------------------------------------------------------------------- kopf


def operator_settings() -> kopf.OperatorSettings:
    """kopf settings for an in-process operator under test (our production choices + test safety).

    The operator's own ``@kopf.on.startup`` may change them further; these are what it starts with.
    """
    settings = kopf.OperatorSettings()
    # As in production: event handlers only; kopf's bookkeeping (if any) in azswitch.io/ annotations.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="azswitch.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="azswitch.io", key="last-handled-configuration"
    )
    settings.posting.enabled = False  # we post our own Events; kopf's would be noise in assertions
    settings.peering.standalone = True  # no KopfPeering resources (the emulator has none)
    # Test safety: a cancelled (not stopped) kopf arms a SIGKILL of the thread — pytest's — in 10 min.
    settings.process.ultimate_exiting_timeout = None
    # A wedged request fails the test within its time budget instead of hanging it.
    settings.networking.request_timeout = 5.0
    settings.networking.connect_timeout = 1.0
    return settings


@dataclasses.dataclass(frozen=True)
class OperatorRun:
    """A running in-process kopf operator (what ``run_operator()`` yields)."""

    task: asyncio.Task[None]
    settings: kopf.OperatorSettings
    stop_flag: asyncio.Event


@contextlib.asynccontextmanager
async def run_operator(
    registry: kopf.OperatorRegistry,
    kube: KubeAPI,
    *,
    settings: kopf.OperatorSettings | None = None,
    clusterwide: bool = False,
    namespaces: Iterable[str] = (),
    watched: kmock.resource | None = RG,
    startup_timeout: float = 3.0,
    stop_timeout: float = 3.0,
) -> AsyncIterator[OperatorRun]:
    """Run kopf with ``registry`` in this event loop for the duration of the block.

    ``registry`` must log in to ``kube`` itself: a ``@kopf.on.login`` handler returning
    ``kube.connection_info()`` (or the operator's own, configured with ``kube.url``).

    Entering returns once kopf's startup handlers finished and kopf watches ``watched`` (seen on the
    server: one stream cluster-wide, one per namespace otherwise), so objects created after that are
    seen as ADDED and objects created before it as listed (``type=None``). Exiting stops kopf with its
    stop flag — the graceful path — and re-raises what kopf failed with.

    Beware, kopf's shutdown treats every task created in the loop after it started as its own: it
    waits up to 5 s for them and then cancels them. The emulator closes each connection after a
    response for that reason; any other server or task a test starts after kopf must be finished (or
    its clients closed) before this block exits, or the exit takes 5 s more.
    """
    namespace_list = list(namespaces)
    if clusterwide == bool(namespace_list):
        raise ValueError("pass either clusterwide=True or namespaces=[...]")
    settings = settings if settings is not None else operator_settings()
    stop_flag = asyncio.Event()
    ready_flag = asyncio.Event()
    task = asyncio.create_task(
        kopf.operator(
            registry=registry,
            settings=settings,
            clusterwide=clusterwide,
            namespaces=namespace_list,
            stop_flag=stop_flag,
            ready_flag=ready_flag,
            liveness_endpoint=None,
        ),
        name="kopf operator under test",
    )
    loop = asyncio.get_running_loop()
    try:
        streams = 1 if clusterwide else len(namespace_list)
        await wait_for(
            lambda: (
                task.done()
                or (ready_flag.is_set() and (watched is None or kube.emulator.watchers(watched) >= streams))
            ),
            startup_timeout,
            message=f"kopf did not start watching {watched} (no login handler? wrong server? see the log)",
        )
        if task.done():
            await task  # re-raise why it exited
            raise RuntimeError("kopf exited during its startup")
        yield OperatorRun(task=task, settings=settings, stop_flag=stop_flag)
    finally:
        stop_flag.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), stop_timeout)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            raise
        finally:
            # kopf took over SIGINT/SIGTERM of this loop and never gives them back: let Ctrl+C reach pytest.
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)

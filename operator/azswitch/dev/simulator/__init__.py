"""A fake of the Huawei Cloud EVS replication-consistency-group API, the SDRS protection-group API (and just
enough IAM) for tests and demos.

Why it exists: the operator must be exercised against something that behaves like the cloud — asynchronous
status machines, AK/SK signatures, tokens that expire, throttling, lost answers — without a cloud account.
It follows ``docs/cloud-api.md`` (not the project's client: it imports nothing from ``azswitch.cloud``, only
the pure ``azswitch.signing`` helper, so a misreading of the API cannot hide on both sides).

Use it in-process (``httpx.AsyncClient(transport=SimulatorTransport(Simulator(seed)))``) or over real HTTP
(``SimulatorServer`` / ``serve`` / ``run_forever`` behind ``azswitch simulate``); both call the same
``Simulator.handle``. Control it from Python (``Simulator`` methods) or over HTTP under ``/_sim/`` (never
under the cloud paths, never authenticated, never in the request log):

* ``GET /_sim`` — ``describe()``: projects, access keys, users, groups, timings, faults, outages.
* ``POST /_sim/reset`` — ``reset(seed=None)``: body a seed document, or empty for the initial seed.
* ``POST /_sim/seed`` — ``add_seed(seed)``: add groups, pairs, SDRS groups, credentials, users (and timings).
* ``GET /_sim/groups`` (a JSON list, EVS groups then SDRS groups), ``GET /_sim/groups/{id}`` — ``groups()``,
  ``group(id)``: internal state incl. ``service`` (``EVS``/``SDRS``), AZs, primary, in-flight operation and
  its pending phases. An SDRS view also has ``priorityStation``, ``replicationStatus``, ``healthStatus``,
  ``protectedStatus``, ``postUpgrade`` and ``operation: {action, jobID, jobType, phase, …}``.
* ``PATCH /_sim/groups/{id}`` — ``patch_group(id, **fields)``: force ``status``, ``replicationStatus``,
  ``faultLevel``, ``failureDetail``, ``name``, ``description``; for an SDRS group ``status``,
  ``priorityStation``, ``replicationStatus``, ``healthStatus``, ``name``, ``description``. Either cancels
  any operation (an SDRS job then ends ``FAIL``, ``fail_reason`` "cancelled by the simulator's control API").
* ``POST /_sim/groups/{id}/primary`` — ``set_primary(id, az)``: ``{"primaryAZ": "az2.dc2"}``, an instant
  out-of-band switchover for drift tests (SDRS: ``priority_station`` becomes the station of that AZ).
* ``POST /_sim/groups/{id}/fail-next`` — ``fail_next(id, action, detail)``: ``{"action": "reverse"|"failover"|
  "reprotect"|"sync", "failureDetail": "37000212"}``; for an SDRS group ``fail_next(id, action,
  error_code=…, fail_reason=…)``: ``{"action": "reverse"|"failover"|"reprotect"|"start"|"stop", "errorCode":
  "SDRS.1029", "failReason": "…"}`` (both optional: the action's code and a readable reason).
* ``GET /_sim/jobs`` — ``jobs()``: every SDRS job, oldest first (``id, type, action, group, projectID,
  status, errorCode, failReason``).
* ``GET|POST|DELETE /_sim/faults`` — ``set_faults(spec)``, ``clear_faults()``: see ``faults.FaultSpec``.
* ``POST /_sim/az-outage`` — ``az_outage(az, level)``: ``{"az": "az1.dc1", "faultLevel": "2"|"5"}``;
  ``DELETE /_sim/az-outage/{az}`` — ``az_recover(az)``.
* ``GET|DELETE /_sim/requests`` — ``requests()`` (a JSON list), ``clear_requests()``;
  ``GET /_sim/requests/counts`` — ``request_counts()`` (a JSON object; also ``count(method, template,
  action=None)``); ``GET /_sim/requests/kinds`` — ``kind_counts()`` (counts by ``kind``). The log keeps the
  last 10 000 records; the counts are exact until cleared.
* ``GET|POST /_sim/clock`` — ``advance(seconds)``: ``{"advanceSeconds": 30}`` fast-forwards simulated time.
* ``DELETE /_sim/tokens`` — ``revoke_tokens()``: revoke every IAM token.

Request-log records: ``seq, time`` (steady clock), ``wallTime, method, path, query`` (as on the wire, percent-
encoded), ``template, action`` (the action
key of ``POST …/action``, else null), ``status`` (null when dropped before handling), ``project, group, auth``
(``token``/``aksk``), ``requestId, dropped, key, kind``. ``kind`` is ``LIST`` for every page of a listing
(groups, pairs, ``cloudvolumes/detail``, ``volumes/detail``, SDRS groups), ``GET`` for one object, ``ACTION``,
``WRITE`` (create, update, delete), ``IAM``, or ``UNKNOWN`` (no such route). Count keys use ``{project_id}``
and ``{id}`` placeholders, e.g. ``POST /v2/{project_id}/os-vendor-replication-consistency-groups/{id}/action
os-reverse-replication-consistency-group``, ``POST /v1/{project_id}/server-groups/{id}/action
reverse-server-group`` or ``GET /v1/{project_id}/jobs/{job_id}`` (``group`` is null for jobs). The templates are
exported as ``SDRS_GROUPS``, ``SDRS_GROUP``, ``SDRS_GROUP_ACTION`` and ``SDRS_JOB``.

Choices made where the real API is undocumented (cloud-api.md §10 and its NOT DOCUMENTED marks). The operator
must not depend on any of them.

Responses
  * Every response (cloud, IAM, control, errors) carries ``X-Request-Id`` (32 hex digits). No
    ``X-Openstack-Request-Id``.
  * Errors of the ``os-vendor-replication*``, volume and cloudvolume APIs use the EVS-native shape
    ``{"error": {"code": "EVS.94xx", "message": "…"}}`` — not Cinder's ``itemNotFound``. The codes are
    invented: ``EVS.9400`` malformed request (bad JSON, unknown or missing field, bad query parameter,
    unknown action key, an action body with zero or two keys), ``EVS.9404`` unknown group / pair / volume
    (HTTP 404), ``EVS.9409`` action not allowed in the group's current state (HTTP **400**, as the EVS pages
    list 400 for precondition failures), ``EVS.9500`` an injected server error.
  * Gateway errors use ``{"error_code", "error_msg", "request_id"}``: ``APIGW.0101`` (404) unknown path or
    method; ``APIGW.0201`` (400) ``X-Project-Id`` differs from the project in the URL; ``APIGW.0301`` (401)
    every AK/SK failure (unknown AK, bad or missing signature, garbled ``Authorization``, ``x-sdk-date``
    unsigned, a signed header absent, ``X-Sdk-Date`` more than 15 minutes off the simulator's clock — message
    ``signature expired, …`` — or a wrong ``X-Security-Token``), no credentials at all (``x-auth-token not
    found``) and an unknown token (``decrypt token fail``). ``APIGW.0303`` is the gateway's code for *app*
    authentication, which IAM-authenticated cloud services do not use, so it never appears. ``APIGW.0307``
    (401, "The token must be updated.") for an expired or revoked token. ``APIGW.0302`` (403) for a project
    that does not exist or that the token is not scoped to. ``APIGW.0308`` (429) for injected throttling,
    always with ``Retry-After`` in whole seconds (rounded up).
  * An injected error answers ``{"error": {"code": "EVS.9500", …}}`` with the configured status
    (``SDRS.9500`` on the SDRS paths).
  * SDRS errors use ``{"error": {"code": "SDRS.xxxx", "message": "…"}}`` (cloud-api.md §6.1/6.2):
    ``SDRS.0201`` (400) malformed request (bad JSON, an unknown or bad query parameter, a bad action
    parameter), ``SDRS.0206`` (400) invalid action (unknown key, zero or two keys, not an object),
    ``SDRS.1013`` (HTTP **400**, as documented) unknown group or another project's, ``SDRS.1002`` (400) action
    not allowed in the current status, ``SDRS.0404`` (HTTP **404**, a simulator choice) unknown job.
  * ``Authorization`` (AK/SK) wins when a request carries both it and ``X-Auth-Token``. Unsigned extra headers
    (e.g. ``X-Project-Id`` added after signing) are accepted; exactly the ``SignedHeaders`` are verified.
  * Trailing slashes on paths are ignored; unknown query parameters are ignored; ``Content-Type`` is not
    checked (the body must still be JSON).

IAM (``POST /v3/auth/tokens``)
  * Password method only; the user is found by ``name`` + ``domain`` (name or id); scope ``project`` by id or
    name (unknown project: 400), ``domain`` (token unusable on project APIs: 403), or none. 201 with the token
    in ``X-Subject-Token`` and ``{"token": {methods, issued_at, expires_at (…Z), user, roles, project|domain,
    catalog}}``; ``?nocatalog=1`` drops the catalog. Bad user or password: 401. IAM errors use Keystone's
    ``{"error": {"code": <int>, "message", "title"}}`` (a numeric ``code`` on purpose).
  * Token lifetime: ``timings.tokenLifetimeSeconds`` (default 24 h); expiry uses the simulator's wall clock.
    ``DELETE /v3/auth/tokens`` with ``X-Subject-Token`` revokes one (204); revoked tokens answer APIGW.0307.
  * Projects are named in the seed; a project only referenced by a group is named after its ID.

Group status machine (durations from the seed's ``timings``; time only moves with the injected clock)
  * Create: 202 echoing the short object with ``status: creating`` and ``updated_at: null``, ``available``
    after ``createSeconds``. ``replication_status`` is the pairs' common status (else ``inactive``). Every
    pair must exist in the project, be in no group, span the same two AZs, and have its production disk in
    ``priority_station``.
  * Update: 202, ``updating`` for ``updateSeconds``, then ``available``. Name/description changes need a
    non-transitional status; adding/removing pairs needs ``available`` and ``replication_status:
    active-stopped`` (stop first, as documented). Unknown fields are 400.
  * Delete: 202, ``deleting`` for ``deleteSeconds``, then gone (404). Needs no pairs and status
    ``available``/``error``.
  * Switchover (``os-reverse-…``): needs status ``available`` (or ``error_reversing``, a retry),
    ``replication_status: active`` and ``fault_level: "0"``. Then ``reversing`` for ``switchoverSeconds``;
    then ``available`` with ``priority_station`` flipped and ``replication_status: copying`` for
    ``copyingSeconds``; then ``active``. The three "done" conditions (available, active, new primary)
    therefore become true at two different instants. Failure (fail-next, or an AZ of the group down when
    the phase ends): ``error_reversing``, primary unchanged, ``failure_detail`` set (``37100043`` for an
    AZ outage).
  * Failover: needs status ``available``, ``error_reversing`` or ``error_failovering`` and ``fault_level`` ≠
    ``"5"``. ``failovering`` for ``failoverSeconds``, then ``failovered`` with the primary flipped and
    ``replication_status: active-stopped``. Failure: ``error_failovering``, primary unchanged.
  * Reprotect: needs ``failovered`` (or ``error`` after a failed reprotect, to allow a retry).
    ``replication_status`` turns ``copying`` at once (status stays ``failovered``); after ``reprotectSeconds``
    status ``available`` (still ``copying``), after ``copyingSeconds`` more ``active``. If either AZ is still
    down when ``reprotectSeconds`` end (or fail-next), it ends in status ``error``, ``replication_status:
    error``, ``failure_detail`` set.
  * Sync: needs ``available``; ``copying`` for ``syncSeconds``, then ``active`` (fail-next: ``error``).
    Stop: needs ``available``; ``active-stopped`` at once (cancels a pending copying → active step).
    Extend: needs ``available`` and ``replication_status`` ≠ ``error``; body ``{"replications": [{"id",
    "new_size"}]}``; sizes grow at once (200 = done, as documented).
  * Actions answer 200 with an empty body. The five parameterless actions accept ``null`` or ``{}``.
  * ``created_at``/``updated_at`` are UTC without a zone suffix, with microseconds; ``updated_at`` is null
    until the group first changes. ``fault_level`` is a string. ``failure_detail`` is ``""`` when unset.
  * Seeded statuses are static: a group seeded as ``reversing`` stays so until a control call changes it.

SDRS protection groups (``/v1/{project_id}/server-groups``, ``…/{id}``, ``…/{id}/action``,
``/v1/{project_id}/jobs/{job_id}``; seed key ``sdrsGroups``)
  * List: query ``limit`` (0 to 1000, default 1000), ``offset``, ``status`` (exact), ``name`` (case-insensitive
    substring), ``availability_zone`` (the current production AZ), ``query_type`` (``general``/empty: all;
    ``status_abnormal``: status ``error…`` or ``health_status`` abnormal; ``stop_protected``: status
    ``available``; ``period_no_dr_drill``: all, there are no drills). Any other parameter: SDRS.0201. Groups
    come in created (seed) order; ``count`` is the number matching before paging.
  * Actions answer 200 ``{"job_id": "<32 hex>"}`` and the group shows the in-progress status at once:
    ``reverse-server-group`` (needs ``protected`` or ``error-reversing``; ``priority_station`` equal to the
    current one is refused with SDRS.1002 "the group's production site is already …") → ``reversing`` for
    ``switchoverSeconds``, then ``protected`` with the new station and ``replication_status: active`` (no
    ``copying`` step); ``failover-server-group`` (``protected``, ``error-failing-over``, ``error-reversing``)
    → ``failing-over`` for ``failoverSeconds``, then ``failed-over``, station flipped, ``active-stopped``;
    ``start-server-group`` in ``failed-over``/``error-reprotecting`` re-protects (``reprotecting`` for
    ``reprotectSeconds``), in ``available``/``error-starting`` enables (``starting`` for ``startSeconds``),
    both then ``protected``, ``active``; ``stop-server-group`` (``protected``, ``error-stopping``) →
    ``stopping`` for ``stopSeconds``, then ``available``, ``active-stopped``. Parameterless actions accept
    ``{}`` or ``null``. Failures: ``error-reversing``, ``error-failing-over``, ``error-reprotecting``,
    ``error-starting``, ``error-stopping``, the station unchanged.
  * Jobs: ``INIT`` for the first 0.5 simulated seconds, then ``RUNNING``, then ``SUCCESS`` or ``FAIL`` at
    the instant the operation ends (``end_time`` null until then; ``error_code``/``fail_reason`` null
    unless FAIL). Codes: SDRS.1029 reverse, SDRS.1030 failover, SDRS.1032 reprotect, SDRS.1027 enable,
    SDRS.1028 disable. Jobs are kept until a reset.
  * ``protected_status`` is ``started`` in ``protected``, ``reversing``, ``failing-over``, ``stopping`` and
    their ``error-`` statuses, else ``stopped``. ``progress`` is the operation's elapsed share (0 to 99) while
    one runs, else 100 when replication is ``active``/``active-stopped``, else 0. ``protected_instance_num``
    and ``replication_num`` are 1, ``disaster_recovery_drill_num`` 0; one VPC (source = target), ``test_vpc_id``
    ``""``; ``created_at``/``updated_at`` ``yyyy-MM-dd HH:mm:ss.SSS`` (UTC), ``updated_at`` never null;
    ``protection_type`` null (legacy) or ``replication-pair`` (post-upgrade groups, whose
    ``protected_status``, ``replication_status`` and ``health_status`` are always null on the wire).
  * AZ outages: ``health_status`` is ``abnormal`` while the current production AZ is down — and, like EVS's
    ``fault_level``, also after a failover away from an AZ that went down while it was production, until that
    AZ recovers (so ``normal`` after a failover means a re-protect can succeed). ``replication_status`` is
    ``inactive`` while either AZ is down (also over ``active-stopped``). Both show their own value again when
    the AZs recover (no resync step). A reverse, reprotect or enable that ends while either AZ is down fails
    (SDRS.1029 / SDRS.1032 / SDRS.1027), a failover that ends while the AZ it fails over *to* is down fails
    (SDRS.1030); a disable never fails on its own. Seeded in-progress statuses are static.

AZ outages (control API)
  * A group whose *primary* AZ goes down shows that outage's level as ``fault_level`` until the AZ recovers —
    also after a failover away from it, so ``fault_level`` ``"0"`` after a failover means the old AZ is
    back and a reprotect can succeed. Then it shows its own (seeded) level, normally ``"0"``.
  * When an AZ goes down, groups with their primary there get ``replication_status: error`` (level 2) or
    ``inactive`` (level 5); groups with their secondary there get ``inactive``; paused (``active-stopped``)
    groups keep their status. When it recovers, those groups resynchronise (``copying`` for
    ``copyingSeconds``, then ``active``) unless they failed over meanwhile (then they wait for a reprotect).
  * ``set_primary`` (out-of-band switchover) is instant, refused (409) while the group is in a transitional
    status, and cancels a pending copying → active step.

Replication pairs and volumes
  * Each seeded group gets ``pairs`` pairs (default 1), each with a production disk in the primary AZ and a
    DR disk in the other. ``volume_ids`` is a comma-separated string, production disk first *as created*
    (the order does not follow later switchovers); ``record_metadata`` is a JSON-encoded string; a grouped
    pair shows its group's live ``priority_station``, ``replication_status`` and ``fault_level``.
  * ``GET /v2/{project_id}/volumes/{id}`` and ``…/cloudvolumes/{id}`` answer the same ``{"volume": {…}}``.
  * ``GET /v2/{project_id}/os-vendor-replications`` lists the project's pairs (evs_04_2046): ``marker``,
    ``limit`` (1 to 1000, default 1000), ``offset``, ``sort_key``/``sort_dir`` (default ``created_at`` desc, ties
    by id), ``changes-since`` and the documented filters; a marker not on the listing is 400 EVS.9400.
  * Disk listings (docs/cloud-api-evs-listings.md): ``GET /v2/{project_id}/cloudvolumes/detail`` (evs_04_2006)
    honours ``ids`` (``['id1','id2']`` as documented; double quotes, no quotes or no brackets are accepted
    too; more than 60 IDs is 400 EVS.9400; unknown IDs are ignored; ``id`` is ignored when ``ids`` is given),
    ``id``, ``availability_zone``, ``name``, ``status``, ``marker``, ``limit`` (1 to 1000), ``offset``,
    ``sort_key`` (``id``, ``status``, ``size``, ``created_at``; default ``created_at`` desc) and answers
    ``{"volumes": [...], "count": <matches before paging>, "volumes_links": [...]}`` (links only when more
    follow). ``GET /v2/{project_id}/volumes/detail`` (evs_04_2069, which documents no ``ids``) takes the
    same parameters but **ignores** ``ids`` and ``id`` (unknown parameters are ignored) and sends no
    ``count``: the two readings a client must survive. Only the disks of pairs exist; every disk is
    ``in-use``.

Faults
  * One fault set at a time (``POST`` replaces). Order: latency, drop ``before``, throttle, rate limit,
    error, handling, drop ``after``. ``rateLimit: {perSecond, burst}`` is a token bucket per project, as
    the API gateway's "limit:N, time:1 second"; an empty bucket answers 429 with Retry-After ≥ 1 s.
    Counted faults fire on the next N *matching* requests (``count: null`` = until cleared);
    ``errorRate`` draws from an RNG seeded by ``rng_seed`` (or ``"seed"`` in the fault document).
  * A drop over aiohttp aborts the TCP connection without a response; through the httpx transport it raises
    ``httpx.RemoteProtocolError``. A drop ``after`` has already changed the cloud.
"""

from __future__ import annotations

from azswitch.dev.simulator.clock import ManualClock, SimClock
from azswitch.dev.simulator.core import (
    SDRS_GROUP,
    SDRS_GROUP_ACTION,
    SDRS_GROUPS,
    SDRS_JOB,
    ControlError,
    Simulator,
)
from azswitch.dev.simulator.faults import FaultSpec
from azswitch.dev.simulator.seed import DEMO_SEED, Seed, SeedError, load_seed, parse_seed
from azswitch.dev.simulator.server import SimulatorServer, make_app, run_forever, serve
from azswitch.dev.simulator.transport import SimulatorTransport
from azswitch.dev.simulator.wire import SimResponse

__all__ = [
    "DEMO_SEED",
    "SDRS_GROUP",
    "SDRS_GROUPS",
    "SDRS_GROUP_ACTION",
    "SDRS_JOB",
    "ControlError",
    "FaultSpec",
    "ManualClock",
    "Seed",
    "SeedError",
    "SimClock",
    "SimResponse",
    "Simulator",
    "SimulatorServer",
    "SimulatorTransport",
    "load_seed",
    "make_app",
    "parse_seed",
    "run_forever",
    "serve",
]

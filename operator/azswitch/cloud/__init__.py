"""The cloud layer's public surface: the backend-neutral interface, the backends and what they are built from.

Everything else in ``azswitch.cloud`` is an implementation detail; import from here.
"""

from azswitch.cloud.api import CloudAPI, CloudGroup, OperationHandle
from azswitch.cloud.auth import AkSkAuth, AkSkCredentials, TokenAuth
from azswitch.cloud.connections import CloudConnections, Timeouts
from azswitch.cloud.evs import EvsClient
from azswitch.cloud.evs_models import ConsistencyGroup, ReplicationPair, Volume
from azswitch.cloud.ratelimit import RateLimiter
from azswitch.cloud.retry import RetryPolicy
from azswitch.cloud.sdrs import SdrsClient
from azswitch.cloud.sdrs_models import Job, ProtectionGroup
from azswitch.cloud.transport import RequestHook

__all__ = [
    "AkSkAuth",
    "AkSkCredentials",
    "CloudAPI",
    "CloudConnections",
    "CloudGroup",
    "ConsistencyGroup",
    "EvsClient",
    "Job",
    "OperationHandle",
    "ProtectionGroup",
    "RateLimiter",
    "ReplicationPair",
    "RequestHook",
    "RetryPolicy",
    "SdrsClient",
    "Timeouts",
    "TokenAuth",
    "Volume",
]

"""A gRPC call's facts for the one admission path: the method is the target, the metadata holds the
credentials (IAP's assertion, or `authorization: Bearer <Google ID token>`); the verdict becomes a
CallAdmission with a code from the one gRPC table, and allowed calls get Ray's token in place of the
caller's credentials."""

from __future__ import annotations

import time
from collections.abc import Callable

import grpc

from proxy.admit import Admission, Facts
from proxy.auth.extract import credentials
from proxy.authz.routes.ray_client import METHOD
from proxy.model import Transport
from proxy.upstream.grpc import Metadata, upstream_metadata
from proxy.upstream.ray_token import RayToken

from . import STATUS, Admit, CallAdmission
from .credentials import SessionCredentials
from .sessions import client_id_of


def grpc_admit(
    admission: Admission,
    ray_token: RayToken,
    sessions: SessionCredentials,
    clock: Callable[[], float] = time.monotonic,
) -> Admit:
    async def admit(method: str, metadata: Metadata) -> CallAdmission:
        found = credentials(metadata)
        client_id = client_id_of(metadata)
        now = clock()
        known = sessions.identity(client_id, found, now)
        facts = Facts(transport=Transport.GRPC, method=METHOD, target=method, credentials=found)
        verdict = await admission.admit(facts, known)
        if verdict.allowed and known is None and verdict.identity is not None:
            sessions.remember(client_id, found, verdict.identity, now)
        principal = verdict.identity.email if verdict.identity is not None else ""
        verb = str(verdict.verb) if verdict.verb is not None else ""
        credential = str(verdict.credential) if verdict.credential is not None else ""
        if verdict.kind is not None:
            code = STATUS[verdict.kind]
            return CallAdmission(False, code, verdict.reason, principal, (), verb, credential)
        upstream = upstream_metadata(metadata, ray_token.value)
        return CallAdmission(True, grpc.StatusCode.OK, verdict.reason, principal, upstream, verb, credential)

    return admit

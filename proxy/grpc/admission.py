"""A gRPC call's facts for the one admission path: the method is the target, the metadata holds the
credentials (IAP's assertion, or `authorization: Bearer <Google ID token>`); the verdict becomes a
CallAdmission with a code from the one gRPC table, and allowed calls get Ray's token in place of the
caller's credentials."""

from __future__ import annotations

import grpc

from proxy.admit import Admission, Facts
from proxy.auth.extract import credentials
from proxy.authz.routes.ray_client import METHOD
from proxy.model import Transport
from proxy.upstream.grpc import Metadata, upstream_metadata
from proxy.upstream.ray_token import RayToken

from . import STATUS, Admit, CallAdmission


def grpc_admit(admission: Admission, ray_token: RayToken) -> Admit:
    async def admit(method: str, metadata: Metadata) -> CallAdmission:
        verdict = await admission.admit(
            Facts(transport=Transport.GRPC, method=METHOD, target=method, credentials=credentials(metadata))
        )
        principal = verdict.identity.email if verdict.identity is not None else ""
        verb = str(verdict.verb) if verdict.verb is not None else ""
        credential = str(verdict.credential) if verdict.credential is not None else ""
        if verdict.kind is not None:
            code = STATUS[verdict.kind]
            return CallAdmission(False, code, verdict.reason, principal, (), verb, credential)
        upstream = upstream_metadata(metadata, ray_token.value)
        return CallAdmission(True, grpc.StatusCode.OK, verdict.reason, principal, upstream, verb, credential)

    return admit

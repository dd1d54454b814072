"""The blocking half of the Kubernetes RBAC source: one SubjectAccessReview through the `kubernetes`
client library, and every way it can fail turned into a reason a person can act on. Called on a
worker thread only (`kubernetes_rbac.py`)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

Status = tuple[bool, str, str]  # allowed, the API server's reason, its evaluation error


class SarError(Exception):
    """The review could not be had; `reason` is safe to show."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SarClient:
    def __init__(self, configuration: Any) -> None:
        from kubernetes import client

        configuration.retries = 0  # one try: the next request asks again, the cache spares the rest
        self._api_client = client.ApiClient(configuration)
        self._api = client.AuthorizationV1Api(self._api_client)
        self.host = str(configuration.host)

    @classmethod
    def connect(cls, kubeconfig: Path | None, token: Path, ca: Path, environ: Mapping[str, str]) -> SarClient:
        """From a kubeconfig, or else the pod's ServiceAccount (in-cluster: token and CA files, and
        KUBERNETES_SERVICE_HOST/PORT), whose token is re-read as the kubelet rotates it."""
        from kubernetes import client, config
        from kubernetes.config.incluster_config import InClusterConfigLoader

        configuration = client.Configuration()
        if kubeconfig is not None:
            config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=str(kubeconfig), client_configuration=configuration, persist_config=False
            )
        else:
            loader = InClusterConfigLoader(  # type: ignore[no-untyped-call]
                token_filename=str(token), cert_filename=str(ca), environ=environ
            )
            loader.load_and_set(configuration)  # type: ignore[no-untyped-call]
        return cls(configuration)

    def review(self, user: str, groups: list[str], attributes: dict[str, str], timeout: float) -> Status:
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        body = client.V1SubjectAccessReview(
            api_version="authorization.k8s.io/v1",
            kind="SubjectAccessReview",
            spec=client.V1SubjectAccessReviewSpec(
                user=user,
                groups=groups or None,
                resource_attributes=client.V1ResourceAttributes(
                    group=attributes["group"],
                    resource=attributes["resource"],
                    subresource=attributes["subresource"],
                    name=attributes["name"],
                    namespace=attributes["namespace"],
                    verb=attributes["verb"],
                ),
            ),
        )
        try:
            answer = self._api.create_subject_access_review(body, _request_timeout=(timeout, timeout))
        except ApiException as exc:
            raise SarError(_api_reason(exc)) from None
        except Exception as exc:
            raise SarError(_transport_reason(exc, timeout)) from None
        status = answer.status
        if status is None:
            raise SarError("the API server answered the review without a status")
        return bool(status.allowed), str(status.reason or ""), str(status.evaluation_error or "")

    def close(self) -> None:
        self._api_client.close()  # type: ignore[no-untyped-call]


def _api_reason(exc: Any) -> str:
    status = int(exc.status or 0)
    if status == 0:
        return "the API server's TLS certificate is not trusted (or TLS failed)"
    if status == 401:
        return "the API server refused the proxy's credentials (401): is its token mounted and current?"
    if status == 403:
        return (
            "the API server refused the review (403): the proxy's ServiceAccount needs `create` on "
            "`subjectaccessreviews` (authorization.k8s.io)"
        )
    if status == 429:
        return "the API server is rate-limiting the proxy (429)"
    return f"the API server answered {status}"


def _transport_reason(exc: Exception, timeout: float) -> str:
    import urllib3.exceptions as u3

    cause: BaseException = exc
    if isinstance(exc, u3.MaxRetryError) and exc.reason is not None:
        cause = exc.reason
    if isinstance(cause, u3.NewConnectionError):  # a ConnectTimeoutError subclass, for history's sake
        return f"the API server is unreachable ({_short(cause)})"
    if isinstance(cause, u3.TimeoutError | TimeoutError):
        return f"the API server did not answer within {timeout:g} s"
    if isinstance(cause, u3.HTTPError | OSError):
        return f"the API server is unreachable ({type(cause).__name__})"
    return f"the review failed ({type(exc).__name__})"


def _short(exc: BaseException) -> str:
    """`connection refused`, not the whole chain of urllib3's wrapping."""
    text = str(exc)
    return text.rsplit("] ", 1)[-1][:80] if "] " in text else type(exc).__name__

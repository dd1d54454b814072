# ray-iap-proxy: the IAP-authenticating sidecar for the Ray head.
#   docker build -t ray-iap-proxy:0.1.0 .
#
# Stage "build" makes the wheel and installs it, with its dependencies only, into /venv.
# The runtime stage is distroless: Debian 12's python3.11 and nothing else (no shell, no
# package manager). Both stages have Debian 12's /usr/bin/python3.11, the interpreter the
# venv's python links to, so the venv copied from one runs in the other.
# Pin both images by digest when releasing (that needs registry access, which tests lack).
FROM debian:12.15-slim AS build

RUN apt-get update \
 && apt-get install -y --no-install-recommends python3-venv=3.11.2-1+b1 \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY pyproject.toml README.md ./
COPY proxy ./proxy

# The wheel is built in a throw-away venv; /venv receives the wheel and its dependencies only.
RUN /usr/bin/python3.11 -m venv /opt/wheelbuild \
 && /opt/wheelbuild/bin/pip wheel --no-cache-dir --no-deps --wheel-dir /dist . \
 && /usr/bin/python3.11 -m venv --without-pip /venv \
 && /opt/wheelbuild/bin/pip --python /venv/bin/python install --no-cache-dir --compile /dist/*.whl


FROM gcr.io/distroless/python3-debian12:nonroot

LABEL org.opencontainers.image.title="ray-iap-proxy" \
      org.opencontainers.image.description="IAP-authenticating reverse proxy sidecar for the Ray head on GKE" \
      org.opencontainers.image.licenses="Apache-2.0"

COPY --from=build /venv /venv

# Read-only root filesystem: nothing is written at run time (bytecode was compiled at build).
ENV PATH=/venv/bin:/usr/local/bin:/usr/bin:/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# distroless "nonroot" (65532:65532), numeric so runAsNonRoot can verify it.
USER 65532:65532

# 8265: HTTP (dashboard, Jobs API, WebSockets); 10001: Ray Client gRPC (reserved).
EXPOSE 8265 10001

ENTRYPOINT ["/venv/bin/ray-iap-proxy"]
CMD ["serve", "--config", "/etc/ray-iap-proxy/config.yaml"]

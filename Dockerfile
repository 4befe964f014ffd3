# syntax=docker/dockerfile:1
# The azswitch operator image: `docker build -t azswitch:latest .`
#
# Two stages so the runtime image carries no build tooling and no source tree: the first installs the
# package and its runtime dependencies (never the [test] extra) into a virtualenv, the second copies only
# that virtualenv onto the same slim base (same Python path, so the venv stays valid).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/azswitch
WORKDIR /src
# Metadata first, then the package: pyproject.toml names README.md as the readme, so the build needs it.
COPY pyproject.toml README.md ./
COPY operator/ operator/
# A regular (non-editable) install: the runtime stage does not have /src. pip compiles bytecode here, so the
# read-only root filesystem at run time costs nothing at start-up.
# The checks fail the build if the console script or a runtime dependency is missing (the CLI imports
# lazily, so its --help alone would not notice).
RUN /opt/azswitch/bin/pip install . \
 && /opt/azswitch/bin/azswitch --help >/dev/null \
 && /opt/azswitch/bin/python -c "import azswitch.handlers, azswitch.runtime, azswitch.metrics"

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="azswitch" \
      org.opencontainers.image.description="Kubernetes operator that keeps cloud replication consistency groups primary in the AZ Git says" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/azswitch/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
COPY --from=build /opt/azswitch /opt/azswitch
# A numeric non-root user (the "nonroot" uid of distroless images): Kubernetes can verify runAsNonRoot only
# for a numeric USER, and deploy/base/deployment.yaml runs as the same uid/gid. No home directory or shell
# login is needed; nothing writes outside /tmp (an emptyDir in the Deployment).
USER 65532:65532
# 8080: Prometheus /metrics (AZSWITCH_METRICS_PORT); 8081: kopf's /healthz (--liveness).
EXPOSE 8080 8081
ENTRYPOINT ["azswitch", "run"]
CMD ["--all-namespaces", "--liveness=http://0.0.0.0:8081/healthz"]

# syntax=docker/dockerfile:1
#
# syncd container image.
#
#   docker build -t syncd:0.1.0 --build-arg VERSION=0.1.0 \
#     --build-arg REVISION="$(git rev-parse HEAD)" --build-arg CREATED="$(date -u +%Y-%m-%dT%H:%M:%SZ)" .
#
# Two stages: the builder turns the source into wheels (syncd and every dependency); the
# runtime image installs those wheels and nothing else: no source tree, no compiler, no
# build tools, no HEALTHCHECK (Kubernetes probes /livez and /readyz; see helm/syncd).
# The process needs no shell: ENTRYPOINT and CMD are exec form.
# Pin the base image by digest in your build pipeline (--build-arg PYTHON_IMAGE=python:3.11-slim@sha256:...).

ARG PYTHON_IMAGE=python:3.11-slim

# ----------------------------------------------------------------------------- builder
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
# Only what the build needs (see .dockerignore): metadata first for layer caching.
COPY pyproject.toml README.md ./
COPY syncd ./syncd

# The syncd wheel and wheels of all its runtime dependencies, into /wheels.
RUN python -m pip wheel --wheel-dir /wheels .

# ----------------------------------------------------------------------------- runtime
FROM ${PYTHON_IMAGE} AS runtime

ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
ARG SOURCE=""

LABEL org.opencontainers.image.title="syncd" \
      org.opencontainers.image.description="Mints OAuth 2.0 client-credentials tokens before they expire and writes them into secret stores" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    SYNCD_CONFIG=/etc/syncd/syncd.toml

# Install from the builder's wheels only (--no-index: nothing fetched in this stage), then
# remove pip, setuptools and wheel, which syncd does not use at run time. The wheels are
# bind-mounted, so they never become a layer of this image.
# The user is numeric (10001) so Kubernetes can verify runAsNonRoot; the Helm chart runs
# the pod as the same uid/gid.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    python -m pip install --no-index --find-links=/wheels syncd \
 && python -m pip uninstall --yes pip setuptools wheel \
 && groupadd --system --gid 10001 syncd \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin syncd \
 && mkdir -p /etc/syncd /var/run/syncd \
 && chown 10001:10001 /var/run/syncd \
 && chmod 0700 /var/run/syncd

USER 10001:10001
WORKDIR /var/run/syncd

# /livez /readyz /metrics /status ([daemon].listen; bind 0.0.0.0 in a container).
EXPOSE 9440

ENTRYPOINT ["syncd"]
CMD ["run"]

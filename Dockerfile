# syntax=docker/dockerfile:1
#
# One image for every kubesoar role: `kubesoar operator`, `kubesoar router`,
# `kubesoar runtime` and `kubesoar fetch` (the runtime pods' init container).
#
#   docker build -t ghcr.io/kubesoar/kubesoar:0.1.0 \
#     --build-arg VERSION=0.1.0 --build-arg REVISION=$(git rev-parse HEAD) .
#
# CI builds and publishes it for amd64 and arm64 with provenance and an SBOM
# (.github/workflows/image.yaml). tests/packaging/test_image_root.py builds this
# file's root filesystem without an engine, with the RUN commands below.
#
# The builder stage turns the project and its dependencies into wheels and
# installs them into a virtual environment; the final stage copies only that
# environment, so no compiler, build tool or pip cache reaches the image.

# Pinned by digest (the multi-arch index), so every build starts from the same
# bytes; the tag says what it is. Refresh by hand, with the digest this prints:
#   docker buildx imagetools inspect python:3.11-slim-bookworm
ARG PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:2e32f7d302adc1c37428355c1e646897c0c53f4fd60b6a551245fb90ee129f91

FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

# Only what the wheel is built from (see .dockerignore): the build does not
# depend on tests, docs or the chart, so editing them does not bust the cache.
COPY pyproject.toml README.md /src/
COPY runtime/ /src/runtime/
COPY operator/ /src/operator/
COPY router/ /src/router/

# Every command runs from /, never from /src: `python -m ...` puts the working
# directory first on sys.path, where /src/operator would shadow the standard
# library's `operator` module. The environment gets no pip of its own: extend
# the image with the base image's pip, `pip --python /opt/kubesoar/bin/python`.
WORKDIR /
# One image for every entry point: the runtime, plus the operator and router extras.
RUN pip wheel --wheel-dir /wheels '/src[operator,router]' \
 && python -m venv --without-pip /opt/kubesoar \
 && pip --python /opt/kubesoar/bin/python install --no-index --find-links /wheels 'kubesoar[operator,router]'
# Bytecode is compiled at build time because runtime pods run with a read-only
# root filesystem (and PYTHONDONTWRITEBYTECODE=1). Hash-based .pyc files stay
# valid whatever timestamps the copy into the next stage gives the sources.
RUN python -m compileall -q -f --invalidation-mode unchecked-hash /opt/kubesoar/lib


FROM ${PYTHON_IMAGE}

ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown

LABEL org.opencontainers.image.title="kubesoar" \
      org.opencontainers.image.description="Code-first security playbooks on Kubernetes: operator, alert router and sandboxed runtime" \
      org.opencontainers.image.source="https://github.com/kubesoar/kubesoar" \
      org.opencontainers.image.url="https://github.com/kubesoar/kubesoar" \
      org.opencontainers.image.documentation="https://github.com/kubesoar/kubesoar/blob/main/docs/install.md" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="kubesoar" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}"

# git and ssh: the operator resolves and fetches playbook repositories over
# HTTPS or SSH (GitPython drives the git CLI). The standard library is
# byte-compiled here for the same reason as above.
RUN apt-get update \
 && apt-get install --yes --no-install-recommends git openssh-client \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/* \
 && python -m compileall -q -x '(^|/)(test|tests|idle_test|lib2to3)/' /usr/local/lib/python3.11 \
 && groupadd --gid 65532 kubesoar \
 && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /tmp \
      --shell /usr/sbin/nologin kubesoar

COPY --from=builder --chown=0:0 /opt/kubesoar /opt/kubesoar

# Nothing writes outside /tmp and mounted volumes: no bytecode at run time,
# HOME (git looks there for config) on /tmp, output unbuffered for the logs.
ENV PATH=/opt/kubesoar/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    GIT_TERMINAL_PROMPT=0

# Numeric UID:GID so that the kubelet can verify runAsNonRoot.
USER 65532:65532
WORKDIR /tmp

# kubesoar runs as PID 1: kopf and the aiohttp servers install their own
# SIGTERM handlers (runtime pods drain on it), and GitPython waits for the git
# processes it starts.
ENTRYPOINT ["kubesoar"]
CMD ["--help"]

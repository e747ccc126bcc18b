# caseloop: one image for every service (`caseloop serve <service>`) and for the operator's verbs
# (`caseloop migrate`, `caseloop verify`, …). Build it from the repository root:
#
#     docker build -t caseloop:dev .
#
# The builder makes a virtualenv from requirements-runtime.lock (the pins of requirements.lock that
# the services need: no local broker, no benchmark, no test tool); the runtime stage copies that
# virtualenv alone, runs as uid 10001 and writes nothing outside /tmp, so the root filesystem can be
# mounted read-only (compose `read_only: true`, Kubernetes `readOnlyRootFilesystem: true`).
# Every service listens on port 8000 inside its container; compose and Kubernetes map it.
ARG PYTHON_IMAGE=python:3.11.14-slim-trixie

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/caseloop
WORKDIR /src
# Third-party packages first, in their own layer: rebuilt only when a pin changes. --no-deps because
# the lock is complete (deploy/tests/test_image.py proves it), so nothing unpinned slips in.
COPY requirements-runtime.lock ./
RUN /opt/caseloop/bin/pip install --no-cache-dir --no-deps --requirement requirements-runtime.lock
COPY libs/events/ libs/events/
COPY services/ services/
COPY deploy/pyproject.toml deploy/pyproject.toml
COPY deploy/src/ deploy/src/
# The workspace packages, not editable, without extras (caseloop-events without [testing]);
# `pip check` fails the build if the lock misses anything they declare.
RUN /opt/caseloop/bin/pip install --no-cache-dir --no-deps \
        ./libs/events ./services/intake ./services/triage ./services/dispatch ./services/supervision ./deploy \
    && /opt/caseloop/bin/pip check

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="caseloop" \
      org.opencontainers.image.description="caseloop's services and operator command line"
# A numeric user, so Kubernetes' runAsNonRoot can check it without a passwd lookup.
RUN groupadd --system --gid 10001 caseloop \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin caseloop
COPY --from=builder /opt/caseloop /opt/caseloop
COPY deploy/reference/*.json /opt/caseloop/reference/
# PYTHONDONTWRITEBYTECODE: no __pycache__ beside the code on a read-only root filesystem.
# CASELOOP_DATA_DIR: the embedded SQLite default lands in /tmp (a volume); production sets
# <SERVICE>_DATABASE_URL to PostgreSQL. The hosts bind every interface inside the container only.
ENV PATH=/opt/caseloop/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    CASELOOP_REFERENCE_DIR=/opt/caseloop/reference \
    CASELOOP_DATA_DIR=/tmp/caseloop \
    INTAKE_HOST=0.0.0.0 \
    INTAKE_PORT=8000 \
    TRIAGE_HOST=0.0.0.0 \
    TRIAGE_PORT=8000 \
    DISPATCH_HOST=0.0.0.0 \
    DISPATCH_PORT=8000 \
    SUPERVISION_HOST=0.0.0.0 \
    SUPERVISION_PORT=8000
WORKDIR /tmp
USER 10001:10001
EXPOSE 8000
# slim has no curl: the probe is Python's own urllib (an HTTP error or no answer raises: exit 1).
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
ENTRYPOINT ["caseloop"]
# The service comes from CASELOOP_SERVICE, or is named after `serve`: `docker run caseloop:dev serve intake`.
CMD ["serve"]

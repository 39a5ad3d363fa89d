# Loa image for deploy/compose and deploy/k8s (linted by hadolint in `make test`).
# Stage 1 builds wheels for Loa and its dependencies; stage 2 installs only those wheels and runs
# as an unprivileged user, so the runtime image has no compiler, no pip cache and no root.
FROM python:3.11.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY streams ./streams
COPY schemas ./schemas
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11.11-slim-bookworm
# the version built in stage 1 (streams.__version__; a test keeps them equal)
ARG LOA_VERSION=0.1.0
# uid/gid 10001: not a system account on the host; the k8s securityContext uses the same ids
RUN groupadd --system --gid 10001 loa \
    && useradd --system --uid 10001 --gid loa --home-dir /data --no-create-home loa
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links=/wheels "loa==${LOA_VERSION}" \
    && rm -rf /wheels
WORKDIR /app
COPY schemas ./schemas
COPY deploy/agencies ./deploy/agencies
# /data is the only writable path (faust tables, snapshots); mount a volume or an emptyDir there
RUN mkdir -p /data && chown loa:loa /data
ENV LOA_SCHEMAS_DIR=/app/schemas \
    LOA_AGENCIES_DIR=/app/deploy/agencies \
    LOA_DATA_DIR=/data \
    LOA_METRICS_HOST=0.0.0.0 \
    LOA_LOG_FORMAT=json \
    PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
EXPOSE 9470
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:9470/live', timeout=2)"]
ENTRYPOINT ["loa"]
CMD ["worker"]

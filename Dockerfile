# Loa worker image (for deploy/compose and deploy/k8s; not used by the tests).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY streams ./streams
COPY schemas ./schemas
COPY deploy/agencies ./deploy/agencies
RUN pip install --no-cache-dir .
ENV LOA_SCHEMAS_DIR=/app/schemas \
    LOA_AGENCIES_DIR=/app/deploy/agencies \
    LOA_METRICS_HOST=0.0.0.0 \
    LOA_LOG_FORMAT=json
EXPOSE 9470
ENTRYPOINT ["loa"]
CMD ["worker"]

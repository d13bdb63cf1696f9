# syntax=docker/dockerfile:1
# Predictive GPU autoscaler controller image.
# Build:  docker build -t gpu-predictive-autoscaler:0.1.0 .
# The base is pinned by tag; pin it by digest in your registry mirror for reproducible builds.

FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md NOTICE ./
COPY autoscaler ./autoscaler
COPY models ./models
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-compile . \
 && /opt/venv/bin/python -m compileall -q /opt/venv

FROM python:3.11-slim-bookworm
LABEL org.opencontainers.image.title="gpu-predictive-autoscaler" \
      org.opencontainers.image.description="Predictive autoscaler for vLLM GPU inference on Kubernetes" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://example.invalid/gpu-predictive-autoscaler"
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MPLCONFIGDIR=/tmp/matplotlib \
    HOME=/tmp
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["autoscaler"]
CMD ["run"]

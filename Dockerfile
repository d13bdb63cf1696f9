# syntax=docker/dockerfile:1
# Predictive GPU autoscaler controller image.
#
#   docker build -t gpu-predictive-autoscaler:0.1.0 .
#
# Two stages:
#   build    Debian 12 + its python3.11 and python3-venv: installs the project and its
#            dependencies into /opt/venv and byte-compiles them (the root filesystem is
#            read-only at run time, so no .pyc can be written later).
#   runtime  distroless python3-debian12 (the SAME Debian python3.11, so the venv's
#            interpreter symlink /opt/venv/bin/python -> /usr/bin/python3 resolves): no shell,
#            no package manager, runs as the numeric non-root user 65532.
# The only writable path the process needs is /tmp (HOME, MPLCONFIGDIR), an emptyDir in
# deploy/deployment.yaml.
#
# Reproducibility: the bases are pinned by tag here. For a reproducible build pin them by
# digest in your registry mirror, e.g.
#   docker build --build-arg BUILD_IMAGE=debian:12-slim@sha256:... \
#                --build-arg RUNTIME_IMAGE=gcr.io/distroless/python3-debian12:nonroot@sha256:... .
# and pass a pip constraints file (pip freeze of a tested venv) with
#   --build-arg PIP_CONSTRAINT=constraints.txt  (the file must be in the build context).
ARG BUILD_IMAGE=debian:12-slim
ARG RUNTIME_IMAGE=gcr.io/distroless/python3-debian12:nonroot

FROM ${BUILD_IMAGE} AS build
ARG PIP_CONSTRAINT=
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_CONSTRAINT=${PIP_CONSTRAINT} \
    DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3=3.11.2-1+b1 python3-venv=3.11.2-1+b1 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md NOTICE ./
COPY autoscaler ./autoscaler
COPY models ./models
RUN /usr/bin/python3.11 -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-compile . \
 && /opt/venv/bin/python -m compileall -q /opt/venv \
 && /opt/venv/bin/autoscaler --help > /dev/null

FROM ${RUNTIME_IMAGE}
ARG VERSION=0.1.0
ARG SOURCE=https://example.invalid/gpu-predictive-autoscaler
ARG REVISION=unknown
LABEL org.opencontainers.image.title="gpu-predictive-autoscaler" \
      org.opencontainers.image.description="Predictive autoscaler for vLLM GPU inference on Kubernetes" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.base.name="gcr.io/distroless/python3-debian12:nonroot"
COPY --from=build /opt/venv /opt/venv
# One BLAS thread: the fits are small, and idle OpenBLAS workers spinning tripled their
# CPU time in benchmarks/bench_scale.py, so the per-loop fit budget bought a third of the refits.
ENV PATH=/opt/venv/bin:/usr/local/bin:/usr/bin:/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MPLCONFIGDIR=/tmp/matplotlib \
    HOME=/tmp \
    OPENBLAS_NUM_THREADS=1
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["autoscaler"]
CMD ["run"]

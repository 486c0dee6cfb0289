# syntax=docker/dockerfile:1
# One image for the Kubeflow pipeline steps and for serving (docs/kubeflow.md "Build the image").
#   CPU (default):  IMAGE=ghcr.io/you/signflow:0.1.0 make image push
#   CUDA:           IMAGE=ghcr.io/you/signflow:0.1.0-cu130 TORCH_VARIANT=cu130 make image push
# (`make image` = docker build, or podman build where no Docker engine answers.)
# TORCH_VARIANT picks the PyTorch wheel index (cpu, cu126, cu128, cu130, ...): the CUDA wheels carry
# their own CUDA runtime, so the slim base works on GPU nodes with the NVIDIA container toolkit.
# TORCH_INDEX_URL overrides the index (a mirror of download.pytorch.org/whl/<variant>); the build
# fails when the torch it installs is not the TORCH_VARIANT build (scripts/torch_variant.py).
# Default command: the BentoML service on :3000. Pipeline steps override the command (kfp does).
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm
FROM ${PYTHON_IMAGE}

ARG TORCH_VARIANT=cpu
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/${TORCH_VARIANT}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    BENTOML_DO_NOT_TRACK=True \
    DO_NOT_TRACK=1 \
    BENTOML_HOME=/home/signflow/bentoml

# ffmpeg: the decode fallback and .swf conversion (signflow.video); git: dvc inside the image.
# Debian package versions follow the pinned base image tag.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ffmpeg git \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 signflow \
    && useradd --uid 10001 --gid signflow --create-home --shell /usr/sbin/nologin signflow \
    && install -d -o 10001 -g 0 -m 0775 /minio /gcs /s3
# /minio, /gcs, /s3: the KFP v2 launcher and executor keep the local copy of an artifact whose URI is
# minio://, gs:// or s3:// under /minio/<bucket>/..., /gcs/..., /s3/...; a step running as 10001
# must create folders there (else PermissionError: '/minio'; kubeflow/pipelines #10397, #5673).
# Group 0 with g+w too, for platforms that run the image under an arbitrary uid in group root.

# Dependencies first (this layer changes only with requirements.txt), code after.
# torch/torchvision come from the PyTorch index of TORCH_VARIANT; everything else from PyPI,
# where `torch==X` is then already satisfied by the `X+cpu`/`X+cu130` build.
# The check after both installs: a requirement that pulls torch again would replace the +cpu build.
COPY requirements.txt scripts/torch_variant.py /tmp/
RUN python -m venv "$VIRTUAL_ENV" \
    && grep -E '^(torch|torchvision)==' /tmp/requirements.txt > /tmp/torch.txt \
    && pip install --index-url "$TORCH_INDEX_URL" -r /tmp/torch.txt \
    && pip install -r /tmp/requirements.txt \
    && python /tmp/torch_variant.py "$TORCH_VARIANT" \
    && rm /tmp/requirements.txt /tmp/torch.txt /tmp/torch_variant.py

# The landmark extractor's own environment (extract.representation: landmarks): mediapipe 0.10.21
# needs protobuf<5 and numpy<2, kfp in /opt/venv needs protobuf 6 and numpy 2 (docs/landmarks.md).
COPY requirements-landmarks.txt /tmp/requirements-landmarks.txt
RUN python -m venv /opt/venv-landmarks \
    && /opt/venv-landmarks/bin/pip install -r /tmp/requirements-landmarks.txt \
    && rm /tmp/requirements-landmarks.txt
ENV SIGNFLOW_LANDMARKS_PYTHON=/opt/venv-landmarks/bin/python

WORKDIR /app
COPY pyproject.toml README.md params.yaml dvc.yaml ./
COPY signflow/ signflow/
COPY stages/ stages/
COPY pipelines/ pipelines/
COPY serving/ serving/
RUN pip install --no-deps . \
    && /opt/venv-landmarks/bin/pip install --no-deps . \
    && chown -R signflow:signflow /app

# Numeric, so Kubernetes runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
EXPOSE 3000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:3000/readyz', timeout=4)"]
# `python -m serving` = `bentoml serve serving.service:Signflow` with its own metrics folder (serving/__main__.py).
CMD ["python", "-m", "serving", "serving.service:Signflow", "--host", "0.0.0.0", "--port", "3000"]

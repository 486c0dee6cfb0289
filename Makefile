# One-command entry points. `make setup` then `make test`; `make run` reproduces the pipeline.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export BENTOML_DO_NOT_TRACK := True
export DO_NOT_TRACK := 1

.PHONY: setup system-deps venv venv-landmarks test test-slow test-all run pipeline image push image-step monitoring bench smoke-wlasl clean

setup: system-deps venv venv-landmarks  ## system packages + pinned Python environments

system-deps:  ## ffmpeg, prometheus/promtool, chromium (Debian/Ubuntu; skipped when present)
	@bash scripts/install_system_deps.sh

venv:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements-dev.txt
	$(BIN)/pip install -q --no-deps -e .

# MediaPipe 0.10.21 (the last wheels with the Holistic models inside) needs protobuf<5 / numpy<2,
# which kfp in .venv cannot share: its own venv, used only through signflow.landmarks' workers.
LANDMARKS_VENV ?= .venv-landmarks
venv-landmarks:  ## isolated MediaPipe env for extract.representation: landmarks
	$(PYTHON) -m venv $(LANDMARKS_VENV)
	$(LANDMARKS_VENV)/bin/pip install -q --upgrade pip
	$(LANDMARKS_VENV)/bin/pip install -q -r requirements-landmarks.txt

# Fast-suite processes (pytest-xdist); the slow suite stays serial (real servers, ports, BentoML stores).
TEST_WORKERS ?= 2
test:  ## fast suite (about 1.5 min on 2 cores)
	$(BIN)/python -m pytest -m "not slow" -q -n $(TEST_WORKERS)

test-slow:  ## real-system tests: full dvc repro, kfp local run, bentoml serve, prometheus, browser
	$(BIN)/python -m pytest -m slow -q

test-all: test test-slow

run:  ## the whole pipeline on the synthetic default
	PATH=$(abspath $(BIN)):$$PATH dvc repro

pipeline:  ## compile the kfp pipeline (pipelines/signflow_pipeline.yaml, checked in)
	$(BIN)/python -m pipelines.compile

# The one image for pipeline steps and serving (Dockerfile, docs/kubeflow.md "Build the image"):
#   IMAGE=ghcr.io/you/signflow:0.1.0-cu130 TORCH_VARIANT=cu130 make image push
# CONTAINER: docker when a Docker engine answers, else podman (podman's own flags, e.g.
# --isolation chroot, go in BUILD_FLAGS). A torch mirror: BUILD_FLAGS="--build-arg TORCH_INDEX_URL=...".
TORCH_VARIANT ?= cpu
IMAGE ?= signflow:dev-$(TORCH_VARIANT)
CONTAINER ?= $(shell docker info >/dev/null 2>&1 && echo docker || (command -v podman >/dev/null && echo podman) || echo docker)
BUILD_FLAGS ?=
# podman writes OCI images by default, which have no HEALTHCHECK: the docker format keeps it.
image:  ## build $(IMAGE) (TORCH_VARIANT=cpu|cu126|cu128|cu130)
	$(CONTAINER) build $(if $(filter podman,$(CONTAINER)),--format docker )--build-arg TORCH_VARIANT=$(TORCH_VARIANT) $(BUILD_FLAGS) -t $(IMAGE) .

push:  ## push $(IMAGE) to its registry (log in first: docker/podman login <registry>)
	$(CONTAINER) push $(IMAGE)

image-step:  ## run the compiled download step in $(IMAGE) as KFP would (uid 10001, minio:// outputs)
	$(BIN)/python scripts/run_image_step.py --image $(IMAGE) --engine $(CONTAINER)

monitoring:  ## regenerate rules/dashboards from params.yaml, then promtool + dashboard checks
	$(BIN)/python -m signflow.monitoring.build
	$(BIN)/python -m signflow.monitoring.check monitoring

bench:  ## every benchmark; each prints a side-by-side table (docs/benchmarks.md)
	$(BIN)/python benchmarks/bench_extract.py
	$(BIN)/python benchmarks/bench_train.py
	$(BIN)/python benchmarks/bench_serving.py
	$(BIN)/python benchmarks/bench_drift.py
	$(BIN)/python benchmarks/bench_landmarks.py

smoke-wlasl:  ## every stage on the 199 real WLASL clips in ../shared/data/wlasl-clips (no accuracy)
	$(BIN)/python scripts/smoke_wlasl_clips.py

clean:
	rm -rf data models dvclive reports

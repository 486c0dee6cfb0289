# One-command entry points. `make setup` then `make test`; `make run` reproduces the pipeline.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export BENTOML_DO_NOT_TRACK := True
export DO_NOT_TRACK := 1

.PHONY: setup system-deps venv venv-landmarks test test-slow test-all run pipeline monitoring bench smoke-wlasl clean

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

test:  ## fast suite (< 15 min on 2 cores)
	$(BIN)/python -m pytest -m "not slow" -q

test-slow:  ## real-system tests: full dvc repro, kfp local run, bentoml serve, prometheus, browser
	$(BIN)/python -m pytest -m slow -q

test-all: test test-slow

run:  ## the whole pipeline on the synthetic default
	PATH=$(abspath $(BIN)):$$PATH dvc repro

pipeline:  ## compile the kfp pipeline (pipelines/signflow_pipeline.yaml, checked in)
	$(BIN)/python -m pipelines.compile

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

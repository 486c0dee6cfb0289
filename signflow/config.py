"""One typed, validated view of ``params.yaml``.

Every knob of every stage lives in ``params.yaml``; this module is its schema.
Unknown keys, wrong types and out-of-range values fail with a message that names
the key (``extract.seq_len``) and what is allowed, before any work starts.
Each stage reads its own section(s) through :func:`load_params`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


DEFAULT_PARAMS_PATH = Path("params.yaml")


class ParamsError(ValueError):
    """A params.yaml problem, phrased for the person who edits the file."""


class StrictModel(BaseModel):
    """Base for all sections: unknown keys are errors, assignments re-validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


# --------------------------------------------------------------------------- data (download)


class SyntheticSourceParams(StrictModel):
    """A generated ISLR-like set: each gloss is a *motion*, each signer a look."""

    num_glosses: int = Field(10, ge=2, le=48, description="distinct synthetic motions (48 exist)")
    signers: int = Field(6, ge=1, le=200)
    repetitions: int = Field(3, ge=1, le=50)
    frames: int = Field(32, ge=8, le=600, description="nominal frames of the sign itself")
    lead_frames: int = Field(4, ge=0, le=100, description="rest frames before/after the sign")
    width: int = Field(128, ge=32, le=1920)
    height: int = Field(96, ge=32, le=1080)
    fps: float = Field(25.0, gt=0, le=120)
    noise: float = Field(0.03, ge=0.0, le=0.5, description="pixel noise std as a fraction of 255")
    num_workers: int = Field(2, ge=1, le=256, description="processes rendering/encoding clips (same bytes)")


class WlaslSourceParams(StrictModel):
    """The real WLASL index (``WLASL_v0.3.json``) and its videos over HTTP(S)."""

    index: str = Field("data/WLASL_v0.3.json", description="local path or http(s) URL")
    subset: int | None = Field(100, ge=1, description="first K glosses (100/300/1000/2000); null = all")
    subset_file: str | None = Field(None, description="official nslt_K.json; overrides subset")
    max_videos: int | None = Field(None, ge=1, description="cap for smoke runs")
    concurrency: int = Field(8, ge=1, le=128)
    per_host_concurrency: int = Field(2, ge=1, le=32)
    timeout_s: float = Field(30.0, gt=0)
    retries: int = Field(3, ge=0, le=20)
    backoff_s: float = Field(1.0, ge=0)
    max_bytes: int = Field(500 * 1024**2, ge=1024, description="larger downloads are refused")
    youtube: bool = Field(True, description="fetch YouTube entries with yt-dlp when installed")
    user_agent: str = "signflow/0.1 (sign-language research; +https://github.com/signflow)"


class LocalSourceParams(StrictModel):
    """An existing folder or archive (zip/tar) on disk."""

    path: str | None = Field(None, description="folder or .zip/.tar(.gz) archive")
    layout: Literal["auto", "gloss_folders", "wlasl", "lsa64"] = "auto"
    index: str | None = Field(None, description="WLASL index for the 'wlasl' layout")
    pretrimmed: bool = Field(
        False,
        description=(
            "'wlasl' layout: the files are the WLASL authors' pre-processed clips (already trimmed to the "
            "sign and resized/letterboxed), so the index's frame ranges and bboxes, which refer to the "
            "original videos, are dropped on import (kept as original_frame_start/_end/_bbox)"
        ),
    )
    max_archive_bytes: int = Field(64 * 1024**3, ge=1, description="uncompressed size limit")


class DvcSourceParams(StrictModel):
    """A ``data/raw`` folder versioned in a DVC project (read from its remote, as ``dvc get`` does)."""

    repo: str | None = Field(None, description="git URL or local path of the DVC project")
    path: str = Field("data/raw", description="the data/raw folder inside that project")
    rev: str | None = Field(None, description="git branch, tag or commit; null = the default branch")
    remote: str | None = Field(None, description="DVC remote name in that project; null = its default remote")


class DataParams(StrictModel):
    source: Literal["synthetic", "wlasl", "local", "dvc"] = "synthetic"
    seed: int = 0
    synthetic: SyntheticSourceParams = SyntheticSourceParams()
    wlasl: WlaslSourceParams = WlaslSourceParams()
    local: LocalSourceParams = LocalSourceParams()
    dvc: DvcSourceParams = DvcSourceParams()

    @model_validator(mode="after")
    def _source_needs_location(self) -> DataParams:
        if self.source == "local" and not self.local.path:
            raise ValueError("data.local.path is required when data.source is 'local'")
        if self.source == "dvc" and not self.dvc.repo:
            raise ValueError("data.dvc.repo is required when data.source is 'dvc'")
        return self


# --------------------------------------------------------------------------- split / crop / extract


class SplitParams(StrictModel):
    strategy: Literal["official", "random", "signer"] = "official"
    nslt_file: str | None = Field(None, description="official nslt_K.json for strategy 'official'")
    # > 0: every split must be non-empty (later stages need train, val and test).
    val_fraction: float = Field(0.15, gt=0.0, lt=1.0, description="random/signer: share of videos in val")
    test_fraction: float = Field(0.15, gt=0.0, lt=1.0, description="random/signer: share of videos in test")
    seed: int = 0

    @model_validator(mode="after")
    def _fractions(self) -> SplitParams:
        if self.val_fraction + self.test_fraction >= 1.0:
            raise ValueError(
                "split.val_fraction + split.test_fraction must be < 1 "
                f"(got {self.val_fraction} + {self.test_fraction})"
            )
        return self


class CropParams(StrictModel):
    use_bbox: bool = Field(True, description="crop to the index bbox; full frame when false/absent")
    margin: float = Field(0.1, ge=0.0, le=2.0, description="bbox margin, fraction of its size")
    square: bool = Field(True, description="grow the box to a square (no aspect distortion)")


class ExtractParams(StrictModel):
    representation: Literal["rgb", "landmarks"] = Field(
        "rgb", description="rgb: cropped frames; landmarks: MediaPipe Holistic keypoints (landmarks section)"
    )
    seq_len: int = Field(16, ge=1, le=512, description="frames the model sees per clip")
    stored_frames: int = Field(32, ge=1, le=1024, description="frames kept per clip (>= seq_len)")
    frame_size: int = Field(64, ge=16, le=512, description="square side in pixels")
    min_frames: int = Field(4, ge=1, le=1024, description="clips with fewer decoded frames are skipped (too_short)")
    resize: Literal["opencv_area", "swscale_area"] = Field(
        "opencv_area",
        description="how a stored frame is made from a decoded one: opencv_area converts the box to RGB, then "
        "OpenCV's INTER_AREA; swscale_area converts and area-scales the decoded YUV in one swscale pass "
        "(about 5x less work per stored frame, slightly different pixels: re-extract and retrain)",
    )
    shard_mb: int = Field(512, ge=1, le=16384, description="target shard file size")
    num_workers: int = Field(2, ge=1, le=256, description="decode processes")
    chunk_size: int = Field(4, ge=1, le=1024, description="videos per worker task (amortises IPC)")

    @model_validator(mode="after")
    def _stored_covers_seq(self) -> ExtractParams:
        if self.stored_frames < self.seq_len:
            raise ValueError(
                f"extract.stored_frames ({self.stored_frames}) must be >= extract.seq_len ({self.seq_len})"
            )
        return self


# --------------------------------------------------------------------------- model / train / evaluate

class CnnLstmParams(StrictModel):
    backbone: Literal["small_cnn", "mobilenet_v2"] = "small_cnn"
    freeze: Literal["none", "all", "last_n"] = Field("none", description="last_n: train only the last N blocks")
    trainable_blocks: int = Field(2, ge=0, le=50)
    hidden: int = Field(128, ge=4, le=4096)
    layers: int = Field(1, ge=1, le=8)
    bidirectional: bool = True
    pooling: Literal["last", "mean", "attention"] = "attention"
    spatial_grid: int = Field(
        2, ge=1, le=8,
        description="average-pool each frame's last feature map to an N x N grid, not one vector: "
        "keeps where the hands are (1 = global pooling, what ImageNet backbones expect)",
    )  # fmt: skip


class LandmarkModelParams(StrictModel):
    hidden: int = Field(128, ge=4, le=4096)
    layers: int = Field(2, ge=1, le=8)
    bidirectional: bool = True
    pooling: Literal["last", "mean", "attention"] = "attention"
    gcn_channels: int = Field(64, ge=4, le=1024)
    gcn_blocks: int = Field(4, ge=1, le=16)
    streams: list[Literal["joint", "bone", "joint_motion", "bone_motion", "hand_shape"]] = Field(
        ["joint", "bone"],
        description="input views: coordinates, bones, their frame-to-frame motion, wrist-relative hand shape; "
        "landmark_gcn: one network each, logits averaged; landmark_lstm: concatenated per frame",
    )
    lower_body: bool = Field(
        True, description="false: ignore the pose's hips, legs and feet (often off-screen and guessed in signing clips)"
    )


class ModelParams(StrictModel):
    # A name in the arch registry (signflow/archs.py). Not checked here: config is imported by every
    # stage, so checking would make every stage depend on the registry and adding an arch would re-run
    # download and extract. The stages that build models, `signflow.experiments` and the kfp
    # compiler/submit check it (`archs.check_params`).
    arch: str = Field(
        "cnn_lstm", pattern=r"^[a-z][a-z0-9_]*$", description="a registered architecture (signflow/archs.py)"
    )
    pretrained: bool = Field(False, description="load ImageNet/Kinetics weights (offline cache or weights_path)")
    weights_path: str | None = Field(None, description="explicit backbone weights file")
    weights_url: str | None = Field(
        None, pattern=r"^(https?|file)://", description="weights stage: download from here (default torchvision's URL)"
    )
    weights_sha256: str | None = Field(
        None, pattern=r"^[0-9a-fA-F]{8,64}$", description="expected SHA-256 (prefix); default: the one in the file name"
    )
    dropout: float = Field(0.3, ge=0.0, lt=1.0)
    cnn_lstm: CnnLstmParams = CnnLstmParams()
    landmark: LandmarkModelParams = LandmarkModelParams()


class EarlyStoppingParams(StrictModel):
    metric: Literal["val_loss", "val_top1", "val_top5"] = "val_top1"
    patience: int | None = Field(None, ge=1, description="epochs without improvement; null = off")
    restore_best: bool = True


class LandmarkAugmentParams(StrictModel):
    """Train-time augmentation of landmark sequences: a train knob, so changing it never re-runs extraction."""

    mirror: bool = Field(False, description="random mirroring that swaps left/right hands")
    rotate_deg: float = Field(10.0, ge=0.0, le=90.0, description="random rotation, +- degrees")
    scale_jitter: float = Field(0.1, ge=0.0, lt=1.0, description="random scale, +- fraction")


class AugmentParams(StrictModel):
    random_resized_crop: bool = True
    crop_scale_min: float = Field(0.8, gt=0.0, le=1.0)
    hflip: bool = Field(False, description="off: mirroring swaps the dominant hand")
    temporal_jitter: bool = True
    speed_min: float = Field(0.8, gt=0.0, le=1.0)
    speed_max: float = Field(1.2, ge=1.0, le=4.0)
    color_jitter: float = Field(0.2, ge=0.0, le=1.0)
    landmarks: LandmarkAugmentParams = LandmarkAugmentParams()


class TrainParams(StrictModel):
    seed: int = 0
    epochs: int = Field(25, ge=1, le=10000)
    batch_size: int = Field(16, ge=1, le=4096)
    optimizer: Literal["adam", "adamw", "sgd"] = "adamw"
    lr: float = Field(3e-3, gt=0.0, le=10.0)
    backbone_lr: float | None = Field(None, gt=0.0, le=10.0, description="null = same as lr")
    weight_decay: float = Field(1e-4, ge=0.0, le=1.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    nesterov: bool = True
    scheduler: Literal["none", "cosine_warm_restarts", "plateau", "one_cycle"] = "one_cycle"
    warmup_epochs: int = Field(0, ge=0)
    restart_epochs: int = Field(10, ge=1, description="cosine_warm_restarts T_0")
    restart_mult: int = Field(1, ge=1, description="cosine_warm_restarts T_mult")
    plateau_patience: int = Field(3, ge=0)
    plateau_factor: float = Field(0.5, gt=0.0, lt=1.0)
    grad_clip: float | None = Field(1.0, gt=0.0)
    early_stopping: EarlyStoppingParams = EarlyStoppingParams()
    loss: Literal["cross_entropy", "focal"] = "cross_entropy"
    focal_gamma: float = Field(2.0, ge=0.0)
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)
    mixup_alpha: float = Field(0.0, ge=0.0, description="0 = off")
    class_weights: bool = False
    balanced_sampler: bool = False
    augment: AugmentParams = AugmentParams()
    amp: Literal["none", "fp16", "bf16"] = "none"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    num_workers: int = Field(0, ge=0, le=64)
    feature_cache: bool = Field(True, description="cache frozen-backbone features (cnn_lstm, freeze: all)")


class EvaluateParams(StrictModel):
    splits: list[Literal["train", "val", "test"]] = Field(
        ["test", "val"], min_length=1, description="the first one gets the confusion plot and drift reference"
    )
    clips: int = Field(1, ge=1, le=32, description="test-time averaging over temporal clips")
    top_k: list[Annotated[int, Field(ge=1)]] = Field([1, 5, 10], min_length=1)
    batch_size: int = Field(32, ge=1, le=4096)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    abstain_precision: float | None = Field(
        0.9,
        gt=0.0,
        le=1.0,
        description="choose on val the confidence above which answers reach this precision; below it the "
        "service says 'not recognised' (null = always answer)",
    )

    @model_validator(mode="after")
    def _unique_splits(self) -> EvaluateParams:
        if len(set(self.splits)) != len(self.splits):
            raise ValueError(f"evaluate.splits lists a split twice: {self.splits}")
        return self


# --------------------------------------------------------------------------- package / serve / monitor


class PackageParams(StrictModel):
    model_name: str = Field("signflow-islr", pattern=r"^[a-z0-9][a-z0-9._-]*$")
    metric: str = Field("val_top1", description="key in metrics.json used to pick the winner (a val metric: never choose on test)")
    mode: Literal["max", "min"] = "max"
    candidates: list[str] = Field(default_factory=list, description="extra run folders to compare")
    experiments: bool = Field(True, description="also compare the DVC experiments `dvc exp show` lists")
    tie_tolerance: float = Field(0.0, ge=0.0, description="metric values this close are a tie (lower latency wins)")
    measure_latency: bool = Field(True, description="measure forward latency for ties when metrics lack it")


class ServeParams(StrictModel):
    max_upload_mb: float = Field(50.0, gt=0.0)
    max_frames: int = Field(900, ge=1)
    max_duration_s: float = Field(60.0, gt=0.0)
    max_width: int = Field(1920, ge=16)
    max_height: int = Field(1080, ge=16)
    request_timeout_s: float = Field(30.0, gt=0.0)
    top_k: int = Field(3, ge=1)
    low_confidence: float = Field(0.5, ge=0.0, le=1.0)
    max_batch_size: int = Field(16, ge=2, description="adaptive batching: most clips per model call")
    max_latency_ms: int = Field(
        2000, ge=1, description="adaptive batching: a queued clip older than this is shed with 503 (overload guard)"
    )
    api_key_env: str | None = Field(None, description="env var holding the API key; null = no auth")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: CUDA when present, else CPU")
    workers: int = Field(1, ge=1, le=64, description="API worker processes (the model service has its own)")
    model_workers: int = Field(1, ge=1, le=64, description="model (batching) worker processes")
    model_threads: int | None = Field(1, ge=1, le=256, description="torch threads per model worker; null = torch default")
    max_concurrency: int = Field(64, ge=1, description="requests in flight before 503")
    landmark_extractor_mismatch: Literal["warn", "refuse"] = Field(
        "warn",
        description="landmark models: when the installed MediaPipe differs from the one the model's features "
        "were extracted with (other landmarks for the same video), log and report it, or refuse to start",
    )


# The service's prediction endpoints (serving/service.py): SLOs, metric labels and alerts are per endpoint.
SERVING_ENDPOINTS = ("predict_video", "predict_frames", "predict_landmarks")
# The web page's files (serving/static; a test keeps the two equal).
SERVING_STATIC_FILES = ("app.js", "index.html", "style.css")
# Every path the service's metrics may name: the endpoints, BentoML's system routes, the web page and
# the model service's /logits. Any other path (a 404 from a scanner, /favicon.ico) is labelled
# UNKNOWN_PATH_LABEL, in the service and again at scrape time, so junk paths cannot create series.
SERVICE_PATHS = (
    *(f"/{endpoint}" for endpoint in SERVING_ENDPOINTS), "/", "/logits", "/metrics", "/livez", "/readyz", "/healthz",
    "/docs.json", "/schema.json", "/ui/config.json", *(f"/static/{name}" for name in SERVING_STATIC_FILES),
)
UNKNOWN_PATH_LABEL = "other"
# Upper bounds of BentoML's request-duration histogram buckets: a latency SLO threshold must be one
# of them, or the "fast enough" ratio cannot be read off the histogram exactly.
BENTOML_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 180.0)


class EndpointSLO(StrictModel):
    """One endpoint's objectives over ``monitoring.slo_window_days``."""

    availability: float = Field(
        ..., gt=0.5, lt=1.0, description="share of requests not answered 5xx/429 (client errors are not failures)"
    )
    latency_s: float = Field(..., description="a successful answer within this many seconds is 'fast enough'")
    latency_target: float = Field(..., gt=0.5, lt=1.0, description="share of successful answers that must be fast enough")

    @field_validator("latency_s")
    @classmethod
    def _a_bucket_bound(cls, value: float) -> float:
        if value not in BENTOML_LATENCY_BUCKETS:
            raise ValueError(f"must be a bucket bound of BentoML's latency histogram: {BENTOML_LATENCY_BUCKETS}")
        return value


def _default_slos() -> dict[str, EndpointSLO]:
    return {
        "predict_video": EndpointSLO(availability=0.995, latency_s=2.5, latency_target=0.95),
        "predict_frames": EndpointSLO(availability=0.995, latency_s=1.0, latency_target=0.95),
        "predict_landmarks": EndpointSLO(availability=0.995, latency_s=0.5, latency_target=0.95),
    }


class MonitoringParams(StrictModel):
    slos: dict[str, EndpointSLO] = Field(default_factory=_default_slos, description="per endpoint")
    slo_window_days: int = Field(30, ge=1, le=90, description="the SLO period the error budget is counted over")
    slo_min_requests_1h: int = Field(
        30, ge=1, description="burn-rate alerts stay silent below this many requests an hour (too few to judge)"
    )
    low_confidence_rate_threshold: float = Field(0.3, gt=0.0, le=1.0)
    drift_psi_threshold: float = Field(0.25, gt=0.0)
    drift_window: int = Field(200, ge=10, description="recent predictions compared with evaluation")
    rejected_rate_threshold: float = Field(
        0.25, gt=0.0, le=1.0, description="share of API requests rejected as bad input before alerting"
    )
    expected_min_rps: float = Field(
        0.01, gt=0.0,
        description="traffic above this rate (same hour yesterday, or the 3 h before) = silence is an alert",
    )
    dashboard_top_glosses: int = Field(10, ge=1, le=200, description="glosses shown in 'predictions per gloss'")
    runbook_url: str = Field(
        "https://github.com/signflow/signflow/blob/main/docs/runbooks.md",
        min_length=1, description="every alert links to <runbook_url>#<alert name in lower case>",
    )

    @field_validator("slos")
    @classmethod
    def _known_endpoints(cls, value: dict[str, EndpointSLO]) -> dict[str, EndpointSLO]:
        unknown = sorted(set(value) - set(SERVING_ENDPOINTS))
        if unknown:
            raise ValueError(f"no such endpoint(s) {unknown}; the service has {list(SERVING_ENDPOINTS)}")
        if not value:
            raise ValueError("at least one endpoint needs an SLO")
        return value


class LandmarksParams(StrictModel):
    face: bool = Field(False, description="add a face-landmark subset")
    model_complexity: int = Field(1, ge=0, le=1, description="0 lite / 1 full (2 needs a download: not offline)")
    min_detection_confidence: float = Field(0.5, ge=0.0, le=1.0)
    min_tracking_confidence: float = Field(0.5, ge=0.0, le=1.0)
    max_gap: int = Field(4, ge=0, description="interpolate missing-hand gaps up to this many (stored) frames")
    num_workers: int = Field(2, ge=1, le=256)
    # Frames kept / seen per clip are extract.stored_frames / extract.seq_len, as for RGB (MOVED_KEYS).


# --------------------------------------------------------------------------- kubeflow (pipelines/ only)


class KubeflowResources(StrictModel):
    """Kubernetes resources of one pipeline step; null = not set (quantities like "500m", "4Gi")."""

    cpu_request: str | None = None
    cpu_limit: str | None = None
    memory_request: str | None = None
    memory_limit: str | None = None
    gpus: int | None = Field(
        None, ge=0, le=64,
        description="accelerators; the default of the <stage>_gpus pipeline parameter (train: torchrun workers)",
    )
    shm: str | None = Field(None, description="memory-backed /dev/shm size (DataLoader workers, NCCL), e.g. 8Gi")
    scratch: str | None = Field(
        None, description="size limit of the step's scratch emptyDirs (/tmp and the launcher's /minio, /s3, /gcs)"
    )


class KubeflowToleration(StrictModel):
    key: str | None = None
    operator: Literal["Equal", "Exists"] = "Equal"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None


class KubeflowParams(StrictModel):
    """How the compiled Kubeflow pipeline runs on a cluster. Read by ``pipelines.compile`` only,
    never by a stage: changing it recompiles the pipeline, it does not rerun ``dvc repro``."""

    image: str = Field(
        "ghcr.io/signflow/signflow:0.1.0-cu130",
        description="component image (the Dockerfile, CUDA variant: train/evaluate request GPUs); --image",
    )
    image_pull_secrets: list[str] = Field(
        default_factory=list, description="Kubernetes secrets for a private registry (every step)"
    )
    caching: bool = Field(True, description="kfp step caching; submit --no-cache disables it per run")
    retries: int = Field(2, ge=0, le=10, description="kfp retries of a failed step (preempted node, lost pod)")
    retry_backoff: str = Field("60s", pattern=r"^\d+s$", description="wait before the first retry, doubled after")
    accelerator_type: str = "nvidia.com/gpu"
    default_resources: KubeflowResources = KubeflowResources(
        cpu_request="1", cpu_limit="2", memory_request="2Gi", memory_limit="4Gi", gpus=0, scratch="20Gi"
    )
    resources: dict[str, KubeflowResources] = Field(
        default_factory=lambda: {
            "extract": KubeflowResources(cpu_request="2", cpu_limit="4", memory_request="4Gi", memory_limit="8Gi"),
            "train": KubeflowResources(
                cpu_request="4", cpu_limit="8", memory_request="16Gi", memory_limit="32Gi", gpus=1, shm="8Gi"
            ),
            "evaluate": KubeflowResources(
                cpu_request="2", cpu_limit="4", memory_request="8Gi", memory_limit="16Gi", gpus=1, shm="2Gi"
            ),
        },
        description="per-stage overrides of default_resources (keys: dvc.yaml stage names)",
    )
    node_selector: dict[str, str] = Field(default_factory=dict, description="every step")
    gpu_node_selector: dict[str, str] = Field(default_factory=dict, description="steps with gpus > 0")
    gpu_tolerations: list[KubeflowToleration] = Field(
        default_factory=lambda: [KubeflowToleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")]
    )
    raw_uri: str | None = Field(
        None, pattern=r"^(s3|gs|minio)://[^\s/]+/\S*$",
        description="start from a dataset already in object storage: the raw step is an importer of this "
        "folder (default of the raw_uri run parameter); null = run the download step",
    )
    pvc: str | None = Field(
        None, description="existing PVC mounted on every step (local data, BentoML store, train checkpoints)"
    )
    pvc_mount_path: str = "/mnt/signflow"


class Params(StrictModel):
    """The whole of ``params.yaml``."""

    data: DataParams = DataParams()
    split: SplitParams = SplitParams()
    crop: CropParams = CropParams()
    extract: ExtractParams = ExtractParams()
    landmarks: LandmarksParams = LandmarksParams()
    model: ModelParams = ModelParams()
    train: TrainParams = TrainParams()
    evaluate: EvaluateParams = EvaluateParams()
    package: PackageParams = PackageParams()
    serve: ServeParams = ServeParams()
    monitoring: MonitoringParams = MonitoringParams()
    kubeflow: KubeflowParams = KubeflowParams()


# Keys that once lived elsewhere: an old params.yaml gets told where each went, not just "unknown key".
MOVED_KEYS = {
    "landmarks.seq_len": "extract.seq_len (one seq_len/stored_frames pair for both representations)",
    "landmarks.stored_frames": "extract.stored_frames (one seq_len/stored_frames pair for both representations)",
}


def _format_errors(error: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid parameters:"]
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "(root)"
        if item["type"] == "extra_forbidden" and key in MOVED_KEYS:
            lines.append(f"  {key}: moved to {MOVED_KEYS[key]}")
            continue
        if item["type"] == "extra_forbidden":
            parent_model = _model_at(item["loc"][:-1])
            allowed = ", ".join(sorted(parent_model.model_fields)) if parent_model else "?"
            lines.append(f"  {key}: unknown key (allowed keys here: {allowed})")
            continue
        got = item.get("input")
        shown = repr(got) if not isinstance(got, dict) else "{...}"
        lines.append(f"  {key}: {item['msg']} (got {shown})")
    return "\n".join(lines)


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    model: type[BaseModel] = Params
    for part in loc:
        field = model.model_fields.get(str(part))
        if field is None or not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)):
            return None
        model = field.annotation
    return model


def parse_params(raw: dict[str, Any] | None, source: str = "params") -> Params:
    """Validate an already-loaded mapping; raise :class:`ParamsError` with readable lines."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ParamsError(f"{source}: expected a mapping of sections, got {type(raw).__name__}")
    try:
        return Params.model_validate(raw)
    except ValidationError as error:
        raise ParamsError(_format_errors(error, source)) from None


def load_params(path: str | os.PathLike[str] = DEFAULT_PARAMS_PATH) -> Params:
    """Read and validate ``params.yaml`` (the whole file: a typo anywhere fails fast)."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: params file not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ParamsError(f"{path}: not valid YAML: {error}") from None
    return parse_params(raw, str(path))


def apply_overrides(params: Params, overrides: list[str]) -> Params:
    """Apply ``key.path=value`` overrides (YAML-typed values), re-validating the result."""
    raw = params.model_dump(mode="json")
    for override in overrides:
        if "=" not in override:
            raise ParamsError(f"override {override!r}: expected key.path=value")
        dotted, value_text = override.split("=", 1)
        node = raw
        keys = dotted.strip().split(".")
        for key in keys[:-1]:
            if not isinstance(node.get(key), dict):
                raise ParamsError(f"override {override!r}: {key!r} is not a section")
            node = node[key]
        node[keys[-1]] = yaml.safe_load(value_text)
    return parse_params(raw, "overrides")

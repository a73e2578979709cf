"""Every setting of the pipeline in one typed object, read from environment variables
(and from a `.env` file in the working directory; see `.env.example`).

Credentials never live here: S3 keys come from boto3's standard chain (AWS_ACCESS_KEY_ID,
~/.aws, instance roles), the database password from DATABASE_URL or PGPASSWORD.
"""

from __future__ import annotations

import os
import re
import socket
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal, Optional

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

REPO_DIR = Path(__file__).resolve().parent
BUILTIN_MODELS = ("squeezenet1_1", "squeezenet1_0")
# a model name is also an S3 folder, a Prometheus label and the NAME of NAME@N
MODEL_NAME_RULE = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"


def check_model_name(name: str) -> str:
    """`name` if it is a model name (MODEL_NAME, `training fit --name`, NAME in NAME@N), else a
    ValueError saying the rule: the one check for all three, so that no command stores a name
    that another cannot spell. re.fullmatch, because re.match with `^...$` also accepts a name
    followed by a newline ("abc\\n"); the explicit ASCII ranges keep out 'é' and full-width digits."""
    if not isinstance(name, str) or not re.fullmatch(MODEL_NAME_RULE, name):
        raise ValueError(
            f"{name!r} is not a model name: 1 to 64 ASCII letters, digits, '_', '.' or '-', "
            "beginning with a letter or digit"
        )
    return name


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    # --- PostgreSQL
    # not in repr: it may hold a password (a traceback or a log of the settings would show it)
    database_url: str = Field("postgresql://postgres@127.0.0.1:55432/visionscaling", repr=False)

    # --- Kafka
    kafka_bootstrap_servers: str = "127.0.0.1:59092"
    kafka_topic: str = "image-keys"
    kafka_dead_letter_topic: str = "image-keys-dead-letter"  # empty: no dead-letter topic
    kafka_partitions: int = Field(3, ge=1)
    kafka_replication_factor: int = Field(1, ge=1)
    kafka_min_insync_replicas: int = Field(1, ge=1)  # topics' min.insync.replicas (2 with replication 3)
    # validated: a typo would otherwise make the clients hang on a handshake they cannot do
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_ssl_cafile: Optional[Path] = None  # CA bundle for SSL / SASL_SSL (default: system CAs)
    # a client certificate and its key (PEM), for brokers that ask for one (mutual TLS)
    kafka_ssl_certfile: Optional[Path] = None
    kafka_ssl_keyfile: Optional[Path] = None
    kafka_sasl_mechanism: Optional[Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]] = None
    kafka_sasl_username: Optional[str] = None
    kafka_sasl_password: Optional[SecretStr] = None  # never printed: repr shows **********

    # --- S3
    s3_endpoint_url: Optional[str] = None  # None = real AWS S3
    s3_ca_bundle: Optional[Path] = None  # CA bundle for an HTTPS endpoint (default: the system's CAs)
    s3_bucket: str = "images"
    s3_region: str = "us-east-1"
    s3_max_concurrency: int = Field(16, ge=1)

    # --- Faust worker
    faust_app_id: str = "visionscaling"
    batch_size: int = Field(32, ge=1)
    batch_window_s: float = Field(0.2, gt=0)
    infer_chunk_size: int = Field(4, ge=1)  # images per model call; chunks start while the batch still decodes
    metrics_port: Optional[int] = None  # Prometheus /metrics; None = a free port (logged)
    worker_web_port: Optional[int] = None  # None = a free port, so workers on one host never collide
    broker_session_timeout_s: float = 10.0
    broker_heartbeat_interval_s: float = 2.0
    broker_commit_interval_s: float = 1.0
    faust_datadir: Path = Path(tempfile.gettempdir()) / "visionscaling-faust"  # Faust's scratch dir
    hostname: str = Field(default_factory=socket.gethostname)
    retry_backoff_max_s: float = Field(30.0, gt=0)
    # SIGTERM: the in-flight batch gets this long to be written, else it is abandoned
    # unacknowledged (the next owner of the partition redoes it); well below Kubernetes' 30 s
    shutdown_timeout_s: float = Field(10.0, gt=0)

    # --- model
    # a built-in torchvision model (BUILTIN_MODELS: ImageNet's 1000 classes), or the name of a
    # model trained on your own categories (python -m training): its production version is served
    model_name: str = "squeezenet1_1"  # check_model_name
    # several models served at once, one pass of the trunk for all (comma-separated, e.g.
    # squeezenet1_1,shelves); empty: MODEL_NAME alone. The first is MODEL_NAME.
    model_names: Annotated[Optional[list[str]], NoDecode] = None
    model_weights: Optional[Path] = None  # None = shared_dir's weights, else torchvision's download
    model_bucket: str = "models"  # where trained versions' artefacts live (immutable, per version)
    model_prefix: str = "registry/"
    model_poll_s: float = Field(5.0, gt=0)  # how often workers look for a new production/shadow version
    shared_dir: Path = REPO_DIR.parent / "shared"
    model_engine: Literal["onnxruntime", "onnxruntime-int8", "channels_last", "torchscript", "torch"] = "onnxruntime"
    # onnxruntime-int8 calibrates on photos like the ones it will classify (None: shared_dir's dev photos)
    model_calibration_dir: Optional[Path] = None
    model_calibration_images: int = Field(300, ge=1)  # how many of them (spread over the folder)
    # int8: images whose top-1 probability leads the runner-up by less than this are classified
    # again in fp32 (0: never; docs/models/inference.md: 14% of the dev photos at 0.05)
    model_int8_recheck_margin: float = Field(0.05, ge=0, le=1)
    model_cache_dir: Path = Path.home() / ".cache" / "visionscaling"  # the exported ONNX graph
    top_k: int = Field(5, ge=1, le=1000)
    torch_threads: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1)
    decode_workers: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1)
    max_image_pixels: int = Field(60_000_000, ge=1)
    max_image_bytes: int = Field(50_000_000, ge=1)  # checked from the object's size before it is read
    max_image_aspect: float = Field(20.0, ge=1)  # longer side / shorter side
    fast_decode: bool = True  # JPEG DCT-domain downscaling before the reference resize
    # each classified image's embedding (the trunk's pooled output) stored for similar-image
    # search and training (db/embeddings.py); false: none stored
    embeddings: bool = True
    embedding_model: Literal[BUILTIN_MODELS] = "squeezenet1_1"  # whose trunk makes them
    # where the similar-image index is kept between runs (db/similar.py); None: MODEL_CACHE_DIR/similar
    similar_index_dir: Optional[Path] = None
    similar_refresh_s: float = Field(2.0, ge=0)  # a search first reads rows older than this

    # --- web viewer (python -m viewer)
    viewer_host: str = "127.0.0.1"
    viewer_port: int = Field(8080, ge=0, le=65535)
    viewer_database_url: Optional[str] = Field(None, repr=False)  # None = DATABASE_URL; better: a vs_viewer login
    viewer_refresh_s: float = Field(3.0, gt=0)  # how often open pages poll for new rows
    viewer_thumbnail_cache: int = Field(1024, ge=0)  # thumbnails kept in memory
    # accounts (viewer/auth.py): a session ends after this long unused, and this long after login
    viewer_session_idle_s: float = Field(8 * 3600, gt=0)
    viewer_session_max_s: float = Field(7 * 86400, gt=0)
    viewer_secure_cookies: bool = False  # Secure cookies even over plain HTTP (TLS ends at a proxy)
    viewer_proxy_hops: int = Field(0, ge=0, le=5)  # proxies in front whose X-Forwarded-For/-Proto to trust

    @field_validator("kafka_security_protocol", "kafka_sasl_mechanism", mode="before")
    @classmethod
    def _upper(cls, v):
        return v.strip().upper() if isinstance(v, str) else v

    @field_validator("model_name")
    @classmethod
    def _model_name(cls, v: str) -> str:
        return check_model_name(v)

    @field_validator(
        "shared_dir", "model_weights", "model_cache_dir", "model_calibration_dir", "similar_index_dir", mode="after"
    )
    @classmethod
    def _expand(cls, v: Optional[Path]) -> Optional[Path]:
        return v.expanduser() if v is not None else None

    @field_validator("model_names", mode="before")
    @classmethod
    def _split_names(cls, v):
        if isinstance(v, str):
            v = [n.strip() for n in v.split(",") if n.strip()] or None
        for name in v or []:
            check_model_name(name)
        if v and len(set(v)) != len(v):
            raise ValueError("a model is named twice")
        return v

    @model_validator(mode="after")
    def _first_model_is_model_name(self) -> Settings:
        if self.model_names:
            self.model_name = self.model_names[0]
        return self

    @property
    def served_models(self) -> list[str]:
        """Every model a worker serves: MODEL_NAMES, else MODEL_NAME alone."""
        return list(self.model_names or [self.model_name])

    @model_validator(mode="after")
    def _replicas(self) -> Settings:
        if self.kafka_min_insync_replicas > self.kafka_replication_factor:
            raise ValueError(
                f"KAFKA_MIN_INSYNC_REPLICAS={self.kafka_min_insync_replicas} exceeds KAFKA_REPLICATION_FACTOR="
                f"{self.kafka_replication_factor}: no write could ever be acknowledged"
            )
        return self

    @property
    def similar_index_path(self) -> Path:
        """SIMILAR_INDEX_DIR, else MODEL_CACHE_DIR/similar."""
        return self.similar_index_dir or self.model_cache_dir / "similar"

    @property
    def builtin_model(self) -> bool:
        """True for torchvision's ImageNet models, False for a registered model of your own."""
        return self.model_name in BUILTIN_MODELS

    def kafka_client_config(self) -> dict[str, str]:
        """librdkafka (confluent-kafka) connection options, security included."""
        cfg = {"bootstrap.servers": self.kafka_bootstrap_servers, "security.protocol": self.kafka_security_protocol}
        if self.kafka_ssl_cafile:
            cfg["ssl.ca.location"] = str(self.kafka_ssl_cafile)
        if self.kafka_ssl_certfile:
            cfg["ssl.certificate.location"] = str(self.kafka_ssl_certfile)
        if self.kafka_ssl_keyfile:
            cfg["ssl.key.location"] = str(self.kafka_ssl_keyfile)
        if self.kafka_sasl_mechanism:
            cfg |= {
                "sasl.mechanism": self.kafka_sasl_mechanism,
                "sasl.username": self.kafka_sasl_username or "",
                "sasl.password": self.kafka_sasl_password.get_secret_value() if self.kafka_sasl_password else "",
            }
        return cfg

    def s3_client(self):
        """A boto3 S3 client (thread-safe) with credentials from boto3's standard chain."""
        import boto3
        from botocore.config import Config

        # "when_required": S3-compatible servers (s3proxy, older MinIO/Ceph) reject the
        # streaming checksums that recent boto3 sends by default.
        config = Config(
            retries={"max_attempts": 3, "mode": "standard"},
            max_pool_connections=max(10, self.s3_max_concurrency),
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            connect_timeout=5,
            read_timeout=30,
        )
        # a session of its own: boto3's default session resolves credentials once per process,
        # so a client made later (other settings, rotated env credentials) would reuse them
        session = boto3.session.Session()
        return session.client(
            "s3",
            endpoint_url=self.s3_endpoint_url,
            region_name=self.s3_region,
            config=config,
            verify=str(self.s3_ca_bundle) if self.s3_ca_bundle else None,
        )


class SettingsError(SystemExit):
    """Invalid settings: a command stops with the variables at fault, not a traceback. The one
    project exception that is not a common.errors.VisionScalingError: it is an exit, which no
    `except Exception` may swallow, and settings sits below common."""


# values never echoed back in an error: they hold passwords
_SECRET_FIELDS = frozenset({"database_url", "viewer_database_url", "kafka_sasl_password"})


def _where(loc: tuple) -> str:
    return ".".join(str(p) for p in loc).upper() or "SETTINGS"


def _given(error: dict) -> str:
    """The value given, unless it is a secret or the whole settings (a check across fields)."""
    loc = error.get("loc") or ()
    if not loc or loc[0] in _SECRET_FIELDS:
        return ""
    return f" (got {error.get('input')!r})"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        problems = "\n".join(f"  {_where(e['loc'])}: {e['msg']}{_given(e)}" for e in exc.errors())
        raise SettingsError(f"invalid settings (environment or .env):\n{problems}") from None

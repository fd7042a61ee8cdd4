"""Every PACKAGESTATS_* setting of the operator, typed, in one place.

Settings come from the environment (the Helm chart sets them from its values). They are read once,
at start-up, and passed down; nothing else in the package reads the environment.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PACKAGESTATS_", frozen=True, extra="ignore")

    # GitHub
    github_url: str = Field("https://github.com", description="Base URL of GitHub's web pages.")
    github_token: SecretStr | None = Field(
        None, description="Optional token sent as a bearer token; set it from a Secret, never from a resource."
    )
    user_agent: str = Field("packagestats (+https://packagestats.dev)", description="HTTP User-Agent.")

    # Fetching
    max_concurrency: int = Field(8, ge=1, le=256, description="Page fetches in flight, in all.")
    max_concurrency_per_host: int = Field(4, ge=1, le=64, description="Page fetches in flight per host.")
    request_timeout_seconds: float = Field(20.0, gt=0, le=300, description="Timeout of one request.")
    max_response_bytes: int = Field(
        8 * 1024 * 1024, ge=64 * 1024, description="Larger pages are refused (bytes)."
    )
    retries: int = Field(3, ge=0, le=10, description="Retries on 5xx and timeouts, with backoff.")
    backoff_seconds: float = Field(1.0, ge=0, le=60, description="First backoff; doubles per retry.")
    max_cooldown_seconds: float = Field(
        900.0, ge=1, description="Upper bound of a 429 cooldown, whatever Retry-After says."
    )
    max_version_pages: int = Field(
        3, ge=0, le=100, description="Versions-list pages read per package (0: only the package page)."
    )
    max_listing_pages: int = Field(
        10, ge=1, le=100, description="Owner listing pages read when spec.packages is empty."
    )

    # Pacing (see pacing.py and the README's "Scheduling and the request budget")
    requests_per_minute: float = Field(
        60.0, gt=0, le=100000,
        description="Requests to GitHub per minute, for the whole process; requests wait for their turn.",
    )
    breaker_cooldown_seconds: float = Field(
        30.0, ge=1, description="First cooldown of a failing host; doubles while it keeps failing."
    )
    versions_every: int = Field(
        6, ge=1, le=1000,
        description="Read the versions list on every Nth scrape of a package (and whenever it published).",
    )
    schedule_spread: float = Field(
        0.1, ge=0, le=1, description="Stable per-resource offset of the schedule, as a fraction of its interval."
    )
    max_parses: int = Field(
        2, ge=1, le=64, description="Parses in flight; the memory limit must exceed this x wasm memory."
    )

    # The wasm sandbox
    wasm_fuel: int = Field(2_000_000_000, ge=1_000_000, description="Fuel (instructions) per parse.")
    wasm_memory_bytes: int = Field(
        256 * 1024 * 1024, ge=2 * 1024 * 1024, description="Linear memory limit per parse (bytes)."
    )
    wasm_timeout_seconds: float = Field(5.0, gt=0, le=120, description="Wall-clock limit per parse.")
    cache_dir: Path | None = Field(
        Path("/tmp/packagestats-cache"),
        description="Where the compiled parser module is cached; empty disables the cache.",
    )

    # Where the parser module comes from (parser_source.py)
    parser_source: str = Field(
        "builtin", pattern=r"^(builtin|file:.+|ocirepository:[a-z0-9-]+/[a-z0-9.-]+)$",
        description="The parser module: `builtin`, `file:PATH` (a mounted ConfigMap or image volume), or "
                    "`ocirepository:NAMESPACE/NAME` (a Flux OCIRepository's artifact).",
    )
    parser_sha256: str = Field(
        "", pattern=r"^([0-9a-f]{64})?$",
        description="Pin: only a module with this sha256 is loaded; empty: any that passes the checks.",
    )
    parser_check_seconds: float = Field(
        30.0, ge=1, le=3600, description="How often a file or OCIRepository source is checked for a new module."
    )

    # Drift alarms (drift.py)
    drift_jump_factor: float = Field(
        10.0, ge=0, description="A total above this many times the last good one is suspect (0: no check)."
    )

    # Status
    history_days: int = Field(
        90, ge=1, le=366, description="Daily points of the total kept in status (the database keeps all)."
    )
    max_versions_in_status: int = Field(
        20, ge=0, le=200,
        description="Per-version download rows read per package; the database keeps them, status at most 5.",
    )

    # History database
    history_url: SecretStr | None = Field(
        None, description="History database: `sqlite:///PATH` or `postgresql://...` (from a Secret); empty: off.",
    )

    # Kubernetes and leader election
    kube_timeout_seconds: float = Field(
        10.0, gt=0, le=300, description="Timeout of each call to the Kubernetes API."
    )
    lease_name: str = Field(
        "packagestats-leader", description="Lease of the leader election; empty: no election (one replica)."
    )
    lease_namespace: str = Field(
        "", description="Namespace of the Lease; empty: the pod's own namespace, else default."
    )
    lease_duration_seconds: float = Field(
        15.0, ge=3, le=300, description="A leader that stops renewing is replaced after this long."
    )
    pod_name: str = Field("", description="Identity in the Lease; empty: hostname and process id.")

    # Serving
    metrics_port: int = Field(8080, ge=0, le=65535, description="Port of Prometheus metrics (0: off).")
    health_port: int = Field(8081, ge=0, le=65535, description="Port of the /healthz probe (0: off).")
    namespaces: str = Field(
        "", description="Comma-separated namespaces to watch; empty: the whole cluster."
    )

    @field_validator("cache_dir", "history_url", mode="before")
    @classmethod
    def _empty_disables(cls, value: object) -> object:
        return None if value == "" else value


def load() -> Settings:
    return Settings()

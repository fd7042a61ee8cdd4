# syntax=docker/dockerfile:1
# The packagestats operator. Build from the repository root:
#   docker build -t ghcr.io/packagestats/packagestats:0.1.0 .
# The parser is rebuilt from wasm/ here (the same cargo command as wasm/build.sh), so the image never
# depends on a prebuilt module in the build context.

ARG RUST_IMAGE=rust:1.96-slim-bookworm
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- The wasm parser -------------------------------------------------------------------------------
# wasm/build.sh's cargo command and flags, minus what only Debian's toolchain needs there (-Zbuild-std,
# Debian's wasi-libc and linker): rustup ships the target's std, libc and rust-lld.
FROM ${RUST_IMAGE} AS wasm
RUN rustup target add wasm32-wasip1
WORKDIR /src/wasm
COPY wasm/ ./
ENV RUSTC_BOOTSTRAP=1 \
    RUSTFLAGS="-C panic=abort -C debuginfo=0 -C strip=symbols -Zlocation-detail=none --remap-path-prefix=/src/wasm=/packagestats/wasm --remap-path-prefix=/usr/local/cargo=/cargo"
RUN cargo build --locked --release --target wasm32-wasip1 --bin packagestats-parser \
 && cp target/wasm32-wasip1/release/packagestats-parser.wasm /parser.wasm

# --- The Python package's source, with the parser in place -------------------------------------------
FROM ${PYTHON_IMAGE} AS source
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src/ src/
COPY --from=wasm /parser.wasm src/packagestats/parser.wasm

# --- The runtime: the installed package and nothing else ---------------------------------------------
FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/tmp \
    PACKAGESTATS_CACHE_DIR=/tmp/packagestats-cache
# The source is mounted for this step only: no layer keeps it.
RUN --mount=type=bind,from=source,source=/src,target=/src,rw \
    pip install --no-cache-dir /src
# A numeric non-root user (no passwd entry needed); the root filesystem may be read-only: everything
# written goes to /tmp (an emptyDir in the Helm chart).
USER 65532:65532
WORKDIR /tmp
EXPOSE 8080 8081
ENTRYPOINT ["packagestats"]
CMD ["run"]

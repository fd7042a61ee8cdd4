# syntax=docker/dockerfile:1
# The packagestats operator. Build from the repository root:
#   docker build -t REGISTRY/packagestats:0.1.0 .      (or: buildah build, `make image` on this project's node)
# The parser stage runs wasm/build.sh itself: the same Debian toolchain and flags as the committed
# src/packagestats/parser.wasm, so the image's module has the same bytes (tests/e2e checks the digest).

ARG DEBIAN_IMAGE=debian:bookworm-slim
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- The wasm parser -------------------------------------------------------------------------------
FROM ${DEBIAN_IMAGE} AS wasm
WORKDIR /src
# build.sh installs Debian's rustc-web, rust-web-src, wasi-libc and lld (a layer of its own, kept while
# only the parser's source changes), then builds std for wasm32-wasip1 and the parser with -Zbuild-std
# and SIMD, exactly as on a developer's machine.
COPY wasm/build.sh wasm/
RUN bash wasm/build.sh --deps
COPY wasm/ wasm/
RUN mkdir -p src/packagestats \
 && bash wasm/build.sh \
 && rm -rf wasm/target /root/.cargo/registry

# --- The installed package, in a virtualenv ----------------------------------------------------------
FROM ${PYTHON_IMAGE} AS venv
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src/ src/
COPY --from=wasm /src/src/packagestats/parser.wasm src/packagestats/parser.wasm
RUN python3 -m venv /opt/packagestats \
 && /opt/packagestats/bin/pip install --no-cache-dir /src

# --- The runtime: the virtualenv and nothing else ----------------------------------------------------
FROM ${PYTHON_IMAGE}
COPY --from=venv /opt/packagestats /opt/packagestats
ENV PATH=/opt/packagestats/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    PACKAGESTATS_CACHE_DIR=/tmp/packagestats-cache
# A numeric non-root user (no passwd entry needed); the root filesystem may be read-only: everything
# written goes to /tmp (an emptyDir in the Helm chart).
USER 65532:65532
WORKDIR /tmp
EXPOSE 8080 8081
ENTRYPOINT ["packagestats"]
CMD ["run"]

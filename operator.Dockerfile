# syntax=docker/dockerfile:1
# AuralGuard operator image: `auralguard/auralguard-operator:<version>`.
#
#   docker build -f operator.Dockerfile -t auralguard/auralguard-operator:0.1.0 .
#
# Same shape as the detector's Dockerfile: compile in the Rust image, run the single binary as
# uid 65532 on a slim Debian. The operator writes nothing to disk, so the Helm chart runs it with
# a read-only root filesystem and no volumes.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p auralguard-operator \
 && install -D -m 0755 target/release/auralguard-operator /out/auralguard-operator

FROM debian:${DEBIAN_RELEASE}-slim
# CA certificates for MLflow over TLS (the API server's CA comes from the service account).
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/auralguard-operator /usr/local/bin/auralguard-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["auralguard-operator"]

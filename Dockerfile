# syntax=docker/dockerfile:1
# Build: docker build -t imagestream-operator:dev .
# Both binaries (imagestream-operator, kubectl-imagestream) end up in /usr/local/bin.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
COPY crds ./crds
RUN cargo build --release --locked --bins \
 && strip target/release/imagestream-operator target/release/kubectl-imagestream

# distroless/cc: glibc and CA certificates, no shell, runs as nonroot (65532).
FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="imagestream-operator" \
      org.opencontainers.image.description="OpenShift-style image streams and image triggers for any Kubernetes cluster" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/imagestream-operator/imagestream-operator"
COPY --from=build /src/target/release/imagestream-operator /usr/local/bin/imagestream-operator
COPY --from=build /src/target/release/kubectl-imagestream /usr/local/bin/kubectl-imagestream
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/imagestream-operator"]
CMD ["run"]

# syntax=docker/dockerfile:1
# imagestack operator image: the operator binary plus the processor Lambda zips it deploys.
#
#   docker build -t imagestack-operator:0.1.0 .
#   kind load docker-image imagestack-operator:0.1.0 --name imagestack
#
# The build commands live in docker/build.sh (and the tool installation in
# docker/install-build-deps.sh), which scripts/check-image-build.sh also runs on machines without a
# Docker engine, so CI exercises exactly what this file builds.
#
# Base images are pinned by tag, not digest; pin digests in your own registry mirror if you need
# bit-for-bit reproducible base layers.

# ---- build: Rust toolchain (>= the workspace's rust-version), cargo-lambda + zig, nasm
FROM docker.io/library/rust:1.95.0-bookworm AS build
ENV IMAGESTACK_BUILD_VENV=/opt/imagestack-build-venv \
    CARGO_TARGET_DIR=/cargo-target \
    CARGO_TERM_COLOR=never
WORKDIR /src
COPY docker/install-build-deps.sh docker/requirements-build.txt docker/
RUN docker/install-build-deps.sh
ENV PATH=/opt/imagestack-build-venv/bin:$PATH
COPY . .
# The cache mounts keep crates and compiled dependencies between builds; the outputs are copied
# out of them into /out by build.sh.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/cargo-target \
    docker/build.sh /out

# ---- runtime: glibc + libgcc only (Debian 12, the same glibc as the build stage), no shell
FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="imagestack-operator" \
      org.opencontainers.image.description="Kubernetes operator for AWS image-optimization stacks (ImageOptimizationStack, imagestack.dev/v1alpha1)" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/ /
# The processor zips the operator deploys as Lambda code (--processor-artifact-dir default).
ENV IMAGESTACK_PROCESSOR_ARTIFACT_DIR=/opt/imagestack/processor
# distroless "nonroot": UID/GID 65532, matching the chart's podSecurityContext.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/operator"]
CMD ["run"]

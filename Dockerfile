# syntax=docker/dockerfile:1
#
# One image for the whole tool: producer, worker and migratectl, static (no libc,
# CGO_ENABLED=0), on distroless/static, which holds CA certificates, tzdata and a
# non-root user and nothing else: no shell, no package manager. Pick the binary
# with the command, e.g. `docker run IMAGE worker --concurrency 32` or, in
# Kubernetes, `command: ["worker"]`. deploy/deploy_test.go checks this file.

ARG GO_VERSION=1.26.8

FROM golang:${GO_VERSION} AS build
WORKDIR /src
# Modules first, so that a change to the code does not download them again.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
# -trimpath: no build-machine paths in the binaries; -s -w: no symbol tables.
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags="-s -w" -o /out/ ./cmd/producer ./cmd/worker ./cmd/migratectl

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/producer /out/worker /out/migratectl /usr/local/bin/
# distroless's nonroot user (65532); Kubernetes' runAsNonRoot needs it numeric.
USER 65532:65532
ENV PATH=/usr/local/bin
# The /healthz, /readyz and /metrics port the manifests and the compose file use
# (the binaries serve it only when --listen / KEYMIGRATE_LISTEN is set).
EXPOSE 9090
CMD ["worker"]

# syntax=docker/dockerfile:1
# The academy-gateway image: a static binary on an empty base, run as a numeric non-root user,
# needing nothing writable (run it with a read-only root filesystem).
#
#   docker build --build-arg VERSION=v1.2.3 --build-arg COMMIT=$(git rev-parse HEAD) -t academy-gateway .
#   docker run --rm academy-gateway version
#
# CI builds the final stage with buildah and a locally built binary standing in for the build
# stage (cmd/academy-gateway/image_test.go), so keep the build stage's output layout (/out) and
# its go build flags in step with that test.

# ---- build: the binary and the CA bundle, in /out -------------------------------------------
FROM golang:1.27-bookworm AS build
ENV GOTOOLCHAIN=go1.27.3 CGO_ENABLED=0 GOFLAGS=-buildvcs=false
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG COMMIT=unknown
RUN mkdir -p /out \
 && go build -trimpath -ldflags "-s -w -X main.version=${VERSION} -X main.commit=${COMMIT}" \
      -o /out/academy-gateway ./cmd/academy-gateway \
 && cp /etc/ssl/certs/ca-certificates.crt /out/ca-certificates.crt

# ---- final: scratch, the binary and the CA bundle -------------------------------------------
FROM scratch
ARG VERSION=dev
ARG COMMIT=unknown
LABEL org.opencontainers.image.title="academy-gateway" \
      org.opencontainers.image.description="Auth gateway: legacy Make App Academy API v1 callers (x-api-key) reach the Academy API v2 (OAuth2) unchanged" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/academy-gateway/academy-gateway" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${COMMIT}"
# The Academy is HTTPS: Go reads the system roots from this file.
COPY --from=build /out/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/academy-gateway /academy-gateway
# 65532 is the conventional "nonroot" id of distroless images; no passwd entry is needed.
USER 65532:65532
# proxy (callers, OAuth2 callback), ops (metrics, health, admin API), auth (forward-auth, when on)
EXPOSE 8080 9090 8082
ENTRYPOINT ["/academy-gateway"]
CMD ["serve"]

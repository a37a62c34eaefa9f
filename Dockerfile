# svcguard's image: a static binary on distroless, running as non-root (uid 65532).
# Not built in CI: this workplace has no container engine.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY cmd cmd
COPY pkg pkg
COPY webhook webhook
ARG VERSION=dev
ARG COMMIT=unknown
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X github.com/svcguard/svcguard/pkg/version.Version=${VERSION} -X github.com/svcguard/svcguard/pkg/version.Commit=${COMMIT}" \
      -o /svcguard ./cmd/svcguard

FROM gcr.io/distroless/static:nonroot
COPY --from=build /svcguard /svcguard
USER 65532:65532
ENTRYPOINT ["/svcguard"]

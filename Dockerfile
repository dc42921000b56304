# Build: docker build -t ssegate .
# Run:   docker run -p 8443:8443 -p 9090:9090 -e SSEGATE_UPSTREAM_URL=http://api:8080 ssegate
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/ssegate ./cmd/ssegate

# distroless/static: no shell, no package manager, CA certificates for an
# https upstream, and a non-root user.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/ssegate /ssegate
# The generated self-signed certificate is kept here; mount a volume to keep
# it across containers, or set SSEGATE_TLS_CERT_FILE/SSEGATE_TLS_KEY_FILE.
ENV SSEGATE_CERT_DIR=/home/nonroot/certs
USER nonroot:nonroot
EXPOSE 8443 9090
ENTRYPOINT ["/ssegate"]

# Production image: the jiraconnect binary only (no Temporal server, no simulator).
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X github.com/jiraconnect/jiraconnect/app.Version=${VERSION}" \
    -o /out/jiraconnect ./cmd/jiraconnect

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/jiraconnect /usr/local/bin/jiraconnect
USER nonroot:nonroot
ENTRYPOINT ["/usr/local/bin/jiraconnect"]

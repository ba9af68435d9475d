# Builds the fleetjobs binary for docker-compose.yml (not exercised on our
# build machines, which have no Docker engine).
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -o /out/fleetjobs ./cmd/fleetjobs

FROM gcr.io/distroless/static-debian12
COPY --from=build /out/fleetjobs /fleetjobs
USER nonroot
ENTRYPOINT ["/fleetjobs"]

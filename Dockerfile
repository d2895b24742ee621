# Build: docker build -t streamfleet .
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -o /out/streamfleet ./cmd/streamfleet

FROM debian:bookworm-slim
COPY --from=build /out/streamfleet /usr/local/bin/streamfleet
# HTTP (pages, WHIP, WHEP, health, metrics) and the one ICE UDP port.
EXPOSE 8080/tcp 8189/udp
ENTRYPOINT ["/usr/local/bin/streamfleet"]
CMD ["node", "--role=origin", "--http=:8080", "--ice-udp=:8189"]

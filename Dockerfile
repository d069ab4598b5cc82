# Zync in a container: one static-ish binary on a slim Debian base.
#
#   docker build -t zync .
#   docker run -p 8080:8080 -p 50000-50099:50000-50099/udp -e ZYNC_SFU_PUBLIC_IP=<host ip> -v zync-data:/var/lib/zync zync
#   docker run -p 8080:8080 -e ZYNC_DATABASE_URL=postgres://... -e ZYNC_HTTP_PUBLIC_URL=https://meet.example.com zync
#   docker run -v ./zync.toml:/etc/zync/zync.toml:ro zync --config /etc/zync/zync.toml

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p zync \
    && install -Dm755 target/release/zync /out/zync

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/zync --create-home zync
COPY --from=build /out/zync /usr/local/bin/zync
COPY config/zync.example.toml /etc/zync/zync.example.toml
USER zync
WORKDIR /var/lib/zync
# Listen on all interfaces inside the container; SQLite lands in
# /var/lib/zync/data unless ZYNC_DATABASE_URL says otherwise.
ENV ZYNC_HTTP_BIND=0.0.0.0:8080 \
    ZYNC_SFU_BIND_IP=0.0.0.0
VOLUME ["/var/lib/zync"]
# HTTP, and the media workers' UDP ports. Set ZYNC_SFU_PUBLIC_IP to the
# address browsers reach (the host's IP), and publish the UDP range:
#   docker run -p 8080:8080 -p 50000-50099:50000-50099/udp -e ZYNC_SFU_PUBLIC_IP=203.0.113.7 zync
EXPOSE 8080 50000-50099/udp
ENTRYPOINT ["/usr/local/bin/zync"]

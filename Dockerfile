# Builds and runs aether on Debian bookworm. Media and database live in the /data volume.
FROM rust:1.95-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev nodejs npm \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The web pages (Vite) are built by build.rs and embedded in the binary.
RUN cd web && npm install --no-save --no-audit --no-fund
RUN cargo build --release --locked --bin aether

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
        libgstreamer1.0-0 libgstreamer-plugins-base1.0-0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good \
        gstreamer1.0-plugins-ugly gstreamer1.0-libav \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home /data aether \
    && mkdir -p /data && chown aether /data
COPY --from=build /src/target/release/aether /usr/local/bin/aether
USER aether
ENV AETHER_DATA_DIR=/data
EXPOSE 8080 1935
VOLUME /data
HEALTHCHECK CMD ["/usr/local/bin/aether", "check"]
ENTRYPOINT ["/usr/local/bin/aether"]
CMD ["serve"]

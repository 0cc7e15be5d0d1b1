# Ferry's binaries in one image (used by docker-compose.yml for the registry).
FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends cmake libssl-dev libsasl2-dev zlib1g-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bins && \
    find target/release -maxdepth 1 -type f -executable -name 'ferry*' -exec cp {} /usr/local/bin/ \;

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates libssl3 libsasl2-2 && rm -rf /var/lib/apt/lists/*
COPY --from=build /usr/local/bin/ferry* /usr/local/bin/

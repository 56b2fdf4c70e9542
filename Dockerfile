# Multi-stage build of the starling image on a machine that reaches a container registry. CI has
# none, so `scripts/image.sh` builds the same runtime layers there (a Debian slim root with
# nftables and ca-certificates made by mmdebstrap, then the binary) and runs them with runc;
# tests/dockerfile.rs keeps the two in step. See README "Deployment".
FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends protobuf-compiler libprotobuf-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY crates ./crates
COPY benches ./benches
COPY deploy ./deploy
RUN cargo build --release --locked --bin starling

FROM debian:bookworm-slim
# nftables: natOutgoing rules are applied as one atomic `nft -f` transaction; libnftables1
# (nft's library, loaded by the daemon) runs policy transactions in-process.
RUN apt-get update && apt-get install -y --no-install-recommends nftables libnftables1 ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/starling /usr/local/bin/starling
ENTRYPOINT ["/usr/local/bin/starling"]
CMD ["run"]

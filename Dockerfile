# The pg2bq image a sharded run's workers (Cloud Run Jobs, Kubernetes Indexed Jobs) and its
# coordinator run: the release binary on a slim Debian, as a non-root user.
#   docker build -t pg2bq .
#   docker run --rm pg2bq work --plan gs://BUCKET/prefix/RUN/plan.json
# Without a container engine, `OPENSSL_NO_VENDOR=1 cargo build --release --locked` builds the
# same binary (docs/distributed.md).

FROM rust:1.95-slim-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends pkg-config libssl-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The system OpenSSL (libssl3 in the runtime image) instead of building one from source.
ENV OPENSSL_NO_VENDOR=1
RUN cargo build --release --locked && cp target/release/pg2bq /usr/local/bin/pg2bq

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates libssl3 && rm -rf /var/lib/apt/lists/*
COPY --from=build /usr/local/bin/pg2bq /usr/local/bin/pg2bq
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/pg2bq"]
CMD ["--help"]

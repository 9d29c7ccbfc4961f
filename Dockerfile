# The jetsource binary in a small image. Built by compose.yaml; by hand:
#   docker build -t jetsource .
#   docker run --rm -e JETSOURCE_NATS_URL=nats://host:4222 jetsource run
# The image has no embedded nats-server: set JETSOURCE_NATS_URL (or [nats] url).

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin jetsource

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 jetsource
COPY --from=build /src/target/release/jetsource /usr/local/bin/jetsource
COPY config/jetsource.toml /etc/jetsource/jetsource.toml
ENV JETSOURCE_CONFIG=/etc/jetsource/jetsource.toml \
    JETSOURCE_METRICS_ADDR=0.0.0.0:9464 \
    JETSOURCE_LOG_FORMAT=json
USER jetsource
WORKDIR /home/jetsource
EXPOSE 9464
ENTRYPOINT ["jetsource"]
CMD ["run"]

# syncline as a container image: the release binary on a slim Debian, run as an unprivileged
# user. Build from the workspace root: docker build -t syncline .
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p syncline && cp target/release/syncline /usr/local/bin/syncline

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home /var/lib/syncline --create-home syncline
COPY --from=build /usr/local/bin/syncline /usr/local/bin/syncline
USER syncline
WORKDIR /var/lib/syncline
# the config and its secrets come from outside: mount /etc/syncline, pass tokens as env
ENV SYNCLINE_CONFIG=/etc/syncline/syncline.yaml
EXPOSE 8080
# SIGTERM drains (serve.drain) and hands the rest back; give it a grace period above that
STOPSIGNAL SIGTERM
ENTRYPOINT ["syncline", "--log-format", "json"]
CMD ["serve"]

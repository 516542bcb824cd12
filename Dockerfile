# A small non-root image holding only the ticketd binary. Protos compile with protox at
# build time, so no protoc is needed.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY proto proto
COPY migrations migrations
COPY src src
RUN cargo build --release --locked --bin ticketd \
 && strip target/release/ticketd

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/ticketd /usr/local/bin/ticketd
USER 65532:65532
EXPOSE 50051 9090
ENV TICKETD_LISTEN=0.0.0.0:50051 TICKETD_LOG_FORMAT=json
ENTRYPOINT ["/usr/local/bin/ticketd"]
CMD ["serve"]

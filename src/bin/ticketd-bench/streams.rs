//! Streams under load: live watchers, idle delivery streams, fan-out latency.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ticketd::grpc::pb::{self};
use tokio_stream::StreamExt;
use tonic::metadata::MetadataValue;

use crate::*;

/// A WatchTickets client that counts responses without decoding them. The bench's watchers
/// stand in for remote clients; decoding every message here would spend the two cores the
/// server is being measured on.
#[derive(Clone, Copy)]
pub(crate) struct CountingCodec;

pub(crate) struct RequestEncoder;

pub(crate) struct SkippingDecoder;

impl tonic::codec::Encoder for RequestEncoder {
    type Item = pb::WatchTicketsRequest;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: Self::Item,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), Self::Error> {
        prost::Message::encode(&item, dst).map_err(|e| tonic::Status::internal(e.to_string()))
    }
}

impl tonic::codec::Decoder for SkippingDecoder {
    type Item = usize;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Self::Item>, Self::Error> {
        use prost::bytes::Buf;
        let length = src.remaining();
        src.advance(length);
        Ok(Some(length))
    }
}

impl tonic::codec::Codec for CountingCodec {
    type Encode = pb::WatchTicketsRequest;
    type Decode = usize;
    type Encoder = RequestEncoder;
    type Decoder = SkippingDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        RequestEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        SkippingDecoder
    }
}

/// `count` watchers that follow the log from its current end with `filter`, counting what
/// they receive into `received`.
pub(crate) async fn live_watchers(
    server: &Server,
    count: usize,
    filter: &str,
    received: Arc<AtomicU64>,
) -> Vec<tokio::task::JoinHandle<()>> {
    live_watchers_on(
        server,
        std::slice::from_ref(&server.channel),
        count,
        filter,
        received,
    )
    .await
}

/// [`live_watchers`] spread over `channels` in turn (one HTTP/2 connection carries at most
/// the server's stream limit, and the load's calls need room beside them).
pub(crate) async fn live_watchers_on(
    server: &Server,
    channels: &[tonic::transport::Channel],
    count: usize,
    filter: &str,
    received: Arc<AtomicU64>,
) -> Vec<tokio::task::JoinHandle<()>> {
    // The newest event's cursor: the activity of a ticket created just now.
    let mut client = server.client();
    let marker = client.create_ticket(ticket(0)).await.expect("create");
    let marker_id = marker.into_inner().ticket.expect("ticket").id;
    let from = client
        .list_activity(pb::ListActivityRequest {
            ticket_id: marker_id,
            ..Default::default()
        })
        .await
        .expect("activity")
        .into_inner()
        .entries
        .last()
        .map_or(0, |e| e.cursor);
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(
        "/ticketd.v1.TicketService/WatchTickets",
    );
    let bearer: MetadataValue<tonic::metadata::Ascii> =
        format!("Bearer {}", server.secret).parse().unwrap();
    let mut handles = Vec::new();
    for n in 0..count {
        let mut grpc = tonic::client::Grpc::new(channels[n % channels.len()].clone());
        grpc.ready().await.expect("channel ready");
        let mut request = tonic::Request::new(pb::WatchTicketsRequest {
            filter: filter.to_owned(),
            after_cursor: from,
        });
        request
            .metadata_mut()
            .insert("authorization", bearer.clone());
        let mut stream = grpc
            .server_streaming(request, path.clone(), CountingCodec)
            .await
            .expect("watch")
            .into_inner();
        let received = received.clone();
        handles.push(tokio::spawn(async move {
            while let Some(Ok(_)) = stream.next().await {
                received.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    handles
}

/// CreateTicket throughput with `count` idle `SubscribeChannel` streams open (nothing is
/// ever queued for them), against the same load without them right before and after.
pub(crate) async fn idle_delivery_streams(
    server: &Server,
    args: &Args,
    count: usize,
    backend: &str,
) -> Row {
    // A short run first lets whatever the previous scenario left behind settle (the
    // fan-out's thousand watchers take a moment to go).
    create_throughput(server, args.clients, 2, None).await;
    let (before, _) = create_throughput(server, args.clients, args.seconds, None).await;
    let gateway = pb::escalation_service_client::EscalationServiceClient::with_interceptor(
        server.channel.clone(),
        Bearer(format!("Bearer {}", server.secret).parse().unwrap()),
    );
    let mut streams = Vec::with_capacity(count);
    for i in 0..count {
        let mut c = gateway.clone();
        let stream = c
            .subscribe_channel(pb::SubscribeChannelRequest {
                channel: pb::Channel::Sms as i32,
                // A few gateway deployments, each with several subscribers.
                consumer_group: format!("gateway-{}", i % 8),
            })
            .await
            .expect("subscribe")
            .into_inner();
        streams.push(tokio::spawn(async move {
            let mut stream = stream;
            while let Some(Ok(_)) = stream.next().await {}
        }));
    }
    let (with_streams, _) = create_throughput(server, args.clients, args.seconds, None).await;
    for s in streams {
        s.abort();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (after, _) = create_throughput(server, args.clients, args.seconds, None).await;
    let without = (before + after) / 2.0;
    Row {
        scenario: format!("CreateTicket with {count} idle SubscribeChannel streams, {backend}"),
        value: format!("{with_streams:.0}/s"),
        baseline: format!("{without:.0}/s without ({before:.0} before, {after:.0} after)"),
        ratio: format!("{:.2}x", with_streams / without),
        target: ">= 0.95x".into(),
    }
}

/// Commit-to-receive latency: writers add notes at `rate` per second in total while
/// `count` watchers follow; each watcher measures now - event.created_at.
pub(crate) async fn fan_out(
    server: &Server,
    count: usize,
    rate: f64,
    seconds: u64,
) -> (f64, usize) {
    fan_out_across(server, server, count, rate, seconds).await
}

/// CreateTicket beside 100 watchers, first of an agent's own tickets (following the log,
/// but none of the new events is theirs), then of every event. Runs without watchers and
/// with them alternate (without, then three turns of with and without), and the medians
/// are compared, so a drift in the machine's speed does not land on one side of the ratio.
pub(crate) async fn watcher_costs(server: &Server, args: &Args) -> Vec<Row> {
    let mut rows = Vec::new();
    let nobody = uuid::Uuid::new_v4();
    // Ten connections of ten watchers each, as ten consoles would hold them.
    let mut ten = Vec::new();
    for _ in 0..10 {
        ten.push(
            tonic::transport::Channel::from_shared(format!("http://{}", server.addr))
                .expect("uri")
                .connect()
                .await
                .expect("connect"),
        );
    }
    for (label, filter, target, connections) in [
        (
            "an agent's own tickets",
            format!(r#"assignee_id = "{nobody}""#),
            ">= 0.95x",
            1,
        ),
        ("every event", String::new(), ">= 0.9x", 1),
        (
            "every event, over 10 connections",
            String::new(),
            ">= 0.9x",
            10,
        ),
    ] {
        let received = Arc::new(AtomicU64::new(0));
        let channels = if connections == 1 {
            std::slice::from_ref(&server.channel)
        } else {
            &ten[..]
        };
        let (mut without, mut cpu_without) = (Vec::new(), Vec::new());
        let (mut with_watchers, mut cpu_with) = (Vec::new(), Vec::new());
        let (mut server_without, mut server_with) = (Vec::new(), Vec::new());
        let (rate, cpu) = creates_with_cpu(server, args.clients, args.seconds).await;
        without.push(rate);
        cpu_without.extend(cpu.all);
        server_without.extend(cpu.server);
        for _ in 0..3 {
            let watching = live_watchers_on(server, channels, 100, &filter, received.clone()).await;
            let (rate, cpu) = creates_with_cpu(server, args.clients, args.seconds).await;
            with_watchers.push(rate);
            cpu_with.extend(cpu.all);
            server_with.extend(cpu.server);
            for w in watching {
                w.abort();
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            let (rate, cpu) = creates_with_cpu(server, args.clients, args.seconds).await;
            without.push(rate);
            cpu_without.extend(cpu.all);
            server_without.extend(cpu.server);
        }
        // What each delivery costs (the server's side and the watchers' client side): the
        // CPU per create beyond the runs without watchers, spread over the deliveries per
        // create; and the server's part alone when it runs in a process of its own.
        let deliveries = received.load(Ordering::Relaxed);
        let creates_watched: f64 = with_watchers.iter().sum::<f64>() * args.seconds as f64;
        let per_create = deliveries as f64 / creates_watched;
        let extra_per_create = turns(&cpu_with).0 - turns(&cpu_without).0;
        let server_extra = turns(&server_with).0 - turns(&server_without).0;
        // Two medians of noisy runs: a difference below zero is noise, not a saving.
        let mut cost = match deliveries {
            _ if extra_per_create.is_nan() => "CPU unreadable".to_owned(),
            _ if extra_per_create <= 0.0 => "no CPU beyond the runs' noise".to_owned(),
            0 => format!("{extra_per_create:.0} µs of CPU more per create"),
            _ => format!("{:.1} µs of CPU each", extra_per_create / per_create),
        };
        // The server's part, when it runs apart: a difference of other medians, so it may
        // fall outside the total's by noise, and is then not given.
        if extra_per_create > 0.0 && server.pid.is_some() {
            cost += &match deliveries {
                _ if server_extra.is_nan() => ", the server's CPU unreadable".to_owned(),
                _ if !(0.0..=extra_per_create).contains(&server_extra) => {
                    ", the server's part within the runs' noise".to_owned()
                }
                0 => format!(", {server_extra:.0} of them in ticketd"),
                _ => format!(", {:.1} of them in ticketd", server_extra / per_create),
            };
        }
        let (with_watchers, with_runs) = turns(&with_watchers);
        let (without, without_runs) = turns(&without);
        let apart = match server.pid {
            Some(_) => ", ticketd in a process of its own",
            None => "",
        };
        rows.push(Row {
            scenario: format!("CreateTicket with 100 watchers of {label}{apart}"),
            value: format!(
                "{with_watchers:.0}/s (median of {with_runs}; {deliveries} deliveries over the \
                 3, {cost})"
            ),
            baseline: match turns(&server_without).0 {
                cpu if cpu.is_nan() => format!("{without:.0}/s without (median of {without_runs})"),
                cpu => format!(
                    "{without:.0}/s without (median of {without_runs}; {cpu:.0} µs of CPU per \
                     create in ticketd)"
                ),
            },
            ratio: format!("{:.2}x", with_watchers / without),
            target: target.into(),
        });
    }

    rows
}

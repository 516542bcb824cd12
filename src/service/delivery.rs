//! The outbound side of the conversation bridge: channel gateways take messages from a
//! durable work queue, one subscriber of a consumer group at a time, and report back.

use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use tokio::sync::watch;
use tracing::Instrument;
use uuid::Uuid;

use super::streams::{
    self, GaugeGuard, Sent, StreamEnd, StreamGauge, StreamKind, StreamOutput, Wake,
};
use super::watch::StreamSettings;
use super::{ServiceError, ServiceResult, now};
use crate::domain::auth::Principal;
use crate::domain::delivery::{
    DEFAULT_CONSUMER_GROUP, DeliveryOutcome, DeliveryStatus, LeasedMessage,
};
use crate::domain::event::{EventKind, EventPayload, NewEvent, Visibility};
use crate::domain::ticket::Channel;
use crate::domain::validation::Violations;
use crate::events::Bus;
use crate::store::{Store, TicketKey};

/// Messages leased per query.
const BATCH: i64 = 16;
const MAX_GROUP_CHARS: usize = 128;
const MAX_PROVIDER_TEXT_CHARS: usize = 2_048;

#[derive(Clone)]
pub struct DeliveryService {
    store: Arc<dyn Store>,
    bus: Bus,
    shutdown: watch::Receiver<bool>,
    gauge: Arc<StreamGauge>,
    settings: StreamSettings,
    lease: Duration,
}

fn group_name(group: &str, v: &mut Violations) -> String {
    let group = group.trim();
    if group.is_empty() {
        return DEFAULT_CONSUMER_GROUP.to_owned();
    }
    v.line("consumer_group", group, false, MAX_GROUP_CHARS);
    group.to_owned()
}

impl DeliveryService {
    pub fn new(
        store: Arc<dyn Store>,
        bus: Bus,
        shutdown: watch::Receiver<bool>,
        gauge: Arc<StreamGauge>,
        settings: StreamSettings,
        lease: Duration,
    ) -> Self {
        Self {
            store,
            bus,
            shutdown,
            gauge,
            settings,
            lease,
        }
    }

    /// Streams the messages queued for `channel` to this subscriber of `group`. Each is
    /// leased to it until acknowledged or until the lease runs out; if the stream ends
    /// first, its unacknowledged messages go back to the queue at once.
    pub fn subscribe(
        &self,
        principal: &Principal,
        channel: Option<Channel>,
        group: &str,
    ) -> ServiceResult<StreamOutput<LeasedMessage>> {
        let mut v = Violations::new();
        if channel.is_none() {
            v.add("channel", "is required");
        }
        let group = group_name(group, &mut v);
        v.finish()?;
        if let Some(channel) = channel {
            ensure_channel(principal, channel)?;
        }
        let (sender, output) = streams::channel(self.settings.buffer.min(64), self.settings.stall);
        let producer = Producer {
            store: self.store.clone(),
            commits: self.bus.subscribe(),
            shutdown: self.shutdown.clone(),
            channel: channel.unwrap_or(Channel::Chat),
            group,
            lease_id: Uuid::now_v7(),
            lease: TimeDelta::from_std(self.lease).unwrap_or(TimeDelta::seconds(30)),
            poll: self.settings.poll,
            _gauge: GaugeGuard::new(self.gauge.clone(), StreamKind::Delivery),
        };
        // The stream's span is a child of the call's, so deliveries join its trace.
        tokio::spawn(
            producer
                .run(sender)
                .instrument(tracing::info_span!("delivery_stream")),
        );
        Ok(output)
    }

    /// Records a gateway's outcome for a message. Repeating an acknowledgement is harmless:
    /// the first outcome stands and the current status is returned.
    pub async fn acknowledge(
        &self,
        principal: &Principal,
        message_id: Uuid,
        group: &str,
        outcome: Option<DeliveryOutcome>,
        provider_message_id: &str,
        error: &str,
    ) -> ServiceResult<DeliveryStatus> {
        let mut v = Violations::new();
        let group = group_name(group, &mut v);
        if outcome.is_none() {
            v.add("outcome", "is required");
        }
        v.line(
            "provider_message_id",
            provider_message_id,
            false,
            MAX_PROVIDER_TEXT_CHARS,
        );
        v.text("error", error, false, MAX_PROVIDER_TEXT_CHARS);
        v.finish()?;
        let outcome = outcome.unwrap_or(DeliveryOutcome::Delivered);
        let message = self
            .store
            .outbound_message(message_id)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("message {message_id}")))?;
        ensure_channel(principal, message.channel)?;
        let ticket = self
            .store
            .ticket(TicketKey::Id(message.ticket_id))
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("ticket {}", message.ticket_id)))?;
        let mut receipt = NewEvent::about(
            &ticket,
            EventKind::DeliveryReceipt,
            principal.actor(),
            Visibility::Internal,
            EventPayload::DeliveryReceipt {
                message_id,
                consumer_group: group.clone(),
                outcome: outcome.as_str().to_owned(),
                provider_message_id: provider_message_id.to_owned(),
                error: error.to_owned(),
                attempts: 0,
            },
            now(),
        );
        receipt.ticket.channel = Some(message.channel);
        let acked = self
            .store
            .ack_delivery(
                message_id,
                &group,
                outcome,
                provider_message_id,
                error,
                receipt,
            )
            .await?
            .ok_or_else(|| {
                ServiceError::NotFound(format!(
                    "message {message_id} was never delivered to consumer group {group:?}"
                ))
            })?;
        if acked.receipt.is_some() {
            metrics::counter!(
                "ticketd_outbound_messages_total",
                "state" => outcome.status().as_str().to_ascii_lowercase(),
                "channel" => message.channel.as_str()
            )
            .increment(1);
            let latency = (now() - message.created_at).to_std().unwrap_or_default();
            metrics::histogram!("ticketd_delivery_latency_seconds", "channel" => message.channel.as_str())
                .record(latency.as_secs_f64());
        }
        Ok(acked.status)
    }
}

/// Gateway keys may be limited to some channels.
pub(crate) fn ensure_channel(principal: &Principal, channel: Channel) -> ServiceResult<()> {
    if principal.may_use(channel) {
        Ok(())
    } else {
        Err(ServiceError::PermissionDenied(format!(
            "this key may not serve the {channel} channel"
        )))
    }
}

struct Producer {
    store: Arc<dyn Store>,
    commits: watch::Receiver<u64>,
    shutdown: watch::Receiver<bool>,
    channel: Channel,
    group: String,
    lease_id: Uuid,
    lease: TimeDelta,
    poll: Duration,
    _gauge: GaugeGuard,
}

impl Producer {
    async fn run(mut self, sender: streams::StreamSender<LeasedMessage>) {
        self.deliver(&sender).await;
        // Whatever this subscriber still holds goes back to the queue for the others.
        if let Err(err) = self.store.release_lease(self.lease_id, now()).await {
            tracing::warn!(error = %err, "leases not released; they expire on their own");
        }
    }

    async fn deliver(&mut self, sender: &streams::StreamSender<LeasedMessage>) {
        loop {
            self.commits.mark_unchanged();
            if sender.is_closed() {
                return;
            }
            let at = now();
            let leased = match self
                .store
                .lease_messages(
                    self.channel,
                    &self.group,
                    self.lease_id,
                    at,
                    at + self.lease,
                    BATCH,
                )
                .await
            {
                Ok(leased) => leased,
                Err(err) => {
                    tracing::warn!(error = %err, "delivery stream read failed");
                    sender.finish(StreamEnd::Unavailable { cursor: 0 });
                    return;
                }
            };
            let full = leased.len() as i64 == BATCH;
            if !leased.is_empty() {
                metrics::counter!(
                    "ticketd_outbound_messages_total",
                    "state" => "leased",
                    "channel" => self.channel.as_str()
                )
                .increment(leased.len() as u64);
            }
            for message in leased {
                let span = tracing::info_span!(
                    "deliver",
                    message_id = %message.message.id,
                    attempt = message.attempt
                );
                match sender.send(message).instrument(span).await {
                    Sent::Ok => {}
                    Sent::Closed => return,
                    Sent::Stalled => {
                        sender.finish(StreamEnd::FellBehind { cursor: 0 });
                        return;
                    }
                }
            }
            if full {
                continue;
            }
            match streams::wait(&mut self.commits, &mut self.shutdown, sender, self.poll).await {
                Wake::Look => {}
                Wake::ShuttingDown => {
                    sender.finish(StreamEnd::ShuttingDown { cursor: 0 });
                    return;
                }
                Wake::ClientGone => return,
            }
        }
    }
}

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
use super::{ServiceError, ServiceResult};
use crate::clock::Clock;
use crate::domain::auth::Principal;
use crate::domain::delivery::{
    Acknowledgement, DEFAULT_CONSUMER_GROUP, DeliveryOutcome, DeliveryStatus, LeasedMessage,
};
use crate::domain::email::{EMAIL_SOURCE, Mailbox};
use crate::domain::event::{EventKind, EventPayload, NewEvent, Visibility};
use crate::domain::ticket::Channel;
use crate::domain::validation::Violations;
use crate::events::Bus;
use crate::store::{Store, TicketKey};

/// Messages leased per query.
const BATCH: i64 = 16;
const MAX_GROUP_CHARS: usize = 128;
const MAX_PROVIDER_TEXT_CHARS: usize = 2_048;
/// Consumer groups per channel: each one multiplies the rows every outbound message
/// writes.
pub const MAX_GROUPS_PER_CHANNEL: i64 = 64;
/// An idle stream looks at the queue this often even without a wake-up (a lost
/// cross-replica notification only delays it this much).
const IDLE_RECHECK: Duration = Duration::from_secs(30);
/// An open stream marks its group as seen this often at most, and at least four times
/// within the idle window, so the group never expires while a stream is open.
const SEEN_EVERY: TimeDelta = TimeDelta::hours(1);
/// The most messages one claim leases.
const MAX_CLAIM: i32 = 100;
/// The longest a claim waits for a message: well inside the default request timeout
/// (30 s), which would otherwise end the call first.
const MAX_CLAIM_WAIT: std::time::Duration = std::time::Duration::from_secs(25);

/// An email's threading headers, for the gateway that sends it.
fn with_threading(mailbox: &Mailbox, mut message: LeasedMessage) -> LeasedMessage {
    if message.message.channel == Channel::Email {
        let m = &message.message;
        let answering = (m.source == EMAIL_SOURCE).then_some(m.conversation_id.as_str());
        message.email = Some(mailbox.threading(m.id, m.ticket_id, answering));
    }
    message
}

#[derive(Clone)]
pub struct DeliveryService {
    store: Arc<dyn Store>,
    bus: Bus,
    shutdown: watch::Receiver<bool>,
    gauge: Arc<StreamGauge>,
    settings: DeliverySettings,
    clock: Clock,
}

#[derive(Debug, Clone)]
pub struct DeliverySettings {
    pub streams: StreamSettings,
    /// How long a subscriber holds a message before it is offered again.
    pub lease: Duration,
    /// A consumer group no subscriber has opened for this long expires.
    pub group_idle: Duration,
    /// The support mailbox outbound email threads under.
    pub mailbox: Mailbox,
    /// Attachments larger than this go out by id and size, not inline.
    pub inline_attachment_bytes: usize,
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
        settings: DeliverySettings,
        clock: Clock,
    ) -> Self {
        Self {
            clock,
            store,
            bus,
            shutdown,
            gauge,
            settings,
        }
    }

    fn group_idle(&self) -> TimeDelta {
        TimeDelta::from_std(self.settings.group_idle).unwrap_or(TimeDelta::days(7))
    }

    /// Forgets consumer groups that stayed idle past their window, with what was still
    /// queued for them.
    pub async fn expire_idle_groups(&self) {
        let at = self.clock.now();
        match self
            .store
            .expire_consumer_groups(at - self.group_idle(), at)
            .await
        {
            Ok(0) => {}
            Ok(expired) => tracing::info!(expired, "idle consumer groups expired"),
            Err(err) => tracing::warn!(error = %err, "idle consumer groups not expired"),
        }
    }

    /// Registers (or refreshes) `group` as a consumer of the caller's `channel`, checked
    /// to be present (the caller adds the violation when it is not).
    async fn join_group(
        &self,
        principal: &Principal,
        channel: Option<Channel>,
        group: &str,
    ) -> ServiceResult<Channel> {
        let channel = channel.unwrap_or(Channel::Chat);
        ensure_channel(principal, channel)?;
        let registered = self
            .store
            .register_consumer(channel, group, self.clock.now(), MAX_GROUPS_PER_CHANNEL)
            .await?;
        if !registered {
            return Err(ServiceError::ResourceExhausted(format!(
                "the {channel} channel has {MAX_GROUPS_PER_CHANNEL} consumer groups; \
                 use one of them, or let unused ones expire"
            )));
        }
        Ok(channel)
    }

    /// Streams the messages queued for `channel` to this subscriber of `group`. Each is
    /// leased to it until acknowledged or until the lease runs out; if the stream ends
    /// first, its unacknowledged messages go back to the queue at once.
    pub async fn subscribe(
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
        let channel = self.join_group(principal, channel, &group).await?;
        let settings = &self.settings.streams;
        let (sender, output) = streams::channel(settings.buffer.min(64), settings.stall);
        let producer = Producer {
            store: self.store.clone(),
            clock: self.clock.clone(),
            queued: self.bus.subscribe_queued(channel),
            shutdown: self.shutdown.clone(),
            channel,
            group,
            lease_id: Uuid::now_v7(),
            lease: TimeDelta::from_std(self.settings.lease).unwrap_or(TimeDelta::seconds(30)),
            seen_at: self.clock.now(),
            seen_every: (self.group_idle() / 4).min(SEEN_EVERY),
            poll: settings.poll,
            mailbox: self.settings.mailbox.clone(),
            inline_bytes: i64::try_from(self.settings.inline_attachment_bytes).unwrap_or(i64::MAX),
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

    /// Leases up to `max` queued messages of `channel` to `group` at once, waiting up to
    /// `wait` for the first when none is queued (a long poll). Leases run their full
    /// time: one not acknowledged by then is handed out again.
    pub async fn claim(
        &self,
        principal: &Principal,
        channel: Option<Channel>,
        group: &str,
        max: i32,
        wait: std::time::Duration,
    ) -> ServiceResult<Vec<LeasedMessage>> {
        let mut v = Violations::new();
        if channel.is_none() {
            v.add("channel", "is required");
        }
        let group = group_name(group, &mut v);
        let limit = match max {
            0 => 10,
            1..=MAX_CLAIM => i64::from(max),
            _ => {
                v.add("max_messages", format!("must be between 0 and {MAX_CLAIM}"));
                0
            }
        };
        if wait > MAX_CLAIM_WAIT {
            v.add("wait", "must be at most 25 s");
        }
        v.finish()?;
        let channel = self.join_group(principal, channel, &group).await?;
        let mut queued = self.bus.subscribe_queued(channel);
        let lease = TimeDelta::from_std(self.settings.lease).unwrap_or(TimeDelta::seconds(30));
        let inline_bytes = i64::try_from(self.settings.inline_attachment_bytes).unwrap_or(i64::MAX);
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let at = self.clock.now();
            let leased = self
                .store
                .lease_messages(
                    channel,
                    &group,
                    Uuid::now_v7(),
                    at,
                    at + lease,
                    crate::store::LeaseBatch {
                        limit,
                        inline_bytes,
                    },
                )
                .await?;
            if !leased.is_empty() || tokio::time::Instant::now() >= deadline {
                metrics::counter!(
                    "ticketd_outbound_messages_total",
                    "state" => "leased",
                    "channel" => channel.as_str()
                )
                .increment(leased.len() as u64);
                return Ok(leased
                    .into_iter()
                    .map(|m| with_threading(&self.settings.mailbox, m))
                    .collect());
            }
            // A commit that queues a message for the channel, the fallback poll, or the
            // end of the wait.
            tokio::select! {
                _ = queued.changed() => {}
                () = tokio::time::sleep(self.settings.streams.poll) => {}
                () = tokio::time::sleep_until(deadline) => {}
            }
        }
    }

    /// Records a gateway's outcome for a message, if the caller holds its lease.
    /// Repeating an acknowledgement is harmless: the first outcome stands and the current
    /// status is returned.
    pub async fn acknowledge(
        &self,
        principal: &Principal,
        input: AckInput,
    ) -> ServiceResult<DeliveryStatus> {
        let mut v = Violations::new();
        let group = group_name(&input.consumer_group, &mut v);
        if input.outcome.is_none() {
            v.add("outcome", "is required");
        }
        if input.lease_id.is_none() {
            v.add(
                "lease_id",
                "is required: the lease_id the message was delivered with",
            );
        }
        v.line(
            "provider_message_id",
            &input.provider_message_id,
            false,
            MAX_PROVIDER_TEXT_CHARS,
        );
        v.text("error", &input.error, false, MAX_PROVIDER_TEXT_CHARS);
        v.finish()?;
        let (Some(outcome), Some(lease_id)) = (input.outcome, input.lease_id) else {
            return Err(ServiceError::invalid("outcome", "is required"));
        };
        let ack = Acknowledgement {
            message_id: input.message_id,
            consumer_group: group,
            lease_id,
            outcome,
            provider_message_id: input.provider_message_id,
            error: input.error,
        };
        let message_id = ack.message_id;
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
                consumer_group: ack.consumer_group.clone(),
                outcome: outcome.as_str().to_owned(),
                provider_message_id: ack.provider_message_id.clone(),
                error: ack.error.clone(),
                attempts: 0,
            },
            self.clock.now(),
        );
        receipt.ticket.channel = Some(message.channel);
        let group = &ack.consumer_group;
        let acked = self
            .store
            .ack_delivery(&ack, receipt)
            .await?
            .ok_or_else(|| {
                ServiceError::NotFound(format!(
                    "message {message_id} was never delivered to consumer group {group:?}"
                ))
            })?;
        if acked.receipt.is_none()
            && matches!(
                acked.status,
                DeliveryStatus::Queued | DeliveryStatus::Leased
            )
        {
            return Err(ServiceError::FailedPrecondition(format!(
                "message {message_id} is no longer leased under {lease_id} in consumer group \
                 {group:?}: its lease passed on, and the message is offered again"
            )));
        }
        if acked.receipt.is_some() {
            metrics::counter!(
                "ticketd_outbound_messages_total",
                "state" => outcome.status().as_str().to_ascii_lowercase(),
                "channel" => message.channel.as_str()
            )
            .increment(1);
            let latency = (self.clock.now() - message.created_at)
                .to_std()
                .unwrap_or_default();
            metrics::histogram!("ticketd_delivery_latency_seconds", "channel" => message.channel.as_str())
                .record(latency.as_secs_f64());
        }
        Ok(acked.status)
    }
}

/// An acknowledgement as a gateway sends it.
#[derive(Debug, Clone)]
pub struct AckInput {
    pub message_id: Uuid,
    /// Empty means the default group.
    pub consumer_group: String,
    pub lease_id: Option<Uuid>,
    pub outcome: Option<DeliveryOutcome>,
    pub provider_message_id: String,
    pub error: String,
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
    clock: Clock,
    /// Wakes when messages of this channel may have become claimable.
    queued: watch::Receiver<u64>,
    shutdown: watch::Receiver<bool>,
    channel: Channel,
    group: String,
    lease_id: Uuid,
    lease: TimeDelta,
    /// When this stream last marked its group as seen, and how often it does.
    seen_at: chrono::DateTime<chrono::Utc>,
    seen_every: TimeDelta,
    /// How soon to look again when another subscriber is claiming at the same time.
    poll: Duration,
    mailbox: Mailbox,
    /// Attachments past this size are sent by reference, for `GetAttachment`.
    inline_bytes: i64,
    _gauge: GaugeGuard,
}

impl Producer {
    async fn run(mut self, sender: streams::StreamSender<LeasedMessage>) {
        self.deliver(&sender).await;
        // Whatever this subscriber still holds goes back to the queue for the others.
        if let Err(err) = self
            .store
            .release_lease(self.lease_id, self.channel, self.clock.now())
            .await
        {
            tracing::warn!(error = %err, "leases not released; they expire on their own");
        }
    }

    /// Claims only when something is there to claim: an idle stream reads the queue's
    /// state when its channel wakes it, when a lease it may take over runs out, and every
    /// [`IDLE_RECHECK`]; it writes nothing until a message is due.
    async fn deliver(&mut self, sender: &streams::StreamSender<LeasedMessage>) {
        loop {
            self.queued.mark_unchanged();
            if sender.is_closed() {
                return;
            }
            let at = self.clock.now();
            if at - self.seen_at >= self.seen_every {
                // Registering again marks the group seen (and brings it back if it
                // expired meanwhile; it held its place, so the cap does not apply).
                match self
                    .store
                    .register_consumer(self.channel, &self.group, at, i64::MAX)
                    .await
                {
                    Ok(_) => self.seen_at = at,
                    Err(err) => tracing::warn!(error = %err, "consumer group not marked seen"),
                }
            }
            let due = match self.store.delivery_due(self.channel, &self.group).await {
                Ok(due) => due,
                Err(err) => {
                    tracing::warn!(error = %err, "delivery stream read failed");
                    sender.finish(StreamEnd::Unavailable { cursor: 0 });
                    return;
                }
            };
            let expiry = due.next_expiry.filter(|t| *t > at);
            let mut wait = IDLE_RECHECK;
            if due.ready || due.next_expiry.is_some_and(|t| t <= at) {
                match self.lease_and_send(sender, at).await {
                    None => return,
                    // Another subscriber is claiming the same messages: look again soon.
                    Some(0) => wait = self.poll,
                    Some(_) => continue,
                }
            }
            // A lease this group may take over runs out: look again then.
            let clock = self.clock.clone();
            let lease_runs_out = async move {
                match expiry {
                    Some(at) => clock.sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            match streams::wait(
                &mut self.queued,
                &mut self.shutdown,
                sender,
                wait,
                lease_runs_out,
            )
            .await
            {
                Wake::Look => {}
                Wake::ShuttingDown => {
                    sender.finish(StreamEnd::ShuttingDown { cursor: 0 });
                    return;
                }
                Wake::ClientGone => return,
            }
        }
    }

    /// Leases what is due and sends it; `None` when the stream is over.
    async fn lease_and_send(
        &mut self,
        sender: &streams::StreamSender<LeasedMessage>,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Option<usize> {
        let leased = match self
            .store
            .lease_messages(
                self.channel,
                &self.group,
                self.lease_id,
                at,
                at + self.lease,
                crate::store::LeaseBatch {
                    limit: BATCH,
                    inline_bytes: self.inline_bytes,
                },
            )
            .await
        {
            Ok(leased) => leased,
            Err(err) => {
                tracing::warn!(error = %err, "delivery stream read failed");
                sender.finish(StreamEnd::Unavailable { cursor: 0 });
                return None;
            }
        };
        if !leased.is_empty() {
            metrics::counter!(
                "ticketd_outbound_messages_total",
                "state" => "leased",
                "channel" => self.channel.as_str()
            )
            .increment(leased.len() as u64);
        }
        let count = leased.len();
        for message in leased {
            let message = with_threading(&self.mailbox, message);
            let span = tracing::info_span!(
                "deliver",
                message_id = %message.message.id,
                attempt = message.attempt
            );
            match sender.send(message).instrument(span).await {
                Sent::Ok => {}
                Sent::Closed => return None,
                Sent::Stalled => {
                    sender.finish(StreamEnd::FellBehind { cursor: 0 });
                    return None;
                }
            }
        }
        Some(count)
    }
}

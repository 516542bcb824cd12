//! `WatchTicketsResponse`, written by hand (mapped in with `extern_path`) so that a feed
//! entry sent to many watchers is converted and encoded once: the tailer hands every stream
//! the same event, and [`SharedEncodings`] hands every stream the same bytes for it. On the
//! wire it is exactly the generated message (one optional `ActivityEntry`, field 1), and it
//! decodes like one.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use bytes::{Buf, BufMut, Bytes};
use prost::encoding::{DecodeContext, WireType, message, skip_field};
use prost::{DecodeError, Message, Name};

use super::pb;

#[derive(Clone, Default, PartialEq, Debug)]
pub struct WatchTicketsResponse {
    /// `event.cursor` is the position to resume after. (Empty on a response made from
    /// shared bytes: those are what is sent.)
    pub event: Option<pb::ActivityEntry>,
    /// The encoded `event` field, shared by every stream that sends it.
    encoded: Option<Bytes>,
}

impl WatchTicketsResponse {
    /// A response for `entry`, encoded now.
    pub fn encode_shared(entry: &pb::ActivityEntry) -> Bytes {
        let mut buf = Vec::with_capacity(message::encoded_len(1, entry));
        message::encode(1, entry, &mut buf);
        Bytes::from(buf)
    }

    /// A response that sends `encoded` (from [`WatchTicketsResponse::encode_shared`]).
    pub fn from_shared(encoded: Bytes) -> Self {
        Self {
            event: None,
            encoded: Some(encoded),
        }
    }
}

impl Message for WatchTicketsResponse {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        match (&self.encoded, &self.event) {
            (Some(encoded), _) => buf.put_slice(encoded),
            (None, Some(event)) => message::encode(1, event, buf),
            (None, None) => {}
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        match tag {
            1 => {
                let event = self.event.get_or_insert_with(Default::default);
                message::merge(wire_type, event, buf, ctx)
            }
            _ => skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        match (&self.encoded, &self.event) {
            (Some(encoded), _) => encoded.len(),
            (None, Some(event)) => message::encoded_len(1, event),
            (None, None) => 0,
        }
    }

    fn clear(&mut self) {
        *self = Self::default();
    }
}

impl Name for WatchTicketsResponse {
    const NAME: &'static str = "WatchTicketsResponse";
    const PACKAGE: &'static str = "ticketd.v1";

    fn full_name() -> String {
        "ticketd.v1.WatchTicketsResponse".into()
    }

    fn type_url() -> String {
        "/ticketd.v1.WatchTicketsResponse".into()
    }
}

/// The encodings of recent events, by log position, shared by every watch stream of the
/// process. Holds the last [`SHARED_ENCODINGS`] (first in, first out): the streams of live
/// watchers ask for the same few newest events, and an older one asked for again is simply
/// encoded again.
#[derive(Clone, Default)]
pub(crate) struct SharedEncodings {
    recent: Arc<Mutex<Recent>>,
}

const SHARED_ENCODINGS: usize = 4096;

#[derive(Default)]
struct Recent {
    by_cursor: HashMap<i64, Bytes>,
    order: VecDeque<i64>,
}

impl SharedEncodings {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// The response for the event at `cursor`, encoding it with `entry` the first time.
    pub(crate) fn response(
        &self,
        cursor: i64,
        entry: impl FnOnce() -> pb::ActivityEntry,
    ) -> WatchTicketsResponse {
        if let Ok(recent) = self.recent.lock()
            && let Some(encoded) = recent.by_cursor.get(&cursor)
        {
            return WatchTicketsResponse::from_shared(encoded.clone());
        }
        // Encoded outside the lock; two streams that race here both encode, harmlessly.
        let encoded = WatchTicketsResponse::encode_shared(&entry());
        if let Ok(mut recent) = self.recent.lock()
            && recent.by_cursor.insert(cursor, encoded.clone()).is_none()
        {
            recent.order.push_back(cursor);
            while recent.order.len() > SHARED_ENCODINGS {
                if let Some(oldest) = recent.order.pop_front() {
                    recent.by_cursor.remove(&oldest);
                }
            }
        }
        WatchTicketsResponse::from_shared(encoded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> pb::ActivityEntry {
        pb::ActivityEntry {
            id: "01a2".into(),
            cursor: 42,
            ticket_number: 7,
            r#type: pb::EventType::TicketCreated as i32,
            ..Default::default()
        }
    }

    #[test]
    fn shared_bytes_decode_as_the_generated_message_would() {
        let direct = WatchTicketsResponse {
            event: Some(entry()),
            encoded: None,
        }
        .encode_to_vec();
        let shared =
            WatchTicketsResponse::from_shared(WatchTicketsResponse::encode_shared(&entry()))
                .encode_to_vec();
        assert_eq!(direct, shared);
        let decoded = WatchTicketsResponse::decode(shared.as_slice()).unwrap();
        assert_eq!(decoded.event, Some(entry()));
        assert_eq!(decoded.encoded_len(), shared.len());
    }

    #[test]
    fn each_event_is_encoded_once() {
        let encodings = SharedEncodings::new();
        let mut made = 0;
        for _ in 0..3 {
            encodings.response(42, || {
                made += 1;
                entry()
            });
        }
        assert_eq!(made, 1);
    }
}

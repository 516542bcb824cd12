//! `WatchTicketsResponse`, written by hand instead of generated, so that one event's
//! encoding is shared by every watcher it goes to.
//!
//! A live event is handed to each watcher as the same `Arc<Event>`; converting and encoding
//! it once per watcher (a deep copy, a protobuf message, its bytes) was most of what a
//! delivery cost. The message here has a second, server-side form: the `ActivityEntry`
//! already encoded. Its wire format is the generated message's exactly (field 1,
//! length-delimited), so clients decode it into `event` as before.

use std::sync::Arc;

use prost::bytes::{Buf, BufMut, Bytes};
use prost::encoding::{self, DecodeContext, WireType};
use prost::{DecodeError, Message, Name};

use super::convert::event_to_pb;
use super::pb;
use crate::domain::event::Event;

/// The field number of `event` in `WatchTicketsResponse`.
const EVENT: u32 = 1;

/// A `WatchTicketsResponse`: `event` as decoded, or the entry already encoded (what the
/// server sends).
#[derive(Clone, PartialEq, Default)]
pub struct WatchTicketsResponse {
    pub event: Option<pb::ActivityEntry>,
    /// The encoded entry and its cursor; when set, it is what goes on the wire.
    encoded: Option<(i64, Bytes)>,
}

impl WatchTicketsResponse {
    /// The cursor of the entry, in either form.
    pub fn cursor(&self) -> Option<i64> {
        match (&self.encoded, &self.event) {
            (Some((cursor, _)), _) => Some(*cursor),
            (None, Some(event)) => Some(event.cursor),
            (None, None) => None,
        }
    }
}

impl std::fmt::Debug for WatchTicketsResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut s = f.debug_struct("WatchTicketsResponse");
        match &self.encoded {
            Some((cursor, bytes)) => s
                .field("cursor", cursor)
                .field("encoded_len", &bytes.len())
                .finish(),
            None => s.field("event", &self.event).finish(),
        }
    }
}

impl Message for WatchTicketsResponse {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        match (&self.encoded, &self.event) {
            (Some((_, bytes)), _) => encoding::bytes::encode(EVENT, bytes, buf),
            (None, Some(event)) => encoding::message::encode(EVENT, event, buf),
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
        if tag == EVENT {
            self.encoded = None;
            let event = self.event.get_or_insert_with(Default::default);
            encoding::message::merge(wire_type, event, buf, ctx).map_err(|mut err| {
                err.push("WatchTicketsResponse", "event");
                err
            })
        } else {
            encoding::skip_field(wire_type, tag, buf, ctx)
        }
    }

    fn encoded_len(&self) -> usize {
        match (&self.encoded, &self.event) {
            (Some((_, bytes)), _) => encoding::bytes::encoded_len(EVENT, bytes),
            (None, Some(event)) => encoding::message::encoded_len(EVENT, event),
            (None, None) => 0,
        }
    }

    fn clear(&mut self) {
        self.event = None;
        self.encoded = None;
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

/// How many recent events' encodings are kept. Live events reach every watcher within
/// moments of each other, so a short memory serves them all; a watcher that misses encodes
/// for itself.
const KEPT: u64 = 1024;

/// The encodings of recent events, shared by the watch streams of one server. An encoding
/// is reused only for the very event it was made from (the same `Arc`), never for another
/// read of the same position (a reply's delivery state may have moved since).
pub(crate) struct EncodedEvents {
    cache: moka::sync::Cache<i64, (Arc<Event>, Bytes)>,
}

impl EncodedEvents {
    pub(crate) fn new() -> Self {
        EncodedEvents {
            cache: moka::sync::Cache::builder().max_capacity(KEPT).build(),
        }
    }

    /// The response carrying `event`, encoded once for every watcher it goes to.
    pub(crate) fn response(&self, event: Arc<Event>) -> WatchTicketsResponse {
        let cursor = event.cursor;
        let held = self.cache.get_with(cursor, || {
            let bytes = Bytes::from(event_to_pb(Event::clone(&event)).encode_to_vec());
            (event.clone(), bytes)
        });
        let bytes = if Arc::ptr_eq(&held.0, &event) {
            held.1
        } else {
            Bytes::from(event_to_pb(Event::clone(&event)).encode_to_vec())
        };
        WatchTicketsResponse {
            event: None,
            encoded: Some((cursor, bytes)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(cursor: i64) -> pb::ActivityEntry {
        pb::ActivityEntry {
            id: "0198c0de-0000-7000-8000-000000000001".into(),
            cursor,
            ticket_id: "0198c0de-0000-7000-8000-000000000002".into(),
            ticket_number: 42,
            ..Default::default()
        }
    }

    #[test]
    fn the_encoded_form_is_the_generated_wire_format() {
        let event = entry(7);
        let decoded = WatchTicketsResponse {
            event: Some(event.clone()),
            encoded: None,
        };
        let shared = WatchTicketsResponse {
            event: None,
            encoded: Some((7, Bytes::from(event.encode_to_vec()))),
        };
        assert_eq!(decoded.encode_to_vec(), shared.encode_to_vec());
        assert_eq!(shared.encoded_len(), shared.encode_to_vec().len());
        let back = WatchTicketsResponse::decode(shared.encode_to_vec().as_slice()).unwrap();
        assert_eq!(back.event, Some(event));
        assert_eq!(back.cursor(), Some(7));
        assert_eq!(shared.cursor(), Some(7));
    }

    #[test]
    fn an_empty_response_encodes_to_nothing_and_skips_unknown_fields() {
        assert!(WatchTicketsResponse::default().encode_to_vec().is_empty());
        // Field 2, varint 1: unknown to this version, skipped.
        let back = WatchTicketsResponse::decode([0x10u8, 0x01].as_slice()).unwrap();
        assert_eq!(back, WatchTicketsResponse::default());
    }
}

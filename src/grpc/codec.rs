//! The protobuf codec of ticketd's services: prost, with two guards in front of decoding.
//!
//! - **Decoded size.** Protobuf can be far larger decoded than on the wire: an empty
//!   submessage is two bytes on the wire and a whole struct in memory, so a few MiB of
//!   empty transcript entries or attachments would become gigabytes. Before decoding, the
//!   message's bytes are walked with its schema (from the descriptor set built into the
//!   binary) and what decoding would allocate is estimated; a message estimated past
//!   `AMPLIFICATION` times its wire size plus `SLACK` is refused with RESOURCE_EXHAUSTED.
//!   The walk reads no more than the bytes already received and allocates nothing.
//! - **Malformed input** is the caller's mistake: INVALID_ARGUMENT, not prost's INTERNAL.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::OnceLock;

use prost::bytes::Buf;
use prost::{Message, Name};
use prost_types::field_descriptor_proto::Type;
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder};
use tonic_prost::ProstEncoder;

/// How much larger than its wire size a message may become when decoded...
const AMPLIFICATION: usize = 8;
/// ...plus this much, so small messages are never refused.
const SLACK: usize = 1024 * 1024;
/// What one decoded message instance is counted as (a prost struct with its fields).
const MESSAGE_COST: usize = 128;
/// What one string or byte field is counted as, besides its bytes.
const FIELD_COST: usize = 24;
/// Deeper nesting than this is counted as opaque bytes (ticketd's schema is shallow).
const MAX_DEPTH: u32 = 32;

/// What a field decodes into.
#[derive(Debug, Clone)]
enum Kind {
    /// A submessage (or map entry) of this type.
    Message(String),
    /// A string or bytes.
    Text,
    /// Any number, bool or enum.
    Number,
}

/// Field kinds by message type (full name, no leading dot) and field number.
type Schema = HashMap<String, HashMap<u32, Kind>>;

fn schema() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let set = prost_types::FileDescriptorSet::decode(super::pb::FILE_DESCRIPTOR_SET)
            .unwrap_or_default();
        let mut schema = Schema::new();
        for file in &set.file {
            let package = file.package();
            for message in &file.message_type {
                add_message(&mut schema, package, message);
            }
        }
        schema
    })
}

fn add_message(schema: &mut Schema, scope: &str, message: &prost_types::DescriptorProto) {
    let name = if scope.is_empty() {
        message.name().to_owned()
    } else {
        format!("{scope}.{}", message.name())
    };
    let fields = message
        .field
        .iter()
        .map(|f| {
            let kind = match f.r#type() {
                Type::Message | Type::Group => {
                    Kind::Message(f.type_name().trim_start_matches('.').to_owned())
                }
                Type::String | Type::Bytes => Kind::Text,
                _ => Kind::Number,
            };
            (u32::try_from(f.number()).unwrap_or(0), kind)
        })
        .collect();
    for nested in &message.nested_type {
        add_message(schema, &name, nested);
    }
    schema.insert(name, fields);
}

fn varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = bytes.split_first()?;
        *bytes = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// Adds what decoding `bytes` as `type_name` would allocate to `cost`; stops early once
/// `cost` passes `limit`. Bytes that do not parse end the walk: prost will reject them.
fn estimate(
    schema: &Schema,
    type_name: &str,
    mut bytes: &[u8],
    depth: u32,
    cost: &mut usize,
    limit: usize,
) {
    *cost += MESSAGE_COST;
    let fields = schema.get(type_name);
    while !bytes.is_empty() && *cost <= limit {
        let Some(key) = varint(&mut bytes) else {
            return;
        };
        let number = u32::try_from(key >> 3).unwrap_or(0);
        let kind = fields.and_then(|f| f.get(&number));
        match key & 0x7 {
            0 => {
                if varint(&mut bytes).is_none() {
                    return;
                }
                *cost += 8;
            }
            1 | 5 => {
                let width = if key & 0x7 == 1 { 8 } else { 4 };
                let Some(rest) = bytes.get(width..) else {
                    return;
                };
                bytes = rest;
                *cost += 8;
            }
            2 => {
                let Some(len) = varint(&mut bytes).and_then(|l| usize::try_from(l).ok()) else {
                    return;
                };
                let Some(payload) = bytes.get(..len) else {
                    return;
                };
                bytes = &bytes[len..];
                match kind {
                    Some(Kind::Message(inner)) if depth < MAX_DEPTH => {
                        estimate(schema, inner, payload, depth + 1, cost, limit);
                    }
                    // Packed numbers: each at least one byte, at most eight decoded.
                    Some(Kind::Number) => *cost += 8 * len,
                    _ => *cost += FIELD_COST + len,
                }
            }
            // Groups and reserved wire types: prost decides.
            _ => return,
        }
    }
}

/// Whether a message of `type_name` with these bytes may be decoded.
fn within_bounds(type_name: &str, bytes: &[u8]) -> Result<(), Status> {
    let limit = bytes
        .len()
        .saturating_mul(AMPLIFICATION)
        .saturating_add(SLACK);
    let mut cost = 0;
    estimate(schema(), type_name, bytes, 0, &mut cost, limit);
    if cost > limit {
        return Err(Status::resource_exhausted(format!(
            "the {} bytes of this {type_name} would take more than {limit} bytes to decode",
            bytes.len()
        )));
    }
    Ok(())
}

/// prost encoding; decoding bounded as described above.
#[derive(Debug, Clone)]
pub struct BoundedCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for BoundedCodec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T, U> Codec for BoundedCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Name + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = BoundedDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        BoundedDecoder(PhantomData)
    }
}

#[derive(Debug, Clone)]
pub struct BoundedDecoder<U>(PhantomData<U>);

impl<U: Message + Default + Name> Decoder for BoundedDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        // A whole message sits in one contiguous buffer; were it ever split, the check
        // would see a prefix, which only undercounts.
        within_bounds(&U::full_name(), buf.chunk())?;
        U::decode(buf).map(Some).map_err(|err| {
            Status::invalid_argument(format!("not a valid {}: {err}", U::full_name()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grpc::pb;

    fn escalation_with(transcript: Vec<pb::TranscriptMessage>) -> Vec<u8> {
        pb::EscalateConversationRequest {
            conversation: Some(pb::Conversation {
                source: "bot".into(),
                conversation_id: "c".into(),
                transcript,
                ..Default::default()
            }),
            ..Default::default()
        }
        .encode_to_vec()
    }

    #[test]
    fn the_schema_knows_nested_messages_and_maps() {
        let conversation = &schema()["ticketd.v1.Conversation"];
        assert!(
            matches!(&conversation[&4], Kind::Message(t) if t == "ticketd.v1.TranscriptMessage")
        );
        assert!(matches!(&conversation[&1], Kind::Text));
        assert!(
            matches!(&conversation[&7], Kind::Message(t) if t == "ticketd.v1.Conversation.MetadataEntry")
        );
        assert!(schema().contains_key("ticketd.v1.Conversation.MetadataEntry"));
    }

    #[test]
    fn ordinary_messages_pass() {
        let transcript = (0..500)
            .map(|i| pb::TranscriptMessage {
                text: format!("message {i}: my order has not arrived yet"),
                ..Default::default()
            })
            .collect();
        let bytes = escalation_with(transcript);
        within_bounds(&pb::EscalateConversationRequest::full_name(), &bytes).unwrap();
        let ticket = pb::CreateTicketRequest {
            subject: "s".into(),
            tags: vec!["a".into(); 50],
            ..Default::default()
        }
        .encode_to_vec();
        within_bounds(&pb::CreateTicketRequest::full_name(), &ticket).unwrap();
    }

    #[test]
    fn empty_submessages_by_the_million_are_refused() {
        let bytes = escalation_with(vec![pb::TranscriptMessage::default(); 1_000_000]);
        assert!(bytes.len() < 3 * 1024 * 1024);
        let refused =
            within_bounds(&pb::EscalateConversationRequest::full_name(), &bytes).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        let attachments = pb::AddReplyRequest {
            attachments: vec![pb::Attachment::default(); 500_000],
            ..Default::default()
        }
        .encode_to_vec();
        assert!(within_bounds(&pb::AddReplyRequest::full_name(), &attachments).is_err());
    }

    #[test]
    fn malformed_bytes_end_the_walk_without_a_panic() {
        for bytes in [&[0xff_u8; 20][..], &[0x0a, 0x80], &[0x0a, 0x05, 0x01], &[]] {
            let _ = within_bounds(&pb::EscalateConversationRequest::full_name(), bytes);
            let _ = within_bounds("no.such.Type", bytes);
        }
    }
}

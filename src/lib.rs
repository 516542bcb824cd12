//! ticketd: a support-ticket service with a conversation bridge.
//!
//! Layering rule: dependencies point one way,
//! `grpc` -> `service` -> `store` -> `domain`. `domain` holds pure types and rules and
//! depends on nothing else in the crate; `store` owns every line of SQL; `grpc` is the only
//! module that knows about tonic and the generated protobuf types.

pub mod app;
pub mod clock;
pub mod config;
pub mod domain;
pub mod events;
pub mod grpc;
pub mod http;
pub mod service;
pub mod store;
pub mod telemetry;
pub mod tls;

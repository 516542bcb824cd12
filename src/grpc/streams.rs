//! Turns a service stream into a gRPC response stream: its items, then its final status
//! with the resume cursor in the `ticketd-resume-cursor` trailer.

use std::pin::Pin;

use tokio_stream::Stream;
use tonic::Status;

use crate::service::{StreamEnd, StreamOutput, StreamPermit};

pub(crate) type GrpcStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

pub const RESUME_CURSOR: &str = "ticketd-resume-cursor";

/// The stream holds `permit` for as long as it is open, and ends with UNAUTHENTICATED
/// once the permit's key is revoked (dropping `output` tells its producer to stop).
pub(crate) fn to_grpc<T, P>(
    mut output: StreamOutput<T>,
    convert: impl Fn(T) -> P + Send + 'static,
    with_cursor: bool,
    permit: StreamPermit,
) -> GrpcStream<P>
where
    T: Send + 'static,
    P: Send + 'static,
{
    Box::pin(async_stream::stream! {
        let revoked = permit.revoked();
        tokio::pin!(revoked);
        loop {
            tokio::select! {
                item = output.items.recv() => match item {
                    Some(item) => {
                        yield Ok(convert(item));
                        // Whatever else is buffered goes out without another select.
                        while let Ok(item) = output.items.try_recv() {
                            yield Ok(convert(item));
                        }
                    }
                    None => break,
                },
                () = &mut revoked => {
                    yield Err(Status::unauthenticated("the API key of this stream was revoked"));
                    return;
                }
            }
        }
        if let Ok(end) = output.end.await {
            yield Err(end_status(end, with_cursor));
        }
    })
}

fn end_status(end: StreamEnd, with_cursor: bool) -> Status {
    let (mut status, cursor) = match end {
        StreamEnd::ShuttingDown { cursor } => (
            Status::unavailable(if with_cursor {
                format!("server shutting down; resume after cursor {cursor}")
            } else {
                "server shutting down; subscribe again".to_owned()
            }),
            cursor,
        ),
        StreamEnd::FellBehind { cursor } => (
            Status::resource_exhausted(if with_cursor {
                format!("watcher fell behind; resume after cursor {cursor}")
            } else {
                "subscriber fell behind; subscribe again".to_owned()
            }),
            cursor,
        ),
        StreamEnd::Unavailable { cursor } => (
            Status::unavailable(if with_cursor {
                format!("the database is unavailable; resume after cursor {cursor}")
            } else {
                "the database is unavailable; subscribe again".to_owned()
            }),
            cursor,
        ),
    };
    if with_cursor && let Ok(value) = cursor.to_string().parse() {
        status.metadata_mut().insert(RESUME_CURSOR, value);
    }
    status
}

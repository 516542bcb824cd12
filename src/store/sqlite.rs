//! The SQLite store: the embedded default, for one process.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::sql::impl_store;
use super::{PoolSettings, StoreResult};
use crate::events::Bus;

pub struct SqliteStore {
    /// Several connections: WAL lets readers run beside the writer.
    reader: SqlitePool,
    /// Exactly one connection. SQLite admits one writer at a time anyway; queueing
    /// writers in the pool instead of in SQLite's busy handler avoids SQLITE_BUSY
    /// failures when a read transaction would have to upgrade to a write.
    writer: SqlitePool,
    bus: Bus,
}

impl SqliteStore {
    pub async fn connect(url: &str, settings: &PoolSettings, bus: Bus) -> StoreResult<Self> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // With WAL, NORMAL survives a process crash; only an OS crash or power loss
            // can drop the last commits.
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        // A file cannot hang up: connections need no liveness check before use (sqlx still
        // checks each one as it returns to the pool).
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .acquire_timeout(settings.acquire_timeout)
            .connect_with(options.clone())
            .await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(settings.max_connections.clamp(1, 8))
            .test_before_acquire(false)
            .acquire_timeout(settings.acquire_timeout)
            .connect_lazy_with(options);
        Ok(Self {
            reader,
            writer,
            bus,
        })
    }
}

// The single writer makes max + 1 a commit-ordered log position; adding the ordinal keeps
// the rows of one multi-row insert apart whether or not SQLite lets a row's subquery see
// the rows inserted before it by the same statement. Every committed event is visible to
// stream reads, and leases need no row locks.
impl_store!(
    SqliteStore,
    sqlx::Sqlite,
    next_number = "(SELECT COALESCE(MAX(number), 0) + 1 FROM tickets)",
    event_position = "((SELECT COALESCE(MAX(position), 0) + 1 FROM ticket_events) + {ordinal})",
    horizon = "",
    skip_locked = "",
    lock_agent = "SELECT 1 FROM agents WHERE id = $1",
    lock_api_keys = "UPDATE api_keys SET name = name WHERE 0 = 1",
    migration_session = "SELECT 1",
    migrator = sqlx::migrate!("./migrations/sqlite"),
);

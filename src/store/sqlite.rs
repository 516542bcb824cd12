//! The SQLite store: the embedded default, for one process.

use std::str::FromStr;
use std::time::{Duration, Instant};

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};

use super::database::Pools;
use super::{PoolSettings, SqlStore, StoreResult};
use crate::events::Bus;

/// Virtual-machine steps between checks of a read's time limit.
const PROGRESS_STEPS: i32 = 10_000;

/// Opens (creating if need be) the SQLite database file `url` names.
pub async fn connect(url: &str, settings: &PoolSettings, bus: Bus) -> StoreResult<SqlStore> {
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
    let limit = settings.statement_timeout;
    let reader = SqlitePoolOptions::new()
        .max_connections(settings.max_connections.clamp(1, 8))
        .test_before_acquire(false)
        .acquire_timeout(settings.acquire_timeout)
        // SQLite has no statement timeout: each time a read connection is taken, a
        // progress handler starts counting, and interrupts the statement once the
        // connection has been out longer than the limit. A slow filter thus frees
        // its reader instead of holding it for every other caller.
        // (A new connection is handed out without passing `before_acquire`.)
        .after_connect(move |conn, _| Box::pin(start_read_clock(conn, limit)))
        .before_acquire(move |conn, _| {
            Box::pin(async move { start_read_clock(conn, limit).await.map(|()| true) })
        })
        .connect_lazy_with(options);
    Ok(SqlStore {
        pools: Pools::Sqlite { reader, writer },
        bus,
        tasks: Vec::new(),
        search_config: std::sync::RwLock::new("english".into()),
    })
}

/// Makes SQLite interrupt what `conn` runs once `limit` has passed from now.
async fn start_read_clock(conn: &mut SqliteConnection, limit: Duration) -> sqlx::Result<()> {
    if !limit.is_zero() {
        let taken = Instant::now();
        conn.lock_handle()
            .await?
            .set_progress_handler(PROGRESS_STEPS, move || taken.elapsed() < limit);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreError;

    #[tokio::test]
    async fn a_read_past_the_time_limit_is_interrupted_and_its_connection_reused() {
        let dir = std::env::temp_dir().join(format!("ticketd-sqlite-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}", dir.join("t.db").display());
        let settings = PoolSettings {
            max_connections: 1,
            acquire_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_millis(50),
        };
        let store = connect(&url, &settings, Bus::new()).await.unwrap();
        let Pools::Sqlite { reader, .. } = &store.pools else {
            unreachable!("a SQLite store")
        };
        let endless = "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) \
                       SELECT count(*) FROM n";
        let err: StoreError = sqlx::query_scalar::<_, i64>(endless)
            .fetch_one(reader)
            .await
            .unwrap_err()
            .into();
        assert!(matches!(err, StoreError::TimedOut(_)), "{err:?}");
        // The same (only) connection answers the next read at once.
        let one: i64 = sqlx::query_scalar("SELECT 1")
            .fetch_one(reader)
            .await
            .unwrap();
        assert_eq!(one, 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

//! The PostgreSQL store: the production backend, shared by any number of replicas.

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use super::sql::impl_store;
use super::{PoolSettings, StoreResult};

pub struct PgStore {
    reader: PgPool,
    /// The same pool as `reader`: PostgreSQL handles concurrent writers itself.
    writer: PgPool,
}

impl PgStore {
    pub async fn connect(url: &str, settings: &PoolSettings) -> StoreResult<Self> {
        let options = PgConnectOptions::from_str(url)?.application_name("ticketd");
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(settings.acquire_timeout)
            .connect_lazy_with(options);
        Ok(Self {
            reader: pool.clone(),
            writer: pool,
        })
    }
}

// sqlx's migrator holds a PostgreSQL advisory lock while it runs, so replicas that
// start together apply each migration exactly once.
impl_store!(
    PgStore,
    sqlx::Postgres,
    next_number = "nextval('ticket_number_seq')",
    migrator = sqlx::migrate!("./migrations/postgres")
);

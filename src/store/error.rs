//! What can go wrong in the store, and how a driver's error becomes one of these.

use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The ticket changed since it was read (its version moved on).
    #[error("ticket {0} was changed concurrently")]
    Conflict(Uuid),
    /// Another transaction created this conversation first; re-read and retry.
    #[error("conversation {0} already exists")]
    ConversationExists(String),
    /// A customer message with this gateway id was stored before.
    #[error("message {0} was already received")]
    DuplicateInbound(String),
    /// An automatic assignment found the agent full or no longer ONLINE.
    #[error("agent {0} cannot take another ticket")]
    AgentUnavailable(Uuid),
    /// A unique key is taken.
    #[error("{0} already exists")]
    AlreadyExists(&'static str),
    /// What a conditional write expected had already been done by another writer (a
    /// workflow step, a timer firing); nothing was written.
    #[error("{0}")]
    Superseded(&'static str),
    /// An idempotency key was reused with a different request.
    #[error("request id {0:?} was already used with a different request")]
    IdempotencyMismatch(String),
    /// The database cannot be reached right now; retrying later may succeed.
    #[error("database unavailable")]
    Unavailable(#[source] sqlx::Error),
    /// A statement ran past the statement timeout and was cancelled.
    #[error("a statement ran past its timeout")]
    TimedOut(#[source] sqlx::Error),
    #[error("database error")]
    Database(#[source] sqlx::Error),
    #[error("migration failed")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// A stored value does not fit the domain (a bug or a hand-edited row).
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    /// The first connection at start-up failed: names the server, with the driver's
    /// reason as the source.
    #[error("cannot connect to PostgreSQL at {target}")]
    Connect {
        target: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("unsupported database url {0:?}: use postgres://… or sqlite://…")]
    UnsupportedUrl(String),
    #[error("read URLs name PostgreSQL standbys: they need a postgres:// database URL")]
    StandbysNeedPostgres,
    #[error("{0} read URLs: at most {max} standbys take reads", max = super::replicas::MAX_STANDBYS)]
    TooManyStandbys(usize),
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        match err {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_) => StoreError::Unavailable(err),
            sqlx::Error::Database(ref db) if is_unavailable_code(db.code().as_deref()) => {
                StoreError::Unavailable(err)
            }
            // PostgreSQL's query_canceled (the statement timeout fired), SQLite's
            // SQLITE_INTERRUPT (the read time limit did).
            sqlx::Error::Database(ref db)
                if matches!(db.code().as_deref(), Some("57014" | "9")) =>
            {
                StoreError::TimedOut(err)
            }
            other => StoreError::Database(other),
        }
    }
}

/// PostgreSQL error classes that mean "try again later": 08 connection exceptions,
/// 53 insufficient resources, 57P01..57P03 shutdown / cannot connect now.
fn is_unavailable_code(code: Option<&str>) -> bool {
    match code {
        Some(code) => code.starts_with("08") || code.starts_with("53") || code.starts_with("57P"),
        None => false,
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Maps a unique-key violation to [`StoreError::AlreadyExists`].
pub(crate) fn unique_violation(err: StoreError, what: &'static str) -> StoreError {
    match &err {
        StoreError::Database(sqlx::Error::Database(db))
            if db.kind() == sqlx::error::ErrorKind::UniqueViolation =>
        {
            StoreError::AlreadyExists(what)
        }
        _ => err,
    }
}

//! Where the SQL of the two backends differs: a handful of fragments, each named for what
//! it does. Every other statement is the same text on both.

/// Where the two backends' SQL differs. Everything else is shared text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    Sqlite,
}

impl Dialect {
    /// The expression drawing the next ticket number. SQLite's single writer makes
    /// `MAX + 1` safe.
    pub fn next_ticket_number(self) -> &'static str {
        match self {
            Dialect::Postgres => "nextval('ticket_number_seq')",
            Dialect::Sqlite => "(SELECT COALESCE(MAX(number), 0) + 1 FROM tickets)",
        }
    }

    /// The text of `key` (a placeholder) in the JSON object `column`, NULL when absent.
    /// Keys are checked to be letters, digits, `_`, `-` and `.`, so SQLite's quoted path
    /// needs no escaping.
    pub fn json_text(self, column: &str, key: &str) -> String {
        match self {
            Dialect::Postgres => format!("({column} ->> {key})"),
            Dialect::Sqlite => format!("json_extract({column}, '$.\"' || {key} || '\"')"),
        }
    }

    /// Whole seconds since the epoch of the time `expr` (SQLite keeps times as RFC 3339
    /// text, which `unixepoch` reads).
    pub fn epoch_seconds(self, expr: &str) -> String {
        match self {
            Dialect::Postgres => format!("CAST(floor(EXTRACT(EPOCH FROM {expr})) AS bigint)"),
            Dialect::Sqlite => format!("CAST(unixepoch({expr}) AS INTEGER)"),
        }
    }

    /// A NULL of the uuid type (PostgreSQL types a bare NULL as text).
    pub fn null_uuid(self) -> &'static str {
        match self {
            Dialect::Postgres => "CAST(NULL AS uuid)",
            Dialect::Sqlite => "NULL",
        }
    }

    /// The expression for a new event's log position, given the placeholder of its index
    /// within the transaction.
    ///
    /// PostgreSQL: (transaction id << 20) | index, so that stream reads can stay below the
    /// oldest running transaction (see migrations/postgres/0001_tickets.sql). SQLite: the
    /// single writer makes max + 1 a commit-ordered position; adding the index keeps the
    /// rows of one multi-row insert apart whether or not a row's subquery sees the rows
    /// inserted before it by the same statement.
    pub fn event_position(self, ordinal: &str) -> String {
        match self {
            Dialect::Postgres => {
                format!("((pg_current_xact_id()::text::bigint << 20) | {ordinal})")
            }
            Dialect::Sqlite => {
                format!("((SELECT COALESCE(MAX(position), 0) + 1 FROM ticket_events) + {ordinal})")
            }
        }
    }

    /// A condition on `e.position` that keeps stream reads below positions a transaction
    /// still running may yet fill. SQLite commits in position order: nothing to add.
    pub fn read_horizon(self) -> &'static str {
        match self {
            Dialect::Postgres => {
                " AND e.position < (pg_snapshot_xmin(pg_current_snapshot())::text::bigint << 20)"
            }
            Dialect::Sqlite => "",
        }
    }

    /// The row-locking clause of lease claims: concurrent claimers skip each other's
    /// rows. SQLite's single writer needs none.
    pub fn skip_locked(self) -> &'static str {
        match self {
            Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
            Dialect::Sqlite => "",
        }
    }

    /// Locks an agent's row (`$1`) to the end of the transaction.
    pub fn lock_agent(self) -> &'static str {
        match self {
            Dialect::Postgres => "SELECT 1 FROM agents WHERE id = $1 FOR UPDATE",
            Dialect::Sqlite => "SELECT 1 FROM agents WHERE id = $1",
        }
    }

    /// Appended to a read inside a write transaction: keeps the rows read from changing
    /// until the commit (SQLite's one writer does that already).
    pub fn lock_row_shared(self) -> &'static str {
        match self {
            Dialect::Postgres => " FOR SHARE",
            Dialect::Sqlite => "",
        }
    }

    /// Makes concurrent bootstraps take turns to the end of the transaction.
    pub fn lock_api_keys(self) -> &'static str {
        match self {
            Dialect::Postgres => "SELECT pg_advisory_xact_lock(7460211)",
            Dialect::Sqlite => "UPDATE api_keys SET name = name WHERE 0 = 1",
        }
    }

    /// Makes consumer-group registrations on one channel (`$1`) take turns to the end of
    /// the transaction (SQLite's one writer connection does that already).
    pub fn lock_channel(self) -> &'static str {
        match self {
            Dialect::Postgres => "SELECT pg_advisory_xact_lock(7460212, hashtext($1))",
            Dialect::Sqlite => "SELECT $1",
        }
    }
}

#[cfg(test)]
mod tests {
    /// SQL that only a single PostgreSQL node runs as ticketd means it (see "Past one
    /// primary" in the README), and the one file each may appear in. A new use elsewhere
    /// fails here, so the list in the README stays complete.
    const NODE_SPECIFIC: &[(&str, &[&str])] = &[
        ("pg_current_xact_id", &["dialect.rs"]),
        ("pg_snapshot_xmin", &["dialect.rs"]),
        ("pg_advisory", &["dialect.rs"]),
        ("nextval(", &["dialect.rs"]),
        ("pg_notify(", &["pg_notify.rs"]),
        ("to_tsvector", &["search.rs"]),
        ("ts_headline", &["search.rs"]),
        ("ts_rank", &["ticket_query.rs"]),
    ];

    #[test]
    fn node_specific_sql_stays_where_the_readme_lists_it() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/store");
        let mut files = vec![dir.clone()];
        let mut sources = Vec::new();
        while let Some(path) = files.pop() {
            if path.is_dir() {
                for entry in std::fs::read_dir(&path).unwrap().flatten() {
                    files.push(entry.path());
                }
            } else if path.extension().is_some_and(|e| e == "rs")
                && path.file_name().is_some_and(|n| n != "tests.rs")
                && let Ok(text) = std::fs::read_to_string(&path)
            {
                sources.push((path.clone(), text.to_lowercase()));
            }
        }
        assert!(sources.len() > 20, "the store's sources are found");
        for (construct, allowed) in NODE_SPECIFIC {
            let mut seen = false;
            for (path, text) in &sources {
                let name = path
                    .strip_prefix(&dir)
                    .unwrap_or(path)
                    .to_string_lossy()
                    .into_owned();
                // Tests (this one included) hold no SQL of their own.
                let code = text.split("#[cfg(").next().unwrap_or_default();
                let used = code
                    .lines()
                    .filter(|line| !line.trim_start().starts_with("//"))
                    .any(|line| line.contains(&construct.to_lowercase()));
                if used {
                    seen = true;
                    assert!(
                        allowed.contains(&name.as_ref()),
                        "{construct} is used in {} (allowed: {allowed:?})",
                        path.display()
                    );
                }
            }
            assert!(seen, "{construct} is no longer used: drop it from the list");
        }
    }
}

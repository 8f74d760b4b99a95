//! pg_roles / pg_authid, the one role every object is owned by (psql's
//! `\du`): it logs in and nothing more, as sockql is read-only whoever
//! connects; and pg_settings, the settings `SHOW` answers.

use super::rows::{boolean, int, text, Row};
use crate::serve::pg::pg_overlay::{OWNER, OWNER_OID};

pub fn roles() -> Vec<Row> {
    vec![vec![
        ("oid", int(OWNER_OID)),
        ("rolname", text(OWNER)),
        ("rolsuper", boolean(false)),
        ("rolinherit", boolean(true)),
        ("rolcreaterole", boolean(false)),
        ("rolcreatedb", boolean(false)),
        ("rolcanlogin", boolean(true)),
        ("rolreplication", boolean(false)),
        ("rolbypassrls", boolean(false)),
        ("rolconnlimit", int(-1)),
    ]]
}

/// The settings sockql reports, by name (catalog::setting has their values).
const SETTINGS: &[&str] = &[
    "server_version",
    "server_version_num",
    "server_encoding",
    "client_encoding",
    "standard_conforming_strings",
    "integer_datetimes",
    "default_transaction_isolation",
    "default_transaction_read_only",
    "search_path",
    "DateStyle",
    "TimeZone",
    "IntervalStyle",
    "max_identifier_length",
    "statement_timeout",
    "lock_timeout",
    "idle_in_transaction_session_timeout",
    "bytea_output",
    "extra_float_digits",
    "client_min_messages",
    "lc_collate",
    "lc_ctype",
    "lc_messages",
    "max_index_keys",
    "block_size",
    "jit",
];

pub fn settings() -> Vec<Row> {
    SETTINGS
        .iter()
        .filter_map(|name| {
            let value = crate::serve::pg::catalog::setting(name)?;
            Some(vec![
                ("name", text(name)),
                ("setting", text(value)),
                ("context", text("user")),
                ("vartype", text("string")),
                ("source", text("default")),
                ("boot_val", text(value)),
                ("reset_val", text(value)),
                ("pending_restart", boolean(false)),
            ])
        })
        .collect()
}

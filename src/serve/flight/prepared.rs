//! Flight SQL prepared statements (the path the Flight SQL JDBC driver
//! and ADBC with parameters take for every query): a statement planned
//! once, kept under a random handle by the connection that made it, its
//! parameters bound by a DoPut of one Arrow row, run by DoGet through the
//! same engine, policy and limits as any statement.
//!
//! Handles are the connection's own ([`Handles`] lives in its
//! `ConnState`): a handle shown on another connection is unknown there,
//! and all of a connection's handles go with it. A connection keeps at
//! most [`MAX_HANDLES`] of them and [`MAX_BYTES`] of their text and
//! values; past either a new one is refused (before any planning).

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::scalar::ScalarValue;
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
use ring::rand::{SecureRandom, SystemRandom};
use tonic::Status;

/// Prepared statements one connection may hold at once.
pub const MAX_HANDLES: usize = 64;
/// Their text and bound values together, per connection: with the
/// connection caps (conns.rs) all handles hold at most 64 x 512 KiB.
pub const MAX_BYTES: usize = 512 << 10;
/// Bytes of a handle: random, so one cannot be guessed.
const HANDLE_BYTES: usize = 16;

/// One prepared statement.
#[derive(Clone)]
pub struct Prepared {
    /// The text with `$1`, `$2`, ... for its parameters.
    pub sql: String,
    /// `$n`'s type as planned (None: any).
    pub params: Vec<Option<DataType>>,
    pub dataset: SchemaRef,
    /// The values a DoPut bound, `"1"`, `"2"`, ... as the engine takes them.
    pub bound: HashMap<String, ScalarValue>,
    bound_bytes: usize,
}

impl Prepared {
    pub fn new(sql: String, params: Vec<Option<DataType>>, dataset: SchemaRef) -> Self {
        Prepared { sql, params, dataset, bound: HashMap::new(), bound_bytes: 0 }
    }

    fn bytes(&self) -> usize {
        self.sql.len() + self.bound_bytes + 256
    }

    /// What a client binds: one field per parameter, `$n`'s planned type
    /// (Null where any type goes).
    pub fn parameter_schema(&self) -> Schema {
        let fields: Vec<Field> = self
            .params
            .iter()
            .enumerate()
            .map(|(i, t)| Field::new(format!("${}", i + 1), t.clone().unwrap_or(DataType::Null), true))
            .collect();
        Schema::new(fields)
    }
}

/// A connection's prepared statements.
#[derive(Default)]
pub struct Handles {
    held: Mutex<HashMap<Bytes, Prepared>>,
}

fn refused_cap(what: String) -> Status {
    Status::resource_exhausted(format!("{what}; close some (ClosePreparedStatement) first"))
}

fn unknown() -> Status {
    Status::not_found("no prepared statement of this connection has that handle")
}

impl Handles {
    /// Room for one more of `sql`'s size, checked before it is planned.
    pub fn room_for(&self, sql: &str) -> Result<(), Status> {
        let held = self.held.lock().map_err(|_| Status::internal("prepared statements unavailable"))?;
        if held.len() >= MAX_HANDLES {
            return Err(refused_cap(format!(
                "this connection holds {MAX_HANDLES} prepared statements, the most it may"
            )));
        }
        let used: usize = held.values().map(Prepared::bytes).sum();
        if used + sql.len() > MAX_BYTES {
            return Err(refused_cap(format!(
                "this connection's prepared statements hold {used} bytes; at most {MAX_BYTES} are kept"
            )));
        }
        Ok(())
    }

    /// Keep `prepared` under a new random handle (the caps checked again:
    /// another call may have taken the room while this one planned).
    pub fn insert(&self, prepared: Prepared) -> Result<Bytes, Status> {
        let mut bytes = [0u8; HANDLE_BYTES];
        SystemRandom::new().fill(&mut bytes).map_err(|_| Status::internal("cannot make a handle"))?;
        let handle = Bytes::copy_from_slice(&bytes);
        let mut held = self.held.lock().map_err(|_| Status::internal("prepared statements unavailable"))?;
        let used: usize = held.values().map(Prepared::bytes).sum();
        if held.len() >= MAX_HANDLES || used + prepared.bytes() > MAX_BYTES {
            return Err(refused_cap(format!(
                "this connection holds {} prepared statements ({used} bytes), the most it may",
                held.len()
            )));
        }
        held.insert(handle.clone(), prepared);
        Ok(handle)
    }

    pub fn get(&self, handle: &[u8]) -> Result<Prepared, Status> {
        let held = self.held.lock().map_err(|_| Status::internal("prepared statements unavailable"))?;
        held.get(handle).cloned().ok_or_else(unknown)
    }

    /// Bind `values` (already decoded) to the statement, within the
    /// connection's bytes.
    pub fn bind(&self, handle: &[u8], values: HashMap<String, ScalarValue>, size: usize) -> Result<(), Status> {
        let mut held = self.held.lock().map_err(|_| Status::internal("prepared statements unavailable"))?;
        let others: usize = held.iter().filter(|(h, _)| h.as_ref() != handle).map(|(_, p)| p.bytes()).sum();
        let prepared = held.get_mut(handle).ok_or_else(unknown)?;
        if others + prepared.sql.len() + size > MAX_BYTES {
            return Err(refused_cap(format!(
                "binding {size} bytes of parameters would take this connection's prepared statements past {MAX_BYTES} bytes"
            )));
        }
        prepared.bound = values;
        prepared.bound_bytes = size;
        Ok(())
    }

    pub fn close(&self, handle: &[u8]) -> Result<(), Status> {
        let mut held = self.held.lock().map_err(|_| Status::internal("prepared statements unavailable"))?;
        held.remove(handle).map(|_| ()).ok_or_else(unknown)
    }

    pub fn len(&self) -> usize {
        self.held.lock().map(|h| h.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `sql` with JDBC/ODBC-style `?` parameters numbered `$1`, `$2`, ... in
/// order (DataFusion numbers only `$n`; it would take every `?` as one
/// named parameter). Found by sqlparser's tokenizer, so a `?` inside a
/// string, identifier or comment stays; the rest of the text is kept
/// byte for byte. Mixing `?` and `$n` is refused.
pub fn number_placeholders(sql: &str) -> Result<String, Status> {
    let tokens = Tokenizer::new(&GenericDialect {}, sql)
        .tokenize_with_location()
        .map_err(|e| Status::invalid_argument(format!("cannot read the statement: {e}")))?;
    let mut marks = Vec::new();
    let mut dollar = false;
    for t in &tokens {
        if let Token::Placeholder(p) = &t.token {
            if p == "?" {
                marks.push((t.span.start.line, t.span.start.column));
            } else if p.starts_with('?') {
                return Err(Status::invalid_argument(format!("parameter {p}: write ? or $n")));
            } else {
                dollar = true;
            }
        }
    }
    if marks.is_empty() {
        return Ok(sql.to_string());
    }
    if dollar {
        return Err(Status::invalid_argument("the statement mixes ? and $n parameters; use one kind"));
    }
    // Lines and columns count characters from 1, as the tokenizer does.
    let mut out = String::with_capacity(sql.len() + marks.len() * 3);
    let (mut line, mut column, mut n) = (1u64, 1u64, 0usize);
    let mut next = marks.iter().peekable();
    for ch in sql.chars() {
        if ch == '?' && next.peek() == Some(&&(line, column)) {
            next.next();
            n += 1;
            out.push_str(&format!("${n}"));
        } else {
            out.push(ch);
        }
        if ch == '\n' {
            line += 1;
            column = 1;
        } else {
            column += 1;
        }
    }
    if next.next().is_some() {
        return Err(Status::internal("cannot number the statement's ? parameters"));
    }
    Ok(out)
}

/// One row of parameter values, as the engine binds them: column `i` is
/// `$i+1`, cast to the type the plan gave it where it has one.
pub fn row_values(
    batches: &[RecordBatch],
    params: &[Option<DataType>],
) -> Result<HashMap<String, ScalarValue>, Status> {
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    if rows > 1 {
        return Err(Status::invalid_argument(format!(
            "{rows} rows of parameters: a prepared query binds one row (run it once per row)"
        )));
    }
    let Some(batch) = batches.iter().find(|b| b.num_rows() == 1) else {
        return Ok(HashMap::new());
    };
    if batch.num_columns() != params.len() {
        return Err(Status::invalid_argument(format!(
            "{} parameter values for a statement of {} parameters",
            batch.num_columns(),
            params.len()
        )));
    }
    let mut out = HashMap::new();
    for (i, (column, wanted)) in batch.columns().iter().zip(params).enumerate() {
        let value =
            ScalarValue::try_from_array(column, 0).map_err(|e| Status::invalid_argument(format!("${}: {e}", i + 1)))?;
        let value = match wanted {
            Some(t) if value.data_type() != *t => {
                value.cast_to(t).map_err(|e| Status::invalid_argument(format!("${}: {e}", i + 1)))?
            }
            _ => value,
        };
        out.insert((i + 1).to_string(), value);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn question_marks_are_numbered_outside_strings_and_comments() {
        let sql = "SELECT '?', \"a?\" FROM t -- ?\nWHERE x = ? AND y = 'it''s' AND z = ?";
        assert_eq!(
            number_placeholders(sql).unwrap(),
            "SELECT '?', \"a?\" FROM t -- ?\nWHERE x = $1 AND y = 'it''s' AND z = $2"
        );
        assert_eq!(number_placeholders("SELECT $1").unwrap(), "SELECT $1");
        assert!(number_placeholders("SELECT ?, $1").is_err());
        assert_eq!(number_placeholders("SELECT 'é', ?").unwrap(), "SELECT 'é', $1");
    }

    #[test]
    fn caps_hold_and_handles_are_random_and_own() {
        let h = Handles::default();
        let schema = Arc::new(Schema::empty());
        let mut handles = Vec::new();
        for _ in 0..MAX_HANDLES {
            h.room_for("SELECT 1").unwrap();
            handles.push(h.insert(Prepared::new("SELECT 1".into(), vec![], schema.clone())).unwrap());
        }
        assert!(h.room_for("SELECT 1").is_err());
        assert!(h.insert(Prepared::new("SELECT 1".into(), vec![], schema.clone())).is_err());
        assert_eq!(h.len(), MAX_HANDLES);
        assert_ne!(handles[0], handles[1]);
        h.close(&handles[0]).unwrap();
        assert!(h.get(&handles[0]).is_err());
        assert!(Handles::default().get(&handles[1]).is_err(), "another connection's store does not know it");
        h.room_for("SELECT 1").unwrap();
        let big = "x".repeat(MAX_BYTES);
        assert!(h.room_for(&big).is_err());
    }

    use std::sync::Arc;
}

//! A statement's warnings and notes, told to the client that ran it as
//! NoticeResponse (WARNING 01000, NOTICE 00000) before the statement's
//! CommandComplete, as PostgreSQL does. The session's engine keeps them
//! per run (`notice::Mode::Keep`), so no other client, and not the
//! server's stderr, hears them.

use std::fmt::Debug;

use futures::{Sink, SinkExt, StreamExt};
use pgwire::api::results::{QueryResponse, Tag};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::data::RowDescription;
use pgwire::messages::PgWireBackendMessage;

use crate::notice::{Heard, Level, Notice};

/// One notice as the client receives it.
pub fn response(notice: &Notice) -> PgWireBackendMessage {
    let (severity, code) = match notice.level {
        Level::Warning => ("WARNING", "01000"),
        Level::Note => ("NOTICE", "00000"),
    };
    let mut info = ErrorInfo::new(severity.into(), code.into(), notice.text.clone());
    // As PostgreSQL sends it (field V), for clients that read it rather
    // than the localized one.
    info.severity_nonlocalized = Some(severity.into());
    PgWireBackendMessage::NoticeResponse(info.into())
}

/// Send what `heard` holds so far (and empty it).
pub async fn tell<C>(client: &mut C, heard: &Heard) -> PgWireResult<()>
where
    C: Sink<PgWireBackendMessage> + Unpin,
    PgWireError: From<C::Error>,
{
    for notice in heard.take() {
        client.feed(response(&notice)).await?;
    }
    Ok(())
}

/// A statement's rows (and with `describe`, their RowDescription first),
/// then its notices, then CommandComplete: pgwire's `send_query_response`
/// with the notices where PostgreSQL puts them. A failing row still tells
/// the notices, before the error the caller sends.
pub async fn send_query_response<C>(
    client: &mut C,
    results: QueryResponse,
    describe: bool,
    heard: &Heard,
) -> PgWireResult<()>
where
    C: Sink<PgWireBackendMessage> + Unpin,
    C::Error: Debug,
    PgWireError: From<C::Error>,
{
    if describe {
        let description = RowDescription::new(results.row_schema.iter().map(Into::into).collect());
        client.feed(PgWireBackendMessage::RowDescription(description)).await?;
    }
    let tag = results.command_tag.clone();
    let rows = send_rows(client, results, heard).await?;
    tell(client, heard).await?;
    client.feed(PgWireBackendMessage::CommandComplete(Tag::new(&tag).with_rows(rows).into())).await?;
    Ok(())
}

/// Every row of `results` (no RowDescription, no CommandComplete); how many.
pub async fn send_rows<C>(client: &mut C, results: QueryResponse, heard: &Heard) -> PgWireResult<usize>
where
    C: Sink<PgWireBackendMessage> + Unpin,
    PgWireError: From<C::Error>,
{
    let mut data_rows = results.data_rows;
    let mut rows = 0;
    while let Some(row) = data_rows.next().await {
        match row {
            Ok(row) => client.feed(PgWireBackendMessage::DataRow(row)).await?,
            Err(e) => {
                tell(client, heard).await?;
                return Err(e);
            }
        }
        rows += 1;
    }
    Ok(rows)
}

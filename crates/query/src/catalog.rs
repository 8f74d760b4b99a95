//! The catalog as result tables: `sockql tables`, `sockql schema T`, `\d`,
//! and the SQL `SHOW TABLES` / `DESCRIBE T`, answered from the session's
//! context (live tables, snapshots and views, `history.*`), with the
//! descriptions the column declarations carry.

use std::sync::Arc;

use crate::bail;
use datafusion::arrow::array::{ArrayRef, BooleanArray, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::prelude::SessionContext;

use sockql_tables::{catalog, columns::DESCRIPTION};

/// The schema the recorded tables are registered in (`history.sockets`).
pub const HISTORY_SCHEMA: &str = "history";

/// A table as the catalog lists it: live tables, `history.*` tables,
/// and the snapshots and views of the session alike.
#[derive(Debug, Clone)]
pub struct Listed {
    pub name: String,
    pub about: String,
    pub schema: SchemaRef,
}

/// The live tables, without a session (help, the reference, completion).
pub fn live() -> Vec<Listed> {
    catalog()
        .into_iter()
        .map(|t| Listed { name: t.name.to_string(), about: t.about.to_string(), schema: t.schema })
        .collect()
}

/// Every table `ctx` can query, live tables first, then the session's own
/// (snapshots and views), then `history.*`, each with its schema: read
/// from the context, so nothing registered is missing from SHOW TABLES,
/// DESCRIBE, `\d` or completion.
pub async fn listing(ctx: &SessionContext) -> Vec<Listed> {
    listing_in(ctx.catalog("datafusion")).await
}

/// [`listing`] of a session's catalog, for what holds the catalog and not
/// the context (pg_catalog's descriptions).
pub async fn listing_in(catalog: Option<Arc<dyn datafusion::catalog::CatalogProvider>>) -> Vec<Listed> {
    let mut out = live();
    let Some(catalog) = catalog else { return out };
    for schema_name in ["public", HISTORY_SCHEMA] {
        let Some(schema) = catalog.schema(schema_name) else { continue };
        let mut names = schema.table_names();
        names.sort();
        for name in names {
            if schema_name == "public" && out.iter().any(|t| t.name == name) {
                continue;
            }
            let Ok(Some(table)) = schema.table(&name).await else { continue };
            let (name, about) = if schema_name == "public" {
                (name, "snapshot or view made in this session".to_string())
            } else {
                (format!("{schema_name}.{name}"), format!("samples of {name} recorded by sockql record (--history)"))
            };
            out.push(Listed { name, about, schema: table.schema() });
        }
    }
    out
}

pub fn tables_batch(list: &[Listed]) -> RecordBatch {
    let names: Vec<&str> = list.iter().map(|t| t.name.as_str()).collect();
    let about: Vec<&str> = list.iter().map(|t| t.about.as_str()).collect();
    let schema = Schema::new(vec![
        Field::new("table_name", DataType::Utf8, false),
        Field::new("description", DataType::Utf8, false),
    ]);
    let columns: Vec<ArrayRef> = vec![Arc::new(StringArray::from(names)), Arc::new(StringArray::from(about))];
    RecordBatch::try_new(Arc::new(schema), columns).expect("catalog batch matches its schema")
}

/// The live tables as a result table.
pub fn tables() -> RecordBatch {
    tables_batch(&live())
}

/// A column's description: its own (live tables declare one), else, for
/// `history.T`, the live table T's, else what the recorder adds.
pub fn column_doc(table: &str, field: &Field) -> String {
    if let Some(d) = field.metadata().get(DESCRIPTION) {
        return d.clone();
    }
    if let Some(live_name) = table.strip_prefix("history.") {
        match field.name().as_str() {
            "ts" => return "When the sample was taken (UTC)".into(),
            "host" => return "Host that recorded the sample (partition)".into(),
            "date" => return "Day of the sample, YYYY-MM-DD (partition)".into(),
            _ => {}
        }
        let live = sockql_tables::TABLES.iter().find(|t| t.name() == live_name);
        if let Some(def) = live.and_then(|t| t.columns().iter().find(|d| d.name == field.name())) {
            return def.doc.to_string();
        }
    }
    String::new()
}

/// What `read_pcap('FILE')` is, for the reference and `sockql schema`.
const READ_PCAP_ABOUT: &str = "A capture file (pcap or pcapng, from tcpdump -w, tshark, dumpcap; gzip welcome) \
     as packets, one row each, read as a stream. Payload bytes are read into rows only with --payload";

/// The table functions whose columns do not depend on their arguments,
/// as the catalog describes them: `sockql schema read_pcap` (or
/// `read_pcap('x.pcap')`) answers with their columns.
pub fn table_functions() -> Vec<Listed> {
    vec![Listed {
        name: sockql_tables::packets::read_pcap::NAME.to_string(),
        about: READ_PCAP_ABOUT.to_string(),
        schema: sockql_tables::columns::schema_of(sockql_tables::packets::Col::DEFS),
    }]
}

/// The columns of `table` (case-insensitive; `history.T` too) in `list`,
/// else of the table function so named (its arguments, if written, left
/// aside).
pub fn describe_batch(list: &[Listed], table: &str) -> crate::Result<RecordBatch> {
    let function = table.split('(').next().unwrap_or(table).trim();
    let functions = table_functions();
    let found = list.iter().find(|t| t.name.eq_ignore_ascii_case(table));
    let Some(info) = found.or_else(|| functions.iter().find(|t| t.name.eq_ignore_ascii_case(function))) else {
        let names: Vec<&str> = list.iter().chain(&functions).map(|t| t.name.as_str()).collect();
        bail!("no table named '{table}'; tables are: {}", names.join(", "));
    };
    let fields = info.schema.fields();
    let names: Vec<&str> = fields.iter().map(|f| f.name().as_str()).collect();
    let types: Vec<String> = fields.iter().map(|f| f.data_type().to_string()).collect();
    let nullable: Vec<bool> = fields.iter().map(|f| f.is_nullable()).collect();
    let docs: Vec<String> = fields.iter().map(|f| column_doc(&info.name, f)).collect();
    let schema = Schema::new(vec![
        Field::new("column_name", DataType::Utf8, false),
        Field::new("data_type", DataType::Utf8, false),
        Field::new("nullable", DataType::Boolean, false),
        Field::new("description", DataType::Utf8, false),
    ]);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(names)),
        Arc::new(StringArray::from(types)),
        Arc::new(BooleanArray::from(nullable)),
        Arc::new(StringArray::from(docs)),
    ];
    Ok(RecordBatch::try_new(Arc::new(schema), columns)?)
}

/// The columns of a live table.
pub fn describe(table: &str) -> crate::Result<RecordBatch> {
    describe_batch(&live(), table)
}

/// A catalog statement sockql answers itself, with descriptions, rather
/// than through DataFusion's information_schema.
#[derive(Debug, PartialEq, Eq)]
pub enum CatalogRequest {
    ShowTables,
    Describe(String),
}

/// Recognise `SHOW TABLES` and `DESCRIBE t` / `DESC t`. Works on the parsed
/// statement: printing a statement back to text recurses on its depth.
pub fn catalog_statement(statement: &datafusion::sql::parser::Statement) -> Option<CatalogRequest> {
    use datafusion::sql::sqlparser::ast::{DescribeAlias, Statement as Sql};
    let datafusion::sql::parser::Statement::Statement(inner) = statement else { return None };
    match inner.as_ref() {
        // Only the plain form; SHOW TABLES FROM/LIKE goes to DataFusion.
        s @ Sql::ShowTables { .. } if s.to_string().eq_ignore_ascii_case("SHOW TABLES") => {
            Some(CatalogRequest::ShowTables)
        }
        Sql::ExplainTable {
            describe_alias: DescribeAlias::Describe | DescribeAlias::Desc,
            hive_format: None,
            table_name,
            ..
        } => {
            let name: Vec<String> = table_name.0.iter().map(|p| p.to_string().trim_matches('"').to_string()).collect();
            Some(CatalogRequest::Describe(name.join(".")))
        }
        _ => None,
    }
}

/// Answer a catalog request from `list`.
pub fn answer(request: &CatalogRequest, list: &[Listed]) -> crate::Result<RecordBatch> {
    match request {
        CatalogRequest::ShowTables => Ok(tables_batch(list)),
        CatalogRequest::Describe(t) => describe_batch(list, t),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::AsArray;

    #[test]
    fn every_column_is_described() {
        for t in catalog() {
            let b = describe(t.name).unwrap();
            let docs = b.column(3).as_string::<i32>();
            for i in 0..b.num_rows() {
                assert!(
                    docs.value(i).len() > 5,
                    "{}.{} lacks a description",
                    t.name,
                    b.column(0).as_string::<i32>().value(i)
                );
            }
        }
    }

    fn parsed(sql: &str) -> datafusion::sql::parser::Statement {
        datafusion::sql::parser::DFParser::parse_sql(sql).unwrap().pop_front().unwrap()
    }

    #[test]
    fn recognises_catalog_statements() {
        assert_eq!(catalog_statement(&parsed("show tables;")), Some(CatalogRequest::ShowTables));
        assert_eq!(
            catalog_statement(&parsed("DESCRIBE history.sockets")),
            Some(CatalogRequest::Describe("history.sockets".into()))
        );
        let req = catalog_statement(&parsed("DESCRIBE sockets")).unwrap();
        assert_eq!(answer(&req, &live()).unwrap().column(0).as_string::<i32>().value(0), "protocol");
        let req = catalog_statement(&parsed("describe nope")).unwrap();
        assert!(answer(&req, &live()).unwrap_err().to_string().contains("tables are: sockets"));
        assert!(catalog_statement(&parsed("SELECT 1")).is_none());
    }

    #[test]
    fn read_pcap_is_described_with_the_packet_columns() {
        let columns = |t: &str| {
            let b = describe(t).unwrap();
            (0..b.num_rows())
                .map(|i| {
                    (
                        b.column(0).as_string::<i32>().value(i).to_string(),
                        b.column(3).as_string::<i32>().value(i).to_string(),
                    )
                })
                .collect::<Vec<_>>()
        };
        let pcap = columns("read_pcap");
        // packets' columns but the live capture's holders (src_pid, ...).
        let packets = columns("packets");
        assert_eq!(pcap[..], packets[..pcap.len()]);
        assert!(packets[pcap.len()..].iter().all(|(c, _)| c.starts_with("src_") || c.starts_with("dst_")));
        assert_eq!(columns("READ_PCAP('x.pcap')"), pcap);
        assert!(pcap.iter().any(|(c, d)| c == "vlan_id" && d.contains("vlan.id")));
        assert!(describe("read_pcapx").is_err());
    }
}

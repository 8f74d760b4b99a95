//! The catalog as result tables: `sockql tables`, `sockql schema T`, and
//! the SQL `SHOW TABLES` / `DESCRIBE T`, all from the column declarations,
//! so the descriptions a user reads are the ones the code declares.

use std::sync::Arc;

use anyhow::bail;
use datafusion::arrow::array::{ArrayRef, BooleanArray, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;

use crate::tables::{catalog, columns::DESCRIPTION};

pub fn tables() -> RecordBatch {
    let cat = catalog();
    let names: Vec<&str> = cat.iter().map(|t| t.name).collect();
    let about: Vec<&str> = cat.iter().map(|t| t.about).collect();
    let schema = Schema::new(vec![
        Field::new("table_name", DataType::Utf8, false),
        Field::new("description", DataType::Utf8, false),
    ]);
    let columns: Vec<ArrayRef> = vec![Arc::new(StringArray::from(names)), Arc::new(StringArray::from(about))];
    RecordBatch::try_new(Arc::new(schema), columns).expect("catalog batch matches its schema")
}

pub fn describe(table: &str) -> anyhow::Result<RecordBatch> {
    let cat = catalog();
    let Some(info) = cat.iter().find(|t| t.name.eq_ignore_ascii_case(table)) else {
        let names: Vec<&str> = cat.iter().map(|t| t.name).collect();
        bail!("no table named '{table}'; tables are: {}", names.join(", "));
    };
    let fields = info.schema.fields();
    let names: Vec<&str> = fields.iter().map(|f| f.name().as_str()).collect();
    let types: Vec<String> = fields.iter().map(|f| f.data_type().to_string()).collect();
    let nullable: Vec<bool> = fields.iter().map(|f| f.is_nullable()).collect();
    let docs: Vec<&str> = fields.iter().map(|f| f.metadata().get(DESCRIPTION).map_or("", |s| s.as_str())).collect();
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

/// Recognise `SHOW TABLES` and `DESCRIBE t` / `DESC t`, which sockql
/// answers itself (with descriptions) rather than through DataFusion's
/// information_schema. Works on the parsed statement: printing a statement
/// back to text recurses on its depth.
pub fn catalog_statement(statement: &datafusion::sql::parser::Statement) -> Option<anyhow::Result<RecordBatch>> {
    use datafusion::sql::sqlparser::ast::{DescribeAlias, Statement as Sql};
    let datafusion::sql::parser::Statement::Statement(inner) = statement else { return None };
    match inner.as_ref() {
        // Only the plain form; SHOW TABLES FROM/LIKE goes to DataFusion.
        s @ Sql::ShowTables { .. } if s.to_string().eq_ignore_ascii_case("SHOW TABLES") => Some(Ok(tables())),
        Sql::ExplainTable { describe_alias: DescribeAlias::Describe | DescribeAlias::Desc, hive_format: None, table_name, .. } => {
            Some(describe(table_name.to_string().trim_matches('"')))
        }
        _ => None,
    }
}

/// The table reference in Markdown, as README.md carries it between the
/// `<!-- tables -->` markers (a test keeps the two equal).
pub fn markdown_reference() -> String {
    let mut md = String::new();
    for t in catalog() {
        md.push_str(&format!("### `{}`\n\n{}.\n\n| column | type | description |\n|---|---|---|\n", t.name, t.about));
        for f in t.schema.fields() {
            let null = if f.is_nullable() { "" } else { " not null" };
            let doc = f.metadata().get(DESCRIPTION).map_or("", |s| s.as_str());
            md.push_str(&format!("| `{}` | {}{} | {} |\n", f.name(), f.data_type(), null, doc.replace('|', "\\|")));
        }
        md.push('\n');
    }
    md
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
                assert!(docs.value(i).len() > 5, "{}.{} lacks a description", t.name, b.column(0).as_string::<i32>().value(i));
            }
        }
    }

    #[test]
    fn readme_table_reference_is_current() {
        let readme = include_str!("../../README.md");
        let start = readme.find("<!-- tables -->").expect("start marker") + "<!-- tables -->\n".len();
        let end = readme.find("<!-- /tables -->").expect("end marker");
        assert!(
            readme[start..end] == markdown_reference(),
            "README.md table reference is stale: regenerate it with scripts/update-readme-tables"
        );
    }

    fn parsed(sql: &str) -> datafusion::sql::parser::Statement {
        datafusion::sql::parser::DFParser::parse_sql(sql).unwrap().pop_front().unwrap()
    }

    #[test]
    fn recognises_catalog_statements() {
        assert!(catalog_statement(&parsed("show tables;")).is_some());
        assert_eq!(catalog_statement(&parsed("DESCRIBE sockets")).unwrap().unwrap().column(0).as_string::<i32>().value(0), "protocol");
        assert!(catalog_statement(&parsed("describe nope")).unwrap().unwrap_err().to_string().contains("tables are: sockets"));
        assert!(catalog_statement(&parsed("SELECT 1")).is_none());
    }
}

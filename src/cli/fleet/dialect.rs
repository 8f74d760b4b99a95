//! The SQL dialect each host's part of a plan is written in: DataFusion's
//! `DefaultDialect` (the hosts parse with DataFusion's own parser), with
//! its one rule, which identifiers are quoted, decided without compiling
//! a regular expression. `DefaultDialect` compiles one for every
//! identifier it writes: a column name per host per query, which made
//! the regex compiler a third of planning a fleet query (perf, 20 hosts;
//! BENCHMARKS.md, "Fleet over Flight SQL").

use datafusion::sql::sqlparser::keywords::ALL_KEYWORDS;
use datafusion::sql::unparser::dialect::Dialect;

#[derive(Debug, Default)]
pub struct FleetDialect;

impl Dialect for FleetDialect {
    /// As `DefaultDialect`: quoted unless `[a-zA-Z_][a-zA-Z0-9_]*` with
    /// no uppercase letter (the parser lowercases those) and not a
    /// keyword, `id` excepted.
    fn identifier_quote_style(&self, identifier: &str) -> Option<char> {
        let mut bytes = identifier.bytes();
        let plain = bytes.next().is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
            && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !plain {
            return Some('"');
        }
        let upper = identifier.to_ascii_uppercase();
        // ALL_KEYWORDS is sorted (sqlparser looks words up by binary search).
        let keyword = upper != "ID" && ALL_KEYWORDS.binary_search(&upper.as_str()).is_ok();
        keyword.then_some('"')
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::unparser::dialect::DefaultDialect;

    #[test]
    fn quotes_exactly_what_the_default_dialect_quotes() {
        let names = [
            "host",
            "local_port",
            "state",
            "_x",
            "x1",
            "id",
            "ID",
            "Id",
            "user",
            "select",
            "order",
            "count(*)",
            "Host",
            "1x",
            "",
            "a-b",
            "a b",
            "__fleet_partial_0",
            "sockets",
            "netns",
            "timestamp",
            "pid",
            "ü",
            "año",
            "value",
            "name",
            "type",
            "from",
            "group",
        ];
        for name in names {
            assert_eq!(
                FleetDialect.identifier_quote_style(name),
                DefaultDialect {}.identifier_quote_style(name),
                "{name:?}"
            );
        }
        assert!(ALL_KEYWORDS.windows(2).all(|w| w[0] < w[1]), "sorted, for the binary search");
    }
}

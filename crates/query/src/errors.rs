//! An error as one line for people: the root cause of DataFusion's
//! wrapped errors, sockql's own context, and a hint. Every front end
//! (the command line, the shell, a PostgreSQL client) says errors this way.

/// An error as one line: each cause's first line, skipping causes whose
/// text the line already holds (DataFusion repeats its source in its own
/// message), then DataFusion's explanation lines and sockql's hint.
pub fn error_line(e: &impl crate::error::AsError) -> String {
    use datafusion::error::DataFusionError;
    let mut line = String::new();
    let mut more: Vec<String> = Vec::new();
    // Each cause as its own type: a query error gives the DataFusion
    // error it wraps.
    for cause in crate::error::causes(e.as_error()) {
        let df = cause.downcast_ref::<DataFusionError>();
        // DataFusion wraps causes in contexts ("Optimizer rule ... failed");
        // the root cause is what tells an operator what to fix.
        let text = match df.map(DataFusionError::find_root) {
            Some(DataFusionError::SQL(parse, _)) => {
                format!("SQL syntax error: {}", parse.to_string().trim_start_matches("sql parser error: "))
            }
            // sockql's own reader failed inside the query: its message and
            // its causes, without DataFusion's "External error" wrapping.
            Some(DataFusionError::External(inner)) => {
                let mut text = inner.to_string();
                let mut source = inner.source();
                while let Some(s) = source {
                    let t = s.to_string();
                    if !text.contains(&t) {
                        text = format!("{text}: {t}");
                    }
                    source = s.source();
                }
                text
            }
            Some(root) => root.strip_backtrace(),
            None => cause.to_string(),
        };
        let first = text.lines().next().unwrap_or("").trim();
        if !first.is_empty() && !line.contains(first) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(first);
        }
        // A DataFusion error's text already carries its sources. Its later
        // lines explain (a regex error points at the spot), except the
        // list of valid fields, which the hint replaces, nearest first.
        if let Some(df) = df {
            // A memory refusal lists every reservation: the first line and
            // sockql's own context say what to do.
            if !matches!(df.find_root(), DataFusionError::ResourcesExhausted(_)) {
                more.extend(
                    text.lines()
                        .skip(1)
                        .filter(|l| !l.trim().is_empty() && !l.contains("Valid fields are"))
                        .map(str::to_string),
                );
            }
            more.extend(crate::hints::for_error(df).map(|h| format!("hint: {h}")));
            break;
        }
    }
    // Errors quote names and values from the kernel and from files: the
    // terminal gets their control characters as escapes, line by line.
    std::iter::once(line)
        .chain(more)
        .map(|l| sockql_collect::notice::escape_controls(&l).into_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

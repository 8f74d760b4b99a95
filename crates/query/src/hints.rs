//! What to add to an error so the operator knows the fix: the columns a
//! query could have meant, and that a state name needs quotes. Front ends
//! print the hint under the error.

use datafusion::common::utils::datafusion_strsim::levenshtein;
use datafusion::common::SchemaError;
use datafusion::error::DataFusionError;

use sockql_collect::tcp_state;

/// Column names listed in a hint before "and N more".
const LISTED: usize = 12;

/// Words that are values of sockql columns, not columns: written without
/// quotes they are read as column names.
fn looks_like_a_value(name: &str) -> Option<String> {
    match tcp_state::ss_spelling(name) {
        Some(s) if tcp_state::is_respelling(name, s) => {
            return Some(format!("'{s}' is a state, not a column: quote it, as in state = '{s}'"));
        }
        Some(s) => return Some(format!("states are spelled as ss prints them and quoted: state = '{s}'")),
        None => {}
    }
    match name.to_ascii_lowercase().as_str() {
        v @ ("tcp" | "udp" | "raw" | "icmp" | "inet" | "inet6") => {
            Some(format!("'{v}' is a value, not a column: quote it, as in protocol = '{v}'"))
        }
        _ => None,
    }
}

/// The hint for `e`, if it has one.
pub fn for_error(e: &DataFusionError) -> Option<String> {
    let DataFusionError::SchemaError(schema_error, _) = e.find_root() else { return None };
    let SchemaError::FieldNotFound { field, valid_fields } = schema_error.as_ref() else { return None };
    if let Some(h) = looks_like_a_value(&field.name) {
        return Some(h);
    }
    let mut names: Vec<&str> = valid_fields.iter().map(|c| c.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    if names.is_empty() {
        return None;
    }
    let wanted = field.name.to_ascii_lowercase();
    // Nearest first: a column containing the word, then by edit distance.
    names.sort_by_key(|n| (!n.contains(wanted.as_str()), levenshtein(n, &wanted), *n));
    let more = names.len().saturating_sub(LISTED);
    let mut text = format!("columns here, nearest first: {}", names[..names.len().min(LISTED)].join(", "));
    if more > 0 {
        text.push_str(&format!(", and {more} more (sockql schema TABLE lists them)"));
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::common::Column;

    fn not_found(name: &str, valid: &[&str]) -> DataFusionError {
        DataFusionError::SchemaError(
            Box::new(SchemaError::FieldNotFound {
                field: Box::new(Column::new_unqualified(name)),
                valid_fields: valid.iter().map(|v| Column::new(Some("sockets"), *v)).collect(),
            }),
            Box::new(None),
        )
    }

    #[test]
    fn unknown_columns_list_the_nearest_first() {
        let h = for_error(&not_found("port", &["state", "local_port", "remote_port", "pid"])).unwrap();
        assert_eq!(h, "columns here, nearest first: local_port, remote_port, pid, state");
        let many: Vec<String> = (0..20).map(|i| format!("c{i:02}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert!(for_error(&not_found("zz", &many)).unwrap().ends_with(", and 8 more (sockql schema TABLE lists them)"));
    }

    #[test]
    fn unquoted_states_and_values_say_to_quote() {
        assert_eq!(
            for_error(&not_found("estab", &["state"])).unwrap(),
            "'ESTAB' is a state, not a column: quote it, as in state = 'ESTAB'"
        );
        assert!(for_error(&not_found("time_wait", &["state"])).unwrap().contains("'TIME-WAIT'"));
        assert!(for_error(&not_found("tcp", &["protocol"])).unwrap().contains("protocol = 'tcp'"));
        assert_eq!(
            for_error(&not_found("established", &["state"])).unwrap(),
            "states are spelled as ss prints them and quoted: state = 'ESTAB'"
        );
    }
}

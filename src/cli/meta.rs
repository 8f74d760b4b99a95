//! REPL meta-commands (`\d`, `\q`, ...): parsed in one place, listed in one
//! table that help and completion both read.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use clap::ValueEnum;

use super::args::{parse_interval, Expanded, Format};
use crate::query::saved::parse_assignment;

/// (usage, what it does), in the order `\?` prints them.
pub const COMMANDS: &[(&str, &str)] = &[
    ("\\?", "this help"),
    ("\\d", "list the tables"),
    ("\\d TABLE", "the columns of TABLE: type, nullability, description"),
    ("\\q", "quit (Ctrl-D works too)"),
    ("\\timing", "toggle printing each query's elapsed time"),
    ("\\format table|csv|json|ndjson", "set the output format"),
    ("\\x [on|off|auto]", "rows as records, one column per line (auto: when a table cannot fit); \\x alone toggles"),
    ("\\wide", "toggle cutting long cells to the terminal's width"),
    ("\\watch SECONDS", "re-run the last query every SECONDS until Ctrl-C"),
    ("\\i FILE", "run the SQL statements in FILE"),
    ("\\run NAME [k=v ...]", "run a saved query with parameters (\\run alone lists them)"),
    ("\\netns all|current", "cover every network namespace, or only the current one (like --all-netns)"),
    ("\\container [NAME]", "read container NAME's network namespace (like --container); alone, the current one again"),
];

/// The command words, for completion.
pub fn words() -> Vec<&'static str> {
    let mut w: Vec<&str> = COMMANDS.iter().map(|(u, _)| u.split_whitespace().next().unwrap_or(u)).collect();
    w.dedup();
    w
}

#[derive(Debug, Clone, PartialEq)]
pub enum Meta {
    Help,
    Tables,
    Describe(String),
    Quit,
    Timing,
    Format(Format),
    /// `None` toggles between on and off.
    Expanded(Option<Expanded>),
    Wide,
    Watch(Duration),
    Include(PathBuf),
    /// `None` lists the saved queries.
    Run(Option<(String, Vec<(String, String)>)>),
    /// True: every namespace.
    Netns(bool),
    /// Read this container's network namespace; `None`: sockql's own.
    Container(Option<String>),
}

pub fn help_text() -> String {
    let width = COMMANDS.iter().map(|(u, _)| u.len()).max().unwrap_or(0);
    let mut s = String::from("SQL statements end with ';' and may span lines. Ctrl-C cancels the statement being typed or the running query.\n");
    for (usage, what) in COMMANDS {
        s.push_str(&format!("  {usage:width$}  {what}\n"));
    }
    s
}

/// Parse one meta-command line (it starts with a backslash).
pub fn parse(line: &str) -> anyhow::Result<Meta> {
    let line = line.trim().trim_end_matches(';');
    let mut words = line.split_whitespace();
    let cmd = words.next().unwrap_or("");
    let args: Vec<&str> = words.collect();
    let one = |what: &str| -> anyhow::Result<&str> {
        match args.as_slice() {
            [a] => Ok(a),
            _ => bail!("{cmd} takes {what}; see \\?"),
        }
    };
    Ok(match cmd {
        "\\?" | "\\h" | "\\help" => Meta::Help,
        "\\q" | "\\quit" => Meta::Quit,
        "\\d" if args.is_empty() => Meta::Tables,
        "\\d" => Meta::Describe(one("one table name")?.to_string()),
        "\\timing" => Meta::Timing,
        "\\format" => {
            let f = one("a format")?;
            Meta::Format(
                Format::from_str(f, true)
                    .map_err(|_| anyhow::anyhow!("unknown format '{f}': use table, csv, json or ndjson"))?,
            )
        }
        "\\x" if args.is_empty() => Meta::Expanded(None),
        "\\x" => {
            let w = one("on, off or auto")?;
            Meta::Expanded(Some(
                Expanded::from_str(w, true).map_err(|_| anyhow::anyhow!("\\x takes on, off or auto, not {w}"))?,
            ))
        }
        "\\wide" => Meta::Wide,
        "\\watch" => Meta::Watch(parse_interval(one("an interval")?).map_err(anyhow::Error::msg)?),
        "\\i" => Meta::Include(PathBuf::from(one("a file name")?)),
        "\\run" => match args.split_first() {
            None => Meta::Run(None),
            Some((name, rest)) => {
                let params = rest.iter().map(|a| parse_assignment(a)).collect::<crate::query::Result<_>>()?;
                Meta::Run(Some((name.to_string(), params)))
            }
        },
        "\\netns" => match one("all or current")? {
            "all" => Meta::Netns(true),
            "current" => Meta::Netns(false),
            other => bail!("\\netns takes all or current, not {other}"),
        },
        "\\container" => match args.as_slice() {
            [] => Meta::Container(None),
            [name] => Meta::Container(Some(name.to_string())),
            _ => bail!("\\container takes one container name (or none, to read the current namespace again)"),
        },
        _ => bail!("unknown command {cmd}; \\? lists the commands"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_listed_command() {
        assert_eq!(parse("\\d").unwrap(), Meta::Tables);
        assert_eq!(parse("\\d sockets;").unwrap(), Meta::Describe("sockets".into()));
        assert_eq!(parse("\\format csv").unwrap(), Meta::Format(Format::Csv));
        assert_eq!(parse("\\watch 2").unwrap(), Meta::Watch(Duration::from_secs(2)));
        assert_eq!(parse("\\watch 500ms").unwrap(), Meta::Watch(Duration::from_millis(500)));
        assert_eq!(
            parse("\\run port_owner port=80").unwrap(),
            Meta::Run(Some(("port_owner".into(), vec![("port".into(), "80".into())])))
        );
        assert_eq!(parse("\\run").unwrap(), Meta::Run(None));
        assert_eq!(parse("\\i x.sql").unwrap(), Meta::Include("x.sql".into()));
        assert_eq!(parse("\\netns all").unwrap(), Meta::Netns(true));
        assert_eq!(parse("\\x").unwrap(), Meta::Expanded(None));
        assert_eq!(parse("\\x auto").unwrap(), Meta::Expanded(Some(Expanded::Auto)));
        assert!(parse("\\x sideways").is_err());
        assert!(parse("\\netns some").is_err());
        assert_eq!(parse("\\container web-1").unwrap(), Meta::Container(Some("web-1".into())));
        assert_eq!(parse("\\container").unwrap(), Meta::Container(None));
        assert!(parse("\\container a b").is_err());
        assert!(parse("\\format yaml").is_err());
        assert!(parse("\\nope").unwrap_err().to_string().contains("unknown command"));
        assert!(parse("\\watch").is_err());
        for w in words() {
            if w != "\\d" {
                // every listed word parses or asks for its argument, never "unknown"
                let r = parse(w);
                assert!(r.is_ok() || !r.unwrap_err().to_string().contains("unknown command"), "{w}");
            }
        }
    }
}

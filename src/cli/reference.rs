//! The reference generated from the code, in two shapes: Markdown
//! (`sockql reference`, committed as doc/reference.md) and the man page
//! (`sockql man`, committed as doc/sockql.1). Both say the same three
//! things, each read from where the code declares it: the tables and their
//! columns (the column declarations), the built-in saved reports (their
//! `-- name:`/`-- description:`/`-- param:` headers) and the flags of each
//! subcommand (the clap definitions behind --help). Nothing here is written
//! by hand, so the pages cannot drift from the binary; the tests below fail
//! when a committed file is not what the code generates, and
//! scripts/update-reference regenerates both.

use std::fmt::Write as _;
use std::io::Write;

use roff::{bold, italic, roman, Roff};

use super::args::Args;
use crate::query::catalog::{self, Listed};
use crate::query::saved::{self, SavedQuery};

/// Where the Markdown reference is committed, from the repository root.
pub const MARKDOWN_PATH: &str = "doc/reference.md";
/// Where the man page is committed, from the repository root.
pub const MAN_PATH: &str = "doc/sockql.1";

/// A table or table function, its columns with type, nullability and description.
struct Column {
    name: String,
    ty: String,
    not_null: bool,
    doc: String,
}

/// The live tables, then the table functions (`read_pcap('FILE')`).
fn tables() -> Vec<(String, String, Vec<Column>)> {
    let columns = |t: &Listed| {
        t.schema
            .fields()
            .iter()
            .map(|f| Column {
                name: f.name().clone(),
                ty: f.data_type().to_string(),
                not_null: !f.is_nullable(),
                doc: catalog::column_doc(&t.name, f),
            })
            .collect()
    };
    // A stream reads for a while and hands rows over as they come: say so,
    // since its bound decides what a query sees.
    let streams: Vec<&str> =
        crate::tables::catalog().iter().filter(|t| t.kind == crate::tables::Kind::Stream).map(|t| t.name).collect();
    let about = |t: &Listed| match streams.contains(&t.name.as_str()) {
        true => format!("{}. A stream: rows come as the kernel reports them; --follow reads until Ctrl-C", t.about),
        false => t.about.clone(),
    };
    let live = catalog::live().into_iter().map(|t| (t.name.clone(), about(&t), columns(&t)));
    let functions =
        catalog::table_functions().into_iter().map(|t| (format!("{}('FILE')", t.name), t.about.clone(), columns(&t)));
    live.chain(functions).collect()
}

/// A saved report's parameters as `sockql run` takes them: `name=default`.
fn params(q: &SavedQuery) -> String {
    q.params
        .iter()
        .map(|p| match &p.default {
            Some(d) => format!("{}={d}", p.name),
            None => p.name.clone(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The metric families a report serves, or nothing for a plain report.
fn metric(q: &SavedQuery) -> Option<String> {
    q.metric.as_ref().map(|m| format!("{} ({:?})", m.name, m.kind).to_lowercase())
}

/// One flag as --help shows it.
struct Flag {
    /// `-p, --param <NAME=VALUE>`, or `<QUERY>` for a positional.
    form: String,
    help: String,
}

/// One subcommand (or the top level, named "sockql"): what it does, its
/// own flags, and the global flags that apply to it.
struct Sub {
    name: String,
    about: String,
    own: Vec<Flag>,
    globals: Vec<String>,
}

/// Help text on one line, ending as a sentence does.
fn one_line(text: &str) -> String {
    let mut line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if !line.is_empty() && !line.ends_with(['.', ')', ':']) {
        line.push('.');
    }
    line
}

fn flag(arg: &clap::Arg) -> Flag {
    let value = arg
        .get_value_names()
        .map(|names| names.iter().map(|n| format!("<{n}>")).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| format!("<{}>", arg.get_id().as_str().to_uppercase()));
    let takes_value = arg.get_num_args().is_some_and(|n| n.takes_values());
    let form = match (arg.get_short(), arg.get_long()) {
        (None, None) => value,
        (short, long) => {
            let mut names: Vec<String> = short.map(|s| format!("-{s}")).into_iter().collect();
            names.extend(long.map(|l| format!("--{l}")));
            let names = names.join(", ");
            if takes_value {
                format!("{names} {value}")
            } else {
                names
            }
        }
    };
    let mut help = one_line(&arg.get_long_help().or(arg.get_help()).map(|h| h.to_string()).unwrap_or_default());
    let choices: Vec<String> =
        arg.get_possible_values().iter().filter(|v| !v.is_hide_set()).map(|v| v.get_name().to_string()).collect();
    if takes_value && !choices.is_empty() && !help.contains(&choices.join("|")) {
        let _ = write!(help, " [one of: {}]", choices.join(", "));
    }
    let defaults: Vec<String> = arg.get_default_values().iter().map(|v| v.to_string_lossy().into_owned()).collect();
    if takes_value && !defaults.is_empty() {
        let _ = write!(help, " [default: {}]", defaults.join(","));
    }
    Flag { form, help }
}

/// The top level and every visible subcommand, as the parser sees them
/// (global flags propagated; those a subcommand refuses are hidden there).
fn subcommands() -> Vec<Sub> {
    let mut cmd = Args::command_tree();
    cmd.build();
    let visible = |a: &&clap::Arg| !a.is_hide_set() && a.get_id() != "help" && a.get_id() != "version";
    let top = Sub {
        name: "sockql".into(),
        about: one_line(&cmd.get_about().map(|a| a.to_string()).unwrap_or_default()),
        own: cmd.get_arguments().filter(visible).map(flag).collect(),
        globals: Vec::new(),
    };
    let mut out = vec![top];
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set() && s.get_name() != "help") {
        let (globals, own): (Vec<&clap::Arg>, Vec<&clap::Arg>) =
            sub.get_arguments().filter(visible).partition(|a| a.is_global_set());
        out.push(Sub {
            name: format!("sockql {}", sub.get_name()),
            about: one_line(&sub.get_long_about().or(sub.get_about()).map(|a| a.to_string()).unwrap_or_default()),
            own: own.into_iter().map(flag).collect(),
            globals: globals.into_iter().filter_map(|a| a.get_long().map(|l| format!("--{l}"))).collect(),
        });
    }
    out
}

/// Text inside a Markdown table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

/// The whole reference in Markdown (doc/reference.md).
pub fn markdown() -> String {
    let tables = tables();
    let reports = saved::builtins();
    let subs = subcommands();
    let mut md = String::from(
        "# sockql reference\n\n\
         Generated from the code by `scripts/update-reference` (`sockql reference`); do not edit by hand: \
         a test fails while this page differs from what the binary declares. The same reference is in the man \
         page (`man sockql`, [sockql.1](sockql.1)). Tasks and examples: [GUIDE.md](../GUIDE.md).\n\n\
         - [Tables](#tables): ",
    );
    let links: Vec<String> = tables.iter().map(|(name, _, _)| format!("`{name}`")).collect();
    md.push_str(&links.join(", "));
    md.push_str("\n- [Saved reports](#saved-reports)\n- [Command line](#command-line): ");
    let links: Vec<String> = subs.iter().map(|s| format!("`{}`", s.name)).collect();
    md.push_str(&links.join(", "));
    md.push_str("\n\n## Tables\n\n");
    md.push_str(
        "`sockql tables` and `SHOW TABLES` list them; `sockql schema T` and `DESCRIBE T` print a table's \
         columns. Every `history.T` table (`--history DIR`) has T's columns plus `ts`, `host` and `date`.\n\n",
    );
    for (name, about, columns) in &tables {
        let _ = write!(md, "### `{name}`\n\n{about}.\n\n| column | type | description |\n|---|---|---|\n");
        for c in columns {
            let null = if c.not_null { " not null" } else { "" };
            let _ = writeln!(md, "| `{}` | {}{null} | {} |", c.name, c.ty, cell(&c.doc));
        }
        md.push('\n');
    }
    md.push_str(
        "## Saved reports\n\n\
         Built into the binary from `queries/`; `sockql run NAME [--param k=v]` runs one, `sockql run --list` \
         lists those found on this host (`./queries` and `~/.config/sockql/queries` first), and \
         `SELECT * FROM report('NAME', 'k=v')` is one as a table. A report with a metric is served by \
         `sockql serve` at each scrape.\n\n\
         | report | description | parameters (defaults) | metric |\n|---|---|---|---|\n",
    );
    for q in &reports {
        let _ = writeln!(
            md,
            "| `{}` | {} | {} | {} |",
            q.name,
            cell(&q.description),
            cell(&params(q)),
            metric(q).map(|m| format!("`{m}`")).unwrap_or_default()
        );
    }
    md.push_str("\n## Command line\n\n");
    for s in &subs {
        let _ = write!(md, "### `{}`\n\n{}\n\n", s.name, s.about);
        if !s.own.is_empty() {
            md.push_str("| flag | what |\n|---|---|\n");
            for f in &s.own {
                let _ = writeln!(md, "| `{}` | {} |", cell(&f.form), cell(&f.help));
            }
            md.push('\n');
        }
        if !s.globals.is_empty() {
            let globals: Vec<String> = s.globals.iter().map(|g| format!("`{g}`")).collect();
            let _ = write!(md, "Takes these flags of `sockql` too: {}.\n\n", globals.join(", "));
        }
    }
    md
}

/// The man page: clap's sections (name, synopsis, description, global
/// options, subcommands), then each subcommand's flags, the tables and the
/// saved reports, then the examples (--help's) and the version.
pub fn man_page(w: &mut dyn Write) -> std::io::Result<()> {
    // The package's version, not --version's commit and date: the page in
    // doc/ is checked in and must not change with every commit.
    let mut cmd = Args::command_tree().version(env!("CARGO_PKG_VERSION"));
    cmd.build();
    let man = clap_mangen::Man::new(cmd.clone());
    man.render_title(w)?;
    man.render_name_section(w)?;
    man.render_synopsis_section(w)?;
    man.render_description_section(w)?;
    man.render_options_section(w)?;
    man.render_subcommands_section(w)?;
    let mut roff = Roff::new();
    roff.control("SH", ["SUBCOMMAND OPTIONS"]);
    for s in subcommands().iter().skip(1) {
        roff.control("SS", [s.name.as_str()]);
        roff.text([roman(s.about.as_str())]);
        for f in &s.own {
            roff.control("TP", []).text([bold(f.form.as_str())]).text([roman(f.help.as_str())]);
        }
        if !s.globals.is_empty() {
            roff.control("PP", []).text([roman(format!("Takes these flags of sockql too: {}.", s.globals.join(", ")))]);
        }
    }
    roff.control("SH", ["TABLES"]);
    roff.text([roman(
        "sockql tables and SHOW TABLES list them; sockql schema T and DESCRIBE T print a table's columns. \
         Every history.T table (--history DIR) has T's columns plus ts, host and date.",
    )]);
    for (name, about, columns) in tables() {
        roff.control("SS", [name.as_str()]);
        roff.text([roman(format!("{about}."))]);
        for c in columns {
            let null = if c.not_null { " not null" } else { "" };
            roff.control("TP", [])
                .text([bold(c.name), roman(" "), italic(format!("{}{null}", c.ty))])
                .text([roman(c.doc)]);
        }
    }
    roff.control("SH", ["REPORTS"]);
    roff.text([roman(
        "Saved reports built into the binary: sockql run NAME [--param k=v]; sockql run --list lists those \
         found on this host. A report with a metric is served by sockql serve.",
    )]);
    for q in saved::builtins() {
        roff.control("TP", []).text([bold(q.name.as_str())]);
        let mut text = q.description.clone();
        let p = params(&q);
        if !p.is_empty() {
            let _ = write!(text, " Parameters: {p}.");
        }
        if let Some(m) = metric(&q) {
            let _ = write!(text, " Metric: {m}.");
        }
        roff.text([roman(text)]);
    }
    if let Some(examples) = cmd.get_after_help() {
        // Kept as --help prints it: one example per line.
        roff.control("SH", ["EXAMPLES"]).control("nf", []).text([roman(examples.to_string())]).control("fi", []);
    }
    roff.to_writer(w)?;
    man.render_version_section(w)
}

/// The man page as text.
pub fn man_text() -> String {
    let mut out = Vec::new();
    // Writing to a Vec cannot fail.
    let _ = man_page(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed pages are what the code generates: run
    /// scripts/update-reference after changing a table, a report or a flag.
    #[test]
    fn committed_reference_is_current() {
        let committed = include_str!("../../doc/reference.md");
        assert!(committed == markdown(), "{MARKDOWN_PATH} is stale: regenerate it with scripts/update-reference");
        let committed = include_str!("../../doc/sockql.1");
        assert!(committed == man_text(), "{MAN_PATH} is stale: regenerate it with scripts/update-reference");
    }

    /// Every table, report and subcommand is in both pages, and nothing
    /// hidden (the fixture writer, `reference` itself) is.
    #[test]
    fn reference_covers_tables_reports_and_flags() {
        let md = markdown();
        let man = man_text();
        for t in catalog::live() {
            assert!(md.contains(&format!("### `{}`", t.name)), "{} missing from markdown", t.name);
            assert!(man.contains(&format!(".SS {}", t.name)), "{} missing from the man page", t.name);
        }
        for q in saved::builtins() {
            assert!(md.contains(&format!("| `{}` |", q.name)), "report {} missing", q.name);
        }
        assert!(saved::builtins().len() >= 30);
        for sub in ["run", "record", "serve", "capture"] {
            assert!(md.contains(&format!("### `sockql {sub}`")), "{sub} missing");
            assert!(man.contains(&format!(".SS \"sockql {sub}\"")), "{sub} missing from the man page");
        }
        assert!(md.contains("`--pg-max-queries <N>`"), "serve's own flags are listed");
        assert!(man.contains(".SH TABLES") && man.contains(".SH REPORTS"));
        assert!(!md.contains("netlink-capture") && !md.contains("### `sockql reference`"));
    }
}

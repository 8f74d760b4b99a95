//! Command-line arguments (clap).

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

const EXAMPLES: &str = "\
Examples:
  sockql \"SELECT state, count(*) FROM sockets GROUP BY state ORDER BY 2 DESC\"
      connection states, like ss -tan | awk '{print $1}' | sort | uniq -c
  sockql \"SELECT pid, process, local_addr, local_port FROM sockets WHERE local_port = 80\"
      who uses port 80, like lsof -i :80
  sockql \"SELECT protocol, local_addr, local_port, process FROM sockets WHERE state IN ('LISTEN', 'UNCONN')\"
      listening sockets and their processes, like ss -tulnp
  sockql \"SELECT remote_addr, count(*) FROM sockets WHERE state = 'ESTAB' GROUP BY 1 ORDER BY 2 DESC\"
      established connections per peer
  sockql --format csv -f report.sql        run a file of SQL statements
  echo 'SELECT count(*) FROM sockets' | sockql --format json
  sockql tables                            list the tables
  sockql schema sockets                    the columns of a table, typed and described

State names are spelled as ss prints them: ESTAB, LISTEN, SYN-SENT, SYN-RECV,
FIN-WAIT-1, FIN-WAIT-2, TIME-WAIT, CLOSE-WAIT, LAST-ACK, CLOSING, UNCONN.";

/// SQL over the live state of this host's network stack: sockets, their
/// processes, and TCP internals, read from the kernel at each query.
#[derive(Debug, Parser)]
#[command(name = "sockql", version, after_help = EXAMPLES)]
pub struct Args {
    /// SQL to run; several statements may be separated by ';'. Without it,
    /// SQL is read from --file or standard input.
    pub query: Option<String>,

    /// Run the SQL statements in FILE.
    #[arg(short, long, value_name = "FILE", conflicts_with = "query")]
    pub file: Option<PathBuf>,

    #[command(flatten)]
    pub output: OutputArgs,

    #[command(flatten)]
    pub source: SourceArgs,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, clap::Args)]
pub struct OutputArgs {
    /// Output format: json is one array of typed objects, ndjson one
    /// object per line.
    #[arg(long, value_enum, default_value_t = Format::Table, global = true)]
    pub format: Format,

    /// Leave out the header line (csv).
    #[arg(long, global = true)]
    pub no_header: bool,
}

#[derive(Debug, clap::Args)]
pub struct SourceArgs {
    /// Read sockets from /proc/net/{tcp,tcp6,udp,udp6} instead of netlink
    /// sock_diag (fewer columns: no tcp_info, memory, cookie, interface).
    #[arg(long, global = true)]
    pub no_netlink: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Json,
    Ndjson,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the tables.
    Tables,
    /// Show the columns of TABLE: name, type, nullability, description.
    Schema {
        /// Table name.
        table: String,
    },
    /// Print the table reference in Markdown (README.md carries it).
    #[command(hide = true)]
    Reference,
    /// Write the raw sock_diag answer datagrams to FILE (for bug reports
    /// and parser test fixtures).
    #[command(hide = true)]
    CaptureSockDiag {
        file: PathBuf,
    },
}

//! Command-line arguments (clap).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

pub use crate::output::{Expanded, Format};

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
  sockql run --list                        the saved reports
  sockql run port_owner --param port=443   a saved report with a parameter
  sockql --watch 2s \"SELECT state, count(*) FROM sockets GROUP BY 1\"
  sockql                                   interactive SQL shell (\\? for help)

State names are spelled as ss prints them: ESTAB, LISTEN, SYN-SENT, SYN-RECV,
FIN-WAIT-1, FIN-WAIT-2, TIME-WAIT, CLOSE-WAIT, LAST-ACK, CLOSING, UNCONN.";

/// SQL over the live state of this host's network stack: sockets, their
/// processes, and TCP internals, read from the kernel at each query.
//
// (Not help text:) each flag is defined on the commands it applies to (the
// query form and `run` take them all); a flag written before a
// subcommand's name is that subcommand's ([`Args::parse_checked`]).
#[derive(Debug, Parser)]
#[command(name = "sockql", version = env!("SOCKQL_VERSION"), after_help = EXAMPLES)]
pub struct Args {
    /// SQL to run; several statements may be separated by ';'. Without it,
    /// SQL is read from --file or standard input. SQL may start with a
    /// comment ("-- note\nSELECT 1"); after a lone `--` everything is SQL.
    #[arg(allow_hyphen_values = true)]
    pub query: Option<String>,

    /// Run the SQL statements in FILE.
    #[arg(short, long, value_name = "FILE", conflicts_with = "query")]
    pub file: Option<PathBuf>,

    #[command(flatten)]
    pub flags: QueryArgs,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The flags of a query (the query form and `run`): every group.
#[derive(Debug, Default, clap::Args)]
pub struct QueryArgs {
    #[command(flatten)]
    pub params: ParamArgs,

    /// Re-run the query every INTERVAL (2s, 500ms, 1m; a bare number is
    /// seconds) until Ctrl-C, like watch -n. The table format redraws the
    /// screen; csv, json and ndjson append each run's rows with a `ts`
    /// column (RFC 3339, UTC) instead.
    #[arg(long, value_name = "INTERVAL", value_parser = parse_interval)]
    pub watch: Option<Duration>,

    #[command(flatten)]
    pub files: FileArgs,

    #[command(flatten)]
    pub limits: LimitArgs,

    #[command(flatten)]
    pub history: HistoryArgs,

    #[command(flatten)]
    pub output: OutputArgs,

    #[command(flatten)]
    pub read: ReadArgs,

    #[command(flatten)]
    pub streams: StreamArgs,

    /// Follow the streams (packets, socket_events, conntrack_events,
    /// process_events) until Ctrl-C unless --capture-for bounds them, and
    /// write each row as it comes: with --format ndjson or csv, a line at a
    /// time for jq or a log shipper.
    #[arg(long)]
    pub follow: bool,

    #[command(flatten)]
    pub fleet: FleetArgs,
}

/// A fleet query: the SQL runs on every host of --hosts (sockql serve
/// --flight), each table with a `host` column (GUIDE.md, "A fleet in one
/// query").
#[derive(Debug, Clone, Default, clap::Args)]
pub struct FleetArgs {
    /// Ask every host FILE lists, one `ADDR:PORT [NAME]` a line (NAME is
    /// the `host` value; # comments). Exit status 3: some hosts did not
    /// answer (named on stderr and in the fleet_hosts table).
    #[arg(long, value_name = "FILE")]
    pub hosts: Option<PathBuf>,
    /// The hosts' password (--flight-password-file on them): the first
    /// line of FILE, which only its owner may read.
    #[arg(long, value_name = "FILE", requires = "hosts")]
    pub hosts_password_file: Option<PathBuf>,
    /// Connect with TLS, verifying each host's certificate against this CA
    /// and the name or address its line gives.
    #[arg(long, value_name = "FILE", requires = "hosts")]
    pub hosts_ca: Option<PathBuf>,
    /// A client certificate (PEM) for mutual TLS, with --hosts-key.
    #[arg(long, value_name = "FILE", requires = "hosts_ca")]
    pub hosts_cert: Option<PathBuf>,
    /// The client certificate's key (PEM; a file only its owner may read).
    #[arg(long, value_name = "FILE", requires = "hosts_cert")]
    pub hosts_key: Option<PathBuf>,
    /// Time each host has, from connecting to its last row; a host still
    /// answering then is left out and named.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_timeout)]
    pub hosts_timeout: Duration,
    /// Hosts asked at once.
    #[arg(long, value_name = "N", default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub hosts_parallel: u16,
}

/// Parameters of the SQL (query, run, record, capture).
#[derive(Debug, Default, clap::Args)]
pub struct ParamArgs {
    /// Bind $NAME in the SQL to VALUE (repeatable). Numbers bind as
    /// numbers; 'quoted' or other text as text.
    #[arg(short = 'p', long = "param", value_name = "NAME=VALUE", value_parser = parse_param)]
    pub params: Vec<(String, String)>,
}

/// Whether statements may touch files (not for serve, whose clients'
/// SQL never may).
#[derive(Debug, Default, clap::Args)]
pub struct FileArgs {
    /// Let statements write and read files: COPY ... TO, CREATE EXTERNAL
    /// TABLE, INSERT. Without it sockql is read-only.
    #[arg(long)]
    pub allow_files: bool,
}

/// The bounds of a statement (every command that runs SQL).
#[derive(Debug, Default, clap::Args)]
pub struct LimitArgs {
    /// Memory DataFusion may use for sorts, joins and aggregates (512M,
    /// 2G, or bytes); a query needing more fails with a clear error.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub memory_limit: Option<usize>,

    /// Stop a statement that runs longer than this (30s, 2m).
    #[arg(long, value_name = "DURATION", value_parser = parse_timeout)]
    pub timeout: Option<Duration>,
}

/// Recorded history beside the live tables (queries and the catalog).
#[derive(Debug, Default, clap::Args)]
pub struct HistoryArgs {
    /// Register the samples recorded under DIR (or s3://bucket/prefix) as
    /// history.<table>, next to the live tables.
    #[arg(long, value_name = "DIR|URL")]
    pub history: Option<String>,
}

/// How rows are printed (queries and the catalog).
#[derive(Debug, Default, clap::Args)]
pub struct OutputArgs {
    /// Output format: json is one array of typed objects, ndjson one
    /// object per line.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,

    /// Leave out the header line (csv).
    #[arg(long)]
    pub no_header: bool,

    /// Show control characters in csv values as escapes (\x1b, \n), so
    /// a process name cannot drive the terminal. auto: when standard
    /// output is a terminal. The table format always escapes; JSON
    /// escapes by its own rules.
    #[arg(long, value_enum, value_name = "WHEN", default_value_t = Escape::Auto)]
    pub escape: Escape,

    /// Table format on a terminal: do not cut long cells to fit its width.
    /// (Output that is not a terminal is never cut.)
    #[arg(long)]
    pub wide: bool,

    /// Table format: print each row as a record, one column per line
    /// (psql's \x). auto: when the table cannot fit the terminal even
    /// with its long cells cut.
    #[arg(short = 'x', long, value_enum, value_name = "WHEN", default_value_t = Expanded::Auto)]
    pub expanded: Expanded,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum Escape {
    #[default]
    Auto,
    Always,
    Never,
}

/// How tables read the kernel (every command that reads it).
#[derive(Debug, Default, clap::Args)]
pub struct ReadArgs {
    /// Read sockets from /proc/net/{tcp,tcp6,udp,udp6,raw,raw6} instead of netlink
    /// sock_diag (fewer columns: no tcp_info, memory, cookie, interface).
    #[arg(long)]
    pub no_netlink: bool,

    /// Cover every network namespace on the host (containers, ip netns),
    /// not only the current one; rows carry netns and netns_name.
    #[arg(long)]
    pub all_netns: bool,

    /// Read the network namespace of the running container NAME (its
    /// name, or an id prefix of 12 or more) instead of the current one,
    /// as `nsenter -t PID -n` would; rows carry container and
    /// container_id.
    #[arg(long, value_name = "NAME", conflicts_with = "all_netns")]
    pub container: Option<String>,
}

/// How streams read (every command that may run one).
#[derive(Debug, Default, clap::Args)]
pub struct StreamArgs {
    /// How long a query of a live stream runs: the `packets` capture and
    /// the event tables (`socket_events`); 10s if not given. A LIMIT or
    /// Ctrl-C ends it sooner (and the query answers from what it saw).
    #[arg(long, value_name = "DURATION", value_parser = parse_for)]
    pub capture_for: Option<Duration>,

    /// Keep packet payloads: the packets table, read_pcap and capture --out
    /// then hold whole packets and fill the payload column. Without it
    /// only headers are captured, since payloads may carry secrets.
    #[arg(long)]
    pub payload: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CaptureSource {
    SockDiag,
    Ctnetlink,
}

impl Args {
    /// The command line definition (completions and the man page are
    /// generated from it).
    pub fn command_tree() -> clap::Command {
        use clap::CommandFactory;
        Args::command()
    }

    /// Parse the process's arguments: a flag written before a
    /// subcommand's name is taken as the subcommand's, and a flag given to
    /// a subcommand it does not apply to is an error (exit 2), not
    /// silently ignored.
    pub fn parse_checked() -> Self {
        Self::try_parse_checked(std::env::args_os()).unwrap_or_else(|e| e.exit())
    }

    /// [`Args::parse_checked`] of `argv`, its error not yet printed.
    pub fn try_parse_checked(argv: impl IntoIterator<Item = std::ffi::OsString>) -> Result<Self, ArgsError> {
        use clap::FromArgMatches;
        let mut cmd = Self::command_tree();
        cmd.build();
        let (argv, sub) = hoist(&cmd, argv.into_iter().collect());
        let parsed = cmd.try_get_matches_from_mut(argv).and_then(|m| Self::from_arg_matches(&m));
        parsed.map_err(|e| match sub.as_deref().and_then(|sub| not_for(&cmd, &e, sub)) {
            Some(line) => ArgsError::NotFor(line),
            None => ArgsError::Clap(e),
        })
    }
}

/// Why the arguments were refused.
#[derive(Debug)]
pub enum ArgsError {
    /// A flag sockql has, given to a subcommand it does not apply to: one
    /// line, as sockql's other errors.
    NotFor(String),
    Clap(clap::Error),
}

impl ArgsError {
    /// Print it and exit 2 (bad arguments), or 0 for --help and --version.
    pub fn exit(self) -> ! {
        match self {
            ArgsError::NotFor(line) => {
                crate::stderrln!("sockql: error: {line}");
                std::process::exit(2);
            }
            ArgsError::Clap(e) => e.exit(),
        }
    }
}

impl std::fmt::Display for ArgsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ArgsError::NotFor(line) => f.write_str(line),
            ArgsError::Clap(e) => write!(f, "{e}"),
        }
    }
}

/// Move the flags written before a subcommand's name after it, so that
/// `sockql --format csv tables` is `sockql tables --format csv` (and
/// `sockql --watch 2s serve` is refused as `sockql serve --watch 2s` is).
/// Returns the arguments and the subcommand's name, if one is given.
/// `cmd` is built (its --help and --version are known).
fn hoist(cmd: &clap::Command, argv: Vec<std::ffi::OsString>) -> (Vec<std::ffi::OsString>, Option<String>) {
    let mut i = 1;
    while let Some(token) = argv.get(i) {
        // Not text, a lone `--`, or `-`: SQL or a file name, no subcommand.
        let Some(t) = token.to_str().filter(|t| t.starts_with('-') && *t != "-" && *t != "--") else {
            break;
        };
        let (arg, inline) = match t.strip_prefix("--") {
            Some(long) => {
                let (name, value) = long.split_once('=').map_or((long, None), |(n, v)| (n, Some(v)));
                (cmd.get_arguments().find(|a| a.get_long() == Some(name)), value.is_some())
            }
            None => {
                let short = t.chars().nth(1);
                (cmd.get_arguments().find(|a| a.get_short() == short), t.len() > 2)
            }
        };
        // An unknown flag (or SQL starting with `--`): clap decides. Help
        // and version are answered where they are written.
        let Some(arg) =
            arg.filter(|a| a.get_action().takes_values() || matches!(a.get_action(), clap::ArgAction::SetTrue))
        else {
            return (argv, None);
        };
        i += if arg.get_action().takes_values() && !inline { 2 } else { 1 };
    }
    let Some(sub) = argv.get(i).and_then(|t| t.to_str()).and_then(|t| cmd.find_subcommand(t)) else {
        return (argv, None);
    };
    let name = sub.get_name().to_string();
    let mut moved = Vec::with_capacity(argv.len());
    moved.extend(argv.first().cloned());
    moved.extend(argv.get(i).cloned());
    moved.extend(argv.get(1..i).unwrap_or_default().iter().cloned());
    moved.extend(argv.get(i + 1..).unwrap_or_default().iter().cloned());
    (moved, Some(name))
}

/// The one line for clap's "unexpected argument" when the argument is a
/// flag sockql has, only not on subcommand `sub`: "--format does not apply
/// to serve".
fn not_for(cmd: &clap::Command, e: &clap::Error, sub: &str) -> Option<String> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if e.kind() != ErrorKind::UnknownArgument {
        return None;
    }
    let Some(ContextValue::String(given)) = e.get(ContextKind::InvalidArg) else {
        return None;
    };
    let flag = given.split(['=', ' ']).next().unwrap_or(given);
    let known = |a: &&clap::Arg| match flag.strip_prefix("--") {
        Some(long) => a.get_long() == Some(long),
        None => flag.strip_prefix('-').and_then(|s| s.chars().next()).is_some_and(|c| a.get_short() == Some(c)),
    };
    let long = cmd.get_arguments().find(known)?.get_long()?;
    Some(format!("--{long} does not apply to {sub}"))
}

/// 512M, 2G, 64k, or a number of bytes: at least one byte and at most the
/// machine's physical memory. A larger value would not bound anything (and
/// `99999999999999999999G` used to saturate to the largest number), so it
/// is refused (exit 2) rather than taken.
pub fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let (num, mult) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m: u64 = match c.to_ascii_lowercase() {
                'k' => 1 << 10,
                'm' => 1 << 20,
                'g' => 1 << 30,
                _ => return Err(format!("bad size '{s}': use a number with K, M or G")),
            };
            (t.get(..i).unwrap_or(""), m)
        }
        _ => (t, 1),
    };
    let n: f64 = num.trim().parse().map_err(|_| format!("bad size '{s}': use a number with K, M or G"))?;
    let bytes = n * mult as f64;
    if !(bytes.is_finite() && bytes >= 1.0) {
        return Err(format!("bad size '{s}': use a positive number of bytes with K, M or G"));
    }
    let physical = nix::sys::sysinfo::sysinfo()
        .map(|i| i.ram_total())
        .map_err(|e| format!("cannot read the machine's memory size: {e}"))?;
    // Compared as floats first: the value may be far beyond any integer.
    if bytes > physical as f64 {
        return Err(format!("bad size '{s}': more than this machine's {} MiB of physical memory", physical >> 20));
    }
    usize::try_from(bytes as u64).map_err(|_| format!("bad size '{s}': too large"))
}

/// The longest duration any argument takes: a year. Longer ones are
/// refused (exit 2) rather than overflowing a deadline.
pub const MAX_DURATION: Duration = Duration::from_secs(366 * 86_400);

/// A duration as seconds (`30`, `0.5`) or as humans write it (`2m`),
/// positive and at most [`MAX_DURATION`].
fn parse_duration(what: &str, s: &str) -> Result<Duration, String> {
    let d = match s.trim().parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs > 0.0 && secs <= MAX_DURATION.as_secs_f64() => {
            Duration::from_secs_f64(secs)
        }
        Ok(_) => return Err(format!("bad {what} '{s}': use a positive duration of at most a year (30s, 2m, 1h)")),
        Err(_) => humantime::parse_duration(s).map_err(|e| format!("bad {what} '{s}': {e}"))?,
    };
    if d.is_zero() || d > MAX_DURATION {
        return Err(format!("bad {what} '{s}': use a positive duration of at most a year (30s, 2m, 1h)"));
    }
    Ok(d)
}

/// The flags of `tables` and `schema`: the session's catalog, printed.
#[derive(Debug, Default, clap::Args)]
pub struct CatalogArgs {
    #[command(flatten)]
    pub files: FileArgs,
    #[command(flatten)]
    pub limits: LimitArgs,
    #[command(flatten)]
    pub history: HistoryArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub read: ReadArgs,
}

/// `sockql serve`'s PostgreSQL endpoint.
#[derive(clap::Args, Debug, Clone)]
#[command(next_help_heading = "PostgreSQL endpoint (psql, Grafana, DBeaver, psycopg)")]
pub struct PgArgs {
    /// Also speak the PostgreSQL wire protocol: on a unix socket in DIR
    /// (default /run/sockql; admitted by peer credentials: root and
    /// --pg-group), or on TCP ADDR:PORT (needs --pg-password-file; off
    /// loopback also TLS). Queries are bounded by --timeout (default 60s)
    /// and --memory-limit (default 256MiB) per query.
    #[arg(long, value_name = "DIR|ADDR:PORT", num_args = 0..=1, default_missing_value = "/run/sockql")]
    pub pg: Option<String>,
    /// Port in the unix socket's name (.s.PGSQL.PORT), as psql -p expects.
    #[arg(long, value_name = "PORT", default_value_t = 5439)]
    pub pg_port: u16,
    /// Admit members of GROUP on the unix socket, besides root.
    #[arg(long, value_name = "GROUP")]
    pub pg_group: Option<String>,
    /// The password TCP clients give (SCRAM-SHA-256): the file's first
    /// line; the file must not be readable by group or others.
    #[arg(long, value_name = "FILE")]
    pub pg_password_file: Option<std::path::PathBuf>,
    /// TLS certificate chain (PEM) for a TCP endpoint.
    #[arg(long, value_name = "FILE")]
    pub pg_tls_cert: Option<std::path::PathBuf>,
    /// TLS private key (PEM) for a TCP endpoint.
    #[arg(long, value_name = "FILE")]
    pub pg_tls_key: Option<std::path::PathBuf>,
    /// Clients connected at once; more are told so and closed.
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub pg_max_connections: usize,
    /// Client queries running at once; more wait (up to --timeout).
    /// Scrapes of /metrics do not count against it.
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub pg_max_queries: usize,
    #[command(flatten)]
    pub flight: FlightArgs,
}

/// `sockql serve`'s Arrow Flight SQL endpoint.
#[derive(clap::Args, Debug, Clone)]
#[command(next_help_heading = "Arrow Flight SQL endpoint (ADBC, Flight SQL JDBC, a fleet of sockqls)")]
pub struct FlightArgs {
    /// Also serve Arrow Flight SQL (gRPC) on ADDR:PORT, with the same
    /// tables, policy and bounds as --pg; its queries share
    /// --pg-max-queries with PostgreSQL clients. Needs
    /// --flight-password-file; off loopback also TLS.
    #[arg(long, value_name = "ADDR:PORT")]
    pub flight: Option<std::net::SocketAddr>,
    /// The password Flight clients give (basic auth, or the Handshake's
    /// token): the file's first line; the file must be owned by this
    /// user or root and not be readable by group or others.
    #[arg(long, value_name = "FILE")]
    pub flight_password_file: Option<std::path::PathBuf>,
    /// TLS certificate chain (PEM) for the Flight endpoint.
    #[arg(long, value_name = "FILE")]
    pub flight_tls_cert: Option<std::path::PathBuf>,
    /// TLS private key (PEM) for the Flight endpoint.
    #[arg(long, value_name = "FILE")]
    pub flight_tls_key: Option<std::path::PathBuf>,
    /// Mutual TLS: admit only clients with a certificate signed by this
    /// CA (PEM).
    #[arg(long, value_name = "FILE")]
    pub flight_tls_client_ca: Option<std::path::PathBuf>,
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    parse_duration("timeout", s)
}

fn parse_for(s: &str) -> Result<Duration, String> {
    parse_duration("duration", s)
}

fn parse_param(s: &str) -> Result<(String, String), String> {
    crate::query::saved::parse_assignment(s).map_err(|e| e.to_string())
}

/// An interval as `watch -n` takes it (seconds) or as humans write it.
pub fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = parse_duration("interval", s)?;
    if d < Duration::from_millis(100) {
        return Err(format!("interval '{s}' is too short: at least 100ms"));
    }
    Ok(d)
}

/// A retention period in days: 7d, 2w, 30 (days).
fn parse_retention(s: &str) -> Result<i64, String> {
    const MAX_DAYS: i64 = 100 * 366;
    let days = match s.parse::<i64>() {
        Ok(days) => days,
        Err(_) => (humantime::parse_duration(s).map_err(|e| format!("bad retention '{s}': {e}"))?.as_secs() / 86_400)
            .min(i64::MAX as u64) as i64,
    };
    if !(0..=MAX_DAYS).contains(&days) {
        return Err(format!("bad retention '{s}': use 0 to {MAX_DAYS} days"));
    }
    Ok(days)
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Sample tables (or a saved query) every INTERVAL into Parquet under
    /// DIR/<table>/host=<host>/date=<day>/<ts>.parquet, locally or in S3.
    Record {
        /// Where to write: a directory or s3://bucket/prefix (AWS_* variables).
        #[arg(long, value_name = "DIR|URL")]
        out: String,
        /// Sampling interval.
        #[arg(long, value_name = "INTERVAL", default_value = "5s", value_parser = parse_interval)]
        every: Duration,
        /// Stop after this long (default: until Ctrl-C).
        #[arg(long = "for", value_name = "DURATION", value_parser = parse_for)]
        duration: Option<Duration>,
        /// Stop after this many samples.
        #[arg(long, value_name = "N")]
        samples: Option<u64>,
        /// Tables to sample, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "sockets,conntrack,net_counters", conflicts_with = "query")]
        tables: Vec<String>,
        /// Record a saved query's result instead (under DIR/<NAME>/).
        #[arg(long, value_name = "NAME")]
        query: Option<String>,
        /// Listen to the event tables (socket_events, conntrack_events,
        /// process_events) for the whole recording instead of sampling
        /// tables, writing what was heard every INTERVAL.
        #[arg(long, conflicts_with_all = ["query", "samples"])]
        events: bool,
        /// Delete this host's partitions older than this (7d, 2w, or days).
        #[arg(long, value_name = "DAYS", value_parser = parse_retention)]
        retention: Option<i64>,
        #[command(flatten)]
        params: ParamArgs,
        #[command(flatten)]
        files: FileArgs,
        #[command(flatten)]
        limits: LimitArgs,
        #[command(flatten)]
        read: ReadArgs,
        #[command(flatten)]
        streams: StreamArgs,
    },
    /// Run a saved query (see `sockql run --list`), with --param NAME=VALUE.
    Run {
        /// Saved query name; without one, the saved queries are listed.
        name: Option<String>,
        /// List the saved queries with their descriptions.
        #[arg(long)]
        list: bool,
        #[command(flatten)]
        flags: QueryArgs,
    },
    /// Serve the saved queries that carry a `-- metric:` header as
    /// Prometheus metrics: GET /metrics (text format, or OpenMetrics when
    /// asked), GET /healthz. Listens on loopback unless told otherwise;
    /// /metrics reveals counts per state, namespace and process name.
    Serve {
        /// Address and port to listen on (port 0: any free port, printed on stderr).
        #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:9477")]
        listen: std::net::SocketAddr,
        /// Time one scrape may take, all its queries together.
        #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_interval)]
        scrape_timeout: Duration,
        /// Series one metric family may have; the rest are left out and
        /// counted in sockql_series_dropped.
        #[arg(long, value_name = "N", default_value_t = 10_000)]
        max_series: usize,
        /// Serve only these metric reports (comma-separated names);
        /// default: every saved query with a `-- metric:` header.
        #[arg(long, value_name = "NAME,...", value_delimiter = ',')]
        metrics: Vec<String>,
        #[command(flatten)]
        limits: LimitArgs,
        #[command(flatten)]
        read: ReadArgs,
        #[command(flatten)]
        streams: StreamArgs,
        #[command(flatten)]
        pg: PgArgs,
    },
    /// List the tables.
    Tables {
        #[command(flatten)]
        flags: CatalogArgs,
    },
    /// Show the columns of TABLE: name, type, nullability, description.
    Schema {
        /// Table name.
        table: String,
        #[command(flatten)]
        flags: CatalogArgs,
    },
    /// Print a shell completion script: sockql completions bash >
    /// /etc/bash_completion.d/sockql (zsh: a _sockql file on $fpath; fish:
    /// ~/.config/fish/completions/sockql.fish).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff): sockql man > /usr/local/share/man/man1/sockql.1
    Man,
    /// Print the reference (tables, reports, flags) in Markdown: doc/reference.md.
    #[command(hide = true)]
    Reference,
    /// Capture packets into a pcap file, as tcpdump -w does (Linux cooked
    /// v2 link type; the first 256 bytes of each packet, so headers), for
    /// --capture-for (10s unless given) or until Ctrl-C. FILTER is a SQL
    /// condition on the packets table that the capture applies itself:
    /// protocol, src_port/dst_port, src_addr/dst_addr, interface,
    /// netns/netns_name, joined with AND, e.g. "protocol = 'tcp' AND
    /// dst_port = 443". FILE must not exist.
    Capture {
        /// The pcap file to create.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Which packets (a SQL condition, as after WHERE).
        filter: Option<String>,
        #[command(flatten)]
        params: ParamArgs,
        #[command(flatten)]
        files: FileArgs,
        #[command(flatten)]
        limits: LimitArgs,
        #[command(flatten)]
        read: ReadArgs,
        #[command(flatten)]
        streams: StreamArgs,
    },
    /// Write the raw netlink answer datagrams of SOURCE to FILE (for bug
    /// reports and parser test fixtures). Needs --allow-files; FILE must
    /// not exist.
    #[command(hide = true)]
    NetlinkCapture {
        #[arg(value_enum)]
        source: CaptureSource,
        file: PathBuf,
        #[command(flatten)]
        files: FileArgs,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(argv: &[&str]) -> Result<Args, ArgsError> {
        Args::try_parse_checked(std::iter::once("sockql").chain(argv.iter().copied()).map(Into::into))
    }

    fn refused(argv: &[&str]) -> String {
        match parse(argv) {
            Err(ArgsError::NotFor(line)) => line,
            Err(ArgsError::Clap(e)) => panic!("{argv:?}: clap's error, not ours: {e}"),
            Ok(a) => panic!("{argv:?} taken: {a:?}"),
        }
    }

    #[test]
    fn a_flag_before_a_subcommand_is_the_subcommands() {
        for argv in [&["--format", "csv", "tables"][..], &["tables", "--format", "csv"], &["--format=csv", "tables"]] {
            let Some(Command::Tables { flags }) = parse(argv).unwrap().command else { panic!("{argv:?}") };
            assert_eq!(flags.output.format, Format::Csv, "{argv:?}");
        }
        let a = parse(&["--all-netns", "-p", "port=443", "--format", "csv", "run", "port_owner", "--wide"]).unwrap();
        let Some(Command::Run { name, flags, .. }) = a.command else { panic!() };
        assert_eq!(name.as_deref(), Some("port_owner"));
        assert!(flags.read.all_netns && flags.output.wide && flags.output.format == Format::Csv);
        assert_eq!(flags.params.params, [("port".to_string(), "443".to_string())]);
        let a = parse(&["--capture-for", "1s", "capture", "--out", "/x", "protocol = 'tcp'"]).unwrap();
        let Some(Command::Capture { streams, filter, .. }) = a.command else { panic!() };
        assert_eq!((streams.capture_for, filter.as_deref()), (Some(Duration::from_secs(1)), Some("protocol = 'tcp'")));
    }

    #[test]
    fn the_query_form_keeps_its_flags_and_sql() {
        let a = parse(&["--format", "json", "-x", "on", "SELECT 1"]).unwrap();
        assert!(a.command.is_none());
        assert_eq!(a.query.as_deref(), Some("SELECT 1"));
        assert_eq!((a.flags.output.format, a.flags.output.expanded), (Format::Json, Expanded::On));
        // SQL that starts with a comment is SQL, never a flag or a subcommand.
        let a = parse(&["--", "-- tables\nSELECT 1"]).unwrap();
        assert_eq!(a.query.as_deref(), Some("-- tables\nSELECT 1"));
    }

    #[test]
    fn a_flag_of_another_command_is_refused_in_one_line() {
        assert_eq!(refused(&["--watch", "2s", "serve"]), "--watch does not apply to serve");
        assert_eq!(refused(&["serve", "--format", "csv"]), "--format does not apply to serve");
        assert_eq!(refused(&["serve", "-p", "x=1"]), "--param does not apply to serve");
        assert_eq!(refused(&["-x", "on", "serve"]), "--expanded does not apply to serve");
        assert_eq!(refused(&["serve", "--allow-files"]), "--allow-files does not apply to serve");
        assert_eq!(refused(&["record", "--out", "d", "--follow"]), "--follow does not apply to record");
        assert_eq!(refused(&["tables", "--capture-for", "1s"]), "--capture-for does not apply to tables");
        assert_eq!(refused(&["man", "--all-netns"]), "--all-netns does not apply to man");
        // A flag sockql does not have at all is clap's to explain.
        assert!(matches!(parse(&["serve", "--no-such-flag"]), Err(ArgsError::Clap(_))));
    }

    #[test]
    fn help_and_version_are_answered_where_written() {
        for argv in [&["--help", "tables"][..], &["--version"], &["tables", "--help"]] {
            let Err(ArgsError::Clap(e)) = parse(argv) else { panic!("{argv:?}") };
            assert!(!e.use_stderr(), "{argv:?}: {e}");
        }
    }
}

//! `sockql --hosts FILE "SQL"`: one question to a fleet of `sockql serve
//! --flight` hosts. The session is sockql's own (policy, limits, saved
//! reports), with each table replaced by the fleet's table with a `host`
//! column (`views.rs`): the union of two groups of hosts, whatever their
//! number. DataFusion's federation (datafusion-federation) writes each
//! group's part of the plan as SQL once; it is sent to each host of the
//! group under that host's name (`fan_out.rs`, `host_sql.rs`) over Arrow
//! Flight SQL (`flight_executor.rs`); `split_aggregate.rs` makes
//! aggregates partial per host. Hosts that do not answer in time,
//! refuse or fail are named on one stderr line and in `fleet_hosts`, and
//! the exit status says the answer is partial ([`PARTIAL_EXIT`]).

pub mod connect;
pub mod dialect;
pub mod fan_out;
pub mod flight_executor;
pub mod host_sql;
pub mod host_status;
pub mod hosts_file;
pub mod split_aggregate;
pub mod views;

use std::sync::Arc;

use datafusion::execution::session_state::SessionStateBuilder;
use datafusion_federation::sql::SQLFederationProvider;
use datafusion_federation::{FederatedQueryPlanner, FederationOptimizerRule};

use super::args::FleetArgs;
use super::hi_args::HiArgs;
use crate::query::engine::{Engine, QueryRunner, SqlSource};
use fan_out::GroupExecutor;
use flight_executor::FleetShared;
use host_status::{FleetHostsTable, Statuses};

/// The exit status of an answer some hosts are missing from.
pub const PARTIAL_EXIT: u8 = 3;

/// The error that makes the exit status [`PARTIAL_EXIT`]: its line was
/// already printed.
#[derive(Debug)]
pub struct Partial;

impl std::fmt::Display for Partial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "partial answer")
    }
}

impl std::error::Error for Partial {}

/// The fleet session: sockql's engine, its tables fleet-wide.
pub async fn session(hi: &HiArgs, args: &FleetArgs) -> anyhow::Result<(Engine, Arc<Statuses>, views::Groups)> {
    let Some(path) = &args.hosts else { anyhow::bail!("--hosts FILE is required") };
    let hosts = hosts_file::read(path)?;
    let password = match &args.hosts_password_file {
        Some(p) => Some(crate::serve::pg::auth::read_password_file_for(p, "--hosts-password-file")?),
        None => None,
    };
    let connector = match &args.hosts_ca {
        Some(ca) => connect::Connector::tls(connect::TlsFiles {
            ca,
            cert: args.hosts_cert.as_deref(),
            key: args.hosts_key.as_deref(),
        })?,
        None if args.hosts_cert.is_some() || args.hosts_key.is_some() => {
            anyhow::bail!("--hosts-cert and --hosts-key need --hosts-ca")
        }
        None => connect::Connector::plain(),
    };
    let statuses = Statuses::new(hosts);
    let engine = Engine::with(&hi.source, hi.policy, hi.limits)?;
    let shared = Arc::new(FleetShared {
        statuses: statuses.clone(),
        connector,
        password,
        timeout: args.hosts_timeout,
        places: Arc::new(tokio::sync::Semaphore::new(usize::from(args.hosts_parallel.max(1)))),
        parallel: usize::from(args.hosts_parallel.max(1)),
        pool: engine.context().runtime_env().memory_pool.clone(),
    });
    // Two groups (fan_out.rs says why two): alternate hosts of the file,
    // so a file's first hosts are asked by both at once.
    let count = statuses.hosts().len();
    let providers: views::Groups = Arc::new(
        (0..2)
            .map(|group| {
                let hosts = (group..count).step_by(2).collect();
                Arc::new(SQLFederationProvider::new(Arc::new(GroupExecutor::new(shared.clone(), group, hosts))))
            })
            .collect(),
    );
    let ctx = engine.context();
    for table in crate::tables::TABLES {
        let name = table.name();
        let Some(local) = ctx.table_provider(name).await.ok() else { continue };
        ctx.deregister_table(name)?;
        ctx.register_table(name, Arc::new(views::FleetView::new(name, local.schema(), providers.clone())))?;
    }
    ctx.register_table("fleet_hosts", Arc::new(FleetHostsTable(statuses.clone())))?;
    // The federation plans last, after filters and projections were
    // pushed into each host's branch and aggregates split, so they are in
    // the SQL each host is sent.
    let state_ref = ctx.state_ref();
    let mut state = state_ref.write();
    // The session's rules run again after the split, so what the first
    // round pushed into the branches is simplified there too (`host =
    // 'b'` folds to false and that host's branch goes; a LIMIT reaches
    // each branch) before the federation cuts the branches off.
    let defaults = state.optimizers().to_vec();
    let mut rules = defaults.clone();
    rules.push(Arc::new(split_aggregate::SplitAggregate));
    rules.extend(defaults);
    rules.push(Arc::new(FederationOptimizerRule::new()));
    *state = SessionStateBuilder::new_from_existing(state.clone())
        .with_optimizer_rules(rules)
        .with_query_planner(Arc::new(FederatedQueryPlanner::new()))
        .build();
    drop(state);
    Ok((engine, statuses, providers))
}

/// `sockql --hosts FILE run NAME`: each host runs the saved report on
/// its own data (its joins stay within the host), as
/// `report('NAME', 'param=value', ...)`; the answers are unioned with a
/// `host` column first.
pub async fn report(hi: &HiArgs, args: &FleetArgs, name: &str) -> anyhow::Result<()> {
    let saved = crate::query::saved::find(name)?;
    // The report is found, bound and checked here, as `run` would: a
    // parameter it does not take fails before any host is asked.
    saved.source(&hi.params)?;
    let quote = |s: &str| format!("'{}'", s.replace('\'', "''"));
    let mut call = vec![quote(name)];
    call.extend(hi.params.iter().map(|(k, v)| quote(&format!("{k}={v}"))));
    let call = format!("report({})", call.join(", "));
    // Its columns, from planning it here (the hosts run the same binary).
    let local = Engine::with(&hi.source, hi.policy, hi.limits)?;
    let schema = local.context().sql(&format!("SELECT * FROM {call}")).await?.schema().inner().clone();
    let (engine, statuses, providers) = session(hi, args).await?;
    let remote = datafusion_federation::sql::RemoteTableRef::parse_with_default_dialect(&call)?;
    let view = views::FleetView::of("fleet_report", remote, schema, providers);
    engine.context().register_table("fleet_report", Arc::new(view))?;
    let sql = SqlSource::inline("SELECT * FROM fleet_report");
    run(hi, engine, statuses, Some(sql)).await
}

/// Run `sql` fleet-wide and print it as the query form does; a partial
/// answer is said on one stderr line and by the exit status.
pub async fn query(hi: &HiArgs, args: &FleetArgs, sql: Option<SqlSource>) -> anyhow::Result<()> {
    let (engine, statuses, _) = session(hi, args).await?;
    run(hi, engine, statuses, sql).await
}

async fn run(hi: &HiArgs, engine: Engine, statuses: Arc<Statuses>, sql: Option<SqlSource>) -> anyhow::Result<()> {
    let Some(sql) = sql else {
        return super::repl::Repl::new(&engine, hi.output, hi.source.all_netns.clone(), engine.streams().clone())
            .run()
            .await;
    };
    crate::tables::streams::end_on_ctrl_c(engine.streams().clone());
    let run = statuses.begin_run();
    let mut sink = crate::output::PrintSink::new(hi.output, || -> Box<dyn std::io::Write> {
        Box::new(std::io::BufWriter::with_capacity(1 << 16, std::io::stdout()))
    })
    .with_empty_note(sql.empty_note.clone());
    let result = engine.run_into(&sql, &mut sink).await;
    let missing = statuses.missing(run);
    if !missing.is_empty() {
        crate::stderrln!("{}", host_status::partial_line(&missing, statuses.asked(run)));
    }
    result?;
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Partial.into())
    }
}

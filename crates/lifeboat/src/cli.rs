//! The command line. Command and flag names are a contract: scripts, tests and benchmarks
//! call them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "lifeboat",
    version,
    about = "Disaster recovery for the services you run: restore points offsite, failover, drills",
    after_help = "Exit codes: 0 success; 1 failure; 2 invalid usage or plan; \
                  3 verification found problems (check, restore --verify, verify, audit, \
                  drill: a verification failed or an objective was missed); \
                  4 backup incomplete (a restore point was written, some resources failed); \
                  130 a drill stopped by a signal (after tearing down), or a restore or backup \
                  (its staging files and temporary copies removed); \
                  141 standard output was closed before everything was written (the work \
                  itself went on to its end)."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct Global {
    /// The plan file [default: ./lifeboat.toml when it exists]
    #[arg(long, global = true, value_name = "FILE")]
    pub plan: Option<PathBuf>,
    /// The repository (path or URL); overrides the plan's
    #[arg(
        long = "repo",
        global = true,
        env = "LIFEBOAT_REPOSITORY",
        value_name = "URL"
    )]
    pub repository: Option<String>,
    /// Machine-readable output on stdout
    #[arg(long, global = true)]
    pub json: bool,
    /// Log format on stderr
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
    /// More log output (-v info, -vv debug)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// No progress bars
    #[arg(long, short, global = true)]
    pub quiet: bool,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Validate the plan, or print an example
    #[command(subcommand)]
    Plan(PlanCommand),
    /// Create the repository
    #[command(subcommand)]
    Repo(RepoCommand),
    /// Capture resources into a new restore point
    Backup(BackupArgs),
    /// List restore points
    Points(PointsArgs),
    /// Restore from a restore point
    Restore(RestoreArgs),
    /// Compare databases at a site with what a restore point captured (row counts, checks)
    Verify(VerifyArgs),
    /// The primary is lost: bring the stack up at a standby site from a restore point and
    /// move traffic there
    Failover(FailoverArgs),
    /// The primary is back: quiesce and capture the DR site, restore that at the primary,
    /// switch back
    Failback(PlannedArgs),
    /// A planned move of the stack and its traffic to SITE, both sites healthy: the site left
    /// is quiesced (its writes stopped, confirmed) before its final capture
    Switchover(SwitchoverArgs),
    /// Finish an interrupted failover, failback or switchover from where it stopped
    Resume(ResumeArgs),
    /// Which site serves and which is fenced or quiesced, under which epoch, and the last run
    /// with its step timings
    Status,
    /// The witness: probe the primary from here, alert, and fail over as `[watch]` decides
    Watch,
    /// Approve the failover a manual `lifeboat watch` is waiting for
    Approve,
    /// Prove recovery works: restore into an isolated sandbox, verify, measure the achieved
    /// RTO and RPO, tear down, report
    Drill(DrillArgs),
    /// What is unprotected, stale, drifting or misconfigured
    Audit(AuditArgs),
    /// Verify the repository: finds every missing, truncated or corrupted object
    Check(CheckArgs),
    /// Delete restore points a retention policy does not keep (applied to each resource, and
    /// each database or discovered item, separately, counting only complete captures; a point
    /// goes only when no group keeps it)
    Forget(ForgetArgs),
    /// Remove data no restore point needs (safe while backups run)
    Prune(PruneArgs),
    /// A guided demonstration on sample data: back up, change, back up, restore, verify, drill
    Demo(DemoArgs),
}

#[derive(Subcommand, Debug)]
pub enum PlanCommand {
    /// Validate the plan; prints every problem with file, line and field
    Check {
        /// Also resolve every secret reference (env variables, files)
        #[arg(long)]
        resolve: bool,
    },
    /// Print a commented example plan
    Example,
}

#[derive(Subcommand, Debug)]
pub enum RepoCommand {
    /// Create a new repository
    Init,
}

#[derive(Args, Debug)]
pub struct BackupArgs {
    /// Resources of the plan to capture [default: all]; `name/item` captures one discovered
    /// item (one database of a server)
    pub resources: Vec<String>,
    /// Capture this directory (no plan needed)
    #[arg(long, value_name = "DIR", conflicts_with = "resources")]
    pub path: Option<PathBuf>,
    /// With --path: only files matching these globs
    #[arg(long, requires = "path")]
    pub include: Vec<String>,
    /// With --path: leave out paths matching these globs
    #[arg(long, requires = "path")]
    pub exclude: Vec<String>,
    /// A tag recorded in the restore point (repeatable)
    #[arg(long)]
    pub tag: Vec<String>,
}

#[derive(Args, Debug)]
pub struct PointsArgs {
    /// Only restore points holding this resource
    #[arg(long)]
    pub resource: Option<String>,
}

#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// `latest` (each resource from its own newest complete capture), or a restore point id
    /// (a unique prefix is enough)
    pub point: String,
    /// Resources to restore (repeatable; `name` also selects its discovered `name/item`s)
    /// [default: all]
    #[arg(long)]
    pub resource: Vec<String>,
    /// Restore only this path inside a file tree
    #[arg(long, value_name = "SUBPATH")]
    pub path: Option<PathBuf>,
    /// Restore file trees into this directory: it receives one tree's contents, or a folder
    /// per resource. A folder that is not empty is refused (naming what is there) unless
    /// --replace or --merge
    #[arg(
        long,
        value_name = "DIR",
        required_unless_present = "site",
        conflicts_with = "site"
    )]
    pub target: Option<PathBuf>,
    /// Restore into the resources' bindings at this site of the plan
    #[arg(long, value_name = "SITE")]
    pub site: Option<String>,
    /// Overwrite what exists (a database, a database file, a non-empty folder). A file tree
    /// becomes equal to the restore point: what the point lacks is removed, within the
    /// resource's include/exclude (what they leave out stays), once everything is restored. A
    /// database is loaded beside the old one and swapped in only once loaded: a failed load
    /// keeps the old one. Without it, an existing database refuses the whole restore before
    /// anything (a server's accounts included) is applied
    #[arg(long)]
    pub replace: bool,
    /// Restore into a non-empty --target folder as an overlay: write the point's entries over
    /// what is there and remove nothing
    #[arg(long, requires = "target", conflicts_with = "replace")]
    pub merge: bool,
    /// With --replace: replace a SQLite file even while processes hold it open (named in the
    /// refusal without it). They keep writing into the old, replaced file, and lose what they
    /// write, until restarted (the plan's `start`)
    #[arg(long, requires = "replace")]
    pub force: bool,
    /// Restore database OLD under the name NEW (repeatable), e.g. `orders=orders_check`
    #[arg(long, value_name = "OLD=NEW", value_parser = parse_rename, requires = "site")]
    pub rename: Vec<(String, String)>,
    /// Parallel jobs for each PostgreSQL database restore (`pg_restore --jobs`). 1 (the
    /// default) streams the dump into `pg_restore`, which measured fastest on small machines
    /// (`bench/postgres.sh`, 2 cores: 1.9 s against 2.4 s with 2 jobs); more first write it to
    /// a temporary file (parallel restore seeks), which pays off for many large tables on many
    /// cores
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub jobs: u32,
    /// Compare the restore point with --target or the bindings at --site instead of writing:
    /// nothing is written there, and differences exit 3. File trees are compared entry by
    /// entry within the resource's include/exclude; SQLite files by schema, row counts and
    /// rows; PostgreSQL databases by row counts and the plan's checks; MariaDB/MySQL databases
    /// by dumping them again (comments aside); command and HTTP documents by capturing them
    /// again (a capture only reads; a document that changes at each capture always differs).
    /// A server's accounts are not compared
    #[arg(long)]
    pub verify: bool,
}

#[derive(Args, Debug)]
pub struct DrillArgs {
    /// One restore point for every resource drilled [default: each resource's own newest
    /// complete capture]
    #[arg(long, value_name = "ID")]
    pub point: Option<String>,
    /// Drill only these resources (and what they depend on)
    #[arg(long, value_name = "RESOURCE")]
    pub only: Vec<String>,
    /// The plan's drill site (`role = "drill"`) [default: the first one, else a sandbox
    /// derived from the plan]
    #[arg(long, value_name = "SITE")]
    pub site: Option<String>,
    /// Where the sandbox's folder is made [default: the system's temporary folder]
    #[arg(long, value_name = "DIR")]
    pub sandbox: Option<PathBuf>,
    /// Leave the sandbox up for inspection; `lifeboat drill --cleanup` removes it
    #[arg(long)]
    pub keep: bool,
    /// Also write the HTML report to this file
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Do not compare the live site's data with the restore point
    #[arg(long)]
    pub skip_changes: bool,
    /// Finish the teardown of drills that were interrupted or kept, then exit
    #[arg(long, conflicts_with_all = ["point", "only", "site", "sandbox", "keep", "html", "history"])]
    pub cleanup: bool,
    /// List past drills with their achieved RTO and RPO
    #[arg(long, conflicts_with_all = ["point", "only", "site", "sandbox", "keep", "html"])]
    pub history: bool,
}

#[derive(Args, Debug)]
pub struct AuditArgs {
    /// Print the findings as a Markdown table
    #[arg(long)]
    pub markdown: bool,
    /// Exit with 3 when a finding is at least this severe
    #[arg(long, value_enum, default_value_t = FailOn::Error)]
    pub fail_on: FailOn,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailOn {
    Warning,
    Error,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Restore only these resources (and what they depend on)
    #[arg(long, value_name = "RESOURCE")]
    pub only: Vec<String>,
    /// Print the ordered steps and what each would touch; change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask for confirmation (required when not on a terminal)
    #[arg(long)]
    pub yes: bool,
}

#[derive(Args, Debug)]
pub struct FailoverArgs {
    /// The standby site to bring up
    #[arg(long, value_name = "SITE")]
    pub to: String,
    /// One restore point for every resource [default: each resource's own newest complete
    /// capture, every item it discovered included]
    #[arg(long, value_name = "ID")]
    pub point: Option<String>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Args, Debug)]
pub struct SwitchoverArgs {
    /// The site to move to
    #[arg(long, value_name = "SITE")]
    pub to: String,
    #[command(flatten)]
    pub planned: PlannedArgs,
}

/// A planned move (switchover, failback): the site left is quiesced before its capture.
#[derive(Args, Debug)]
pub struct PlannedArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// Go on when the site being left cannot be confirmed quiesced (its `quiesce`, or the
    /// fence when it is the primary): writes after the capture are lost, the achieved RPO is
    /// reported unknown
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct ResumeArgs {
    /// Go on past a quiesce that could not be confirmed (the achieved RPO is then unknown),
    /// and replace SQLite files that processes at the site hold open
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// `latest`, or a restore point id (a unique prefix is enough)
    #[arg(default_value = "latest")]
    pub point: String,
    /// The site whose databases are compared
    #[arg(long, value_name = "SITE")]
    pub site: String,
    /// Resources to compare (repeatable; `name` also selects its `name/item`s) [default: all
    /// databases]
    #[arg(long)]
    pub resource: Vec<String>,
    /// Database OLD was restored as NEW (repeatable)
    #[arg(long, value_name = "OLD=NEW", value_parser = parse_rename)]
    pub rename: Vec<(String, String)>,
}

fn parse_rename(value: &str) -> Result<(String, String), String> {
    match value.split_once('=') {
        Some((old, new)) if !old.is_empty() && !new.is_empty() => {
            Ok((old.to_string(), new.to_string()))
        }
        _ => Err(format!("`{value}` is not OLD=NEW")),
    }
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Also read and verify all data (every pack, frame and chunk)
    #[arg(long)]
    pub read_data: bool,
}

#[derive(Args, Debug, Default)]
pub struct ForgetArgs {
    /// Keep the N newest restore points
    #[arg(long, value_name = "N")]
    pub keep_last: Option<u32>,
    /// Keep the newest point of each of the last N hours
    #[arg(long, value_name = "N")]
    pub keep_hourly: Option<u32>,
    /// Keep the newest point of each of the last N days
    #[arg(long, value_name = "N")]
    pub keep_daily: Option<u32>,
    /// Keep the newest point of each of the last N weeks
    #[arg(long, value_name = "N")]
    pub keep_weekly: Option<u32>,
    /// Keep the newest point of each of the last N months
    #[arg(long, value_name = "N")]
    pub keep_monthly: Option<u32>,
    /// Keep the newest point of each of the last N years
    #[arg(long, value_name = "N")]
    pub keep_yearly: Option<u32>,
    /// Show what would be deleted, delete nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    /// How long condemned data waits before deletion (`0s` deletes at once). Safe with
    /// backups running at any value: data a backup under way may use waits until it ends
    #[arg(long, default_value = "24h", value_parser = parse_duration)]
    pub grace: std::time::Duration,
    /// Show what would be done, change nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Where to put the sample data, repository and restore [default: a new temporary dir]
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    lifeboat_plan::parse_duration(s).map_err(|e| e.to_string())
}

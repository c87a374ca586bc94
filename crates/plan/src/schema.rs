//! The typed plan. Every type mirrors one part of `lifeboat.toml`; defaults are the
//! documented ones (see [`crate::example`] for the commented reference).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use indexmap::IndexMap;

use crate::diagnostic::{Diagnostic, PlanErrors};
use crate::read::{SpanIndex, plan_enum};
use crate::secret::{Secret, SecretUse, StringOrSecret};

/// A loaded, validated plan.
#[derive(Clone, Debug)]
pub struct Plan {
    pub repository: Repository,
    pub objectives: Objectives,
    pub state: State,
    /// In file order.
    pub sites: IndexMap<String, Site>,
    /// In file order.
    pub resources: IndexMap<String, Resource>,
    pub traffic: Option<Traffic>,
    pub fence: Option<Fence>,
    pub watch: Option<Watch>,
    pub versions: Option<Versions>,
    pub inventory: Vec<InventoryEntry>,
    pub notify: Vec<Notifier>,
    pub schedule: Schedule,
    pub(crate) origin: Origin,
}

/// Where a plan came from: needed to resolve paths and to point diagnostics at it.
#[derive(Clone, Debug)]
pub(crate) struct Origin {
    pub file: PathBuf,
    pub plan_dir: PathBuf,
    pub source: Arc<str>,
    pub spans: SpanIndex,
    pub secrets: Vec<SecretUse>,
    pub warnings: Vec<Diagnostic>,
    pub notes: Vec<Diagnostic>,
}

impl Plan {
    /// The one site with `role = "primary"`.
    ///
    /// # Panics
    ///
    /// Never for a plan from [`crate::load`]/[`crate::parse`], which guarantee exactly one
    /// primary; only if the caller removed it from `sites` afterwards.
    pub fn primary_site(&self) -> (&str, &Site) {
        self.sites
            .iter()
            .find(|(_, site)| site.role == Role::Primary)
            .map(|(name, site)| (name.as_str(), site))
            .expect("a validated plan has exactly one primary site")
    }

    /// Sites with `role = "standby"`, in file order.
    pub fn standby_sites(&self) -> impl Iterator<Item = (&str, &Site)> {
        self.sites_with_role(Role::Standby)
    }

    pub fn sites_with_role(&self, role: Role) -> impl Iterator<Item = (&str, &Site)> {
        self.sites
            .iter()
            .filter(move |(_, site)| site.role == role)
            .map(|(name, site)| (name.as_str(), site))
    }

    pub fn site(&self, name: &str) -> Option<&Site> {
        self.sites.get(name)
    }

    pub fn site_names(&self) -> impl Iterator<Item = &str> {
        self.sites.keys().map(String::as_str)
    }

    pub fn resource(&self, name: &str) -> Option<&Resource> {
        self.resources.get(name)
    }

    pub fn resource_names(&self) -> impl Iterator<Item = &str> {
        self.resources.keys().map(String::as_str)
    }

    /// The resource's own `rpo`, else the plan's `[objectives] rpo`.
    pub fn rpo_of(&self, resource: &str) -> Option<Duration> {
        self.resources
            .get(resource)
            .map(|resource| resource.rpo_or(&self.objectives))
    }

    /// Resource names ordered so that each comes after everything it `depends_on`
    /// (file order otherwise). Validation guarantees there is no cycle.
    pub fn restore_order(&self) -> Vec<&str> {
        let mut ordered: Vec<&str> = Vec::with_capacity(self.resources.len());
        // Repeated passes are quadratic, but plans have tens of resources, not thousands.
        while ordered.len() < self.resources.len() {
            let before = ordered.len();
            for (name, resource) in &self.resources {
                let ready = resource
                    .depends_on
                    .iter()
                    .all(|dependency| ordered.contains(&dependency.as_str()));
                if !ordered.contains(&name.as_str()) && ready {
                    ordered.push(name);
                }
            }
            if ordered.len() == before {
                // Unreachable for validated plans; never loop forever regardless.
                for name in self.resources.keys() {
                    if !ordered.contains(&name.as_str()) {
                        ordered.push(name);
                    }
                }
            }
        }
        ordered
    }

    /// The plan file as given to [`crate::load`] / [`crate::parse`].
    pub fn file(&self) -> &Path {
        &self.origin.file
    }

    /// The absolute folder relative paths in the plan are resolved against.
    pub fn plan_dir(&self) -> &Path {
        &self.origin.plan_dir
    }

    /// Resolves a path the way the plan's own relative paths are resolved.
    pub fn resolve_path(&self, path: impl AsRef<Path>) -> PathBuf {
        let path = path.as_ref();
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.origin.plan_dir.join(path)
        }
    }

    /// The plan's name: the file name without `.toml`, or the folder's name when the file
    /// is called `lifeboat.toml`. Used for the default state folder.
    pub fn name(&self) -> String {
        let stem = self
            .origin
            .file
            .file_stem()
            .map(|stem| stem.to_string_lossy().into_owned());
        let folder = self
            .origin
            .plan_dir
            .file_name()
            .map(|folder| folder.to_string_lossy().into_owned());
        match (stem, folder) {
            (Some(stem), Some(folder)) if stem == "lifeboat" => folder,
            (Some(stem), _) if !stem.is_empty() => stem,
            _ => "default".to_string(),
        }
    }

    /// `[state] dir`, or `$XDG_STATE_HOME/lifeboat/<name>` (falling back to
    /// `~/.local/state/lifeboat/<name>`).
    pub fn state_dir(&self) -> PathBuf {
        if let Some(dir) = &self.state.dir {
            return dir.clone();
        }
        let base = std::env::var_os("XDG_STATE_HOME")
            .filter(|value| !value.is_empty())
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/state"))
            })
            .unwrap_or_else(|| self.origin.plan_dir.join(".lifeboat-state"));
        base.join("lifeboat").join(self.name())
    }

    /// Every secret reference in the plan, with its field path and span.
    pub fn secrets(&self) -> &[SecretUse] {
        &self.origin.secrets
    }

    /// Warnings found while loading (the plan loaded, but something looks wrong).
    pub fn warnings(&self) -> &[Diagnostic] {
        &self.origin.warnings
    }

    /// Notes found while loading: settings worth knowing about, nothing wrong.
    pub fn notes(&self) -> &[Diagnostic] {
        &self.origin.notes
    }

    /// The plan's source text.
    pub fn source(&self) -> &str {
        &self.origin.source
    }

    /// Byte span of the key at a dotted field path (e.g. `resources.orders-db.at.dr`),
    /// for diagnostics raised after loading.
    pub fn span_of(&self, path: &str) -> Option<std::ops::Range<usize>> {
        self.origin.spans.key(path)
    }

    /// Wraps diagnostics about this plan (e.g. from [`crate::check_secrets`]) with the
    /// plan source, for rendering.
    pub fn report(&self, diagnostics: Vec<Diagnostic>) -> PlanErrors {
        PlanErrors::new(
            &self.origin.file,
            Arc::clone(&self.origin.source),
            diagnostics,
        )
    }
}

// ---------------------------------------------------------------------------------------
// [repository]

/// `[repository]`: where restore points live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Repository {
    /// The URL as written.
    pub url: String,
    /// The URL parsed, local paths resolved against the plan folder.
    pub location: RepositoryLocation,
    pub password: Secret,
    pub store: ObjectStoreOptions,
}

/// Where the repository is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RepositoryLocation {
    /// `file:///abs/path`, `/abs/path` or `relative/path` (relative to the plan folder).
    Local(PathBuf),
    /// `s3://bucket/prefix`
    S3 { bucket: String, prefix: String },
    /// `azblob://container/prefix`
    Azure { container: String, prefix: String },
    /// `gs://bucket/prefix`
    Gcs { bucket: String, prefix: String },
}

impl RepositoryLocation {
    /// `file`, `s3`, `azblob` or `gs`.
    pub fn scheme(&self) -> &'static str {
        match self {
            RepositoryLocation::Local(_) => "file",
            RepositoryLocation::S3 { .. } => "s3",
            RepositoryLocation::Azure { .. } => "azblob",
            RepositoryLocation::Gcs { .. } => "gs",
        }
    }
}

/// Object-store options, written directly in `[repository]`. Each applies to some
/// schemes only; giving one to another scheme is an error.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObjectStoreOptions {
    /// S3, Azure, GCS: a custom endpoint (MinIO, an emulator), e.g. `http://127.0.0.1:9000`.
    pub endpoint: Option<String>,
    /// S3: the region (default: the SDK's, usually `us-east-1`).
    pub region: Option<String>,
    /// S3: access key id.
    pub access_key: Option<Secret>,
    /// S3: secret access key.
    pub secret_key: Option<Secret>,
    /// S3: session token for temporary credentials.
    pub session_token: Option<Secret>,
    /// S3: `true` for virtual-hosted-style requests (`bucket.host`), default path style.
    pub virtual_hosted_style: Option<bool>,
    /// Azure: storage account name.
    pub account: Option<String>,
    /// Azure: storage account key.
    pub account_key: Option<Secret>,
    /// Azure: shared access signature (instead of `account_key`).
    pub sas_token: Option<Secret>,
    /// GCS: service account key (JSON), usually `{ file = "..." }`.
    pub service_account_key: Option<Secret>,
    /// Any store: allow a plain `http://` endpoint. Default: `true` when `endpoint`
    /// starts with `http://`, else `false`.
    pub allow_http: Option<bool>,
}

impl ObjectStoreOptions {
    /// Whether plain HTTP is allowed (explicit `allow_http`, else implied by an
    /// `http://` endpoint).
    pub fn allows_http(&self) -> bool {
        self.allow_http.unwrap_or_else(|| {
            self.endpoint
                .as_deref()
                .is_some_and(|endpoint| endpoint.starts_with("http://"))
        })
    }
}

// ---------------------------------------------------------------------------------------
// [objectives], [state]

/// `[objectives]`: defaults for every resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Objectives {
    /// Default 24h.
    pub rpo: Duration,
    /// Default 4h.
    pub rto: Duration,
}

impl Objectives {
    pub const DEFAULT_RPO: Duration = Duration::from_secs(24 * 3600);
    pub const DEFAULT_RTO: Duration = Duration::from_secs(4 * 3600);
}

impl Default for Objectives {
    fn default() -> Self {
        Objectives {
            rpo: Self::DEFAULT_RPO,
            rto: Self::DEFAULT_RTO,
        }
    }
}

/// `[state]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct State {
    /// Resolved against the plan folder; `None` means the default (see [`Plan::state_dir`]).
    pub dir: Option<PathBuf>,
}

// ---------------------------------------------------------------------------------------
// [sites.<name>]

plan_enum! {
    /// A site's role.
    Role { Primary = "primary", Standby = "standby", Drill = "drill" }
}

/// `[sites.<name>]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Site {
    pub role: Role,
    /// The site does not exist until recovery provisions it.
    pub on_demand: bool,
    pub provision: Vec<Command>,
    pub decommission: Vec<Command>,
    /// Run after data is restored.
    pub start: Vec<Command>,
    /// Extra environment for the site's commands.
    pub env: IndexMap<String, String>,
    pub checks: Vec<Check>,
    /// Stops the application and revokes writes before a planned move (switchover,
    /// failback) leaves this site; empty: the plan's `[fence]` when this is the primary.
    pub quiesce: Vec<Command>,
    /// Checks that must pass after the quiesce for it to count as confirmed.
    pub quiesce_checks: Vec<Check>,
}

/// A command: argv, run without a shell. Never empty.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct Command(Vec<String>);

impl Command {
    /// Builds a command; `None` when `argv` is empty.
    pub fn try_new(argv: Vec<String>) -> Option<Self> {
        (!argv.is_empty()).then_some(Command(argv))
    }

    pub(crate) fn new(argv: Vec<String>) -> Self {
        Command(argv)
    }

    pub fn program(&self) -> &str {
        self.0.first().map_or("", String::as_str)
    }

    pub fn args(&self) -> &[String] {
        self.0.get(1..).unwrap_or_default()
    }

    pub fn argv(&self) -> &[String] {
        &self.0
    }

    /// The command with every `{item}` replaced (for discovered command resources).
    ///
    /// The item never builds shell text: it stays inside the argument that named it, and
    /// where a shell parses that argument (`sh -c`, `ssh host ...`, `su -c`) it is quoted
    /// for that shell, so `a b; rm -rf /` reaches the command as one word.
    pub fn with_item(&self, item: &str) -> Command {
        let shell_text = self
            .shell_wrapping()
            .map(|wrapping| wrapping.shell_text)
            .unwrap_or_default();
        Command(
            self.0
                .iter()
                .enumerate()
                .map(|(position, arg)| {
                    if shell_text.contains(&position) {
                        quote_into_shell_text(arg, item)
                    } else {
                        arg.replace("{item}", item)
                    }
                })
                .collect(),
        )
    }

    /// How this command hands arguments to a shell that parses them, if it does.
    pub fn shell_wrapping(&self) -> Option<crate::shell::ShellWrapping> {
        crate::shell::shell_wrapping(&self.0)
    }
}

/// Replaces each `{item}` in shell text with the item quoted for where it stands: bare
/// (single-quoted by `shell-words`), inside `'...'` (each `'` closed, escaped, reopened) or
/// inside `"..."` (`$`, `` ` ``, `"` and `\` escaped), so it is one literal word in every case.
fn quote_into_shell_text(text: &str, item: &str) -> String {
    #[derive(Clone, Copy, PartialEq)]
    enum Quote {
        Bare,
        Single,
        Double,
    }
    let mut state = Quote::Bare;
    let mut out = String::with_capacity(text.len() + item.len());
    let mut pieces = text.split("{item}").peekable();
    while let Some(piece) = pieces.next() {
        let mut escaped = false;
        for c in piece.chars() {
            out.push(c);
            if escaped {
                escaped = false;
                continue;
            }
            state = match (state, c) {
                (Quote::Bare | Quote::Double, '\\') => {
                    escaped = true;
                    state
                }
                (Quote::Bare, '\'') => Quote::Single,
                (Quote::Bare, '"') => Quote::Double,
                (Quote::Single, '\'') => Quote::Bare,
                (Quote::Double, '"') => Quote::Bare,
                (state, _) => state,
            };
        }
        if pieces.peek().is_none() {
            break;
        }
        match state {
            Quote::Bare => out.push_str(&shell_words::quote(item)),
            Quote::Single => out.push_str(&item.replace('\'', "'\\''")),
            Quote::Double => {
                for c in item.chars() {
                    if matches!(c, '$' | '`' | '"' | '\\') {
                        out.push('\\');
                    }
                    out.push(c);
                }
            }
        }
    }
    out
}

/// `[[sites.<name>.checks]]`: a health check that must pass for the site to serve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    pub name: String,
    pub probe: CheckProbe,
    /// HTTP only; `None` accepts any 2xx.
    pub expect_status: Option<u16>,
    /// HTTP only.
    pub body_contains: Option<String>,
    /// Per attempt; default 5s.
    pub timeout: Duration,
    /// Extra attempts after the first fails; default 0.
    pub retries: u32,
    /// Default 1s.
    pub retry_interval: Duration,
}

impl Check {
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
    pub const DEFAULT_RETRY_INTERVAL: Duration = Duration::from_secs(1);
}

/// What a check probes: exactly one of `http`, `tcp`, `sql`, `command`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckProbe {
    /// `http = "URL"`: a GET that must answer `expect_status` (default 2xx).
    Http(String),
    /// `tcp = "host:port"`: the port accepts a connection.
    Tcp(String),
    /// `sql = "QUERY"`, `resource = "NAME"`, optional `database` and `expect`: the query
    /// runs over the named postgres/mysql/sqlite resource's binding at this site.
    Sql {
        query: String,
        resource: String,
        database: Option<String>,
        /// The first column of the first row, as text, must equal this.
        expect: Option<String>,
    },
    /// `command = [...]`: must exit 0.
    Command(Command),
}

// ---------------------------------------------------------------------------------------
// [resources.<name>]

/// `[resources.<name>]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resource {
    pub kind: ResourceKind,
    /// Overrides `[objectives] rpo`.
    pub rpo: Option<Duration>,
    pub depends_on: Vec<String>,
    /// Checks run after a restore.
    pub verify: Vec<Verify>,
}

impl Resource {
    /// The resource's rpo, else the objectives' default.
    pub fn rpo_or(&self, objectives: &Objectives) -> Duration {
        self.rpo.unwrap_or(objectives.rpo)
    }

    /// `files`, `postgres`, `mysql`, `sqlite`, `command` or `http`.
    pub fn kind_name(&self) -> &'static str {
        self.kind.name()
    }

    /// Where the resource lives at `site`.
    pub fn binding(&self, site: &str) -> Option<Binding<'_>> {
        match &self.kind {
            ResourceKind::Files(files) => files.at.get(site).map(Binding::Path),
            ResourceKind::Sqlite(sqlite) => sqlite.at.get(site).map(Binding::Path),
            ResourceKind::Postgres(server) | ResourceKind::Mysql(server) => {
                server.at.get(site).map(Binding::Database)
            }
            ResourceKind::Command(command) => command.at.get(site).map(Binding::Command),
            ResourceKind::Http(http) => http.at.get(site).map(Binding::Http),
        }
    }

    /// Sites the resource is bound to, in file order.
    pub fn bound_sites(&self) -> Vec<&str> {
        fn keys<T>(map: &IndexMap<String, T>) -> Vec<&str> {
            map.keys().map(String::as_str).collect()
        }
        match &self.kind {
            ResourceKind::Files(files) => keys(&files.at),
            ResourceKind::Sqlite(sqlite) => keys(&sqlite.at),
            ResourceKind::Postgres(server) | ResourceKind::Mysql(server) => keys(&server.at),
            ResourceKind::Command(command) => keys(&command.at),
            ResourceKind::Http(http) => keys(&http.at),
        }
    }
}

/// The kind-specific part of a resource (`kind = "..."`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResourceKind {
    Files(FilesResource),
    Postgres(DatabaseServerResource),
    Mysql(DatabaseServerResource),
    Sqlite(SqliteResource),
    Command(CommandResource),
    Http(HttpResource),
}

impl ResourceKind {
    pub const NAMES: &'static [&'static str] =
        &["files", "postgres", "mysql", "sqlite", "command", "http"];

    pub fn name(&self) -> &'static str {
        match self {
            ResourceKind::Files(_) => "files",
            ResourceKind::Postgres(_) => "postgres",
            ResourceKind::Mysql(_) => "mysql",
            ResourceKind::Sqlite(_) => "sqlite",
            ResourceKind::Command(_) => "command",
            ResourceKind::Http(_) => "http",
        }
    }
}

/// A resource's binding at one site, whatever its kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Binding<'a> {
    Path(&'a PathBinding),
    Database(&'a DatabaseBinding),
    Command(&'a CommandBinding),
    Http(&'a HttpBinding),
}

/// `kind = "files"`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilesResource {
    /// Glob patterns relative to the binding path; default `["**"]` (everything).
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    pub sync: SyncMode,
    pub at: IndexMap<String, PathBinding>,
}

plan_enum! {
    /// How a files resource is duplicated between sites, besides restore points.
    SyncMode {
        /// Restore points only (default).
        None = "none",
        /// Duplicated in both directions between the primary and standby sites; conflicts
        /// are detected, never overwritten.
        Both = "both",
        /// Mirrored one way, from the primary to the standby sites (warm standby).
        PrimaryToStandby = "primary-to-standby",
    }
}

/// `at.<site> = { path = "..." }` for files and sqlite; resolved against the plan folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathBinding {
    pub path: PathBuf,
}

/// `kind = "postgres"` or `kind = "mysql"`: a database server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatabaseServerResource {
    pub databases: DatabaseSelection,
    /// Database names never captured, even with `databases = "*"`.
    pub exclude: Vec<String>,
    pub at: IndexMap<String, DatabaseBinding>,
}

impl DatabaseServerResource {
    /// Whether database `name` is protected by this resource.
    pub fn protects(&self, name: &str) -> bool {
        let selected = match &self.databases {
            DatabaseSelection::All => true,
            DatabaseSelection::Only(names) => names.iter().any(|listed| listed == name),
        };
        selected && !self.exclude.iter().any(|excluded| excluded == name)
    }
}

/// `databases = "*"` (default; includes databases created later) or a list of names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DatabaseSelection {
    All,
    Only(Vec<String>),
}

/// `at.<site> = { url = "...", password = { env = "..." } }` for postgres and mysql.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatabaseBinding {
    /// Without a password: that goes in `password`.
    pub url: String,
    /// Optional: local trust/peer authentication needs none.
    pub password: Option<Secret>,
}

/// `kind = "sqlite"`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SqliteResource {
    pub at: IndexMap<String, PathBinding>,
}

/// `kind = "command"`: a configuration document captured and applied by commands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandResource {
    /// Prints one item per line; each becomes its own resource `<name>/<item>`, and
    /// `{item}` in `capture`/`apply` is replaced by it.
    pub discover: Option<Command>,
    pub at: IndexMap<String, CommandBinding>,
}

/// `at.<site> = { capture = [...], apply = [...], shell = [...] }`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandBinding {
    /// Prints the document on stdout.
    pub capture: Option<Command>,
    /// Reads the document on stdin.
    pub apply: Option<Command>,
    /// A prefix `capture` and `apply` are run through, e.g. `["ssh", "dr-host"]` or
    /// `["sh", "-c"]`.
    pub shell: Option<Command>,
}

impl CommandBinding {
    /// `capture` behind `shell`, if any.
    pub fn capture_command(&self) -> Option<Command> {
        self.capture
            .as_ref()
            .map(|command| self.through_shell(command))
    }

    /// `apply` behind `shell`, if any.
    pub fn apply_command(&self) -> Option<Command> {
        self.apply
            .as_ref()
            .map(|command| self.through_shell(command))
    }

    fn through_shell(&self, command: &Command) -> Command {
        match &self.shell {
            Some(shell) => {
                let mut argv = shell.argv().to_vec();
                argv.extend(command.argv().iter().cloned());
                Command(argv)
            }
            None => command.clone(),
        }
    }
}

/// `kind = "http"`: a configuration document over HTTP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpResource {
    pub at: IndexMap<String, HttpBinding>,
}

plan_enum! {
    /// HTTP method of an http resource binding.
    HttpMethod { Get = "GET", Post = "POST", Put = "PUT", Patch = "PATCH" }
}

/// `at.<site> = { url = "...", method = "POST", headers = { ... } }`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpBinding {
    pub url: String,
    /// How the document is applied; `None`: PUT.
    pub method: Option<HttpMethod>,
    /// How the document is captured (`GET` or `POST`); `None`: GET. Separate from `method`,
    /// so a site's import endpoint is never sent a capture's empty POST (a failback).
    pub capture_method: Option<HttpMethod>,
    /// Header values are plain strings or secrets; credential headers must be secrets.
    pub headers: IndexMap<String, StringOrSecret>,
}

impl HttpBinding {
    pub fn capture_method(&self) -> HttpMethod {
        self.capture_method.unwrap_or(HttpMethod::Get)
    }

    pub fn apply_method(&self) -> HttpMethod {
        self.method.unwrap_or(HttpMethod::Put)
    }
}

/// One `verify` entry: run after a restore at the restored site.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verify {
    /// `{ sql = "...", database = "...", expect = "..." }` (postgres, mysql, sqlite).
    Sql {
        sql: String,
        /// Postgres/mysql: the database to connect to; not allowed for sqlite.
        database: Option<String>,
        /// The first column of the first row, as text, must equal this. Without it the
        /// query must succeed.
        expect: Option<String>,
    },
    /// `{ command = [...], expect = "..." }` (any kind): exits 0, and when `expect` is
    /// given, its trimmed stdout equals it.
    Command {
        command: Command,
        expect: Option<String>,
    },
}

// ---------------------------------------------------------------------------------------
// [traffic], [fence]

/// `[traffic]`: how users reach the active site.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Traffic {
    Dns(DnsTraffic),
    Command(CommandTraffic),
}

impl Traffic {
    pub fn bound_sites(&self) -> Vec<&str> {
        match self {
            Traffic::Dns(dns) => dns.at.keys().map(String::as_str).collect(),
            Traffic::Command(command) => command.at.keys().map(String::as_str).collect(),
        }
    }
}

plan_enum! {
    /// DNS record type switched by `[traffic]`.
    RecordType { A = "A", Aaaa = "AAAA", Cname = "CNAME", Ns = "NS" }
}

plan_enum! {
    /// TSIG algorithm.
    TsigAlgorithm { HmacSha256 = "hmac-sha256", HmacSha512 = "hmac-sha512" }
}

/// `kind = "dns"`: RFC 2136 dynamic update.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsTraffic {
    /// `host:port` of the authoritative server (`:53` added when missing).
    pub server: String,
    /// Fully qualified, with the final dot.
    pub zone: String,
    /// Fully qualified, with the final dot.
    pub name: String,
    /// Default `A`.
    pub record_type: RecordType,
    /// Default 60.
    pub ttl: u32,
    pub tsig: Option<Tsig>,
    pub at: IndexMap<String, DnsTarget>,
}

/// `tsig = { name, algorithm, secret }`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tsig {
    pub name: String,
    /// Default `hmac-sha256`.
    pub algorithm: TsigAlgorithm,
    /// The base64 key.
    pub secret: Secret,
}

/// `at.<site> = { address = "..." }` or `{ addresses = [...] }`: the record set pointing
/// at that site.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsTarget {
    pub addresses: Vec<String>,
}

/// `kind = "command"`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandTraffic {
    /// `at.<site> = { run = [...] }`: makes the site the one users reach.
    pub at: IndexMap<String, Vec<Command>>,
}

/// `[fence]`: stops the old primary before traffic moves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fence {
    pub run: Vec<Command>,
}

// ---------------------------------------------------------------------------------------
// [watch]

plan_enum! {
    /// Who decides a failover.
    Decision { Manual = "manual", Automatic = "automatic" }
}

/// `[watch]`: the witness.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Watch {
    /// Default manual.
    pub decision: Decision,
    /// Default 5s.
    pub interval: Duration,
    /// Per probe; default 2s.
    pub timeout: Duration,
    /// How long the primary must fail before acting; default 30s.
    pub failure_threshold: Duration,
    /// Extra wait after the threshold before an automatic failover; default 0s.
    pub grace: Duration,
    /// Minimum time between two failovers; default 1h.
    pub cooldown: Duration,
    /// Refuse automatic failover when the newest restore point is older; `None`: no limit.
    pub max_restore_point_age: Option<Duration>,
    /// Probes of the primary; at least one.
    pub probes: Vec<Probe>,
    /// Probes of the witness's own connectivity: when these fail too, the witness is
    /// the one cut off and must not fail over.
    pub control: Vec<Probe>,
}

impl Watch {
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
    pub const DEFAULT_FAILURE_THRESHOLD: Duration = Duration::from_secs(30);
    pub const DEFAULT_COOLDOWN: Duration = Duration::from_secs(3600);
}

/// One probe: exactly one of `http`, `tcp`, `dns`, `command`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Probe {
    /// `{ http = "URL", expect_status = 200 }` (default: any 2xx).
    Http {
        url: String,
        expect_status: Option<u16>,
    },
    /// `{ tcp = "host:port" }`.
    Tcp { address: String },
    /// `{ dns = "name.", server = "host:port", type = "A" }`: the name resolves (through
    /// `server`, default the system resolver).
    Dns {
        name: String,
        server: Option<String>,
        record_type: RecordType,
    },
    /// `{ command = [...] }`: exits 0.
    Command(Command),
}

// ---------------------------------------------------------------------------------------
// [versions], [[inventory]], [[notify]], [schedule]

/// `[versions]`: where to read the deployed application version at each site.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Versions {
    pub at: IndexMap<String, VersionSource>,
}

/// `{ http = "URL" }` (the body, trimmed) or `{ command = [...] }` (stdout, trimmed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VersionSource {
    Http(String),
    Command(Command),
}

/// `[[inventory]]`: something the coverage audit lists, to be protected or excluded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InventoryEntry {
    pub name: String,
    pub source: InventorySource,
    /// Names (databases, folder entries, command lines) the audit ignores.
    pub exclude: Vec<String>,
}

/// Exactly one of `postgres`, `mysql`, `directory`, `command`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InventorySource {
    /// Every database of the server.
    Postgres(DatabaseBinding),
    Mysql(DatabaseBinding),
    /// Every entry of the folder (resolved against the plan folder).
    Directory(PathBuf),
    /// One item per stdout line.
    Command(Command),
}

plan_enum! {
    /// Payload format of a webhook.
    WebhookFormat { Json = "json", Slack = "slack", Teams = "teams" }
}

/// `[[notify]]`: one alert destination; exactly one of `webhook`, `command`, `smtp`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notifier {
    /// `webhook = "URL"` (or a secret: Slack/Teams URLs embed a token), `format`.
    Webhook {
        url: StringOrSecret,
        format: WebhookFormat,
    },
    /// The alert as JSON on stdin.
    Command(Command),
    Smtp(Smtp),
}

/// `smtp = { server, starttls, from, to, username, password }`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Smtp {
    /// `host:port`.
    pub server: String,
    /// Default true.
    pub starttls: bool,
    pub from: String,
    /// At least one address.
    pub to: Vec<String>,
    pub username: Option<String>,
    pub password: Option<Secret>,
}

/// `[schedule]`: what `lifeboat serve` runs, and when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    /// Default: every resource at its rpo.
    pub backup: Timing,
    pub drill: Option<Timing>,
    pub audit: Option<Timing>,
    pub check: Option<Timing>,
    /// `None`: keep every restore point.
    pub retention: Option<Retention>,
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule {
            backup: Timing::EveryRpo,
            drill: None,
            audit: None,
            check: None,
            retention: None,
        }
    }
}

/// When a scheduled job runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Timing {
    /// `"every rpo"` (backup only): each resource at its own rpo.
    EveryRpo,
    /// `"every 30m"`.
    Every(Duration),
    /// A five-field cron expression (minute hour day-of-month month day-of-week), local time.
    Cron(String),
}

/// `retention = { keep_last, keep_hourly, ... }`: restore points kept by pruning.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Retention {
    pub keep_last: Option<u32>,
    pub keep_hourly: Option<u32>,
    pub keep_daily: Option<u32>,
    pub keep_weekly: Option<u32>,
    pub keep_monthly: Option<u32>,
    pub keep_yearly: Option<u32>,
}

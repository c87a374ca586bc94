//! Pass two: the spanned tree, decoded section by section into the typed plan.
//!
//! Decoding is lenient on purpose: an element (a site, a resource, a check) is dropped
//! only when it is unusable (not a table, a required field missing or invalid); a bad
//! optional field falls back to its default. Either way the problem is recorded in
//! [`Cx`], so one run reports everything, and later checks still see as much of the plan
//! as could be understood.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use indexmap::IndexMap;
use toml::Spanned;

use crate::cron::validate_cron;
use crate::diagnostic::Diagnostic;
use crate::duration::parse_duration;
use crate::read::{
    Commands, Cx, FieldPath, Fields, FromToml, KeyHint, Node, NonEmpty, closest, plan_enum,
    wrong_type,
};
use crate::schema::*;
use crate::secret::{Secret, StringOrSecret};

/// Everything decoded, possibly partial when there were errors.
pub(crate) struct Draft {
    pub repository: Option<Repository>,
    pub objectives: Objectives,
    pub state: State,
    pub sites: IndexMap<String, Site>,
    /// Every declared site with its role when that could be read, even if the site
    /// itself failed to decode: the "one primary" rule must not misfire on a typo.
    pub site_roles: IndexMap<String, Option<Role>>,
    pub resources: IndexMap<String, Resource>,
    /// Every resource's `depends_on` that could be read, even when the resource itself
    /// failed to decode (no `kind`), so cycles through it are still found.
    pub dependencies: IndexMap<String, Vec<String>>,
    /// Every site's checks that decoded, even when the site failed to (no `role`), so the
    /// rules about what a check points at still run.
    pub site_checks: IndexMap<String, Vec<Check>>,
    /// Every site's `quiesce_checks` that decoded, likewise.
    pub site_quiesce_checks: IndexMap<String, Vec<Check>>,
    pub traffic: Option<Traffic>,
    pub fence: Option<Fence>,
    pub watch: Option<Watch>,
    pub versions: Option<Versions>,
    pub inventory: Vec<InventoryEntry>,
    pub notify: Vec<Notifier>,
    pub schedule: Schedule,
}

/// Names declared in the document, known before any section is decoded so references
/// (`at.<site>`, `depends_on`) can be checked where they are written.
pub(crate) struct Declared {
    pub sites: Vec<String>,
    pub resources: Vec<String>,
}

impl Declared {
    fn scan(root: &Node<'_>) -> Self {
        let keys = |section: &str| -> Vec<String> {
            root.get_ref()
                .get(section)
                .and_then(|node| node.get_ref().as_table())
                .map(|table| {
                    table
                        .iter()
                        .map(|(key, _)| key.get_ref().to_string())
                        .collect()
                })
                .unwrap_or_default()
        };
        Declared {
            sites: keys("sites"),
            resources: keys("resources"),
        }
    }
}

pub(crate) fn decode_plan(root: &Node<'_>, cx: &mut Cx) -> Draft {
    let declared = Declared::scan(root);
    let path = FieldPath::root();
    let mut draft = Draft {
        repository: None,
        objectives: Objectives::default(),
        state: State::default(),
        sites: IndexMap::new(),
        site_roles: IndexMap::new(),
        resources: IndexMap::new(),
        dependencies: IndexMap::new(),
        site_checks: IndexMap::new(),
        site_quiesce_checks: IndexMap::new(),
        traffic: None,
        fence: None,
        watch: None,
        versions: None,
        inventory: Vec::new(),
        notify: Vec::new(),
        schedule: Schedule::default(),
    };
    let Some(mut root_fields) = Fields::open(root, &path, cx) else {
        return draft;
    };
    match root_fields.node("repository") {
        Some((node, path)) => draft.repository = decode_repository(node, &path, cx),
        None => cx.push(
            Diagnostic::error("repository", 0..0, "the plan has no `[repository]`").with_help(
                "add `[repository]` with `url` and `password = { env = \"LIFEBOAT_PASSWORD\" }`",
            ),
        ),
    }
    if let Some((node, path)) = root_fields.node("objectives") {
        draft.objectives = decode_objectives(node, &path, cx);
    }
    if let Some((node, path)) = root_fields.node("state") {
        draft.state = decode_state(node, &path, cx);
    }
    if let Some((node, path)) = root_fields.node("sites") {
        decode_sites(node, &path, &declared, cx, &mut draft);
    }
    if let Some((node, path)) = root_fields.node("resources") {
        decode_resources(node, &path, &declared, cx, &mut draft);
    }
    if let Some((node, path)) = root_fields.node("traffic") {
        draft.traffic = decode_traffic(node, &path, &declared, cx);
    }
    if let Some((node, path)) = root_fields.node("fence") {
        draft.fence = decode_fence(node, &path, cx);
    }
    if let Some((node, path)) = root_fields.node("watch") {
        draft.watch = decode_watch(node, &path, cx);
    }
    if let Some((node, path)) = root_fields.node("versions") {
        draft.versions = decode_versions(node, &path, &declared, cx);
    }
    if let Some((node, path)) = root_fields.node("inventory") {
        draft.inventory = decode_inventory(node, &path, cx);
    }
    if let Some((node, path)) = root_fields.node("notify") {
        draft.notify = decode_array_of_tables(node, &path, cx, decode_notifier);
    }
    if let Some((node, path)) = root_fields.node("schedule") {
        draft.schedule = decode_schedule(node, &path, cx);
    }
    root_fields.finish(cx);
    draft
}

// ---------------------------------------------------------------------------------------
// helpers

/// Reads an array of tables (`[[x]]` or `[{...}, {...}]`), keeping the items that decode.
fn decode_array_of_tables<T>(
    node: &Node<'_>,
    path: &FieldPath,
    cx: &mut Cx,
    decode: impl Fn(&Node<'_>, &FieldPath, &mut Cx) -> Option<T>,
) -> Vec<T> {
    let Some(array) = node.get_ref().as_array() else {
        wrong_type(node, path, "an array of tables", cx);
        return Vec::new();
    };
    array
        .iter()
        .enumerate()
        .filter_map(|(position, item)| decode(item, &path.index(position), cx))
        .collect()
}

/// Site and resource names appear on the command line and in restore points: keep them
/// to letters, digits, `-` and `_` (`/` separates discovered items).
fn check_name(name: &str, path: &FieldPath, span: std::ops::Range<usize>, what: &str, cx: &mut Cx) {
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid {
        cx.push(
            Diagnostic::error(
                path.as_str(),
                span,
                format!("invalid {what} name \"{name}\""),
            )
            .with_help("use letters, digits, `-` and `_` only"),
        );
    }
}

/// Reports a reference to a site that is not declared under `[sites]`.
fn check_site_reference(
    site: &Spanned<&str>,
    path: &FieldPath,
    declared: &Declared,
    cx: &mut Cx,
) -> bool {
    let name = *site.get_ref();
    if declared.sites.iter().any(|known| known == name) {
        return true;
    }
    let known = declared
        .sites
        .iter()
        .map(|site| format!("`{site}`"))
        .collect::<Vec<_>>();
    let help = match closest(name, declared.sites.iter().map(String::as_str)) {
        Some(close) => format!("did you mean `{close}`?"),
        None if known.is_empty() => "declare the site under `[sites]`".to_string(),
        None => format!("declared sites: {}", known.join(", ")),
    };
    cx.push(
        Diagnostic::error(path.as_str(), site.span(), format!("unknown site `{name}`"))
            .with_help(help),
    );
    false
}

/// Reads `at.<site> = {...}`: one binding per declared site.
fn decode_at<T>(
    fields: &mut Fields<'_, '_>,
    declared: &Declared,
    cx: &mut Cx,
    decode: impl Fn(&Node<'_>, &FieldPath, &mut Cx) -> Option<T>,
) -> IndexMap<String, T> {
    let mut bindings = IndexMap::new();
    let Some((node, path)) = fields.node("at") else {
        return bindings;
    };
    let Some(table) = node.get_ref().as_table() else {
        cx.push(
            Diagnostic::error(path.as_str(), node.span(), "`at` must be a table of sites")
                .with_help("write `at.<site> = { ... }`, one line per site"),
        );
        return bindings;
    };
    for (site, binding) in table.iter() {
        let binding_path = path.key(site.get_ref());
        let name = Spanned::new(site.span(), site.get_ref().as_ref());
        let known = check_site_reference(&name, &binding_path, declared, cx);
        if let Some(decoded) = decode(binding, &binding_path, cx)
            && known
        {
            bindings.insert(site.get_ref().to_string(), decoded);
        }
    }
    bindings
}

fn positive_duration(
    value: Option<Duration>,
    fields: &Fields<'_, '_>,
    key: &str,
    cx: &mut Cx,
) -> Option<Duration> {
    if value == Some(Duration::ZERO) {
        let path = fields.path.key(key);
        cx.error(
            &path,
            fields.span.clone(),
            format!("`{key}` must be longer than 0s"),
        );
        return None;
    }
    value
}

/// Where a URL holds a password in clear.
#[derive(Debug, PartialEq, Eq)]
enum PasswordInUrl {
    /// `scheme://user:password@host`.
    Userinfo,
    /// A query parameter named like a credential (`?password=`, `?sslpassword=`,
    /// `?access_token=`), by its name as written.
    Query(String),
}

fn password_in_url(url: &str) -> Option<PasswordInUrl> {
    let (_, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority
        .rsplit_once('@')
        .is_some_and(|(userinfo, _)| userinfo.contains(':'))
    {
        return Some(PasswordInUrl::Userinfo);
    }
    let query = rest.split_once('?')?.1;
    let query = query.split('#').next().unwrap_or_default();
    query
        .split(['&', ';'])
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, value)| {
            !value.is_empty() && crate::mask::names_a_credential(&crate::mask::percent_decoded(key))
        })
        .map(|(key, _)| PasswordInUrl::Query(key.to_string()))
}

/// Refuses a URL holding a password (in its userinfo or its query); `instead` says where
/// the credential goes.
fn reject_password_in_url(
    url: &str,
    path: &FieldPath,
    span: std::ops::Range<usize>,
    instead: &str,
    cx: &mut Cx,
) -> bool {
    let Some(found) = password_in_url(url) else {
        return false;
    };
    // Never echo the URL: it holds the password.
    let remove = match found {
        PasswordInUrl::Userinfo => "remove it from the URL".to_string(),
        PasswordInUrl::Query(key) => format!("remove `{key}=...` from the URL"),
    };
    cx.push(
        Diagnostic::error(path.as_str(), span, "the URL contains a password in clear")
            .with_help(format!("{remove} and {instead}")),
    );
    true
}

/// Where a database binding's password goes instead of its URL.
const DATABASE_PASSWORD: &str = "write `password = { env = \"NAME\" }` next to `url`";

/// Where an HTTP binding's credential goes instead of its URL.
const HTTP_CREDENTIAL: &str = "send the credential in a header whose value is a secret reference, e.g. `headers = { Authorization = { env = \"NAME\" } }`";

fn require_scheme(
    url: &str,
    schemes: &[&str],
    path: &FieldPath,
    span: std::ops::Range<usize>,
    cx: &mut Cx,
) -> bool {
    if schemes
        .iter()
        .any(|scheme| url.starts_with(&format!("{scheme}://")))
    {
        return true;
    }
    let expected = schemes
        .iter()
        .map(|scheme| format!("{scheme}://"))
        .collect::<Vec<_>>()
        .join(" or ");
    cx.error(
        path,
        span,
        format!("`{}` must start with {expected}", path.last_key()),
    );
    false
}

// ---------------------------------------------------------------------------------------
// [repository], [objectives], [state]

/// Which schemes each object-store option applies to.
const STORE_OPTIONS: &[(&str, &[&str])] = &[
    ("endpoint", &["s3", "azblob", "gs"]),
    ("region", &["s3"]),
    ("access_key", &["s3"]),
    ("secret_key", &["s3"]),
    ("session_token", &["s3"]),
    ("virtual_hosted_style", &["s3"]),
    ("account", &["azblob"]),
    ("account_key", &["azblob"]),
    ("sas_token", &["azblob"]),
    ("service_account_key", &["gs"]),
    ("allow_http", &["s3", "azblob", "gs"]),
];

fn decode_repository(node: &Node<'_>, path: &FieldPath, cx: &mut Cx) -> Option<Repository> {
    let mut fields = Fields::open(node, path, cx)?;
    let url = fields.required::<Spanned<NonEmpty>>("url", cx);
    let password = fields.required::<Secret>("password", cx);
    let store = ObjectStoreOptions {
        endpoint: fields.optional::<NonEmpty>("endpoint", cx).map(|v| v.0),
        region: fields.optional::<NonEmpty>("region", cx).map(|v| v.0),
        access_key: fields.optional("access_key", cx),
        secret_key: fields.optional("secret_key", cx),
        session_token: fields.optional("session_token", cx),
        virtual_hosted_style: fields.optional("virtual_hosted_style", cx),
        account: fields.optional::<NonEmpty>("account", cx).map(|v| v.0),
        account_key: fields.optional("account_key", cx),
        sas_token: fields.optional("sas_token", cx),
        service_account_key: fields.optional("service_account_key", cx),
        allow_http: fields.optional("allow_http", cx),
    };
    let location = url.as_ref().and_then(|url| {
        let url_path = path.key("url");
        match parse_repository_url(&url.get_ref().0, &cx.plan_dir) {
            Ok(location) => Some(location),
            Err(why) => {
                cx.push(
                    Diagnostic::error(url_path.as_str(), url.span(), why).with_help(
                        "write a path (relative to the plan's folder), file:///absolute/path, s3://bucket/prefix, azblob://container/prefix or gs://bucket/prefix",
                    ),
                );
                None
            }
        }
    });
    if let Some(location) = &location {
        let scheme = location.scheme();
        for (option, schemes) in STORE_OPTIONS {
            if fields.has(option) && !schemes.contains(&scheme) {
                let span = cx_key_span(node, option).unwrap_or_else(|| fields.span.clone());
                let applies = schemes
                    .iter()
                    .map(|s| format!("{s}://"))
                    .collect::<Vec<_>>()
                    .join(", ");
                cx.push(Diagnostic::error(
                    path.key(option).as_str(),
                    span,
                    format!("`{option}` applies to {applies} repositories, not to this {scheme} repository"),
                ));
            }
        }
    }
    fields.finish(cx);
    Some(Repository {
        url: url?.into_inner().0,
        location: location?,
        password: password?,
        store,
    })
}

fn cx_key_span(table: &Node<'_>, key: &str) -> Option<std::ops::Range<usize>> {
    table
        .get_ref()
        .as_table()
        .and_then(|table| table.get_key_value(key))
        .map(|(key, _)| key.span())
}

pub(crate) fn parse_repository_url(
    url: &str,
    plan_dir: &Path,
) -> Result<RepositoryLocation, String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        let path = Path::new(url);
        return Ok(RepositoryLocation::Local(if path.is_absolute() {
            path.to_path_buf()
        } else {
            plan_dir.join(path)
        }));
    };
    let bucket_and_prefix = |what: &str| -> Result<(String, String), String> {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(format!(
                "the repository URL has no {what}: write {scheme}://{what}/prefix"
            ));
        }
        Ok((bucket.to_string(), prefix.trim_matches('/').to_string()))
    };
    match scheme {
        "file" if rest.starts_with('/') => Ok(RepositoryLocation::Local(PathBuf::from(rest))),
        "file" => Err("a file:// URL must hold an absolute path (file:///var/lib/...); write a plain path for one relative to the plan".to_string()),
        "s3" => bucket_and_prefix("bucket").map(|(bucket, prefix)| RepositoryLocation::S3 { bucket, prefix }),
        "azblob" => bucket_and_prefix("container")
            .map(|(container, prefix)| RepositoryLocation::Azure { container, prefix }),
        "gs" => bucket_and_prefix("bucket").map(|(bucket, prefix)| RepositoryLocation::Gcs { bucket, prefix }),
        other => Err(format!("unsupported repository scheme `{other}://`")),
    }
}

fn decode_objectives(node: &Node<'_>, path: &FieldPath, cx: &mut Cx) -> Objectives {
    let mut objectives = Objectives::default();
    let Some(mut fields) = Fields::open(node, path, cx) else {
        return objectives;
    };
    let rpo = fields.optional::<Duration>("rpo", cx);
    let rto = fields.optional::<Duration>("rto", cx);
    if let Some(rpo) = positive_duration(rpo, &fields, "rpo", cx) {
        objectives.rpo = rpo;
    }
    if let Some(rto) = positive_duration(rto, &fields, "rto", cx) {
        objectives.rto = rto;
    }
    fields.finish(cx);
    objectives
}

fn decode_state(node: &Node<'_>, path: &FieldPath, cx: &mut Cx) -> State {
    let Some(mut fields) = Fields::open(node, path, cx) else {
        return State::default();
    };
    let dir = fields.optional::<PathBuf>("dir", cx);
    fields.finish(cx);
    State { dir }
}

// ---------------------------------------------------------------------------------------
// [sites.<name>]

fn decode_sites(
    node: &Node<'_>,
    path: &FieldPath,
    declared: &Declared,
    cx: &mut Cx,
    draft: &mut Draft,
) {
    let Some(table) = node.get_ref().as_table() else {
        wrong_type(node, path, "a table of sites (`[sites.<name>]`)", cx);
        return;
    };
    for (name, site) in table.iter() {
        let site_path = path.key(name.get_ref());
        check_name(name.get_ref(), &site_path, name.span(), "site", cx);
        let (role, checks, quiesce_checks, decoded) = decode_site(site, &site_path, declared, cx);
        draft.site_roles.insert(name.get_ref().to_string(), role);
        draft.site_checks.insert(name.get_ref().to_string(), checks);
        draft
            .site_quiesce_checks
            .insert(name.get_ref().to_string(), quiesce_checks);
        if let Some(decoded) = decoded {
            draft.sites.insert(name.get_ref().to_string(), decoded);
        }
    }
}

fn decode_site(
    node: &Node<'_>,
    path: &FieldPath,
    declared: &Declared,
    cx: &mut Cx,
) -> (Option<Role>, Vec<Check>, Vec<Check>, Option<Site>) {
    let Some(mut fields) = Fields::open(node, path, cx) else {
        return (None, Vec::new(), Vec::new(), None);
    };
    let role = fields.required::<Role>("role", cx);
    let on_demand = fields.optional::<bool>("on_demand", cx).unwrap_or(false);
    let mut commands = |key: &'static str, cx: &mut Cx| {
        fields
            .optional::<Commands>(key, cx)
            .map(|c| c.0)
            .unwrap_or_default()
    };
    let provision = commands("provision", cx);
    let decommission = commands("decommission", cx);
    let start = commands("start", cx);
    let quiesce = commands("quiesce", cx);
    let env = fields
        .optional::<IndexMap<String, String>>("env", cx)
        .unwrap_or_default();
    let checks = match fields.node("checks") {
        Some((node, path)) => decode_checks(node, &path, declared, cx),
        None => Vec::new(),
    };
    let quiesce_checks = match fields.node("quiesce_checks") {
        Some((node, path)) => decode_checks(node, &path, declared, cx),
        None => Vec::new(),
    };
    fields.finish(cx);
    let site = role.map(|role| Site {
        role,
        on_demand,
        provision,
        decommission,
        start,
        env,
        checks: checks.clone(),
        quiesce,
        quiesce_checks: quiesce_checks.clone(),
    });
    (role, checks, quiesce_checks, site)
}

fn decode_checks(
    node: &Node<'_>,
    path: &FieldPath,
    declared: &Declared,
    cx: &mut Cx,
) -> Vec<Check> {
    let checks = decode_array_of_tables(node, path, cx, |node, path, cx| {
        decode_check(node, path, declared, cx)
    });
    report_duplicate_names(node, path, "check", cx);
    checks
}

/// Reports array items whose `name` repeats an earlier one.
fn report_duplicate_names(node: &Node<'_>, path: &FieldPath, what: &str, cx: &mut Cx) {
    let Some(array) = node.get_ref().as_array() else {
        return;
    };
    let mut seen: Vec<String> = Vec::new();
    for (position, item) in array.iter().enumerate() {
        let Some(name) = item.get_ref().get("name") else {
            continue;
        };
        let Some(text) = name.get_ref().as_str() else {
            continue;
        };
        if seen.iter().any(|earlier| earlier == text) {
            cx.push(Diagnostic::error(
                path.index(position).key("name").as_str(),
                name.span(),
                format!("duplicate {what} name \"{text}\""),
            ));
        } else {
            seen.push(text.to_string());
        }
    }
}

fn check_field_hint(key: &str) -> Option<String> {
    match key {
        "expect_status" | "body_contains" => Some(format!("`{key}` applies to http checks only")),
        "resource" | "database" | "expect" => Some(format!("`{key}` applies to sql checks only")),
        _ => None,
    }
}

fn decode_check(
    node: &Node<'_>,
    path: &FieldPath,
    declared: &Declared,
    cx: &mut Cx,
) -> Option<Check> {
    let hint = check_field_hint;
    let mut fields = Fields::open(node, path, cx)?.with_hint(&hint);
    let name = fields.required::<NonEmpty>("name", cx);
    let kind = fields.one_of(&["http", "tcp", "sql", "command"], "a check", cx);
    let probe = match kind {
        Some("http") => fields
            .optional::<NonEmpty>("http", cx)
            .map(|url| CheckProbe::Http(url.0)),
        Some("tcp") => fields
            .optional::<NonEmpty>("tcp", cx)
            .map(|address| CheckProbe::Tcp(address.0)),
        Some("sql") => {
            let query = fields.optional::<NonEmpty>("sql", cx);
            let resource = fields.required::<Spanned<NonEmpty>>("resource", cx);
            let database = fields.optional::<NonEmpty>("database", cx).map(|v| v.0);
            let expect = fields.optional::<String>("expect", cx);
            if let Some(resource) = &resource
                && !declared.resources.contains(&resource.get_ref().0)
            {
                cx.push(
                    Diagnostic::error(
                        path.key("resource").as_str(),
                        resource.span(),
                        format!("unknown resource `{}`", resource.get_ref().0),
                    )
                    .with_help(
                        "name a postgres, mysql or sqlite resource declared under `[resources]`",
                    ),
                );
            }
            match (query, resource) {
                (Some(query), Some(resource)) => Some(CheckProbe::Sql {
                    query: query.0,
                    resource: resource.into_inner().0,
                    database,
                    expect,
                }),
                _ => None,
            }
        }
        Some("command") => fields
            .optional::<Command>("command", cx)
            .map(CheckProbe::Command),
        _ => None,
    };
    let is_http = kind == Some("http");
    let expect_status = if is_http {
        fields.optional::<u16>("expect_status", cx)
    } else {
        None
    };
    let body_contains = if is_http {
        fields.optional::<String>("body_contains", cx)
    } else {
        None
    };
    let timeout = fields.optional::<Duration>("timeout", cx);
    let timeout =
        positive_duration(timeout, &fields, "timeout", cx).unwrap_or(Check::DEFAULT_TIMEOUT);
    let retries = fields.optional::<u32>("retries", cx).unwrap_or(0);
    let retry_interval = fields
        .optional::<Duration>("retry_interval", cx)
        .unwrap_or(Check::DEFAULT_RETRY_INTERVAL);
    fields.finish(cx);
    Some(Check {
        name: name?.0,
        probe: probe?,
        expect_status,
        body_contains,
        timeout,
        retries,
        retry_interval,
    })
}

// ---------------------------------------------------------------------------------------
// [resources.<name>]

plan_enum! {
    /// The `kind` of a resource, before its fields are read.
    KindName {
        Files = "files",
        Postgres = "postgres",
        Mysql = "mysql",
        Sqlite = "sqlite",
        Command = "command",
        Http = "http",
    }
}

/// Resource-level fields that belong to some kinds only.
const KIND_FIELDS: &[(&str, &[KindName])] = &[
    ("include", &[KindName::Files]),
    (
        "exclude",
        &[KindName::Files, KindName::Postgres, KindName::Mysql],
    ),
    ("sync", &[KindName::Files]),
    ("databases", &[KindName::Postgres, KindName::Mysql]),
    ("discover", &[KindName::Command]),
];

/// Binding fields by kind, to explain a binding written for another kind.
const BINDING_FIELDS: &[(&str, &[KindName])] = &[
    ("path", &[KindName::Files, KindName::Sqlite]),
    (
        "url",
        &[KindName::Postgres, KindName::Mysql, KindName::Http],
    ),
    ("password", &[KindName::Postgres, KindName::Mysql]),
    ("capture", &[KindName::Command]),
    ("apply", &[KindName::Command]),
    ("shell", &[KindName::Command]),
    ("method", &[KindName::Http]),
    ("capture_method", &[KindName::Http]),
    ("headers", &[KindName::Http]),
];

fn kinds_text(kinds: &[KindName]) -> String {
    let names: Vec<&str> = kinds.iter().map(|kind| kind.as_str()).collect();
    match names.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        _ => names.join(""),
    }
}

fn binding_fields_of(kind: KindName) -> String {
    BINDING_FIELDS
        .iter()
        .filter(|(_, kinds)| kinds.contains(&kind))
        .map(|(field, _)| format!("`{field}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn other_kind_hint(
    table: &[(&str, &[KindName])],
    kind: KindName,
    key: &str,
    what: &str,
) -> Option<String> {
    let (_, kinds) = table.iter().find(|(field, _)| *field == key)?;
    if kinds.contains(&kind) {
        return None;
    }
    Some(format!(
        "`{key}` is a field of {} {what}s, not of {kind} {what}s",
        kinds_text(kinds)
    ))
}

fn decode_resources(
    node: &Node<'_>,
    path: &FieldPath,
    declared: &Declared,
    cx: &mut Cx,
    draft: &mut Draft,
) {
    let Some(table) = node.get_ref().as_table() else {
        wrong_type(
            node,
            path,
            "a table of resources (`[resources.<name>]`)",
            cx,
        );
        return;
    };
    for (name, resource) in table.iter() {
        let resource_path = path.key(name.get_ref());
        check_name(name.get_ref(), &resource_path, name.span(), "resource", cx);
        let (dependencies, decoded) =
            decode_resource(name.get_ref(), resource, &resource_path, declared, cx);
        draft
            .dependencies
            .insert(name.get_ref().to_string(), dependencies);
        if let Some(decoded) = decoded {
            draft.resources.insert(name.get_ref().to_string(), decoded);
        }
    }
}

/// Every field a binding of any kind may have, to judge a binding whose resource has no
/// readable `kind`.
fn any_binding_fields() -> Vec<&'static str> {
    BINDING_FIELDS.iter().map(|(field, _)| *field).collect()
}

/// Reads what can be judged in `at` without knowing the binding's type: the sites it
/// names, and keys no binding of any type has.
fn check_at_sites(
    fields: &mut Fields<'_, '_>,
    declared: &Declared,
    binding_fields: &[&'static str],
    cx: &mut Cx,
) {
    let Some((node, path)) = fields.node("at") else {
        return;
    };
    let Some(table) = node.get_ref().as_table() else {
        cx.push(
            Diagnostic::error(path.as_str(), node.span(), "`at` must be a table of sites")
                .with_help("write `at.<site> = { ... }`, one line per site"),
        );
        return;
    };
    for (site, binding) in table.iter() {
        let binding_path = path.key(site.get_ref());
        let name = Spanned::new(site.span(), site.get_ref().as_ref());
        check_site_reference(&name, &binding_path, declared, cx);
        if let Some(mut binding_fields_read) = Fields::open(binding, &binding_path, cx) {
            for field in binding_fields {
                binding_fields_read.node(field);
            }
            binding_fields_read.finish(cx);
        }
    }
}

fn decode_resource(
    name: &str,
    node: &Node<'_>,
    path: &FieldPath,
    declared: &Declared,
    cx: &mut Cx,
) -> (Vec<String>, Option<Resource>) {
    // Read `kind` first: it decides which other fields exist.
    let Some(mut kind_fields) = Fields::open(node, path, cx) else {
        return (Vec::new(), None);
    };
    let kind = if kind_fields.has("kind") {
        kind_fields.optional::<KindName>("kind", cx)
    } else {
        let help = format!(
            "every resource has a `kind`: {}",
            crate::read::quoted_list(KindName::NAMES)
        );
        cx.push(kind_fields.missing_diagnostic("kind").with_help(help));
        None
    };
    let hint = move |key: &str| {
        let kind = kind?;
        other_kind_hint(KIND_FIELDS, kind, key, "resource").or_else(|| {
            other_kind_hint(BINDING_FIELDS, kind, key, "binding")
                .map(|_| format!("`{key}` belongs in a binding: `at.<site> = {{ {key} = ... }}`"))
        })
    };
    let mut fields =
        Fields::new(kind_fields.table(), kind_fields.span.clone(), path.clone()).with_hint(&hint);
    fields.node("kind");
    let rpo = fields.optional::<Duration>("rpo", cx);
    let rpo = positive_duration(rpo, &fields, "rpo", cx);
    let depends_on = fields
        .optional::<Vec<Spanned<String>>>("depends_on", cx)
        .unwrap_or_default();
    for (position, dependency) in depends_on.iter().enumerate() {
        let dependency_path = path.key("depends_on").index(position);
        let target = dependency.get_ref();
        if target == name {
            cx.error(
                &dependency_path,
                dependency.span(),
                format!("resource `{name}` depends on itself"),
            );
        } else if !declared.resources.contains(target) {
            let help = match closest(target, declared.resources.iter().map(String::as_str)) {
                Some(close) => format!("did you mean `{close}`?"),
                None => "name a resource declared under `[resources]`".to_string(),
            };
            cx.push(
                Diagnostic::error(
                    dependency_path.as_str(),
                    dependency.span(),
                    format!("unknown resource `{target}`"),
                )
                .with_help(help),
            );
        }
    }
    let verify = match fields.node("verify") {
        Some((node, path)) => decode_array_of_tables(node, &path, cx, |node, path, cx| {
            decode_verify(node, path, kind, cx)
        }),
        None => Vec::new(),
    };
    let depends_on: Vec<String> = depends_on.into_iter().map(Spanned::into_inner).collect();
    let Some(kind) = kind else {
        // Without a kind, judge what does not depend on it: keys no resource has (with
        // "did you mean `kind`" for `kinds`), and the sites bindings name.
        for (field, _) in KIND_FIELDS {
            fields.node(field);
        }
        check_at_sites(&mut fields, declared, &any_binding_fields(), cx);
        fields.finish(cx);
        return (depends_on, None);
    };
    let binding_hint = move |key: &str| {
        other_kind_hint(BINDING_FIELDS, kind, key, "binding")
            .map(|why| format!("{why}; a {kind} binding takes {}", binding_fields_of(kind)))
    };
    let kind = match kind {
        KindName::Files => {
            let include = fields
                .optional::<Vec<String>>("include", cx)
                .unwrap_or_else(|| vec!["**".to_string()]);
            let exclude = fields
                .optional::<Vec<String>>("exclude", cx)
                .unwrap_or_default();
            let sync = fields
                .optional::<SyncMode>("sync", cx)
                .unwrap_or(SyncMode::None);
            let at = decode_at(&mut fields, declared, cx, |node, path, cx| {
                decode_path_binding(node, path, &binding_hint, cx)
            });
            Some(ResourceKind::Files(FilesResource {
                include,
                exclude,
                sync,
                at,
            }))
        }
        KindName::Sqlite => {
            let at = decode_at(&mut fields, declared, cx, |node, path, cx| {
                decode_path_binding(node, path, &binding_hint, cx)
            });
            Some(ResourceKind::Sqlite(SqliteResource { at }))
        }
        KindName::Postgres | KindName::Mysql => {
            let databases = match fields.node("databases") {
                Some((node, path)) => decode_database_selection(node, &path, cx),
                None => Some(DatabaseSelection::All),
            };
            let exclude = fields
                .optional::<Vec<String>>("exclude", cx)
                .unwrap_or_default();
            let at = decode_at(&mut fields, declared, cx, |node, path, cx| {
                decode_database_binding(node, path, kind, &binding_hint, cx)
            });
            let server = DatabaseServerResource {
                databases: databases.unwrap_or(DatabaseSelection::All),
                exclude,
                at,
            };
            Some(if kind == KindName::Postgres {
                ResourceKind::Postgres(server)
            } else {
                ResourceKind::Mysql(server)
            })
        }
        KindName::Command => {
            let discover = fields.optional::<Command>("discover", cx);
            let at = decode_at(&mut fields, declared, cx, |node, path, cx| {
                decode_command_binding(node, path, &binding_hint, cx)
            });
            Some(ResourceKind::Command(CommandResource { discover, at }))
        }
        KindName::Http => {
            let at = decode_at(&mut fields, declared, cx, |node, path, cx| {
                decode_http_binding(node, path, &binding_hint, cx)
            });
            Some(ResourceKind::Http(HttpResource { at }))
        }
    };
    fields.finish(cx);
    let resource = kind.map(|kind| Resource {
        kind,
        rpo,
        depends_on: depends_on.clone(),
        verify,
    });
    (depends_on, resource)
}

fn decode_database_selection(
    node: &Node<'_>,
    path: &FieldPath,
    cx: &mut Cx,
) -> Option<DatabaseSelection> {
    match node.get_ref().as_str() {
        Some("*") => Some(DatabaseSelection::All),
        Some(other) => {
            cx.push(
                Diagnostic::error(path.as_str(), node.span(), format!("`databases` cannot be \"{other}\""))
                    .with_help("write \"*\" for every database (also ones created later), or a list such as [\"orders\", \"billing\"]"),
            );
            None
        }
        None => Vec::<NonEmpty>::from_toml(node, path, cx)
            .map(|names| DatabaseSelection::Only(names.into_iter().map(|name| name.0).collect())),
    }
}

fn decode_path_binding(
    node: &Node<'_>,
    path: &FieldPath,
    hint: KeyHint<'_>,
    cx: &mut Cx,
) -> Option<PathBinding> {
    let mut fields = Fields::open(node, path, cx)?.with_hint(hint);
    let binding_path = fields.required::<PathBuf>("path", cx);
    fields.finish(cx);
    Some(PathBinding {
        path: binding_path?,
    })
}

fn decode_database_binding(
    node: &Node<'_>,
    path: &FieldPath,
    kind: KindName,
    hint: KeyHint<'_>,
    cx: &mut Cx,
) -> Option<DatabaseBinding> {
    let mut fields = Fields::open(node, path, cx)?.with_hint(hint);
    let url = fields.required::<Spanned<NonEmpty>>("url", cx);
    let password = fields.optional::<Secret>("password", cx);
    fields.finish(cx);
    let url = url?;
    let url_path = path.key("url");
    let schemes: &[&str] = if kind == KindName::Mysql {
        &["mysql", "mariadb"]
    } else {
        &["postgres", "postgresql"]
    };
    let scheme_ok = require_scheme(&url.get_ref().0, schemes, &url_path, url.span(), cx);
    let has_password = reject_password_in_url(
        &url.get_ref().0,
        &url_path,
        url.span(),
        DATABASE_PASSWORD,
        cx,
    );
    // Kept with the password masked, so the checks of everything else still run (and
    // report their errors together with this one) without the password in any message.
    let url = url.into_inner().0;
    scheme_ok.then(|| DatabaseBinding {
        url: if has_password {
            crate::mask::masked(&url)
        } else {
            url
        },
        password,
    })
}

fn decode_command_binding(
    node: &Node<'_>,
    path: &FieldPath,
    hint: KeyHint<'_>,
    cx: &mut Cx,
) -> Option<CommandBinding> {
    let mut fields = Fields::open(node, path, cx)?.with_hint(hint);
    let capture = fields.optional::<Command>("capture", cx);
    let apply = fields.optional::<Command>("apply", cx);
    let shell = fields.optional::<Command>("shell", cx);
    if !fields.has("capture") && !fields.has("apply") {
        cx.push(
            Diagnostic::error(
                path.as_str(),
                fields.span.clone(),
                "a command binding needs `capture`, `apply` or both",
            )
            .with_help("`capture` prints the document on stdout; `apply` reads it on stdin"),
        );
    }
    fields.finish(cx);
    Some(CommandBinding {
        capture,
        apply,
        shell,
    })
}

/// Header names whose values are credentials: these must be secret references.
fn is_credential_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    [
        "auth", "token", "secret", "password", "cookie", "api-key", "apikey",
    ]
    .iter()
    .any(|word| name.contains(word))
}

fn decode_http_binding(
    node: &Node<'_>,
    path: &FieldPath,
    hint: KeyHint<'_>,
    cx: &mut Cx,
) -> Option<HttpBinding> {
    let mut fields = Fields::open(node, path, cx)?.with_hint(hint);
    let url = fields.required::<Spanned<NonEmpty>>("url", cx);
    let method = fields.optional::<Spanned<HttpMethod>>("method", cx);
    let capture_method = fields.optional::<Spanned<HttpMethod>>("capture_method", cx);
    match (&method, &capture_method) {
        (Some(m), _) if *m.get_ref() == HttpMethod::Get => cx.push(
            Diagnostic::warning(
                path.key("method").as_str(),
                m.span(),
                "`method` is how the document is applied: GET applies nothing (it is sent with PUT)",
            )
            .with_help("remove `method` (PUT) or write the method the server takes: PUT, POST or PATCH; a capture uses GET unless `capture_method` says otherwise"),
        ),
        // Before `capture_method`, `method = "POST"` also captured with POST.
        (Some(m), None) if *m.get_ref() == HttpMethod::Post => cx.push(
            Diagnostic::note(
                path.key("method").as_str(),
                m.span(),
                "this document is applied with POST and captured with GET",
            )
            .with_help("if this endpoint exports the document only when POSTed to, add `capture_method = \"POST\"`"),
        ),
        _ => {}
    }
    let method = method.map(Spanned::into_inner);
    if let Some(m) = &capture_method
        && !matches!(m.get_ref(), HttpMethod::Get | HttpMethod::Post)
    {
        cx.push(
            Diagnostic::error(
                path.key("capture_method").as_str(),
                m.span(),
                format!(
                    "a capture reads the document: `capture_method` is GET or POST, not {}",
                    m.get_ref().as_str()
                ),
            )
            .with_help("`method` is how the document is applied (PUT, POST or PATCH)"),
        );
    }
    let headers = fields
        .optional::<IndexMap<String, Spanned<StringOrSecret>>>("headers", cx)
        .unwrap_or_default();
    for (name, value) in &headers {
        if ["content-length", "transfer-encoding"].contains(&name.to_ascii_lowercase().as_str()) {
            cx.push(Diagnostic::error(
                path.key("headers").key(name).as_str(),
                value.span(),
                format!("header `{name}` is set by lifeboat from the document it sends"),
            ));
        }
        if is_credential_header(name) && matches!(value.get_ref(), StringOrSecret::Plain(_)) {
            cx.push(
                Diagnostic::error(
                    path.key("headers").key(name).as_str(),
                    value.span(),
                    format!(
                        "header `{name}` carries a credential: its value must be a secret reference"
                    ),
                )
                .with_help(format!(
                    "write `{name} = {{ env = \"NAME\" }}` or `{name} = {{ file = \"PATH\" }}`"
                )),
            );
        }
    }
    fields.finish(cx);
    let url = url?;
    let url_path = path.key("url");
    let scheme_ok = require_scheme(
        &url.get_ref().0,
        &["http", "https"],
        &url_path,
        url.span(),
        cx,
    );
    let has_password =
        reject_password_in_url(&url.get_ref().0, &url_path, url.span(), HTTP_CREDENTIAL, cx);
    let url = url.into_inner().0;
    scheme_ok.then(|| HttpBinding {
        url: if has_password {
            crate::mask::masked(&url)
        } else {
            url
        },
        method,
        capture_method: capture_method.map(Spanned::into_inner),
        headers: headers
            .into_iter()
            .map(|(name, value)| (name, value.into_inner()))
            .collect(),
    })
}

/// `kind` is `None` when the resource's kind could not be read: kind rules are skipped.
fn decode_verify(
    node: &Node<'_>,
    path: &FieldPath,
    kind: Option<KindName>,
    cx: &mut Cx,
) -> Option<Verify> {
    let mut fields = Fields::open(node, path, cx)?;
    let which = fields.one_of(&["sql", "command"], "a verify entry", cx);
    let expect = fields.optional::<String>("expect", cx);
    let verify = match which {
        Some("sql") => {
            let sql = fields.optional::<NonEmpty>("sql", cx);
            let database = fields.optional::<NonEmpty>("database", cx).map(|v| v.0);
            let sql_kinds = [KindName::Postgres, KindName::Mysql, KindName::Sqlite];
            if let Some(kind) = kind
                && !sql_kinds.contains(&kind)
            {
                cx.push(
                    Diagnostic::error(path.key("sql").as_str(), fields.span.clone(), format!("a {kind} resource cannot be verified with SQL"))
                        .with_help("use `{ command = [...] }`; `sql` applies to postgres, mysql and sqlite resources"),
                );
            }
            if kind == Some(KindName::Sqlite) && database.is_some() {
                cx.error(
                    &path.key("database"),
                    fields.span.clone(),
                    "a sqlite resource has one database: remove `database`",
                );
            }
            sql.map(|sql| Verify::Sql {
                sql: sql.0,
                database,
                expect,
            })
        }
        Some("command") => fields
            .optional::<Command>("command", cx)
            .map(|command| Verify::Command { command, expect }),
        _ => None,
    };
    fields.finish(cx);
    verify
}

// ---------------------------------------------------------------------------------------
// [traffic], [fence]

plan_enum! {
    /// `[traffic] kind`.
    TrafficKind { Dns = "dns", Command = "command" }
}

fn decode_traffic(
    node: &Node<'_>,
    path: &FieldPath,
    declared: &Declared,
    cx: &mut Cx,
) -> Option<Traffic> {
    let mut kind_fields = Fields::open(node, path, cx)?;
    let kind = kind_fields.required::<TrafficKind>("kind", cx);
    let hint = move |key: &str| match (kind?, key) {
        (TrafficKind::Command, "server" | "zone" | "name" | "type" | "ttl" | "tsig") => {
            Some(format!("`{key}` applies to `kind = \"dns\"` traffic only"))
        }
        _ => None,
    };
    let mut fields =
        Fields::new(kind_fields.table(), kind_fields.span.clone(), path.clone()).with_hint(&hint);
    fields.node("kind");
    let Some(kind) = kind else {
        // Without a kind, still name unknown keys and sites that are not declared.
        for field in ["server", "zone", "name", "type", "ttl", "tsig"] {
            fields.node(field);
        }
        check_at_sites(&mut fields, declared, &["address", "addresses", "run"], cx);
        fields.finish(cx);
        return None;
    };
    let traffic = match kind {
        TrafficKind::Dns => {
            let server = fields
                .required::<NonEmpty>("server", cx)
                .map(|server| with_default_port(&server.0, 53));
            let zone = fields
                .required::<NonEmpty>("zone", cx)
                .map(|zone| fully_qualified(&zone.0));
            let name = fields.required::<Spanned<NonEmpty>>("name", cx);
            let record_type = fields
                .optional::<RecordType>("type", cx)
                .unwrap_or(RecordType::A);
            let ttl = fields.optional::<u32>("ttl", cx).unwrap_or(60);
            let tsig = match fields.node("tsig") {
                Some((node, path)) => decode_tsig(node, &path, cx),
                None => None,
            };
            let at = decode_at(&mut fields, declared, cx, |node, path, cx| {
                decode_dns_target(node, path, record_type, cx)
            });
            let name = name.and_then(|name| {
                let fqdn = fully_qualified(&name.get_ref().0);
                if let Some(zone) = &zone
                    && !(fqdn == *zone || fqdn.ends_with(&format!(".{zone}")))
                {
                    cx.push(
                        Diagnostic::error(
                            path.key("name").as_str(),
                            name.span(),
                            format!("`{fqdn}` is not inside zone `{zone}`"),
                        )
                        .with_help("the record must belong to the zone the update is sent to"),
                    );
                    return None;
                }
                Some(fqdn)
            });
            fields.finish(cx);
            Traffic::Dns(DnsTraffic {
                server: server?,
                zone: zone?,
                name: name?,
                record_type,
                ttl,
                tsig,
                at,
            })
        }
        TrafficKind::Command => {
            let at = decode_at(&mut fields, declared, cx, |node, path, cx| {
                let mut fields = Fields::open(node, path, cx)?;
                let run = fields.required::<Commands>("run", cx);
                fields.finish(cx);
                run.map(|run| run.0)
            });
            fields.finish(cx);
            Traffic::Command(CommandTraffic { at })
        }
    };
    Some(traffic)
}

fn fully_qualified(name: &str) -> String {
    if name.ends_with('.') {
        name.to_string()
    } else {
        format!("{name}.")
    }
}

fn with_default_port(server: &str, port: u16) -> String {
    if let Ok(ip) = server.parse::<IpAddr>() {
        return std::net::SocketAddr::new(ip, port).to_string();
    }
    let has_port = server
        .rsplit_once(':')
        .is_some_and(|(_, after)| !after.is_empty() && after.chars().all(|c| c.is_ascii_digit()));
    if has_port {
        server.to_string()
    } else {
        format!("{server}:{port}")
    }
}

fn decode_tsig(node: &Node<'_>, path: &FieldPath, cx: &mut Cx) -> Option<Tsig> {
    let mut fields = Fields::open(node, path, cx)?;
    let name = fields.required::<NonEmpty>("name", cx);
    let algorithm = fields
        .optional::<TsigAlgorithm>("algorithm", cx)
        .unwrap_or(TsigAlgorithm::HmacSha256);
    let secret = fields.required::<Secret>("secret", cx);
    fields.finish(cx);
    Some(Tsig {
        name: name?.0,
        algorithm,
        secret: secret?,
    })
}

fn decode_dns_target(
    node: &Node<'_>,
    path: &FieldPath,
    record_type: RecordType,
    cx: &mut Cx,
) -> Option<DnsTarget> {
    let mut fields = Fields::open(node, path, cx)?;
    let which = fields.one_of(&["address", "addresses"], "a DNS binding", cx);
    let addresses: Option<Vec<Spanned<NonEmpty>>> = match which {
        Some("address") => fields
            .optional::<Spanned<NonEmpty>>("address", cx)
            .map(|address| vec![address]),
        Some(_) => fields.optional::<Vec<Spanned<NonEmpty>>>("addresses", cx),
        None => None,
    };
    fields.finish(cx);
    let addresses = addresses?;
    if addresses.is_empty() {
        cx.error(
            &path.key("addresses"),
            node.span(),
            "`addresses` cannot be empty",
        );
        return None;
    }
    let mut valid = true;
    for address in &addresses {
        let text = &address.get_ref().0;
        let problem = match record_type {
            RecordType::A if text.parse::<Ipv4Addr>().is_err() => Some("an IPv4 address (type A)"),
            RecordType::Aaaa if text.parse::<Ipv6Addr>().is_err() => {
                Some("an IPv6 address (type AAAA)")
            }
            RecordType::Cname | RecordType::Ns if text.parse::<IpAddr>().is_ok() => {
                Some("a host name, not an address")
            }
            _ => None,
        };
        if let Some(expected) = problem {
            valid = false;
            cx.error(path, address.span(), format!("`{text}` is not {expected}"));
        }
    }
    if record_type == RecordType::Cname && addresses.len() > 1 {
        valid = false;
        cx.error(path, node.span(), "a CNAME record has exactly one target");
    }
    valid.then(|| DnsTarget {
        addresses: addresses
            .into_iter()
            .map(|address| address.into_inner().0)
            .collect(),
    })
}

fn decode_fence(node: &Node<'_>, path: &FieldPath, cx: &mut Cx) -> Option<Fence> {
    let mut fields = Fields::open(node, path, cx)?;
    let run = fields.required::<Commands>("run", cx);
    fields.finish(cx);
    Some(Fence { run: run?.0 })
}

// ---------------------------------------------------------------------------------------
// [watch]

fn decode_watch(node: &Node<'_>, path: &FieldPath, cx: &mut Cx) -> Option<Watch> {
    let mut fields = Fields::open(node, path, cx)?;
    let decision = fields
        .optional::<Decision>("decision", cx)
        .unwrap_or(Decision::Manual);
    let interval = fields.optional::<Duration>("interval", cx);
    let interval =
        positive_duration(interval, &fields, "interval", cx).unwrap_or(Watch::DEFAULT_INTERVAL);
    let timeout = fields.optional::<Duration>("timeout", cx);
    let timeout =
        positive_duration(timeout, &fields, "timeout", cx).unwrap_or(Watch::DEFAULT_TIMEOUT);
    let failure_threshold = fields
        .optional::<Duration>("failure_threshold", cx)
        .unwrap_or(Watch::DEFAULT_FAILURE_THRESHOLD);
    let grace = fields
        .optional::<Duration>("grace", cx)
        .unwrap_or(Duration::ZERO);
    let cooldown = fields
        .optional::<Duration>("cooldown", cx)
        .unwrap_or(Watch::DEFAULT_COOLDOWN);
    let max_restore_point_age = fields.optional::<Duration>("max_restore_point_age", cx);
    let probes = match fields.node("probes") {
        Some((node, path)) => decode_array_of_tables(node, &path, cx, decode_probe),
        None => {
            fields.missing("probes", cx);
            Vec::new()
        }
    };
    let probes_written_empty = node
        .get_ref()
        .get("probes")
        .and_then(|probes| probes.get_ref().as_array())
        .is_some_and(|probes| probes.iter().next().is_none());
    if probes_written_empty {
        cx.error(
            &path.key("probes"),
            fields.span.clone(),
            "`probes` cannot be empty: the witness needs something to watch",
        );
    }
    let control = match fields.node("control") {
        Some((node, path)) => decode_array_of_tables(node, &path, cx, decode_probe),
        None => Vec::new(),
    };
    fields.finish(cx);
    Some(Watch {
        decision,
        interval,
        timeout,
        failure_threshold,
        grace,
        cooldown,
        max_restore_point_age,
        probes,
        control,
    })
}

fn probe_field_hint(key: &str) -> Option<String> {
    match key {
        "expect_status" => Some("`expect_status` applies to http probes only".to_string()),
        "server" | "type" => Some(format!("`{key}` applies to dns probes only")),
        _ => None,
    }
}

fn decode_probe(node: &Node<'_>, path: &FieldPath, cx: &mut Cx) -> Option<Probe> {
    let hint = probe_field_hint;
    let mut fields = Fields::open(node, path, cx)?.with_hint(&hint);
    let probe = match fields.one_of(&["http", "tcp", "dns", "command"], "a probe", cx) {
        Some("http") => {
            let url = fields.optional::<NonEmpty>("http", cx);
            let expect_status = fields.optional::<u16>("expect_status", cx);
            url.map(|url| Probe::Http {
                url: url.0,
                expect_status,
            })
        }
        Some("tcp") => fields
            .optional::<NonEmpty>("tcp", cx)
            .map(|address| Probe::Tcp { address: address.0 }),
        Some("dns") => {
            let name = fields.optional::<NonEmpty>("dns", cx);
            let server = fields
                .optional::<NonEmpty>("server", cx)
                .map(|server| with_default_port(&server.0, 53));
            let record_type = fields
                .optional::<RecordType>("type", cx)
                .unwrap_or(RecordType::A);
            name.map(|name| Probe::Dns {
                name: name.0,
                server,
                record_type,
            })
        }
        Some("command") => fields
            .optional::<Command>("command", cx)
            .map(Probe::Command),
        _ => None,
    };
    fields.finish(cx);
    probe
}

// ---------------------------------------------------------------------------------------
// [versions], [[inventory]], [[notify]], [schedule]

fn decode_versions(
    node: &Node<'_>,
    path: &FieldPath,
    declared: &Declared,
    cx: &mut Cx,
) -> Option<Versions> {
    let mut fields = Fields::open(node, path, cx)?;
    let at = decode_at(&mut fields, declared, cx, |node, path, cx| {
        let mut fields = Fields::open(node, path, cx)?;
        let source = match fields.one_of(&["http", "command"], "a version source", cx) {
            Some("http") => fields
                .optional::<NonEmpty>("http", cx)
                .map(|url| VersionSource::Http(url.0)),
            Some(_) => fields
                .optional::<Command>("command", cx)
                .map(VersionSource::Command),
            None => None,
        };
        fields.finish(cx);
        source
    });
    fields.finish(cx);
    Some(Versions { at })
}

fn decode_inventory(node: &Node<'_>, path: &FieldPath, cx: &mut Cx) -> Vec<InventoryEntry> {
    let entries = decode_array_of_tables(node, path, cx, |node, path, cx| {
        let mut fields = Fields::open(node, path, cx)?;
        let name = fields.required::<NonEmpty>("name", cx);
        let source = match fields.one_of(
            &["postgres", "mysql", "directory", "command"],
            "an inventory entry",
            cx,
        ) {
            Some(which @ ("postgres" | "mysql")) => {
                let kind = if which == "postgres" {
                    KindName::Postgres
                } else {
                    KindName::Mysql
                };
                let no_hint = |_: &str| None;
                fields
                    .node(which)
                    .and_then(|(node, path)| {
                        decode_database_binding(node, &path, kind, &no_hint, cx)
                    })
                    .map(|binding| {
                        if kind == KindName::Postgres {
                            InventorySource::Postgres(binding)
                        } else {
                            InventorySource::Mysql(binding)
                        }
                    })
            }
            Some("directory") => fields
                .optional::<PathBuf>("directory", cx)
                .map(InventorySource::Directory),
            Some(_) => fields
                .optional::<Command>("command", cx)
                .map(InventorySource::Command),
            None => None,
        };
        let exclude = fields
            .optional::<Vec<String>>("exclude", cx)
            .unwrap_or_default();
        fields.finish(cx);
        Some(InventoryEntry {
            name: name?.0,
            source: source?,
            exclude,
        })
    });
    report_duplicate_names(node, path, "inventory", cx);
    entries
}

fn decode_notifier(node: &Node<'_>, path: &FieldPath, cx: &mut Cx) -> Option<Notifier> {
    let hint = |key: &str| {
        (key == "format").then(|| "`format` applies to webhook notifications only".to_string())
    };
    let mut fields = Fields::open(node, path, cx)?.with_hint(&hint);
    let notifier = match fields.one_of(&["webhook", "command", "smtp"], "a notification", cx) {
        Some("webhook") => {
            let url = fields.optional::<StringOrSecret>("webhook", cx);
            let format = fields
                .optional::<WebhookFormat>("format", cx)
                .unwrap_or(WebhookFormat::Json);
            url.map(|url| Notifier::Webhook { url, format })
        }
        Some("command") => fields
            .optional::<Command>("command", cx)
            .map(Notifier::Command),
        Some(_) => fields
            .node("smtp")
            .and_then(|(node, path)| decode_smtp(node, &path, cx))
            .map(Notifier::Smtp),
        None => None,
    };
    fields.finish(cx);
    notifier
}

/// `to = "a@x"` or `to = ["a@x", "b@x"]`.
struct Recipients(Vec<String>);

impl FromToml for Recipients {
    fn from_toml(node: &Node<'_>, path: &FieldPath, cx: &mut Cx) -> Option<Self> {
        if node.get_ref().is_str() {
            return NonEmpty::from_toml(node, path, cx).map(|to| Recipients(vec![to.0]));
        }
        let to = Vec::<NonEmpty>::from_toml(node, path, cx)?;
        if to.is_empty() {
            cx.error(path, node.span(), "`to` needs at least one address");
            return None;
        }
        Some(Recipients(to.into_iter().map(|to| to.0).collect()))
    }
}

fn decode_smtp(node: &Node<'_>, path: &FieldPath, cx: &mut Cx) -> Option<Smtp> {
    let mut fields = Fields::open(node, path, cx)?;
    let server = fields
        .required::<NonEmpty>("server", cx)
        .map(|server| with_default_port(&server.0, 587));
    let starttls = fields.optional::<bool>("starttls", cx).unwrap_or(true);
    let from = fields.required::<NonEmpty>("from", cx);
    let to = fields.required::<Recipients>("to", cx);
    let username = fields.optional::<NonEmpty>("username", cx).map(|v| v.0);
    let password = fields.optional::<Secret>("password", cx);
    if password.is_some() && username.is_none() && fields.has("password") && !fields.has("username")
    {
        cx.error(
            &path.key("username"),
            fields.span.clone(),
            "`password` is set but `username` is missing",
        );
    }
    let credentials = fields.has("username") || fields.has("password");
    if credentials && !starttls {
        let span = cx_key_span(node, "starttls").unwrap_or_else(|| fields.span.clone());
        cx.push(
            Diagnostic::warning(
                path.key("starttls").as_str(),
                span,
                "`starttls = false` while credentials are set: the password would cross the network unencrypted",
            )
            .with_help("remove `starttls = false` (the server must offer STARTTLS), or drop `username` and `password` for a relay that needs none"),
        );
    }
    fields.finish(cx);
    Some(Smtp {
        server: server?,
        starttls,
        from: from?.0,
        to: to?.0,
        username,
        password,
    })
}

fn decode_timing(
    node: &Node<'_>,
    path: &FieldPath,
    allow_every_rpo: bool,
    cx: &mut Cx,
) -> Option<Timing> {
    let text = String::from_toml(node, path, cx)?;
    let text = text.trim();
    let help = if allow_every_rpo {
        "write \"every rpo\", \"every 30m\" or a cron expression such as \"0 3 * * SUN\""
    } else {
        "write \"every 6h\" or a cron expression such as \"0 3 * * SUN\""
    };
    let result = match text.strip_prefix("every ") {
        Some("rpo") if allow_every_rpo => Ok(Timing::EveryRpo),
        Some("rpo") => Err("\"every rpo\" applies to `backup` only".to_string()),
        Some(interval) => match parse_duration(interval) {
            Ok(Duration::ZERO) => Err("the interval must be longer than 0s".to_string()),
            Ok(interval) => Ok(Timing::Every(interval)),
            Err(error) => Err(format!("invalid interval `{interval}`: {error}")),
        },
        None => validate_cron(text).map(|()| Timing::Cron(text.to_string())),
    };
    match result {
        Ok(timing) => Some(timing),
        Err(why) => {
            cx.push(
                Diagnostic::error(
                    path.as_str(),
                    node.span(),
                    format!("invalid schedule for `{}`: {why}", path.last_key()),
                )
                .with_help(help),
            );
            None
        }
    }
}

fn decode_schedule(node: &Node<'_>, path: &FieldPath, cx: &mut Cx) -> Schedule {
    let mut schedule = Schedule::default();
    let Some(mut fields) = Fields::open(node, path, cx) else {
        return schedule;
    };
    if let Some((node, path)) = fields.node("backup")
        && let Some(timing) = decode_timing(node, &path, true, cx)
    {
        schedule.backup = timing;
    }
    for key in ["drill", "audit", "check"] {
        let timing = fields
            .node(key)
            .and_then(|(node, path)| decode_timing(node, &path, false, cx));
        match key {
            "drill" => schedule.drill = timing,
            "audit" => schedule.audit = timing,
            _ => schedule.check = timing,
        }
    }
    if let Some((node, path)) = fields.node("retention") {
        schedule.retention = decode_retention(node, &path, cx);
    }
    fields.finish(cx);
    schedule
}

fn decode_retention(node: &Node<'_>, path: &FieldPath, cx: &mut Cx) -> Option<Retention> {
    let mut fields = Fields::open(node, path, cx)?;
    let retention = Retention {
        keep_last: fields.optional("keep_last", cx),
        keep_hourly: fields.optional("keep_hourly", cx),
        keep_daily: fields.optional("keep_daily", cx),
        keep_weekly: fields.optional("keep_weekly", cx),
        keep_monthly: fields.optional("keep_monthly", cx),
        keep_yearly: fields.optional("keep_yearly", cx),
    };
    // Only judge what was written correctly: a bad value already has its own error.
    let written = [
        ("keep_last", retention.keep_last),
        ("keep_hourly", retention.keep_hourly),
        ("keep_daily", retention.keep_daily),
        ("keep_weekly", retention.keep_weekly),
        ("keep_monthly", retention.keep_monthly),
        ("keep_yearly", retention.keep_yearly),
    ];
    let keeps_nothing = written
        .iter()
        .all(|(key, value)| !fields.has(key) || *value == Some(0));
    fields.finish(cx);
    if keeps_nothing {
        cx.push(
            Diagnostic::error(path.as_str(), node.span(), "this retention keeps no restore point at all")
                .with_help("set at least one `keep_*` above 0, or remove `retention` to keep every restore point"),
        );
        return None;
    }
    Some(retention)
}

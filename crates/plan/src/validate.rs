//! Pass three: rules that span sections (one primary, dependency cycles, what a check
//! refers to...). Runs on whatever decoded, so it reports alongside decoding errors; rules
//! that would misfire on a partly decoded plan look at the declared names instead.

use crate::decode::Draft;
use crate::diagnostic::Diagnostic;
use crate::read::{FieldPath, SpanIndex};
use crate::schema::*;

pub(crate) fn validate(draft: &Draft, spans: &SpanIndex) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let primary = check_roles(draft, spans, &mut out);
    if draft.resources.is_empty() && draft.site_roles.is_empty() {
        // An empty document: the role and repository errors say enough.
    } else if spans.value("resources").is_none() {
        out.push(
            Diagnostic::warning("resources", 0..0, "the plan protects no resources")
                .with_help("add `[resources.<name>]` sections"),
        );
    }
    if let Some(primary) = &primary {
        check_resource_bindings(draft, primary, spans, &mut out);
    }
    check_dependency_cycles(draft, spans, &mut out);
    check_sql_checks(draft, spans, &mut out);
    check_check_timing(draft, spans, &mut out);
    check_traffic(draft, spans, &mut out);
    check_watch(draft, spans, &mut out);
    check_drill_bindings(draft, spans, &mut out);
    note_unperformed(draft, spans, &mut out);
    out
}

/// Settings the plan accepts but no command performs yet get a note saying what will, so
/// nobody believes a schedule or a sync protects them today.
fn note_unperformed(draft: &Draft, spans: &SpanIndex, out: &mut Vec<Diagnostic>) {
    for (job, command) in [
        ("backup", "lifeboat backup"),
        ("drill", "lifeboat drill"),
        ("audit", "lifeboat audit"),
        ("check", "lifeboat check"),
    ] {
        let field = format!("schedule.{job}");
        if let Some(span) = spans.key(&field) {
            out.push(
                Diagnostic::note(
                    field.as_str(),
                    span,
                    format!(
                        "no command runs `schedule.{job}` yet: the daemon (`lifeboat serve`) will"
                    ),
                )
                .with_help(format!(
                    "until then, run `{command}` from cron or a systemd timer at this schedule"
                )),
            );
        }
    }
    for (name, resource) in &draft.resources {
        if let ResourceKind::Files(files) = &resource.kind
            && files.sync != SyncMode::None
        {
            let field = format!("resources.{name}.sync");
            out.push(
                Diagnostic::note(
                    field.as_str(),
                    spans.key_or_parent(&field),
                    format!(
                        "no command performs `sync = \"{}\"` yet: the files reach the other site only through restore points",
                        files.sync
                    ),
                )
                .with_help("restore, failover and failback carry them; export sync between sites is planned"),
            );
        }
    }
}

fn path(keys: &[&str]) -> FieldPath {
    keys.iter()
        .fold(FieldPath::root(), |path, key| path.key(key))
}

/// Exactly one primary, at least one standby. Returns the primary's name.
fn check_roles(draft: &Draft, spans: &SpanIndex, out: &mut Vec<Diagnostic>) -> Option<String> {
    let primaries: Vec<&String> = draft
        .site_roles
        .iter()
        .filter(|(_, role)| **role == Some(Role::Primary))
        .map(|(name, _)| name)
        .collect();
    let some_role_unknown = draft.site_roles.values().any(Option::is_none);
    match primaries.as_slice() {
        [] if !some_role_unknown => {
            out.push(
                Diagnostic::error("sites", spans.key_or_parent("sites"), "no primary site")
                    .with_help("exactly one site has `role = \"primary\"`, e.g. `[sites.primary]` with `role = \"primary\"`"),
            );
            None
        }
        [] => None,
        [only] => {
            let has_standby = draft
                .site_roles
                .values()
                .any(|role| *role == Some(Role::Standby));
            if !has_standby && !some_role_unknown {
                out.push(
                    Diagnostic::warning(
                        "sites",
                        spans.key_or_parent("sites"),
                        "no standby site: backups run, but there is nowhere to fail over to",
                    )
                    .with_help(
                        "add a site with `role = \"standby\"` (it may be `on_demand = true`)",
                    ),
                );
            }
            Some((*only).clone())
        }
        [first, others @ ..] => {
            for other in others {
                let role_path = path(&["sites", other, "role"]);
                out.push(
                    Diagnostic::error(role_path.as_str(), spans.key_or_parent(role_path.as_str()), format!("two primary sites: `{first}` and `{other}`"))
                        .with_help("exactly one site has `role = \"primary\"`; the others are \"standby\" or \"drill\""),
                );
            }
            None
        }
    }
}

fn check_resource_bindings(
    draft: &Draft,
    primary: &str,
    spans: &SpanIndex,
    out: &mut Vec<Diagnostic>,
) {
    let standbys: Vec<&str> = draft
        .site_roles
        .iter()
        .filter(|(_, role)| **role == Some(Role::Standby))
        .map(|(name, _)| name.as_str())
        .collect();
    for (name, resource) in &draft.resources {
        let resource_path = path(&["resources", name]);
        let span = spans.key_or_parent(resource_path.as_str());
        let bound = resource.bound_sites();
        // A binding that failed to decode has its own error; do not add "not bound".
        let written_at = |site: &str| {
            spans
                .value(resource_path.key("at").key(site).as_str())
                .is_some()
        };
        if !bound.contains(&primary) && !written_at(primary) {
            out.push(
                Diagnostic::error(resource_path.as_str(), span.clone(), format!("resource `{name}` is not bound at the primary site `{primary}`: there is nothing to back up"))
                    .with_help(format!("add `at.{primary} = {{ ... }}` to the resource")),
            );
        }
        if !standbys.is_empty()
            && !standbys
                .iter()
                .any(|site| bound.contains(site) || written_at(site))
        {
            out.push(
                Diagnostic::warning(
                    resource_path.as_str(),
                    span.clone(),
                    format!(
                        "resource `{name}` is bound at no standby site: it cannot be restored there"
                    ),
                )
                .with_help(format!("add `at.{} = {{ ... }}`", standbys[0])),
            );
        }
        if let ResourceKind::Command(command) = &resource.kind {
            check_command_resource(name, command, primary, &standbys, spans, out);
        }
    }
}

fn check_command_resource(
    name: &str,
    command: &CommandResource,
    primary: &str,
    standbys: &[&str],
    spans: &SpanIndex,
    out: &mut Vec<Diagnostic>,
) {
    if let Some(binding) = command.at.get(primary)
        && binding.capture.is_none()
    {
        let binding_path = path(&["resources", name, "at", primary]);
        out.push(
            Diagnostic::error(
                binding_path.as_str(),
                spans.key_or_parent(binding_path.as_str()),
                format!("resource `{name}` has no `capture` at the primary site"),
            )
            .with_help("`capture` prints the document on stdout; backups run it at the primary"),
        );
    }
    let applies_somewhere = standbys.iter().any(|site| {
        command
            .at
            .get(*site)
            .is_some_and(|binding| binding.apply.is_some())
    });
    let bound_at_standby = standbys.iter().any(|site| command.at.contains_key(*site));
    if bound_at_standby && !applies_somewhere {
        let resource_path = path(&["resources", name]);
        out.push(Diagnostic::warning(
            resource_path.as_str(),
            spans.key_or_parent(resource_path.as_str()),
            format!("resource `{name}` has no `apply` at any standby site: it cannot be restored"),
        ));
    }
    check_shell_wrapped_items(name, command, spans, out);
    if let Some(discover) = &command.discover {
        let uses_item = command.at.values().any(|binding| {
            [&binding.capture, &binding.apply]
                .into_iter()
                .flatten()
                .any(|command| command.argv().iter().any(|arg| arg.contains("{item}")))
        });
        if !uses_item {
            let discover_path = path(&["resources", name, "discover"]);
            out.push(
                Diagnostic::warning(
                    discover_path.as_str(),
                    spans.key_or_parent(discover_path.as_str()),
                    "`discover` is set but no `capture` or `apply` uses `{item}`",
                )
                .with_help(format!(
                    "every discovered item would run the same command; pass `{{item}}`, e.g. {:?}",
                    [discover.program(), "{item}"]
                )),
            );
        }
    }
}

/// A `{item}` that a shell will parse (`sh -c`, `ssh host ...`): lifeboat quotes each item
/// for that shell, but the command line is still shell text, so say so.
fn check_shell_wrapped_items(
    name: &str,
    command: &CommandResource,
    spans: &SpanIndex,
    out: &mut Vec<Diagnostic>,
) {
    for (site, binding) in &command.at {
        let runs = [
            ("capture", binding.capture_command()),
            ("apply", binding.apply_command()),
        ];
        for (field, argv) in runs {
            let Some(argv) = argv else { continue };
            let Some(wrapping) = argv.shell_wrapping() else {
                continue;
            };
            let item_in_shell_text = wrapping
                .shell_text
                .iter()
                .any(|&position| argv.argv()[position].contains("{item}"));
            if !item_in_shell_text {
                continue;
            }
            let field_path = path(&["resources", name, "at", site, field]);
            out.push(
                Diagnostic::warning(
                    field_path.as_str(),
                    spans.key_or_parent(field_path.as_str()),
                    format!(
                        "`{field}` of `{name}` at `{site}` puts `{{item}}` into shell text: `{}` runs `{}`, and {}; each discovered item is quoted for that shell",
                        argv.program(),
                        wrapping.program,
                        wrapping.reason,
                    ),
                )
                .with_help(
                    "lifeboat quotes the item for the quotes it stands in (none, '...' or \"...\"), but not for a second shell such as `ssh host sh -c ...`; \
                     better, pass it as an argument of its own: [\"sh\", \"-c\", \"cat \\\"$1\\\"\", \"sh\", \"{item}\"]",
                ),
            );
        }
    }
}

/// A drill site's folder must not be, hold, or lie inside a live site's folder, nor its
/// database server be a live site's, as written: a drill would write into live data.
/// (`lifeboat drill` checks again with symlinks followed, and servers by address and identity.)
fn check_drill_bindings(draft: &Draft, spans: &SpanIndex, out: &mut Vec<Diagnostic>) {
    let role = |site: &str| draft.site_roles.get(site).copied().flatten();
    let folder = |resource: &Resource, site: &str| match resource.binding(site) {
        Some(Binding::Path(b)) => Some(normalized(&b.path)),
        _ => None,
    };
    for (name, resource) in &draft.resources {
        for drill in resource.bound_sites() {
            if role(drill) != Some(Role::Drill) {
                continue;
            }
            let drill_path = folder(resource, drill);
            let drill_server = server_text(resource, drill);
            // (what is at the drill site, the live resource, its site, what is there)
            let clash = draft.resources.iter().find_map(|(other, r)| {
                r.bound_sites().into_iter().find_map(|site| {
                    if role(site) == Some(Role::Drill) {
                        return None;
                    }
                    if let (Some(d), Some(live)) = (&drill_path, folder(r, site))
                        && (d.starts_with(&live) || live.starts_with(d))
                    {
                        let what = (d.display().to_string(), live.display().to_string());
                        return Some((
                            what,
                            other.clone(),
                            site.to_string(),
                            "a folder of its own",
                        ));
                    }
                    match (&drill_server, server_text(r, site)) {
                        (Some(d), Some(live)) if *d == live => Some((
                            (d.clone(), live),
                            other.clone(),
                            site.to_string(),
                            "a database server of its own",
                        )),
                        _ => None,
                    }
                })
            });
            if let Some(((here, there), other, site, help)) = clash {
                let field = path(&["resources", name, "at", drill]);
                out.push(
                    Diagnostic::error(
                        field.as_str(),
                        spans.key_or_parent(field.as_str()),
                        format!(
                            "`{name}` at drill site `{drill}` ({here}) overlaps `{other}` at site \
                             `{site}` ({there}): a drill would write into live data"
                        ),
                    )
                    .with_help(format!("give the drill site {help}")),
                );
            }
        }
    }
}

/// `host:port` of a database binding, as written (`localhost` as `127.0.0.1`, the engine's
/// port when none is given).
fn server_text(resource: &Resource, site: &str) -> Option<String> {
    let Some(Binding::Database(b)) = resource.binding(site) else {
        return None;
    };
    let default_port = match resource.kind {
        ResourceKind::Mysql(_) => 3306,
        _ => 5432,
    };
    let rest = b.url.split_once("://")?.1;
    let authority = rest.split(['/', '?']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = match host_port.rsplit_once(':') {
        Some((h, p)) if !p.contains(']') => (h, p.parse().ok()?),
        _ => (host_port, default_port),
    };
    let host = match host.to_ascii_lowercase().as_str() {
        "localhost" | "[::1]" | "127.0.0.1" => "127.0.0.1".to_string(),
        other => other.to_string(),
    };
    Some(format!("{host}:{port}"))
}

/// `.` and `..` resolved by the text alone.
fn normalized(path: &std::path::Path) -> std::path::PathBuf {
    let mut out = std::path::PathBuf::new();
    for component in path.components() {
        match component {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Reports each `depends_on` cycle once, at the first resource on it.
fn check_dependency_cycles(draft: &Draft, spans: &SpanIndex, out: &mut Vec<Diagnostic>) {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Unvisited,
        OnStack,
        Done,
    }
    let names: Vec<&str> = draft.dependencies.keys().map(String::as_str).collect();
    let mut marks = vec![Mark::Unvisited; names.len()];
    // Iterative depth-first search: plans are small, but never recurse on user input.
    for start in 0..names.len() {
        if marks[start] != Mark::Unvisited {
            continue;
        }
        let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
        marks[start] = Mark::OnStack;
        while let Some(top) = stack.last_mut() {
            let (node, next) = *top;
            let dependencies = &draft.dependencies[node];
            let Some(dependency) = dependencies.get(next) else {
                marks[node] = Mark::Done;
                stack.pop();
                continue;
            };
            top.1 += 1;
            let Some(target) = names.iter().position(|name| name == dependency) else {
                continue; // unknown resource: reported while decoding
            };
            if target == node {
                continue; // self-dependency: reported while decoding
            }
            match marks[target] {
                Mark::Unvisited => {
                    marks[target] = Mark::OnStack;
                    stack.push((target, 0));
                }
                Mark::OnStack => {
                    let cycle_start = stack
                        .iter()
                        .position(|(index, _)| *index == target)
                        .unwrap_or(0);
                    let mut cycle: Vec<&str> = stack[cycle_start..]
                        .iter()
                        .map(|(index, _)| names[*index])
                        .collect();
                    cycle.push(names[target]);
                    let first = names[target];
                    let depends_path = path(&["resources", first, "depends_on"]);
                    out.push(
                        Diagnostic::error(
                            depends_path.as_str(),
                            spans.key_or_parent(depends_path.as_str()),
                            format!("dependency cycle: {}", cycle.join(" → ")),
                        )
                        .with_help(
                            "restores run in `depends_on` order, so the chain must not loop back",
                        ),
                    );
                }
                Mark::Done => {}
            }
        }
    }
}

/// A site's health check that, failing, takes longer than the whole RTO budget to give up.
fn check_check_timing(draft: &Draft, spans: &SpanIndex, out: &mut Vec<Diagnostic>) {
    for (site_name, checks) in &draft.site_checks {
        for (position, check) in checks.iter().enumerate() {
            // Checked: `retries = 4294967295` must be a warning, not an overflow.
            let worst = check
                .retries
                .checked_add(1)
                .and_then(|attempts| check.timeout.checked_mul(attempts))
                .zip(check.retry_interval.checked_mul(check.retries))
                .and_then(|(trying, waiting)| trying.checked_add(waiting))
                .unwrap_or(std::time::Duration::MAX);
            if worst > draft.objectives.rto {
                let check_path = FieldPath::root()
                    .key("sites")
                    .key(site_name)
                    .key("checks")
                    .index(position);
                out.push(
                    Diagnostic::warning(
                        check_path.as_str(),
                        spans.key_or_parent(check_path.as_str()),
                        format!(
                            "check `{}` may take {}s to give up (timeout × attempts + retry intervals), longer than the rto",
                            check.name,
                            worst.as_secs()
                        ),
                    )
                    .with_help("lower `retries`, `timeout` or `retry_interval`, or raise `[objectives] rto`"),
                );
            }
        }
    }
}

fn check_sql_checks(draft: &Draft, spans: &SpanIndex, out: &mut Vec<Diagnostic>) {
    let lists = [
        ("checks", &draft.site_checks),
        ("quiesce_checks", &draft.site_quiesce_checks),
    ];
    for (site_name, checks, key) in lists
        .iter()
        .flat_map(|(key, map)| map.iter().map(move |(site, checks)| (site, checks, *key)))
    {
        for (position, check) in checks.iter().enumerate() {
            let CheckProbe::Sql { resource, .. } = &check.probe else {
                continue;
            };
            let Some(target) = draft.resources.get(resource) else {
                continue; // unknown: reported while decoding
            };
            let resource_path = FieldPath::root()
                .key("sites")
                .key(site_name)
                .key(key)
                .index(position)
                .key("resource");
            let span = spans
                .value(resource_path.as_str())
                .unwrap_or_else(|| spans.key_or_parent(resource_path.as_str()));
            let is_database = matches!(
                target.kind,
                ResourceKind::Postgres(_) | ResourceKind::Mysql(_) | ResourceKind::Sqlite(_)
            );
            if !is_database {
                out.push(Diagnostic::error(
                    resource_path.as_str(),
                    span,
                    format!("an sql check needs a postgres, mysql or sqlite resource; `{resource}` is a {} resource", target.kind_name()),
                ));
            } else if target.binding(site_name).is_none()
                // A binding written but not decodable has its own error.
                && spans
                    .value(path(&["resources", resource, "at", site_name]).as_str())
                    .is_none()
            {
                out.push(
                    Diagnostic::error(resource_path.as_str(), span, format!("resource `{resource}` is not bound at site `{site_name}`, so this check cannot reach it"))
                        .with_help(format!("add `at.{site_name}` to resource `{resource}`")),
                );
            }
        }
    }
}

fn check_traffic(draft: &Draft, spans: &SpanIndex, out: &mut Vec<Diagnostic>) {
    let Some(traffic) = &draft.traffic else {
        return;
    };
    let bound = traffic.bound_sites();
    for (site, role) in &draft.site_roles {
        let serves = matches!(role, Some(Role::Primary | Role::Standby));
        let written = spans
            .value(path(&["traffic", "at", site]).as_str())
            .is_some();
        if serves && !bound.contains(&site.as_str()) && !written {
            out.push(
                Diagnostic::warning(
                    "traffic",
                    spans.key_or_parent("traffic"),
                    format!(
                        "traffic has no binding for site `{site}`: it cannot be switched there"
                    ),
                )
                .with_help(format!("add `at.{site} = {{ ... }}` to `[traffic]`")),
            );
        }
    }
}

fn check_watch(draft: &Draft, spans: &SpanIndex, out: &mut Vec<Diagnostic>) {
    let Some(watch) = &draft.watch else {
        return;
    };
    if watch.failure_threshold < watch.interval {
        out.push(
            Diagnostic::error("watch.failure_threshold", spans.key_or_parent("watch.failure_threshold"), "`failure_threshold` is shorter than `interval`: a single failed probe would count as an outage")
                .with_help("make `failure_threshold` a few intervals long"),
        );
    }
    if watch.failure_threshold >= watch.interval && watch.failure_threshold < 2 * watch.interval {
        out.push(
            Diagnostic::warning("watch.failure_threshold", spans.key_or_parent("watch.failure_threshold"), "`failure_threshold` spans fewer than three probe rounds: a brief glitch would count as an outage")
                .with_help("make `failure_threshold` at least twice `interval`"),
        );
    }
    if let Some(max_age) = watch.max_restore_point_age
        && max_age < draft.objectives.rpo
    {
        out.push(
            Diagnostic::warning("watch.max_restore_point_age", spans.key_or_parent("watch.max_restore_point_age"), "`max_restore_point_age` is shorter than the rpo: automatic failover would be refused even with backups on schedule")
                .with_help("make it at least `[objectives] rpo`"),
        );
    }
    if watch.timeout > watch.interval {
        out.push(Diagnostic::warning(
            "watch.timeout",
            spans.key_or_parent("watch.timeout"),
            "`timeout` is longer than `interval`: probes will overlap",
        ));
    }
    if watch.decision == Decision::Automatic && draft.fence.is_none() {
        out.push(
            Diagnostic::warning("watch.decision", spans.key_or_parent("watch.decision"), "automatic failover without `[fence]`: the old primary may keep serving (split brain)")
                .with_help("add `[fence] run = [[...]]` to stop the old primary before traffic moves"),
        );
    }
}

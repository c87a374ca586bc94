//! A drill never writes to a live site. Before anything is created (and again once the drill
//! site is provisioned), the drill site's bindings and the sandbox's folder are compared with
//! every binding of every resource at the sites that serve (primary and standbys): folders by
//! their real path (`..` resolved, symlinks followed as far as the path exists), database
//! servers by the addresses their hosts resolve to and, where both answer, by who they say
//! they are; documents by the command or URL they are applied with. What cannot be told
//! apart (a host name that does not resolve) is refused.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Component, Path, PathBuf};

use anyhow::{Result, bail};
use lifeboat_plan::{Binding, DatabaseBinding, Plan, ResourceKind, Role};

use crate::commands::backup::Server;

/// `path` made absolute, symlinks followed and `..` resolved for the part that exists, the
/// rest taken as written.
pub(super) fn real_path(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let components: Vec<Component> = absolute.components().collect();
    // The longest prefix that exists, canonicalised.
    let mut split = components.len();
    let mut base = None;
    while split > 0 {
        let prefix: PathBuf = components[..split].iter().collect();
        if let Ok(real) = std::fs::canonicalize(&prefix) {
            base = Some(real);
            break;
        }
        split -= 1;
    }
    let mut real = base.unwrap_or_else(|| PathBuf::from("/"));
    for component in &components[split..] {
        match component {
            Component::ParentDir => {
                real.pop();
            }
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
            Component::Normal(name) => real.push(name),
        }
    }
    real
}

fn overlap(a: &Path, b: &Path) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

/// Every binding at a site that serves: (resource, site, binding).
fn live_bindings(plan: &Plan) -> Vec<(&str, &str, &ResourceKind, Binding<'_>)> {
    let mut out = Vec::new();
    for (name, resource) in &plan.resources {
        for (site, spec) in &plan.sites {
            if spec.role == Role::Drill {
                continue;
            }
            if let Some(binding) = resource.binding(site) {
                out.push((name.as_str(), site.as_str(), &resource.kind, binding));
            }
        }
    }
    out
}

/// `host:port` of a database binding, whoever connects.
pub(super) fn server_address(kind: &ResourceKind, binding: &DatabaseBinding) -> Option<String> {
    let unauthenticated = DatabaseBinding {
        url: binding.url.clone(),
        password: None,
    };
    let server = Server::of(kind, &unauthenticated).ok()?;
    let described = server.describe();
    Some(
        described
            .rsplit_once('@')
            .map_or(described, |(_, host)| host)
            .to_string(),
    )
}

/// Where `host:port` listens, as far as this machine can tell: what the host resolves to,
/// with every address of this machine (loopback, unspecified, a socket folder) as one.
fn addresses(host_port: &str) -> Result<Vec<SocketAddr>, String> {
    let (host, port) = host_port
        .rsplit_once(':')
        .ok_or_else(|| format!("`{host_port}` has no port"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("`{host_port}`: the port is not a number"))?;
    let local = || SocketAddr::from(([127, 0, 0, 1], port));
    if host.starts_with('/') {
        return Ok(vec![local()]);
    }
    let resolved: Vec<SocketAddr> = host_port
        .to_socket_addrs()
        .or_else(|_| (host.trim_matches(|c| c == '[' || c == ']'), port).to_socket_addrs())
        .map_err(|e| format!("`{host}` does not resolve ({e})"))?
        .collect();
    Ok(resolved
        .into_iter()
        .map(|a| {
            let ip = match a.ip() {
                std::net::IpAddr::V6(v6) => v6
                    .to_ipv4_mapped()
                    .map_or(std::net::IpAddr::V6(v6), std::net::IpAddr::V4),
                v4 => v4,
            };
            if ip.is_loopback() || ip.is_unspecified() {
                local()
            } else {
                SocketAddr::new(ip, a.port())
            }
        })
        .collect())
}

/// Whether two `host:port`s are one server by address; an error when that cannot be told.
fn same_address(a: &str, b: &str) -> Result<bool, String> {
    let (x, y) = (addresses(a)?, addresses(b)?);
    Ok(x.iter().any(|addr| y.contains(addr)))
}

/// Refuses a drill-site binding of a drilled resource that is where a live site keeps data.
pub(super) fn check_drill_site<'a>(
    plan: &Plan,
    site: &str,
    drilled: impl Iterator<Item = &'a String>,
) -> Result<()> {
    let live = live_bindings(plan);
    for name in drilled {
        let Some(resource) = plan.resource(name) else {
            continue;
        };
        let Some(drill) = resource.binding(site) else {
            continue;
        };
        for (other, live_site, other_kind, binding) in &live {
            let clash = match (drill, binding) {
                (Binding::Path(d), Binding::Path(l)) => {
                    let (d, l) = (real_path(&d.path), real_path(&l.path));
                    overlap(&d, &l).then(|| format!("{} and {} overlap", d.display(), l.display()))
                }
                (Binding::Database(d), Binding::Database(l)) => {
                    same_database_server(&resource.kind, d, other_kind, l)?
                }
                (Binding::Command(d), Binding::Command(l)) => {
                    match (d.apply_command(), l.apply_command()) {
                        (Some(a), Some(b)) if a == b => {
                            Some(format!("both apply with `{}`", a.argv().join(" ")))
                        }
                        _ => None,
                    }
                }
                (Binding::Http(d), Binding::Http(l)) => {
                    (d.url == l.url).then(|| format!("both are {}", d.url))
                }
                _ => None,
            };
            if let Some(clash) = clash {
                bail!(
                    "resource `{name}` at drill site `{site}` is where `{other}` lives at site \
                     `{live_site}` ({clash}): a drill never writes to a live site; bind it \
                     elsewhere at `{site}`, or leave `at.{site}` out to restore it into a sandbox"
                );
            }
        }
    }
    Ok(())
}

/// Why two database bindings are one server, if they are: the same address, or (both
/// answering) the same identity. An error when it cannot be told.
fn same_database_server(
    kind: &ResourceKind,
    drill: &DatabaseBinding,
    live_kind: &ResourceKind,
    live: &DatabaseBinding,
) -> Result<Option<String>> {
    let (Some(a), Some(b)) = (server_address(kind, drill), server_address(live_kind, live)) else {
        bail!(
            "cannot tell the servers of `{}` and `{}` apart",
            drill.url,
            live.url
        );
    };
    match same_address(&a, &b) {
        Ok(true) => return Ok(Some(format!("{a} and {b} are one address"))),
        Ok(false) => {}
        Err(why) => bail!(
            "cannot tell whether {a} and {b} are one server: {why}; a drill never risks \
             writing to a live site"
        ),
    }
    // Other addresses may still reach one server (an address of this machine, a proxy):
    // ask both, when both answer.
    let who = |kind: &ResourceKind, binding: &DatabaseBinding| {
        Server::of(kind, binding)
            .ok()
            .and_then(|s| s.identity().ok())
    };
    if let (Some(x), Some(y)) = (who(kind, drill), who(live_kind, live))
        && x == y
    {
        return Ok(Some(format!("{a} and {b} are one server ({x})")));
    }
    Ok(None)
}

/// The live folder a path the drill is about to create or empty is, holds or lies in, if any.
pub(super) fn live_folder_at(plan: &Plan, path: &Path) -> Option<String> {
    let real = real_path(path);
    live_bindings(plan)
        .into_iter()
        .find_map(|(name, site, _, binding)| match binding {
            Binding::Path(b) => {
                let live = real_path(&b.path);
                overlap(&real, &live)
                    .then(|| format!("`{name}` at site `{site}` ({})", live.display()))
            }
            _ => None,
        })
}

/// Refuses to make the sandbox inside a live site's folder (`base` is where the sandbox's own,
/// new folder is made: it may hold live folders, the new one holds none).
pub(super) fn check_sandbox(plan: &Plan, base: &Path) -> Result<()> {
    let base = real_path(base);
    for (name, site, _, binding) in live_bindings(plan) {
        if let Binding::Path(b) = binding {
            let live = real_path(&b.path);
            if base.starts_with(&live) {
                bail!(
                    "--sandbox {} is inside `{name}` at site `{site}` ({}): a drill never \
                     writes to a live site; give --sandbox a folder of its own",
                    base.display(),
                    live.display()
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_paths_resolve_dot_dot_and_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::create_dir_all(root.join("data/files")).unwrap();
        std::os::unix::fs::symlink(root.join("data/files"), root.join("link")).unwrap();
        assert_eq!(
            real_path(&root.join("data/../data/files/x")),
            root.join("data/files/x")
        );
        assert_eq!(
            real_path(&root.join("link/x/y")),
            root.join("data/files/x/y")
        );
        assert_eq!(real_path(&root.join("new/../other")), root.join("other"));
        assert!(overlap(&root.join("data"), &root.join("data/files/x")));
        assert!(!overlap(
            &root.join("data/files"),
            &root.join("data/filesx")
        ));
    }

    #[test]
    fn every_spelling_of_this_machine_is_one_address() {
        for other in [
            "localhost:5432",
            "0.0.0.0:5432",
            "[::ffff:127.0.0.1]:5432",
            "[::1]:5432",
            "/run/postgresql:5432",
            "127.1:5432",
        ] {
            assert_eq!(same_address("127.0.0.1:5432", other), Ok(true), "{other}");
        }
        assert_eq!(same_address("127.0.0.1:5432", "127.0.0.1:5433"), Ok(false));
        assert_eq!(same_address("192.0.2.1:5432", "192.0.2.2:5432"), Ok(false));
        assert!(same_address("127.0.0.1:5432", "no-such-host.invalid:5432").is_err());
    }
}

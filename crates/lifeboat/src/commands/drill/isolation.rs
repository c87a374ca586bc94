//! A drill never writes to a live site. Before anything is created, the drill site's bindings
//! and the sandbox's folder are compared with every binding of every resource at the sites
//! that serve (primary and standbys): folders by their real path (`..` resolved, symlinks
//! followed as far as the path exists), database servers by the addresses their hosts resolve
//! to, documents by the command or URL they are applied with.

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

/// What `host:port` resolves to; the text itself when it does not resolve (a socket path).
fn addresses(host_port: &str) -> Result<Vec<SocketAddr>, String> {
    host_port
        .to_socket_addrs()
        .map(|a| a.collect())
        .map_err(|_| host_port.to_string())
}

fn same_server(a: &str, b: &str) -> bool {
    match (addresses(a), addresses(b)) {
        (Ok(x), Ok(y)) => x.iter().any(|addr| y.contains(addr)),
        _ => a == b,
    }
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
                    match (
                        server_address(&resource.kind, d),
                        server_address(other_kind, l),
                    ) {
                        (Some(a), Some(b)) if same_server(&a, &b) => {
                            Some(format!("{a} and {b} are one server"))
                        }
                        _ => None,
                    }
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
    fn localhost_and_its_address_are_one_server() {
        assert!(same_server("127.0.0.1:5432", "localhost:5432"));
        assert!(!same_server("127.0.0.1:5432", "127.0.0.1:5433"));
        assert!(same_server("/run/postgresql:5432", "/run/postgresql:5432"));
    }
}

//! What a drill has created. The binary writes each entry down (atomically, synced) *before*
//! it creates the thing, so whatever instant a drill dies at, the record names everything
//! that may exist; tearing down an entry that never came to be is a no-op.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::steps::DrillStep;

/// A database engine the drill can start a temporary server of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Engine {
    Postgres,
    Mariadb,
}

/// One thing a drill made, and so must undo.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Created {
    /// A folder the drill made: removed with everything in it.
    Folder { path: PathBuf },
    /// A folder that existed, empty, and that the drill filled: emptied again.
    Contents { path: PathBuf },
    /// A temporary database server for `resource`, living in `dir` (data, socket, pid
    /// file): stopped, then its folder removed.
    Server {
        resource: String,
        engine: Engine,
        dir: PathBuf,
        /// Known once it was started.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pid: Option<u32>,
    },
    /// A database restored on a declared drill site's server (through `resource`'s binding
    /// there), under `name` after its `staging` copy is complete. Both carry `mark` as their
    /// comment, and only a database carrying it is dropped: a database of that name made by
    /// anyone else is never touched.
    Database {
        resource: String,
        site: String,
        /// Who the server said it was, for messages.
        server: String,
        name: String,
        staging: String,
        mark: String,
    },
    /// A file at a declared binding (a SQLite database): removed, with its `-wal`/`-shm`.
    File { path: PathBuf },
    /// The drill site's `provision` commands ran (or began): its `decommission` undoes them.
    Provisioned { site: String },
}

impl Created {
    /// What it is, for messages.
    pub fn describe(&self) -> String {
        match self {
            Created::Folder { path } => format!("folder {}", path.display()),
            Created::Contents { path } => format!("contents of {}", path.display()),
            Created::Server {
                resource,
                engine,
                dir,
                ..
            } => format!(
                "temporary {} server of `{resource}` in {}",
                match engine {
                    Engine::Postgres => "PostgreSQL",
                    Engine::Mariadb => "MariaDB",
                },
                dir.display()
            ),
            Created::Database {
                name,
                site,
                resource,
                server,
                ..
            } => format!("database `{name}` of `{resource}` on {server} (site `{site}`)"),
            Created::File { path } => format!("file {}", path.display()),
            Created::Provisioned { site } => format!("the provisioned site `{site}`"),
        }
    }
}

/// Where a drill is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Steps are running (or the drill was killed while they were).
    Running,
    /// The sandbox was kept for inspection (`--keep`); `--cleanup` removes it.
    Kept,
    /// Teardown began and has not finished.
    TearingDown,
    /// Everything created was removed.
    Done,
}

/// A restore point a resource was restored from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PointAt {
    /// Hex id.
    pub point: String,
    /// When its capture started.
    pub time: jiff::Timestamp,
    /// The capture skipped entries (a pinned `--point` may supply such a one): the drill
    /// cannot prove what it skipped comes back.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub partial: bool,
}

/// `drills/<id>/drill.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrillRecord {
    pub id: String,
    /// The drill site: declared in the plan (`role = "drill"`), or the derived sandbox.
    pub site: String,
    pub declared_site: bool,
    /// The site that serves, whose data the restore point is compared with.
    pub live_site: String,
    /// The restore point (hex id) and when it was taken; with a point per resource, the
    /// oldest of them (its age is the achieved RPO).
    pub point: String,
    pub point_time: jiff::Timestamp,
    /// Each resource's own restore point (its newest complete capture, or the one pinned).
    /// Empty in records written before it existed: `point` then served them all.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub points: BTreeMap<String, PointAt>,
    pub only: Vec<String>,
    pub waves: Vec<Vec<String>>,
    pub steps: Vec<DrillStep>,
    /// The sandbox's folder.
    pub sandbox: PathBuf,
    /// When the drill began: the start of its achieved RTO.
    pub started: jiff::Timestamp,
    /// In the order they were created.
    pub created: Vec<Created>,
    /// Indices into `created` already torn down.
    #[serde(default)]
    pub torn_down: Vec<usize>,
    pub phase: Phase,
}

impl DrillRecord {
    /// What is still to undo, newest first: the reverse of creation, so a database goes
    /// before its server, a server before the folder that holds it, and the site's
    /// `decommission` after everything restored into the site.
    pub fn teardown_order(&self) -> Vec<(usize, &Created)> {
        self.created
            .iter()
            .enumerate()
            .rev()
            .filter(|(i, _)| !self.torn_down.contains(i))
            .collect()
    }

    /// The drill needs a teardown: it was killed, kept, or its teardown did not finish.
    pub fn unfinished(&self) -> bool {
        self.phase != Phase::Done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> DrillRecord {
        DrillRecord {
            id: "20261201T000000.000Z-drill".into(),
            site: "drill".into(),
            declared_site: false,
            live_site: "primary".into(),
            point: "ab".repeat(32),
            point_time: "2026-12-01T00:00:00Z".parse().unwrap(),
            points: BTreeMap::new(),
            only: vec![],
            waves: vec![vec!["db".into()]],
            steps: vec![DrillStep::Teardown],
            sandbox: "/tmp/sandbox".into(),
            started: "2026-12-01T00:01:00Z".parse().unwrap(),
            created: vec![
                Created::Provisioned {
                    site: "drill".into(),
                },
                Created::Folder {
                    path: "/tmp/sandbox".into(),
                },
                Created::Server {
                    resource: "db".into(),
                    engine: Engine::Postgres,
                    dir: "/tmp/sandbox/servers/db".into(),
                    pid: Some(42),
                },
            ],
            torn_down: vec![],
            phase: Phase::Running,
        }
    }

    #[test]
    fn teardown_undoes_in_reverse_and_skips_what_is_done() {
        let mut r = record();
        let order: Vec<usize> = r.teardown_order().iter().map(|(i, _)| *i).collect();
        assert_eq!(order, [2, 1, 0]);
        r.torn_down = vec![2];
        let order: Vec<usize> = r.teardown_order().iter().map(|(i, _)| *i).collect();
        assert_eq!(order, [1, 0]);
        r.torn_down = vec![0, 1, 2];
        assert!(r.teardown_order().is_empty());
    }

    #[test]
    fn the_record_round_trips_through_json() {
        let r = record();
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<DrillRecord>(&json).unwrap(), r);
        assert!(json.contains(r#""kind":"server""#), "{json}");
    }
}

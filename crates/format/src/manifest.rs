//! Restore points: what was captured, when, from where, and where its data is.
//!
//! A manifest is JSON sealed under the master key (so it is easy to evolve and to inspect
//! with `lifeboat points --json`); its stored id is the hash of the sealed bytes. Readers
//! ignore fields they do not know, so fields can be added without a version change; the
//! `version` changes only when a reader must not misread a manifest.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::seal::{self, Domain};
use crate::{FORMAT_VERSION, FormatError, Id};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestorePoint {
    pub version: u32,
    /// When the capture started: the point in time this restore point represents.
    pub time: jiff::Timestamp,
    pub finished: jiff::Timestamp,
    pub hostname: String,
    /// The plan's name, when taken from a plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
    /// The site the resources were captured at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    pub resources: Vec<ResourcePoint>,
    /// Every resource whose items were discovered when this point was taken (a command's
    /// `discover`, a database server's databases), with all the items found, captured or not:
    /// such a resource is whole in this point only when each of them was captured. Absent
    /// from manifests written before it existed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub discovered: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourcePoint {
    pub name: String,
    /// The plan's resource kind: `files`, `postgres`, ...
    pub kind: String,
    /// Where it was captured from (a path or a URL without credentials).
    pub source: String,
    #[serde(flatten)]
    pub status: ResourceStatus,
    /// The tree holding what was captured; absent when the capture failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<Id>,
    /// The root tree of the earlier capture this one was compared against to skip unchanged
    /// files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<Id>,
    #[serde(default)]
    pub stats: CaptureStats,
    /// For a database: what the capture saw inside the dump's own snapshot, which
    /// `lifeboat verify` compares a restored copy against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<DatabaseFacts>,
    /// For a file tree: the include/exclude it was captured with, which bounds what a
    /// mirror restore of it may remove (absent in older points: they are never mirrored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<CaptureScope>,
}

/// The patterns a file tree was captured with, relative to its root.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureScope {
    /// Globs a file had to match to be captured; empty: everything.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include: Vec<String>,
    /// Globs of paths left out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
}

/// One database as captured: enough to recreate it empty (encoding, locale, owner) and to
/// tell whether a restored copy holds the same data (row counts, the plan's checks).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DatabaseFacts {
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub owner: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub encoding: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub collate: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub ctype: String,
    pub server_version: String,
    /// Exact row counts of every table, in the dump's snapshot.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<TableRows>,
    /// The plan's `verify` queries for this database and their results in the snapshot.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<QueryResult>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableRows {
    /// Schema-qualified and quoted as SQL needs it, e.g. `public.orders`.
    pub table: String,
    pub rows: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryResult {
    pub sql: String,
    /// The first column of the first row as text; `None` for SQL NULL or no rows.
    pub value: Option<String>,
    /// Why the query failed; the capture goes on without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ResourceStatus {
    /// Everything the resource holds was captured.
    Complete,
    /// Captured, but some entries could not be (unreadable, vanished, replaced mid-capture):
    /// they are listed, and the point is not complete.
    Partial {
        /// The entries left out, with why (at most [`MAX_LISTED_SKIPS`]; the stats count all).
        skipped: Vec<String>,
    },
    /// Nothing was captured.
    Failed { error: String },
}

/// How many skipped entries a manifest names; the rest are only counted.
pub const MAX_LISTED_SKIPS: usize = 1000;

impl ResourceStatus {
    /// A capture that left entries out (`skipped` lists them; only the first
    /// [`MAX_LISTED_SKIPS`] are kept).
    pub fn partial(mut skipped: Vec<String>) -> Self {
        skipped.truncate(MAX_LISTED_SKIPS);
        ResourceStatus::Partial { skipped }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CaptureStats {
    pub files: u64,
    pub dirs: u64,
    /// Bytes of content captured.
    pub bytes: u64,
    /// Files read (the others were unchanged since the parent and not read).
    pub files_read: u64,
    /// Files that vanished or could not be read during the capture, left out of it.
    pub files_skipped: u64,
    /// Files that kept changing while they were read, captured as they were (maybe torn).
    pub files_changed: u64,
    pub chunks_new: u64,
    /// Plaintext bytes of chunks the repository did not have.
    pub bytes_new: u64,
    /// Bytes written to the repository (compressed and sealed).
    pub bytes_stored: u64,
    pub duration_ms: u64,
}

/// `name` selects a resource of that name and the items discovered under it
/// (`name/item`); `name/item` selects that item.
pub fn selects(name: &str, resource: &str) -> bool {
    resource == name
        || resource
            .strip_prefix(name)
            .is_some_and(|rest| rest.starts_with('/'))
}

impl RestorePoint {
    /// Every resource in the point captured in full, none failed or partial.
    pub fn is_complete(&self) -> bool {
        self.resources
            .iter()
            .all(|r| r.status == ResourceStatus::Complete)
    }

    /// The entry of exactly this name.
    pub fn resource(&self, name: &str) -> Option<&ResourcePoint> {
        self.resources.iter().find(|r| r.name == name)
    }

    /// The entries `name` selects: the resource itself and its items (`name/item`).
    pub fn entries<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a ResourcePoint> + 'a {
        self.resources
            .iter()
            .filter(move |r| selects(name, &r.name))
    }

    /// Whether this point holds a complete capture of all of `name` (a resource, or one item
    /// `name/item`): every entry it selects is complete and, for a resource whose items were
    /// discovered, every item discovered was captured. A capture of one item never stands in
    /// for its whole resource. (Manifests older than `discovered` cannot tell: there, every
    /// entry present and complete counts.)
    pub fn captured_whole(&self, name: &str) -> bool {
        let mut any = false;
        for r in self.entries(name) {
            if r.status != ResourceStatus::Complete || r.root.is_none() {
                return false;
            }
            any = true;
        }
        match self.discovered.get(name) {
            // A discovery that found nothing, with nothing else captured, is no proof the
            // resource is empty (an API that answered nothing): not complete.
            Some(items) if items.is_empty() => any,
            Some(items) => self.holds_items(name, items),
            None => any,
        }
    }

    /// Whether an entry `name/<item>` exists for each of `items` (a set of the entries' items
    /// first: servers with hundreds of databases make the pairwise search quadratic).
    fn holds_items(&self, name: &str, items: &[String]) -> bool {
        let captured: std::collections::HashSet<&str> = self
            .resources
            .iter()
            .filter_map(|r| r.name.strip_prefix(name)?.strip_prefix('/'))
            .collect();
        items.iter().all(|item| captured.contains(item.as_str()))
    }

    /// Whether the point holds something of every part of resource `name` (every item it
    /// discovered included), though some parts may be `partial`: what a pinned `--point`
    /// may restore when nothing complete exists, the skipped entries said.
    pub fn captured_in_part(&self, name: &str) -> bool {
        let mut any = false;
        for r in self.entries(name) {
            if r.root.is_none() || matches!(r.status, ResourceStatus::Failed { .. }) {
                return false;
            }
            any = true;
        }
        match self.discovered.get(name) {
            // Nothing discovered and nothing captured: pinned, it restores nothing, as asked.
            Some(items) if items.is_empty() => true,
            Some(items) => self.holds_items(name, items),
            None => any,
        }
    }

    pub fn seal(&self, key: &[u8; 32]) -> Vec<u8> {
        let json = serde_json::to_vec(self).expect("a restore point always serialises");
        seal::seal(key, Domain::Manifest, &json)
    }

    pub fn unseal(key: &[u8; 32], sealed: &[u8]) -> Result<Self, FormatError> {
        let json = seal::unseal(key, Domain::Manifest, sealed)?;
        let point: RestorePoint = serde_json::from_slice(&json)
            .map_err(|e| FormatError::corrupt("restore point manifest", e.to_string()))?;
        if point.version != FORMAT_VERSION {
            return Err(FormatError::UnsupportedVersion {
                what: "restore point manifest",
                found: point.version,
                supported: FORMAT_VERSION,
            });
        }
        Ok(point)
    }

    /// Every tree root the restore point refers to.
    pub fn roots(&self) -> impl Iterator<Item = Id> + '_ {
        self.resources.iter().filter_map(|r| r.root)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_status_shape() {
        let p = RestorePoint {
            version: FORMAT_VERSION,
            time: jiff::Timestamp::UNIX_EPOCH,
            finished: jiff::Timestamp::UNIX_EPOCH,
            hostname: "h".into(),
            plan: None,
            site: Some("primary".into()),
            tags: vec![],
            resources: vec![ResourcePoint {
                name: "docs".into(),
                kind: "files".into(),
                source: "/srv/docs".into(),
                status: ResourceStatus::Failed {
                    error: "boom".into(),
                },
                root: None,
                parent: None,
                stats: CaptureStats::default(),
                database: None,
                scope: None,
            }],
            discovered: BTreeMap::new(),
        };
        let key = [9u8; 32];
        assert_eq!(RestorePoint::unseal(&key, &p.seal(&key)).unwrap(), p);
        let json = serde_json::to_value(&p.resources[0]).unwrap();
        assert_eq!(json["status"], "failed");
        assert_eq!(json["error"], "boom");
        assert!(!p.is_complete());
    }

    fn entry(name: &str, status: ResourceStatus) -> ResourcePoint {
        ResourcePoint {
            name: name.into(),
            kind: "command".into(),
            source: String::new(),
            root: (!matches!(status, ResourceStatus::Failed { .. }))
                .then(|| Id::of_stored(name.as_bytes())),
            status,
            parent: None,
            stats: CaptureStats::default(),
            database: None,
            scope: None,
        }
    }

    fn point(entries: Vec<ResourcePoint>, discovered: &[(&str, &[&str])]) -> RestorePoint {
        RestorePoint {
            version: FORMAT_VERSION,
            time: jiff::Timestamp::UNIX_EPOCH,
            finished: jiff::Timestamp::UNIX_EPOCH,
            hostname: "h".into(),
            plan: None,
            site: None,
            tags: vec![],
            resources: entries,
            discovered: discovered
                .iter()
                .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
                .collect(),
        }
    }

    #[test]
    fn one_item_never_stands_in_for_its_resource() {
        let ok = ResourceStatus::Complete;
        let one = point(
            vec![entry("flows/plain", ok.clone())],
            &[("flows", &["plain", "other"])],
        );
        assert!(!one.captured_whole("flows"));
        assert!(one.captured_whole("flows/plain"));
        assert!(!one.captured_whole("flows/other"));
        let all = point(
            vec![
                entry("flows/plain", ok.clone()),
                entry("flows/other", ok.clone()),
            ],
            &[("flows", &["plain", "other"])],
        );
        assert!(all.captured_whole("flows"));
        // `flows` does not select `flowsx`.
        assert!(!all.captured_whole("flow"));
        let partial = point(
            vec![
                entry("flows/plain", ok.clone()),
                entry("flows/other", ResourceStatus::partial(vec!["x".into()])),
            ],
            &[("flows", &["plain", "other"])],
        );
        assert!(!partial.captured_whole("flows"));
        assert!(partial.captured_whole("flows/plain"));
        // A server with no database: its accounts are the whole of it.
        let empty = point(vec![entry("pg", ok.clone())], &[("pg", &[])]);
        assert!(empty.captured_whole("pg"));
        // Written before `discovered`: what is there counts.
        let old = point(vec![entry("pg", ok.clone()), entry("pg/a", ok)], &[]);
        assert!(old.captured_whole("pg"));
        assert!(!old.captured_whole("files"));
    }

    #[test]
    fn an_empty_discovery_is_not_a_complete_capture() {
        let nothing = point(vec![], &[("flows", &[])]);
        assert!(!nothing.captured_whole("flows"));
        assert!(nothing.captured_in_part("flows"));
        // A server's accounts were captured: its empty list of databases is believable.
        let accounts = point(vec![entry("pg", ResourceStatus::Complete)], &[("pg", &[])]);
        assert!(accounts.captured_whole("pg"));
    }

    #[test]
    fn manifests_without_discovered_still_read() {
        let p = point(vec![entry("a", ResourceStatus::Complete)], &[]);
        let mut json = serde_json::to_value(&p).unwrap();
        assert!(json.get("discovered").is_none());
        json.as_object_mut().unwrap().remove("discovered");
        let back: RestorePoint = serde_json::from_value(json).unwrap();
        assert_eq!(back, p);
    }
}

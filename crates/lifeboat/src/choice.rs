//! The restore point each resource is restored from, for failover, `restore latest`, drills
//! and the audit alike: `lifeboat_repository::choice` over the repository's points, with
//! errors that say what to do.

use std::collections::BTreeMap;

use anyhow::Result;
use lifeboat_format::Id;
use lifeboat_format::manifest::RestorePoint;
use lifeboat_repository::Repository;
use lifeboat_repository::choice::{self, Chosen, Unchosen};

/// Each resource's chosen capture, with the manifests it lies in.
#[derive(Debug, Clone)]
pub(crate) struct Choice {
    /// In the order the resources were asked for.
    pub chosen: Vec<Chosen>,
    manifests: BTreeMap<Id, RestorePoint>,
}

impl Choice {
    /// The point `resource` is restored from.
    pub(crate) fn point_of(&self, resource: &str) -> Option<(Id, &RestorePoint)> {
        let c = self.chosen.iter().find(|c| c.resource == resource)?;
        Some((c.point, self.manifests.get(&c.point)?))
    }

    /// The oldest capture chosen (its age is the achieved RPO).
    pub(crate) fn oldest(&self) -> Option<&Chosen> {
        choice::oldest(&self.chosen)
    }

    /// The one point everything comes from, when it is one.
    pub(crate) fn single(&self) -> Option<Id> {
        let first = self.chosen.first()?.point;
        self.chosen
            .iter()
            .all(|c| c.point == first)
            .then_some(first)
    }
}

/// `pinned` (an id or its prefix; `latest` or none: each resource's own newest complete
/// capture) for every one of `names`.
pub(crate) fn choose(repo: &Repository, pinned: Option<&str>, names: &[String]) -> Result<Choice> {
    let (chosen, manifests) = match pinned.filter(|p| *p != "latest") {
        Some(spec) => {
            let (id, point) = repo.find_point(spec)?;
            let chosen = choice::pin(id, &point, names).map_err(explain)?;
            (chosen, BTreeMap::from([(id, point)]))
        }
        None => {
            let points = repo.points()?;
            let chosen = choice::choose(&points, names).map_err(explain)?;
            let manifests = points
                .into_iter()
                .filter(|(id, _)| chosen.iter().any(|c| c.point == *id))
                .collect();
            (chosen, manifests)
        }
    };
    for c in chosen.iter().filter(|c| c.partial) {
        tracing::warn!(
            "`{}` comes from restore point {}, whose capture skipped entries: they are not \
             restored (`lifeboat points` lists them)",
            c.resource,
            c.point.short()
        );
    }
    Ok(Choice { chosen, manifests })
}

/// What to tell the user when no choice could be made.
pub(crate) fn explain(why: Unchosen) -> anyhow::Error {
    match why {
        Unchosen::Never(names) => anyhow::anyhow!(
            "no restore point holds a complete capture of {} (every item it discovered \
             included): `lifeboat backup {}` captures it; `--only` leaves it out of a run; \
             where only captures that skipped entries exist, `--point ID` restores one of \
             them (`lifeboat points --resource NAME` lists them)",
            names
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", "),
            names.join(" ")
        ),
        Unchosen::Lacking { point, missing } => anyhow::anyhow!(
            "restore point {} holds no usable capture of: {} (`lifeboat points --resource \
             NAME` lists the points that have one)",
            point.short(),
            missing.join(", ")
        ),
    }
}

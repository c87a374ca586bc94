//! The last step of a capture: trees written bottom-up from the scan and the files read,
//! with the folders that changed since they were scanned listed again (renames, files
//! replaced), so whatever existed throughout is captured under some name.

use super::*;

/// What became of a name found when a folder was listed again.
pub(super) enum Late {
    /// Captured (a file or folder with its identity).
    Entry(Entry, Option<Ident>),
    /// Nothing to capture (left out by the options, or a file already captured).
    Nothing,
    /// Gone again before it could be captured.
    Gone,
    /// It could not be captured, with why.
    Failed(String),
}

/// Writes the trees bottom-up from the scan and the read results, listing again the folders
/// that changed since they were scanned.
pub(super) struct TreeWriter<'a, 'r> {
    pub(super) writer: &'a RepoWriter<'r>,
    pub(super) source: &'a Path,
    pub(super) top: &'a Dir,
    pub(super) filter: &'a Filter,
    pub(super) jobs: &'a [Job],
    pub(super) results: Vec<Option<ReadResult>>,
    pub(super) stats: &'a mut CaptureStats,
    pub(super) skipped: Vec<String>,
    pub(super) changed: Vec<String>,
    /// The identity of every file and folder captured so far, anywhere in the tree.
    pub(super) captured: HashSet<Ident>,
    /// Files and folders the scan saw that were no longer under their name when read or
    /// written, with that name: each must be captured under some name, or is skipped.
    pub(super) vanished: Vec<(Ident, PathBuf)>,
    pub(super) trees: lifeboat_repository::Packer,
    /// For files captured when a folder is listed again.
    pub(super) data: lifeboat_repository::Packer,
    pub(super) buf: Vec<u8>,
}

impl TreeWriter<'_, '_> {
    fn skip(&mut self, rel: &Path, e: &dyn std::fmt::Display) {
        let path = display_path(&self.source.join(rel));
        tracing::warn!("skipping {path}: {e}");
        self.stats.files_skipped += 1;
        self.skipped.push(format!("{path}: {e}"));
    }

    fn note_changed(&mut self, rel: &Path) {
        let path = display_path(&self.source.join(rel));
        tracing::warn!("{path} changed while it was read; captured as it was");
        self.changed.push(path);
    }

    /// Writes a folder's tree; says whether it is whole (false: something in it vanished and
    /// the folder itself can no longer be reached under its name, so its parent drops it and
    /// captures it again under the name it has now).
    pub(super) fn write_dir(
        &mut self,
        nodes: Vec<Node>,
        rel: &Path,
        seen: DirSeen,
    ) -> Result<(Id, bool)> {
        let mut entries: Vec<Entry> = Vec::with_capacity(nodes.len());
        // Where each captured file and folder is in `entries`, by identity.
        let mut ids: HashMap<Ident, usize> = HashMap::new();
        // Reported as skipped already: never tried again when the folder is listed again.
        let mut given_up: HashSet<Vec<u8>> = seen.skipped.iter().cloned().collect();
        let mut vanished = seen.vanished;
        for node in nodes {
            let inode = node.meta.inode;
            let (kind, meta, id) = match node.kind {
                NodeKind::File {
                    size,
                    job: None,
                    reused,
                    dev,
                } => (
                    EntryKind::File {
                        size,
                        chunks: reused,
                    },
                    node.meta,
                    Some((dev, inode)),
                ),
                NodeKind::File { job: Some(i), .. } => match self.results[i].take() {
                    Some(Ok(read)) => {
                        if read.changed {
                            self.note_changed(&self.jobs[i].rel.clone());
                        }
                        // The size actually read: the file may have changed since the scan.
                        (
                            EntryKind::File {
                                size: read.size,
                                chunks: read.chunks,
                            },
                            read.meta,
                            Some((self.jobs[i].dev, self.jobs[i].inode)),
                        )
                    }
                    // Renamed, replaced or deleted: listing the folder again finds what is
                    // there now; if it is not found under any name, it is skipped.
                    Some(Err(ReadFail::Vanished)) => {
                        vanished = true;
                        self.stats.files -= 1;
                        self.stats.bytes = self.stats.bytes.saturating_sub(self.jobs[i].size);
                        let job = &self.jobs[i];
                        self.vanished.push(((job.dev, job.inode), job.rel.clone()));
                        continue;
                    }
                    other => {
                        let e = match other {
                            Some(Err(ReadFail::Failed(e))) => e,
                            _ => "not read".to_string(),
                        };
                        self.stats.files -= 1;
                        self.skip(&self.jobs[i].rel.clone(), &e);
                        given_up.insert(node.name);
                        continue;
                    }
                },
                NodeKind::Dir {
                    children,
                    rel: child_rel,
                    seen: child_seen,
                } => {
                    let id = (child_seen.dev, child_seen.inode);
                    let (tree, whole) = self.write_dir(children, &child_rel, child_seen)?;
                    if !whole {
                        vanished = true;
                        self.stats.dirs -= 1;
                        self.vanished.push((id, child_rel));
                        continue;
                    }
                    (EntryKind::Dir { tree }, node.meta, Some(id))
                }
                NodeKind::Other(kind) => (kind, node.meta, None),
            };
            if let Some(id) = id {
                self.captured.insert(id);
                ids.insert(id, entries.len());
            }
            entries.push(Entry {
                name: node.name,
                kind,
                meta,
            });
        }
        let whole = self.settle(rel, seen, vanished, &mut entries, &mut ids, given_up)?;
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok((self.store_tree(Tree { entries })?, whole))
    }

    /// Lists a folder that changed since its scan again, until it holds still (bounded), and
    /// captures every name not captured yet (a file already captured under another name is
    /// not captured twice, see [`already_captured`]). A name first seen now that is gone
    /// again before it can be read did not exist throughout the backup: it is only logged
    /// (what the scan saw and is not captured under any name is skipped at the end, see
    /// [`TreeWriter::account_for_vanished`]). A folder that can no longer be listed is
    /// skipped, as the scan does. Returns false when something in it vanished and it is no
    /// longer under its name.
    fn settle(
        &mut self,
        rel: &Path,
        seen: DirSeen,
        vanished: bool,
        entries: &mut Vec<Entry>,
        ids: &mut HashMap<Ident, usize>,
        mut given_up: HashSet<Vec<u8>>,
    ) -> Result<bool> {
        // Gone, renamed or replaced itself: its parent's listing decides.
        let Ok(dir) = self.top.open_beneath(rel) else {
            return Ok(!vanished);
        };
        let Ok(st) = rustix::fs::fstat(&dir) else {
            return Ok(!vanished);
        };
        if (st.st_dev, st.st_ino) != (seen.dev, seen.inode) {
            return Ok(!vanished);
        }
        if !vanished && dir_times(&st) == seen.times {
            return Ok(true);
        }
        let mut gone: Vec<PathBuf> = Vec::new();
        for round in 0..SETTLE_ROUNDS {
            if round > 0 {
                std::thread::sleep(std::time::Duration::from_millis(1 << round.min(5)));
            }
            let Ok(before) = rustix::fs::fstat(&dir) else {
                return Ok(true);
            };
            let names = match list(&dir, rel, Event::SettleList, round) {
                Ok(names) => names,
                Err(e) => {
                    // What it held when scanned is kept; what came since is not known.
                    self.skip(rel, &format!("could not be listed again: {e}"));
                    return Ok(true);
                }
            };
            let have: HashSet<Vec<u8>> = entries.iter().map(|e| e.name.clone()).collect();
            gone.clear();
            for name in names {
                let bytes = name.as_bytes().to_vec();
                if have.contains(&bytes) || given_up.contains(&bytes) {
                    continue;
                }
                let rel_path = rel.join(&name);
                if self.filter.exclude.is_match(&rel_path) {
                    continue;
                }
                match self.capture_late(&dir, &name, &rel_path, ids, entries)? {
                    Late::Entry(entry, id) => {
                        if let Some(id) = id {
                            ids.insert(id, entries.len());
                        }
                        entries.push(entry);
                    }
                    Late::Nothing => {}
                    Late::Gone => gone.push(rel_path),
                    Late::Failed(e) => {
                        given_up.insert(bytes);
                        self.skip(&rel_path, &e);
                    }
                }
            }
            let Ok(after) = rustix::fs::fstat(&dir) else {
                return Ok(true);
            };
            if gone.is_empty() && dir_times(&after) == dir_times(&before) {
                return Ok(true);
            }
        }
        for rel_path in gone {
            let path = display_path(&self.source.join(&rel_path));
            tracing::debug!("{path} appeared and was gone again during the backup; not captured");
        }
        Ok(true)
    }

    /// Reports as skipped each file or folder the scan saw that was no longer under its name
    /// when read and was not captured under any name since (renamed or moved past every
    /// listing, or replaced or deleted: which of these cannot be told, so the point is
    /// `partial`).
    pub(super) fn account_for_vanished(&mut self) {
        let mut reported = HashSet::new();
        for (id, rel) in std::mem::take(&mut self.vanished) {
            if !self.captured.contains(&id) && reported.insert(id) {
                self.skip(
                    &rel,
                    &"renamed, replaced or deleted during the backup and not found again under any name",
                );
            }
        }
    }

    /// Captures a folder found when its parent was listed again (renamed or made during the
    /// backup): everything in it as it is now, read one file at a time.
    fn capture_dir_late(&mut self, dir: &Dir, rel: &Path) -> Result<Id> {
        let names = list(dir, rel, Event::LateList, 0).map_err(io_err(&self.source.join(rel)))?;
        let none = HashMap::new();
        let mut entries = Vec::with_capacity(names.len());
        for name in names {
            let rel_path = rel.join(&name);
            if self.filter.exclude.is_match(&rel_path) {
                continue;
            }
            match self.capture_late(dir, &name, &rel_path, &none, &[])? {
                Late::Entry(entry, _) => entries.push(entry),
                // Made and removed again during the backup.
                Late::Nothing | Late::Gone => {}
                Late::Failed(e) => self.skip(&rel_path, &e),
            }
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        self.store_tree(Tree { entries })
    }

    /// Stores one folder's tree.
    fn store_tree(&mut self, tree: Tree) -> Result<Id> {
        let bytes = tree.encode();
        // Never store what a reader would refuse to open.
        if bytes.len() > lifeboat_format::seal::MAX_PAYLOAD {
            return Err(FilesError::TooLarge(format!(
                "a directory of {} entries encodes to {} bytes, more than a tree may hold ({})",
                tree.entries.len(),
                bytes.len(),
                lifeboat_format::seal::MAX_PAYLOAD
            )));
        }
        let id = self.writer.repository().key().chunk_id(&bytes);
        self.writer.add(&mut self.trees, id, &bytes)?;
        Ok(id)
    }

    /// Captures `name` found in `dir` when it was listed again.
    fn capture_late(
        &mut self,
        dir: &Dir,
        name: &OsStr,
        rel_path: &Path,
        ids: &HashMap<Ident, usize>,
        entries: &[Entry],
    ) -> Result<Late> {
        let st = match dir.stat(name) {
            Ok(st) => st,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Late::Gone),
            Err(e) => return Ok(Late::Failed(e.to_string())),
        };
        let ft = FileType::from_raw_mode(st.st_mode);
        if ft == FileType::Directory {
            // Captured under its old name already (renamed after it was scanned).
            if self.filter.exclude.is_match(rel_path.join(EXCLUDE_PROBE))
                || already_captured(dir, &st, ids, entries)
            {
                return Ok(Late::Nothing);
            }
            let child = match dir.open_child(name) {
                Ok(child) => child,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Late::Gone),
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
                    return Ok(Late::Gone);
                }
                Err(e) => return Ok(Late::Failed(e.to_string())),
            };
            match rustix::fs::fstat(&child) {
                Ok(now) if (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino) => {}
                Ok(_) => return Ok(Late::Gone),
                Err(e) => return Ok(Late::Failed(std::io::Error::from(e).to_string())),
            }
            // One that can no longer be listed is skipped, as the scan does.
            let tree = match self.capture_dir_late(&child, rel_path) {
                Ok(tree) => tree,
                Err(FilesError::Io { source, .. }) => return Ok(Late::Failed(source.to_string())),
                Err(e) => return Err(e),
            };
            self.stats.dirs += 1;
            let id = (st.st_dev, st.st_ino);
            self.captured.insert(id);
            return Ok(Late::Entry(
                Entry {
                    name: name.as_bytes().to_vec(),
                    kind: EntryKind::Dir { tree },
                    meta: metadata_of(&st),
                },
                Some(id),
            ));
        }
        if let Some(include) = &self.filter.include
            && !include.is_match(rel_path)
        {
            return Ok(Late::Nothing);
        }
        let mut meta = metadata_of(&st);
        let kind = match ft {
            FileType::RegularFile => {
                if already_captured(dir, &st, ids, entries) {
                    return Ok(Late::Nothing);
                }
                let file = match dir.open_file_beneath(Path::new(name)) {
                    Ok(file) => file,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Late::Gone),
                    Err(e) if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
                        return Ok(Late::Gone);
                    }
                    Err(e) => return Ok(Late::Failed(e.to_string())),
                };
                match rustix::fs::fstat(&file) {
                    Ok(now)
                        if FileType::from_raw_mode(now.st_mode) == FileType::RegularFile
                            && (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino) => {}
                    Ok(_) => return Ok(Late::Gone),
                    Err(e) => return Ok(Late::Failed(std::io::Error::from(e).to_string())),
                }
                let read =
                    match read_steady(self.writer, &mut self.data, &file, &mut self.buf, None) {
                        Ok(read) => read,
                        Err(StreamError::Store(e)) => return Err(e.into()),
                        Err(e) => return Ok(Late::Failed(e.to_string())),
                    };
                if read.changed {
                    self.note_changed(rel_path);
                }
                self.stats.files += 1;
                self.stats.files_read += 1;
                self.stats.bytes += read.size;
                self.captured.insert((st.st_dev, st.st_ino));
                meta = read.meta;
                EntryKind::File {
                    size: read.size,
                    chunks: read.chunks,
                }
            }
            FileType::Symlink => match dir.read_link(name) {
                Ok(target) => EntryKind::Symlink { target },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Late::Gone),
                Err(e) => return Ok(Late::Failed(e.to_string())),
            },
            FileType::Fifo => EntryKind::Fifo,
            FileType::Socket => EntryKind::Socket,
            FileType::CharacterDevice => EntryKind::CharDevice { rdev: st.st_rdev },
            FileType::BlockDevice => EntryKind::BlockDevice { rdev: st.st_rdev },
            _ => return Ok(Late::Nothing),
        };
        let id = matches!(kind, EntryKind::File { .. }).then_some((st.st_dev, st.st_ino));
        Ok(Late::Entry(
            Entry {
                name: name.as_bytes().to_vec(),
                kind,
                meta,
            },
            id,
        ))
    }
}

/// Whether the file or folder `st` describes, found in `dir` under a name not captured yet,
/// is one captured there already under another name. Its identity (device and inode) must
/// be that of a captured entry, and either that entry's name still leads to it (a second
/// hard link) or it still has the size and mtime captured (a rename changes neither; its
/// ctime, which a rename changes, is not compared). An inode number freed during the backup
/// and reused by a new file or folder passes neither, so the new one is captured.
pub(super) fn already_captured(
    dir: &Dir,
    st: &rustix::fs::Stat,
    ids: &HashMap<Ident, usize>,
    entries: &[Entry],
) -> bool {
    let id = (st.st_dev, st.st_ino);
    let Some(entry) = ids.get(&id).and_then(|&i| entries.get(i)) else {
        return false;
    };
    if dir
        .stat(OsStr::from_bytes(&entry.name))
        .is_ok_and(|now| (now.st_dev, now.st_ino) == id)
    {
        return true;
    }
    let same_mtime = entry.meta.mtime == metadata_of(st).mtime;
    match entry.kind {
        EntryKind::File { size, .. } => same_mtime && size == st.st_size.max(0) as u64,
        EntryKind::Dir { .. } => same_mtime,
        _ => false,
    }
}

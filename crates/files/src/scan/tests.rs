use super::trees::already_captured;
use super::*;

const PASSWORD: &[u8] = b"settle";

fn repository(tmp: &Path) -> lifeboat_repository::Repository {
    use lifeboat_repository::Repository;
    let backend: std::sync::Arc<dyn lifeboat_storage::Backend> = std::sync::Arc::new(
        lifeboat_storage::ObjectStoreBackend::local(&tmp.join("repo"), true).unwrap(),
    );
    if !tmp.join("repo/config").exists() {
        Repository::init(
            backend.clone(),
            PASSWORD,
            lifeboat_format::keys::KdfParams::OWASP_MINIMUM,
        )
        .unwrap();
    }
    Repository::open(backend, PASSWORD, Some(&tmp.join("cache"))).unwrap()
}

fn paths_in(reader: &mut ChunkReader<'_>, id: &Id, below: &str, out: &mut Vec<String>) {
    for entry in load_tree(reader, id).unwrap().entries {
        let path = format!("{below}{}", String::from_utf8(entry.name).unwrap());
        if let EntryKind::Dir { tree } = entry.kind {
            paths_in(reader, &tree, &format!("{path}/"), out);
        }
        out.push(path);
    }
}

/// Backs up `src` with `hook` acting on the tree at its events; returns the capture and
/// every path in it.
fn capture_with(
    tmp: &Path,
    src: &Path,
    hook: impl FnMut(Event, &Path, usize) -> Option<std::io::Error> + 'static,
) -> (FilesCapture, Vec<String>) {
    let repo = repository(tmp);
    let writer = repo.writer();
    HOOK.with(|h| *h.borrow_mut() = Some(Box::new(hook)));
    let capture = backup(&writer, src, None, &BackupOptions::default(), None);
    HOOK.with(|h| *h.borrow_mut() = None);
    let capture = capture.unwrap();
    writer.finish().unwrap();
    drop(repo);
    let repo = repository(tmp);
    let mut paths = Vec::new();
    paths_in(&mut repo.reader(), &capture.root, "", &mut paths);
    paths.sort();
    (capture, paths)
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

fn denied() -> Option<std::io::Error> {
    Some(std::io::Error::from_raw_os_error(libc_eacces()))
}

fn libc_eacces() -> i32 {
    rustix::io::Errno::ACCESS.raw_os_error()
}

#[test]
fn a_name_first_seen_while_settling_that_vanishes_makes_no_point_partial() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    write(&src.join("a"), b"a");
    write(&src.join("x"), b"x, as scanned");
    // An application writes `tN.tmp` and renames it over `x`, again and again: every
    // listing while settling sees a temporary name that is gone before it is read.
    let root = src.clone();
    let (capture, paths) = capture_with(tmp.path(), &src, move |event, rel, round| {
        let tmp_name = |n: usize| root.join(format!("t{n}.tmp"));
        match event {
            Event::Scanned => std::fs::write(tmp_name(0), b"x, rewritten").unwrap(),
            Event::SettleListed if rel == Path::new("") => {
                std::fs::rename(tmp_name(round), root.join("x")).unwrap();
                std::fs::write(tmp_name(round + 1), b"x, rewritten").unwrap();
            }
            _ => {}
        }
        None
    });
    assert!(capture.skipped.is_empty(), "{:?}", capture.skipped);
    assert_eq!(capture.stats.files_skipped, 0);
    assert!(
        paths.contains(&"a".into()) && paths.contains(&"x".into()),
        "{paths:?}"
    );
}

#[test]
fn a_scanned_file_is_captured_under_its_new_name_or_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    // Renamed once after the scan: captured under its new name, nothing skipped.
    let src = tmp.path().join("once");
    write(&src.join("a"), b"a");
    write(&src.join("e"), b"e");
    let root = src.clone();
    let (capture, paths) = capture_with(tmp.path(), &src, move |event, _, _| {
        if event == Event::Scanned {
            std::fs::rename(root.join("e"), root.join("e0")).unwrap();
        }
        None
    });
    assert!(capture.skipped.is_empty(), "{:?}", capture.skipped);
    assert_eq!(paths, ["a", "e0"]);

    // Moved to another folder after the scan: captured there.
    let src = tmp.path().join("moved");
    write(&src.join("d1/e"), b"e");
    write(&src.join("d2/f"), b"f");
    let root = src.clone();
    let (capture, paths) = capture_with(tmp.path(), &src, move |event, _, _| {
        if event == Event::Scanned {
            std::fs::rename(root.join("d1/e"), root.join("d2/e")).unwrap();
        }
        None
    });
    assert!(capture.skipped.is_empty(), "{:?}", capture.skipped);
    assert_eq!(paths, ["d1", "d2", "d2/e", "d2/f"]);

    // Renamed again after every listing: never captured, so skipped (once).
    let src = tmp.path().join("restless");
    write(&src.join("a"), b"a");
    write(&src.join("e"), b"e");
    let root = src.clone();
    let (capture, paths) = capture_with(tmp.path(), &src, move |event, _, round| {
        match event {
            Event::Scanned => std::fs::rename(root.join("e"), root.join("e0")).unwrap(),
            Event::SettleListed => std::fs::rename(
                root.join(format!("e{round}")),
                root.join(format!("e{}", round + 1)),
            )
            .unwrap(),
            _ => {}
        }
        None
    });
    assert_eq!(capture.skipped.len(), 1, "{:?}", capture.skipped);
    assert!(
        capture.skipped[0].contains("restless/e: renamed"),
        "{:?}",
        capture.skipped
    );
    assert_eq!(capture.stats.files_skipped, 1);
    assert_eq!(paths, ["a"]);
}

#[test]
fn a_name_the_scan_skipped_is_not_tried_again_when_its_folder_settles() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    write(&src.join("d/a"), b"a");
    write(&src.join("d/sub/x"), b"x");
    let root = src.clone();
    let (capture, paths) = capture_with(tmp.path(), &src, move |event, rel, _| {
        match event {
            Event::ScanList | Event::LateList if rel == Path::new("d/sub") => return denied(),
            Event::Scanned => std::fs::write(root.join("d/new"), b"new").unwrap(),
            _ => {}
        }
        None
    });
    assert_eq!(capture.skipped.len(), 1, "{:?}", capture.skipped);
    assert!(
        capture.skipped[0].contains("d/sub"),
        "{:?}",
        capture.skipped
    );
    assert_eq!(capture.stats.files_skipped, 1);
    assert_eq!(paths, ["d", "d/a", "d/new"]);
}

#[test]
fn a_folder_that_can_no_longer_be_listed_is_skipped_not_fatal() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    write(&src.join("d/a"), b"a");
    write(&src.join("e/b"), b"b");
    let root = src.clone();
    let (capture, paths) = capture_with(tmp.path(), &src, move |event, rel, _| {
        match event {
            Event::Scanned => {
                std::fs::write(root.join("d/new"), b"new").unwrap();
                std::fs::write(root.join("e/c"), b"c").unwrap();
            }
            // `d` as chmod 000 during the backup.
            Event::SettleList if rel == Path::new("d") => return denied(),
            _ => {}
        }
        None
    });
    assert_eq!(capture.skipped.len(), 1, "{:?}", capture.skipped);
    assert!(
        capture.skipped[0].contains("d: could not be listed again"),
        "{:?}",
        capture.skipped
    );
    assert_eq!(capture.stats.files_skipped, 1);
    assert_eq!(paths, ["d", "d/a", "e", "e/b", "e/c"]);
}

#[test]
fn an_identity_counts_as_captured_only_for_the_same_file() {
    use std::os::unix::fs::MetadataExt;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    std::fs::write(root.join("b"), b"new file").unwrap();
    std::fs::hard_link(root.join("b"), root.join("link")).unwrap();
    let dir = Dir::open_source(root).unwrap();
    let st = dir.stat(OsStr::new("b")).unwrap();
    let m = std::fs::metadata(root.join("b")).unwrap();
    let entry = |name: &str, size: u64, mtime: Time| Entry {
        name: name.as_bytes().to_vec(),
        kind: EntryKind::File {
            size,
            chunks: Vec::new(),
        },
        meta: Metadata {
            mtime,
            ..metadata_of(&st)
        },
    };
    let now = metadata_of(&st).mtime;
    let old = Time { secs: 1, nanos: 0 };
    let ids = HashMap::from([((m.dev(), m.ino()), 0)]);
    let check = |e: Entry, ids: &HashMap<Ident, usize>| {
        already_captured(&dir, &st, ids, std::slice::from_ref(&e))
    };
    // A file captured as `a`, deleted; its inode number now `b`'s, a new file: captured.
    assert!(!check(entry("a", 3, old), &ids));
    assert!(!check(entry("a", 3, now), &ids));
    // `a` renamed to `b`: size and mtime unchanged, not captured twice.
    assert!(check(entry("a", m.len(), now), &ids));
    // Captured as `link`, which still leads to it: a second hard link.
    assert!(check(entry("link", 3, old), &ids));
    // The same inode number on another device is another file.
    let other = HashMap::from([((m.dev() + 1, m.ino()), 0)]);
    assert!(!check(entry("link", m.len(), now), &other));
}

#[test]
fn a_path_filter_keeps_what_a_backup_captures() {
    let filter = PathFilter::new(&BackupOptions {
        include: vec!["**/*.csv".into()],
        exclude: vec!["tmp/**".into(), "*.bak".into()],
    })
    .unwrap();
    assert!(filter.captures(Path::new("2026/jan.csv"), false));
    assert!(filter.captures(Path::new("2026"), true));
    assert!(!filter.captures(Path::new("notes.txt"), false));
    assert!(!filter.captures(Path::new("tmp"), true));
    assert!(!filter.captures(Path::new("tmp/jan.csv"), false));
    assert!(!filter.captures(Path::new("old.bak"), false));
    let everything = PathFilter::new(&BackupOptions::default()).unwrap();
    assert!(everything.captures(Path::new("any/thing"), false));
}

#[test]
fn a_file_swapped_after_the_scan_is_never_read_or_waited_on() {
    use std::os::unix::fs::MetadataExt;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    std::fs::write(root.join("outside"), b"secret").unwrap();
    let job_for = |name: &str| {
        let m = std::fs::symlink_metadata(root.join(name)).unwrap();
        Job {
            rel: PathBuf::from(name),
            size: m.len(),
            dev: m.dev(),
            inode: m.ino(),
        }
    };
    let top = Dir::open_source(root).unwrap();
    for (name, swap) in [("to-link", 0), ("to-fifo", 1), ("to-other", 2)] {
        std::fs::write(root.join(name), b"scanned").unwrap();
        let job = job_for(name);
        assert!(open_scanned(&top, &job).is_ok());
        if swap < 2 {
            std::fs::remove_file(root.join(name)).unwrap();
        }
        match swap {
            0 => std::os::unix::fs::symlink(root.join("outside"), root.join(name)).unwrap(),
            1 => rustix::fs::mknodat(
                rustix::fs::CWD,
                root.join(name),
                FileType::Fifo,
                rustix::fs::Mode::from_raw_mode(0o600),
                0,
            )
            .unwrap(),
            _ => {
                // Another file under the same name, made while the old one still exists.
                std::fs::write(root.join(format!("{name}.new")), b"other").unwrap();
                std::fs::rename(root.join(format!("{name}.new")), root.join(name)).unwrap();
            }
        }
        // Returns at once (a FIFO without a writer would block a plain open).
        let err = open_scanned(&top, &job).unwrap_err().to_string();
        assert!(err.contains("since it was scanned"), "{name}: {err}");
    }
}

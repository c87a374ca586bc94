//! The local backend, through the same object_store path the cloud uses.

use lifeboat_storage::{Backend, Kind, ObjectStoreBackend};

#[test]
fn put_get_range_list_delete() {
    let dir = tempfile::tempdir().unwrap();
    let b = ObjectStoreBackend::local(&dir.path().join("repo"), true).unwrap();
    let name = "ab".repeat(32);
    b.put(Kind::Data, &name, b"0123456789".to_vec()).unwrap();
    assert!(dir.path().join("repo/data/ab").join(&name).is_file());
    assert_eq!(b.get(Kind::Data, &name).unwrap(), b"0123456789");
    assert_eq!(b.get_range(Kind::Data, &name, 2..5).unwrap(), b"234");
    let listed = b.list(Kind::Data).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].name, name);
    assert_eq!(listed[0].size, 10);
    assert!(b.list(Kind::Index).unwrap().is_empty());
    b.put(Kind::Config, "config", b"{}".to_vec()).unwrap();
    assert_eq!(b.list(Kind::Config).unwrap().len(), 1);
    b.delete(Kind::Data, &name).unwrap();
    b.delete(Kind::Data, &name).unwrap();
    let err = b.get(Kind::Data, &name).unwrap_err();
    assert!(err.is_not_found());
    assert!(
        err.to_string()
            .contains(&format!("data/ab/{name} does not exist")),
        "{err}"
    );
}

#[test]
fn a_short_object_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let b = ObjectStoreBackend::local(dir.path(), false).unwrap();
    b.put(Kind::Index, "x", vec![1, 2, 3]).unwrap();
    let err = b
        .get_range(Kind::Index, "x", 0..10)
        .unwrap_err()
        .to_string();
    assert!(err.contains("index/x"), "{err}");
}

#[test]
fn missing_directory_and_bad_scheme_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let err = ObjectStoreBackend::local(&dir.path().join("nope"), false).unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
    let err = ObjectStoreBackend::open("ftp://x/y", &vec![], false).unwrap_err();
    assert!(
        err.to_string().contains("unsupported scheme `ftp`"),
        "{err}"
    );
}

#[test]
fn objects_out_of_place_are_strays_not_objects() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let b = ObjectStoreBackend::local(root, false).unwrap();
    let name = "ab".repeat(32);
    b.put(Kind::Data, &name, b"pack".to_vec()).unwrap();
    b.put(Kind::Points, "p", b"point".to_vec()).unwrap();
    for rel in [
        "stray.txt",
        "elsewhere/x",
        "points/nested/p",
        "data/loose",
        &format!("data/cd/{name}"),
    ] {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"?").unwrap();
    }
    let listed: Vec<String> = b
        .list(Kind::Data)
        .unwrap()
        .into_iter()
        .map(|o| o.name)
        .collect();
    assert_eq!(listed, std::slice::from_ref(&name));
    let listed: Vec<String> = b
        .list(Kind::Points)
        .unwrap()
        .into_iter()
        .map(|o| o.name)
        .collect();
    assert_eq!(listed, ["p"]);
    let mut strays: Vec<String> = b.strays().unwrap().into_iter().map(|s| s.path).collect();
    strays.sort();
    assert_eq!(
        strays,
        [
            format!("data/cd/{name}"),
            "data/loose".to_string(),
            "elsewhere/x".to_string(),
            "points/nested/p".to_string(),
            "stray.txt".to_string(),
        ]
    );
}

#[test]
fn create_if_absent_has_one_winner() {
    let dir = tempfile::tempdir().unwrap();
    let b = ObjectStoreBackend::local(dir.path(), false).unwrap();
    b.create(Kind::Leases, "prune-1", b"first".to_vec())
        .unwrap();
    let err = b
        .create(Kind::Leases, "prune-1", b"second".to_vec())
        .unwrap_err();
    assert!(err.is_already_exists(), "{err}");
    assert!(err.to_string().contains("leases/prune-1"), "{err}");
    assert_eq!(b.get(Kind::Leases, "prune-1").unwrap(), b"first");
}

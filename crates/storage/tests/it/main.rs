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

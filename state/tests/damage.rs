//! Damage in the state database's files is reported, not silently cut away: RocksDB's
//! default recovery would drop every commit after a damaged write-ahead-log record, as if
//! they had never been made. A record cut off at the very end (a crash mid-write) is still
//! dropped quietly: it was never acknowledged.

use eddy_state::{Commit, StateDb, StateError, StateOptions};

fn write(path: &std::path::Path, commits: u64) {
    let db = StateDb::open(path, StateOptions::default()).unwrap();
    let store = db.store("q/agg").unwrap();
    for i in 0..commits {
        let mut c = Commit::new();
        c.put(&store, &i.to_be_bytes(), &[1u8; 200]);
        c.set_offset("q", "t/0", i + 1);
        db.commit(c).unwrap();
    }
}

/// The write-ahead log the commits went to (RocksDB leaves it unflushed on close).
fn wal(path: &std::path::Path) -> std::path::PathBuf {
    std::fs::read_dir(path)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap()
}

#[test]
fn a_damaged_commit_in_the_middle_fails_the_open_with_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state");
    write(&path, 1000);
    let wal = wal(&path);
    let mut bytes = std::fs::read(&wal).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle..middle + 8].copy_from_slice(b"DAMAGED!");
    std::fs::write(&wal, bytes).unwrap();
    match StateDb::open(&path, StateOptions::default()) {
        Err(e @ StateError::Damaged { .. }) => {
            let message = e.to_string();
            assert!(
                message.contains("are damaged") && message.contains("Corruption"),
                "{message}"
            );
        }
        Err(e) => panic!("not reported as damage: {e}"),
        Ok(db) => panic!(
            "opened, at offset {:?} of 1000",
            db.offset("q", "t/0").unwrap()
        ),
    }
}

#[test]
fn a_record_cut_off_at_the_end_is_dropped_and_the_rest_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state");
    write(&path, 1000);
    let wal = wal(&path);
    let len = std::fs::metadata(&wal).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&wal)
        .unwrap()
        .set_len(len - 100)
        .unwrap();
    let db = StateDb::open(&path, StateOptions::default()).unwrap();
    assert_eq!(db.offset("q", "t/0").unwrap(), Some(999));
}

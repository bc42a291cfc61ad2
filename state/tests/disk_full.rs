//! A full disk under the state database, on a small tmpfs: a commit fails with an error naming
//! the cause, and commits succeed again once there is space. Mounting needs root; without it
//! the test says so and passes.

use std::time::{Duration, Instant};

use eddy_state::{Commit, StateDb, StateOptions};

#[path = "../../log/tests/common/small_fs.rs"]
mod small_fs;
use small_fs::SmallFs;

#[test]
fn a_full_disk_fails_commits_clearly_and_they_resume_when_space_returns() {
    let Some(fs) = SmallFs::mount(128 << 20) else {
        eprintln!("skipped: mounting a small tmpfs needs root");
        return;
    };
    let path = fs.path().join("state");
    let db = StateDb::open(&path, StateOptions::default()).unwrap();
    let store = db.store("q/agg").unwrap();
    // Fill what is left but a little.
    fs.fill("ballast", 1 << 20);
    let ballast = fs.path().join("ballast");
    let value = vec![1u8; 1000];
    let mut committed = 0u64;
    let error = loop {
        let mut c = Commit::new();
        c.put(&store, &committed.to_be_bytes(), &value);
        c.set_offset("q", "t/0", committed + 1);
        match db.commit(c) {
            Ok(()) => committed += 1,
            Err(e) => break e,
        }
        assert!(committed < 100_000, "the disk never filled");
    };
    println!("after {committed} commits: {error}");
    std::fs::remove_file(&ballast).unwrap();
    let start = Instant::now();
    loop {
        let mut c = Commit::new();
        c.put(&store, &committed.to_be_bytes(), &value);
        c.set_offset("q", "t/0", committed + 1);
        match db.commit(c) {
            Ok(()) => break,
            Err(e) => {
                // RocksDB's own recovery looks for space every 5 s.
                // RocksDB looks for space every 5 s, and resumes once there is room for its
                // write buffers.
                assert!(
                    start.elapsed() < Duration::from_secs(30),
                    "never resumed: {e}"
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
    println!("resumed after {:?}", start.elapsed());
    assert_eq!(db.offset("q", "t/0").unwrap(), Some(committed + 1));
}

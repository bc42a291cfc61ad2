//! A full disk under the state database, on a small tmpfs: a commit fails with an error naming
//! the cause, and commits succeed again once there is space. Mounting needs root; without it
//! the test says so and passes.

use std::time::{Duration, Instant};

use eddy_state::{Commit, StateDb, StateOptions};

/// A tmpfs of `bytes`, unmounted when dropped.
struct SmallFs {
    dir: tempfile::TempDir,
}

impl SmallFs {
    fn mount(bytes: u64) -> Option<SmallFs> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return None;
        }
        let dir = tempfile::tempdir().ok()?;
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .ok()?;
        mounted.success().then_some(SmallFs { dir })
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}

#[test]
fn a_full_disk_fails_commits_clearly_and_they_resume_when_space_returns() {
    let Some(fs) = SmallFs::mount(128 << 20) else {
        eprintln!("skipped: mounting a small tmpfs needs root");
        return;
    };
    let path = fs.dir.path().join("state");
    let db = StateDb::open(&path, StateOptions::default()).unwrap();
    let store = db.store("q/agg").unwrap();
    // Fill what is left but a little.
    let ballast = fs.dir.path().join("ballast");
    let free = {
        // SAFETY: statvfs writes into the struct it is given.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        let c = std::ffi::CString::new(fs.dir.path().to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut st) }, 0);
        st.f_bavail * st.f_frsize
    };
    std::fs::write(&ballast, vec![7u8; (free - (1 << 20)) as usize]).unwrap();
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

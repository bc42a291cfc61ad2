//! A size-limited tmpfs for the disk-full tests of every crate (included by path by those of
//! `state` and `repl`): mounting needs root, so `mount` gives `None` without it and the test
//! says it skipped.
// Each test crate uses only some of it.
#![allow(dead_code)]

use std::io::Write;
use std::path::Path;

/// A tmpfs of a given size, unmounted when dropped.
pub struct SmallFs {
    pub dir: tempfile::TempDir,
}

impl SmallFs {
    /// A tmpfs of `bytes`, or `None` when not running as root (or mounting fails).
    pub fn mount(bytes: u64) -> Option<SmallFs> {
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

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes the file `name` until the filesystem is full, leaving `spare` bytes free by
    /// then removing a file of that size written first.
    pub fn fill(&self, name: &str, spare: usize) {
        let room = self.path().join(".room");
        std::fs::write(&room, vec![0u8; spare]).unwrap();
        let mut f = std::fs::File::create(self.path().join(name)).unwrap();
        let chunk = vec![7u8; 64 << 10];
        while f.write_all(&chunk).is_ok() {}
        // What a full chunk did not fit, byte by byte.
        while f.write_all(&[7]).is_ok() {}
        std::fs::remove_file(room).unwrap();
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}

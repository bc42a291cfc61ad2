//! A full disk, on a small tmpfs: appends fail with an error naming the cause, nothing
//! acknowledged is lost, and appends resume once there is space again. Mounting needs root;
//! without it the test says so and passes.

mod common;
#[path = "common/small_fs.rs"]
mod small_fs;

use common::{manual, rec};
use eddy_log::{Log, ReadLimits, TopicConfig};
use small_fs::SmallFs;

#[test]
fn a_full_disk_fails_appends_clearly_and_they_resume_when_space_returns() {
    let Some(fs) = SmallFs::mount(2 << 20) else {
        eprintln!("skipped: mounting a small tmpfs needs root");
        return;
    };
    let ballast = fs.path().join("ballast");
    std::fs::write(&ballast, vec![7u8; 512 << 10]).unwrap();
    let data = fs.path().join("data");
    let log = Log::open(&data, manual()).unwrap();
    let t = log.create_topic("t", TopicConfig::default()).unwrap();
    let p = t.partition(0).unwrap().clone();
    let value = "v".repeat(1000);
    let mut acknowledged = 0u64;
    let error = loop {
        match p.append(&[rec(Some("k"), Some(&value), acknowledged as i64)]) {
            Ok(info) => {
                assert_eq!(info.base_offset, acknowledged);
                acknowledged += 1;
            }
            Err(e) => break e,
        }
        assert!(acknowledged < 10_000, "the disk never filled");
    };
    assert!(
        error.to_string().contains("No space left on device"),
        "the error names the cause: {error}"
    );
    // Everything acknowledged reads back.
    let mut offset = 0;
    while let Some(last) = p.read(offset, ReadLimits::default()).unwrap().last() {
        offset = last.offset + 1;
    }
    assert_eq!(offset, acknowledged);

    // Space comes back: appends go on at the next offset.
    std::fs::remove_file(&ballast).unwrap();
    let info = p.append(&[rec(Some("k"), Some("after"), 0)]).unwrap();
    assert_eq!(info.base_offset, acknowledged);
    drop((p, t, log));
    let log = Log::open(&data, manual()).unwrap();
    let p = log.partition("t", 0).unwrap();
    assert_eq!(p.end_offset(), acknowledged + 1);
    assert!(p.damage().is_empty());
    assert!(p.verify().unwrap().is_empty());
    println!("disk full after {acknowledged} appends of 1 KB on a 2 MiB tmpfs: {error}");
}

//! A small mutation fuzzer that runs on stable Rust, inside `cargo test`.
//!
//! cargo-fuzz needs a nightly toolchain, which a fresh machine here cannot fetch, so Eddy's fuzz
//! targets run on this instead: each target is a function over bytes that must never panic,
//! whatever it is given (a bad statement, record, batch or frame gets an error, never a crash).
//! [`run`] starts from a seed corpus (`fuzz/corpus/<target>/`, plus seeds the target makes),
//! mutates seeds the way libFuzzer's default mutators do (bit flips, interesting integers,
//! erased, inserted, repeated and spliced ranges, truncation) and calls the target with each
//! input for a time budget. It is blind (no coverage feedback): what it gains over property
//! tests is volume and inputs that stay close to valid ones.
//!
//! A panic fails the test and saves the input under the system's temporary directory, named
//! in the failure, so that it can be added to the corpus once fixed.
//!
//! `EDDY_FUZZ_SECONDS` sets each target's budget (default 3 s, what CI runs); `EDDY_FUZZ_SEED`
//! replays a run.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

static PANICKED: Mutex<Option<String>> = Mutex::new(None);
/// Targets run one at a time: the panic hook is the process's, and so is the record of panics.
static RUNNING: Mutex<()> = Mutex::new(());

/// What one target's run did.
#[derive(Debug)]
pub struct Report {
    pub target: String,
    pub executions: u64,
    pub elapsed: Duration,
    pub seeds: usize,
}

/// The seed corpus of `target` in the repository.
pub fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target)
}

fn budget() -> Duration {
    let secs = std::env::var("EDDY_FUZZ_SECONDS")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(3.0);
    Duration::from_secs_f64(secs)
}

/// Fuzzes `check` with mutations of `target`'s corpus and `extra` seeds for the time budget.
/// Panics (failing the test) if `check` panics on any input.
pub fn run(target: &str, extra: Vec<Vec<u8>>, mut check: impl FnMut(&[u8])) -> Report {
    let mut seeds = extra;
    if let Ok(entries) = std::fs::read_dir(corpus_dir(target)) {
        let mut paths: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for p in paths {
            seeds.push(std::fs::read(&p).unwrap());
        }
    }
    if seeds.is_empty() {
        seeds.push(Vec::new());
    }
    let seed = std::env::var("EDDY_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    let _alone = RUNNING.lock().unwrap_or_else(|e| e.into_inner());
    let mut rng = Rng(seed | 1);
    let start = Instant::now();
    let budget = budget();
    let mut executions = 0u64;
    // The seeds as they are first, then mutations of them.
    let mut pending: Vec<Vec<u8>> = seeds.clone();
    // Every panic is recorded, from any thread: a target may run code on others (a server's
    // connection tasks), where a panic would otherwise pass unseen. Quiet too: the default
    // hook would print every caught panic's backtrace.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|info| {
        PANICKED
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(info.to_string());
    }));
    let failure = loop {
        let input = match pending.pop() {
            Some(i) => i,
            None => {
                if start.elapsed() >= budget {
                    break None;
                }
                mutate(&seeds, &mut rng)
            }
        };
        executions += 1;
        let _ = catch_unwind(AssertUnwindSafe(|| check(&input)));
        if let Some(what) = PANICKED.lock().unwrap_or_else(|e| e.into_inner()).take() {
            break Some((input, what));
        }
    };
    std::panic::set_hook(hook);
    if let Some((input, what)) = failure {
        let path = std::env::temp_dir().join(format!("eddy-fuzz-{target}-{seed}"));
        std::fs::write(&path, &input).unwrap();
        panic!(
            "fuzz target {target} panicked ({what}) on an input of {} bytes (or the one just \
             before, for a panic on another thread), saved to {} (EDDY_FUZZ_SEED={seed})",
            input.len(),
            path.display()
        );
    }
    let report = Report {
        target: target.to_string(),
        executions,
        elapsed: start.elapsed(),
        seeds: seeds.len(),
    };
    println!(
        "fuzz {}: {} executions in {:.1}s from {} seeds, no failure (EDDY_FUZZ_SEED={seed})",
        report.target,
        report.executions,
        report.elapsed.as_secs_f64(),
        report.seeds
    );
    report
}

/// xorshift64*: fast, and enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

const INTERESTING: [u64; 12] = [
    0,
    1,
    0x7f,
    0x80,
    0xff,
    0x7fff,
    0x8000,
    0xffff,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    u64::MAX,
];

/// One to eight stacked mutations of a random seed.
fn mutate(seeds: &[Vec<u8>], rng: &mut Rng) -> Vec<u8> {
    let mut data = seeds[rng.below(seeds.len())].clone();
    for _ in 0..1 + rng.below(8) {
        let len = data.len();
        match rng.below(9) {
            0 if len > 0 => {
                let i = rng.below(len);
                data[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                data[i] = rng.next() as u8;
            }
            2 if len > 0 => {
                // An interesting integer, of 1, 2, 4 or 8 bytes, in either byte order.
                let width = 1 << rng.below(4);
                let value = INTERESTING[rng.below(INTERESTING.len())];
                let bytes = if rng.below(2) == 0 {
                    value.to_le_bytes()
                } else {
                    value.to_be_bytes()
                };
                let at = rng.below(len);
                let end = (at + width).min(len);
                let from = if rng.below(2) == 0 { 0 } else { 8 - width };
                data[at..end].copy_from_slice(&bytes[from..from + (end - at)]);
            }
            3 if len > 0 => {
                let at = rng.below(len);
                let n = 1 + rng.below((len - at).min(16));
                data.drain(at..at + n);
            }
            4 => {
                let at = rng.below(len + 1);
                let n = 1 + rng.below(16);
                let fill: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                data.splice(at..at, fill);
            }
            5 if len > 0 => {
                // Repeat a range of the input somewhere in it.
                let from = rng.below(len);
                let n = 1 + rng.below((len - from).min(64));
                let chunk = data[from..from + n].to_vec();
                let at = rng.below(len + 1);
                data.splice(at..at, chunk);
            }
            6 => {
                // Splice the tail of another seed in.
                let other = &seeds[rng.below(seeds.len())];
                let cut = rng.below(len + 1);
                let from = rng.below(other.len() + 1);
                data.truncate(cut);
                data.extend_from_slice(&other[from..]);
            }
            7 if len > 0 => data.truncate(rng.below(len)),
            _ => {
                // An ASCII byte that means something to a parser.
                const SPECIAL: &[u8] = b"{}[]()\"',;:\\\n\r\t 0-.eE`";
                let at = rng.below(len + 1);
                data.insert(at, SPECIAL[rng.below(SPECIAL.len())]);
            }
        }
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_target_fails_with_its_input_saved() {
        std::env::set_var("EDDY_FUZZ_SECONDS", "2");
        let result = catch_unwind(|| {
            run("selftest", vec![b"hello".to_vec()], |input| {
                assert!(!input.contains(&b'!'), "found it");
            })
        });
        let message = result.unwrap_err();
        let message = message.downcast_ref::<String>().unwrap();
        assert!(
            message.contains("fuzz target selftest panicked ("),
            "{message}"
        );
        assert!(message.contains("found it"), "{message}");
    }

    #[test]
    fn mutations_stay_near_their_seeds() {
        let seeds = vec![b"SELECT * FROM t;".to_vec()];
        let mut rng = Rng(7);
        let changed = (0..1000)
            .filter(|_| mutate(&seeds, &mut rng) != seeds[0])
            .count();
        assert!(changed > 900);
    }
}

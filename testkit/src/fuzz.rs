//! A small mutation fuzzer for stable Rust: inputs from a seed corpus
//! (files in the repository) mutated by a seeded PRNG, each given to a
//! parser under `catch_unwind` and a watchdog. A panic or an input that
//! takes longer than the time limit fails the run; the input is written to
//! `target/fuzz-failures/` so that it can join the corpus once fixed.
//!
//! `FUZZ_ITERATIONS` (default: per target) and `FUZZ_SEED` (default: fixed,
//! so CI is repeatable) change a run; the seed is printed.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// splitmix64: a fast, seedable PRNG.
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }
}

/// Bytes that often matter to text parsers.
const INTERESTING: &[&[u8]] = &[
    b"\n",
    b"\r\n",
    b"\0",
    b"\"",
    b"'",
    b"=",
    b"[",
    b"]",
    b"[[",
    b"]]",
    b"{",
    b"}",
    b",",
    b":",
    b"#",
    b"\\",
    b"\\u",
    b"0x",
    b"-1",
    b"18446744073709551616",
    b"9999999999999999999999",
    b"1e999",
    b"nan",
    b"inf",
    b"true",
    b"\xff\xfe",
    b"\xc3",
    b"\xe2\x82",
    b"<",
    b">",
    b"</",
    b"&amp;",
    b"%00",
    b"%",
    b"@",
    b"//",
    b"..",
    b";",
    b" ",
    b"\t",
];

/// `input` with 1-4 random mutations; `dict` and `other` (another corpus
/// entry) supply material.
pub fn mutate(rng: &mut Rng, input: &[u8], dict: &[&[u8]], other: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(v.len() + 1);
        match rng.below(9) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 => v.insert(at, rng.next_u64() as u8),
            2 if !v.is_empty() => {
                let end = (at + 1 + rng.below(16)).min(v.len());
                v.drain(at.min(end)..end);
            }
            3 if !v.is_empty() => {
                let from = rng.below(v.len());
                let len = (1 + rng.below(64)).min(v.len() - from);
                let piece = v[from..from + len].to_vec();
                v.splice(at..at, piece);
            }
            4 => {
                let tokens: Vec<&[u8]> = INTERESTING.iter().chain(dict).copied().collect();
                let t = tokens[rng.below(tokens.len())];
                v.splice(at..at, t.iter().copied());
            }
            5 => v.truncate(at),
            6 if !other.is_empty() => {
                let from = rng.below(other.len());
                let len = (1 + rng.below(256)).min(other.len() - from);
                v.splice(at..at, other[from..from + len].iter().copied());
            }
            7 if !v.is_empty() => {
                // Replace a line by one of another entry (keeps structure).
                let lines: Vec<&[u8]> = other.split(|b| *b == b'\n').collect();
                let line = lines[rng.below(lines.len())];
                let start = v[..at]
                    .iter()
                    .rposition(|b| *b == b'\n')
                    .map_or(0, |p| p + 1);
                let end = v[at..]
                    .iter()
                    .position(|b| *b == b'\n')
                    .map_or(v.len(), |p| at + p);
                v.splice(start..end, line.iter().copied());
            }
            _ => {
                let i = rng.below(v.len() + 1);
                v.splice(i..i, std::iter::repeat_n(b'9', 1 + rng.below(40)));
            }
        }
    }
    v
}

/// The files of a corpus directory, sorted by name.
pub fn corpus(dir: &Path) -> Vec<Vec<u8>> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("the fuzz corpus {}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    names.sort();
    let files: Vec<Vec<u8>> = names.iter().map(|p| std::fs::read(p).unwrap()).collect();
    assert!(
        !files.is_empty(),
        "the fuzz corpus {} is empty",
        dir.display()
    );
    files
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.parse().ok()
}

/// What a target says of one input: `Err` for a wrong answer (e.g. an
/// error without a position); panics are caught by [`run`].
pub type Verdict = Result<(), String>;

/// Feed `target` the corpus itself and `iterations` mutants, each within
/// `limit`. Panics (in the test) naming the first input that panicked, hung
/// or got a wrong answer, with the seed that reproduces it.
pub fn run(
    name: &str,
    corpus: Vec<Vec<u8>>,
    dict: &'static [&'static [u8]],
    iterations: usize,
    limit: Duration,
    target: impl Fn(&[u8]) -> Verdict + Send + Sync + 'static,
) {
    let seed = env_u64("FUZZ_SEED").unwrap_or(0x5eed_0001);
    let iterations = env_u64("FUZZ_ITERATIONS").map_or(iterations, |n| n as usize);
    let current: Arc<Mutex<Vec<u8>>> = Arc::default();
    let (started, done) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let failure: Arc<Mutex<Option<String>>> = Arc::default();
    let worker = {
        let (current, started, done, failure) = (
            current.clone(),
            started.clone(),
            done.clone(),
            failure.clone(),
        );
        std::thread::spawn(move || {
            let mut rng = Rng::new(seed);
            for i in 0..corpus.len() + iterations {
                let input = match corpus.get(i) {
                    Some(c) => c.clone(),
                    None => {
                        let (a, b) = (rng.below(corpus.len()), rng.below(corpus.len()));
                        mutate(&mut rng, &corpus[a], dict, &corpus[b])
                    }
                };
                *current.lock().unwrap() = input.clone();
                started.store(i + 1, Ordering::SeqCst);
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| target(&input)));
                let bad = match r {
                    Ok(Ok(())) => None,
                    Ok(Err(why)) => Some(format!("wrong answer: {why}")),
                    Err(p) => Some(format!(
                        "panicked: {}",
                        p.downcast_ref::<String>()
                            .cloned()
                            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_default()
                    )),
                };
                if let Some(b) = bad {
                    *failure.lock().unwrap() = Some(b);
                    break;
                }
            }
            done.store(true, Ordering::SeqCst);
        })
    };
    let (mut seen, mut since) = (0, Instant::now());
    while !done.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(20));
        let now = started.load(Ordering::SeqCst);
        if now != seen {
            (seen, since) = (now, Instant::now());
        } else if since.elapsed() > limit {
            let input = current.lock().unwrap().clone();
            report(
                name,
                seed,
                seen,
                &input,
                &format!("took over {limit:?} (a hang?)"),
            );
        }
    }
    worker.join().ok();
    if let Some(why) = failure.lock().unwrap().clone() {
        let input = current.lock().unwrap().clone();
        report(name, seed, seen, &input, &why);
    }
    eprintln!("fuzz {name}: {seen} inputs (seed {seed:#x}), no panic, no hang");
}

fn report(name: &str, seed: u64, n: usize, input: &[u8], why: &str) -> ! {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/fuzz-failures");
    let _ = std::fs::create_dir_all(&dir);
    let file = dir.join(format!("{name}-{seed:x}-{n}"));
    let _ = std::fs::write(&file, input);
    panic!(
        "fuzz {name}: input {n} (FUZZ_SEED={seed}) {why}; the input is in {}:\n{:?}",
        file.display(),
        String::from_utf8_lossy(&input[..input.len().min(2000)])
    );
}

//! The fuzzing loop every target shares: proptest's runner with a budget, a seed
//! that is fixed unless asked otherwise, a watchdog for hangs, and mutation of
//! real inputs (the corpus) besides inputs made from nothing.
//!
//! Budget, from the environment:
//! - default: `cases` given by the target (a few hundred at most), a fixed seed, so
//!   `make test` is quick and the same on every run;
//! - `HBAD_FUZZ_CASES=n`: n cases per target run;
//! - `HBAD_FUZZ_SECONDS=s`: keep running each target for s seconds, with a new seed
//!   per batch (what `make fuzz` does);
//! - `HBAD_FUZZ_SEED=n` or `random`: the first seed (a failure prints its seed).

use std::fmt::Debug;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestError, TestRunner};

/// No single input may take this long: a parser that does is treated as hung. Far
/// above what any bounded input needs, even on a loaded two-core machine in debug.
const HANG_LIMIT: Duration = Duration::from_secs(20);

/// The case being run: when it started, and a copy of its input.
type Running = (Instant, Box<dyn Debug + Send>);

/// The fixed first seed of the short run.
const DEFAULT_SEED: u64 = 0x6862_6164_6675_7a7a;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.trim().parse().ok()
}

fn first_seed() -> u64 {
    match std::env::var("HBAD_FUZZ_SEED")
        .ok()
        .as_deref()
        .map(str::trim)
    {
        Some("random") => {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            t.as_nanos() as u64 ^ u64::from(std::process::id()).rotate_left(32)
        }
        Some(n) => n.parse().unwrap_or(DEFAULT_SEED),
        None if env_u64("HBAD_FUZZ_SECONDS").is_some() => {
            // A long run explores: every invocation starts somewhere new.
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos() as u64
        }
        None => DEFAULT_SEED,
    }
}

/// Runs `check` on inputs from `strategy`; panics with the smallest failing input,
/// the seed that found it, and how to run it again.
///
/// `check` fails a case by panicking or by returning an error (`prop_assert!`). A
/// case that runs past [`HANG_LIMIT`] fails the target with that input.
pub fn fuzz<S, F>(target: &str, cases: u32, strategy: S, check: F)
where
    S: Strategy + Send + 'static,
    S::Value: Clone + Debug + Send + 'static,
    F: Fn(S::Value) -> Result<(), TestCaseError> + Send + Sync + 'static,
{
    let cases = env_u64("HBAD_FUZZ_CASES").map_or(cases, |n| n.clamp(1, u32::MAX.into()) as u32);
    let seconds = env_u64("HBAD_FUZZ_SECONDS");
    let mut seed = first_seed();

    let current: Arc<Mutex<Option<Running>>> = Arc::new(Mutex::new(None));
    let executions = Arc::new(AtomicU64::new(0));
    let finished = Arc::new(AtomicBool::new(false));
    let check = Arc::new(check);

    let worker = {
        let (current, executions, finished) =
            (current.clone(), executions.clone(), finished.clone());
        let target = target.to_string();
        std::thread::Builder::new()
            .name(format!("fuzz-{target}"))
            .spawn(move || {
                let started = Instant::now();
                let mut batches = 0u64;
                let outcome = loop {
                    let config = Config {
                        cases,
                        rng_seed: RngSeed::Fixed(seed),
                        failure_persistence: None,
                        max_shrink_iters: 2048,
                        ..Config::default()
                    };
                    let mut runner = TestRunner::new(config);
                    let (cur, execs, check) = (current.clone(), executions.clone(), check.clone());
                    let result = runner.run(&strategy, move |input| {
                        // A copy for the watchdog, formatted only if the case hangs.
                        *cur.lock().unwrap_or_else(|p| p.into_inner()) =
                            Some((Instant::now(), Box::new(input.clone())));
                        let r = check(input);
                        execs.fetch_add(1, Ordering::Relaxed);
                        *cur.lock().unwrap_or_else(|p| p.into_inner()) = None;
                        r
                    });
                    batches += 1;
                    match result {
                        Ok(()) => {}
                        Err(e) => break Err((seed, e)),
                    }
                    match seconds {
                        Some(s) if started.elapsed() < Duration::from_secs(s) => {
                            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                        }
                        _ => break Ok(batches),
                    }
                };
                finished.store(true, Ordering::SeqCst);
                outcome.map_err(|(seed, e)| match e {
                    TestError::Fail(why, input) => format!(
                        "fuzz target `{target}` failed: {why}\n  smallest input: {input:?}\n  \
                         again: HBAD_FUZZ_SEED={seed} cargo test --test fuzz {target}"
                    ),
                    TestError::Abort(why) => {
                        format!("fuzz target `{target}` aborted: {why} (seed {seed})")
                    }
                })
            })
            .expect("fuzz worker thread")
    };

    let started = Instant::now();
    while !finished.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(50));
        let hung = {
            let slot = current.lock().unwrap_or_else(|p| p.into_inner());
            slot.as_ref()
                .filter(|(t, _)| t.elapsed() > HANG_LIMIT)
                .map(|(_, input)| format!("{input:?}"))
        };
        if let Some(input) = hung {
            // The worker stays stuck; the test fails with the input that hung it.
            panic!(
                "fuzz target `{target}` hung: one input ran longer than {HANG_LIMIT:?} \
                 (first seed {seed}, after {} cases)\n  input: {input}",
                executions.load(Ordering::Relaxed)
            );
        }
    }
    let outcome = worker
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p));
    let n = executions.load(Ordering::Relaxed);
    match outcome {
        Ok(batches) => println!(
            "fuzz {target}: {n} executions in {:.1} s ({batches} batch(es) of {cases}, first seed {seed}), no failure",
            started.elapsed().as_secs_f64()
        ),
        Err(report) => panic!("{report}\n  ({n} executions)"),
    }
}

/// Bytes that print as a byte string (`b"add@/x\\0..."`), so a failing input can
/// be read and pasted into a test.
#[derive(Clone, PartialEq, Eq)]
pub struct Bytes(pub Vec<u8>);

impl Debug for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "b\"{}\"", self.0.escape_ascii())
    }
}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl AsRef<[u8]> for Bytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// One change to a seed input.
#[derive(Clone, Debug)]
pub enum Edit {
    /// Replace the byte at a place.
    Set(Index, u8),
    /// Insert bytes at a place.
    Insert(Index, Vec<u8>),
    /// Insert one of the target's tokens at a place.
    Token(Index, Index),
    /// Remove up to n bytes from a place.
    Remove(Index, usize),
    /// Repeat a stretch of up to n bytes where it is.
    Repeat(Index, usize, u8),
    /// Cut the input at a place.
    Cut(Index),
}

fn edit_strategy() -> impl Strategy<Value = Edit> {
    prop_oneof![
        3 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Edit::Set(i, b)),
        2 => (any::<Index>(), proptest::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(i, b)| Edit::Insert(i, b)),
        4 => (any::<Index>(), any::<Index>()).prop_map(|(i, t)| Edit::Token(i, t)),
        2 => (any::<Index>(), 1usize..64).prop_map(|(i, n)| Edit::Remove(i, n)),
        1 => (any::<Index>(), 1usize..32, 1u8..16).prop_map(|(i, n, k)| Edit::Repeat(i, n, k)),
        1 => any::<Index>().prop_map(Edit::Cut),
    ]
}

/// Applies edits in order; never grows past `max` bytes.
pub fn apply(seed: &[u8], edits: &[Edit], tokens: &[&[u8]], max: usize) -> Vec<u8> {
    let mut v = seed.to_vec();
    for e in edits {
        // Places are taken over len + 1 so the end is a place too.
        let at = |i: &Index, v: &Vec<u8>| i.index(v.len() + 1);
        match e {
            Edit::Set(i, b) if !v.is_empty() => {
                let p = i.index(v.len());
                v[p] = *b;
            }
            Edit::Set(..) => {}
            Edit::Insert(i, bytes) => {
                let p = at(i, &v);
                v.splice(p..p, bytes.iter().copied());
            }
            Edit::Token(i, t) if !tokens.is_empty() => {
                let p = at(i, &v);
                v.splice(p..p, tokens[t.index(tokens.len())].iter().copied());
            }
            Edit::Token(..) => {}
            Edit::Remove(i, n) => {
                let p = at(i, &v);
                let end = (p + n).min(v.len());
                v.drain(p..end);
            }
            Edit::Repeat(i, n, k) => {
                let p = at(i, &v);
                let end = (p + n).min(v.len());
                let chunk = v[p..end].to_vec();
                for _ in 0..*k {
                    v.splice(end..end, chunk.iter().copied());
                }
            }
            Edit::Cut(i) => {
                let p = at(i, &v);
                v.truncate(p);
            }
        }
        v.truncate(max);
    }
    v
}

/// Inputs made by editing one of `seeds` with up to 8 edits drawn from `tokens` and
/// random bytes, capped at `max` bytes.
pub fn mutated(
    seeds: Vec<Vec<u8>>,
    tokens: &'static [&'static [u8]],
    max: usize,
) -> impl Strategy<Value = Bytes> {
    assert!(
        !seeds.is_empty(),
        "a mutation target needs at least one seed"
    );
    let seeds = Arc::new(seeds);
    (
        any::<Index>(),
        proptest::collection::vec(edit_strategy(), 0..8),
    )
        .prop_map(move |(pick, edits)| {
            let seed = &seeds[pick.index(seeds.len())];
            Bytes(apply(seed, &edits, tokens, max))
        })
}

/// Random bytes, mostly printable ASCII and the target's tokens (so parsers get past
/// their first check), up to `max` bytes.
pub fn noise(tokens: &'static [&'static [u8]], max: usize) -> impl Strategy<Value = Bytes> {
    let piece = prop_oneof![
        3 => proptest::collection::vec(0x20u8..0x7f, 1..12),
        2 => proptest::sample::select(tokens.to_vec()).prop_map(|t| t.to_vec()),
        1 => proptest::collection::vec(any::<u8>(), 1..6),
    ];
    proptest::collection::vec(piece, 0..48).prop_map(move |parts| {
        let mut v = parts.concat();
        v.truncate(max);
        Bytes(v)
    })
}

/// The bytes as text, lossily: for parsers that take `&str`.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

//! Checking a large policy: 50,000 `[[vhba]]` tables, as `hbad check` reads them.
//!
//! `cargo bench --bench policy` prints the time to parse and validate one text of
//! 50,000 vHBAs (`Policy::from_str`: the pure path, every value turned into a
//! file:line:column through one line index per file), and the time to load as many
//! of the same vHBAs as the loader reads (every policy file together under its 4 MiB
//! limit: about 36,000) from drop-ins under the 1 MiB per-file limit, through the
//! loader the agent uses (`Loader::load`: discovery, file checks, reading,
//! validation). Before the
//! line index, the first took tens of seconds, growing with the square of the file.
//! Each figure is given as wall time and as the CPU time of the process (the check
//! is single-threaded, so on a shared machine CPU time is the cost and wall time
//! includes waiting for a core). `HBAD_BENCH_RUNS=n` sets the runs (default 5).

mod common;

use std::path::Path;
use std::time::Instant;

use hbad::policy::{limits, Environment, Loader, Perms, Policy, SearchPaths};

use common::{runs, show_spread};

const VHBAS: usize = 50_000;

/// CPU seconds this process has used.
fn cpu_secs() -> f64 {
    common::cpu_time(libc::CLOCK_PROCESS_CPUTIME_ID).as_secs_f64()
}

/// Runs `f` `runs` times; prints wall and CPU seconds.
fn measure(what: &str, runs: usize, mut f: impl FnMut()) {
    let (mut wall, mut cpu) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let (t, c) = (Instant::now(), cpu_secs());
        f();
        wall.push(t.elapsed().as_secs_f64());
        cpu.push(cpu_secs() - c);
    }
    println!(
        "{what}: wall {} s, CPU {} s over {runs} runs",
        show_spread(&wall, 3),
        show_spread(&cpu, 3)
    );
}

/// One vHBA table, with every WWN spelled out so that derivation is not measured.
fn table(i: usize) -> String {
    format!(
        "[[vhba]]\nname = \"v{i:05}\"\nparent = \"auto\"\nwwpn = \"0x5001a4a{:09x}\"\nwwnn = \"0x5001a4b{:09x}\"\nlink_wait = \"90s\"\n\n",
        i, i
    )
}

fn main() {
    let runs = runs(5);
    let env = Environment::fixed("0123456789abcdef0123456789abcdef");
    let mut text = String::new();
    for i in 0..VHBAS {
        text.push_str(&table(i));
    }

    let what = format!(
        "check {VHBAS} vHBAs in one text ({} KiB)",
        text.len() / 1024
    );
    measure(&what, runs, || {
        let policy = Policy::from_str(Path::new("bench.toml"), &text, &env).unwrap();
        assert_eq!(policy.vhbas.len(), VHBAS);
    });

    // As many of the same vHBAs as the loader reads (every policy file together
    // under `MAX_TOTAL_BYTES`), as drop-ins of < 1 MiB each, read through the
    // agent's loader.
    let root = tempfile::tempdir().unwrap();
    let search = SearchPaths::under(root.path());
    let dropins = &search.dropin_dirs[2];
    std::fs::create_dir_all(dropins).unwrap();
    // A seed in its own drop-in keeps /etc/machine-id out of the measurement's result.
    let seed = "[wwn]\nseed = \"bench\"\n";
    std::fs::write(dropins.join("000-seed.toml"), seed).unwrap();
    let budget = limits::MAX_TOTAL_BYTES as usize - seed.len();
    let (mut file, mut files, mut total, mut loaded) = (String::new(), 1, 0, 0);
    for t in (0..VHBAS).map(table) {
        if total + t.len() > budget {
            break;
        }
        if file.len() + t.len() > limits::MAX_FILE_BYTES as usize {
            std::fs::write(dropins.join(format!("{files:03}.toml")), &file).unwrap();
            files += 1;
            file.clear();
        }
        file.push_str(&t);
        total += t.len();
        loaded += 1;
    }
    std::fs::write(dropins.join(format!("{files:03}.toml")), &file).unwrap();
    let loader = Loader {
        policy: None,
        search,
        perms: Perms::Strict,
    };
    let what = format!(
        "load {loaded} vHBAs ({} KiB) from {} drop-ins (Loader::load)",
        total / 1024,
        files + 1
    );
    measure(&what, runs, || {
        let policy = loader.load().unwrap();
        assert_eq!(policy.vhbas.len(), loaded);
    });
}

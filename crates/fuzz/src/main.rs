//! `nabla-fuzz run TARGET|all --seconds N`: mutation fuzzing of one reader
//! (or each in turn) for a given time.
//!
//! Each target runs in a worker process so that what cannot be caught in
//! process — an abort on a failed allocation, a stack overflow, a hang —
//! still names its input: the worker writes every input to
//! `OUT/TARGET.current` before running it, and the supervisor keeps that
//! file as a finding when the worker dies or overruns. In the worker, a
//! panic, an input that runs over `--slow-ms` or allocates over
//! [`MEMORY_BOUND`] (measured by a counting allocator) is a finding, saved
//! under `OUT/findings/`. The exit code is 1 when anything was found.

use std::alloc::{GlobalAlloc, Layout, System};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use nabla_fuzz::mutate::{mutate, Rng};
use nabla_fuzz::{seeds, Target};
use serde::{Deserialize, Serialize};

/// An input whose run allocates more than this at once is a finding: image
/// decoding may take about 320 MB at its 40-megapixel limit
/// (`nabla_vision::decode::MAX_PIXELS`), every other reader far less.
const MEMORY_BOUND: usize = 512 << 20;
/// Past this the allocator refuses, so a runaway allocation aborts the
/// worker (and the supervisor names the input) instead of taking the machine.
const HARD_LIMIT: usize = 2 << 30;
/// Inputs are cut to this size; the readers' seeds are a few kilobytes.
const MAX_INPUT: usize = 1 << 20;
/// Accepted inputs kept to mutate further, beside the seeds.
const CORPUS: usize = 256;

/// The system allocator, counting the bytes in use and their peak.
struct Counting;

static IN_USE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let now = IN_USE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        if now > HARD_LIMIT {
            IN_USE.fetch_sub(layout.size(), Ordering::Relaxed);
            return std::ptr::null_mut();
        }
        PEAK.fetch_max(now, Ordering::Relaxed);
        // SAFETY: the caller's layout goes to the system allocator unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        IN_USE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[derive(Parser)]
#[command(
    name = "nabla-fuzz",
    about = "Mutation fuzzing of nabla's readers of untrusted bytes"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Fuzz one target (graph, csv, image, pickle, pth, zip, safetensors) or `all` in turn.
    #[command(
        after_help = "Examples:\n  cargo run --release -p nabla-fuzz -- run all --seconds 20\n  cargo run --release -p nabla-fuzz -- run pickle --seconds 600 --json"
    )]
    Run(RunArgs),
    /// Run each file through a target once, as a regression check.
    Replay { target: String, files: Vec<PathBuf> },
    #[command(hide = true)]
    Worker(RunArgs),
}

#[derive(clap::Args, Clone)]
struct RunArgs {
    target: String,
    /// How long each target runs.
    #[arg(long, default_value_t = 20.0)]
    seconds: f64,
    /// Where the current input, the statistics and the findings go.
    #[arg(long, default_value = "target/fuzz")]
    out: PathBuf,
    /// The mutations' seed: the same seed tries the same inputs.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// An input that runs longer than this is a finding (1 s for a release
    /// build; an unoptimised one needs more).
    #[arg(long, default_value_t = 1000)]
    slow_ms: u64,
    /// Print one JSON document of every target's statistics.
    #[arg(long)]
    json: bool,
}

/// What one target's run did.
#[derive(Serialize, Deserialize, Debug, Default)]
struct Stats {
    target: String,
    seconds: f64,
    executions: u64,
    per_second: f64,
    seeds: usize,
    /// Inputs the reader accepted (kept to mutate further).
    accepted: u64,
    panics: u64,
    slow: u64,
    over_memory: u64,
    slowest_ms: f64,
    /// The most any one input had allocated at once.
    peak_bytes: usize,
    /// Saved inputs (panics, slow, over memory, a crash or a hang).
    findings: Vec<String>,
    /// How the worker ended when it did not finish (a crash or a hang).
    crashed: Option<String>,
}

fn target_named(name: &str) -> Result<Target, String> {
    Target::ALL
        .into_iter()
        .find(|t| t.name() == name)
        .ok_or_else(|| {
            let names: Vec<&str> = Target::ALL.iter().map(|t| t.name()).collect();
            format!(
                "unknown target `{name}`; expected all or one of {}",
                names.join(", ")
            )
        })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Run(a) => supervise(&a),
        Cmd::Worker(a) => target_named(&a.target)
            .and_then(|t| work(t, &a))
            .map(|()| true),
        Cmd::Replay { target, files } => target_named(&target).map(|t| replay(t, &files)),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// Runs each asked-for target in its worker; true when nothing was found.
fn supervise(a: &RunArgs) -> Result<bool, String> {
    let targets = if a.target == "all" {
        Target::ALL.to_vec()
    } else {
        vec![target_named(&a.target)?]
    };
    let findings = a.out.join("findings");
    std::fs::create_dir_all(&findings).map_err(|e| format!("{}: {e}", findings.display()))?;
    let exe = std::env::current_exe().map_err(|e| format!("cannot find nabla-fuzz: {e}"))?;
    let mut all = Vec::new();
    for target in targets {
        let stats = supervise_one(&exe, target, a)?;
        if !a.json {
            println!("{}", summary(&stats, a.slow_ms));
        }
        all.push(stats);
    }
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&all).expect("plain data")
        );
    }
    Ok(all.iter().all(|s| s.findings.is_empty()))
}

fn supervise_one(exe: &Path, target: Target, a: &RunArgs) -> Result<Stats, String> {
    let name = target.name();
    let stats_file = a.out.join(format!("{name}.stats.json"));
    let _ = std::fs::remove_file(&stats_file);
    let mut child = Command::new(exe)
        .args([
            "worker",
            name,
            "--seconds",
            &a.seconds.to_string(),
            "--seed",
            &a.seed.to_string(),
        ])
        .arg("--out")
        .arg(&a.out)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start the worker: {e}"))?;
    // Time for the seeds and a slow input past the budget, then it hangs.
    let slow = Duration::from_millis(a.slow_ms);
    let limit = Duration::from_secs_f64(a.seconds) + slow * 30;
    let started = Instant::now();
    let status = loop {
        match child.try_wait().map_err(|e| e.to_string())? {
            Some(status) => break Some(status),
            None if started.elapsed() > limit => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            None => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        use std::io::Read;
        let _ = pipe.read_to_string(&mut stderr);
    }
    let ended = match status {
        None => Some(format!(
            "no answer after {:.0} s: the input hangs",
            limit.as_secs_f64()
        )),
        Some(s) if s.success() => None,
        Some(s) => Some(format!(
            "the worker died ({s}): {}",
            stderr
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("no message")
        )),
    };
    let mut stats: Stats = std::fs::read(&stats_file)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_else(|| Stats {
            target: name.into(),
            ..Stats::default()
        });
    if let Some(how) = ended {
        let kept = a
            .out
            .join("findings")
            .join(format!("{name}-crash-seed{}.bin", a.seed));
        let current = a.out.join(format!("{name}.current"));
        if std::fs::copy(&current, &kept).is_ok() {
            stats.findings.push(kept.display().to_string());
        }
        stats.crashed = Some(how);
    }
    Ok(stats)
}

fn summary(s: &Stats, slow_ms: u64) -> String {
    let mut line = format!(
        "{}: {} inputs in {:.1} s ({:.0}/s; {} seeds, {} accepted), {} panics, {} over {} ms, {} over {} MB; slowest {:.1} ms, peak {:.1} MB",
        s.target,
        s.executions,
        s.seconds,
        s.per_second,
        s.seeds,
        s.accepted,
        s.panics,
        s.slow,
        slow_ms,
        s.over_memory,
        MEMORY_BOUND >> 20,
        s.slowest_ms,
        s.peak_bytes as f64 / 1e6
    );
    if let Some(how) = &s.crashed {
        line += &format!("\n  CRASH: {how}");
    }
    for f in &s.findings {
        line += &format!("\n  finding: {f}");
    }
    line
}

/// The last panic's message, kept by the quiet panic hook.
static PANIC: Mutex<String> = Mutex::new(String::new());

/// Runs `input`, returning whether the reader accepted it, how long it
/// took, what it allocated at most, and its panic message if it panicked.
fn execute(target: Target, input: &[u8]) -> (bool, Duration, usize, Option<String>) {
    let base = IN_USE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let started = Instant::now();
    let outcome = std::panic::catch_unwind(|| target.run(input));
    let elapsed = started.elapsed();
    let peak = PEAK.load(Ordering::Relaxed).saturating_sub(base);
    match outcome {
        Ok(accepted) => (accepted, elapsed, peak, None),
        Err(_) => {
            let message = PANIC.lock().map(|m| m.clone()).unwrap_or_default();
            (false, elapsed, peak, Some(message))
        }
    }
}

fn quiet_panics() {
    std::panic::set_hook(Box::new(|info| {
        if let Ok(mut m) = PANIC.lock() {
            *m = info.to_string();
        }
    }));
}

fn work(target: Target, a: &RunArgs) -> Result<(), String> {
    quiet_panics();
    let name = target.name();
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |e: std::io::Error| format!("{path}: {e}")
    };
    let current_path = a.out.join(format!("{name}.current"));
    let current = std::fs::File::create(&current_path).map_err(io(&current_path))?;
    let seeds = seeds(target);
    let tokens = target.tokens();
    let mut corpus: Vec<Vec<u8>> = Vec::new();
    let mut rng = Rng::new(a.seed);
    let mut stats = Stats {
        target: name.into(),
        seeds: seeds.len(),
        ..Stats::default()
    };
    let started = Instant::now();
    let budget = Duration::from_secs_f64(a.seconds);
    let mut slowest = Duration::ZERO;
    let mut n: u64 = 0;
    while n < seeds.len() as u64 || started.elapsed() < budget {
        let input = if (n as usize) < seeds.len() {
            seeds[n as usize].clone()
        } else {
            let pick = |rng: &mut Rng| {
                let i = rng.below(seeds.len() + corpus.len());
                if i < seeds.len() {
                    &seeds[i]
                } else {
                    &corpus[i - seeds.len()]
                }
            };
            let base = pick(&mut rng).clone();
            let other = pick(&mut rng).clone();
            let mut m = mutate(&base, &other, tokens, &mut rng);
            m.truncate(MAX_INPUT);
            m
        };
        current
            .set_len(0)
            .and_then(|()| current.write_all_at(&input, 0))
            .map_err(io(&current_path))?;
        let (accepted, elapsed, peak, panic) = execute(target, &input);
        n += 1;
        slowest = slowest.max(elapsed);
        stats.peak_bytes = stats.peak_bytes.max(peak);
        let mut kinds = Vec::new();
        if let Some(message) = panic {
            stats.panics += 1;
            kinds.push(("panic", message));
        }
        if elapsed > Duration::from_millis(a.slow_ms) {
            stats.slow += 1;
            kinds.push(("slow", format!("{:.2} s", elapsed.as_secs_f64())));
        }
        if peak > MEMORY_BOUND {
            stats.over_memory += 1;
            kinds.push(("memory", format!("{} MB", peak >> 20)));
        }
        for (kind, detail) in kinds {
            let file = a
                .out
                .join("findings")
                .join(format!("{name}-{kind}-{n}.bin"));
            std::fs::write(&file, &input).map_err(io(&file))?;
            std::fs::write(file.with_extension("txt"), &detail).map_err(io(&file))?;
            stats.findings.push(file.display().to_string());
        }
        if accepted {
            stats.accepted += 1;
            if corpus.len() < CORPUS {
                corpus.push(input);
            } else {
                let i = rng.below(CORPUS);
                corpus[i] = input;
            }
        }
    }
    stats.executions = n;
    stats.seconds = started.elapsed().as_secs_f64();
    stats.per_second = n as f64 / stats.seconds;
    stats.slowest_ms = slowest.as_secs_f64() * 1e3;
    let file = a.out.join(format!("{name}.stats.json"));
    std::fs::write(
        &file,
        serde_json::to_vec_pretty(&stats).expect("plain data"),
    )
    .map_err(io(&file))
}

/// Each file once through `target`; true when none panicked.
fn replay(target: Target, files: &[PathBuf]) -> bool {
    quiet_panics();
    let mut clean = true;
    for f in files {
        let Ok(input) = std::fs::read(f) else {
            eprintln!("{}: cannot read", f.display());
            clean = false;
            continue;
        };
        let (accepted, elapsed, peak, panic) = execute(target, &input);
        match panic {
            Some(message) => {
                clean = false;
                println!("{}: PANIC {message}", f.display());
            }
            None => println!(
                "{}: {} in {:.1} ms, {:.1} MB",
                f.display(),
                if accepted { "accepted" } else { "refused" },
                elapsed.as_secs_f64() * 1e3,
                peak as f64 / 1e6
            ),
        }
    }
    clean
}

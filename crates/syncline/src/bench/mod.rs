//! `syncline bench`: figures people read, not timed tests (the machines are shared). Each
//! module measures one thing end to end with the real parts:
//! - `members`: the members pipeline over generated rows, into SQLite or a HubSpot sandbox;
//! - `intake`: durable webhook intake;
//! - `flow`: the lead → ManyChat flow through intake, inbox and workers;
//! - `timing`: that refusing a forged signature takes the same time however much of it matches;
//! - `warehouse`: HubSpot → warehouse ingestion from a sandbox without limits;
//! - `shared_budget`: what a rate budget shared through PostgreSQL costs per call;
//! - `sql`: a SQL → PostgreSQL copy against a bare `COPY` of the same rows.

mod bare;
mod console;
mod flow;
mod intake;
mod members;
mod quickbooks;
mod shared_budget;
mod sql;
mod stripe;
mod timing;
mod warehouse;

use crate::cli::BenchArgs;
use crate::config;
use crate::exit::{CliError, CliResult};
use crate::pipeline;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;
use syncline_core::runner::{Counts, RunMode, Scope};
use syncline_core::{Input, Progress, RunParts, RunReport, execute};
use syncline_store::Store;

pub async fn run(args: BenchArgs) -> CliResult {
    let temp;
    let dir = match &args.dir {
        Some(dir) => dir.clone(),
        None => {
            temp = tempfile::tempdir().map_err(CliError::failed)?;
            temp.path().to_owned()
        }
    };
    std::fs::create_dir_all(&dir).map_err(CliError::failed)?;
    if args.timing {
        timing::run()
    } else if args.intake {
        intake::run(&dir).await
    } else if args.flow {
        flow::run(&dir).await
    } else if args.warehouse {
        warehouse::run(&args, &dir).await
    } else if args.stripe {
        stripe::run(&args, &dir).await
    } else if args.quickbooks {
        quickbooks::run(&args, &dir).await
    } else if args.console {
        console::run(&args, &dir).await
    } else if args.shared_budget {
        shared_budget::run(&args).await
    } else if args.sql {
        sql::run(&args, &dir).await
    } else {
        members::run(&args, &dir).await
    }
}

/// The value at or above which a share `p` of `sorted` lies (nearest rank; `p` 1.0 is the max).
fn percentile<T: Copy>(sorted: &[T], p: f64) -> T {
    let at = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[at]
}

/// Samples memory as the run goes.
struct MemoryProbe {
    started: Instant,
    next_mark: u64,
    marks: Vec<(u64, u64, f64)>,
}

impl Progress for MemoryProbe {
    fn update(&mut self, total: &Counts) {
        if total.read >= self.next_mark {
            self.marks.push((total.read, rss_kib("VmRSS"), self.started.elapsed().as_secs_f64()));
            self.next_mark = self.next_mark.saturating_mul(if self.next_mark < 100_000 { 10 } else { 2 });
        }
    }
}

/// How long each of the runner's stages was busy (they overlap, so the sum exceeds the run).
/// A read bench's figures: records, time, throughput, each process's CPU time (syncline's, and
/// the sandbox's where there is one), resident memory as the run went and at its peak, and each
/// stage's busy time.
fn print_read_figures(report: &RunReport, took: f64, cpu: (f64, Option<f64>), probe: &MemoryProbe) {
    let counts = &report.counts;
    println!("records read     {}", counts.read);
    println!("written          {}", counts.created + counts.updated);
    println!("elapsed          {took:.2} s");
    println!("throughput       {:.0} records/s", counts.read as f64 / took);
    let per_1k = |seconds: f64| seconds * 1000.0 / counts.read.max(1) as f64 * 1000.0;
    let sandbox = cpu.1.map(|sandbox| format!(" · sandbox {sandbox:.2} s ({:.1} ms per 1,000)", per_1k(sandbox))).unwrap_or_default();
    println!("cpu              syncline {:.2} s ({:.1} ms per 1,000 records){sandbox}", cpu.0, per_1k(cpu.0));
    for (read, rss, at) in &probe.marks {
        println!("rss at {read:>9} rows  {:>6.1} MiB  ({at:.1} s)", *rss as f64 / 1024.0);
    }
    println!("peak rss         {:.1} MiB", rss_kib("VmHWM") as f64 / 1024.0);
    print_stage_times(&report.timings);
}

fn print_stage_times(t: &syncline_core::runner::Timings) {
    println!(
        "stage busy time  read {:.1} s · transform {:.1} s · write {:.1} s · commit {:.1} s (stages overlap)",
        t.read.as_secs_f64(),
        t.transform.as_secs_f64(),
        t.write.as_secs_f64(),
        t.commit.as_secs_f64()
    );
}

/// A field of /proc/self/status in KiB (0 where unavailable).
fn rss_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with(field)).and_then(|l| l.split_whitespace().nth(1)).and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

/// CPU time (user and system) process `pid` has used, in seconds (`/proc/<pid>/stat`, in the
/// kernel's clock ticks of 1/100 s): on a shared machine the steadier figure beside elapsed time.
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // the fields after the command's name, which is in parentheses and may hold spaces
    let fields: Vec<&str> = stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|n| n.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are the 14th and 15th fields; `fields` starts at the 3rd
    (ticks(11) + ticks(12)) as f64 / 100.0
}

/// One full run of the config's pipeline `name`, as `syncline run --full` makes it.
async fn run_full(config: &config::Config, name: &str, dir: &Path, probe: &mut MemoryProbe) -> Result<RunReport, CliError> {
    let p = config.pipeline(name).expect("the bench's config defines its pipeline");
    let store = Store::connect(&config.state.url).await.map_err(CliError::failed)?;
    let transforms = pipeline::transforms(p, dir)?;
    let mut source = pipeline::source(p, dir, None).await?;
    let sink = pipeline::sink(p, dir, p.batch_size).await?;
    let target = sink.identity().await.map_err(CliError::failed)?;
    let mut sink = sink;
    sink.declare(&source.fields().await.map_err(CliError::failed)?);
    let scope = Arc::new(Scope { pipeline: name.into(), source: source.identity().await.map_err(CliError::failed)?, target });
    let run_id = uuid::Uuid::now_v7().to_string();
    store.start_run(&run_id, name, RunMode::Full.name()).await.map_err(CliError::failed)?;
    let options = pipeline::run_options(p, run_id, scope, RunMode::Full, p.batch_size, Default::default());
    let parts = RunParts { options, transform: Arc::new(transforms), sink, input: Input::Source { source: &mut source, start: None } };
    let report = execute(parts, &store, probe, None).await.map_err(CliError::failed)?;
    match report.error {
        Some(e) => Err(CliError::failed(e)),
        None => Ok(report),
    }
}

/// `syncline sandbox` as a child process (so the figures measure syncline alone), killed on drop.
struct SandboxProcess {
    child: std::process::Child,
    url: String,
}

impl Drop for SandboxProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_sandbox(args: &[&str]) -> Result<SandboxProcess, CliError> {
    use std::io::BufRead;
    let exe = std::env::current_exe().map_err(CliError::failed)?;
    let mut child = std::process::Command::new(exe)
        .args(["sandbox", "--port", "0"])
        .args(args)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| CliError::failed(format!("cannot start the sandbox: {e}")))?;
    let stdout = child.stdout.take().expect("piped");
    let mut banner = String::new();
    std::io::BufReader::new(stdout).read_line(&mut banner).map_err(CliError::failed)?;
    let url = banner.trim().strip_prefix("sandbox listening on ").map(str::to_owned);
    let process = SandboxProcess { child, url: url.unwrap_or_default() };
    if process.url.is_empty() {
        return Err(CliError::failed(format!("the sandbox did not start: {banner:?}")));
    }
    Ok(process)
}

/// Calls per 10-second window as the sandbox counted them, and how full the full windows were.
async fn print_budget_use(url: &str, budget: u32) -> Result<(), CliError> {
    let fetch = async { reqwest::get(format!("{url}/__sandbox/budget")).await?.json::<serde_json::Value>().await };
    let use_: serde_json::Value = fetch.await.map_err(|e| CliError::failed(format!("reading the sandbox's budget use: {e}")))?;
    for (call, statuses) in use_["calls"].as_object().into_iter().flatten() {
        let statuses: Vec<String> = statuses.as_object().into_iter().flatten().map(|(s, n)| format!("{n} × {s}")).collect();
        println!("calls            {call}: {}", statuses.join(", "));
    }
    let windows: Vec<u64> = use_["windows"].as_array().into_iter().flatten().filter_map(|w| w["calls"].as_u64()).collect();
    let listed: Vec<String> = windows.iter().map(u64::to_string).collect();
    println!("calls per 10 s   {} (budget {budget})", listed.join(" "));
    // the last window is cut short by the end of the run
    let full = &windows[..windows.len().saturating_sub(1)];
    if let (Some(least), Some(most)) = (full.iter().min(), full.iter().max()) {
        println!(
            "full windows     {} · least {least} ({:.1} % of the budget) · most {most} · most in any rolling 10 s {}",
            full.len(),
            *least as f64 * 100.0 / f64::from(budget),
            use_["max_rolling"]
        );
    }
    Ok(())
}

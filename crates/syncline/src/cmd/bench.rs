//! `syncline bench`: the members pipeline (every member rule) from SQLite to SQLite over
//! generated rows, reporting records/s and resident memory. A command, not a timed test: the
//! machines are shared, so figures are read by people, not asserted.

use crate::cli::BenchArgs;
use crate::config;
use crate::exit::{CliError, CliResult, Exit};
use crate::pipeline;
use std::time::{Duration, Instant};
use syncline_core::Progress;
use syncline_core::runner::{Counts, RunMode, RunOptions, Runner};
use syncline_store::Store;

/// The members example config, shipped in the binary so the bench needs nothing else.
const MEMBERS_YAML: &str = include_str!("../../../../examples/members.yaml");
const MEMBER_SCHEMA: &str = include_str!("../../../../examples/member.schema.json");

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

/// A field of /proc/self/status in KiB (0 where unavailable).
fn rss_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with(field)).and_then(|l| l.split_whitespace().nth(1)).and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

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
    for name in ["members.db", "members-warehouse.db", "members-state.db"] {
        let _ = std::fs::remove_file(dir.join(name));
    }
    std::fs::write(dir.join("member.schema.json"), MEMBER_SCHEMA).map_err(CliError::failed)?;
    eprintln!("generating {} member rows in {} …", args.rows, dir.display());
    let generated = Instant::now();
    super::example::generate(&dir.join("members.db"), args.rows, 0.05, 7).await.map_err(CliError::failed)?;
    eprintln!(
        "generated in {:.1}s; running the members pipeline (release builds only give meaningful figures)",
        generated.elapsed().as_secs_f64()
    );

    let env = |_: &str| None;
    let config = config::parse("members.yaml", MEMBERS_YAML, &dir, &env)?;
    let p = config.pipeline("members").expect("the example defines members");
    let store = Store::connect(&config.state_url).await.map_err(CliError::failed)?;
    let transforms = pipeline::transforms(p, &dir)?;
    let mut source = pipeline::source(p, &dir, None).await?;
    let sink = pipeline::sink(p, &dir, p.batch_size).await?;
    let run_id = uuid::Uuid::now_v7().to_string();
    store.start_run(&run_id, "members", "full").await.map_err(CliError::failed)?;
    let options = RunOptions {
        run_id: run_id.clone(),
        pipeline: "members".into(),
        mode: RunMode::Full,
        batch_size: pipeline::write_size(p, p.batch_size),
        limit: None,
        sink_key: pipeline::sink_key(p),
        change_detection: p.change_detection,
        retry_for: Duration::from_secs(60),
    };
    let started = Instant::now();
    let mut probe = MemoryProbe { started, next_mark: 1_000, marks: Vec::new() };
    let mut runner = Runner::new(options, std::sync::Arc::new(transforms), sink, &store);
    runner.progress = Box::new(&mut probe);
    let counts = runner.run(&mut source, None).await.map_err(CliError::failed)?;
    let timings = runner.timings;
    drop(runner);
    let took = started.elapsed().as_secs_f64();
    store.finish_run(&run_id, "succeeded", None, None).await.map_err(CliError::failed)?;

    println!("bench: members pipeline, SQLite → map + validate (all member rules) → SQLite");
    println!("rows read        {}", counts.read);
    println!("written          {}", counts.created + counts.updated);
    println!("dead letters     {}", counts.rejected);
    println!("elapsed          {took:.2} s");
    println!("throughput       {:.0} records/s", counts.read as f64 / took);
    for (read, rss, at) in &probe.marks {
        println!("rss at {read:>9} rows  {:>6.1} MiB  ({at:.1} s)", *rss as f64 / 1024.0);
    }
    println!("peak rss         {:.1} MiB", rss_kib("VmHWM") as f64 / 1024.0);
    println!(
        "stage busy time  read {:.1} s · transform {:.1} s · write {:.1} s · commit {:.1} s (stages overlap)",
        timings.read.as_secs_f64(),
        timings.transform.as_secs_f64(),
        timings.write.as_secs_f64(),
        timings.commit.as_secs_f64()
    );
    Ok(Exit::Ok)
}

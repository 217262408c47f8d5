//! The members pipeline (every member rule) from SQLite to SQLite over generated rows,
//! reporting records/s and resident memory; with `--hubspot TIER`, the same rows into a HubSpot
//! sandbox of that tier in real time, reporting how full each 10-second budget window was.

use crate::cli::BenchArgs;
use crate::config;
use crate::exit::{CliError, CliResult, Exit};
use std::path::Path;
use std::time::Instant;
use syncline_core::RunReport;

use super::{MemoryProbe, cpu_seconds, print_stage_times, rss_kib, run_full, start_sandbox};

/// The members example config, shipped in the binary so the bench needs nothing else.
const MEMBERS_YAML: &str = include_str!("../../../../examples/members.yaml");
const MEMBER_SCHEMA: &str = include_str!("../../../../examples/member.schema.json");
const MEMBERS_TO_HUBSPOT_YAML: &str = include_str!("../../../../examples/members-to-hubspot.yaml");

pub async fn run(args: &BenchArgs, dir: &Path) -> CliResult {
    for name in ["members.db", "members-warehouse.db", "members-state.db", "members-hubspot-state.db", "members-bare.db"] {
        let _ = std::fs::remove_file(dir.join(name));
    }
    std::fs::write(dir.join("member.schema.json"), MEMBER_SCHEMA).map_err(CliError::failed)?;
    eprintln!("generating {} member rows in {} …", args.rows, dir.display());
    let generated = Instant::now();
    // every row reaches HubSpot when it is the sink: the figures are about the budget
    let invalid = if args.hubspot.is_some() { 0.0 } else { 0.05 };
    generate_apart(&dir.join("members.db"), args.rows, invalid)?;
    eprintln!(
        "generated in {:.1}s; running the members pipeline (release builds only give meaningful figures)",
        generated.elapsed().as_secs_f64()
    );
    let sandbox = args.hubspot.map(|tier| start_sandbox(&["--tier", tier.name()])).transpose()?;
    let base_url = sandbox.as_ref().map(|s| s.url.clone());
    let env = move |name: &str| (name == "HUBSPOT_BASE_URL").then(|| base_url.clone()).flatten();
    let (file, yaml) = match args.hubspot {
        Some(tier) => ("members-to-hubspot.yaml", MEMBERS_TO_HUBSPOT_YAML.replace("tier: free", &format!("tier: {}", tier.name()))),
        None => ("members.yaml", MEMBERS_YAML.to_owned()),
    };
    let config = config::parse(file, &yaml, dir, &env)?;
    // the peak printed is the run's, not the config's parsing (Linux: "5" resets VmHWM to VmRSS)
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let (started, cpu_before) = (Instant::now(), cpu_seconds("self"));
    let mut probe = MemoryProbe { started, next_mark: 1_000, marks: Vec::new() };
    let report = run_full(&config, "members", dir, &mut probe).await?;
    let (took, cpu) = (started.elapsed().as_secs_f64(), cpu_seconds("self") - cpu_before);
    print_figures(args, &report, took, &probe);
    match &sandbox {
        Some(sandbox) => super::print_budget_use(&sandbox.url, args.hubspot.map_or(100, |t| t.per_ten_seconds())).await?,
        None => print_bare_copy(dir, report.counts.read as f64 / took, cpu).await?,
    }
    Ok(Exit::Ok)
}

/// The member table made by `syncline example members` in a process of its own, so what the
/// generator allocated (SQLite's cache of a 100,000-row transaction, the statements) is not in
/// the memory figures of the run.
fn generate_apart(db: &Path, rows: u64, invalid: f64) -> Result<(), CliError> {
    let exe = std::env::current_exe().map_err(CliError::failed)?;
    let output = std::process::Command::new(exe)
        .args(["example", "members", "--seed", "7", "--rows", &rows.to_string(), "--invalid", &invalid.to_string(), "--db"])
        .arg(db)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| CliError::failed(format!("cannot start the member generator: {e}")))?;
    if !output.status.success() {
        let why = String::from_utf8_lossy(&output.stderr);
        return Err(CliError::failed(format!("generating the member rows failed: {}", why.trim())));
    }
    Ok(())
}

/// The same table copied with nothing but SQLite, and syncline's pace as a share of it; and the
/// CPU time of both (`cpu`: the run's), the steadier figure on a shared machine.
async fn print_bare_copy(dir: &Path, records_per_second: f64, cpu: f64) -> Result<(), CliError> {
    eprintln!("measuring the bare copy of the same table …");
    let (source, target) = (dir.join("members.db"), dir.join("members-bare.db"));
    let cpu_before = cpu_seconds("self");
    let (rows, took) = tokio::task::spawn_blocking(move || super::bare::copy_members(&source, &target))
        .await
        .map_err(CliError::failed)?
        .map_err(CliError::failed)?;
    let bare = rows as f64 / took;
    println!(
        "bare copy        {rows} rows in {took:.2} s = {bare:.0} rows/s (same SQLite, one prepared upsert, commits of 1,000, no rules, no state)"
    );
    println!("ratio            {:.2} × the bare copy", records_per_second / bare);
    let bare_cpu = cpu_seconds("self") - cpu_before;
    println!("cpu              syncline {cpu:.1} s (on all threads) · bare copy {bare_cpu:.1} s (one thread): {:.1} ×", cpu / bare_cpu);
    Ok(())
}

fn print_figures(args: &BenchArgs, report: &RunReport, took: f64, probe: &MemoryProbe) {
    match args.hubspot {
        None => println!("bench: members pipeline, SQLite → map + validate (all member rules) → SQLite"),
        Some(tier) => println!(
            "bench: members pipeline, SQLite → map + validate (all member rules) → HubSpot sandbox, {} tier, real time",
            tier.name()
        ),
    }
    let (counts, timings) = (&report.counts, &report.timings);
    println!("rows read        {}", counts.read);
    println!("written          {}", counts.created + counts.updated);
    println!("dead letters     {}", counts.rejected);
    println!("elapsed          {took:.2} s");
    println!("throughput       {:.0} records/s", counts.read as f64 / took);
    for (read, rss, at) in &probe.marks {
        println!("rss at {read:>9} rows  {:>6.1} MiB  ({at:.1} s)", *rss as f64 / 1024.0);
    }
    println!("peak rss         {:.1} MiB", rss_kib("VmHWM") as f64 / 1024.0);
    print_stage_times(timings);
}

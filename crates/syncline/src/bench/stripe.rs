//! Stripe → table: `--rows` products, each with its default price, listed (100 a call, the
//! price expanded) from a Stripe sandbox without rate limits — in its own process, so the
//! figures are syncline's — into a SQLite table, by one full run. Reports records/s, each
//! process's CPU time and resident memory.

use std::path::Path;
use std::time::Instant;

use super::{MemoryProbe, cpu_seconds, print_read_figures, run_full, start_sandbox};
use crate::cli::BenchArgs;
use crate::config::{self, SourceSettings};
use crate::exit::{CliError, CliResult, Exit};

const CONFIG: &str = "state: sqlite://stripe-bench-state.db
pipelines:
  products:
    source:
      stripe:
        base_url: ${STRIPE_BASE_URL}
        key: ${STRIPE_KEY}
    sink:
      sql: {url: \"sqlite://stripe-bench.db\", table: stripe_products, key: id, create_table: true}
    batch_size: 1000
";

pub async fn run(args: &BenchArgs, dir: &Path) -> CliResult {
    for file in ["stripe-bench-state.db", "stripe-bench.db"] {
        let _ = std::fs::remove_file(dir.join(file));
    }
    eprintln!("starting a sandbox without limits with {} Stripe products …", args.rows);
    let generated = Instant::now();
    let sandbox = start_sandbox(&["--no-limits", "--products", &args.rows.to_string()])?;
    eprintln!("ready in {:.1}s; listing them into sqlite://stripe-bench.db", generated.elapsed().as_secs_f64());
    let url = sandbox.url.clone();
    let env = move |name: &str| match name {
        "STRIPE_BASE_URL" => Some(url.clone()),
        "STRIPE_KEY" => Some(syncline_sandbox::DEMO_STRIPE_KEY.to_owned()),
        _ => None,
    };
    let mut config = config::parse("stripe-bench.yaml", CONFIG, dir, &env)?;
    for pipeline in &mut config.pipelines {
        if let SourceSettings::Stripe { profile, .. } = &mut pipeline.source {
            // the account has no limits: pace nothing, so the figures are the engine's
            profile.requests_per_second = 1_000_000;
        }
    }
    let sandbox_pid = sandbox.child.id().to_string();
    let cpu_before = (cpu_seconds("self"), cpu_seconds(&sandbox_pid));
    let started = Instant::now();
    let mut probe = MemoryProbe { started, next_mark: 1_000, marks: Vec::new() };
    let report = run_full(&config, "products", dir, &mut probe).await?;
    let took = started.elapsed().as_secs_f64();
    let cpu = (cpu_seconds("self") - cpu_before.0, cpu_seconds(&sandbox_pid) - cpu_before.1);
    println!("bench: Stripe → table, {} products with their default price, sandbox without limits → sqlite://stripe-bench.db", args.rows);
    print_read_figures(&report, took, (cpu.0, Some(cpu.1)), &probe);
    if report.counts.read != args.rows {
        return Err(CliError::failed(format!("read {} of {} products", report.counts.read, args.rows)));
    }
    Ok(Exit::Ok)
}

//! HubSpot → warehouse: `--rows` contacts with ten properties, listed from a sandbox portal
//! without rate limits (in its own process, so the figures are syncline's alone) into a
//! warehouse table made from the property types, by one full run. Reports records/s and
//! resident memory as the run goes. With `--hubspot TIER` the sandbox has that tier's limits
//! and the run paces itself to its budget: how full each 10-s window was, and the 429s.

use std::path::Path;
use std::time::Instant;

use syncline_connectors::sql::SqlPool;

use super::{MemoryProbe, cpu_seconds, print_read_figures, run_full, start_sandbox};
use crate::cli::BenchArgs;
use crate::config::{self, SourceSettings};
use crate::exit::{CliError, CliResult, Exit};

const TABLE: &str = "bench_hubspot_contacts";

fn config_yaml(warehouse: &str) -> String {
    format!(
        "state: sqlite://warehouse-bench-state.db
pipelines:
  contacts:
    source:
      hubspot:
        base_url: ${{HUBSPOT_BASE_URL}}
        token: ${{HUBSPOT_TOKEN}}
        object: contacts
        properties: [email, firstname, lastname, phone, date_of_birth, numero_asociado, no__de_cedula, marital_status, provincia, salario_bruto]
    sink:
      sql: {{url: \"{warehouse}\", table: {TABLE}, key: hs_object_id, create_table: true}}
    batch_size: 1000
"
    )
}

pub async fn run(args: &BenchArgs, dir: &Path) -> CliResult {
    let _ = std::fs::remove_file(dir.join("warehouse-bench-state.db"));
    let warehouse = args.warehouse_url.clone().unwrap_or_else(|| {
        let _ = std::fs::remove_file(dir.join("warehouse-bench.db"));
        "sqlite://warehouse-bench.db".to_owned()
    });
    let rows = args.rows.to_string();
    let limits = match args.hubspot {
        None => vec!["--no-limits"],
        Some(tier) => vec!["--tier", tier.name()],
    };
    eprintln!("starting a sandbox ({}) with {} contacts …", limits.join(" "), args.rows);
    let generated = Instant::now();
    let sandbox = start_sandbox(&[limits.as_slice(), &["--contacts", &rows]].concat())?;
    eprintln!("ready in {:.1}s; listing them into {warehouse}", generated.elapsed().as_secs_f64());
    let url = sandbox.url.clone();
    let env = move |name: &str| match name {
        "HUBSPOT_BASE_URL" => Some(url.clone()),
        "HUBSPOT_TOKEN" => Some(syncline_sandbox::DEMO_HUBSPOT_TOKEN.to_owned()),
        _ => None,
    };
    let mut config = config::parse("warehouse-bench.yaml", &config_yaml(&warehouse), dir, &env)?;
    for pipeline in &mut config.pipelines {
        if let SourceSettings::HubSpot { profile, .. } = &mut pipeline.source {
            profile.calls_per_ten_seconds = match args.hubspot {
                // the portal has no limits: pace nothing, so the figures are the engine's
                None => 1_000_000,
                Some(tier) => tier.per_ten_seconds(),
            };
        }
    }
    let pool = SqlPool::connect(&crate::config::resolve_sqlite(&warehouse, dir), 1).await.map_err(CliError::failed)?;
    pool.execute(&format!("DROP TABLE IF EXISTS {TABLE}")).await.map_err(CliError::failed)?;
    let sandbox_pid = sandbox.child.id().to_string();
    let cpu_before = (cpu_seconds("self"), cpu_seconds(&sandbox_pid));
    let started = Instant::now();
    let mut probe = MemoryProbe { started, next_mark: 1_000, marks: Vec::new() };
    let report = run_full(&config, "contacts", dir, &mut probe).await?;
    let took = started.elapsed().as_secs_f64();
    let cpu = (cpu_seconds("self") - cpu_before.0, cpu_seconds(&sandbox_pid) - cpu_before.1);
    pool.execute(&format!("DROP TABLE IF EXISTS {TABLE}")).await.map_err(CliError::failed)?;

    let portal = args.hubspot.map_or("sandbox without limits".to_owned(), |tier| format!("sandbox of the {} tier", tier.name()));
    println!("bench: HubSpot → warehouse, {} contacts × 10 properties (+ id, times, _raw), {portal} → {warehouse}", args.rows);
    let counts = &report.counts;
    print_read_figures(&report, took, (cpu.0, Some(cpu.1)), &probe);
    if let Some(tier) = args.hubspot {
        super::print_budget_use(&sandbox.url, tier.per_ten_seconds()).await?;
    }
    if counts.read != args.rows {
        return Err(CliError::failed(format!("read {} of {} contacts", counts.read, args.rows)));
    }
    Ok(Exit::Ok)
}

//! Stripe → QuickBooks backfill at QuickBooks' real limits: `--rows` products (a Stripe account
//! without limits) become items of a company that allows 500 requests a minute, 10 a second
//! and 40 batch calls a minute, through the example pipeline run by this binary as a user would
//! (`auth quickbooks`, then `run`). The sandbox runs in this process, so its ledger tells how
//! full each minute was — of batch calls, and of requests in all (single writes go beside the
//! batch calls) — and how many 429s there were.

use std::path::Path;
use std::time::Instant;

use base64::Engine;
use syncline_sandbox::{DEMO_QUICKBOOKS_CLIENT, DEMO_QUICKBOOKS_REALM, DEMO_STRIPE_KEY, Sandbox, Seed};

use crate::cli::BenchArgs;
use crate::exit::{CliError, CliResult, Exit};

/// QuickBooks' batch calls per minute, per company and app, and its requests per minute.
const BATCHES_PER_MINUTE: usize = 40;
const REQUESTS_PER_MINUTE: usize = 500;

pub async fn run(args: &BenchArgs, dir: &Path) -> CliResult {
    // 40 batch calls of 30 and 460 single writes a minute
    let per_minute = (BATCHES_PER_MINUTE * 30 + REQUESTS_PER_MINUTE - BATCHES_PER_MINUTE) as f64;
    let minutes = args.rows as f64 / per_minute;
    if args.rows > 100_000 {
        return Err(CliError::usage(format!(
            "--rows {}: at QuickBooks' limits that takes {:.0} hours; pass a smaller --rows (2000 takes under 2 minutes, 10000 about 6)",
            args.rows,
            minutes / 60.0
        )));
    }
    let mut seed = Seed::members_demo();
    seed.stripe[0].rate_limit = Some(0);
    let sandbox = Sandbox::from_seed(seed).map_err(CliError::failed)?;
    sandbox.generate_products(DEMO_STRIPE_KEY, args.rows).map_err(CliError::failed)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(CliError::failed)?;
    let url = format!("http://{}", listener.local_addr().map_err(CliError::failed)?);
    let served = tokio::spawn(sandbox.clone().serve(listener));
    let example = include_str!("../../../../examples/stripe-to-quickbooks.yaml");
    let config = dir.join("stripe-to-quickbooks.yaml");
    std::fs::write(&config, example).map_err(CliError::failed)?;
    for file in ["stripe-quickbooks-state.db", "stripe-quickbooks-state.db.id"] {
        let _ = std::fs::remove_file(dir.join(file));
    }
    let key = {
        use chacha20poly1305::aead::{KeyInit, OsRng};
        base64::engine::general_purpose::STANDARD.encode(&chacha20poly1305::XChaCha20Poly1305::generate_key(&mut OsRng)[..])
    };
    let syncline = |args: &[&str]| {
        let exe = std::env::current_exe().map_err(CliError::failed)?;
        let out = std::process::Command::new(exe)
            .current_dir(dir)
            .envs([("STRIPE_BASE_URL", url.as_str()), ("QBO_BASE_URL", url.as_str()), ("STRIPE_KEY", DEMO_STRIPE_KEY)])
            .envs([("QBO_CLIENT_SECRET", DEMO_QUICKBOOKS_CLIENT.1), ("SYNCLINE_TOKEN_KEY", key.as_str())])
            .env("STRIPE_WEBHOOK_SECRET", syncline_sandbox::DEMO_STRIPE_WEBHOOK_SECRET)
            .arg("--quiet")
            .arg("--config")
            .arg(&config)
            .args(args)
            .output()
            .map_err(CliError::failed)?;
        match out.status.code() {
            Some(0) => Ok(()),
            _ => Err(CliError::failed(format!("syncline {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr)))),
        }
    };
    let consent = format!(
        "{url}/connect/oauth2?client_id={}&redirect_uri=http%3A%2F%2Flocalhost%3A8080%2Fcallback&response_type=code",
        DEMO_QUICKBOOKS_CLIENT.0
    );
    let no_follow = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().map_err(CliError::failed)?;
    let approved = no_follow.get(consent).send().await.map_err(CliError::failed)?;
    let redirect = approved.headers().get("location").and_then(|l| l.to_str().ok()).unwrap_or_default().to_owned();
    syncline(&["auth", "quickbooks", "--redirect", &redirect])?;
    eprintln!("backfilling {} products into QuickBooks at its limits (about {minutes:.1} minutes) …", args.rows);
    let started = Instant::now();
    syncline(&["run", "products_to_items"])?;
    let took = started.elapsed().as_secs_f64();
    served.abort();
    report(&sandbox, args.rows, took)
}

/// Calls per whole minute from the first one (the last minute is cut short).
fn per_minute(at_ms: &[i64]) -> Vec<usize> {
    let first = at_ms.first().copied().unwrap_or_default();
    let minutes = at_ms.last().map_or(0, |last| ((last - first) / 60_000 + 1) as usize);
    let mut counts = vec![0usize; minutes];
    for at in at_ms {
        counts[((at - first) / 60_000) as usize] += 1;
    }
    counts
}

/// The share of `budget` a minute the full minutes used, in percent (None: no full minute).
fn used(per_minute: &[usize], budget: usize) -> Option<f64> {
    let full = &per_minute[..per_minute.len().saturating_sub(1)];
    (!full.is_empty()).then(|| full.iter().sum::<usize>() as f64 / (full.len() * budget) as f64 * 100.0)
}

/// The figures, from the sandbox's ledger.
fn report(sandbox: &Sandbox, rows: u64, took: f64) -> CliResult {
    let ledger = sandbox.ledger();
    let items = sandbox.quickbooks_items(DEMO_QUICKBOOKS_REALM).map_err(CliError::failed)?.len() as u64;
    let company: Vec<_> = ledger.requests.iter().filter(|r| r.path.starts_with("/v3/company/")).collect();
    let batches: Vec<i64> = company.iter().filter(|r| r.path.ends_with("/batch") && r.status == 200).map(|r| r.at_ms).collect();
    let singles = company.iter().filter(|r| r.path.ends_with("/item") && r.status == 200).count();
    let calls: Vec<i64> = company.iter().filter(|r| r.status == 200).map(|r| r.at_ms).collect();
    let throttled = company.iter().filter(|r| r.status == 429).count();
    let (batch_minutes, call_minutes) = (per_minute(&batches), per_minute(&calls));
    let shown = |counts: &[usize]| counts.iter().map(usize::to_string).collect::<Vec<_>>().join(" ");
    println!("bench: Stripe → QuickBooks backfill, {rows} products, QuickBooks at its limits (500/min, 10/s, 40 batch calls/min)");
    println!("items            {items}");
    println!("elapsed          {took:.1} s ({:.0} items/min)", items as f64 / took * 60.0);
    println!(
        "calls            {} batch calls of ≤ 30 operations, {singles} single writes; QuickBooks calls in all {}",
        batches.len(),
        company.len()
    );
    println!("batches per min  {} (budget {BATCHES_PER_MINUTE}; the last minute is cut short)", shown(&batch_minutes));
    println!("requests per min {} (budget {REQUESTS_PER_MINUTE}, batch calls included)", shown(&call_minutes));
    if let (Some(batch), Some(all)) = (used(&batch_minutes, BATCHES_PER_MINUTE), used(&call_minutes, REQUESTS_PER_MINUTE)) {
        let full = call_minutes.len() - 1;
        println!(
            "budget used      {batch:.1} % of the batch budget, {all:.1} % of the 500 requests a minute, over the {full} full minutes"
        );
    }
    println!("429s             {throttled}");
    if items != rows {
        return Err(CliError::failed(format!("{items} items for {rows} products")));
    }
    Ok(Exit::Ok)
}

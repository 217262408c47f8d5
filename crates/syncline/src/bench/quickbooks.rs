//! Stripe → QuickBooks backfill at QuickBooks' real limits: `--rows` products (a Stripe account
//! without limits) become items of a company that allows 500 requests a minute, 10 a second
//! and 40 batch calls a minute, through the example pipeline run by this binary as a user would
//! (`auth quickbooks`, then `run`). The sandbox runs in this process, so its ledger tells how
//! full each minute of batch calls was, and how many 429s there were.

use std::path::Path;
use std::time::Instant;

use base64::Engine;
use syncline_sandbox::{DEMO_QUICKBOOKS_CLIENT, DEMO_QUICKBOOKS_REALM, DEMO_STRIPE_KEY, Sandbox, Seed};

use crate::cli::BenchArgs;
use crate::exit::{CliError, CliResult, Exit};

/// QuickBooks' batch calls per minute, per company and app.
const BATCHES_PER_MINUTE: usize = 40;

pub async fn run(args: &BenchArgs, dir: &Path) -> CliResult {
    let minutes = args.rows as f64 / 30.0 / BATCHES_PER_MINUTE as f64;
    if args.rows > 100_000 {
        return Err(CliError::usage(format!(
            "--rows {}: at QuickBooks' 40 batch calls a minute that takes {:.0} hours; pass a smaller --rows (2000 takes under 2 minutes, 10000 about 8)",
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
    eprintln!(
        "backfilling {} products into QuickBooks at 40 batch calls a minute (about {:.1} minutes) …",
        args.rows,
        args.rows as f64 / 30.0 / 40.0
    );
    let started = Instant::now();
    syncline(&["run", "products_to_items"])?;
    let took = started.elapsed().as_secs_f64();
    served.abort();
    report(&sandbox, args.rows, took)
}

/// The figures, from the sandbox's ledger.
fn report(sandbox: &Sandbox, rows: u64, took: f64) -> CliResult {
    let ledger = sandbox.ledger();
    let items = sandbox.quickbooks_items(DEMO_QUICKBOOKS_REALM).map_err(CliError::failed)?.len() as u64;
    let batches: Vec<i64> = ledger.calls("/batch").iter().filter(|r| r.status == 200).map(|r| r.at_ms).collect();
    let throttled = ledger.requests.iter().filter(|r| r.path.starts_with("/v3/company/") && r.status == 429).count();
    let qbo_calls = ledger.requests.iter().filter(|r| r.path.starts_with("/v3/company/")).count();
    let first = batches.first().copied().unwrap_or_default();
    let minutes = batches.last().map_or(0, |last| ((last - first) / 60_000 + 1) as usize);
    let mut per_minute = vec![0usize; minutes];
    for at in &batches {
        per_minute[((at - first) / 60_000) as usize] += 1;
    }
    println!("bench: Stripe → QuickBooks backfill, {rows} products, QuickBooks at its limits (500/min, 10/s, 40 batch calls/min)");
    println!("items            {items}");
    println!("elapsed          {took:.1} s ({:.0} items/min)", items as f64 / took * 60.0);
    println!("batch calls      {} of ≤ 30 operations; QuickBooks calls in all {qbo_calls}", batches.len());
    let shown: Vec<String> = per_minute.iter().map(usize::to_string).collect();
    println!("batches per min  {} (budget {BATCHES_PER_MINUTE}; the last minute is cut short)", shown.join(" "));
    let full = &per_minute[..per_minute.len().saturating_sub(1)];
    if !full.is_empty() {
        let used = full.iter().sum::<usize>() as f64 / (full.len() * BATCHES_PER_MINUTE) as f64 * 100.0;
        println!("budget used      {used:.1} % of the batch budget over the {} full minutes", full.len());
    }
    println!("429s             {throttled}");
    if items != rows {
        return Err(CliError::failed(format!("{items} items for {rows} products")));
    }
    Ok(Exit::Ok)
}

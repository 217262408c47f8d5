//! `syncline sandbox`: serves the API emulators until interrupted.

use syncline_connectors::hubspot::Tier;
use syncline_sandbox::{Faults, Sandbox, Seed};

use crate::cli::{Demo, SandboxArgs};
use crate::exit::{CliError, CliResult, Exit};

pub async fn run(args: SandboxArgs, session: &super::Session) -> CliResult {
    let seed = match &args.seed {
        None => {
            let mut seed = demo_seed(args.tier.unwrap_or(Tier::Free));
            if args.demo == Demo::Warehouse {
                seed.hubspot[0].custom_objects = Seed::warehouse_demo().hubspot.remove(0).custom_objects;
            }
            if args.no_limits {
                seed.hubspot[0].tier = syncline_sandbox::Tier::Unlimited;
                seed.stripe[0].rate_limit = Some(0);
                seed.quickbooks[0].rate_limits = false;
            }
            if let Some(url) = &args.stripe_webhook {
                let events = ["product.created", "product.updated", "product.deleted", "price.created", "price.updated"];
                seed.stripe[0].webhooks.push(syncline_sandbox::StripeWebhook {
                    url: url.clone(),
                    secret: syncline_sandbox::DEMO_STRIPE_WEBHOOK_SECRET.into(),
                    events: events.map(str::to_owned).to_vec(),
                });
            }
            seed
        }
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| CliError::usage(format!("{}: {e}", path.display())))?;
            // YAML is a superset of JSON, so one parser reads both
            serde_saphyr::from_str(&text).map_err(|e| CliError::usage(format!("{}: {e}", path.display())))?
        }
    };
    let tokens: Vec<String> = seed.hubspot.iter().map(|p| format!("{} ({:?})", p.token, p.tier)).collect();
    let pages: Vec<String> = seed.manychat.iter().map(|p| p.token.clone()).collect();
    let stripe: Vec<String> = seed.stripe.iter().map(|a| a.key.clone()).collect();
    let realms: Vec<String> = seed.quickbooks.iter().map(|r| format!("{} (client {})", r.realm_id, r.client_id)).collect();
    let sandbox = Sandbox::from_seed(seed)
        .map_err(|e| CliError::usage(format!("{}: {e}", args.seed.as_ref().map_or("the demo seed".into(), |p| p.display().to_string()))))?;
    match (args.contacts, args.demo) {
        (0, _) => {}
        (contacts, Demo::Members) => {
            eprintln!("generating {contacts} contacts …");
            sandbox.generate_contacts(syncline_sandbox::DEMO_HUBSPOT_TOKEN, contacts).map_err(CliError::failed)?;
        }
        (contacts, Demo::Warehouse) => {
            eprintln!("generating {contacts} contacts with deals, appointments, divisions and their associations …");
            let made = sandbox.generate_warehouse(syncline_sandbox::DEMO_HUBSPOT_TOKEN, contacts).map_err(CliError::failed)?;
            eprintln!(
                "  {} contacts, {} deals, {} appointments, {} divisions",
                made.contacts, made.deals, made.appointments, made.divisions
            );
        }
    }
    if args.products > 0 {
        eprintln!("generating {} Stripe products …", args.products);
        sandbox.generate_products(syncline_sandbox::DEMO_STRIPE_KEY, args.products).map_err(CliError::failed)?;
    }
    if let Some(spec) = &args.faults {
        let faults: Faults = serde_saphyr::from_str(spec).map_err(|e| CliError::usage(format!("--faults: {e}")))?;
        sandbox.set_faults(faults);
    }
    let listener = tokio::net::TcpListener::bind((args.bind, args.port))
        .await
        .map_err(|e| CliError::failed(format!("cannot listen on {}:{}: {e}", args.bind, args.port)))?;
    let address = listener.local_addr().map_err(CliError::failed)?;
    // a closed stdout (e.g. piped into `head -1`) must not stop the server: ignore write errors
    let banner = format!(
        "sandbox listening on http://{address}\n  HubSpot portals (Bearer tokens): {}\n  ManyChat pages (Bearer tokens): {}\n  Stripe accounts (secret keys): {}\n  QuickBooks companies (realm ids): {}\n  ledger: http://{address}/__sandbox/ledger\n",
        listed(&tokens),
        listed(&pages),
        listed(&stripe),
        listed(&realms),
    );
    let _ = std::io::Write::write_all(&mut std::io::stdout(), banner.as_bytes());
    // portals seeded with `webhooks:` post their changes to the app's target URL, and Stripe
    // accounts their events to their endpoints
    let _delivery = sandbox.spawn_webhook_delivery();
    let _stripe_delivery = sandbox.spawn_stripe_delivery();
    axum::serve(listener, sandbox.router())
        .with_graceful_shutdown(session.stop.clone().cancelled_owned())
        .await
        .map_err(CliError::failed)?;
    Ok(Exit::Ok)
}

fn listed(names: &[String]) -> String {
    if names.is_empty() { "none".to_owned() } else { names.join(", ") }
}

/// The demo member portal at `tier`.
pub fn demo_seed(tier: Tier) -> Seed {
    let mut seed = Seed::members_demo();
    seed.hubspot[0].tier = match tier {
        Tier::Free => syncline_sandbox::Tier::Free,
        Tier::Professional => syncline_sandbox::Tier::Professional,
        Tier::LimitIncrease => syncline_sandbox::Tier::LimitIncrease,
    };
    seed
}

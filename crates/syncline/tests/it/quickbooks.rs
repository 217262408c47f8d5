//! QuickBooks OAuth against the sandbox's Intuit: `syncline auth quickbooks` connects the app
//! and stores the tokens sealed; fifty callers that find the access token expired (by its
//! time, or by a 401) cause exactly one refresh, also when they are two instances sharing a
//! PostgreSQL store; and a refresh whose new tokens were never stored — a process killed
//! between the two — ends in a clear "re-authorize".

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use base64::Engine;
use futures_util::future::BoxFuture;
use syncline_connectors::quickbooks::{OAuthApp, QuickBooksApi, QuickBooksProfile, TokenManager, TokenVault, Tokens};
use syncline_core::ConnectorError;
use syncline_sandbox::{DEMO_QUICKBOOKS_CLIENT, DEMO_QUICKBOOKS_REALM, DEMO_QUICKBOOKS_REFRESH_TOKEN, Seed, Tier};

use super::hubspot::{Hub, hub_with};

/// The demo sandbox, its QuickBooks company without limits (these tests are about tokens).
fn hub() -> Hub {
    let mut seed = Seed::members_demo();
    seed.quickbooks[0].rate_limits = false;
    hub_with(seed, Tier::Unlimited)
}
use super::*;

/// Tokens kept in memory, counting saves.
#[derive(Default)]
struct MemoryVault {
    tokens: Mutex<HashMap<String, Tokens>>,
    saves: Mutex<usize>,
}

impl TokenVault for MemoryVault {
    fn load<'a>(&'a self, account: &'a str) -> BoxFuture<'a, Result<Option<Tokens>, ConnectorError>> {
        Box::pin(async move { Ok(self.tokens.lock().unwrap().get(account).cloned()) })
    }

    fn save<'a>(&'a self, account: &'a str, tokens: &'a Tokens) -> BoxFuture<'a, Result<(), ConnectorError>> {
        Box::pin(async move {
            *self.saves.lock().unwrap() += 1;
            self.tokens.lock().unwrap().insert(account.to_owned(), tokens.clone());
            Ok(())
        })
    }
}

fn profile(hub: &Hub) -> QuickBooksProfile {
    let mut profile = QuickBooksProfile::new(&hub.url, DEMO_QUICKBOOKS_REALM, DEMO_QUICKBOOKS_CLIENT.0, DEMO_QUICKBOOKS_CLIENT.1);
    profile.token_url = format!("{}/oauth2/v1/tokens/bearer", hub.url);
    profile.requests_per_minute = 60_000;
    profile.requests_per_second = 1_000;
    profile
}

/// A client whose vault holds an access token that expired and the demo realm's refresh token.
async fn client(hub: &Hub) -> (Arc<QuickBooksApi>, Arc<MemoryVault>) {
    let profile = profile(hub);
    let vault = Arc::new(MemoryVault::default());
    let app = OAuthApp::new(&profile.token_url, &profile.client_id, &profile.client_secret).unwrap();
    let manager = TokenManager::new(app, vault.clone(), "quickbooks:demo");
    let expired = Tokens {
        access_token: "gone".into(),
        refresh_token: DEMO_QUICKBOOKS_REFRESH_TOKEN.into(),
        expires_at: chrono::Utc::now() - chrono::Duration::hours(1),
    };
    manager.store_first(expired).await.unwrap();
    *vault.saves.lock().unwrap() = 0;
    (Arc::new(QuickBooksApi::new(&profile, Arc::new(manager)).unwrap()), vault)
}

async fn fifty_calls(api: &Arc<QuickBooksApi>) {
    let calls: Vec<_> = (0..50)
        .map(|_| {
            tokio::spawn({
                let api = api.clone();
                async move { api.company_name().await }
            })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap(), "Sandbox Company");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_callers_with_an_expired_token_share_one_refresh() {
    let hub = hub();
    let (api, vault) = client(&hub).await;
    fifty_calls(&api).await;
    assert_eq!(hub.sandbox.token_refreshes(DEMO_QUICKBOOKS_REALM).unwrap(), 1, "expired by its time: one refresh");
    assert_eq!(*vault.saves.lock().unwrap(), 1, "the new pair was stored once");

    // QuickBooks stops taking the token before its time: every caller meets a 401
    hub.sandbox.expire_access_tokens(DEMO_QUICKBOOKS_REALM).unwrap();
    fifty_calls(&api).await;
    assert_eq!(hub.sandbox.token_refreshes(DEMO_QUICKBOOKS_REALM).unwrap(), 2, "refused with a 401: one more refresh");
    let ledger = hub.sandbox.ledger();
    let refused_grants = ledger.calls("/oauth2/v1/tokens/bearer").into_iter().filter(|r| r.status != 200).count();
    assert_eq!(refused_grants, 0, "no invalid_grant");
}

#[tokio::test(flavor = "multi_thread")]
async fn new_tokens_lost_before_they_were_stored_end_in_a_clear_reauthorize() {
    let hub = hub();
    let (api, _vault) = client(&hub).await;
    // another process refreshed and was killed before storing the answer: the rotated refresh
    // token is gone with it, and the stored one was retired by the refresh
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", DEMO_QUICKBOOKS_CLIENT.0, DEMO_QUICKBOOKS_CLIENT.1));
    let lost = reqwest::Client::new()
        .post(format!("{}/oauth2/v1/tokens/bearer", hub.url))
        .header("authorization", format!("Basic {basic}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("grant_type=refresh_token&refresh_token={DEMO_QUICKBOOKS_REFRESH_TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(lost.status(), 200);
    let error = api.company_name().await.unwrap_err();
    assert_eq!(error.class, syncline_core::ErrorClass::Config);
    assert!(error.message.contains("invalid_grant") && error.message.contains("syncline auth quickbooks"), "{}", error.message);
    // `/readyz` says so too
    let tokens = api.health().into_iter().find(|h| h.name.ends_with("tokens")).unwrap();
    assert_eq!(tokens.level, syncline_resilience::Level::Unhealthy);
    assert!(tokens.reasons[0].contains("syncline auth quickbooks"), "{:?}", tokens.reasons);
}

const CONFIG: &str = r#"
state: sqlite://state.db
connections:
  quickbooks:
    realm_id: "9130350000000001"
    client_id: sandbox-client
    client_secret: ${QBO_CLIENT_SECRET}
    redirect_uri: http://localhost:9/callback
    base_url: ${QBO_URL}
    token_url: ${QBO_URL}/oauth2/v1/tokens/bearer
    authorize_url: ${QBO_URL}/connect/oauth2
"#;

#[tokio::test(flavor = "multi_thread")]
async fn auth_connects_the_app_and_stores_the_tokens_sealed() {
    let hub = hub();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("qbo.yaml"), CONFIG).unwrap();
    let key = base64::engine::general_purpose::STANDARD.encode([42u8; 32]);
    let auth = |args: &[&str], key: Option<&str>| {
        let mut command = bin();
        command.current_dir(d).env("QBO_URL", &hub.url).env("QBO_CLIENT_SECRET", DEMO_QUICKBOOKS_CLIENT.1).env_remove("SYNCLINE_TOKEN_KEY");
        if let Some(key) = key {
            command.env("SYNCLINE_TOKEN_KEY", key);
        }
        command.arg("--config").arg(d.join("qbo.yaml")).arg("auth").arg("quickbooks").args(args).output().unwrap()
    };
    let no_key = auth(&["--redirect", "http://localhost:9/callback?code=x&realmId=9130350000000001"], None);
    assert_eq!(code(&no_key), 2, "{}", stderr(&no_key));
    assert!(stderr(&no_key).contains("SYNCLINE_TOKEN_KEY"), "{}", stderr(&no_key));

    // the browser's part: the sandbox's consent page approves at once and redirects
    let consent = format!(
        "{}/connect/oauth2?client_id=sandbox-client&redirect_uri=http%3A%2F%2Flocalhost%3A9%2Fcallback&response_type=code&state=s",
        hub.url
    );
    let no_follow = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let approved = no_follow.get(consent).send().await.unwrap();
    let redirect = approved.headers()["location"].to_str().unwrap().to_owned();
    let out = auth(&["--redirect", &redirect], Some(&key));
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("Sandbox Company"), "{}", stdout(&out));

    let state = sqlite(&d.join("state.db")).await;
    assert_eq!(count(&state, "SELECT COUNT(*) FROM oauth_tokens WHERE provider = 'quickbooks'").await, 1);
    assert_eq!(
        count(&state, "SELECT COUNT(*) FROM oauth_tokens WHERE refresh_token LIKE 'qbo-%' OR access_token LIKE 'qbo-%'").await,
        0,
        "sealed, not plain"
    );
    let check = |key: &str| {
        let mut command = bin();
        command.current_dir(d).env("QBO_URL", &hub.url).env("QBO_CLIENT_SECRET", DEMO_QUICKBOOKS_CLIENT.1).env("SYNCLINE_TOKEN_KEY", key);
        command.arg("--config").arg(d.join("qbo.yaml")).arg("check").output().unwrap()
    };
    let checked = check(&key);
    assert_eq!(code(&checked), 0, "{}{}", stdout(&checked), stderr(&checked));
    assert!(stdout(&checked).contains("company \"Sandbox Company\""), "{}", stdout(&checked));
    let other_key = check(&base64::engine::general_purpose::STANDARD.encode([7u8; 32]));
    assert_ne!(code(&other_key), 0);
    assert!(format!("{}{}", stdout(&other_key), stderr(&other_key)).contains("do not open with this key"), "{}", stdout(&other_key));
    let again = auth(&["--redirect", &redirect], Some(&key));
    assert_eq!(code(&again), 2, "a code is used once: {}", stderr(&again));
    assert!(stderr(&again).contains("invalid_grant"), "{}", stderr(&again));
}

/// The tokens in a PostgreSQL store (unsealed: this test is about the lock), refreshed under the
/// store's lock, as `syncline`'s own vault does.
struct SharedVault(syncline_store::Store);

impl TokenVault for SharedVault {
    fn load<'a>(&'a self, account: &'a str) -> BoxFuture<'a, Result<Option<Tokens>, ConnectorError>> {
        Box::pin(async move {
            let stored = self.0.oauth_tokens("quickbooks", account).await.unwrap();
            Ok(stored.map(|s| Tokens {
                access_token: s.access_token,
                refresh_token: s.refresh_token,
                expires_at: s.expires_at.parse().unwrap(),
            }))
        })
    }

    fn save<'a>(&'a self, account: &'a str, tokens: &'a Tokens) -> BoxFuture<'a, Result<(), ConnectorError>> {
        Box::pin(async move {
            let sealed = syncline_store::SealedTokens {
                access_token: tokens.access_token.clone(),
                refresh_token: tokens.refresh_token.clone(),
                expires_at: tokens.expires_at.to_rfc3339(),
            };
            self.0.save_oauth_tokens("quickbooks", account, &sealed).await.unwrap();
            Ok(())
        })
    }

    fn hold_refresh<'a>(&'a self, account: &'a str) -> BoxFuture<'a, Result<Box<dyn Send>, ConnectorError>> {
        Box::pin(async move { Ok(Box::new(self.0.lock_refresh("quickbooks", account).await.unwrap()) as Box<dyn Send>) })
    }
}

/// Two instances sharing a PostgreSQL store, 25 callers each, all finding the access token
/// expired at once: one refresh between them, and no `invalid_grant` (without the lock, the
/// second instance would refresh with the token the first one's refresh retired).
#[tokio::test(flavor = "multi_thread")]
async fn two_instances_on_one_postgres_store_refresh_once() {
    let Some(db) = syncline_testkit::postgres().await else { return };
    let hub = hub();
    let profile = profile(&hub);
    let mut instances = Vec::new();
    for _ in 0..2 {
        let store = syncline_store::Store::connect(&db.url).await.unwrap();
        let app = OAuthApp::new(&profile.token_url, &profile.client_id, &profile.client_secret).unwrap();
        let manager = Arc::new(TokenManager::new(app, Arc::new(SharedVault(store.clone())), "quickbooks:demo"));
        instances.push((Arc::new(QuickBooksApi::new(&profile, manager.clone()).unwrap()), manager, store));
    }
    let expired = Tokens {
        access_token: "gone".into(),
        refresh_token: DEMO_QUICKBOOKS_REFRESH_TOKEN.into(),
        expires_at: chrono::Utc::now() - chrono::Duration::hours(1),
    };
    instances[0].1.store_first(expired).await.unwrap();
    let calls: Vec<_> = (0..50)
        .map(|i| {
            let api = instances[i % 2].0.clone();
            tokio::spawn(async move { api.company_name().await })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap(), "Sandbox Company");
    }
    assert_eq!(hub.sandbox.token_refreshes(DEMO_QUICKBOOKS_REALM).unwrap(), 1, "one refresh for both instances");
    let refused = hub.sandbox.ledger().calls("/oauth2/v1/tokens/bearer").into_iter().filter(|r| r.status != 200).count();
    assert_eq!(refused, 0, "no invalid_grant");
    for (_, _, store) in instances {
        store.close().await;
    }
    db.drop().await;
}

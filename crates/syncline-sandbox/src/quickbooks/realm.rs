//! One QuickBooks company (a realm): its items and accounts, the writes QuickBooks checks
//! (unique names, lengths, account references, `SyncToken`), its OAuth tokens and its limits.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use chrono::{DateTime, FixedOffset, Utc};
use serde_json::{Map, Value, json};

use super::Fault;
use crate::window::RollingWindow;

/// A realm as a seed or test sets it up.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RealmConfig {
    /// The company id (`realmId`) in `/v3/company/{realmId}/…`.
    pub realm_id: String,
    /// The app's OAuth client, checked by the token endpoint (HTTP Basic).
    pub client_id: String,
    pub client_secret: String,
    /// A refresh token that works from the start, as if the app had been authorized.
    #[serde(default)]
    pub refresh_token: Option<String>,
    /// An access token that works from the start.
    #[serde(default)]
    pub access_token: Option<String>,
    /// How long an access token lasts (QuickBooks: 3,600 s; shorter for tests).
    #[serde(default = "hour")]
    pub access_token_ttl_secs: u64,
    /// Whether every refresh returns a new refresh token and retires the old one (QuickBooks
    /// may rotate on any refresh; always rotating is the strictest case for a client).
    #[serde(default = "yes")]
    pub rotate_refresh_tokens: bool,
    /// 500 requests per minute and 10 per second per realm, 40 batch calls per minute; false
    /// for benchmarks of other parts.
    #[serde(default = "yes")]
    pub rate_limits: bool,
}

fn hour() -> u64 {
    3_600
}

fn yes() -> bool {
    true
}

impl RealmConfig {
    pub fn new(realm_id: impl Into<String>, client_id: impl Into<String>, client_secret: impl Into<String>) -> RealmConfig {
        RealmConfig {
            realm_id: realm_id.into(),
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            refresh_token: None,
            access_token: None,
            access_token_ttl_secs: hour(),
            rotate_refresh_tokens: true,
            rate_limits: true,
        }
    }
}

/// Which of the realm's budgets a request spends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Limit {
    Call,
    Batch,
}

struct Limits {
    minute: RollingWindow,
    second: RollingWindow,
    batches: RollingWindow,
}

/// The item types the API creates (the others are read-only or legacy).
const CREATABLE: [&str; 5] = ["Service", "NonInventory", "Inventory", "Category", "Group"];
/// Types that must name an income account.
const NEED_INCOME_ACCOUNT: [&str; 2] = ["Service", "Inventory"];
/// The item fields a write may carry.
const WRITABLE: [&str; 21] = [
    "Id",
    "SyncToken",
    "sparse",
    "domain",
    "MetaData",
    "Name",
    "Description",
    "Active",
    "FullyQualifiedName",
    "Taxable",
    "UnitPrice",
    "Type",
    "IncomeAccountRef",
    "ExpenseAccountRef",
    "PurchaseDesc",
    "PurchaseCost",
    "TrackQtyOnHand",
    "Sku",
    "SubItem",
    "ParentRef",
    "SalesTaxIncluded",
];

pub(crate) struct Realm {
    pub config: RealmConfig,
    pub items: BTreeMap<u64, Value>,
    pub accounts: BTreeMap<u64, Value>,
    /// Item ids by lower-cased name: names are unique without case.
    names: HashMap<String, u64>,
    next_id: u64,
    access: HashMap<String, Instant>,
    pub refresh: Option<String>,
    /// Authorization codes not yet exchanged, with their redirect URI.
    pub codes: HashMap<String, String>,
    /// Refresh grants answered (for tests: "exactly one refresh").
    pub refreshes: u64,
    limits: Option<Limits>,
}

/// QuickBooks' times: the company's offset (Pacific here), second precision.
pub(crate) fn company_time(at: DateTime<Utc>) -> String {
    in_company_zone(at).format("%Y-%m-%dT%H:%M:%S%:z").to_string()
}

/// A time in the company's offset (Pacific, without daylight saving).
pub(crate) fn in_company_zone(at: DateTime<Utc>) -> DateTime<FixedOffset> {
    at.with_timezone(&FixedOffset::west_opt(8 * 3600).expect("a valid offset"))
}

impl Realm {
    pub fn new(config: RealmConfig) -> Realm {
        let limits = config.rate_limits.then(|| Limits {
            minute: RollingWindow::new(500, Duration::from_secs(60)),
            second: RollingWindow::new(10, Duration::from_secs(1)),
            batches: RollingWindow::new(40, Duration::from_secs(60)),
        });
        let ttl = Duration::from_secs(config.access_token_ttl_secs);
        let access = config.access_token.iter().map(|t| (t.clone(), Instant::now() + ttl)).collect();
        let mut realm = Realm {
            refresh: config.refresh_token.clone(),
            config,
            items: BTreeMap::new(),
            accounts: BTreeMap::new(),
            names: HashMap::new(),
            next_id: 100,
            access,
            codes: HashMap::new(),
            refreshes: 0,
            limits,
        };
        let now = company_time(Utc::now());
        for (id, name, active) in [(1, "Services", true), (79, "Sales of Product Income", true), (80, "Old Income (inactive)", false)] {
            realm.accounts.insert(id, account_json(id, name, active, &now));
        }
        realm
    }

    /// Whether `token` is one of the realm's access tokens and has not expired.
    pub fn opens(&self, token: &str) -> bool {
        self.access.get(token).is_some_and(|expiry| Instant::now() < *expiry)
    }

    /// A new access token (and, when rotating or on a first grant, a new refresh token): the
    /// token endpoint's answer.
    pub fn grant(&mut self, first: bool) -> Value {
        let ttl = self.config.access_token_ttl_secs;
        let access = format!("qbo-access-{}", uuid::Uuid::now_v7().simple());
        self.access.retain(|_, expiry| Instant::now() < *expiry);
        self.access.insert(access.clone(), Instant::now() + Duration::from_secs(ttl));
        if first || self.config.rotate_refresh_tokens || self.refresh.is_none() {
            self.refresh = Some(format!("qbo-refresh-{}", uuid::Uuid::now_v7().simple()));
        }
        json!({
            "token_type": "bearer", "access_token": access, "expires_in": ttl,
            "refresh_token": self.refresh, "x_refresh_token_expires_in": 8_726_400,
        })
    }

    /// Makes every access token expire now (for tests of the refresh path).
    pub fn expire_access_tokens(&mut self) {
        let now = Instant::now();
        self.access.values_mut().for_each(|expiry| *expiry = now);
    }

    pub fn spend(&mut self, limit: Limit, now: Instant) -> bool {
        let Some(limits) = &mut self.limits else { return true };
        // a batch counts against the per-minute and per-second budgets and its own
        if limit == Limit::Batch && !limits.batches.try_spend(now) {
            return false;
        }
        limits.minute.try_spend(now) && limits.second.try_spend(now)
    }

    /// Creates an item (no `Id`) or updates one (sparse or full, by `SyncToken`).
    pub fn write_item(&mut self, body: &Value) -> Result<Value, Fault> {
        let fields = body.as_object().ok_or_else(|| {
            Fault::validation("2010", "Request has invalid or unsupported property", "The body must be an Item object".into(), "")
        })?;
        if let Some(unknown) = fields.keys().find(|k| !WRITABLE.contains(&k.as_str())) {
            return Err(Fault::validation(
                "2010",
                "Request has invalid or unsupported property",
                format!("Property Name:Unrecognized field \"{unknown}\""),
                unknown,
            ));
        }
        let now = company_time(Utc::now());
        match fields.get("Id") {
            None => self.create_item(fields, &now),
            Some(id) => self.update_item(id, fields, &now),
        }
    }

    fn create_item(&mut self, fields: &Map<String, Value>, now: &str) -> Result<Value, Fault> {
        let id = self.next_id;
        let mut item = json!({
            "Active": true, "Taxable": false, "UnitPrice": 0, "Type": "Service", "PurchaseCost": 0, "TrackQtyOnHand": false,
            "domain": "QBO", "sparse": false, "Id": id.to_string(), "SyncToken": "0",
            "MetaData": {"CreateTime": now, "LastUpdatedTime": now},
        });
        merge(&mut item, fields);
        let item = self.checked(item, None)?;
        self.next_id += 1;
        self.store(id, item.clone());
        Ok(item)
    }

    fn update_item(&mut self, id: &Value, fields: &Map<String, Value>, now: &str) -> Result<Value, Fault> {
        let id = id.as_str().and_then(|s| s.parse::<u64>().ok()).or(id.as_u64());
        let current = id.and_then(|id| self.items.get(&id)).ok_or_else(Fault::not_found)?.clone();
        let id = id.expect("found above");
        let token = fields.get("SyncToken").and_then(Value::as_str).ok_or_else(|| Fault::required("SyncToken"))?;
        if current["SyncToken"] != token {
            let detail = "Stale Object Error : You and sandbox were working on this at the same time. sandbox finished before you did, so your work was not saved.";
            return Err(Fault::validation("5010", "Stale Object Error", detail.into(), ""));
        }
        let mut item = if fields.get("sparse") == Some(&Value::Bool(true)) {
            current.clone()
        } else {
            // a full update clears the writable fields it leaves out
            json!({"Active": true, "Taxable": false, "UnitPrice": 0, "Type": current["Type"], "PurchaseCost": 0, "TrackQtyOnHand": false})
        };
        merge(&mut item, fields);
        item["Id"] = json!(id.to_string());
        item["domain"] = json!("QBO");
        item["sparse"] = json!(false);
        item["MetaData"] = json!({"CreateTime": current["MetaData"]["CreateTime"], "LastUpdatedTime": now});
        item["SyncToken"] = json!((token.parse::<u64>().unwrap_or_default() + 1).to_string());
        let item = self.checked(item, Some(id))?;
        self.names.remove(&current["Name"].as_str().unwrap_or_default().to_lowercase());
        self.store(id, item.clone());
        Ok(item)
    }

    fn store(&mut self, id: u64, item: Value) {
        self.names.insert(item["Name"].as_str().unwrap_or_default().to_lowercase(), id);
        self.items.insert(id, item);
    }

    /// QuickBooks' checks of an item about to be stored (as `id`, when it exists).
    fn checked(&self, mut item: Value, id: Option<u64>) -> Result<Value, Fault> {
        let name = item["Name"].as_str().ok_or_else(|| Fault::required("Name"))?.trim().to_owned();
        length("Name", &name, 1, 100)?;
        if name.contains(':') {
            return Err(Fault::business("Item names cannot contain a colon (:)".into()));
        }
        if self.names.get(&name.to_lowercase()).is_some_and(|holder| Some(*holder) != id) {
            let detail =
                "The name supplied already exists. : Another product or service is already using this name. Please use a different name.";
            return Err(Fault::validation("6240", "Duplicate Name Exists Error", detail.into(), "Name"));
        }
        for (field, max) in [("Description", 4000), ("Sku", 100), ("PurchaseDesc", 1000)] {
            if let Some(text) = item[field].as_str() {
                length(field, text, 0, max)?;
            }
        }
        let kind = item["Type"].as_str().unwrap_or_default().to_owned();
        if id.is_none() && !CREATABLE.contains(&kind.as_str()) {
            return Err(Fault::business(format!(
                "Items of type {kind:?} cannot be created through the API (use one of {})",
                CREATABLE.join(", ")
            )));
        }
        if !item["UnitPrice"].is_number() && !item["UnitPrice"].is_null() {
            return Err(Fault::validation(
                "2010",
                "Request has invalid or unsupported property",
                "Property Name:UnitPrice must be a number".into(),
                "UnitPrice",
            ));
        }
        match item["IncomeAccountRef"]["value"].as_str() {
            None if NEED_INCOME_ACCOUNT.contains(&kind.as_str()) => return Err(Fault::required("IncomeAccountRef")),
            None => {}
            Some(reference) => {
                let account = reference.parse::<u64>().ok().and_then(|a| self.accounts.get(&a));
                let account = account.ok_or_else(|| {
                    Fault::validation(
                        "2500",
                        "Invalid Reference Id",
                        format!("Invalid Reference Id : Accounts element id {reference} not found"),
                        "IncomeAccountRef",
                    )
                })?;
                if account["Active"] != true {
                    return Err(Fault::not_found());
                }
                item["IncomeAccountRef"]["name"] = account["Name"].clone();
            }
        }
        item["Name"] = json!(name);
        item["FullyQualifiedName"] = json!(name);
        Ok(item)
    }
}

/// QuickBooks' 2050 for a text outside its length limits.
fn length(field: &str, text: &str, min: usize, max: usize) -> Result<(), Fault> {
    let supplied = text.chars().count();
    if (min..=max).contains(&supplied) {
        return Ok(());
    }
    let detail =
        format!("String length specified does not match the supported length. Min:{min} Max:{max} supported. Supplied length:{supplied}.");
    Err(Fault::validation("2050", "String length is either shorter or longer than supported by specification", detail, field))
}

fn merge(item: &mut Value, fields: &Map<String, Value>) {
    for (name, value) in fields {
        if !["Id", "SyncToken", "sparse", "domain", "MetaData"].contains(&name.as_str()) {
            item[name.as_str()] = value.clone();
        }
    }
}

fn account_json(id: u64, name: &str, active: bool, now: &str) -> Value {
    json!({
        "Name": name, "SubAccount": false, "FullyQualifiedName": name, "Active": active, "Classification": "Revenue",
        "AccountType": "Income", "AccountSubType": "SalesOfProductIncome", "CurrentBalance": 0, "CurrentBalanceWithSubAccounts": 0,
        "CurrencyRef": {"value": "USD", "name": "United States Dollar"}, "domain": "QBO", "sparse": false,
        "Id": id.to_string(), "SyncToken": "0", "MetaData": {"CreateTime": now, "LastUpdatedTime": now},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn realm() -> Realm {
        Realm::new(RealmConfig::new("123", "client", "secret"))
    }

    #[test]
    fn items_are_created_updated_sparsely_and_guarded_by_their_sync_token() {
        let mut realm = realm();
        let item = realm
            .write_item(
                &json!({"Name": "Gold", "Type": "Service", "IncomeAccountRef": {"value": "79"}, "UnitPrice": 20.5, "Description": "d"}),
            )
            .unwrap();
        assert_eq!((item["SyncToken"].as_str(), item["IncomeAccountRef"]["name"].as_str()), (Some("0"), Some("Sales of Product Income")));
        let id = item["Id"].clone();
        let updated = realm.write_item(&json!({"Id": id, "SyncToken": "0", "sparse": true, "UnitPrice": 25})).unwrap();
        assert_eq!(
            (updated["SyncToken"].as_str(), updated["UnitPrice"].as_i64(), updated["Description"].as_str()),
            (Some("1"), Some(25), Some("d"))
        );
        let stale = realm.write_item(&json!({"Id": id, "SyncToken": "0", "sparse": true, "Active": false})).unwrap_err();
        assert_eq!(stale.code, "5010");
        let full = realm.write_item(&json!({"Id": id, "SyncToken": "1", "Name": "Gold", "IncomeAccountRef": {"value": "79"}})).unwrap();
        assert!(full["Description"].is_null(), "a full update clears what it leaves out: {full}");
    }

    #[test]
    fn names_are_unique_without_case_and_references_must_be_live() {
        let mut realm = realm();
        realm.write_item(&json!({"Name": "Gold", "Type": "NonInventory"})).unwrap();
        assert_eq!(realm.write_item(&json!({"Name": "gold", "Type": "NonInventory"})).unwrap_err().code, "6240");
        assert_eq!(realm.write_item(&json!({"Name": "x".repeat(101), "Type": "NonInventory"})).unwrap_err().code, "2050");
        assert_eq!(
            realm.write_item(&json!({"Name": "Silver", "Type": "Service"})).unwrap_err().code,
            "2020",
            "a service needs an income account"
        );
        assert_eq!(
            realm.write_item(&json!({"Name": "Silver", "Type": "Service", "IncomeAccountRef": {"value": "80"}})).unwrap_err().code,
            "610"
        );
        assert_eq!(
            realm.write_item(&json!({"Name": "Silver", "Type": "Service", "IncomeAccountRef": {"value": "9"}})).unwrap_err().code,
            "2500"
        );
        assert_eq!(realm.write_item(&json!({"Name": "Silver", "Colour": "grey"})).unwrap_err().code, "2010");
        assert_eq!(realm.write_item(&json!({"Id": "999", "SyncToken": "0", "Name": "Nope"})).unwrap_err().code, "610");
    }

    #[test]
    fn a_realm_takes_500_calls_a_minute_and_40_batches() {
        let start = Instant::now();
        let mut realm = realm();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let calls = (0..501).filter(|i| realm.spend(Limit::Call, at(i * 110))).count();
        assert_eq!(calls, 500, "the 501st call falls inside the minute of the first");
        let mut realm = self::realm();
        let batches = (0..41).filter(|i| realm.spend(Limit::Batch, at(i * 150))).count();
        assert_eq!(batches, 40);
        assert!(realm.spend(Limit::Call, at(41 * 150)), "a plain call still fits the minute's 500");
    }

    #[test]
    fn a_refresh_rotates_the_refresh_token_when_configured() {
        let mut realm = realm();
        let first = realm.grant(true);
        let second = realm.grant(false);
        assert_ne!(first["refresh_token"], second["refresh_token"]);
        assert!(realm.opens(first["access_token"].as_str().unwrap()) && realm.opens(second["access_token"].as_str().unwrap()));
        realm.expire_access_tokens();
        assert!(!realm.opens(second["access_token"].as_str().unwrap()));
        realm.config.rotate_refresh_tokens = false;
        assert_eq!(realm.grant(false)["refresh_token"], second["refresh_token"]);
    }
}

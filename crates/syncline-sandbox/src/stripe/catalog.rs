//! Products and prices: create, retrieve, update, list (with `expand`), search, and a product's
//! delete — with Stripe's checks and the events each change makes.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use serde_json::{Map, Value, json};

use super::account::{Account, From};
use super::form::Form;
use super::{invalid, list_envelope, missing_param, new_id};
use crate::emulate::Answer;

const PRODUCT_WRITES: [&str; 11] =
    ["name", "description", "active", "metadata", "unit_label", "url", "images", "shippable", "statement_descriptor", "tax_code", "expand"];

/// What a write needs besides its parameters: the time, and its idempotency key for the event.
pub(crate) struct Write<'a> {
    pub now: i64,
    pub key: Option<&'a str>,
}

pub(crate) fn create_product(account: &mut Account, form: &Form, write: &Write) -> Result<Value, Answer> {
    let known: Vec<&str> = PRODUCT_WRITES.iter().copied().chain(["id", "type", "default_price_data"]).collect();
    form.only(&known)?;
    let name = form.get("name").ok_or_else(|| missing_param("name"))?;
    let id = form.get("id").map_or_else(|| new_id("prod", 14), str::to_owned);
    if account.products.get(&id).is_some() {
        return Err(invalid("resource_already_exists", "id", "Product already exists.".into()));
    }
    let livemode = account.config.livemode();
    let mut product = json!({
        "id": id, "object": "product", "active": true, "created": write.now, "default_price": null,
        "description": null, "features": [], "images": [], "livemode": livemode, "marketing_features": [],
        "metadata": {}, "name": name, "package_dimensions": null, "shippable": null, "statement_descriptor": null,
        "tax_code": null, "type": form.get("type").unwrap_or("service"), "unit_label": null, "updated": write.now, "url": null,
    });
    apply_product_fields(&mut product, form)?;
    let price = if form.has("default_price_data") { Some(price_from(account, form, "default_price_data", &id, write.now)?) } else { None };
    if let Some(price) = &price {
        product["default_price"] = price["id"].clone();
    }
    account.products.insert(product.clone());
    account.emit("product.created", &product, None, write.key, write.now);
    if let Some(price) = price {
        account.prices.insert(price.clone());
        account.emit("price.created", &price, None, write.key, write.now);
    }
    Ok(product)
}

pub(crate) fn update_product(account: &mut Account, id: &str, form: &Form, write: &Write) -> Result<Value, Answer> {
    let known: Vec<&str> = PRODUCT_WRITES.iter().copied().chain(["default_price"]).collect();
    form.only(&known)?;
    let mut product = account.product(id)?.clone();
    if let Some(price_id) = form.get("default_price") {
        let price = account
            .prices
            .get(price_id)
            .ok_or_else(|| invalid("resource_missing", "default_price", format!("No such price: '{price_id}'")))?;
        if price["product"] != id {
            return Err(invalid(
                "parameter_invalid",
                "default_price",
                format!("The price '{price_id}' does not belong to product '{id}'."),
            ));
        }
        if price["active"] != true {
            return Err(invalid(
                "parameter_invalid",
                "default_price",
                "The price specified is inactive. This field only accepts active prices.".into(),
            ));
        }
        product["default_price"] = json!(price_id);
    }
    apply_product_fields(&mut product, form)?;
    let previous = previous_attributes(account.product(id)?, &product);
    if !previous.is_empty() {
        product["updated"] = json!(write.now);
        *account.products.get_mut(id).expect("read above") = product.clone();
        account.emit("product.updated", &product, Some(previous), write.key, write.now);
    }
    Ok(product)
}

/// An update event's `previous_attributes`: each field `after` changed, with its value before.
fn previous_attributes(before: &Value, after: &Value) -> Map<String, Value> {
    let fields = after.as_object().expect("Stripe objects are objects");
    fields.iter().filter(|(k, v)| before[k.as_str()] != **v).map(|(k, _)| (k.clone(), before[k.as_str()].clone())).collect()
}

/// Stripe refuses to delete a product that has prices: archive it (`active=false`) instead.
pub(crate) fn delete_product(account: &mut Account, id: &str, write: &Write) -> Result<Value, Answer> {
    let product = account.product(id)?.clone();
    if account.prices.live().any(|p| p["product"] == id) {
        return Err(invalid(
            "resource_in_use",
            "",
            "This product cannot be deleted because it has one or more user-created prices.".into(),
        ));
    }
    account.products.delete(id);
    account.emit("product.deleted", &product, None, write.key, write.now);
    Ok(json!({"id": id, "object": "product", "deleted": true}))
}

/// The fields a create and an update share; an empty string unsets a nullable one.
fn apply_product_fields(product: &mut Value, form: &Form) -> Result<(), Answer> {
    if let Some(name) = form.get("name") {
        if name.is_empty() {
            return Err(invalid("parameter_invalid_empty", "name", "You passed an empty string for 'name'. We assume empty values are an attempt to unset a parameter; however 'name' cannot be unset. You should remove 'name' from your request or supply a non-empty value.".into()));
        }
        product["name"] = json!(name);
    }
    for field in ["description", "unit_label", "url", "statement_descriptor", "tax_code"] {
        if let Some(value) = form.get(field) {
            product[field] = if value.is_empty() { Value::Null } else { json!(value) };
        }
    }
    for field in ["active", "shippable"] {
        if let Some(value) = form.boolean(field)? {
            product[field] = json!(value);
        }
    }
    if form.has("images") {
        product["images"] = json!(form.list("images"));
    }
    apply_metadata(product, form)
}

/// Metadata updates merge: a key set to "" is removed, and `metadata=` clears them all.
fn apply_metadata(object: &mut Value, form: &Form) -> Result<(), Answer> {
    if form.get("metadata") == Some("") {
        object["metadata"] = json!({});
    }
    let updates = form.hash("metadata");
    if let Some((key, _)) = updates.iter().find(|(k, _)| k.chars().count() > 40) {
        return Err(invalid("parameter_invalid", &format!("metadata[{key}]"), "Metadata keys can be at most 40 characters long.".into()));
    }
    if let Some((key, _)) = updates.iter().find(|(_, v)| v.chars().count() > 500) {
        return Err(invalid(
            "parameter_invalid",
            &format!("metadata[{key}]"),
            "Metadata values can be at most 500 characters long.".into(),
        ));
    }
    let metadata = object["metadata"].as_object_mut().expect("metadata is an object");
    for (key, value) in updates {
        if value.is_empty() {
            metadata.remove(&key);
        } else {
            metadata.insert(key, json!(value));
        }
    }
    if metadata.len() > 50 {
        return Err(invalid("parameter_invalid", "metadata", "You can specify up to 50 keys in metadata.".into()));
    }
    Ok(())
}

/// A new price of `product` from the parameters under `prefix` (`default_price_data`) or at the
/// top level (`""`).
fn price_from(account: &Account, form: &Form, prefix: &str, product: &str, now: i64) -> Result<Value, Answer> {
    let name = |field: &str| if prefix.is_empty() { field.to_owned() } else { format!("{prefix}[{field}]") };
    let currency = form.get(&name("currency")).ok_or_else(|| missing_param(&name("currency")))?;
    if currency.len() != 3 || !currency.chars().all(|c| c.is_ascii_lowercase()) {
        return Err(invalid(
            "parameter_invalid",
            &name("currency"),
            format!("Invalid currency: {currency}. Stripe currently supports these currencies: usd, eur, gbp, crc, …"),
        ));
    }
    let amount = match (form.integer(&name("unit_amount"))?, form.get(&name("unit_amount_decimal"))) {
        (Some(amount), _) if amount >= 0 => amount.to_string(),
        (Some(_), _) => {
            return Err(invalid(
                "parameter_invalid_integer",
                &name("unit_amount"),
                "This value must be greater than or equal to 0.".into(),
            ));
        }
        (None, Some(decimal)) if decimal.parse::<f64>().is_ok_and(|d| d >= 0.0) => decimal.to_owned(),
        (None, _) => return Err(missing_param(&name("unit_amount"))),
    };
    let recurring = recurring(form, &name("recurring"))?;
    Ok(json!({
        "id": new_id("price", 24), "object": "price", "active": true, "billing_scheme": "per_unit", "created": now,
        "currency": currency, "custom_unit_amount": null, "livemode": account.config.livemode(), "lookup_key": form.get(&name("lookup_key")),
        "metadata": {}, "nickname": form.get(&name("nickname")), "product": product, "recurring": recurring,
        "tax_behavior": "unspecified", "tiers_mode": null, "transform_quantity": null,
        "type": if recurring.is_some() { "recurring" } else { "one_time" },
        "unit_amount": amount.parse::<i64>().ok(), "unit_amount_decimal": amount,
    }))
}

/// `recurring[interval]` and `recurring[interval_count]`, when given.
fn recurring(form: &Form, name: &str) -> Result<Option<Value>, Answer> {
    let fields = form.hash(name);
    let Some(interval) = fields.get("interval") else { return Ok(None) };
    if !["day", "week", "month", "year"].contains(&interval.as_str()) {
        return Err(invalid(
            "parameter_invalid",
            &format!("{name}[interval]"),
            format!("Invalid {name}[interval]: must be one of day, week, month, or year"),
        ));
    }
    let count = fields
        .get("interval_count")
        .map_or(Ok(1), |c| c.parse::<i64>())
        .map_err(|_| invalid("parameter_invalid_integer", &format!("{name}[interval_count]"), "Invalid integer".into()))?;
    Ok(Some(json!({"interval": interval, "interval_count": count, "meter": null, "trial_period_days": null, "usage_type": "licensed"})))
}

pub(crate) fn create_price(account: &mut Account, form: &Form, write: &Write) -> Result<Value, Answer> {
    form.only(&[
        "product",
        "currency",
        "unit_amount",
        "unit_amount_decimal",
        "recurring",
        "nickname",
        "active",
        "metadata",
        "lookup_key",
        "expand",
    ])?;
    let product = form.get("product").ok_or_else(|| missing_param("product"))?;
    account.product(product)?;
    let mut price = price_from(account, form, "", product, write.now)?;
    if let Some(active) = form.boolean("active")? {
        price["active"] = json!(active);
    }
    apply_metadata(&mut price, form)?;
    account.prices.insert(price.clone());
    account.emit("price.created", &price, None, write.key, write.now);
    Ok(price)
}

/// A price's amount and currency never change; its `active`, nickname, lookup key and metadata
/// may. The default price of a product cannot be archived.
pub(crate) fn update_price(account: &mut Account, id: &str, form: &Form, write: &Write) -> Result<Value, Answer> {
    form.only(&["active", "nickname", "metadata", "lookup_key", "expand"])?;
    let before = account.price(id)?.clone();
    let mut price = before.clone();
    if let Some(active) = form.boolean("active")? {
        let product = before["product"].as_str().unwrap_or_default();
        if !active && account.products.get(product).is_some_and(|p| p["default_price"] == id) {
            return Err(invalid(
                "parameter_invalid",
                "active",
                "This price cannot be archived because it is the default price of its product.".into(),
            ));
        }
        price["active"] = json!(active);
    }
    for field in ["nickname", "lookup_key"] {
        if let Some(value) = form.get(field) {
            price[field] = if value.is_empty() { Value::Null } else { json!(value) };
        }
    }
    apply_metadata(&mut price, form)?;
    let previous = previous_attributes(&before, &price);
    if !previous.is_empty() {
        *account.prices.get_mut(id).expect("read above") = price.clone();
        account.emit("price.updated", &price, Some(previous), write.key, write.now);
    }
    Ok(price)
}

/// Which fields of listed (`data.x`) or single (`x`) objects to expand: only `allowed` can be.
pub(crate) fn expansions(form: &Form, allowed: &str, listed: bool) -> Result<bool, Answer> {
    let mut expand = false;
    for path in form.list("expand") {
        let field = if listed { path.strip_prefix("data.") } else { Some(path) };
        if field != Some(allowed) {
            return Err(invalid("parameter_invalid", "expand", format!("This property cannot be expanded ({path}).")));
        }
        expand = true;
    }
    Ok(expand)
}

/// A product with its default price expanded (when it has one).
pub(crate) fn expanded_product(account: &Account, product: &Value) -> Value {
    let mut product = product.clone();
    if let Some(price) = product["default_price"].as_str().and_then(|id| account.prices.get(id)) {
        product["default_price"] = price.clone();
    }
    product
}

/// A price with its product expanded.
pub(crate) fn expanded_price(account: &Account, price: &Value) -> Value {
    let mut price = price.clone();
    if let Some(product) = price["product"].as_str().and_then(|id| account.products.get(id)) {
        price["product"] = product.clone();
    }
    price
}

/// `GET /v1/products`: `active`, `created`, `ids[]`, `type`, `url`, `shippable` filters.
pub(crate) fn list_products(account: &Account, form: &Form) -> Result<Value, Answer> {
    form.only(&["limit", "starting_after", "ending_before", "active", "created", "ids", "type", "url", "shippable", "expand"])?;
    let expand = expansions(form, "default_price", true)?;
    let (active, shippable, created) = (form.boolean("active")?, form.boolean("shippable")?, form.range("created")?);
    let ids = form.list("ids");
    if !ids.is_empty() && (form.has("starting_after") || form.has("ending_before")) {
        return Err(invalid(
            "parameter_invalid",
            "ids",
            "You may not specify `ids` together with `starting_after` or `ending_before`.".into(),
        ));
    }
    let (kind, url) = (form.get("type"), form.get("url"));
    let keep = |p: &Value| {
        active.is_none_or(|a| p["active"] == a)
            && shippable.is_none_or(|s| p["shippable"] == s)
            && created.holds(p["created"].as_i64().unwrap_or_default())
            && (ids.is_empty() || ids.contains(&p["id"].as_str().unwrap_or_default()))
            && kind.is_none_or(|k| p["type"] == k)
            && url.is_none_or(|u| p["url"] == u)
    };
    let (page, more) = account.products.page(cursor(form), limit(form)?, "product", keep)?;
    let data = page.into_iter().map(|p| if expand { expanded_product(account, p) } else { p.clone() }).collect();
    Ok(list_envelope("/v1/products", data, more))
}

/// `GET /v1/prices`: `active`, `currency`, `product`, `type`, `created`, `lookup_keys[]` filters.
pub(crate) fn list_prices(account: &Account, form: &Form) -> Result<Value, Answer> {
    form.only(&[
        "limit",
        "starting_after",
        "ending_before",
        "active",
        "created",
        "currency",
        "product",
        "type",
        "lookup_keys",
        "recurring",
        "expand",
    ])?;
    let expand = expansions(form, "product", true)?;
    let (active, created) = (form.boolean("active")?, form.range("created")?);
    let (currency, product, kind) = (form.get("currency"), form.get("product"), form.get("type"));
    let lookup_keys = form.list("lookup_keys");
    let keep = |p: &Value| {
        active.is_none_or(|a| p["active"] == a)
            && created.holds(p["created"].as_i64().unwrap_or_default())
            && currency.is_none_or(|c| p["currency"] == c)
            && product.is_none_or(|id| p["product"] == id)
            && kind.is_none_or(|k| p["type"] == k)
            && (lookup_keys.is_empty() || lookup_keys.contains(&p["lookup_key"].as_str().unwrap_or_default()))
    };
    let (page, more) = account.prices.page(cursor(form), limit(form)?, "price", keep)?;
    let data = page.into_iter().map(|p| if expand { expanded_price(account, p) } else { p.clone() }).collect();
    Ok(list_envelope("/v1/prices", data, more))
}

/// Where a list page starts.
pub(crate) fn cursor(form: &Form) -> From<'_> {
    match (form.get("starting_after"), form.get("ending_before")) {
        (Some(id), _) => From::After(id),
        (None, Some(id)) => From::Before(id),
        (None, None) => From::Newest,
    }
}

/// `limit`: 1 to 100, 10 when absent.
pub(crate) fn limit(form: &Form) -> Result<usize, Answer> {
    match form.integer("limit")? {
        None => Ok(10),
        Some(n @ 1..=100) => Ok(n as usize),
        Some(_) => Err(invalid(
            "parameter_invalid_integer",
            "limit",
            "This value must be greater than or equal to 1 and less than or equal to 100.".into(),
        )),
    }
}

/// `GET /v1/products/search`: clauses `field:'value'`, `field~'value'` (contains) and
/// `metadata['key']:'value'` joined by `AND`, on `active`, `name`, `description`, `url`,
/// `shippable` and metadata; pages by an opaque `page` token, newest first.
pub(crate) fn search_products(account: &Account, form: &Form) -> Result<Value, Answer> {
    form.only(&["query", "limit", "page", "expand"])?;
    let expand = expansions(form, "default_price", true)?;
    let query = form.get("query").ok_or_else(|| missing_param("query"))?;
    let clauses = parse_search(query)?;
    let keep = |p: &Value| {
        clauses.iter().all(|(field, contains, value)| {
            let actual = match field.strip_prefix("metadata['").and_then(|f| f.strip_suffix("']")) {
                Some(key) => p["metadata"][key].clone(),
                None => p[field.as_str()].clone(),
            };
            let text = match &actual {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            };
            if *contains { text.to_lowercase().contains(&value.to_lowercase()) } else { text == *value }
        })
    };
    let skip = match form.get("page") {
        None => 0,
        Some(token) => token
            .strip_prefix("page_")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| invalid("parameter_invalid", "page", format!("Invalid page: {token}")))?,
    };
    let matching: Vec<&Value> = account.products.live().rev().filter(|p| keep(p)).collect();
    let limit = limit(form)?;
    let page: Vec<Value> =
        matching.iter().skip(skip).take(limit).map(|p| if expand { expanded_product(account, p) } else { (*p).clone() }).collect();
    let more = matching.len() > skip + limit;
    Ok(json!({
        "object": "search_result", "url": "/v1/products/search", "data": page, "has_more": more,
        "next_page": more.then(|| format!("page_{}", skip + limit)), "total_count": matching.len(),
    }))
}

/// `field:'value'` / `field~'value'` clauses joined by ` AND `.
fn parse_search(query: &str) -> Result<Vec<(String, bool, String)>, Answer> {
    const FIELDS: [&str; 5] = ["active", "name", "description", "url", "shippable"];
    let bad = |clause: &str| {
        invalid(
            "parameter_invalid",
            "query",
            format!(
                "Invalid search query: the clause `{clause}` is not supported (use field:'value' or field~'value' on {} or metadata['key'])",
                FIELDS.join(", ")
            ),
        )
    };
    let mut clauses = Vec::new();
    for clause in query.split(" AND ").map(str::trim) {
        let at = clause.find([':', '~']).ok_or_else(|| bad(clause))?;
        let (field, rest) = clause.split_at(at);
        let value = rest[1..].trim().trim_matches(|c| c == '\'' || c == '"');
        if !FIELDS.contains(&field) && !field.starts_with("metadata['") {
            return Err(bad(clause));
        }
        clauses.push((field.to_owned(), rest.starts_with('~'), value.to_owned()));
    }
    Ok(clauses)
}

/// Test and demo products made at once, each with a default price (no budget spent, one
/// `product.created` and one `price.created` event each), named `Plan <n>`.
pub(crate) fn generate(account: &mut Account, count: u64, now: i64) -> Vec<String> {
    let mut ids = Vec::with_capacity(count as usize);
    // numbered on from the products already there, so names stay distinct
    let first = account.products.live().count() as u64;
    for k in first..first + count {
        let form = Form::parse(
            format!(
                "name=Plan+{k}&description=Membership+plan+{k}&metadata[sku]=SKU-{k:06}&default_price_data[currency]=usd&default_price_data[unit_amount]={}",
                500 + k * 37 % 100_000
            )
            .as_bytes(),
        );
        let product = create_product(account, &form, &Write { now, key: None }).expect("generated products are valid");
        ids.push(product["id"].as_str().expect("a product has an id").to_owned());
    }
    ids
}

/// A status for a create: Stripe answers 200, not 201.
pub(crate) fn ok(result: Result<Value, Answer>) -> Answer {
    result.map_or_else(|refused| refused, |body| (StatusCode::OK, body))
}

/// Products that are not deleted, by id (for tests in the same process).
pub(crate) fn products(account: &Account) -> BTreeMap<String, Value> {
    account.products.live().map(|p| (p["id"].as_str().unwrap_or_default().to_owned(), expanded_product(account, p))).collect()
}

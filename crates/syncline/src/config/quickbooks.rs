//! QuickBooks as a connection: the company, and the OAuth app that reaches it.

use super::error::ConfigError;
use super::raw::{RawNameTaken, RawQuickBooks, RawQuickBooksItems};
use super::settings::{Ctx, Secret, SinkSettings};
use serde_saphyr::Location;
use syncline_connectors::quickbooks::{
    DEFAULT_AUTHORIZE_URL, DEFAULT_BASE_URL, DEFAULT_TOKEN_URL, ItemSettings, NameTaken, QuickBooksProfile,
};

/// The default and largest records per sink call (the sink sends them 30 a batch call), and
/// change detection on: every call spends the company's budget.
pub(super) const BATCH: u64 = 300;

pub(super) fn sink(ctx: &Ctx, path: &str, q: &RawQuickBooksItems) -> Result<SinkSettings, ConfigError> {
    let spath = format!("{path}.sink.quickbooks");
    let place = [&q.object, &q.currency].into_iter().flatten().next().map_or(Location::UNKNOWN, |a| a.referenced);
    if let Some(object) = &q.object {
        let object = ctx.expand(object, &format!("{spath}.object"))?;
        if object != "items" {
            return Err(ctx.err(&place, &format!("{spath}.object"), format!("{object:?}: a QuickBooks sink writes `items`")));
        }
    }
    let currency = match &q.currency {
        Some(c) => ctx.expand(c, &format!("{spath}.currency"))?.to_lowercase(),
        None => "usd".to_owned(),
    };
    if currency.len() != 3 || !currency.chars().all(|c| c.is_ascii_alphabetic()) {
        return Err(ctx.err(&place, &format!("{spath}.currency"), format!("{currency:?} is not an ISO currency code")));
    }
    let on_name_taken = match q.on_name_taken {
        Some(RawNameTaken::Link) => NameTaken::Link,
        Some(RawNameTaken::Suffix) | None => NameTaken::Suffix,
    };
    let batches_per_minute = ctx.positive(&q.batches_per_minute, &format!("{spath}.batches_per_minute"), 1..=40, 40)? as u32;
    Ok(SinkSettings::QuickBooks { items: ItemSettings { currency, on_name_taken }, batches_per_minute, connection: None })
}

/// The company and app, with the client secret still where the config says.
#[derive(Debug, Clone)]
pub struct QuickBooksConnection {
    pub profile: QuickBooksProfile,
    pub client_secret: Secret,
    pub redirect_uri: String,
}

pub(super) fn connection(ctx: &Ctx, q: &RawQuickBooks) -> Result<QuickBooksConnection, ConfigError> {
    let path = "connections.quickbooks";
    let place = q.realm_id.referenced;
    let client_secret =
        ctx.secret_or_file(&q.client_secret, &q.client_secret_file, path, "client_secret", &place, |s, key| ctx.secret(s, key))?;
    let url = |value: &Option<super::raw::At<String>>, key: &str, default: &str| match value {
        Some(url) => ctx.http_url(url, &format!("{path}.{key}")),
        None => Ok(default.to_owned()),
    };
    let realm_id = ctx.expand(&q.realm_id, &format!("{path}.realm_id"))?;
    if realm_id.is_empty() || !realm_id.chars().all(|c| c.is_ascii_digit()) {
        return Err(ctx.err(
            &q.realm_id.referenced,
            &format!("{path}.realm_id"),
            format!("{realm_id:?}: a realm id is the company's number"),
        ));
    }
    let client_id = ctx.expand(&q.client_id, &format!("{path}.client_id"))?;
    let mut profile = QuickBooksProfile::new(&url(&q.base_url, "base_url", DEFAULT_BASE_URL)?, &realm_id, &client_id, "");
    profile.token_url = url(&q.token_url, "token_url", DEFAULT_TOKEN_URL)?;
    profile.authorize_url = url(&q.authorize_url, "authorize_url", DEFAULT_AUTHORIZE_URL)?;
    let redirect_uri = ctx.http_url(&q.redirect_uri, &format!("{path}.redirect_uri"))?;
    Ok(QuickBooksConnection { profile, client_secret, redirect_uri })
}

//! Stripe as a pipeline's source: the profile (URL, key, request rate) of an account whose
//! products are read.

use super::error::ConfigError;
use super::raw::RawStripe;
use super::settings::{Ctx, SourceSettings};
use serde_saphyr::Location;
use syncline_connectors::stripe::{DEFAULT_BASE_URL, StripeProfile};

pub(super) fn source(ctx: &Ctx, path: &str, s: &RawStripe) -> Result<SourceSettings, ConfigError> {
    let spath = format!("{path}.source.stripe");
    let place = [&s.key, &s.key_file, &s.base_url].into_iter().flatten().next().map_or(Location::UNKNOWN, |a| a.referenced);
    let key = ctx.secret_or_file(&s.key, &s.key_file, &spath, "key", &place, |k, key| ctx.secret(k, key))?;
    let base_url = match &s.base_url {
        Some(url) => ctx.http_url(url, &format!("{spath}.base_url"))?,
        None => DEFAULT_BASE_URL.to_owned(),
    };
    if let Some(object) = &s.object {
        let object = ctx.expand(object, &format!("{spath}.object"))?;
        if object != "products" {
            return Err(ctx.err(
                &place,
                &format!("{spath}.object"),
                format!("{object:?}: a Stripe source reads `products` (each with its default price)"),
            ));
        }
    }
    let mut profile = StripeProfile::new(&base_url, "");
    // the mode's rate is known once the key is read; the config may only lower it
    let rate = ctx.positive(&s.requests_per_second, &format!("{spath}.requests_per_second"), 1..=100, 0)?;
    profile.requests_per_second = rate as u32;
    Ok(SourceSettings::Stripe { key, profile })
}

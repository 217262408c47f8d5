//! HubSpot as a pipeline's source or sink, and as a flow connection: the profile (URL, token,
//! tier, budget) they share, and each one's stream.

use super::error::ConfigError;
use super::raw::{At, RawConnection, RawHubSpot, RawTier};
use super::settings::{Ctx, Secret, SinkSettings, SourceSettings, parse_duration};
use serde_saphyr::Location;
use syncline_connectors::hubspot::{
    DEFAULT_BASE_URL, DEFAULT_SETTLE, HubSpotProfile, MAX_INPUTS_PER_CALL, OWNERS, Properties, SinkStream, SourceStream, Tier, object_name,
};

/// The profile keys, wherever they are written (a source, a sink, `connections.hubspot`).
struct ProfileKeys<'a> {
    base_url: Option<&'a At<String>>,
    token: Option<&'a At<String>>,
    token_file: Option<&'a At<String>>,
    tier: Option<RawTier>,
    calls_per_10s: Option<&'a At<u64>>,
    in_flight: Option<&'a At<u64>>,
}

/// The profile, with its token still where the config says (inline or in a file: read when
/// the pipeline is opened).
fn profile(ctx: &Ctx, path: &str, parent: &Location, keys: ProfileKeys) -> Result<(Secret, HubSpotProfile), ConfigError> {
    let token = ctx.secret_or_file(&keys.token.cloned(), &keys.token_file.cloned(), path, "token", parent, |t, key| ctx.secret(t, key))?;
    let base_url = match keys.base_url {
        Some(url) => ctx.http_url(url, &format!("{path}.base_url"))?,
        None => DEFAULT_BASE_URL.to_owned(),
    };
    let mut profile = HubSpotProfile::new(&base_url, "");
    let burst = u64::from(tier(keys.tier).per_ten_seconds());
    profile.calls_per_ten_seconds = ctx.positive(&keys.calls_per_10s.cloned(), &format!("{path}.calls_per_10s"), 1..=burst, burst)? as u32;
    profile.in_flight = ctx.positive(&keys.in_flight.cloned(), &format!("{path}.in_flight"), 1..=32, 4)?;
    Ok((token, profile))
}

fn object(ctx: &Ctx, path: &str, object: &Option<At<String>>) -> Result<String, ConfigError> {
    match object {
        Some(object) => ctx.expand(object, &format!("{path}.object")),
        None => Ok("contacts".to_owned()),
    }
}

impl<'a> ProfileKeys<'a> {
    fn of(h: &'a RawHubSpot) -> ProfileKeys<'a> {
        ProfileKeys {
            base_url: h.base_url.as_ref(),
            token: h.token.as_ref(),
            token_file: h.token_file.as_ref(),
            tier: h.tier,
            calls_per_10s: h.calls_per_10s.as_ref(),
            in_flight: h.in_flight.as_ref(),
        }
    }
}

/// Where a HubSpot section is in the file, for the problems of keys it lacks.
fn place(h: &RawHubSpot) -> Location {
    [&h.token, &h.token_file, &h.object, &h.base_url].into_iter().flatten().next().map_or(Location::UNKNOWN, |a| a.referenced)
}

pub(super) fn source(ctx: &Ctx, path: &str, h: &RawHubSpot) -> Result<SourceSettings, ConfigError> {
    let spath = format!("{path}.source.hubspot");
    if let Some(id) = &h.id_property {
        return Err(ctx.err(&id.referenced, &format!("{spath}.id_property"), "a source reads every object; id_property is a sink's"));
    }
    let (token, profile) = profile(ctx, &spath, &place(h), ProfileKeys::of(h))?;
    let mut stream = SourceStream::new(&object(ctx, &spath, &h.object)?, &[]);
    // associations, pipelines and owners are not objects: the options of an objects read do not apply
    let history = h.history.as_ref().and_then(|_| h.object.as_ref().or(h.token.as_ref()).or(h.token_file.as_ref()));
    let other = [
        ("associations", h.associations.as_ref(), "links"),
        ("pipelines", h.pipelines.as_ref(), "pipeline stages"),
        ("history", history, "property values"),
    ];
    let mut others = other.iter().filter_map(|(key, at, what)| at.map(|at| (*key, at, *what)));
    let owners = (stream.object == OWNERS).then(|| h.object.as_ref().map(|at| ("object: owners", at, "owners"))).flatten();
    if let Some((key, at, what)) = others.next().or(owners) {
        if let Some((second, ..)) = others.next() {
            return Err(ctx.err(&at.referenced, &format!("{spath}.{second}"), format!("a source reads {key} or {second}, not both")));
        }
        let objects_only =
            [("properties", h.properties.is_some() || !h.exclude.is_empty()), ("raw", h.raw.is_some()), ("deletes", h.deletes.is_some())];
        if let Some((option, _)) = objects_only.iter().find(|(_, set)| *set) {
            let message = format!("{option} is what an objects source reads; a source of {key} reads {what}");
            return Err(ctx.err(&at.referenced, &format!("{spath}.{option}"), message));
        }
    }
    if let Some(to) = &h.associations {
        stream.associations = Some(ctx.expand(to, &format!("{spath}.associations"))?);
    }
    if let Some(of) = &h.pipelines {
        stream.pipelines = Some(object_name(&ctx.expand(of, &format!("{spath}.pipelines"))?));
    }
    if let Some(history) = &h.history {
        if history.is_empty() {
            return Err(ctx.err(&place(h), &format!("{spath}.history"), "name the properties whose history is read"));
        }
        stream.history = history.clone();
    }
    stream.properties = match &h.properties {
        Some(_) if !h.exclude.is_empty() => {
            let message = "exclude applies when every property is read; list properties or exclude some, not both";
            return Err(ctx.err(&place(h), &format!("{spath}.exclude"), message));
        }
        Some(listed) => Properties::Listed(listed.clone()),
        None => Properties::All { except: h.exclude.clone() },
    };
    stream.raw = h.raw.as_ref().is_none_or(|raw| raw.value);
    stream.deletes = h.deletes.as_ref().is_none_or(|deletes| deletes.value);
    stream.settle = match &h.settle {
        Some(settle) => parse_duration(&ctx.expand(settle, &format!("{spath}.settle"))?)
            .map_err(|why| ctx.err(&settle.referenced, &format!("{spath}.settle"), why))?,
        None => DEFAULT_SETTLE,
    };
    Ok(SourceSettings::HubSpot { token, profile, stream })
}

/// A HubSpot sink: batch calls of up to 100 inputs, change detection on by default (every call
/// spends the portal's budget).
pub(super) fn sink(ctx: &Ctx, path: &str, h: &RawHubSpot) -> Result<SinkSettings, ConfigError> {
    let spath = format!("{path}.sink.hubspot");
    if let Some(settle) = &h.settle {
        return Err(ctx.err(&settle.referenced, &format!("{spath}.settle"), "settle applies to a HubSpot source"));
    }
    if h.properties.is_some() || !h.exclude.is_empty() {
        let message = "properties and exclude are what a HubSpot source reads; a sink writes the mapped fields";
        return Err(ctx.err(&place(h), &format!("{spath}.properties"), message));
    }
    for (key, set) in [("associations", &h.associations), ("pipelines", &h.pipelines)] {
        if let Some(at) = set {
            return Err(ctx.err(&at.referenced, &format!("{spath}.{key}"), format!("{key} are read by a HubSpot source")));
        }
    }
    if h.history.is_some() {
        return Err(ctx.err(&place(h), &format!("{spath}.history"), "history is read by a HubSpot source"));
    }
    for (key, flag) in [("raw", &h.raw), ("deletes", &h.deletes)] {
        if let Some(flag) = flag {
            return Err(ctx.err(&flag.referenced, &format!("{spath}.{key}"), format!("{key} applies to a HubSpot source")));
        }
    }
    let Some(id_property) = &h.id_property else {
        return Err(ctx.err(&place(h), &spath, "missing id_property (the unique property records are matched on)"));
    };
    let (token, profile) = profile(ctx, &spath, &id_property.referenced, ProfileKeys::of(h))?;
    let id_property = ctx.expand(id_property, &format!("{spath}.id_property"))?;
    let stream = SinkStream::new(&object(ctx, &spath, &h.object)?, &id_property);
    Ok(SinkSettings::HubSpot { token, profile, stream })
}

/// `connections.hubspot`: the portal flows read.
pub(super) fn connection(ctx: &Ctx, c: &RawConnection) -> Result<HubSpotProfile, ConfigError> {
    let path = "connections.hubspot";
    let keys = ProfileKeys {
        base_url: c.base_url.as_ref(),
        token: Some(&c.token),
        token_file: None,
        tier: c.tier,
        calls_per_10s: None,
        in_flight: None,
    };
    let (token, mut profile) = profile(ctx, path, &c.token.referenced, keys)?;
    profile.token = match token {
        Secret::Inline(token) => token,
        Secret::File(_) => unreachable!("connections take no token_file"),
    };
    Ok(profile)
}

/// Batch inputs per HubSpot call: the pipeline's `batch_size` is at most and by default 100.
pub(super) const BATCH: u64 = MAX_INPUTS_PER_CALL as u64;

pub(super) fn tier(tier: Option<RawTier>) -> Tier {
    match tier.unwrap_or(RawTier::Free) {
        RawTier::Free | RawTier::Starter => Tier::Free,
        RawTier::Professional | RawTier::Enterprise => Tier::Professional,
        RawTier::ApiLimitIncrease => Tier::LimitIncrease,
    }
}

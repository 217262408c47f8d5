//! A pipeline's schedule: cron fields (croner: POSIX/Vixie cron, seconds optional, `@daily`…)
//! read in an IANA time zone (chrono-tz), so `0 2 * * *` is 2 a.m. where the users are,
//! daylight saving included.

use chrono::{DateTime, SubsecRound, Utc};

use super::error::ConfigError;
use super::raw::RawSchedule;
use super::settings::Ctx;

#[derive(Debug, Clone)]
pub struct Schedule {
    pub cron: String,
    pub timezone: chrono_tz::Tz,
    /// A `reconcile --apply` at each slot rather than an incremental run.
    pub reconcile: bool,
    pattern: croner::Cron,
}

impl Schedule {
    /// The latest slot at or before `now` (None if the pattern has none).
    pub fn latest_at_or_before(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // slots are whole seconds (croner keeps the fraction of the time it is given)
        let now = now.trunc_subsecs(0).with_timezone(&self.timezone);
        self.pattern.find_previous_occurrence(&now, true).ok().map(|t| t.with_timezone(&Utc).trunc_subsecs(0))
    }

    /// The first slot after `at`.
    pub fn next_after(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let at = at.trunc_subsecs(0).with_timezone(&self.timezone);
        self.pattern.find_next_occurrence(&at, false).ok().map(|t| t.with_timezone(&Utc).trunc_subsecs(0))
    }
}

impl std::fmt::Display for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let job = if self.reconcile { ", reconcile" } else { "" };
        write!(f, "{} ({}{job})", self.cron, self.timezone)
    }
}

/// The schedule, or every problem in it (the cron and the time zone are checked apart).
pub(super) fn parse(ctx: &Ctx, path: &str, raw: &RawSchedule) -> Result<Schedule, Vec<ConfigError>> {
    let cron_path = format!("{path}.cron");
    let cron = ctx.expand(&raw.cron, &cron_path).and_then(|cron| {
        let pattern = croner::parser::CronParser::builder().build().parse(cron.trim());
        let pattern = pattern.map_err(|e| ctx.err(&raw.cron.referenced, &cron_path, format!("{cron:?} is not a cron schedule: {e}")))?;
        Ok((cron.trim().to_owned(), pattern))
    });
    let timezone = match &raw.timezone {
        None => Ok(chrono_tz::UTC),
        Some(zone) => ctx.expand(zone, &format!("{path}.timezone")).and_then(|name| {
            name.parse::<chrono_tz::Tz>().map_err(|_| {
                let close = super::did_you_mean(&name, chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name()));
                let hint =
                    close.map(|c| format!("; did you mean {c:?}?")).unwrap_or_else(|| " (an IANA name such as America/Costa_Rica)".into());
                ctx.err(&zone.referenced, &format!("{path}.timezone"), format!("unknown time zone {name:?}{hint}"))
            })
        }),
    };
    let ((cron, pattern), timezone) = match (cron, timezone) {
        (Ok(cron), Ok(timezone)) => (cron, timezone),
        (cron, timezone) => return Err([cron.err(), timezone.err()].into_iter().flatten().collect()),
    };
    let reconcile = raw.job == Some(super::raw::RawScheduledJob::Reconcile);
    let schedule = Schedule { cron, timezone, reconcile, pattern };
    if schedule.next_after(Utc::now()).is_none() {
        return Err(vec![ctx.err(&raw.cron.referenced, &cron_path, format!("{:?} never comes", schedule.cron))]);
    }
    Ok(schedule)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(cron: &str, zone: chrono_tz::Tz) -> Schedule {
        Schedule {
            cron: cron.into(),
            timezone: zone,
            reconcile: false,
            pattern: croner::parser::CronParser::builder().build().parse(cron).unwrap(),
        }
    }

    fn utc(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn slots_in_the_schedules_time_zone() {
        let every_15 = schedule("*/15 * * * *", chrono_tz::UTC);
        assert_eq!(every_15.latest_at_or_before(utc("2026-11-30T10:07:30Z")), Some(utc("2026-11-30T10:00:00Z")));
        assert_eq!(
            every_15.latest_at_or_before(utc("2026-11-30T10:15:00Z")),
            Some(utc("2026-11-30T10:15:00Z")),
            "a slot is due at its time"
        );
        assert_eq!(every_15.next_after(utc("2026-11-30T10:15:00Z")), Some(utc("2026-11-30T10:30:00Z")));
        let every_10_s = schedule("*/10 * * * * *", chrono_tz::UTC);
        assert_eq!(every_10_s.latest_at_or_before(utc("2026-11-30T10:07:31.750Z")), Some(utc("2026-11-30T10:07:30Z")), "whole seconds");
        // 2 a.m. in Costa Rica (UTC-6, no daylight saving) is 8 a.m. UTC
        let nightly = schedule("0 2 * * *", chrono_tz::America::Costa_Rica);
        assert_eq!(nightly.next_after(utc("2026-11-30T09:00:00Z")), Some(utc("2026-12-01T08:00:00Z")));
        assert_eq!(nightly.to_string(), "0 2 * * * (America/Costa_Rica)");
    }
}

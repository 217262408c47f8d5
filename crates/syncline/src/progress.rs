//! Progress of long runs: a bar on a terminal (rate and ETA only once there is data to base them
//! on), a plain line every few seconds otherwise, and the summary table at the end.

use crate::exit::Exit;
use comfy_table::Table;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};
use syncline_core::runner::Counts;
use syncline_core::{Progress, RunStatus};

pub struct Reporter {
    pipeline: String,
    bar: Option<ProgressBar>,
    total: Option<u64>,
    quiet: bool,
    started: Instant,
    last_line: Instant,
}

impl Reporter {
    /// `total` is the number of records expected, when the source could tell.
    /// Pipelines running at once each have a bar in `bars`.
    pub fn new(pipeline: &str, total: Option<u64>, quiet: bool, bars: &MultiProgress) -> Reporter {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = bars.add(ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr()));
            let template = match total {
                Some(_) => "{prefix} [{bar:30}] {human_pos}/{human_len} records {msg}",
                None => "{prefix} {spinner} {human_pos} records {msg}",
            };
            bar.set_style(ProgressStyle::with_template(template).expect("valid template").progress_chars("=> "));
            bar.set_prefix(pipeline.to_owned());
            bar.set_message("· starting");
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Reporter { pipeline: pipeline.to_owned(), bar, total, quiet, started: Instant::now(), last_line: Instant::now() }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }

    /// "· 1,234 records/s · ETA 12s · 5 rejected", from what was committed so far.
    fn message(&self, total: &Counts) -> String {
        let secs = self.started.elapsed().as_secs_f64();
        let mut parts = Vec::new();
        if total.read > 0 && secs >= 0.5 {
            let rate = total.read as f64 / secs;
            parts.push(format!("{} records/s", thousands(rate.round() as u64)));
            if let Some(expected) = self.total.filter(|&t| t > total.read) {
                parts.push(format!("ETA {}", eta(Duration::from_secs_f64((expected - total.read) as f64 / rate))));
            }
        }
        if total.rejected + total.failed > 0 {
            parts.push(format!("{} rejected", thousands(total.rejected + total.failed)));
        }
        parts.iter().map(|p| format!("· {p}")).collect::<Vec<_>>().join(" ")
    }
}

impl Progress for Reporter {
    fn update(&mut self, total: &Counts) {
        if let Some(bar) = &self.bar {
            bar.set_position(total.read);
            bar.set_message(self.message(total));
        } else if !self.quiet && self.last_line.elapsed() >= Duration::from_secs(5) {
            self.last_line = Instant::now();
            eprintln!(
                "{}: {} read, {} written {}",
                self.pipeline,
                thousands(total.read),
                thousands(total.created + total.updated),
                self.message(total)
            );
        }
    }
}

/// 1234567 → "1,234,567".
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn eta(left: Duration) -> String {
    let secs = left.as_secs();
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        _ => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
    }
}

/// One line of the end-of-run summary.
#[derive(Debug, Clone)]
pub struct RunRow {
    pub pipeline: String,
    pub mode: String,
    pub counts: Counts,
    pub took: Duration,
    pub status: RunStatus,
}

impl RunRow {
    pub fn failed(pipeline: &str, took: Duration) -> RunRow {
        RunRow { pipeline: pipeline.to_owned(), mode: "-".into(), counts: Counts::default(), took, status: RunStatus::Failed }
    }

    pub fn exit(&self) -> Exit {
        Exit::of(self.status)
    }
}

/// The end-of-run summary, one row per pipeline run. Counts that are zero in every row are
/// left out, so the usual summary fits an 80-column terminal as a table.
pub fn summary(rows: &[RunRow]) -> Table {
    type Count = fn(&Counts) -> u64;
    let counts: [(&str, Count); 6] = [
        ("read", |c| c.read),
        ("created", |c| c.created),
        ("updated", |c| c.updated),
        ("unchanged", |c| c.unchanged),
        ("rejected", |c| c.rejected),
        ("failed", |c| c.failed),
    ];
    let shown: Vec<(&str, Count)> =
        counts.into_iter().filter(|(name, count)| *name == "read" || rows.iter().any(|r| count(&r.counts) > 0)).collect();
    let mut header = vec!["pipeline", "mode"];
    header.extend(shown.iter().map(|(name, _)| *name));
    header.extend(["time", "status"]);
    let mut table = crate::output::table(&header);
    for r in rows {
        let mut cells = vec![r.pipeline.clone(), r.mode.clone()];
        cells.extend(shown.iter().map(|(_, count)| count(&r.counts).to_string()));
        cells.extend([format!("{:.1}s", r.took.as_secs_f64()), r.status.name().to_owned()]);
        table.add_row(cells);
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_fits_80_columns() {
        let counts = Counts { read: 1_000_000, created: 950_000, updated: 12_345, unchanged: 20_000, rejected: 50_000, failed: 1_234 };
        let mut rows = vec![RunRow {
            pipeline: "members-to-hubspot-production".into(),
            mode: "incremental".into(),
            counts,
            took: Duration::from_secs(3600),
            status: RunStatus::Interrupted,
        }];
        let lines = crate::output::render(&summary(&rows), Some(80));
        for line in &lines {
            assert!(line.chars().count() <= 80, "{} columns: {line}", line.chars().count());
        }
        let text = lines.join("\n");
        assert!(text.contains("created 950000") && text.contains("members-to-hubspot-production"), "{text}");
        // a short one is a bordered table
        rows[0].pipeline = "members".into();
        rows[0].counts = Counts { read: 5000, created: 4750, rejected: 250, ..Counts::default() };
        rows[0].status = RunStatus::Rejects;
        let lines = crate::output::render(&summary(&rows), Some(80));
        assert!(lines.iter().all(|l| l.chars().count() <= 80), "{lines:#?}");
        assert!(lines[0].starts_with('┌') && lines.len() == 5, "{lines:#?}");
        assert!(lines[1].contains("rejected") && !lines[1].contains("unchanged"), "only counts that are not all zero: {lines:#?}");
        let piped = crate::output::render(&summary(&rows), None);
        assert!(piped.iter().all(|l| l.is_ascii()), "{piped:#?}");
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(eta(Duration::from_secs(75)), "1m15s");
    }
}

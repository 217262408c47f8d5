//! Progress of long runs: a bar on a terminal, a plain line every few seconds otherwise, and
//! the summary table at the end.

use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};
use syncline_core::Progress;
use syncline_core::runner::Counts;

pub struct Reporter {
    pipeline: String,
    bar: Option<ProgressBar>,
    quiet: bool,
    started: Instant,
    last_line: Instant,
}

impl Reporter {
    /// `total` is the number of records expected, when the source could tell.
    pub fn new(pipeline: &str, total: Option<u64>, quiet: bool) -> Reporter {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = match total {
                Some(total) => ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr()),
                None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
            };
            let template = if total.is_some() {
                "{prefix} [{bar:30}] {pos}/{len} records · {per_sec} · ETA {eta} {msg}"
            } else {
                "{prefix} {spinner} {pos} records · {per_sec} {msg}"
            };
            bar.set_style(ProgressStyle::with_template(template).expect("valid template").progress_chars("=> "));
            bar.set_prefix(pipeline.to_owned());
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Reporter { pipeline: pipeline.to_owned(), bar, quiet, started: Instant::now(), last_line: Instant::now() }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Progress for Reporter {
    fn update(&mut self, total: &Counts) {
        if let Some(bar) = &self.bar {
            bar.set_position(total.read);
            if total.rejected > 0 {
                bar.set_message(format!("· {} rejected", total.rejected));
            }
        } else if !self.quiet && self.last_line.elapsed() >= Duration::from_secs(5) {
            self.last_line = Instant::now();
            let secs = self.started.elapsed().as_secs_f64().max(0.001);
            eprintln!(
                "{}: {} read, {} written, {} rejected ({:.0} records/s)",
                self.pipeline,
                total.read,
                total.created + total.updated,
                total.rejected,
                total.read as f64 / secs
            );
        }
    }
}

/// A table for terminal output, in the one style every command uses.
pub fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table.load_style(UTF8_BORDERS_ONLY);
    table.set_header(header.to_vec());
    table
}

/// The end-of-run summary, one row per pipeline run.
pub fn summary(rows: &[(String, String, Counts, Duration, String)]) -> String {
    let mut table = table(&["pipeline", "mode", "read", "created", "updated", "unchanged", "rejected", "failed", "time", "status"]);
    for (pipeline, mode, c, took, status) in rows {
        table.add_row([
            pipeline.clone(),
            mode.clone(),
            c.read.to_string(),
            c.created.to_string(),
            c.updated.to_string(),
            c.unchanged.to_string(),
            c.rejected.to_string(),
            c.failed.to_string(),
            format!("{:.1}s", took.as_secs_f64()),
            status.clone(),
        ]);
    }
    table.to_string()
}

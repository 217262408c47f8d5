//! What commands print, so it reads well on a terminal and parses well in a pipe: tables fitted
//! to the terminal's width (plain, space-aligned columns when piped), colour only on a terminal
//! (honouring `NO_COLOR` and `CLICOLOR_FORCE`), and writes that end the command quietly when
//! the reader goes away (`syncline runs | head -1`).

use comfy_table::{Table, presets};
use std::fmt::Display;
use std::io::{IsTerminal, Write};

/// Whether standard output is a terminal (tables get borders and colour may be used).
pub fn stdout_is_terminal() -> bool {
    std::io::stdout().is_terminal()
}

/// Whether to colour a stream: `CLICOLOR_FORCE` (not `0`) forces it, a non-empty `NO_COLOR`
/// turns it off, and otherwise only a terminal gets it (the no-color.org and bixense
/// conventions; a few lines, so no crate).
pub fn color(stream_is_terminal: bool) -> bool {
    let set = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    if set("CLICOLOR_FORCE").is_some_and(|v| v != "0") {
        return true;
    }
    if set("NO_COLOR").is_some() {
        return false;
    }
    stream_is_terminal
}

/// Prints one line to standard output. When the reader has gone (a closed pipe), the command
/// ends at once with exit 0, as `head` expects; nothing is left half-done by that, since
/// commands print after their work is stored.
pub fn line(text: impl Display) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{text}").and_then(|()| out.flush())
        && e.kind() == std::io::ErrorKind::BrokenPipe
    {
        std::process::exit(0);
    }
}

/// Prints one JSON object per line (`--json`).
pub fn json_lines<T: serde::Serialize>(rows: &[T]) {
    for row in rows {
        line(serde_json::to_string(row).expect("rows serialize"));
    }
}

/// A table with these headers; how it looks is decided when it is printed.
pub fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table.set_header(header.to_vec());
    table
}

/// Prints a table in the one style every command uses: on a terminal, bordered when it fits the
/// width (`COLUMNS`, else the terminal's), and otherwise one block per row of `header value`
/// pairs wrapped to the width; when piped, space-aligned columns without box drawing.
pub fn print_table(table: &Table) {
    let width = stdout_is_terminal().then(terminal_width);
    for text in render(table, width) {
        line(text);
    }
}

fn terminal_width() -> u16 {
    std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok()).or_else(|| Table::new().width()).unwrap_or(80)
}

/// The lines of a table for a terminal `width` columns wide, or plain for a pipe (`None`).
pub fn render(table: &Table, width: Option<u16>) -> Vec<String> {
    let mut table = table.clone();
    let Some(width) = width else {
        table.load_style(presets::NOTHING).force_no_tty();
        return table.lines().map(|l| l.trim_end().to_owned()).collect();
    };
    table.load_style(presets::UTF8_BORDERS_ONLY).force_no_tty();
    let natural: usize = table.column_max_content_widths().iter().map(|w| usize::from(*w) + 3).sum::<usize>() + 1;
    if natural <= usize::from(width) {
        return table.lines().collect();
    }
    blocks(&table, usize::from(width))
}

/// Each row as its first cell, then `header value` pairs wrapped to `width`.
fn blocks(table: &Table, width: usize) -> Vec<String> {
    let headers: Vec<String> = table.header().map(|h| h.cell_iter().map(|c| c.content()).collect()).unwrap_or_default();
    let mut lines = Vec::new();
    for row in table.row_iter() {
        let cells: Vec<String> = row.cell_iter().map(|c| c.content()).collect();
        let Some((first, rest)) = cells.split_first() else { continue };
        lines.push(cut(first, width));
        let mut current = String::from(" ");
        for (header, value) in headers.iter().skip(1).zip(rest) {
            let pair = format!(" {header} {value}");
            if current.chars().count() + pair.chars().count() > width && !current.trim().is_empty() {
                lines.push(std::mem::replace(&mut current, String::from(" ")));
            }
            current.push_str(&pair);
        }
        if !current.trim().is_empty() {
            lines.push(cut(&current, width));
        }
    }
    lines
}

fn cut(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        text.to_owned()
    } else {
        format!("{}…", text.chars().take(width.saturating_sub(1)).collect::<String>())
    }
}

//! The layout rules ARCHITECTURE.md states, checked over the source tree so they stay true:
//! API wire names live only in the connectors' `api.rs` files, and no function outside tests is
//! longer than 80 lines.

use std::path::{Path, PathBuf};

/// Every `.rs` file under `crates/*/src`, relative to the workspace (tests and benches of the
/// crates live in `tests/`, which is not walked).
fn sources() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files = Vec::new();
    let mut pending: Vec<PathBuf> = std::fs::read_dir(root.join("crates")).unwrap().map(|e| e.unwrap().path().join("src")).collect();
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let relative = path.strip_prefix(&root).unwrap().to_string_lossy().replace('\\', "/");
                files.push((relative, std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    assert!(files.len() > 50, "the walk found the sources ({} files)", files.len());
    files
}

/// The lines of `text` outside `#[cfg(test)]` items, numbered from 1.
fn code_lines(text: &str) -> Vec<(usize, &str)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut kept = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if lines[i].trim_start().starts_with("#[cfg(test)]") && i + 1 < lines.len() {
            i = block_end(&lines, i + 1) + 1;
            continue;
        }
        kept.push((i + 1, lines[i]));
        i += 1;
    }
    kept
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// The index of the line that closes the item starting at `start`: rustfmt puts the closing
/// brace at the item's indentation. An item on one line (or ending in `;`) closes itself.
fn block_end(lines: &[&str], start: usize) -> usize {
    let mut open = start;
    while open < lines.len() {
        let line = lines[open].trim_end();
        if line.ends_with(';') || (line.ends_with('}') && line.contains('{')) {
            return open;
        }
        if line.ends_with('{') {
            break;
        }
        open += 1;
    }
    let level = indent(lines[start]);
    (open + 1..lines.len()).find(|&i| indent(lines[i]) == level && lines[i].trim_start().starts_with('}')).unwrap_or(lines.len() - 1)
}

/// JSON keys and values of the APIs syncline calls: written only where their types are.
const WIRE_NAMES: [&str; 11] = [
    "filterGroups",
    "propertyName",
    "idProperty",
    "highValue",
    "inputs",
    "actions",
    "set_field_value",
    "tag_name",
    "field_value",
    "subscriber_id",
    "version",
];

/// Where wire names belong: each connector's `api.rs`; the emulators, which speak the wire from
/// the other side; and the intake, which reads HubSpot's webhook deliveries.
fn may_hold_wire_names(path: &str) -> bool {
    let api = path.starts_with("crates/syncline-connectors/src/") && path.ends_with("/api.rs");
    api || path.starts_with("crates/syncline-sandbox/") || path == "crates/syncline-server/src/events.rs"
}

#[test]
fn api_wire_names_live_in_the_connectors_api_files() {
    let mut found = Vec::new();
    for (path, text) in sources().iter().filter(|(path, _)| !may_hold_wire_names(path)) {
        for (number, line) in code_lines(text) {
            if line.trim_start().starts_with("//") {
                continue;
            }
            for name in WIRE_NAMES.iter().filter(|name| line.contains(&format!("\"{name}\""))) {
                found.push(format!("{path}:{number}: \"{name}\" in {}", line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "wire names outside the connectors' api.rs (move them into the connector's api.rs types):\n{}",
        found.join("\n")
    );
}

/// The longest a function outside tests may be.
const LONGEST: usize = 80;

#[test]
fn no_function_outside_tests_is_longer_than_80_lines() {
    let is_fn = |line: &str| {
        let line = line.trim_start();
        let line = line
            .strip_prefix("pub ")
            .or_else(|| line.strip_prefix("pub(crate) "))
            .or_else(|| line.strip_prefix("pub(super) "))
            .unwrap_or(line);
        let line = line.strip_prefix("const ").unwrap_or(line);
        let line = line.strip_prefix("async ").unwrap_or(line);
        line.starts_with("fn ")
    };
    let mut long = Vec::new();
    for (path, text) in sources() {
        let kept = code_lines(&text);
        let lines: Vec<&str> = kept.iter().map(|(_, l)| *l).collect();
        for (i, line) in lines.iter().enumerate().filter(|(_, l)| is_fn(l)) {
            let length = block_end(&lines, i) - i + 1;
            if length > LONGEST {
                long.push(format!("{path}:{}: {length} lines: {}", kept[i].0, line.trim()));
            }
        }
    }
    assert!(long.is_empty(), "functions longer than {LONGEST} lines (split them into named pieces):\n{}", long.join("\n"));
}

#[test]
fn the_checks_see_what_they_look_for() {
    let text =
        "fn short() {}\n#[cfg(test)]\nmod tests {\n    fn hidden() {\n    }\n}\nfn two(\n    a: u8,\n) {\n    let x = \"inputs\";\n}\n";
    let kept = code_lines(text);
    assert_eq!(kept.iter().map(|(n, _)| *n).collect::<Vec<_>>(), [1, 7, 8, 9, 10, 11], "test items are left out");
    let lines: Vec<&str> = kept.iter().map(|(_, l)| *l).collect();
    assert_eq!(block_end(&lines, 0), 0, "a function on one line");
    assert_eq!(block_end(&lines, 1), 5, "a function whose signature spans lines");
    assert!(may_hold_wire_names("crates/syncline-connectors/src/hubspot/api.rs"));
    assert!(!may_hold_wire_names("crates/syncline-server/src/backfill.rs"));
}

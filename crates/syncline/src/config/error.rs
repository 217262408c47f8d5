//! Config errors that say where: `file:line:column: key.path: what is wrong`.

use serde_saphyr::Location;

#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub file: String,
    /// 1-based line and column, when known.
    pub at: Option<(u64, u64)>,
    /// Dotted key path (`pipelines.members.sink.sql.table`), when known.
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some((line, col)) = self.at {
            write!(f, ":{line}:{col}")?;
        }
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    pub fn file(file: &str, message: impl Into<String>) -> Self {
        ConfigError { file: file.to_owned(), at: None, path: String::new(), message: message.into() }
    }

    pub fn at(file: &str, location: &Location, path: &str, message: impl Into<String>) -> Self {
        let at = (location.line() > 0).then(|| (location.line(), location.column()));
        ConfigError { file: file.to_owned(), at, path: path.to_owned(), message: message.into() }
    }

    /// A YAML syntax or shape error, with the key path recovered from the text around it.
    pub fn from_yaml(file: &str, text: &str, error: &serde_saphyr::Error) -> Self {
        let rendered = error.to_string();
        let first = rendered.lines().next().unwrap_or_default();
        // "error: line 4 column 5: unknown field …" → "unknown field …"
        let message = first.strip_prefix("error: ").unwrap_or(first);
        let message = match message.split_once(": ") {
            Some((head, rest)) if head.starts_with("line ") => rest,
            _ => message,
        };
        let at = error.location().filter(|l| l.line() > 0).map(|l| (l.line(), l.column()));
        let path = at.map(|(line, _)| key_path_at(text, line as usize)).unwrap_or_default();
        ConfigError { file: file.to_owned(), at, path, message: message.to_owned() }
    }
}

/// The dotted key path of the block-style YAML line `line` (1-based): its own key, then each
/// less-indented parent key above it, with `[i]` for list items. serde-saphyr reports the line
/// and column of an error but not the key path, and block-style config files make the path
/// easy to recover from indentation.
pub(crate) fn key_path_at(text: &str, line: usize) -> String {
    /// (column of a leading "- " if any, column of the key, the key)
    fn parse(l: &str) -> (Option<usize>, usize, Option<String>) {
        let indent = l.len() - l.trim_start().len();
        let dash = l.trim_start().starts_with("- ").then_some(indent);
        let body = l.trim_start_matches([' ', '-']);
        let key =
            body.split_once(':').map(|(k, _)| k.trim().trim_matches(['"', '\'']).to_owned()).filter(|k| !k.is_empty() && !k.contains(' '));
        (dash, l.len() - body.len(), key)
    }
    let lines: Vec<&str> = text.lines().collect();
    let Some(start) = lines.get(line.wrapping_sub(1)) else { return String::new() };
    let (mut item, mut indent, key) = parse(start);
    let mut parts: Vec<String> = key.into_iter().collect();
    let mut index = 0;
    for l in lines[..line - 1].iter().rev().filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#')) {
        let (dash, col, key) = parse(l);
        if item.is_some() && dash == item {
            index += 1; // an earlier sibling in the same list
            continue;
        }
        if col >= indent {
            continue; // a sibling or a child of a sibling
        }
        if item.take().is_some() {
            match parts.last_mut() {
                Some(last) => *last = format!("[{index}].{last}"),
                None => parts.push(format!("[{index}]")),
            }
        }
        parts.extend(key);
        (item, indent, index) = (dash, col, 0);
        if col == 0 {
            break;
        }
    }
    parts.reverse();
    parts.join(".").replace(".[", "[")
}

#[cfg(test)]
mod tests {
    use super::key_path_at;

    #[test]
    fn key_paths() {
        let text = "state: x\npipelines:\n  members:\n    sink:\n      sql:\n        bogus: 1\n    transforms:\n      - select: [a]\n      - nope: 1\n";
        assert_eq!(key_path_at(text, 6), "pipelines.members.sink.sql.bogus");
        assert_eq!(key_path_at(text, 9), "pipelines.members.transforms[1].nope");
        assert_eq!(key_path_at(text, 8), "pipelines.members.transforms[0].select");
        assert_eq!(key_path_at(text, 1), "state");
    }
}

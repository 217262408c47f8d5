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
/// less-indented parent key above it, with `[i]` for list items.
pub(crate) fn key_path_at(text: &str, line: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let Some(start) = lines.get(line.saturating_sub(1)) else { return String::new() };
    let indent_of = |l: &str| l.len() - l.trim_start_matches([' ', '-']).len();
    let key_of = |l: &str| {
        let body = l.trim_start_matches([' ', '-']);
        body.split_once(':').map(|(k, _)| k.trim().trim_matches(['"', '\'']).to_owned()).filter(|k| !k.is_empty() && !k.contains(' ') && !k.starts_with('#'))
    };
    let mut parts = Vec::new();
    if let Some(key) = key_of(start) {
        parts.push(key);
    }
    let mut indent = indent_of(start);
    let mut item_indent = start.trim_start().starts_with("- ").then(|| start.len() - start.trim_start().len());
    let mut index = 0usize;
    for l in lines[..line - 1].iter().rev() {
        if l.trim().is_empty() || l.trim_start().starts_with('#') {
            continue;
        }
        let dash_at = l.trim_start().starts_with("- ").then(|| l.len() - l.trim_start().len());
        if let (Some(item), Some(dash)) = (item_indent, dash_at) {
            if dash == item {
                index += 1;
                continue;
            }
        }
        let own = indent_of(l);
        if own < indent {
            if let Some(item) = item_indent.take() {
                if (l.len() - l.trim_start().len()) < item || dash_at.is_none() {
                    if let Some(last) = parts.last_mut() {
                        *last = format!("[{index}].{last}");
                    } else {
                        parts.push(format!("[{index}]"));
                    }
                }
            }
            if let Some(key) = key_of(l) {
                parts.push(key);
            }
            indent = own;
            item_indent = dash_at;
            index = 0;
            if own == 0 {
                break;
            }
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

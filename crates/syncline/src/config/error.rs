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
        let message = match suggestion_for_serde(message) {
            Some(close) => format!("{message}; did you mean `{close}`?"),
            None => message.to_owned(),
        };
        ConfigError { file: file.to_owned(), at, path, message }
    }

    /// A key the file has but the config does not know, with the closest known keys beside it
    /// (`known` is given the key's full path, as found in the text).
    pub fn unknown_key(file: &str, text: &str, path: &str, known: impl Fn(&str) -> Vec<String>) -> Self {
        let key = path.rsplit_once('.').map_or(path, |(_, key)| key);
        let found = (1..=text.lines().count()).map(|line| (line, key_path_at(text, line))).find(|(_, full)| names_the_same(path, full));
        let (at, path) = match found {
            Some((line, full)) => {
                let l = text.lines().nth(line - 1).unwrap_or_default();
                (Some((line as u64, l.find(key).map_or(1, |c| c + 1) as u64)), full)
            }
            None => (None, path.to_owned()),
        };
        let known = known(&path);
        let message = match did_you_mean(key, known.iter().map(String::as_str)) {
            Some(close) => format!("unknown key `{key}`; did you mean `{close}`?"),
            None if known.is_empty() => format!("unknown key `{key}`"),
            None => format!("unknown key `{key}` (expected one of: {})", known.join(", ")),
        };
        ConfigError { file: file.to_owned(), at, path: path.to_owned(), message }
    }
}

/// Whether `path` (as serde saw it, without the names of enum variants such as `sql`) and
/// `full` (as written) name the same key: `full` has every part of `path` in order, the same
/// last part, and at most two parts more.
fn names_the_same(path: &str, full: &str) -> bool {
    let split = |p: &str| p.replace('[', ".[").split('.').map(str::to_owned).collect::<Vec<_>>();
    let (short, long) = (split(path), split(full));
    if short.last() != long.last() || long.len() < short.len() || long.len() > short.len() + 2 {
        return false;
    }
    let mut rest = long.iter();
    short.iter().all(|part| rest.any(|p| p == part))
}

pub use syncline_core::did_you_mean;

/// serde's "unknown variant `x`, expected one of `a`, `b`" (and the same for fields): the
/// closest expected name.
fn suggestion_for_serde(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("unknown variant `").or_else(|| message.strip_prefix("unknown field `"))?;
    let (word, expected) = rest.split_once('`')?;
    let (_, names) = expected.split_once("expected one of ")?;
    did_you_mean(word, names.split(", ").map(|n| n.trim_matches('`')))
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
    fn suggestions() {
        assert_eq!(super::did_you_mean("batch_sise", ["batch_size", "source", "sink"]), Some("batch_size"));
        assert_eq!(super::did_you_mean("zzz", ["batch_size", "source"]), None);
        assert_eq!(super::suggestion_for_serde("unknown variant `emial`, expected one of `email`, `name`"), Some("email"));
    }

    #[test]
    fn key_paths() {
        let text = "state: x\npipelines:\n  members:\n    sink:\n      sql:\n        bogus: 1\n    transforms:\n      - select: [a]\n      - nope: 1\n";
        assert_eq!(key_path_at(text, 6), "pipelines.members.sink.sql.bogus");
        assert_eq!(key_path_at(text, 9), "pipelines.members.transforms[1].nope");
        assert_eq!(key_path_at(text, 8), "pipelines.members.transforms[0].select");
        assert_eq!(key_path_at(text, 1), "state");
    }
}

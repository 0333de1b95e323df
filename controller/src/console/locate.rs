//! Which line of a configuration (JSON or TOML, as typed in the console)
//! an API error concerns: the line a parser names (`line 3`), or the line
//! of the field path a validation message starts with
//! (`origin[0].url: ...`, `` invalid body at `origin[0].url` ``).

/// The 1-based line of `config` that `message` concerns, if it can tell.
pub fn line_of(config: &str, message: &str) -> Option<usize> {
    if let Some(line) = parser_line(message) {
        return Some(line);
    }
    let path = field_path(message)?;
    let segments = segments(&path);
    if segments.is_empty() {
        return None;
    }
    let offset = if config.trim_start().starts_with('{') {
        json_offset(config, &segments)
    } else {
        toml_offset(config, &segments)
    }?;
    Some(config[..offset].matches('\n').count() + 1)
}

/// `line N` in a parser's message (serde_json: "at line 3 column 5";
/// toml: "at line 3, column 5").
fn parser_line(message: &str) -> Option<usize> {
    let at = message.find("line ")?;
    let digits: String = message[at + 5..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// The field path a message names: in backticks after "at", or before
/// its first `: `.
fn field_path(message: &str) -> Option<String> {
    if let Some(rest) = message.split_once("at `").map(|(_, r)| r) {
        return rest.split_once('`').map(|(path, _)| path.to_string());
    }
    let (head, _) = message.split_once(": ")?;
    let looks_like_path = !head.is_empty()
        && head
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.[]".contains(c));
    looks_like_path.then(|| head.to_string())
}

/// `origin[1].url` as `[("origin", Some(1)), ("url", None)]`.
fn segments(path: &str) -> Vec<(String, Option<usize>)> {
    path.split('.')
        .filter(|s| !s.is_empty())
        .map(|segment| match segment.split_once('[') {
            Some((name, index)) => (name.to_string(), index.trim_end_matches(']').parse().ok()),
            None => (segment.to_string(), None),
        })
        .collect()
}

/// Where the path's last key is in JSON text: each key after the one
/// before it; for `name[i]`, the next key is looked for `i + 1` times
/// (one per element of the array before it).
fn json_offset(config: &str, segments: &[(String, Option<usize>)]) -> Option<usize> {
    let mut at = 0;
    let mut skip = 0;
    for (name, index) in segments {
        let key = format!("\"{name}\"");
        for _ in 0..=skip {
            at += config[at..].find(&key)? + 1;
        }
        skip = index.unwrap_or(0);
    }
    Some(at - 1)
}

/// Where the path's last key is in TOML text: `[[name]]` tables counted
/// for an index, `name =` keys after them.
fn toml_offset(config: &str, segments: &[(String, Option<usize>)]) -> Option<usize> {
    let mut at = 0;
    let mut table = String::new();
    for (name, index) in segments {
        let dotted = if table.is_empty() {
            name.clone()
        } else {
            format!("{table}.{name}")
        };
        match index {
            Some(i) => {
                let header = format!("[[{dotted}]]");
                for _ in 0..=*i {
                    at += config[at..].find(&header)? + 1;
                }
                at -= 1;
                table = dotted;
            }
            None => {
                at += line_starting(&config[at..], name)?;
                table.clear();
            }
        }
    }
    Some(at)
}

/// The offset of the first line of `text` that sets `key` (`key =` or
/// `key=`).
fn line_starting(text: &str, key: &str) -> Option<usize> {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed.strip_prefix(key) {
            if rest.trim_start().starts_with('=') {
                return Some(offset + (line.len() - trimmed.len()));
            }
        }
        offset += line.len();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::line_of;

    const JSON: &str = r#"{
  "domains": ["shop.example.com"],
  "origin": [
    {"url": "https://a.example.com"},
    {"url": "http://10.0.0.5"}
  ],
  "behavior": [{"path": "*"}]
}"#;

    const TOML: &str = r#"domains = ["shop.example.com"]

[[origin]]
url = "https://a.example.com"

[[origin]]
url = "http://10.0.0.5"

[[behavior]]
path = "*"
"#;

    #[test]
    fn validation_paths_point_at_their_line_in_json_and_toml() {
        let message = "origin[1].url: 10.0.0.5 is a private address";
        assert_eq!(line_of(JSON, message), Some(5));
        assert_eq!(line_of(TOML, message), Some(7));
        assert_eq!(line_of(JSON, "origin[0].url: no"), Some(4));
        assert_eq!(line_of(TOML, "origin[0].url: no"), Some(4));
        assert_eq!(
            line_of(JSON, "invalid body at `behavior[0].path`: bad"),
            Some(7)
        );
        assert_eq!(line_of(TOML, "domains: taken"), Some(1));
    }

    #[test]
    fn parser_errors_name_their_line_and_others_none() {
        assert_eq!(
            line_of(JSON, "invalid JSON: expected `,` at line 3 column 9"),
            Some(3)
        );
        assert_eq!(
            line_of(TOML, "invalid TOML: TOML parse error at line 6, column 2"),
            Some(6)
        );
        assert_eq!(
            line_of(JSON, "customer `x` made more than 120 changes in a minute"),
            None
        );
        assert_eq!(line_of(JSON, "nothing: here"), None);
    }
}

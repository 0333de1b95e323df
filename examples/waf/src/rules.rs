//! The built-in rules. Each has a stable id (sent back in `x-waf-rule`) and
//! belongs to one rule set. Rules are plain functions over a normalized
//! [`Subject`], kept in static tables: nothing is built per request.
//!
//! Matching uses substrings and token sequences rather than regular
//! expressions, and each rule needs an attack-shaped context (a quote before
//! `or`, a `<` before a tag name, `..` before a separator) so that ordinary
//! text such as `rock and roll`, `O'Brien` or `well -- maybe` passes.

use serde::Deserialize;

use crate::normalize::Subject;

/// A group of rules that is enabled or disabled as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleSet {
    /// SQL injection.
    Sqli,
    /// Cross-site scripting.
    Xss,
    /// Path traversal and probes for sensitive files.
    Traversal,
    /// Known attack tools, by user agent.
    Scanner,
}

impl RuleSet {
    /// Every rule set: the default.
    pub fn all() -> Vec<RuleSet> {
        vec![
            RuleSet::Sqli,
            RuleSet::Xss,
            RuleSet::Traversal,
            RuleSet::Scanner,
        ]
    }
}

/// A built-in rule matched against path, query, header values and body.
pub struct Rule {
    /// Stable id, e.g. `sqli-union-select`.
    pub id: &'static str,
    /// The set it belongs to.
    pub set: RuleSet,
    /// Whether the rule also applies to bodies (binary bodies hold NUL
    /// bytes, for one).
    pub in_body: bool,
    /// The rule can only match a text that contains one of these: a cheap
    /// test that spares most benign values the full check.
    needs: &'static [&'static str],
    check: fn(&Subject) -> bool,
}

impl Rule {
    /// Whether the rule matches `subject`.
    pub fn matches(&self, subject: &Subject) -> bool {
        self.needs.iter().any(|n| contains(subject.text, n)) && (self.check)(subject)
    }
}

/// The content rules, in the order they are tried.
pub const CONTENT_RULES: &[Rule] = &[
    rule(
        "sqli-union-select",
        RuleSet::Sqli,
        &["union"],
        sqli_union_select,
    ),
    rule(
        "sqli-tautology",
        RuleSet::Sqli,
        &["or", "and", "|", "&"],
        sqli_tautology,
    ),
    rule("sqli-comment", RuleSet::Sqli, &["'"], sqli_comment),
    rule(
        "sqli-stacked-query",
        RuleSet::Sqli,
        &[";"],
        sqli_stacked_query,
    ),
    rule(
        "sqli-time-based",
        RuleSet::Sqli,
        &["sleep", "benchmark", "waitfor", "dbms_pipe"],
        sqli_time_based,
    ),
    rule(
        "sqli-schema-probe",
        RuleSet::Sqli,
        &[
            "@",
            "mysql",
            "information_schema",
            "sysobjects",
            "syscolumns",
            "sqlite_master",
            "pg_shadow",
            "xp_cmdshell",
        ],
        sqli_schema_probe,
    ),
    rule(
        "sqli-file-access",
        RuleSet::Sqli,
        &["load_file", "into"],
        sqli_file_access,
    ),
    rule("xss-script-tag", RuleSet::Xss, &["<"], xss_script_tag),
    rule("xss-event-handler", RuleSet::Xss, &["="], xss_event_handler),
    rule(
        "xss-javascript-uri",
        RuleSet::Xss,
        &[":"],
        xss_javascript_uri,
    ),
    rule("xss-dangerous-tag", RuleSet::Xss, &["<"], xss_dangerous_tag),
    rule("xss-js-sink", RuleSet::Xss, &["(", ".", "`"], xss_js_sink),
    rule(
        "traversal-dotdot",
        RuleSet::Traversal,
        &[".."],
        traversal_dotdot,
    ),
    rule(
        "traversal-sensitive-file",
        RuleSet::Traversal,
        &["/", "\\", "."],
        traversal_sensitive_file,
    ),
    Rule {
        in_body: false,
        ..rule(
            "traversal-null-byte",
            RuleSet::Traversal,
            &["\0"],
            traversal_null_byte,
        )
    },
];

/// A rule that applies everywhere, bodies included.
const fn rule(
    id: &'static str,
    set: RuleSet,
    needs: &'static [&'static str],
    check: fn(&Subject) -> bool,
) -> Rule {
    Rule {
        id,
        set,
        in_body: true,
        needs,
        check,
    }
}

/// Attack tools and the rule id that names them, matched as substrings of
/// the lower-cased `user-agent` header.
pub const SCANNERS: &[(&str, &str)] = &[
    ("sqlmap", "scanner-sqlmap"),
    ("nikto", "scanner-nikto"),
    ("nmap", "scanner-nmap"),
    ("masscan", "scanner-masscan"),
    ("zgrab", "scanner-zgrab"),
    ("nuclei", "scanner-nuclei"),
    ("acunetix", "scanner-acunetix"),
    ("netsparker", "scanner-netsparker"),
    ("nessus", "scanner-nessus"),
    ("openvas", "scanner-openvas"),
    ("wpscan", "scanner-wpscan"),
    ("dirbuster", "scanner-dirbuster"),
    ("gobuster", "scanner-gobuster"),
    ("fuzz faster u fool", "scanner-ffuf"),
    ("wfuzz", "scanner-wfuzz"),
    ("havij", "scanner-havij"),
    ("w3af", "scanner-w3af"),
    ("arachni", "scanner-arachni"),
    ("commix", "scanner-commix"),
    ("jorgee", "scanner-jorgee"),
    ("zmeu", "scanner-zmeu"),
];

/// The scanner rule matching a `user-agent` value, if any.
pub fn scanner(user_agent: &str) -> Option<&'static str> {
    let agent = user_agent.to_lowercase();
    SCANNERS
        .iter()
        .find(|(needle, _)| contains(&agent, needle))
        .map(|(_, id)| *id)
}

/// One position of a token pattern.
#[derive(Clone, Copy)]
enum Tok {
    /// Exactly this token.
    Is(&'static str),
    /// Any one of these tokens.
    OneOf(&'static [&'static str]),
    /// A run of digits.
    Num,
    /// Any word token.
    Word,
}

impl Tok {
    fn matches(self, token: &str) -> bool {
        match self {
            Tok::Is(want) => token == want,
            Tok::OneOf(options) => options.contains(&token),
            Tok::Num => !token.is_empty() && token.bytes().all(|b| b.is_ascii_digit()),
            Tok::Word => token.chars().all(|c| c.is_alphanumeric() || c == '_'),
        }
    }
}

/// Whether `token` is a string delimiter: `'`, `"` or a backtick.
fn is_quote(token: &str) -> bool {
    matches!(token, "'" | "\"" | "`")
}

/// Whether `tokens` start with `pattern`.
fn starts_with(tokens: &[&str], pattern: &[Tok]) -> bool {
    tokens.len() >= pattern.len() && pattern.iter().zip(tokens).all(|(p, t)| p.matches(t))
}

/// Whether any of `patterns` occurs somewhere in `tokens`.
fn has_any(tokens: &[&str], patterns: &[&[Tok]]) -> bool {
    (0..tokens.len()).any(|i| patterns.iter().any(|p| starts_with(&tokens[i..], p)))
}

/// Whether `text` contains any of `needles`.
fn contains_any(text: &str, needles: &[&str]) -> bool {
    needles.iter().any(|n| contains(text, n))
}

/// Whether `text` contains `needle`. Substring searchers (`str::contains`,
/// `memmem`) set up a searcher on every call, which dominates on the short
/// values a WAF scans with dozens of needles; jumping between occurrences of
/// the needle's first byte needs no setup.
pub fn contains(text: &str, needle: &str) -> bool {
    let (haystack, needle) = (text.as_bytes(), needle.as_bytes());
    let Some(&first) = needle.first() else {
        return true;
    };
    memchr::memchr_iter(first, haystack).any(|at| haystack[at..].starts_with(needle))
}

// --- SQL injection -------------------------------------------------------

/// `union select`, `union all select`, `union(select`, with any comments
/// or whitespace between.
fn sqli_union_select(s: &Subject) -> bool {
    use Tok::*;
    has_any(
        s.tokens(),
        &[
            &[Is("union"), Is("select")],
            &[Is("union"), OneOf(&["all", "distinct", "("]), Is("select")],
            &[
                Is("union"),
                OneOf(&["all", "distinct"]),
                Is("("),
                Is("select"),
            ],
        ],
    )
}

/// Boolean tautologies after a closed string or number: `' or '1'='1`,
/// `" or ""="`, `' or true`, `' || 1=1`, `1 or 1=1`.
fn sqli_tautology(s: &Subject) -> bool {
    use Tok::*;
    const LOGIC: Tok = OneOf(&["or", "and", "xor"]);
    const COMPARE: &[&str] = &["=", "<", ">", "like"];
    let tokens = s.tokens();
    for (i, token) in tokens.iter().enumerate() {
        if !is_quote(token) {
            continue;
        }
        let rest = &tokens[i + 1..];
        let after = if starts_with(rest, &[LOGIC]) {
            1
        } else if starts_with(rest, &[Is("|"), Is("|")]) || starts_with(rest, &[Is("&"), Is("&")]) {
            2
        } else {
            continue;
        };
        let operand = &rest[after..];
        if operand.first().is_some_and(|t| *t == "true") {
            return true;
        }
        if operand.iter().take(5).any(|t| COMPARE.contains(t)) {
            return true;
        }
    }
    has_any(tokens, &[&[LOGIC, Num, OneOf(COMPARE), Num]])
}

/// A string closed and the rest of the statement commented out: `admin'--`,
/// `admin'/*`, `admin'#`. Only a single quote counts: `"--` is common in
/// ordinary text (`name="x"` then a `--boundary` line in a multipart body).
fn sqli_comment(s: &Subject) -> bool {
    use Tok::*;
    if has_any(
        s.tokens(),
        &[&[Is("'"), Is("-"), Is("-")], &[Is("'"), Is("/"), Is("*")]],
    ) {
        return true;
    }
    // `'#` counts only as the end of a word (`'#tag'` is a hashtag).
    s.text
        .match_indices("'#")
        .any(|(i, _)| s.text[i + 2..].chars().next().is_none_or(|c| c == ' '))
}

/// A second statement after `;`: `; drop table`, `; shutdown`,
/// `; exec xp_cmdshell`, `; update users set`.
fn sqli_stacked_query(s: &Subject) -> bool {
    use Tok::*;
    has_any(
        s.tokens(),
        &[
            &[
                Is(";"),
                Is("drop"),
                OneOf(&["table", "database", "schema", "user"]),
            ],
            &[Is(";"), Is("truncate"), Is("table")],
            &[Is(";"), Is("alter"), OneOf(&["table", "user", "database"])],
            &[Is(";"), Is("delete"), Is("from")],
            &[Is(";"), Is("insert"), Is("into")],
            &[Is(";"), Is("update"), Word, Is("set")],
            &[Is(";"), OneOf(&["exec", "execute"]), Word],
            &[Is(";"), Is("declare"), Is("@")],
            &[Is(";"), Is("shutdown")],
        ],
    )
}

/// Blind injection through delays: `sleep(5)`, `pg_sleep(5)`,
/// `benchmark(1000000,md5(1))`, `waitfor delay '0:0:5'`.
fn sqli_time_based(s: &Subject) -> bool {
    use Tok::*;
    has_any(
        s.tokens(),
        &[
            &[OneOf(&["sleep", "pg_sleep"]), Is("("), Num, Is(")")],
            &[Is("benchmark"), Is("("), Num, Is(",")],
            &[Is("waitfor"), Is("delay")],
            &[Is("dbms_pipe"), Is("."), Is("receive_message")],
        ],
    )
}

/// Reads of the database catalog or server: `information_schema`,
/// `sqlite_master`, `@@version`, `xp_cmdshell`, `mysql.user`.
fn sqli_schema_probe(s: &Subject) -> bool {
    use Tok::*;
    const CATALOG: &[&str] = &[
        "information_schema",
        "sysobjects",
        "syscolumns",
        "sqlite_master",
        "pg_shadow",
        "xp_cmdshell",
    ];
    s.tokens().iter().any(|t| CATALOG.contains(t))
        || has_any(
            s.tokens(),
            &[
                &[Is("@"), Is("@"), OneOf(&["version", "datadir", "hostname"])],
                &[Is("mysql"), Is("."), Is("user")],
            ],
        )
}

/// File access from SQL: `load_file(`, `into outfile`, `into dumpfile`.
fn sqli_file_access(s: &Subject) -> bool {
    use Tok::*;
    has_any(
        s.tokens(),
        &[
            &[Is("load_file"), Is("(")],
            &[Is("into"), OneOf(&["outfile", "dumpfile"])],
        ],
    )
}

// --- Cross-site scripting ------------------------------------------------

/// Whether `text` opens (or closes) an HTML tag named one of `names`:
/// `<script`, `</script`, followed by a non-letter (so `<base64>` is not
/// `<base`).
fn has_tag(text: &str, names: &[&str]) -> bool {
    text.match_indices('<').any(|(i, _)| {
        let rest = &text[i + 1..];
        let rest = rest.strip_prefix('/').unwrap_or(rest);
        let name_len = rest.bytes().take_while(u8::is_ascii_alphanumeric).count();
        names.contains(&&rest[..name_len])
    })
}

/// `<script` and `</script`.
fn xss_script_tag(s: &Subject) -> bool {
    has_tag(s.text, &["script"])
}

/// An inline event handler (`onerror=`, `onload =`) inside a tag
/// (`<img src=x onerror=...`, `<svg/onload=...`) or right after a quote that
/// breaks out of an attribute (`" onmouseover="...`).
fn xss_event_handler(s: &Subject) -> bool {
    let tokens = s.tokens();
    let mut in_tag = false;
    for (i, token) in tokens.iter().enumerate() {
        match *token {
            "<" => in_tag = true,
            ">" => in_tag = false,
            _ => {}
        }
        let is_handler = token.len() >= 5
            && token.starts_with("on")
            && token.bytes().all(|b| b.is_ascii_lowercase())
            && tokens.get(i + 1) == Some(&"=");
        if !is_handler {
            continue;
        }
        let after_quote = i > 0 && tokens.get(i - 1).is_some_and(|t| is_quote(t) || *t == "/");
        if in_tag || after_quote {
            return true;
        }
    }
    false
}

/// Script URLs: `javascript:`, `vbscript:`, `data:text/html`. Whitespace
/// is ignored, as browsers drop tabs and newlines inside URLs.
fn xss_javascript_uri(s: &Subject) -> bool {
    if !s.text.contains(':') {
        return false;
    }
    let compact: String = s.text.chars().filter(|c| !c.is_whitespace()).collect();
    contains_any(
        &compact,
        &["javascript:", "vbscript:", "livescript:", "data:text/html"],
    )
}

/// Tags that load or run active content.
fn xss_dangerous_tag(s: &Subject) -> bool {
    has_tag(
        s.text,
        &[
            "iframe", "frame", "frameset", "object", "embed", "applet", "svg", "math", "base",
            "meta",
        ],
    )
}

/// Script sinks and probes typical of injected JavaScript.
fn xss_js_sink(s: &Subject) -> bool {
    contains_any(
        s.text,
        &[
            "document.cookie",
            "document.domain",
            "document.write(",
            "fromcharcode(",
            "alert(",
            "alert`",
            "prompt(",
            "eval(",
        ],
    )
}

// --- Path traversal ------------------------------------------------------

/// A `..` path segment: `../`, `..\`, `..;/`, or a trailing `/..`.
fn traversal_dotdot(s: &Subject) -> bool {
    let text = s.text;
    text.match_indices("..").any(|(i, _)| {
        let before = text[..i].chars().next_back();
        match text[i + 2..].chars().next() {
            Some('/' | '\\') => true,
            Some(';') => text[i + 3..].starts_with(['/', '\\']),
            None => matches!(before, None | Some('/' | '\\' | '=')),
            Some(_) => false,
        }
    })
}

/// Well-known sensitive files, with `/` or `\` separators.
fn traversal_sensitive_file(s: &Subject) -> bool {
    const FILES: &[&str] = &[
        "etc/passwd",
        "etc/shadow",
        "proc/self/",
        "win.ini",
        "boot.ini",
        "windows/system32",
        ".htpasswd",
        ".htaccess",
        "/.git/",
        "/.ssh/",
    ];
    if s.text.contains('\\') {
        contains_any(&s.text.replace('\\', "/"), FILES)
    } else {
        contains_any(s.text, FILES)
    }
}

/// A NUL byte (`%00`), used to cut off a file extension the server appends.
fn traversal_null_byte(s: &Subject) -> bool {
    s.text.contains('\0')
}

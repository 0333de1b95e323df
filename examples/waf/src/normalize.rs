//! Turning raw request text into the canonical form the rules match on.
//!
//! Attackers hide payloads behind encodings and filler that the origin (or
//! the browser) strips again: `%2e%2e%2f`, `%253Cscript`, `UNION/**/SELECT`,
//! `union%0aselect`. [`normalize`] undoes those so that one plain pattern
//! catches every spelling, and [`Subject`] splits the result into tokens so
//! that rules can match word sequences regardless of spacing.

use std::borrow::Cow;
use std::cell::OnceCell;

use percent_encoding::percent_decode_str;

/// How many rounds of percent-decoding are applied: two catches double
/// encoding (`%252e` → `%2e` → `.`) without unbounded work.
const DECODE_ROUNDS: usize = 2;

/// Percent-decodes `input` up to [`DECODE_ROUNDS`] times, stopping early when
/// nothing is left to decode. With `plus_is_space` (query strings and form
/// bodies), `+` is read as a space first. Invalid UTF-8 becomes U+FFFD.
pub fn decode(input: &str, plus_is_space: bool) -> String {
    let mut text = if plus_is_space {
        input.replace('+', " ")
    } else {
        input.to_string()
    };
    for _ in 0..DECODE_ROUNDS {
        if !text.contains('%') {
            break;
        }
        let decoded = match percent_decode_str(&text).decode_utf8_lossy() {
            Cow::Borrowed(_) => break,
            Cow::Owned(decoded) => decoded,
        };
        text = decoded;
    }
    text
}

/// The canonical form of `input`: percent-decoded (see [`decode`]),
/// lower-cased, with closed `/* ... */` comments replaced by a space (the
/// body of a MySQL `/*! ... */` comment is kept, since MySQL runs it) and
/// every run of whitespace collapsed to one space.
pub fn normalize(input: &str, plus_is_space: bool) -> String {
    let decoded = decode(input, plus_is_space).to_lowercase();
    collapse_whitespace(&strip_comments(&decoded))
}

/// Lower-cases and collapses whitespace, as [`normalize`] does, without
/// decoding: used for the patterns of custom rules.
pub fn normalize_pattern(pattern: &str) -> String {
    collapse_whitespace(&pattern.to_lowercase())
}

/// Replaces each closed `/* ... */` comment with a space. An unclosed `/*`
/// is left alone (it is common in benign text such as `accept: */*`).
fn strip_comments(text: &str) -> Cow<'_, str> {
    if !text.contains("/*") {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("/*") {
        let after_open = &rest[start + 2..];
        let Some(end) = after_open.find("*/") else {
            break;
        };
        out.push_str(&rest[..start]);
        out.push(' ');
        // `/*!50000 select */`: MySQL executes the body, so keep it.
        if let Some(executable) = after_open[..end].strip_prefix('!') {
            out.push_str(executable.trim_start_matches(|c: char| c.is_ascii_digit()));
            out.push(' ');
        }
        rest = &after_open[end + 2..];
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// Collapses each run of whitespace into a single space and trims the ends.
fn collapse_whitespace(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for word in text.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// A normalized text and its tokens: runs of word characters (letters,
/// digits, `_`) and single punctuation characters; spaces separate tokens
/// and are not tokens themselves.
pub struct Subject<'a> {
    /// The normalized text.
    pub text: &'a str,
    /// Its tokens, split on first use.
    tokens: OnceCell<Vec<&'a str>>,
}

impl<'a> Subject<'a> {
    /// A subject for an already normalized `text`.
    pub fn new(text: &'a str) -> Self {
        Subject {
            text,
            tokens: OnceCell::new(),
        }
    }

    /// The tokens of the text, in order.
    pub fn tokens(&self) -> &[&'a str] {
        self.tokens.get_or_init(|| tokenize(self.text))
    }
}

/// Splits `text` into word and punctuation tokens.
fn tokenize(text: &str) -> Vec<&str> {
    let mut tokens = Vec::new();
    let mut word_start: Option<usize> = None;
    for (i, c) in text.char_indices() {
        if c.is_alphanumeric() || c == '_' {
            word_start.get_or_insert(i);
            continue;
        }
        if let Some(start) = word_start.take() {
            tokens.push(&text[start..i]);
        }
        if !c.is_whitespace() {
            tokens.push(&text[i..i + c.len_utf8()]);
        }
    }
    if let Some(start) = word_start {
        tokens.push(&text[start..]);
    }
    tokens
}

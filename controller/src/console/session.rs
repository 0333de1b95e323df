//! Console sessions: a random id in an `HttpOnly`, `SameSite=Strict`
//! cookie maps to the token signed in with, kept in this controller's
//! memory only (the browser never holds the token), and to the session's
//! CSRF token, which every form carries back.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{header, HeaderMap};
use cookie::{Cookie, SameSite};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "parapet_session";
/// The cookie the sign-in form's CSRF token is checked against (there is
/// no session yet to hold it).
pub const SIGNIN_COOKIE: &str = "parapet_signin";
/// A session ends this long after its last use.
const IDLE: Duration = Duration::from_secs(12 * 3600);
/// Sessions one controller keeps; the oldest go first beyond it.
const MAX_SESSIONS: usize = 10_000;

/// Who a session speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Who {
    /// The operator.
    Operator,
    /// A customer, by id.
    Customer(String),
}

/// A signed-in browser.
#[derive(Debug, Clone)]
pub struct Session {
    /// The token signed in with; the console calls the API with it.
    pub token: String,
    /// What every form of this session must carry back.
    pub csrf: String,
    /// Who the token speaks for.
    pub who: Who,
    last_used: Instant,
}

impl Session {
    /// Whether `csrf` is this session's CSRF token.
    pub fn csrf_matches(&self, csrf: &str) -> bool {
        crate::auth::constant_time_eq(&self.csrf, csrf)
    }
}

/// The sessions of this controller.
#[derive(Default)]
pub struct Sessions {
    by_id: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    /// Opens a session; returns its id.
    pub fn open(&self, token: String, who: Who) -> String {
        let id = random_hex();
        let session = Session {
            token,
            csrf: random_hex(),
            who,
            last_used: Instant::now(),
        };
        let mut sessions = self.lock();
        sessions.retain(|_, s| s.last_used.elapsed() < IDLE);
        if sessions.len() >= MAX_SESSIONS {
            if let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.last_used)
                .map(|(id, _)| id.clone())
            {
                sessions.remove(&oldest);
            }
        }
        sessions.insert(id.clone(), session);
        id
    }

    /// The session whose id `headers`' cookie carries, if it is open.
    pub fn find(&self, headers: &HeaderMap) -> Option<Session> {
        let id = cookie_value(headers, SESSION_COOKIE)?;
        let mut sessions = self.lock();
        let session = sessions.get_mut(&id)?;
        if session.last_used.elapsed() >= IDLE {
            sessions.remove(&id);
            return None;
        }
        session.last_used = Instant::now();
        Some(session.clone())
    }

    /// Ends the session `headers`' cookie carries.
    pub fn close(&self, headers: &HeaderMap) {
        if let Some(id) = cookie_value(headers, SESSION_COOKIE) {
            self.lock().remove(&id);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.by_id
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A cookie of the console: `HttpOnly`, `SameSite=Strict`, on `/console`,
/// `Secure` when the console is served over TLS; `value` none clears it.
pub fn set_cookie(name: &str, value: Option<&str>, secure: bool) -> String {
    let mut cookie = Cookie::build((name, value.unwrap_or_default()))
        .http_only(true)
        .same_site(SameSite::Strict)
        .path("/console")
        .secure(secure);
    if value.is_none() {
        cookie = cookie.max_age(cookie::time::Duration::ZERO);
    }
    cookie.build().to_string()
}

/// The value of cookie `name` in `headers`.
pub fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|cookie| cookie.name() == name)
        .map(|cookie| cookie.value().to_string())
}

/// 32 random bytes, hex: session ids and CSRF tokens.
pub fn random_hex() -> String {
    crate::auth::random_hex(32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_cookie(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, value.parse().unwrap());
        headers
    }

    #[test]
    fn a_session_is_found_by_its_cookie_and_closed() {
        let sessions = Sessions::default();
        let id = sessions.open("t0ken".into(), Who::Customer("acme".into()));
        let headers = with_cookie(&format!("other=1; {SESSION_COOKIE}={id}"));
        let session = sessions.find(&headers).expect("open");
        assert_eq!(session.who, Who::Customer("acme".into()));
        assert!(session.csrf_matches(&session.csrf.clone()));
        assert!(!session.csrf_matches("forged"));
        assert!(sessions
            .find(&with_cookie(&format!("{SESSION_COOKIE}=nope")))
            .is_none());
        sessions.close(&headers);
        assert!(sessions.find(&headers).is_none());
    }

    #[test]
    fn cookies_are_http_only_strict_and_secure_over_tls() {
        let cookie = set_cookie(SESSION_COOKIE, Some("x"), true);
        for part in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/console"] {
            assert!(cookie.contains(part), "{cookie}");
        }
        assert!(!set_cookie(SESSION_COOKIE, Some("x"), false).contains("Secure"));
        assert!(set_cookie(SESSION_COOKIE, None, false).contains("Max-Age=0"));
    }
}

//! Console sessions and CSRF tokens.
//!
//! Signing in with the admin token starts a session: a random id in an `HttpOnly; Secure;
//! SameSite=Strict` cookie scoped to `/console`, known to the server by its SHA-256 alone. A
//! session ends at sign-out (removed from the server at once), after [`IDLE`] without a request,
//! and [`ABSOLUTE`] after sign-in whatever happens. Each session has its own CSRF token, carried
//! by every form and compared in constant time on every POST.
//!
//! Sessions live in the memory of the instance that signed the operator in: a restart signs
//! everyone out, and behind a load balancer over several directory instances the console needs
//! sticky sessions (the admin API needs nothing of the kind). They are capped at
//! [`MAX_SESSIONS`] (the oldest goes first); only the admin token starts one.
//!
//! The sign-in form comes before any session, and costs the server no memory: its CSRF token is
//! an HMAC, under a key made at start, of a random value the form's response sets as a cookie
//! (a signed double-submit token).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use axum::http::{HeaderMap, HeaderValue, header};
use subtle::ConstantTimeEq;

/// The session cookie: `__Host-` so that no other site or path can set one that shadows it
/// (browsers accept such a cookie only with `Secure`, `Path=/` and no `Domain`).
pub(crate) const SESSION_COOKIE: &str = "__Host-certbound_console";
/// The cookie of the sign-in form's CSRF token.
pub(crate) const SIGN_IN_COOKIE: &str = "__Host-certbound_console_sign_in";
/// A session ends after this long without a request, seconds.
pub(crate) const IDLE: i64 = 30 * 60;
/// A session ends this long after sign-in, seconds.
pub(crate) const ABSOLUTE: i64 = 8 * 60 * 60;
/// The sign-in form's cookie and token live this long, seconds.
pub(crate) const SIGN_IN_LIFETIME: i64 = 10 * 60;
/// The most sessions held at once.
pub(crate) const MAX_SESSIONS: usize = 1000;

#[derive(Debug)]
struct Session {
    csrf: String,
    started: i64,
    seen: i64,
}

/// A request's valid session.
#[derive(Clone, Debug)]
pub(crate) struct SignedIn {
    /// The CSRF token every form of this session carries.
    pub(crate) csrf: String,
}

impl SignedIn {
    /// Whether `presented` is this session's CSRF token.
    pub(crate) fn csrf_matches(&self, presented: &str) -> bool {
        bool::from(self.csrf.as_bytes().ct_eq(presented.as_bytes()))
    }
}

/// The console's sessions, one per directory instance.
pub(crate) struct Sessions {
    /// Signs the sign-in form's tokens; none if the system gave no randomness at start (then
    /// nobody can sign in).
    sign_in_key: Option<aws_lc_rs::hmac::Key>,
    sessions: Mutex<HashMap<[u8; 32], Session>>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions").finish_non_exhaustive()
    }
}

/// 32 random bytes, base64url: session ids, CSRF tokens, the sign-in form's cookie. `None` if
/// the operating system gave no randomness: then nothing is issued (never a predictable id).
fn random_token() -> Option<String> {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).ok()?;
    Some(crate::b64url(&bytes))
}

impl Sessions {
    /// No sessions yet, and a fresh key for the sign-in form's tokens.
    pub(crate) fn new() -> Self {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let sign_in_key = aws_lc_rs::hmac::Key::generate(aws_lc_rs::hmac::HMAC_SHA256, &rng).ok();
        Self {
            sign_in_key,
            sessions: Mutex::new(HashMap::new()),
        }
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Session>> {
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new session (after a successful sign-in): its cookie value; `None` without randomness.
    pub(crate) fn start(&self, now: i64) -> Option<String> {
        let id = random_token()?;
        let csrf = random_token()?;
        let mut sessions = self.sessions();
        sessions.retain(|_, session| alive(session, now));
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, session)| session.started)
                .map(|(key, _)| *key)
        {
            sessions.remove(&oldest);
        }
        sessions.insert(
            crate::sha256(id.as_bytes()),
            Session {
                csrf,
                started: now,
                seen: now,
            },
        );
        Some(id)
    }

    /// The session a cookie of the request names, if one is alive (and then marked as seen now).
    pub(crate) fn find(&self, headers: &HeaderMap, now: i64) -> Option<SignedIn> {
        let mut sessions = self.sessions();
        for id in cookies(headers, SESSION_COOKIE) {
            let key = crate::sha256(id.as_bytes());
            let Some(session) = sessions.get_mut(&key) else {
                continue;
            };
            if !alive(session, now) {
                sessions.remove(&key);
                continue;
            }
            session.seen = now;
            return Some(SignedIn {
                csrf: session.csrf.clone(),
            });
        }
        None
    }

    /// Ends every session the request's cookies name, on the server.
    pub(crate) fn end(&self, headers: &HeaderMap) {
        let mut sessions = self.sessions();
        for id in cookies(headers, SESSION_COOKIE) {
            sessions.remove(&crate::sha256(id.as_bytes()));
        }
    }

    /// The sign-in form's cookie value (its time and a random part) and the CSRF token its form
    /// carries; `None` without randomness.
    pub(crate) fn sign_in_form(&self, now: i64) -> Option<(String, String)> {
        let nonce = format!("{now}.{}", random_token()?);
        let token = self.sign_in_token(&nonce)?;
        Some((nonce, token))
    }

    fn sign_in_token(&self, nonce: &str) -> Option<String> {
        let key = self.sign_in_key.as_ref()?;
        Some(crate::b64url(
            aws_lc_rs::hmac::sign(key, nonce.as_bytes()).as_ref(),
        ))
    }

    /// Whether `presented` is the sign-in form's CSRF token for one of the request's sign-in
    /// cookies, made within [`SIGN_IN_LIFETIME`] of `now`.
    pub(crate) fn sign_in_csrf_matches(
        &self,
        headers: &HeaderMap,
        presented: &str,
        now: i64,
    ) -> bool {
        cookies(headers, SIGN_IN_COOKIE).any(|nonce| {
            let fresh = nonce
                .split_once('.')
                .and_then(|(made, _)| made.parse::<i64>().ok())
                .is_some_and(|made| (0..=SIGN_IN_LIFETIME).contains(&(now - made)));
            let matches = self.sign_in_token(nonce).is_some_and(|expected| {
                bool::from(expected.as_bytes().ct_eq(presented.as_bytes()))
            });
            fresh && matches
        })
    }
}

fn alive(session: &Session, now: i64) -> bool {
    now - session.seen < IDLE && now - session.started < ABSOLUTE
}

/// Every value of cookie `name` in the request (a browser may send several of one name).
pub(crate) fn cookies<'h>(headers: &'h HeaderMap, name: &'h str) -> impl Iterator<Item = &'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(move |(key, value)| *key == name && !value.is_empty())
        .map(|(_, value)| value)
}

/// A `Set-Cookie` value for the console's cookies; `max_age` 0 deletes the cookie.
pub(crate) fn set_cookie(name: &str, value: &str, max_age: i64) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age={max_age}"
    ))
    .unwrap_or_else(|_| {
        HeaderValue::from_static("__Host-certbound_console=; Path=/; Secure; Max-Age=0")
    })
}

/// The sign-in form's cookie.
pub(crate) fn sign_in_cookie(nonce: &str) -> HeaderValue {
    set_cookie(SIGN_IN_COOKIE, nonce, SIGN_IN_LIFETIME)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_cookie(name: &str, value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("other=1; {name}={value}")).unwrap(),
        );
        headers
    }

    #[test]
    fn a_session_lives_until_idle_absolute_or_signed_out() {
        let sessions = Sessions::new();
        let id = sessions.start(1_000).unwrap();
        let headers = with_cookie(SESSION_COOKIE, &id);
        let found = sessions.find(&headers, 1_000 + IDLE - 1).unwrap();
        assert!(found.csrf_matches(&found.csrf.clone()));
        assert!(!found.csrf_matches("forged"));
        // Seen just now: idle counts from here.
        assert!(sessions.find(&headers, 1_000 + 2 * IDLE - 2).is_some());
        assert!(sessions.find(&headers, 1_000 + 3 * IDLE).is_none(), "idle");
        let id = sessions.start(1_000).unwrap();
        let headers = with_cookie(SESSION_COOKIE, &id);
        let mut now = 1_000;
        while now < 1_000 + ABSOLUTE - IDLE {
            now += IDLE - 1;
            assert!(sessions.find(&headers, now).is_some());
        }
        assert!(
            sessions.find(&headers, 1_000 + ABSOLUTE).is_none(),
            "absolute"
        );
        let id = sessions.start(2_000).unwrap();
        let headers = with_cookie(SESSION_COOKIE, &id);
        sessions.end(&headers);
        assert!(sessions.find(&headers, 2_000).is_none(), "signed out");
        assert!(
            sessions
                .find(&with_cookie(SESSION_COOKIE, "made-up"), 2_000)
                .is_none()
        );
    }

    #[test]
    fn sessions_are_capped_and_the_oldest_goes() {
        let sessions = Sessions::new();
        let first = sessions.start(1_000).unwrap();
        for n in 0..MAX_SESSIONS {
            sessions.start(1_001 + i64::try_from(n).unwrap()).unwrap();
        }
        assert_eq!(sessions.sessions().len(), MAX_SESSIONS);
        assert!(
            sessions
                .find(&with_cookie(SESSION_COOKIE, &first), 1_500)
                .is_none()
        );
    }

    #[test]
    fn the_sign_in_token_is_bound_to_its_cookie_and_expires() {
        let sessions = Sessions::new();
        let (nonce, token) = sessions.sign_in_form(1_000).unwrap();
        let (other_nonce, _) = sessions.sign_in_form(1_000).unwrap();
        let cookie = with_cookie(SIGN_IN_COOKIE, &nonce);
        assert!(sessions.sign_in_csrf_matches(&cookie, &token, 1_000));
        assert!(sessions.sign_in_csrf_matches(&cookie, &token, 1_000 + SIGN_IN_LIFETIME));
        assert!(
            !sessions.sign_in_csrf_matches(&cookie, &token, 1_001 + SIGN_IN_LIFETIME),
            "expired"
        );
        let other = with_cookie(SIGN_IN_COOKIE, &other_nonce);
        assert!(!sessions.sign_in_csrf_matches(&other, &token, 1_000));
        assert!(!sessions.sign_in_csrf_matches(&HeaderMap::new(), &token, 1_000));
        // Another instance (another key) does not accept it.
        assert!(!Sessions::new().sign_in_csrf_matches(&cookie, &token, 1_000));
    }

    #[test]
    fn a_shadowing_cookie_does_not_hide_the_real_session() {
        let sessions = Sessions::new();
        let id = sessions.start(1_000).unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("{SESSION_COOKIE}=planted; {SESSION_COOKIE}={id}"))
                .unwrap(),
        );
        assert!(sessions.find(&headers, 1_000).is_some());
    }
}

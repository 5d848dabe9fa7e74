//! Signed-in sessions, held in this process's memory.
//!
//! The cookie carries 256 random bits; the map is keyed by their SHA-256, so a memory dump
//! shows no usable cookie. A session holds only who signed in (an operator's id, or a
//! remote-signing subscriber's account), how, and its CSRF token: the operator or account
//! itself is read from the store on every page, so removing (or locking) one ends its session
//! at the next click. A session unused for `[portal] session_idle_secs` ends; a
//! restart ends them all (the operator signs in again).

use crate::ra::access::Via;
use aws_lc_rs::digest;
use base64::Engine;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// 32 random bytes, base64url: a cookie value or a CSRF token.
pub(super) fn random_token() -> Option<String> {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).ok()?;
    Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

fn key(cookie: &str) -> Vec<u8> {
    digest::digest(&digest::SHA256, cookie.as_bytes())
        .as_ref()
        .to_vec()
}

/// Who a session is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Holder {
    /// An operator, by id.
    Operator(String),
    /// A remote-signing subscriber, by account id (signed in with the official email).
    Signer(i64),
}

/// What a live session says.
#[derive(Clone, Debug)]
pub(super) struct Session {
    /// Who signed in.
    pub(super) holder: Holder,
    /// How the session began.
    pub(super) via: Via,
    /// The token every form of this session carries.
    pub(super) csrf: String,
    last_used: Instant,
}

/// The sessions of this process.
pub(super) struct Sessions {
    map: Mutex<HashMap<Vec<u8>, Session>>,
    idle: Duration,
    max: usize,
}

impl Sessions {
    /// No sessions yet.
    pub(super) fn new(idle: Duration, max: usize) -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
            idle,
            max,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Vec<u8>, Session>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a session: its cookie value and CSRF token, or `None` when the process holds
    /// its maximum of live sessions (or the random generator failed).
    pub(super) fn start(&self, holder: Holder, via: Via) -> Option<(String, String)> {
        let cookie = random_token()?;
        let csrf = random_token()?;
        let mut map = self.lock();
        if map.len() >= self.max {
            let idle = self.idle;
            map.retain(|_, s| s.last_used.elapsed() < idle);
            if map.len() >= self.max {
                return None;
            }
        }
        map.insert(
            key(&cookie),
            Session {
                holder,
                via,
                csrf: csrf.clone(),
                last_used: Instant::now(),
            },
        );
        Some((cookie, csrf))
    }

    /// The live session of a cookie, its idle clock restarted; an idle one is ended.
    pub(super) fn touch(&self, cookie: &str) -> Option<Session> {
        let k = key(cookie);
        let mut map = self.lock();
        let live = map
            .get(&k)
            .is_some_and(|s| s.last_used.elapsed() < self.idle);
        if !live {
            map.remove(&k);
            return None;
        }
        let s = map.get_mut(&k)?;
        s.last_used = Instant::now();
        Some(s.clone())
    }

    /// Ends a session (logout, or its operator is gone).
    pub(super) fn end(&self, cookie: &str) {
        self.lock().remove(&key(cookie));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_lives_until_idle_or_ended_and_the_cap_holds() {
        let s = Sessions::new(Duration::from_millis(200), 2);
        let (a, csrf) = s
            .start(Holder::Operator("ra-dn".into()), Via::Password)
            .expect("start");
        let got = s.touch(&a).expect("live");
        assert_eq!(
            (got.holder, got.csrf),
            (Holder::Operator("ra-dn".into()), csrf)
        );
        assert!(s.touch("forged").is_none());
        let (b, _) = s.start(Holder::Signer(7), Via::Password).expect("start");
        assert!(
            s.start(Holder::Operator("third".into()), Via::Password)
                .is_none(),
            "cap of 2"
        );
        s.end(&b);
        assert!(s.touch(&b).is_none());
        std::thread::sleep(Duration::from_millis(300));
        assert!(s.touch(&a).is_none(), "idle timeout");
        assert!(
            s.start(Holder::Operator("third".into()), Via::Password)
                .is_some(),
            "idle ones make room"
        );
    }
}

//! Slows down guessing: after [`MAX_FAILURES`] failed attempts within [`WINDOW`] for the same
//! key, further attempts for that key are refused — with `429 Too Many Requests` and a
//! `Retry-After` — *before* the secret is checked, so a guesser costs no argon2 time either.
//!
//! - Passwords (the sign-in form, and the current password when changing it) are counted per
//!   username *and* client address together ([`SignInKey`]): five wrong guesses from one
//!   address lock that address out of that account, while the owner signing in from
//!   elsewhere is not locked out by somebody else's guessing. Unknown usernames are counted
//!   exactly like known ones, so the answers do not tell which exist. A successful sign-in
//!   clears its key.
//! - API tokens (Bearer, and the password of git's Basic auth) are counted per client address
//!   alone, and only when the address is known: without one every client would share a
//!   single key, and one script with a revoked token would lock out everybody.
//!
//! The client address is the TCP peer that axum's `ConnectInfo` reports (`pcr-repohub`
//! serves with it). Behind a reverse proxy every peer is the proxy, so password keys
//! effectively become per-username and token keys one shared key; `X-Forwarded-For` is not
//! trusted, as any client can write it. IPv6 addresses are keyed by their /64, which one
//! host usually holds whole.
//!
//! The counters live in memory only: restarting repohub resets them. That is accepted — they
//! exist to slow guessing down to a few tries per quarter hour, and whoever can restart the
//! service has no need to guess. Each
//! map holds at most [`MAX_KEYS`] keys; when full, keys whose failures have all expired go
//! first, then the key whose last failure is oldest, so memory stays bounded under a flood
//! of distinct usernames or addresses.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Failed attempts a key may make within [`WINDOW`] before it is refused.
pub const MAX_FAILURES: usize = 5;
/// How far back failures count.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Keys remembered per kind of secret.
pub const MAX_KEYS: usize = 10_000;
/// Usernames are at most 32 characters; longer input is cut so a key stays small.
const MAX_USERNAME_CHARS: usize = 64;

/// Where "now" comes from. Tests use a manual clock to step over the window without sleeping.
#[derive(Debug, Clone, Default)]
pub enum Clock {
    #[default]
    System,
    Manual(Arc<Mutex<Instant>>),
}

impl Clock {
    /// A clock that stands still until [`Clock::advance`]d.
    pub fn manual() -> Clock {
        Clock::Manual(Arc::new(Mutex::new(Instant::now())))
    }

    pub fn now(&self) -> Instant {
        match self {
            Clock::System => Instant::now(),
            Clock::Manual(t) => *relock(t),
        }
    }

    /// Moves a manual clock forward; the system clock is not ours to move, so it is left alone.
    pub fn advance(&self, by: Duration) {
        if let Clock::Manual(t) = self {
            *relock(t) += by;
        }
    }
}

/// A panic while holding one of these locks leaves plain data behind, still usable.
fn relock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Counts failures per key within a sliding window.
#[derive(Debug)]
pub struct Throttle<K> {
    limit: usize,
    window: Duration,
    capacity: usize,
    /// Per key, the times of its most recent failures (at most `limit`), oldest first.
    failures: Mutex<HashMap<K, VecDeque<Instant>>>,
}

impl<K: Eq + Hash + Clone> Throttle<K> {
    pub fn new(limit: usize, window: Duration, capacity: usize) -> Throttle<K> {
        Throttle {
            limit: limit.max(1),
            window,
            capacity: capacity.max(1),
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(wait)` when `key` has failed `limit` times within the window; `wait` is how long
    /// until the oldest of those failures stops counting.
    pub fn check(&self, key: &K, now: Instant) -> Result<(), Duration> {
        self.locked(&relock(&self.failures), key, now)
    }

    /// Checks `key` and, if it may try, counts this attempt as a failure in the same step;
    /// [`Throttle::clear`] takes it back when the attempt succeeds. Counting first means a
    /// burst of simultaneous guesses cannot all pass the check before any of them has failed.
    pub fn begin(&self, key: K, now: Instant) -> Result<(), Duration> {
        let mut map = relock(&self.failures);
        self.locked(&map, &key, now)?;
        self.push(&mut map, key, now);
        Ok(())
    }

    /// Counts a failure for `key`.
    pub fn record_failure(&self, key: K, now: Instant) {
        self.push(&mut relock(&self.failures), key, now);
    }

    /// Forgets `key`'s failures.
    pub fn clear(&self, key: &K) {
        relock(&self.failures).remove(key);
    }

    /// Keys remembered.
    pub fn len(&self) -> usize {
        relock(&self.failures).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn locked(
        &self,
        map: &HashMap<K, VecDeque<Instant>>,
        key: &K,
        now: Instant,
    ) -> Result<(), Duration> {
        match map.get(key) {
            Some(times) if times.len() >= self.limit => match times.front() {
                Some(oldest) if now < *oldest + self.window => Err(*oldest + self.window - now),
                _ => Ok(()),
            },
            _ => Ok(()),
        }
    }

    fn push(&self, map: &mut HashMap<K, VecDeque<Instant>>, key: K, now: Instant) {
        if !map.contains_key(&key) && map.len() >= self.capacity {
            self.make_room(map, now);
        }
        let times = map.entry(key).or_default();
        times.push_back(now);
        while times.len() > self.limit {
            times.pop_front();
        }
    }

    /// Runs only when the map is full, so the scans are rare unless repohub is being flooded
    /// — and then each costs microseconds against the milliseconds of the argon2 check.
    fn make_room(&self, map: &mut HashMap<K, VecDeque<Instant>>, now: Instant) {
        let window = self.window;
        map.retain(|_, times| {
            times
                .back()
                .is_some_and(|last| now.saturating_duration_since(*last) < window)
        });
        while map.len() >= self.capacity {
            let oldest = map
                .iter()
                .min_by_key(|(_, times)| times.back().copied())
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => map.remove(&k),
                None => break,
            };
        }
    }
}

/// Whose password guesses are counted together: a username from one client address (or from
/// anywhere, when the address is not known).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SignInKey {
    username: String,
    address: Option<IpAddr>,
}

impl SignInKey {
    pub fn new(username: &str, peer: Option<IpAddr>) -> SignInKey {
        SignInKey {
            username: username
                .trim()
                .chars()
                .take(MAX_USERNAME_CHARS)
                .collect::<String>()
                .to_lowercase(),
            address: peer.map(address_key),
        }
    }
}

/// The part of a client address that identifies a client: the address itself for IPv4, the
/// /64 network for IPv6 (a host can pick any address in its /64, so counting single addresses
/// would let it reset its counter at will).
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// The failure counters repohub keeps.
#[derive(Debug)]
pub struct Limits {
    pub passwords: Throttle<SignInKey>,
    pub tokens: Throttle<IpAddr>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            passwords: Throttle::new(MAX_FAILURES, WINDOW, MAX_KEYS),
            tokens: Throttle::new(MAX_FAILURES, WINDOW, MAX_KEYS),
        }
    }
}

/// Whole seconds to put in `Retry-After`, rounded up so a client that waits exactly that long
/// is let in.
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

/// "14 minutes", "1 minute", "40 seconds": how long to wait, rounded up.
pub fn wait_phrase(wait: Duration) -> String {
    let secs = retry_after_secs(wait).max(1);
    let (n, unit) = if secs < 60 {
        (secs, "second")
    } else {
        (secs.div_ceil(60), "minute")
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn the_sixth_failure_within_the_window_is_refused_until_the_first_expires() {
        let t: Throttle<&str> = Throttle::new(5, 15 * MIN, 100);
        let start = Instant::now();
        for i in 0..5 {
            assert_eq!(t.check(&"a", start + i * MIN), Ok(()), "failure {i}");
            t.record_failure("a", start + i * MIN);
        }
        assert_eq!(t.check(&"a", start + 5 * MIN), Err(10 * MIN));
        assert_eq!(
            t.check(&"b", start + 5 * MIN),
            Ok(()),
            "other keys are free"
        );
        assert_eq!(
            t.check(&"a", start + 15 * MIN - Duration::from_millis(1)),
            Err(Duration::from_millis(1))
        );
        // The first failure has expired; the other four still count, so one more failure
        // locks again until the second expires.
        assert_eq!(t.check(&"a", start + 15 * MIN), Ok(()));
        t.record_failure("a", start + 15 * MIN);
        assert_eq!(t.check(&"a", start + 15 * MIN), Err(MIN));
    }

    #[test]
    fn failures_spread_wider_than_the_window_never_lock() {
        let t: Throttle<&str> = Throttle::new(5, 15 * MIN, 100);
        let start = Instant::now();
        for i in 0..50 {
            assert_eq!(t.begin("a", start + i * 4 * MIN), Ok(()), "attempt {i}");
        }
    }

    #[test]
    fn begin_counts_the_attempt_and_clear_takes_it_back() {
        let t: Throttle<&str> = Throttle::new(2, 15 * MIN, 100);
        let now = Instant::now();
        assert_eq!(t.begin("a", now), Ok(()));
        assert_eq!(t.begin("a", now), Ok(()));
        assert_eq!(
            t.begin("a", now),
            Err(15 * MIN),
            "two attempts in flight count"
        );
        t.clear(&"a");
        assert_eq!(t.begin("a", now), Ok(()));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn a_full_map_drops_expired_keys_first_then_the_stalest() {
        let t: Throttle<u32> = Throttle::new(5, 15 * MIN, 3);
        let start = Instant::now();
        t.record_failure(1, start);
        t.record_failure(2, start + 10 * MIN);
        t.record_failure(3, start + 11 * MIN);
        // Key 1 expired at 15 min: it alone goes.
        t.record_failure(4, start + 16 * MIN);
        assert_eq!(t.len(), 3);
        for _ in 0..5 {
            t.record_failure(4, start + 16 * MIN);
        }
        assert_eq!(t.check(&4, start + 16 * MIN), Err(15 * MIN));
        // Nothing has expired now: the key whose last failure is oldest (2, at 10 min) goes,
        // not the locked one.
        t.record_failure(5, start + 17 * MIN);
        assert_eq!(t.len(), 3);
        assert_eq!(t.check(&4, start + 17 * MIN), Err(14 * MIN), "still locked");
        let map = relock(&t.failures);
        assert!(!map.contains_key(&2) && map.contains_key(&3) && map.contains_key(&5));
    }

    #[test]
    fn sign_in_keys_ignore_case_spacing_and_the_host_part_of_ipv6() {
        let v6a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let v6b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let v6c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(
            SignInKey::new(" Alice ", Some(v6a)),
            SignInKey::new("alice", Some(v6b))
        );
        assert_ne!(
            SignInKey::new("alice", Some(v6a)),
            SignInKey::new("alice", Some(v6c))
        );
        assert_ne!(
            SignInKey::new("alice", Some(v6a)),
            SignInKey::new("alice", None)
        );
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(address_key(mapped), "192.0.2.7".parse::<IpAddr>().unwrap());
        let long = "x".repeat(10_000);
        assert_eq!(
            SignInKey::new(&long, None).username.len(),
            MAX_USERNAME_CHARS
        );
    }

    #[test]
    fn waits_are_rounded_up_and_read_as_a_person_would_say_them() {
        let cases = [
            (Duration::from_millis(1), 1, "1 second"),
            (Duration::from_secs(40), 40, "40 seconds"),
            (Duration::from_secs(59), 59, "59 seconds"),
            (Duration::from_secs(60), 60, "1 minute"),
            (Duration::from_millis(60_001), 61, "2 minutes"),
            (Duration::from_secs(14 * 60 + 1), 14 * 60 + 1, "15 minutes"),
            (Duration::from_secs(15 * 60), 15 * 60, "15 minutes"),
        ];
        for (wait, secs, phrase) in cases {
            assert_eq!(retry_after_secs(wait), secs, "{wait:?}");
            assert_eq!(wait_phrase(wait), phrase, "{wait:?}");
        }
    }

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let c = Clock::manual();
        let t0 = c.now();
        assert_eq!(c.now(), t0);
        c.advance(WINDOW);
        assert_eq!(c.now(), t0 + WINDOW);
    }
}

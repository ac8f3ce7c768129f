//! Keeping secrets out of logs, errors and `Debug` output.
//!
//! A collector that talks to a server is configured with a URL, and URLs
//! carry secrets: `amqp://carat:s3cret@mq:5672/`, `https://TOKEN@host/`,
//! `http://host/stats?token=…`. Every message that may show such a URL
//! (an option error, a connection error, a `Debug` of the options) goes
//! through this module first:
//!
//! - [`redact_url`]: one URL, with the password of its user information
//!   and the values of secret-looking query parameters replaced by `***`;
//! - [`redact_urls`]: the same for every URL inside a free-form message,
//!   such as the text of a client library's error;
//! - [`redact_secret`]: a known secret (a configured password) replaced
//!   wherever it appears in a message, for servers that echo it back.
//!
//! ```
//! use carat_collector::redact::{redact_secret, redact_url, redact_urls};
//!
//! assert_eq!(redact_url("amqp://carat:s3cret@mq:5672/%2f"), "amqp://carat:***@mq:5672/%2f");
//! assert_eq!(redact_url("https://ghp_abc@github.example/x"), "https://***@github.example/x");
//! assert_eq!(redact_url("http://lb/stats?token=abc&x=1"), "http://lb/stats?token=***&x=1");
//! assert_eq!(
//!     redact_urls("error sending request for url (http://u:pw@lb:8404/stats): timed out"),
//!     "error sending request for url (http://u:***@lb:8404/stats): timed out",
//! );
//! assert_eq!(redact_secret("login failed for s3cret", "s3cret"), "login failed for ***");
//! ```
//!
//! The user name is kept when a password follows it (`user:***@`): it is
//! what an operator needs to tell which account failed, and it is not a
//! secret. User information without a password (`TOKEN@host`) is replaced
//! whole, since a bare token is often written there. A URL whose password
//! holds an unencoded `/`, `?` or `#` is not a valid URL; such a password is
//! cut at that character and only its first part is recognised.

use std::borrow::Cow;

/// What a secret is replaced with.
pub const MASK: &str = "***";

/// Query parameters whose value is hidden: those whose name, in lower case,
/// contains one of these.
const SECRET_PARAMETERS: [&str; 6] = ["pass", "pwd", "secret", "token", "apikey", "api_key"];

/// `url` with its secrets replaced by [`MASK`]: the password of
/// `scheme://user:password@host…` (or the whole `scheme://token@host…`
/// user information), and the value of each query parameter whose name
/// looks secret (`password`, `token`, `api_key`, …). Anything else,
/// including a string that is not a URL, is returned unchanged (borrowed).
///
/// ```
/// use carat_collector::redact::redact_url;
///
/// assert_eq!(redact_url("mongodb://admin:pw@db1,db2/?authSource=admin"), "mongodb://admin:***@db1,db2/?authSource=admin");
/// assert_eq!(redact_url("http://lb/x@y"), "http://lb/x@y");
/// assert_eq!(redact_url("not a url"), "not a url");
/// ```
pub fn redact_url(url: &str) -> Cow<'_, str> {
    let Some(scheme_end) = url.find("://") else {
        return Cow::Borrowed(url);
    };
    let start = scheme_end + 3;
    let mut out = String::from(&url[..start]);
    if redact_after_scheme(&url[start..], &mut out) {
        Cow::Owned(out)
    } else {
        Cow::Borrowed(url)
    }
}

/// `message` with every URL in it (`scheme://…`, up to the next whitespace
/// or quote) passed through [`redact_url`]. Unchanged (borrowed) when there
/// was nothing to hide.
///
/// ```
/// use carat_collector::redact::redact_urls;
///
/// assert_eq!(
///     redact_urls("connect to \"amqp://u:p@mq/\" failed; retrying amqp://u:p@mq2/"),
///     "connect to \"amqp://u:***@mq/\" failed; retrying amqp://u:***@mq2/",
/// );
/// ```
pub fn redact_urls(message: &str) -> Cow<'_, str> {
    let mut out = String::new();
    // Everything of `message` before `copied` is in `out` already.
    let mut copied = 0;
    let mut from = 0;
    while let Some(found) = message[from..].find("://") {
        let start = from + found + 3;
        let end = message[start..]
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | '`'))
            .map_or(message.len(), |i| start + i);
        let before = out.len();
        out.push_str(&message[copied..start]);
        if redact_after_scheme(&message[start..end], &mut out) {
            copied = end;
        } else {
            out.truncate(before);
        }
        from = end;
    }
    if copied == 0 {
        return Cow::Borrowed(message);
    }
    out.push_str(&message[copied..]);
    Cow::Owned(out)
}

/// `message` with every occurrence of `secret` replaced by [`MASK`]. An
/// empty secret hides nothing. Use it for messages that may quote a
/// configured password (a server's error echoing the login it refused).
///
/// ```
/// use carat_collector::redact::redact_secret;
///
/// assert_eq!(redact_secret("auth failed: user=carat pass=hunter2", "hunter2"), "auth failed: user=carat pass=***");
/// assert_eq!(redact_secret("nothing here", ""), "nothing here");
/// ```
pub fn redact_secret<'a>(message: &'a str, secret: &str) -> Cow<'a, str> {
    if secret.is_empty() || !message.contains(secret) {
        return Cow::Borrowed(message);
    }
    Cow::Owned(message.replace(secret, MASK))
}

/// Appends to `out` `url`, the part of a URL after `scheme://`, with its
/// secrets hidden. Returns whether there was any.
fn redact_after_scheme(url: &str, out: &mut String) -> bool {
    let authority_end = url.find(['/', '?', '#']).unwrap_or(url.len());
    let authority = &url[..authority_end];
    let mut changed = false;
    match authority.rfind('@') {
        Some(at) => {
            let userinfo = &authority[..at];
            match userinfo.find(':') {
                Some(colon) if colon + 1 < userinfo.len() => {
                    out.push_str(&userinfo[..=colon]);
                    out.push_str(MASK);
                    changed = true;
                }
                Some(_) => out.push_str(userinfo),
                None if userinfo.is_empty() => {}
                None => {
                    out.push_str(MASK);
                    changed = true;
                }
            }
            out.push_str(&authority[at..]);
        }
        None => out.push_str(authority),
    }
    let rest = &url[authority_end..];
    let (before_query, query_and_fragment) = match rest.find('?') {
        Some(q) => rest.split_at(q + 1),
        None => (rest, ""),
    };
    out.push_str(before_query);
    let (query, fragment) = match query_and_fragment.find('#') {
        Some(h) => query_and_fragment.split_at(h),
        None => (query_and_fragment, ""),
    };
    for (i, pair) in query.split('&').enumerate() {
        if i > 0 {
            out.push('&');
        }
        match pair.split_once('=') {
            Some((name, value)) if !value.is_empty() && is_secret_parameter(name) => {
                out.push_str(name);
                out.push('=');
                out.push_str(MASK);
                changed = true;
            }
            _ => out.push_str(pair),
        }
    }
    out.push_str(fragment);
    changed
}

fn is_secret_parameter(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_PARAMETERS.iter().any(|s| name.contains(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_urls_are_hidden_and_users_kept() {
        for (url, expected) in [
            (
                "amqp://carat:s3cret@mq.example:5672/%2f",
                "amqp://carat:***@mq.example:5672/%2f",
            ),
            ("http://a:b@lb:1/x@y", "http://a:***@lb:1/x@y"),
            // The last @ of the authority ends the user information.
            ("http://a:p@ss@lb/", "http://a:***@lb/"),
            (
                "https://ghp_token@github.example/x",
                "https://***@github.example/x",
            ),
            (
                "mongodb://u:p@h1:27017,h2:27017/db?replicaSet=rs",
                "mongodb://u:***@h1:27017,h2:27017/db?replicaSet=rs",
            ),
            ("http://[::1]:8404/stats", "http://[::1]:8404/stats"),
            ("http://lb/x@y", "http://lb/x@y"),
            ("http://user:@lb/", "http://user:@lb/"),
            ("http://@lb/", "http://@lb/"),
            ("no scheme:pw@host", "no scheme:pw@host"),
            ("", ""),
        ] {
            assert_eq!(redact_url(url), expected, "{url}");
        }
        assert!(matches!(redact_url("http://lb/"), Cow::Borrowed(_)));
    }

    #[test]
    fn secret_query_parameters_are_hidden() {
        for (url, expected) in [
            ("http://lb/s?token=abc", "http://lb/s?token=***"),
            (
                "http://lb/s?x=1&Password=p&y=2#frag",
                "http://lb/s?x=1&Password=***&y=2#frag",
            ),
            (
                "http://lb/s?access_token=a&api_key=b&apikey=c&client_secret=d&pwd=e",
                "http://lb/s?access_token=***&api_key=***&apikey=***&client_secret=***&pwd=***",
            ),
            ("http://lb/s?token=&x", "http://lb/s?token=&x"),
            ("http://lb/s?stats;csv", "http://lb/s?stats;csv"),
            ("http://lb/s#token=abc", "http://lb/s#token=abc"),
        ] {
            assert_eq!(redact_url(url), expected, "{url}");
        }
    }

    #[test]
    fn every_url_of_a_message_is_redacted() {
        assert_eq!(
            redact_urls("error sending request for url (http://u:pw@lb:8404/stats;csv): timed out"),
            "error sending request for url (http://u:***@lb:8404/stats;csv): timed out"
        );
        assert_eq!(
            redact_urls("a http://x:1@h/ b 'https://t@h2/?token=9' c http://plain/ d"),
            "a http://x:***@h/ b 'https://***@h2/?token=***' c http://plain/ d"
        );
        assert_eq!(redact_urls("amqp://u:p@mq"), "amqp://u:***@mq");
        assert_eq!(redact_urls("://a:b@c"), "://a:***@c");
        for plain in ["no url here", "http://lb/ and https://lb2/", "a :// b", ""] {
            assert!(matches!(redact_urls(plain), Cow::Borrowed(_)), "{plain}");
        }
    }

    #[test]
    fn known_secrets_are_hidden_wherever_they_appear() {
        assert_eq!(
            redact_secret("pw=hunter2, again hunter2", "hunter2"),
            "pw=***, again ***"
        );
        assert!(matches!(redact_secret("x", "y"), Cow::Borrowed(_)));
        assert!(matches!(redact_secret("x", ""), Cow::Borrowed(_)));
    }
}

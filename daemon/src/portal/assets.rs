//! Static assets, embedded in the binary and served under content-hashed names
//! (`/static/portal.3f2a9c1e0b7d.css`), so they can be cached for a year and a new build's
//! file is never mistaken for an old one.

use aws_lc_rs::digest;
use std::sync::OnceLock;

/// The style sheet.
const CSS: &str = include_str!("../../static/portal.css");

/// `/static/portal.HASH.css`: the style sheet's path, with the first 12 hex digits of its
/// SHA-256.
pub(super) fn css_path() -> &'static str {
    static PATH: OnceLock<String> = OnceLock::new();
    PATH.get_or_init(|| {
        let hash = hex::encode(digest::digest(&digest::SHA256, CSS.as_bytes()));
        format!("/static/portal.{}.css", &hash[..12])
    })
}

/// The asset at `path` and its media type, if there is one by that exact name.
pub(super) fn asset(path: &str) -> Option<(&'static str, &'static [u8])> {
    (path == css_path()).then_some(("text/css; charset=utf-8", CSS.as_bytes()))
}

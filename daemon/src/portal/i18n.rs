//! The portal's message catalogues (Project Fluent): `daemon/locales/{vi,en}/portal.ftl`,
//! compiled into the binary. Vietnamese is the default; English is the second language.

use fluent_bundle::concurrent::FluentBundle;
use fluent_bundle::{FluentArgs, FluentResource};
use std::sync::OnceLock;
use unic_langid::langid;

/// Vietnamese messages.
const VI: &str = include_str!("../../locales/vi/portal.ftl");
/// English messages.
const EN: &str = include_str!("../../locales/en/portal.ftl");

/// A language the portal speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Lang {
    /// Tiếng Việt (the default).
    Vi,
    /// English.
    En,
}

impl Lang {
    /// The BCP 47 tag, for the `lang` attribute and the cookie.
    pub(super) fn tag(self) -> &'static str {
        match self {
            Self::Vi => "vi",
            Self::En => "en",
        }
    }

    /// The language a tag names, if the portal speaks it (`vi`, `vi-VN`, `en-GB`, …).
    pub(super) fn parse(tag: &str) -> Option<Self> {
        let primary = tag.trim().split(['-', '_']).next()?.to_ascii_lowercase();
        match primary.as_str() {
            "vi" => Some(Self::Vi),
            "en" => Some(Self::En),
            _ => None,
        }
    }

    /// The preferred language of an `Accept-Language` header (RFC 9110 §12.5.4): the highest
    /// `q` among the languages the portal speaks; Vietnamese when none is.
    pub(super) fn negotiate(accept: Option<&str>) -> Self {
        let mut best: Option<(f32, Self)> = None;
        for item in accept.unwrap_or_default().split(',').take(32) {
            let mut parts = item.split(';');
            let Some(lang) = parts.next().and_then(Self::parse) else {
                continue;
            };
            let q = parts
                .find_map(|p| p.trim().strip_prefix("q="))
                .and_then(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            if q > 0.0 && best.is_none_or(|(bq, _)| q > bq) {
                best = Some((q, lang));
            }
        }
        best.map_or(Self::Vi, |(_, l)| l)
    }

    /// The other language (the switch offers it).
    pub(super) fn other(self) -> Self {
        match self {
            Self::Vi => Self::En,
            Self::En => Self::Vi,
        }
    }
}

type Bundle = FluentBundle<FluentResource>;

fn bundle(lang: unic_langid::LanguageIdentifier, text: &str) -> Bundle {
    let resource = match FluentResource::try_new(text.to_owned()) {
        Ok(r) => r,
        // A broken catalogue fails the unit test below; at run time keep what parsed.
        Err((r, _)) => r,
    };
    let mut b = FluentBundle::new_concurrent(vec![lang]);
    // Unicode isolation marks would show up inside attribute values and copied text.
    b.set_use_isolating(false);
    let _ = b.add_resource(resource);
    b
}

fn bundles() -> &'static (Bundle, Bundle) {
    static B: OnceLock<(Bundle, Bundle)> = OnceLock::new();
    B.get_or_init(|| (bundle(langid!("vi"), VI), bundle(langid!("en"), EN)))
}

/// The message `key` in `lang`, with `args`; the key itself when the catalogue lacks it (a
/// unit test keeps both catalogues complete).
pub(super) fn message(lang: Lang, key: &str, args: Option<&FluentArgs<'_>>) -> String {
    let (vi, en) = bundles();
    let b = match lang {
        Lang::Vi => vi,
        Lang::En => en,
    };
    let Some(pattern) = b.get_message(key).and_then(|m| m.value()) else {
        return key.to_owned();
    };
    let mut errors = Vec::new();
    b.format_pattern(pattern, args, &mut errors).into_owned()
}

/// The message ids a catalogue defines (tests): every line `id = …` that starts a message.
#[cfg(test)]
fn keys(text: &str) -> std::collections::BTreeSet<String> {
    if let Err((_, e)) = FluentResource::try_new(text.to_owned()) {
        panic!("catalogue does not parse: {e:?}");
    }
    text.lines()
        .filter(|l| l.starts_with(|c: char| c.is_ascii_lowercase()))
        .filter_map(|l| l.split_once(" =").map(|(k, _)| k.trim().to_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_catalogues_parse_and_define_the_same_messages() {
        let vi = keys(VI);
        let en = keys(EN);
        assert!(vi.len() > 50, "{} messages", vi.len());
        assert_eq!(
            vi.symmetric_difference(&en).collect::<Vec<_>>(),
            Vec::<&String>::new()
        );
    }

    #[test]
    fn states_read_as_words_in_each_language() {
        assert_eq!(message(Lang::Vi, "state-fulfilled", None), "hoàn thành");
        assert_eq!(message(Lang::En, "state-fulfilled", None), "fulfilled");
        let mut args = FluentArgs::new();
        args.set("n", 5);
        assert_eq!(message(Lang::Vi, "left-hours", Some(&args)), "còn 5 giờ");
        assert_eq!(message(Lang::En, "left-hours", Some(&args)), "5 hours left");
    }

    #[test]
    fn accept_language_picks_the_best_spoken_language() {
        assert_eq!(Lang::negotiate(None), Lang::Vi);
        assert_eq!(Lang::negotiate(Some("en-GB,en;q=0.9")), Lang::En);
        assert_eq!(Lang::negotiate(Some("fr, en;q=0.5, vi;q=0.8")), Lang::Vi);
        assert_eq!(Lang::negotiate(Some("de, fr")), Lang::Vi);
        assert_eq!(Lang::negotiate(Some("en;q=0")), Lang::Vi);
    }
}

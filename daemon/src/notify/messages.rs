//! What each RA event tells whom: a [`Notice`] composed into one outbox message per recipient
//! and channel.
//!
//! ```text
//! Notice (event, request, organisation, subscriber, deadline, certificate)
//!   ├─ email   → the organisation's contact address   (Vietnamese, then English)
//!   ├─ email   → the subscriber's official address    (Vietnamese, then English)
//!   └─ webhook → audience `organisation`, `subscriber` (JSON: event, request, kind, dates;
//!                                                      no name, address or phone)
//! ```
//!
//! Bodies are askama templates (`daemon/templates/mail/`), checked when the crate compiles.
//! Instants are shown in `Asia/Ho_Chi_Minh` (UTC+07:00 all year: Vietnam keeps no daylight
//! saving time) as `dd/mm/yyyy HH:MM`.

use crate::config::NotifyConfig;
use crate::store::outbox::RequestParties;
use crate::store::{Channel, OutboxMessage};
use askama::Template;
use time::{OffsetDateTime, UtcOffset};

/// `Asia/Ho_Chi_Minh`: UTC+07:00, no daylight saving time since 1975.
const VIETNAM: UtcOffset = match UtcOffset::from_hms(7, 0, 0) {
    Ok(o) => o,
    Err(_) => UtcOffset::UTC,
};

/// What happened to a request or a certificate that its people are told about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// The dossier was accepted: the deadline starts.
    Accepted,
    /// Returned to the organisation for correction: the clock stops.
    Returned,
    /// Refused for good.
    Rejected,
    /// Done: issued, renewed, changed, revoked or recovered.
    Fulfilled,
    /// The deadline passed while the request was still open.
    Breach,
    /// The certificate expires within `expiry_reminder_days`: time to renew.
    ExpiryReminder,
}

impl Event {
    /// The event's name: the `event` column, the webhook's `event` field, the first part of
    /// the idempotency key.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Returned => "returned",
            Self::Rejected => "rejected",
            Self::Fulfilled => "fulfilled",
            Self::Breach => "breach",
            Self::ExpiryReminder => "expiry-reminder",
        }
    }
}

/// Whom a message is for: it chooses the salutation, and it is all a webhook learns of the
/// recipient (the gateway looks up the number itself).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Audience {
    /// The directly managing organisation's contact.
    Organisation,
    /// The certificate's holder.
    Subscriber,
}

impl Audience {
    /// The webhook's `audience` field and the webhook message's recipient.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Organisation => "organisation",
            Self::Subscriber => "subscriber",
        }
    }
}

/// One event about one request (or certificate), with what its messages say. The RA builds it
/// when a transition commits; the scanners build breach and reminder notices.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    /// What happened.
    pub event: Event,
    /// The request concerned (for a reminder: the request that issued the certificate).
    pub request: i64,
    /// The request's kind: `issue`, `renew`, `modify`, `revoke` or `recover`.
    pub kind: String,
    /// What a `recover` request does to a remote-signing account (`unlock`, `reenrol`), when
    /// it is one.
    pub recovery: Option<&'static str>,
    /// Who is told: the organisation and the subscriber.
    pub parties: RequestParties,
    /// The request's deadline, Unix seconds.
    pub due_at: Option<u64>,
    /// Why it was returned or rejected (mail only: free text may name people).
    pub reason: Option<String>,
    /// The certificate concerned or issued, hex serial.
    pub serial: Option<String>,
    /// That certificate's notAfter, Unix seconds.
    pub not_after: Option<u64>,
    /// The subscriber's one-time revocation code (fulfilment of a request that issued a
    /// certificate): only in the mail to the subscriber's address, whose body is emptied once
    /// delivered; never in a webhook.
    pub revocation_code: Option<String>,
}

/// An instant as Vietnamese readers write it: `dd/mm/yyyy HH:MM`, Asia/Ho_Chi_Minh time.
pub fn vietnam_time(unix: u64) -> String {
    let at = i64::try_from(unix)
        .ok()
        .and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok())
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
        .to_offset(VIETNAM);
    format!(
        "{:02}/{:02}/{:04} {:02}:{:02}",
        at.day(),
        u8::from(at.month()),
        at.year(),
        at.hour(),
        at.minute()
    )
}

/// An instant as RFC 3339 at +07:00, for machines (the webhook).
fn rfc3339(unix: u64) -> Option<String> {
    let at = OffsetDateTime::from_unix_timestamp(i64::try_from(unix).ok()?)
        .ok()?
        .to_offset(VIETNAM);
    at.format(&time::format_description::well_known::Rfc3339)
        .ok()
}

/// The request kind in Vietnamese and English, as the mail names it.
fn kind_names<'a>(kind: &'a str, recovery: Option<&str>) -> (&'a str, &'a str) {
    match (kind, recovery) {
        ("recover", Some("unlock")) => {
            return (
                "mở khóa tài khoản ký số từ xa",
                "remote-signing account unlock",
            )
        }
        ("recover", Some(_)) => {
            return (
                "đăng ký lại tài khoản ký số từ xa",
                "remote-signing account re-enrolment",
            )
        }
        _ => {}
    }
    match kind {
        "issue" => ("cấp mới chứng thư số", "certificate issuance"),
        "renew" => ("gia hạn chứng thư số", "certificate renewal"),
        "modify" => (
            "thay đổi thông tin chứng thư số",
            "change of certificate information",
        ),
        "revoke" => ("thu hồi chứng thư số", "certificate revocation"),
        "recover" => ("khôi phục thiết bị lưu khóa", "key device recovery"),
        other => (other, other),
    }
}

/// The body of one mail (`templates/mail/notice.txt`: Vietnamese, then English if asked).
#[derive(Template)]
#[template(path = "mail/notice.txt", escape = "none")]
struct MailBody<'a> {
    event: Event,
    audience: Audience,
    english: bool,
    request: i64,
    kind_vi: &'a str,
    kind_en: &'a str,
    organisation_name: &'a str,
    subscriber_name: Option<&'a str>,
    due: Option<String>,
    reason: Option<&'a str>,
    serial: Option<&'a str>,
    not_after: Option<String>,
    revocation_code: Option<&'a str>,
}

/// The mail subject: Vietnamese, then ` / ` and English if asked.
fn subject(n: &Notice, english: bool) -> String {
    let id = n.request;
    let serial = n.serial.as_deref().unwrap_or("");
    let (vi, en) = match n.event {
        Event::Accepted => (
            format!("Yêu cầu số {id} đã được tiếp nhận"),
            format!("Request {id} accepted"),
        ),
        Event::Returned => (
            format!("Yêu cầu số {id} được trả lại để bổ sung, chỉnh sửa"),
            format!("Request {id} returned for correction"),
        ),
        Event::Rejected => (
            format!("Yêu cầu số {id} bị từ chối"),
            format!("Request {id} rejected"),
        ),
        Event::Fulfilled => (
            format!("Yêu cầu số {id} đã hoàn thành"),
            format!("Request {id} fulfilled"),
        ),
        Event::Breach => (
            format!("Yêu cầu số {id} đã quá thời hạn xử lý"),
            format!("Request {id} is past its deadline"),
        ),
        Event::ExpiryReminder => (
            format!("Chứng thư số {serial} sắp hết hạn"),
            format!("Certificate {serial} expires soon"),
        ),
    };
    if english {
        format!("{vi} / {en}")
    } else {
        vi
    }
}

/// The webhook payload: enough for a gateway to decide what to send and to look up whom to
/// send it to (by request id), and nothing personal — no name, address, phone or free-text
/// reason.
fn webhook_payload(n: &Notice, audience: Audience) -> String {
    serde_json::json!({
        "event": n.event.as_str(),
        "audience": audience.as_str(),
        "request": n.request,
        "kind": n.kind,
        "recovery": n.recovery,
        "organisation": n.parties.organisation,
        "due_at": n.due_at.and_then(rfc3339),
        "certificate": n.serial,
        "not_after": n.not_after.and_then(rfc3339),
    })
    .to_string()
}

/// The idempotency key: one notice, one recipient, one channel. An expiry reminder is keyed by
/// certificate (one per certificate, whatever request issued it), every other event by request.
fn idempotency_key(n: &Notice, recipient: &str, channel: Channel) -> String {
    let about = match (n.event, &n.serial) {
        (Event::ExpiryReminder, Some(serial)) => serial.clone(),
        _ => n.request.to_string(),
    };
    format!(
        "{}:{about}:{recipient}:{}",
        n.event.as_str(),
        channel.as_str()
    )
}

/// The messages a notice becomes under `config`: one mail per distinct address (the
/// organisation's contact, the subscriber's official address) when `[notify.email]` is set,
/// one webhook message per audience when `[notify.webhook]` is set. With no channel set, mail
/// is still composed, so the notices wait in the outbox until a relay is configured.
pub fn compose(n: &Notice, config: &NotifyConfig) -> Vec<OutboxMessage> {
    let mut out = Vec::new();
    let has_subscriber =
        n.parties.subscriber_name.is_some() || n.parties.subscriber_email.is_some();
    let mail = config.email.is_some() || config.webhook.is_none();
    let (kind_vi, kind_en) = kind_names(&n.kind, n.recovery);
    if mail {
        let recipients = [
            (
                Audience::Organisation,
                n.parties.organisation_email.as_deref(),
            ),
            (Audience::Subscriber, n.parties.subscriber_email.as_deref()),
        ];
        let mut told: Vec<&str> = Vec::new();
        for (audience, address) in recipients {
            let Some(address) = address.map(str::trim).filter(|a| !a.is_empty()) else {
                continue;
            };
            if told.iter().any(|t| t.eq_ignore_ascii_case(address)) {
                continue;
            }
            told.push(address);
            // The code goes to the subscriber's own address, whichever audience reaches it.
            let code = n.revocation_code.as_deref().filter(|_| {
                n.parties
                    .subscriber_email
                    .as_deref()
                    .is_some_and(|s| s.trim().eq_ignore_ascii_case(address))
            });
            let body = MailBody {
                event: n.event,
                audience,
                english: config.english,
                request: n.request,
                kind_vi,
                kind_en,
                organisation_name: &n.parties.organisation_name,
                subscriber_name: n.parties.subscriber_name.as_deref(),
                due: n.due_at.map(vietnam_time),
                reason: n.reason.as_deref(),
                serial: n.serial.as_deref(),
                not_after: n.not_after.map(vietnam_time),
                revocation_code: code,
            };
            // The template is checked at compile time and writes into a String: rendering
            // fails only on a formatting error of a field, which a String never raises.
            let body = body.render().unwrap_or_default();
            out.push(OutboxMessage {
                idempotency_key: idempotency_key(n, address, Channel::Email),
                channel: Channel::Email,
                recipient: address.to_string(),
                subject: subject(n, config.english),
                body,
                event: n.event.as_str().to_string(),
                request: Some(n.request),
                secret: code.is_some(),
            });
        }
    }
    if config.webhook.is_some() {
        let audiences = [
            Some(Audience::Organisation),
            has_subscriber.then_some(Audience::Subscriber),
        ];
        for audience in audiences.into_iter().flatten() {
            out.push(OutboxMessage {
                idempotency_key: idempotency_key(n, audience.as_str(), Channel::Webhook),
                channel: Channel::Webhook,
                recipient: audience.as_str().to_string(),
                subject: n.event.as_str().to_string(),
                body: webhook_payload(n, audience),
                event: n.event.as_str().to_string(),
                request: Some(n.request),
                secret: false,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, NotifyConfig};
    use std::path::Path;

    fn config(extra: &str) -> NotifyConfig {
        Config::parse(Path::new("/data"), Some(extra), "test")
            .expect("config")
            .notify
    }

    const BOTH: &str =
        "[notify.email]\nsmtp_url = \"smtp://127.0.0.1:25\"\nfrom = \"ca@example.vn\"\n\
                        [notify.webhook]\nurl = \"http://127.0.0.1:9/hook\"\n";

    /// 2026-12-01 09:30 +07:00 accepted; due 2026-12-04 00:00 +07:00.
    fn accepted() -> Notice {
        Notice {
            event: Event::Accepted,
            request: 42,
            kind: "issue".into(),
            recovery: None,
            parties: RequestParties {
                organisation: "so-tt-dn".into(),
                organisation_name: "Sở Thông tin và Truyền thông Đà Nẵng".into(),
                organisation_email: Some("vanthu@dn.gov.vn".into()),
                subscriber_name: Some("Nguyễn Thị Ánh".into()),
                subscriber_email: Some("anh.nt@dn.gov.vn".into()),
            },
            due_at: Some(1_796_317_200),
            reason: None,
            serial: None,
            not_after: None,
            revocation_code: None,
        }
    }

    #[test]
    fn a_revocation_code_goes_only_to_the_subscriber_mail_and_marks_it_secret() {
        let mut n = accepted();
        n.event = Event::Fulfilled;
        n.serial = Some("4F2A".into());
        n.revocation_code = Some("7QK2-M9XD-4RTC-PW8N".into());
        let out = compose(&n, &config(BOTH));
        let code_in = |m: &OutboxMessage| m.body.contains("7QK2-M9XD-4RTC-PW8N");
        let to_subscriber: Vec<_> = out
            .iter()
            .filter(|m| m.channel == Channel::Email && m.recipient == "anh.nt@dn.gov.vn")
            .collect();
        assert_eq!(to_subscriber.len(), 1);
        assert!(code_in(to_subscriber[0]) && to_subscriber[0].secret);
        assert!(to_subscriber[0].body.contains("Mã thu hồi một lần"));
        for m in out.iter().filter(|m| m.recipient != "anh.nt@dn.gov.vn") {
            assert!(!code_in(m) && !m.secret, "{m:?}");
        }
    }

    #[test]
    fn an_account_recovery_is_named_as_such_in_mail_and_webhook() {
        let mut n = accepted();
        n.event = Event::Fulfilled;
        n.kind = "recover".into();
        n.recovery = Some("unlock");
        let out = compose(&n, &config(BOTH));
        let mail = out
            .iter()
            .find(|m| m.channel == Channel::Email)
            .expect("a mail");
        assert!(
            mail.body.contains("(mở khóa tài khoản ký số từ xa)"),
            "{}",
            mail.body
        );
        assert!(!mail.body.contains("thiết bị lưu khóa"), "{}", mail.body);
        let hook = out
            .iter()
            .find(|m| m.channel == Channel::Webhook)
            .expect("a webhook message");
        let v: serde_json::Value = serde_json::from_str(&hook.body).expect("json");
        assert_eq!(v["kind"], "recover");
        assert_eq!(v["recovery"], "unlock");
        n.recovery = None;
        let device = compose(&n, &config(BOTH));
        assert!(device[0].body.contains("(khôi phục thiết bị lưu khóa)"));
    }

    #[test]
    fn dates_are_shown_in_vietnam_time() {
        assert_eq!(vietnam_time(1_796_317_200), "04/12/2026 00:00");
        assert_eq!(vietnam_time(0), "01/01/1970 07:00");
        assert_eq!(
            rfc3339(1_796_317_200).as_deref(),
            Some("2026-12-04T00:00:00+07:00")
        );
    }

    #[test]
    fn an_accepted_request_mails_the_organisation_and_the_subscriber_in_vietnamese_first() {
        let messages = compose(&accepted(), &config(BOTH));
        let mail: Vec<_> = messages
            .iter()
            .filter(|m| m.channel == Channel::Email)
            .collect();
        assert_eq!(mail.len(), 2);
        assert_eq!(mail[0].recipient, "vanthu@dn.gov.vn");
        assert_eq!(mail[1].recipient, "anh.nt@dn.gov.vn");
        assert_eq!(
            mail[0].subject,
            "Yêu cầu số 42 đã được tiếp nhận / Request 42 accepted"
        );
        assert_eq!(
            mail[0].body,
            "Kính gửi Sở Thông tin và Truyền thông Đà Nẵng,\n\
             \n\
             Yêu cầu số 42 (cấp mới chứng thư số) của Sở Thông tin và Truyền thông Đà Nẵng cho \
             thuê bao Nguyễn Thị Ánh đã được tiếp nhận.\n\
             Thời hạn xử lý: 04/12/2026 00:00 (giờ Việt Nam).\n\
             \n\
             Đây là thư tự động; vui lòng không trả lời thư này.\n\
             \n\
             ----------------------------------------------------------------------\n\
             (English below)\n\
             \n\
             Dear Sở Thông tin và Truyền thông Đà Nẵng,\n\
             \n\
             Request 42 (certificate issuance) from Sở Thông tin và Truyền thông Đà Nẵng for \
             Nguyễn Thị Ánh has been accepted.\n\
             Due: 04/12/2026 00:00 (Vietnam time).\n\
             \n\
             This is an automatic message; please do not reply."
        );
        assert!(mail[1]
            .body
            .starts_with("Kính gửi Ông/Bà Nguyễn Thị Ánh,\n"));
        assert_eq!(mail[0].request, Some(42));
        assert_eq!(mail[0].event, "accepted");
    }

    #[test]
    fn without_english_the_text_is_vietnamese_only() {
        let mut n = accepted();
        n.event = Event::Returned;
        n.reason = Some("Thiếu bản sao căn cước công dân".into());
        let c = config(&format!("[notify]\nenglish = false\n{BOTH}"));
        let mail = &compose(&n, &c)[0];
        assert_eq!(
            mail.subject,
            "Yêu cầu số 42 được trả lại để bổ sung, chỉnh sửa"
        );
        assert_eq!(
            mail.body,
            "Kính gửi Sở Thông tin và Truyền thông Đà Nẵng,\n\
             \n\
             Yêu cầu số 42 (cấp mới chứng thư số) của Sở Thông tin và Truyền thông Đà Nẵng cho \
             thuê bao Nguyễn Thị Ánh được trả lại để bổ sung, chỉnh sửa.\n\
             Lý do: Thiếu bản sao căn cước công dân\n\
             Đề nghị tổ chức quản lý trực tiếp chỉnh sửa hồ sơ và gửi lại yêu cầu.\n\
             \n\
             Đây là thư tự động; vui lòng không trả lời thư này."
        );
    }

    #[test]
    fn every_event_renders_its_own_text() {
        let c = config(BOTH);
        let mut n = accepted();
        n.serial = Some("5A0F".into());
        n.not_after = Some(1_796_317_200);
        for (event, vi) in [
            (Event::Rejected, "đã bị từ chối."),
            (Event::Fulfilled, "Số hiệu chứng thư số: 5A0F"),
            (
                Event::Breach,
                "đã quá thời hạn xử lý (04/12/2026 00:00, giờ Việt Nam).",
            ),
            (
                Event::ExpiryReminder,
                "Chứng thư số 5A0F của thuê bao Nguyễn Thị Ánh (Sở Thông tin và Truyền thông \
                 Đà Nẵng) sẽ hết hạn vào 04/12/2026 00:00 (giờ Việt Nam).",
            ),
        ] {
            n.event = event;
            let body = &compose(&n, &c)[0].body;
            assert!(body.contains(vi), "{event:?}: {body}");
        }
    }

    #[test]
    fn idempotency_keys_name_event_subject_recipient_and_channel() {
        let keys: Vec<String> = compose(&accepted(), &config(BOTH))
            .into_iter()
            .map(|m| m.idempotency_key)
            .collect();
        assert_eq!(
            keys,
            [
                "accepted:42:vanthu@dn.gov.vn:email",
                "accepted:42:anh.nt@dn.gov.vn:email",
                "accepted:42:organisation:webhook",
                "accepted:42:subscriber:webhook",
            ]
        );
        // Composing again gives the same keys: a retried transaction queues nothing new.
        assert_eq!(
            compose(&accepted(), &config(BOTH))[0].idempotency_key,
            keys[0]
        );
        let mut reminder = accepted();
        reminder.event = Event::ExpiryReminder;
        reminder.serial = Some("5A0F".into());
        assert_eq!(
            compose(&reminder, &config(BOTH))[0].idempotency_key,
            "expiry-reminder:5A0F:vanthu@dn.gov.vn:email"
        );
    }

    #[test]
    fn the_webhook_payload_carries_no_personal_data() {
        let mut n = accepted();
        n.event = Event::Rejected;
        n.reason = Some("Hồ sơ của bà Nguyễn Thị Ánh không hợp lệ".into());
        let hooks: Vec<_> = compose(&n, &config(BOTH))
            .into_iter()
            .filter(|m| m.channel == Channel::Webhook)
            .collect();
        assert_eq!(hooks.len(), 2);
        for h in &hooks {
            for personal in ["Nguyễn", "Ánh", "anh.nt@", "vanthu@", "Hồ sơ"] {
                assert!(!h.body.contains(personal), "{personal} in {}", h.body);
            }
        }
        let v: serde_json::Value = serde_json::from_str(&hooks[0].body).expect("json");
        assert_eq!(v["event"], "rejected");
        assert_eq!(v["audience"], "organisation");
        assert_eq!(v["request"], 42);
        assert_eq!(v["kind"], "issue");
        assert_eq!(v["organisation"], "so-tt-dn");
        assert_eq!(v["due_at"], "2026-12-04T00:00:00+07:00");
        assert_eq!(hooks[1].recipient, "subscriber");
    }

    #[test]
    fn recipients_without_an_address_or_the_same_address_twice_are_mailed_once() {
        let mut n = accepted();
        n.parties.subscriber_email = Some("VANTHU@dn.gov.vn".into());
        assert_eq!(compose(&n, &config(BOTH)).len(), 3, "one mail, two hooks");
        n.parties.organisation_email = None;
        n.parties.subscriber_email = None;
        n.parties.subscriber_name = None;
        let only: Vec<_> = compose(&n, &config(BOTH));
        assert_eq!(only.len(), 1);
        assert_eq!(only[0].recipient, "organisation");
        // No channel configured: the mail is still queued, to leave once a relay is set.
        n.parties.organisation_email = Some("vanthu@dn.gov.vn".into());
        assert_eq!(compose(&n, &config("")).len(), 1);
    }
}

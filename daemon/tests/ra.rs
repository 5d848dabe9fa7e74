//! End to end: the registration authority's JSON API and CLI on a running `pkid serve`, driven
//! by `curl`, `openssl` and the `pkid` CLI (`common::ra::Testbed`, one daemon for the file).
//!
//! ```text
//!  org officer ─curl─▶ POST /api/v1/requests (issue, no document) ─▶ awaiting-original
//!  RA officer ─curl─▶ …/transitions original-received ─▶ accepted (due_at) ─approve─▶ fulfilled
//!  openssl x509 ◀─ GET /certs/SERIAL.pem        openssl ocsp ─▶ /ocsp: good, then revoked
//!  renew, modify (old one superseded), revoke (keyCompromise), recover (token: stays approved)
//!  auth (401, 403 on plain HTTP, client certificates), bad input (problem documents), bulk,
//!  pagination and filters, the OpenAPI document, Vietnamese text byte-exact through API and CLI
//! ```
//!
//! The daemon runs on the system clock, so deadlines are checked against what the calendar
//! must give whatever its holiday data: a working-day deadline is always a local midnight at
//! least four calendar days after acceptance (the day of acceptance is not counted, and three
//! working days need three days), and is exactly the weekends-only answer when the period lies
//! in a stretch of the year with no public holiday and no make-up working day (see
//! [`ordinary_period`]). Revocation deadlines are 12 clock hours, holidays included.

mod common;

use common::ra::*;
use common::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::OnceLock;
use time::format_description::well_known::Rfc3339;
use time::{Date, Duration as Span, Month, OffsetDateTime, Weekday};

/// `[ra] max_document_bytes` of the file's daemon: 1 MiB, so that a body over the API's limit
/// (the document and its signature in base64, plus 4 MiB of rows) is about 6 MiB, not 32.
const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

/// The file's one daemon, with a profile that allows only P-256 keys and a 1 MiB document limit.
fn bed() -> &'static Testbed {
    static BED: OnceLock<Testbed> = OnceLock::new();
    BED.get_or_init(|| {
        Testbed::start(|data| {
            append_config(data, P256_ONLY_PROFILE);
            let path = data.join("pkid.toml");
            let text = std::fs::read_to_string(&path).expect("pkid.toml");
            let default = "\nmax_document_bytes = 10485760\n";
            assert!(
                text.contains(default),
                "the template's document limit moved"
            );
            let edited = text.replace(
                default,
                &format!("\nmax_document_bytes = {MAX_DOCUMENT_BYTES}\n"),
            );
            std::fs::write(&path, edited).expect("write pkid.toml");
        })
    })
}

/// One organisation (in province `province`) with an org officer and a province RA officer:
/// (organisation id, officer token, RA officer token).
struct Desk {
    org: String,
    officer: String,
    ra: String,
}

impl Desk {
    fn new(name: &str, province: &str) -> Self {
        let bed = bed();
        let org = bed.unique("truong");
        bed.org(&org, name, None, Some(province));
        let officer = bed.operator(&bed.unique("canbo"), "org-officer", Some(&org), None);
        let ra = bed.operator(
            &bed.unique("ra"),
            "ra-officer",
            None,
            Some(&format!("province:{province}")),
        );
        Desk { org, officer, ra }
    }

    /// Files a request and has the RA officer record the original and approve it: the
    /// fulfilled request.
    fn fulfil(&self, body: &Value) -> ApiReply {
        let bed = bed();
        let r = bed.post("/api/v1/requests", &self.officer, body);
        assert_eq!(r.status, 201, "{r}");
        assert_eq!(r.json["state"], "awaiting-original", "{r}");
        bed.act_ok(&self.ra, r.id(), "original-received", "accepted");
        let done = bed.act(&self.ra, r.id(), "approve", None);
        assert_eq!(done.status, 200, "{done}");
        done
    }

    /// The officer POSTs raw bytes of this media type to `/api/v1/requests`; `extra` adds
    /// curl options.
    fn file_raw(&self, media: &str, body: &[u8], extra: &[&str]) -> ApiReply {
        bed().send(
            "POST",
            "/api/v1/requests",
            Some(&self.officer),
            media,
            Some(body),
            extra,
        )
    }

    /// Every request of this organisation, through every page.
    fn all_ids(&self, token: &str, filter: &str) -> Vec<i64> {
        let mut ids = Vec::new();
        let mut cursor = String::new();
        loop {
            let r = bed().get(
                &format!(
                    "/api/v1/requests?organisation={}&limit=500{filter}{cursor}",
                    self.org
                ),
                token,
            );
            assert_eq!(r.status, 200, "{r}");
            ids.extend(items(&r));
            match r.json["next"].as_str() {
                Some(next) => cursor = format!("&cursor={next}"),
                None => return ids,
            }
        }
    }
}

/// The ids of a list page.
fn items(r: &ApiReply) -> Vec<i64> {
    r.json["items"]
        .as_array()
        .unwrap_or_else(|| panic!("no items in {r}"))
        .iter()
        .map(|i| i["id"].as_i64().expect("id"))
        .collect()
}

fn instant(s: &str) -> OffsetDateTime {
    OffsetDateTime::parse(s, &Rfc3339).unwrap_or_else(|e| panic!("{s:?} is not RFC 3339: {e}"))
}

/// Whether no public holiday, compensatory day off or make-up working Saturday can fall in
/// `from..=to` in any year: 1 June – 20 August (after the 30 April / 1 May days and their
/// make-up days, before 2 September's), October, and 1–20 December (before any bridge of
/// New Year's Day). Only there is the weekends-only count the right answer.
fn ordinary_period(from: Date, to: Date) -> bool {
    let ordinary = |d: Date| match d.month() {
        Month::June | Month::July | Month::October => true,
        Month::August | Month::December => d.day() <= 20,
        _ => false,
    };
    let mut d = from;
    while d <= to {
        if !ordinary(d) {
            return false;
        }
        d = d.next_day().expect("date");
    }
    true
}

/// The deadline of a three-working-day period by weekends alone: the day of acceptance is not
/// counted; the period ends at 24:00 of the third working day, the next day's 00:00+07:00.
fn due_by_weekends(accepted: OffsetDateTime) -> OffsetDateTime {
    let mut day = accepted.to_offset(time::macros::offset!(+7)).date();
    let mut left = 3;
    while left > 0 {
        day = day.next_day().expect("date");
        if !matches!(day.weekday(), Weekday::Saturday | Weekday::Sunday) {
            left -= 1;
        }
    }
    day.next_day()
        .expect("date")
        .midnight()
        .assume_offset(time::macros::offset!(+7))
}

/// Asserts the deadline of an accepted issue/renew/modify request (see the module docs).
fn assert_working_day_deadline(r: &ApiReply) {
    let accepted = instant(r.str("accepted_at"));
    let due_text = r.str("due_at");
    assert!(
        due_text.ends_with("T00:00:00+07:00"),
        "a working-day deadline ends at local midnight: {r}"
    );
    let due = instant(due_text);
    let accepted_day = accepted.to_offset(due.offset()).date();
    assert!(
        due.date() >= accepted_day + Span::days(4),
        "three working days after {accepted} cannot end before {due}"
    );
    if ordinary_period(accepted_day, due.date()) {
        assert_eq!(due, due_by_weekends(accepted), "{r}");
    }
}

// ---------------------------------------------------------------------------------------------
// The lifecycle
// ---------------------------------------------------------------------------------------------

#[test]
fn an_issue_request_waits_for_the_original_then_is_fulfilled_renewed_modified_and_revoked() {
    let bed = bed();
    let legal = "Trường Tiểu học Nguyễn Thị Minh Khai – Phường Bến Nghé";
    let desk = Desk::new(legal, "79");
    let name = "Đặng Thị Ngọc Ánh";

    // Filed without a document: it waits for the paper original, with no clock running.
    let filed = bed.post(
        "/api/v1/requests",
        &desk.officer,
        &issue_body(name, &bed.csr(name, "ec:P-256")),
    );
    assert_eq!(filed.status, 201, "{filed}");
    assert_eq!(filed.json["state"], "awaiting-original", "{filed}");
    assert_eq!(filed.json["organisation"], desk.org.as_str());
    assert_eq!(filed.json["due_at"], Value::Null, "{filed}");
    let id = filed.id();

    // The provincial RA officer records the original: accepted, the deadline set.
    let accepted = bed.act_ok(&desk.ra, id, "original-received", "accepted");
    assert_working_day_deadline(&accepted);

    // Approval fulfils it through the CA.
    let done = bed.act_ok(&desk.ra, id, "approve", "fulfilled");
    let serial = done.str("issued_certificate").to_owned();
    assert_eq!(done.json["due_at"], accepted.json["due_at"], "{done}");
    assert!(done.json["fulfilled_at"].is_string(), "{done}");
    let cert = bed.certificate(&serial);
    assert_eq!(x509_serial(&cert), serial);
    assert_eq!(
        x509_subject(&cert),
        format!("subject=C=VN, O={legal}, CN={name}"),
        "the subject names whom the organisation vouched for, byte-exact"
    );
    assert_verifies(bed.data(), &cert, &[]);
    assert_eq!(bed.wait_ocsp(&cert, "good"), None);
    // The history has every move, with who made it.
    let events = bed.get(&format!("/api/v1/requests/{id}/events"), &desk.officer);
    assert_eq!(events.status, 200, "{events}");
    let moves: Vec<(String, String)> = events
        .json
        .as_array()
        .expect("events")
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap_or_default().to_owned(),
                e["to"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let want: Vec<(String, String)> = [
        ("original-received", "accepted"),
        ("approve", "approved"),
        ("fulfil", "fulfilled"),
    ]
    .iter()
    .map(|(a, t)| (a.to_string(), t.to_string()))
    .collect();
    assert!(moves.ends_with(&want), "{events}");

    // Renew: a new certificate for the same subscriber; the old one stays good.
    let renewed = desk.fulfil(&json!({"kind": "renew", "certificate": serial}));
    assert_eq!(renewed.json["state"], "fulfilled", "{renewed}");
    assert_eq!(renewed.json["certificate"], serial.as_str());
    let renewed_serial = renewed.str("issued_certificate").to_owned();
    assert_ne!(renewed_serial, serial);
    let renewed_cert = bed.certificate(&renewed_serial);
    assert_eq!(
        x509_subject(&renewed_cert),
        format!("subject=C=VN, O={legal}, CN={name}")
    );
    assert_eq!(bed.wait_ocsp(&renewed_cert, "good"), None);
    assert_eq!(bed.wait_ocsp(&cert, "good"), None);

    // Modify (a new name): a new certificate, the old one revoked as superseded.
    let new_name = "Đặng Thị Ngọc Ánh Hồng";
    let modified = desk.fulfil(&json!({
        "kind": "modify",
        "certificate": serial,
        "subscriber": {"name": new_name},
    }));
    assert_eq!(modified.json["state"], "fulfilled", "{modified}");
    let modified_serial = modified.str("issued_certificate").to_owned();
    let modified_cert = bed.certificate(&modified_serial);
    assert_eq!(
        x509_subject(&modified_cert),
        format!("subject=C=VN, O={legal}, CN={new_name}")
    );
    assert_eq!(
        bed.wait_ocsp(&cert, "revoked").as_deref(),
        Some("superseded")
    );
    assert_eq!(bed.wait_ocsp(&modified_cert, "good"), None);

    // Revoke (key compromise): 12 clock hours to fulfil, then OCSP says revoked, with the reason.
    let filed = bed.post(
        "/api/v1/requests",
        &desk.officer,
        &json!({"kind": "revoke", "certificate": modified_serial, "reason": "keyCompromise"}),
    );
    assert_eq!(filed.status, 201, "{filed}");
    let accepted = bed.act_ok(&desk.ra, filed.id(), "original-received", "accepted");
    assert_eq!(
        instant(accepted.str("due_at")) - instant(accepted.str("accepted_at")),
        Span::hours(12),
        "{accepted}"
    );
    let revoked = bed.act_ok(&desk.ra, filed.id(), "approve", "fulfilled");
    assert_eq!(revoked.json["reason"], "keyCompromise", "{revoked}");
    assert_eq!(revoked.json["issued_certificate"], Value::Null, "{revoked}");
    assert_eq!(
        bed.wait_ocsp(&modified_cert, "revoked").as_deref(),
        Some("keyCompromise")
    );

    // Recover a key device: approval leaves it approved (the device work fulfils it).
    let recover = desk.fulfil(&json!({
        "kind": "recover",
        "certificate": renewed_serial,
        "key_origin": "token",
    }));
    assert_eq!(recover.json["state"], "approved", "{recover}");
    assert_eq!(recover.json["key_origin"], "token");
    assert_eq!(recover.json["issued_certificate"], Value::Null, "{recover}");
    assert_eq!(recover.json["fulfilled_at"], Value::Null, "{recover}");
    let shown = bed.get(&format!("/api/v1/requests/{}", recover.id()), &desk.officer);
    assert_eq!(shown.json["state"], "approved", "{shown}");
}

#[test]
fn an_rsa_2048_request_with_a_vietnamese_csr_subject_is_issued_for_the_registered_subscriber() {
    let bed = bed();
    let legal = "Bệnh viện Đa khoa Trung ương Cần Thơ";
    let desk = Desk::new(legal, "92");
    let name = "Nguyễn Văn Hùng";
    // The CSR's own subject (UTF8String, Vietnamese) is not what the certificate says: the
    // registered subscriber is.
    let csr = bed.csr("Người ký khác", "rsa:2048");
    let done = desk.fulfil(&issue_body(name, &csr));
    assert_eq!(done.json["state"], "fulfilled", "{done}");
    let cert = bed.certificate(done.str("issued_certificate"));
    assert_eq!(
        x509_subject(&cert),
        format!("subject=C=VN, O={legal}, CN={name}")
    );
    let text = x509_text(&cert);
    assert!(text.contains("Public-Key: (2048 bit)"), "{text}");
    assert_eq!(bed.wait_ocsp(&cert, "good"), None);
}

// ---------------------------------------------------------------------------------------------
// Authentication
// ---------------------------------------------------------------------------------------------

#[test]
fn calls_without_valid_credentials_are_401_and_plain_http_is_403_even_with_a_valid_token() {
    let bed = bed();
    let desk = Desk::new("Trường THCS Lê Quý Đôn", "48");

    let none = bed.call("GET", "/api/v1/requests", None, None);
    none.assert_problem(401, "unauthenticated");
    let challenge = none.header("www-authenticate").unwrap_or_default();
    assert!(challenge.starts_with("Bearer"), "{:?}", none.headers);

    for garbage in [
        "pkid_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "not-a-token",
        "",
    ] {
        let r = bed.call("GET", "/api/v1/me", Some(garbage), None);
        r.assert_problem(401, "unauthenticated");
        assert!(r.header("www-authenticate").is_some(), "{r}");
    }
    let me = bed.get("/api/v1/me", &desk.officer);
    assert_eq!(me.status, 200, "{me}");
    assert_eq!(me.json["role"], "org-officer");

    // Over the plain listener: refused before any header is read, whatever the path.
    for (method, path) in [
        ("GET", "/api/v1/requests"),
        ("GET", "/api/v1/me"),
        ("POST", "/api/v1/requests"),
        ("GET", "/api/v1/no-such-thing"),
    ] {
        let mut args = vec![
            "-X".to_string(),
            method.to_string(),
            "-H".into(),
            format!("Authorization: Bearer {}", desk.officer),
        ];
        if method == "POST" {
            args.extend(["-H".into(), "Content-Type: application/json".into()]);
            args.extend(["--data-binary".into(), r#"{"kind":"issue"}"#.into()]);
        }
        args.push(bed.http_url(path));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let reply = fetch(&refs);
        assert_eq!(reply.status, 403, "{method} {path}: {}", reply.text());
        assert!(
            reply.headers.contains("application/problem+json"),
            "{}",
            reply.headers
        );
        let body: Value = serde_json::from_slice(&reply.body).expect("problem JSON");
        assert_eq!(body["type"], "urn:pkid:problem:https-required");
    }
    // Nothing was filed over plain HTTP.
    assert!(desk.all_ids(&desk.officer, "").is_empty());

    // A removed operator's token fails on the very next call.
    let id = bed.unique("tamthoi");
    let token = bed.operator(&id, "org-officer", Some(&desk.org), None);
    assert_eq!(bed.get("/api/v1/me", &token).status, 200);
    bed.cli(&["operator", "remove", "--id", &id]);
    bed.get("/api/v1/me", &token)
        .assert_problem(401, "unauthenticated");
    bed.get("/api/v1/requests", &token)
        .assert_problem(401, "unauthenticated");
}

#[test]
fn an_operator_registered_with_a_client_certificate_authenticates_with_it() {
    let bed = bed();
    let desk = Desk::new("Sở Thông tin và Truyền thông Đà Nẵng", "48");
    let filed = bed.file_issue(&desk.officer, None, "Phạm Thị Thu Hà");

    let id = bed.unique("ra-cert");
    bed.cli(&[
        "operator",
        "add",
        "--id",
        &id,
        "--name",
        "Trần Minh Quân",
        "--role",
        "ra-officer",
        "--scope",
        "province:48",
    ]);
    let (key, csr) = make_csr(bed.work(), &format!("/CN={id}"), "ec:P-256");
    let (_serial, cert) = issue(bed.data(), &csr, "tls-client", &[]);
    bed.cli(&[
        "operator",
        "add-cert",
        "--id",
        &id,
        "--cert",
        path_str(&cert),
    ]);
    let with_cert = ["--cert", path_str(&cert), "--key", path_str(&key)];

    // The daemon learns of the CLI's new certificate through the store's change feed.
    let mut last = None;
    let ok = poll(PROPAGATION, || {
        let r = bed.send("GET", "/api/v1/me", None, "", None, &with_cert);
        let done = r.status == 200;
        last = Some(r);
        done
    });
    let me = last.expect("a reply");
    assert!(ok, "the client certificate never authenticated: {me}");
    assert_eq!(me.json["id"], id.as_str(), "{me}");
    assert_eq!(me.json["role"], "ra-officer", "{me}");

    // It acts as that operator: records the original of a request in its province.
    let body = serde_json::to_vec(&json!({"action": "original-received"})).expect("JSON");
    let r = bed.send(
        "POST",
        &format!("/api/v1/requests/{}/transitions", filed.id()),
        None,
        "application/json",
        Some(&body),
        &with_cert,
    );
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.json["state"], "accepted", "{r}");
    let events = bed.get(&format!("/api/v1/requests/{}/events", filed.id()), &desk.ra);
    assert!(
        events
            .json
            .as_array()
            .expect("events")
            .iter()
            .any(|e| e["actor"] == id.as_str()),
        "{events}"
    );

    // Removed: the certificate no longer makes anyone an operator.
    bed.cli(&["operator", "remove", "--id", &id]);
    let r = bed.send("GET", "/api/v1/me", None, "", None, &with_cert);
    assert_ne!(r.json["id"], id.as_str(), "{r}");
    assert_eq!(r.json["role"], Value::Null, "{r}");
}

// ---------------------------------------------------------------------------------------------
// Bad input
// ---------------------------------------------------------------------------------------------

#[test]
fn bad_input_gets_a_precise_problem_document_and_the_daemon_keeps_serving() {
    let bed = bed();
    let desk = Desk::new("Trường THPT Chu Văn An", "01");
    let officer = desk.officer.as_str();
    let raw = |media: &str, body: &[u8]| desk.file_raw(media, body, &[]);

    // Malformed JSON.
    raw("application/json", br#"{"kind": "issue", "#).assert_problem(400, "malformed");
    raw("application/json", b"\xff\xfe not JSON").assert_problem(400, "malformed");
    // An unknown field, named, at the top level and inside `subscriber`.
    let r = raw(
        "application/json",
        br#"{"kind": "issue", "colour": "blue"}"#,
    );
    assert_eq!(r.assert_problem(400, "malformed"), ["colour"], "{r}");
    let r = raw(
        "application/json",
        r#"{"kind": "issue", "subscriber": {"name": "Lê Văn Tám", "ngay_sinh": "1990"}}"#
            .as_bytes(),
    );
    assert_eq!(
        r.assert_problem(400, "malformed"),
        ["subscriber.ngay_sinh"],
        "{r}"
    );
    // A missing `kind`.
    raw("application/json", br#"{"profile": "person"}"#).assert_problem(400, "malformed");
    // Not JSON by its media type. Refused before the body is read, so over HTTP/1.1: over
    // HTTP/2 the server then resets the unread stream (RFC 9113 §8.1 allows it), which older curl
    // releases (7.88 among them) sometimes report as a failed transfer (exit 92), not the answer.
    for (media, body) in [
        ("text/plain", &br#"{"kind": "issue"}"#[..]),
        ("application/x-www-form-urlencoded", b"kind=issue"),
    ] {
        desk.file_raw(media, body, &["--http1.1"])
            .assert_problem(415, "media-type");
    }

    // A key the profile forbids (RSA under a P-256-only profile), and a broken CSR.
    let mut body = issue_body("Lê Văn Tám", &bed.csr("Lê Văn Tám", "rsa:2048"));
    body["profile"] = "p256-only".into();
    let r = bed.post("/api/v1/requests", officer, &body);
    assert_eq!(r.assert_problem(422, "invalid"), ["csr"], "{r}");
    let good_csr = bed.csr("Lê Văn Tám", "ec:P-256");
    let broken = corrupt_pem(&good_csr);
    let r = bed.post(
        "/api/v1/requests",
        officer,
        &issue_body("Lê Văn Tám", &broken),
    );
    assert_eq!(r.assert_problem(422, "invalid"), ["csr"], "{r}");
    let r = bed.post(
        "/api/v1/requests",
        officer,
        &issue_body("Lê Văn Tám", "hello"),
    );
    assert_eq!(r.assert_problem(422, "invalid"), ["csr"], "{r}");
    // An unknown profile.
    let mut body = issue_body("Lê Văn Tám", &good_csr);
    body["profile"] = "khong-co".into();
    let r = bed.post("/api/v1/requests", officer, &body);
    assert_eq!(r.assert_problem(422, "invalid"), ["profile"], "{r}");
    // Issue without the subscriber's email.
    let mut body = issue_body("Lê Văn Tám", &good_csr);
    body["subscriber"] = json!({"name": "Lê Văn Tám"});
    let r = bed.post("/api/v1/requests", officer, &body);
    assert_eq!(
        r.assert_problem(422, "invalid"),
        ["subscriber.email"],
        "{r}"
    );
    // None of that was stored.
    assert!(desk.all_ids(officer, "").is_empty());

    // Revoke without a reason.
    let done = desk.fulfil(&issue_body("Lê Văn Tám", &good_csr));
    let serial = done.str("issued_certificate");
    let r = bed.post(
        "/api/v1/requests",
        officer,
        &json!({"kind": "revoke", "certificate": serial}),
    );
    assert_eq!(r.assert_problem(422, "invalid"), ["reason"], "{r}");
    let r = bed.post(
        "/api/v1/requests",
        officer,
        &json!({"kind": "revoke", "certificate": serial, "reason": "boredom"}),
    );
    assert_eq!(r.assert_problem(422, "invalid"), ["reason"], "{r}");

    // `return` without a reason; an action the state does not allow; an unknown action.
    let filed = bed.file_issue(officer, None, "Lê Văn Tám");
    let r = bed.act(&desk.ra, filed.id(), "return", None);
    assert_eq!(r.assert_problem(422, "invalid"), ["reason"], "{r}");
    let r = bed.act(&desk.ra, filed.id(), "return", Some("   "));
    assert_eq!(r.assert_problem(422, "invalid"), ["reason"], "{r}");
    bed.act(&desk.ra, filed.id(), "approve", None)
        .assert_problem(409, "conflict");
    bed.act(&desk.ra, done.id(), "accept", None)
        .assert_problem(409, "conflict");
    let r = bed.act(&desk.ra, filed.id(), "teleport", None);
    assert_eq!(r.assert_problem(422, "invalid"), ["action"], "{r}");
    let shown = bed.get(&format!("/api/v1/requests/{}", filed.id()), officer);
    assert_eq!(shown.json["state"], "awaiting-original", "{shown}");

    // Unknown request ids.
    bed.get("/api/v1/requests/999999999", officer)
        .assert_problem(404, "not-found");
    bed.act(&desk.ra, 999_999_999, "accept", None)
        .assert_problem(404, "not-found");
    bed.get("/api/v1/requests/abc", officer)
        .assert_problem(404, "not-found");

    // A document over the document limit is refused naming the field.
    let big = vec![b'A'; (MAX_DOCUMENT_BYTES + 3) / 3 * 4 + 4];
    let mut body = issue_body("Lê Văn Tám", &good_csr);
    body["document"] = json!({
        "filename": "don-de-nghi.pdf",
        "content_base64": String::from_utf8(big).expect("ASCII"),
    });
    let r = bed.post("/api/v1/requests", officer, &body);
    assert_eq!(
        r.assert_problem(422, "invalid"),
        ["document.content_base64"],
        "{r}"
    );

    // A body over the API's limit, sent without a length (chunked): 413.
    let chunked = ["--http1.1", "-H", "Transfer-Encoding: chunked"];
    desk.file_raw("application/json", &oversized_body(), &chunked)
        .assert_problem(413, "body");

    // After all of that: still serving, on both listeners.
    assert_eq!(get(&bed.http_url("/healthz")).status, 200);
    assert_eq!(bed.call("GET", "/healthz", None, None).status, 200);
    assert_eq!(bed.get("/api/v1/me", officer).status, 200);
}

/// The PEM with one base64 character of its second body line changed: the DER still decodes,
/// but what it says (key, subject or signature) no longer verifies.
fn corrupt_pem(pem: &str) -> String {
    let mut lines: Vec<String> = pem.lines().map(str::to_owned).collect();
    let line = &mut lines[2];
    let flipped = if line.as_bytes()[10] == b'A' {
        "B"
    } else {
        "A"
    };
    line.replace_range(10..11, flipped);
    lines.join("\n") + "\n"
}

/// A JSON body just over the API's body limit: a document and its signature of
/// [`MAX_DOCUMENT_BYTES`] each in base64, plus the 4 MiB allowed for rows.
fn oversized_body() -> Vec<u8> {
    let limit = (MAX_DOCUMENT_BYTES * 2).div_ceil(3) * 4 + 4 * 1024 * 1024;
    let mut body = br#"{"kind": "issue", "csr": ""#.to_vec();
    body.resize(limit + 1024, b'A');
    body.extend_from_slice(br#""}"#);
    body
}

#[test]
fn a_missing_field_is_named_in_the_problem_document() {
    let desk = Desk::new("Trường Mầm non Hoa Sen", "01");
    let r = desk.file_raw("application/json", br#"{"profile": "person"}"#, &[]);
    assert_eq!(r.assert_problem(400, "malformed"), ["kind"], "{r}");
}

#[test]
fn a_declared_body_over_the_limit_is_a_413_problem_document() {
    let bed = bed();
    let desk = Desk::new("Trường Mầm non Sơn Ca", "01");
    desk.file_raw(
        "application/json",
        &oversized_body(),
        &["--http1.1", "--expect100-timeout", "60"],
    )
    .assert_problem(413, "body");
    assert_eq!(get(&bed.http_url("/healthz")).status, 200);
}

// ---------------------------------------------------------------------------------------------
// Bulk filing
// ---------------------------------------------------------------------------------------------

#[test]
fn a_bulk_submission_is_stored_whole_or_not_at_all() {
    let bed = bed();
    let desk = Desk::new("Trường Tiểu học Trần Quốc Toản", "31");
    let teachers = ["Vũ Thị Lan", "Hoàng Đức Anh", "Bùi Thị Ngọc Diệp"];
    let row = |name: &str| issue_body(name, &bed.csr(name, "ec:P-256"));
    let rows: Vec<Value> = teachers.iter().map(|n| row(n)).collect();

    let r = bed.post("/api/v1/batches", &desk.officer, &json!({"requests": rows}));
    assert_eq!(r.status, 201, "{r}");
    let batch = r.str("batch").to_owned();
    let requests = r.json["requests"].as_array().expect("requests");
    assert_eq!(requests.len(), 3, "{r}");
    for (req, name) in requests.iter().zip(teachers) {
        assert_eq!(req["batch"], batch.as_str(), "{r}");
        assert_eq!(req["subscriber"]["name"], name, "{r}");
        assert_eq!(req["state"], "awaiting-original", "{r}");
    }
    let stored: BTreeSet<i64> = requests
        .iter()
        .map(|q| q["id"].as_i64().expect("id"))
        .collect();
    let listed: BTreeSet<i64> = desk.all_ids(&desk.officer, "").into_iter().collect();
    assert_eq!(listed, stored);

    // One bad row (row 1 has no email, row 2 an unknown profile): 422 naming each, nothing
    // stored.
    let mut rows: Vec<Value> = ["Đỗ Minh Tuấn", "Ngô Thị Hương", "Lý Văn Phúc"]
        .iter()
        .map(|n| row(n))
        .collect();
    rows[1]["subscriber"] = json!({"name": "Ngô Thị Hương"});
    rows[2]["profile"] = "khong-co".into();
    let r = bed.post("/api/v1/batches", &desk.officer, &json!({"requests": rows}));
    r.assert_problem(422, "invalid");
    let errors: Vec<(i64, String)> = r.json["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| {
            (
                e["row"].as_i64().unwrap_or(-1),
                e["field"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        errors,
        [
            (1, "subscriber.email".to_string()),
            (2, "profile".to_string())
        ],
        "{r}"
    );
    let after: BTreeSet<i64> = desk.all_ids(&desk.officer, "").into_iter().collect();
    assert_eq!(after, stored, "a refused batch stored nothing");
}

// ---------------------------------------------------------------------------------------------
// Lists
// ---------------------------------------------------------------------------------------------

#[test]
fn lists_page_through_every_request_once_and_filter_by_state_kind_and_overdue() {
    let bed = bed();
    let desk = Desk::new("Trường THCS Nguyễn Du", "46");
    // Seven requests: five issues (one fulfilled, one accepted, one rejected), a renew and a
    // revoke of the fulfilled one's certificate.
    let done = desk.fulfil(&issue_body(
        "Trịnh Văn Bảo",
        &bed.csr("Trịnh Văn Bảo", "ec:P-256"),
    ));
    let serial = done.str("issued_certificate").to_owned();
    let accepted = bed.file_issue(&desk.officer, None, "Lương Thị Mai");
    bed.act_ok(&desk.ra, accepted.id(), "original-received", "accepted");
    let rejected = bed.file_issue(&desk.officer, None, "Châu Văn Liêm");
    let r = bed.act(
        &desk.ra,
        rejected.id(),
        "reject",
        Some("Hồ sơ thiếu chữ ký"),
    );
    assert_eq!(r.json["state"], "rejected", "{r}");
    let waiting: Vec<i64> = ["Tạ Quang Bửu", "Kiều Thị Nga"]
        .iter()
        .map(|n| bed.file_issue(&desk.officer, None, n).id())
        .collect();
    let renew = bed.post(
        "/api/v1/requests",
        &desk.officer,
        &json!({"kind": "renew", "certificate": serial}),
    );
    assert_eq!(renew.status, 201, "{renew}");
    let revoke = bed.post(
        "/api/v1/requests",
        &desk.officer,
        &json!({"kind": "revoke", "certificate": serial, "reason": "affiliationChanged"}),
    );
    assert_eq!(revoke.status, 201, "{revoke}");
    let all: BTreeSet<i64> = [
        done.id(),
        accepted.id(),
        rejected.id(),
        renew.id(),
        revoke.id(),
    ]
    .into_iter()
    .chain(waiting.iter().copied())
    .collect();
    assert_eq!(all.len(), 7);

    // limit=3: three pages through `next`, newest first, none twice, none missing.
    let mut seen = Vec::new();
    let mut pages = 0;
    let mut cursor = String::new();
    loop {
        let r = bed.get(
            &format!("/api/v1/requests?organisation={}&limit=3{cursor}", desk.org),
            &desk.officer,
        );
        assert_eq!(r.status, 200, "{r}");
        let page = items(&r);
        assert!(page.len() <= 3, "{r}");
        seen.extend(page);
        pages += 1;
        match r.json["next"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => break,
        }
        assert!(pages < 10, "pagination does not end");
    }
    assert_eq!(pages, 3);
    let mut newest_first: Vec<i64> = all.iter().copied().collect();
    newest_first.reverse();
    assert_eq!(seen, newest_first);

    // Filters.
    let set = |filter: &str| -> BTreeSet<i64> {
        desk.all_ids(&desk.officer, filter).into_iter().collect()
    };
    assert_eq!(set("&state=accepted"), BTreeSet::from([accepted.id()]));
    assert_eq!(set("&state=rejected"), BTreeSet::from([rejected.id()]));
    assert_eq!(set("&state=fulfilled"), BTreeSet::from([done.id()]));
    assert_eq!(
        set("&state=awaiting-original"),
        BTreeSet::from([waiting[0], waiting[1], renew.id(), revoke.id()])
    );
    assert_eq!(set("&kind=revoke"), BTreeSet::from([revoke.id()]));
    assert_eq!(set("&kind=renew"), BTreeSet::from([renew.id()]));
    assert_eq!(set("&kind=issue").len(), 5);
    assert_eq!(
        set("&kind=issue&state=awaiting-original"),
        BTreeSet::from([waiting[0], waiting[1]])
    );
    bed.get("/api/v1/requests?state=nowhere", &desk.officer)
        .assert_problem(422, "invalid");
    bed.get("/api/v1/requests?limit=0", &desk.officer)
        .assert_problem(422, "invalid");

    // Overdue: none yet; then the accepted request's period is moved into the past, as if it
    // had been accepted weeks ago (the daemon reads the store on every call).
    assert!(set("&overdue=true").is_empty());
    let store = rusqlite::Connection::open(bed.data().join("pkid.db")).expect("store");
    store
        .busy_timeout(std::time::Duration::from_secs(10))
        .expect("busy timeout");
    let changed = store
        .execute(
            "UPDATE requests SET accepted_at = accepted_at - 1209600, due_at = due_at - 1209600 \
             WHERE id = ?1",
            [accepted.id()],
        )
        .expect("update");
    assert_eq!(changed, 1);
    assert_eq!(set("&overdue=true"), BTreeSet::from([accepted.id()]));
    let shown = bed.get(
        &format!("/api/v1/requests/{}", accepted.id()),
        &desk.officer,
    );
    assert_eq!(shown.json["overdue"], true, "{shown}");
    // The CLI agrees.
    let listed: Value =
        serde_json::from_str(&bed.cli(&["request", "list", "--org", &desk.org, "--overdue"]))
            .expect("JSON");
    let ids: Vec<i64> = listed["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["id"].as_i64().expect("id"))
        .collect();
    assert_eq!(ids, [accepted.id()]);
}

// ---------------------------------------------------------------------------------------------
// The OpenAPI document
// ---------------------------------------------------------------------------------------------

/// Every path the API router serves (`daemon/src/http/api.rs`), in OpenAPI's template form.
const API_PATHS: &[&str] = &[
    "/api/v1/me",
    "/api/v1/requests",
    "/api/v1/batches",
    "/api/v1/requests/{id}",
    "/api/v1/requests/{id}/events",
    "/api/v1/requests/{id}/transitions",
    "/api/v1/documents/{id}",
    "/api/v1/documents/{id}/signature",
    "/api/v1/organisations",
    "/api/v1/organisations/{id}",
    "/api/v1/organisations/{id}/credentials",
    "/api/v1/organisations/{id}/credentials/{kind}/{name}",
    "/api/v1/operators",
    "/api/v1/operators/{id}",
    "/api/v1/operators/{id}/tokens",
    "/api/v1/reports",
    "/api/v1/subscribers/export",
    "/api/v1/issuance/pauses",
    "/api/v1/issuers/{name}/pause",
    "/api/v1/issuers/{name}/resume",
    "/api/v1/issuers/{name}/revoke",
    "/api/v1/confirmations",
    "/api/v1/confirmations/{id}/confirm",
    "/api/v1/revocations",
    "/api/v1/documents/check",
    "/api/v1/devices",
    "/api/v1/devices/{serial}",
    "/api/v1/activation/{code}",
    "/api/v1/csc/accounts/unlock",
    "/api/v1/csc/accounts/reenrol",
];

#[test]
fn the_openapi_document_is_public_openapi_3_1_and_lists_every_path() {
    let bed = bed();
    let r = bed.call("GET", "/api/openapi.json", None, None);
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.content_type.as_deref(), Some("application/json"));
    let served = r.body.clone();
    let doc: Value = serde_json::from_slice(&served).expect("the document is JSON");
    let version = doc["openapi"].as_str().expect("openapi");
    assert!(version.starts_with("3.1."), "{version}");
    let paths: BTreeSet<&str> = doc["paths"]
        .as_object()
        .expect("paths")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(paths, API_PATHS.iter().copied().collect::<BTreeSet<_>>());
    // Every operation the document lists is served: without a token it is 401, not 404/405.
    for (path, operations) in doc["paths"].as_object().expect("paths") {
        // Every `{parameter}` segment filled in (`/requests/{id}` → `/requests/1`).
        let concrete: Vec<&str> = path
            .split('/')
            .map(|seg| if seg.starts_with('{') { "1" } else { seg })
            .collect();
        let concrete = concrete.join("/");
        for (method, operation) in operations.as_object().expect("operations") {
            let method = method.to_ascii_uppercase();
            let r = bed.send(&method, &concrete, None, "", None, &[]);
            if operation.get("security").is_some() {
                r.assert_problem(401, "unauthenticated");
            } else {
                // Public (the revocation code and the activation code are their own
                // credentials): served, and a body that is not JSON is refused as such.
                assert!(
                    ["/api/v1/revocations", "/api/v1/activation/{code}"].contains(&path.as_str()),
                    "only these calls are public: {path}"
                );
                r.assert_problem(415, "media-type");
            }
        }
    }
    // Reachable on the plain listener too (it is public).
    let plain = get(&bed.http_url("/api/openapi.json"));
    assert_eq!(plain.status, 200);
    assert_eq!(plain.body, served);
}

// ---------------------------------------------------------------------------------------------
// Vietnamese text
// ---------------------------------------------------------------------------------------------

#[test]
fn vietnamese_names_round_trip_byte_exact_through_the_api_and_the_cli() {
    let bed = bed();
    // Every diacritic class — ă â ê ô ơ ư đ, and the five tone marks (huyền, sắc, hỏi, ngã,
    // nặng), lower and upper case — precomposed (NFC) as typed; an en dash and commas too.
    let legal =
        "Trường Tiểu học Nguyễn Thị Minh Khai – Phường Bến Nghé, Quận 1, Thành phố Hồ Chí Minh";
    let name = "Đặng Thị Ngọc Ánh";
    let title = "Giáo viên chủ nhiệm lớp 5/1 – Tổ Khoa học Tự nhiên";
    let unit = "Tổ Ngữ văn – Lịch sử – Địa lý – Âm nhạc – Mỹ thuật";
    let desk = Desk::new(legal, "79");

    let body = json!({
        "kind": "issue",
        "profile": "person",
        "subscriber": {"name": name, "email": "anh.dtn@truong.edu.vn", "title": title, "unit": unit},
        "csr": bed.csr(name, "ec:P-256"),
    });
    let filed = bed.post("/api/v1/requests", &desk.officer, &body);
    assert_eq!(filed.status, 201, "{filed}");
    for r in [
        &filed,
        &bed.get(&format!("/api/v1/requests/{}", filed.id()), &desk.officer),
    ] {
        assert_eq!(r.json["subscriber"]["name"], name, "{r}");
        assert_eq!(r.json["subscriber"]["title"], title, "{r}");
        assert_eq!(r.json["subscriber"]["unit"], unit, "{r}");
        // As UTF-8 on the wire, not \u escapes.
        let text = std::str::from_utf8(&r.body).expect("UTF-8");
        assert!(text.contains(name) && text.contains(title), "{text}");
    }
    let org = bed.get(
        &format!("/api/v1/organisations/{}", desk.org),
        &desk.officer,
    );
    assert_eq!(org.status, 200, "{org}");
    assert_eq!(org.json["name"], legal, "{org}");

    // The CLI prints the same bytes.
    let line = bed
        .cli(&["org", "list"])
        .lines()
        .find(|l| l.starts_with(&format!("{}\t", desk.org)))
        .map(str::to_owned)
        .expect("the organisation is listed");
    assert_eq!(line, format!("{}\t79\t-\t{legal}", desk.org));
    let shown: Value =
        serde_json::from_str(&bed.cli(&["request", "show", &filed.id().to_string()]))
            .expect("JSON");
    assert_eq!(shown["request"]["subscriber"]["name"], name);
    assert_eq!(shown["request"]["subscriber"]["title"], title);
    assert_eq!(shown["request"]["subscriber"]["unit"], unit);

    // And the certificate: the unit goes in as OU, all UTF-8.
    bed.act_ok(&desk.ra, filed.id(), "original-received", "accepted");
    let done = bed.act_ok(&desk.ra, filed.id(), "approve", "fulfilled");
    let cert = bed.certificate(done.str("issued_certificate"));
    assert_eq!(
        x509_subject(&cert),
        format!("subject=C=VN, O={legal}, OU={unit}, CN={name}")
    );
}

#[test]
fn ocsp_agrees_with_the_api_as_soon_as_a_request_is_fulfilled() {
    let bed = bed();
    let desk = Desk::new("Trường Tiểu học Kim Đồng", "77");
    let name = "Hà Thị Thu Trang";
    let done = desk.fulfil(&issue_body(name, &bed.csr(name, "ec:P-256")));
    let serial = done.str("issued_certificate").to_owned();
    let cert = bed.certificate(&serial);
    // No polling: the API has said the certificate exists.
    assert_eq!(bed.ocsp(&cert), Some(("good".to_string(), None)));
    let revoked = desk.fulfil(&json!({
        "kind": "revoke",
        "certificate": serial,
        "reason": "keyCompromise",
    }));
    assert_eq!(revoked.json["state"], "fulfilled", "{revoked}");
    assert_eq!(
        bed.ocsp(&cert),
        Some(("revoked".to_string(), Some("keyCompromise".to_string())))
    );
}

// ---------------------------------------------------------------------------------------------
// The subscriber's one-time revocation code
// ---------------------------------------------------------------------------------------------

/// The code in the subscriber's fulfilment mail, as queued in the outbox (no SMTP server is
/// configured on this bed, so it waits there), and whether the row is marked secret.
fn revocation_code_mail(request: i64, to: &str) -> (String, bool) {
    let db = rusqlite::Connection::open(bed().data().join("pkid.db")).expect("db");
    let (body, secret): (String, bool) = db
        .query_row(
            "SELECT body, secret FROM outbox WHERE request = ?1 AND event = 'fulfilled'
             AND channel = 'email' AND recipient = ?2",
            rusqlite::params![request, to],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("the subscriber's fulfilment mail");
    let marker = "Mã thu hồi một lần của chứng thư số này: ";
    let at = body.find(marker).expect("a code in the mail") + marker.len();
    (body[at..at + 29].to_owned(), secret)
}

#[test]
fn a_one_time_revocation_code_revokes_without_the_key_or_the_organisation_once() {
    let bed = bed();
    let desk = Desk::new("Trường THPT Phan Châu Trinh", "48");
    let name = "Lê Thị Mỹ Duyên";
    let done = desk.fulfil(&issue_body(name, &bed.csr(name, "ec:P-256")));
    let serial = done.str("issued_certificate").to_owned();
    let cert = bed.certificate(&serial);
    let (code, secret) = revocation_code_mail(done.id(), "giaovien@truong.edu.vn");
    assert!(secret, "the mail's body is emptied once delivered");
    assert!(
        !done.to_string().contains(&code),
        "the code is never in an API answer"
    );
    // Only the subscriber's mail carries it.
    let db = rusqlite::Connection::open(bed.data().join("pkid.db")).expect("db");
    let elsewhere: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM outbox WHERE instr(body, ?1) > 0 AND recipient != 'giaovien@truong.edu.vn'",
            [&code],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(elsewhere, 0);

    // No token, no client certificate: the code is the credential. A wrong one is refused and
    // audited, and so is a right code for another certificate.
    let revoke = |certificate: &str, code: &str| {
        bed.call(
            "POST",
            "/api/v1/revocations",
            None,
            Some(&json!({"certificate": certificate, "code": code})),
        )
    };
    revoke(&serial, "0000-0000-0000-0000-0000-0000").assert_problem(403, "forbidden");
    // Bad input is named, not guessed at: a serial that is not hex, an empty code, broken JSON.
    assert_eq!(
        revoke("zz-not-hex", &code).assert_problem(422, "invalid"),
        ["certificate"]
    );
    assert_eq!(
        revoke(&serial, " ").assert_problem(422, "invalid"),
        ["code"]
    );
    bed.send(
        "POST",
        "/api/v1/revocations",
        None,
        "application/json",
        Some(b"{\"certificate\":"),
        &[],
    )
    .assert_problem(400, "malformed");
    assert!(bed.refused(
        &format!("subscriber:{serial}"),
        "revocation-code.spend",
        &serial
    ));
    assert_eq!(bed.ocsp(&cert), Some(("good".to_string(), None)));

    // Typed as people type it: lower case, spaces for dashes.
    let typed = code.to_lowercase().replace('-', " ");
    let filed = revoke(&serial, &typed);
    assert_eq!(filed.status, 201, "{filed}");
    assert_eq!(filed.json["state"], "accepted", "{filed}");
    assert!(
        filed.json.get("subscriber").is_none(),
        "no personal data: {filed}"
    );
    let accepted = OffsetDateTime::parse(filed.str("accepted_at"), &Rfc3339).expect("accepted_at");
    let due = OffsetDateTime::parse(filed.str("due_at"), &Rfc3339).expect("due_at");
    assert_eq!(due - accepted, Span::hours(12), "{filed}");

    // Spent: the same code again is refused.
    revoke(&serial, &code).assert_problem(403, "forbidden");

    // The organisation sees the request; the RA officer fulfils it; OCSP says so at once.
    let id = filed.id();
    let shown = bed.get(&format!("/api/v1/requests/{id}"), &desk.officer);
    assert_eq!(shown.status, 200, "{shown}");
    assert_eq!(shown.json["reason"], "keyCompromise", "{shown}");
    bed.act_ok(&desk.ra, id, "approve", "fulfilled");
    assert_eq!(
        bed.ocsp(&cert),
        Some(("revoked".to_string(), Some("keyCompromise".to_string())))
    );
}

// ---------------------------------------------------------------------------------------------
// Returned for correction, resubmitted corrected
// ---------------------------------------------------------------------------------------------

#[test]
fn a_returned_request_is_resubmitted_with_its_corrections_checked_like_a_new_filing() {
    let bed = bed();
    let desk = Desk::new("Trường THCS Nguyễn Huệ", "46");
    let wrong = "Trần Văn Hùng";
    let r = bed.post(
        "/api/v1/requests",
        &desk.officer,
        &issue_body(wrong, &bed.csr(wrong, "ec:P-256")),
    );
    assert_eq!(r.status, 201, "{r}");
    let id = r.id();
    bed.act_ok(&desk.ra, id, "original-received", "accepted");
    let returned = bed.act(&desk.ra, id, "return", Some("Sai họ tên: Trần Văn Hưng"));
    assert_eq!(returned.json["state"], "returned", "{returned}");

    let right = "Trần Văn Hưng";
    let resubmit = |corrected: Value| {
        bed.post(
            &format!("/api/v1/requests/{id}/transitions"),
            &desk.officer,
            &json!({"action": "resubmit", "corrected": corrected}),
        )
    };
    // A correction is checked like a new filing, and nothing changes when it fails.
    let mut bad = issue_body(right, &bed.csr(right, "ec:P-256"));
    bad["subscriber"]["email"] = "not-an-address".into();
    let fields = resubmit(bad).assert_problem(422, "invalid");
    assert_eq!(fields, ["corrected.subscriber.email"]);
    let mut other_kind = issue_body(right, &bed.csr(right, "ec:P-256"));
    other_kind["kind"] = "renew".into();
    let fields = resubmit(other_kind).assert_problem(422, "invalid");
    assert!(fields.contains(&"corrected.kind".to_string()), "{fields:?}");
    let still = bed.get(&format!("/api/v1/requests/{id}"), &desk.officer);
    assert_eq!(still.json["state"], "returned", "{still}");
    assert_eq!(still.json["subscriber"]["name"], wrong, "{still}");
    // Only resubmit carries corrections.
    bed.post(
        &format!("/api/v1/requests/{id}/transitions"),
        &desk.ra,
        &json!({"action": "reject", "reason": "x", "corrected": issue_body(right, "x")}),
    )
    .assert_problem(422, "invalid");

    // The corrected dossier replaces the returned one; the history keeps both steps.
    let done = resubmit(issue_body(right, &bed.csr(right, "ec:P-256")));
    assert_eq!(done.status, 200, "{done}");
    assert_eq!(done.json["state"], "submitted", "{done}");
    assert_eq!(done.json["subscriber"]["name"], right, "{done}");
    let history = bed.get(&format!("/api/v1/requests/{id}/events"), &desk.ra);
    let actions: Vec<&str> = history.json["events"]
        .as_array()
        .or_else(|| history.json.as_array())
        .expect("events")
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert!(actions.ends_with(&["return", "resubmit"]), "{actions:?}");

    // Accepted again, a new period starts; fulfilled, the certificate names the corrected holder.
    bed.act_ok(&desk.ra, id, "accept", "accepted");
    let issued = bed.act(&desk.ra, id, "approve", None);
    assert_eq!(issued.json["state"], "fulfilled", "{issued}");
    let cert = bed.certificate(issued.str("issued_certificate"));
    assert!(
        x509_subject(&cert).ends_with(&format!("CN={right}")),
        "{}",
        x509_subject(&cert)
    );
}

// ---------------------------------------------------------------------------------------------
// Reports
// ---------------------------------------------------------------------------------------------

#[test]
fn a_report_counts_the_requests_and_the_certificates_of_the_organisation() {
    let bed = bed();
    let desk = Desk::new("Trường Mầm non Họa Mi", "52");
    let names = ["Võ Thị Hạnh", "Đinh Công Tráng"];
    let serials: Vec<String> = names
        .iter()
        .map(|n| {
            desk.fulfil(&issue_body(n, &bed.csr(n, "ec:P-256")))
                .str("issued_certificate")
                .to_owned()
        })
        .collect();
    desk.fulfil(
        &json!({"kind": "revoke", "certificate": serials[0], "reason": "affiliationChanged"}),
    );
    let today = OffsetDateTime::now_utc()
        .to_offset(time::macros::offset!(+7))
        .date();
    let q = format!(
        "/api/v1/reports?organisation={}&from={}&to={}",
        desk.org,
        today - Span::days(1),
        today + Span::days(1)
    );
    let r = bed.get(&q, &desk.ra);
    assert_eq!(r.status, 200, "{r}");
    let issue = &r.json["requests"]["issue"];
    assert_eq!(
        (issue["submitted"].as_u64(), issue["fulfilled"].as_u64()),
        (Some(2), Some(2)),
        "{r}"
    );
    assert_eq!(r.json["requests"]["revoke"]["fulfilled"], 1, "{r}");
    assert_eq!(r.json["turnaround"]["count"], 3, "{r}");
    assert_eq!(r.json["certificates"]["valid"], 1, "{r}");
    assert_eq!(r.json["certificates"]["revoked"], 1, "{r}");
    assert_eq!(r.json["breaches"]["total"], 0, "{r}");
    // Another organisation's officer does not see it.
    let other = Desk::new("Trường Mầm non Sen Hồng", "52");
    assert_eq!(bed.get(&q, &other.officer).status, 404);
}

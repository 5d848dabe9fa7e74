//! End to end: who reaches what in the registration authority, on a running `pkid serve`
//! driven by `curl` and the `pkid` CLI (`common::ra::Testbed`, one daemon for the file).
//!
//! ```text
//!  so-gddt-dn  (Đà Nẵng, 48)                       so-yt-hn  (Hà Nội, 01)
//!   ├─ thpt-dn-a ── phan-hieu-a (a's branch)        └─ benh-vien-hn
//!   └─ thpt-dn-b (a's sibling)
//!
//!  ra-dn   ra-officer province:48      ra-a    ra-officer org:thpt-dn-a (a and its branch)
//!  can-bo-a, can-bo-b, can-bo-hn      org-officers of thpt-dn-a, thpt-dn-b, benh-vien-hn
//!  kiem-toan  auditor (all)           kiem-toan-hn  auditor province:01
//! ```
//!
//! Reads outside a caller's reach are 404 (the request's existence is not disclosed), actions
//! outside it 403, and both leave a `refused` row in the audit log. Every organisation of this
//! file is made by [`world`], so what each list must contain is known exactly, whatever order
//! the tests run in.

mod common;

use common::ra::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::OnceLock;

/// The organisations, operators and one request per organisation, made once.
struct World {
    bed: Testbed,
    ra_dn: String,
    ra_a: String,
    officer_a: String,
    officer_b: String,
    officer_hn: String,
    auditor: String,
    auditor_hn: String,
    /// One `issue` request (awaiting the original) filed by each organisation's officer.
    request: Requests,
}

/// One request of each organisation, by organisation.
struct Requests {
    a: i64,
    branch: i64,
    b: i64,
    hn: i64,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let bed = Testbed::start(|_| {});
        bed.org(
            "so-gddt-dn",
            "Sở Giáo dục và Đào tạo thành phố Đà Nẵng",
            None,
            Some("48"),
        );
        bed.org(
            "thpt-dn-a",
            "Trường THPT Phan Châu Trinh",
            Some("so-gddt-dn"),
            Some("48"),
        );
        bed.org(
            "phan-hieu-a",
            "Phân hiệu Trường THPT Phan Châu Trinh – Hòa Vang",
            Some("thpt-dn-a"),
            Some("48"),
        );
        bed.org(
            "thpt-dn-b",
            "Trường THPT Trần Phú",
            Some("so-gddt-dn"),
            Some("48"),
        );
        bed.org("so-yt-hn", "Sở Y tế Hà Nội", None, Some("01"));
        bed.org(
            "benh-vien-hn",
            "Bệnh viện Đa khoa Đống Đa",
            Some("so-yt-hn"),
            Some("01"),
        );
        let ra_dn = bed.operator("ra-dn", "ra-officer", None, Some("province:48"));
        let ra_a = bed.operator("ra-a", "ra-officer", None, Some("org:thpt-dn-a"));
        let officer_a = bed.operator("can-bo-a", "org-officer", Some("thpt-dn-a"), None);
        let officer_branch =
            bed.operator("can-bo-phan-hieu", "org-officer", Some("phan-hieu-a"), None);
        let officer_b = bed.operator("can-bo-b", "org-officer", Some("thpt-dn-b"), None);
        let officer_hn = bed.operator("can-bo-hn", "org-officer", Some("benh-vien-hn"), None);
        let auditor = bed.operator("kiem-toan", "auditor", None, Some("all"));
        let auditor_hn = bed.operator("kiem-toan-hn", "auditor", None, Some("province:01"));
        let request = Requests {
            a: bed.file_issue(&officer_a, None, "Nguyễn Thị Hoa").id(),
            branch: bed.file_issue(&officer_branch, None, "Lê Văn Dũng").id(),
            b: bed.file_issue(&officer_b, None, "Trần Thị Bích").id(),
            hn: bed.file_issue(&officer_hn, None, "Phạm Quốc Việt").id(),
        };
        World {
            bed,
            ra_dn,
            ra_a,
            officer_a,
            officer_b,
            officer_hn,
            auditor,
            auditor_hn,
            request,
        }
    })
}

impl World {
    /// Every request id a caller's list returns, through every page.
    fn listed(&self, token: &str) -> BTreeSet<i64> {
        let mut ids = BTreeSet::new();
        let mut cursor = String::new();
        loop {
            let r = self
                .bed
                .get(&format!("/api/v1/requests?limit=2{cursor}"), token);
            assert_eq!(r.status, 200, "{r}");
            for item in r.json["items"].as_array().expect("items") {
                assert!(
                    ids.insert(item["id"].as_i64().expect("id")),
                    "listed twice: {r}"
                );
            }
            match r.json["next"].as_str() {
                Some(next) => cursor = format!("&cursor={next}"),
                None => return ids,
            }
        }
    }

    /// The organisations of every request a caller's list returns.
    fn listed_organisations(&self, token: &str) -> BTreeSet<String> {
        let r = self.bed.get("/api/v1/requests?limit=500", token);
        assert_eq!(r.status, 200, "{r}");
        r.json["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|i| i["organisation"].as_str().expect("organisation").to_owned())
            .collect()
    }

    /// Asserts a read is 404 and audited as refused.
    fn assert_unreadable(&self, actor: &str, token: &str, id: i64) {
        let r = self.bed.get(&format!("/api/v1/requests/{id}"), token);
        r.assert_problem(404, "not-found");
        let text = r.json["detail"].as_str().unwrap_or_default();
        assert!(
            !text.contains("scope"),
            "a 404 does not hint at a scope: {r}"
        );
        self.bed
            .get(&format!("/api/v1/requests/{id}/events"), token)
            .assert_problem(404, "not-found");
        assert!(
            self.bed.refused(actor, "request.read", &id.to_string()),
            "no refused audit row for {actor} reading request {id}"
        );
    }

    /// Asserts an action is 403, audited as refused, and changed nothing.
    fn assert_cannot_act(&self, actor: &str, token: &str, id: i64, action: &str) {
        let before = self.state(id);
        let r = self.bed.act(token, id, action, Some("thử"));
        r.assert_problem(403, "forbidden");
        assert!(
            self.bed
                .refused(actor, &format!("request.{action}"), &id.to_string()),
            "no refused audit row for {actor}: {action} on request {id}"
        );
        assert_eq!(
            self.state(id),
            before,
            "a refused action moved request {id}"
        );
    }

    /// A request's state, as an auditor who reaches everything sees it.
    fn state(&self, id: i64) -> String {
        let r = self
            .bed
            .get(&format!("/api/v1/requests/{id}"), &self.auditor);
        assert_eq!(r.status, 200, "{r}");
        r.str("state").to_owned()
    }
}

#[test]
fn a_provincial_ra_officer_reads_and_acts_only_within_its_province() {
    let w = world();
    // Outside its province (Hà Nội): not found to read, forbidden to act.
    w.assert_unreadable("ra-dn", &w.ra_dn, w.request.hn);
    w.assert_cannot_act("ra-dn", &w.ra_dn, w.request.hn, "original-received");
    w.assert_cannot_act("ra-dn", &w.ra_dn, w.request.hn, "reject");
    // Nor may it file for a Hà Nội organisation.
    let body = w.bed.issue_body(Some("benh-vien-hn"), "Vũ Văn Nam");
    w.bed
        .post("/api/v1/requests", &w.ra_dn, &body)
        .assert_problem(403, "forbidden");
    assert!(w.bed.refused("ra-dn", "request.submit", ""));

    // Inside it, every level of the tree: a fresh request is read, accepted and approved.
    for officer in [&w.officer_a, &w.officer_b] {
        let filed = w.bed.file_issue(officer, None, "Hồ Thị Thanh Tâm");
        let r = w
            .bed
            .get(&format!("/api/v1/requests/{}", filed.id()), &w.ra_dn);
        assert_eq!(r.status, 200, "{r}");
        w.bed
            .act_ok(&w.ra_dn, filed.id(), "original-received", "accepted");
        let done = w.bed.act_ok(&w.ra_dn, filed.id(), "approve", "fulfilled");
        assert!(done.json["issued_certificate"].is_string(), "{done}");
    }
    // And it files for a Đà Nẵng organisation.
    let mut body = body;
    body["organisation"] = "thpt-dn-b".into();
    let r = w.bed.post("/api/v1/requests", &w.ra_dn, &body);
    assert_eq!(r.status, 201, "{r}");
    assert_eq!(r.json["organisation"], "thpt-dn-b");
}

#[test]
fn an_organisation_scope_reaches_its_subtree_but_not_a_sibling() {
    let w = world();
    for id in [w.request.a, w.request.branch] {
        let r = w.bed.get(&format!("/api/v1/requests/{id}"), &w.ra_a);
        assert_eq!(r.status, 200, "{r}");
    }
    w.assert_unreadable("ra-a", &w.ra_a, w.request.b);
    w.assert_unreadable("ra-a", &w.ra_a, w.request.hn);
    w.assert_cannot_act("ra-a", &w.ra_a, w.request.b, "original-received");
    // Within the subtree it acts, down to the branch.
    let officer_branch = w.bed.token("can-bo-phan-hieu");
    let filed = w.bed.file_issue(&officer_branch, None, "Đinh Công Tráng");
    w.bed
        .act_ok(&w.ra_a, filed.id(), "original-received", "accepted");
    let r = w
        .bed
        .act(&w.ra_a, filed.id(), "return", Some("Ảnh chân dung bị mờ"));
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.json["state"], "returned", "{r}");
    assert_eq!(
        r.json["due_at"],
        Value::Null,
        "returning stops the clock: {r}"
    );
    // The organisation resubmits the corrected dossier; accepting it starts a new period.
    w.bed
        .act_ok(&officer_branch, filed.id(), "resubmit", "submitted");
    let r = w.bed.act_ok(&w.ra_a, filed.id(), "accept", "accepted");
    assert!(r.json["due_at"].is_string(), "{r}");
    let events = w.bed.get(
        &format!("/api/v1/requests/{}/events", filed.id()),
        &officer_branch,
    );
    let list = events.json.as_array().expect("events");
    let actions: Vec<&str> = list
        .iter()
        .map(|e| e["action"].as_str().expect("action"))
        .collect();
    assert!(
        actions.ends_with(&["original-received", "return", "resubmit", "accept"]),
        "{events}"
    );
    let returned = &list[actions.len() - 3];
    assert_eq!(returned["reason"], "Ảnh chân dung bị mờ", "{events}");
    assert_eq!(returned["actor"], "ra-a", "{events}");
}

#[test]
fn an_organisation_officer_reaches_only_its_own_organisation() {
    let w = world();
    // A cannot read B's request, nor its branch's, nor Hà Nội's.
    w.assert_unreadable("can-bo-a", &w.officer_a, w.request.b);
    w.assert_unreadable("can-bo-a", &w.officer_a, w.request.branch);
    w.assert_unreadable("can-bo-hn", &w.officer_hn, w.request.a);
    // A cannot file for B.
    let body = w.bed.issue_body(Some("thpt-dn-b"), "Mai Thị Lụa");
    let before = w.listed(&w.officer_b);
    w.bed
        .post("/api/v1/requests", &w.officer_a, &body)
        .assert_problem(403, "forbidden");
    assert!(w.bed.refused("can-bo-a", "request.submit", ""));
    assert_eq!(w.listed(&w.officer_b), before, "nothing was filed for B");
    // A officer may not decide, even on its own request.
    w.assert_cannot_act("can-bo-a", &w.officer_a, w.request.a, "original-received");
    // Its own: read, and its history.
    let r = w
        .bed
        .get(&format!("/api/v1/requests/{}", w.request.a), &w.officer_a);
    assert_eq!(r.status, 200, "{r}");
    // Organisations: only its own is visible.
    let orgs = w.bed.get("/api/v1/organisations", &w.officer_a);
    assert_eq!(orgs.status, 200, "{orgs}");
    let ids: Vec<&str> = orgs
        .json
        .as_array()
        .expect("organisations")
        .iter()
        .map(|o| o["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, ["thpt-dn-a"]);
    w.bed
        .get("/api/v1/organisations/thpt-dn-b", &w.officer_a)
        .assert_problem(404, "not-found");
}

#[test]
fn lists_return_only_the_rows_in_the_callers_reach() {
    let w = world();
    let r = &w.request;
    const DN: &[&str] = &["thpt-dn-a", "phan-hieu-a", "thpt-dn-b"];
    const HN: &[&str] = &["benh-vien-hn"];
    const ALL: &[&str] = &["thpt-dn-a", "phan-hieu-a", "thpt-dn-b", "benh-vien-hn"];

    // Other tests add requests meanwhile, but only in these organisations: assert what every
    // listed row belongs to, and that the fixed rows are in or out.
    let cases = [
        Expected::of("ra-dn", &w.ra_dn, DN, [r.a, r.branch, r.b], [r.hn]),
        Expected::of(
            "ra-a",
            &w.ra_a,
            &["thpt-dn-a", "phan-hieu-a"],
            [r.a, r.branch],
            [r.b, r.hn],
        ),
        Expected::of(
            "can-bo-a",
            &w.officer_a,
            &["thpt-dn-a"],
            [r.a],
            [r.branch, r.b, r.hn],
        ),
        Expected::of(
            "can-bo-b",
            &w.officer_b,
            &["thpt-dn-b"],
            [r.b],
            [r.a, r.branch, r.hn],
        ),
        Expected::of(
            "kiem-toan-hn",
            &w.auditor_hn,
            HN,
            [r.hn],
            [r.a, r.branch, r.b],
        ),
        Expected::of("kiem-toan", &w.auditor, ALL, [r.a, r.branch, r.b, r.hn], []),
    ];
    for c in cases {
        let orgs = w.listed_organisations(c.token);
        assert!(
            orgs.iter().all(|o| c.reach.contains(&o.as_str())),
            "{} listed rows of {orgs:?}, reach {:?}",
            c.who,
            c.reach
        );
        let ids = w.listed(c.token);
        for id in &c.inside {
            assert!(ids.contains(id), "{} does not list request {id}", c.who);
        }
        for id in &c.outside {
            assert!(
                !ids.contains(id),
                "{} lists request {id}, outside its reach",
                c.who
            );
        }
    }
    // Asking for another organisation by name does not widen a reach.
    let r = w
        .bed
        .get("/api/v1/requests?organisation=thpt-dn-b", &w.officer_a);
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.json["items"], json!([]), "{r}");
    let r = w
        .bed
        .get("/api/v1/requests?organisation=benh-vien-hn", &w.ra_dn);
    assert_eq!(r.json["items"], json!([]), "{r}");
}

#[test]
fn an_auditor_reads_everything_in_scope_but_cannot_act() {
    let w = world();
    for id in [w.request.a, w.request.b, w.request.hn] {
        let r = w.bed.get(&format!("/api/v1/requests/{id}"), &w.auditor);
        assert_eq!(r.status, 200, "{r}");
        let r = w
            .bed
            .get(&format!("/api/v1/requests/{id}/events"), &w.auditor);
        assert_eq!(r.status, 200, "{r}");
    }
    w.assert_cannot_act("kiem-toan", &w.auditor, w.request.hn, "original-received");
    w.assert_cannot_act("kiem-toan", &w.auditor, w.request.hn, "reject");
    w.assert_cannot_act(
        "kiem-toan-hn",
        &w.auditor_hn,
        w.request.hn,
        "original-received",
    );
    // Nor file.
    let body = w.bed.issue_body(Some("benh-vien-hn"), "Quách Thị Yến");
    w.bed
        .post("/api/v1/requests", &w.auditor, &body)
        .assert_problem(403, "forbidden");
    // The Hà Nội auditor does not read Đà Nẵng.
    w.assert_unreadable("kiem-toan-hn", &w.auditor_hn, w.request.a);
    // Administration is a ca-admin's: operators cannot be listed or added by an auditor.
    w.bed
        .get("/api/v1/operators", &w.auditor)
        .assert_problem(403, "forbidden");
    assert!(w.bed.refused("kiem-toan", "operator.list", ""));
}

#[test]
fn a_role_that_may_not_act_is_refused_whatever_the_state() {
    let w = world();
    // `approve` is not allowed from awaiting-original, but an auditor may never approve.
    let r = w.bed.act(&w.auditor, w.request.hn, "approve", None);
    r.assert_problem(403, "forbidden");
    let r = w.bed.act(&w.officer_a, w.request.a, "approve", None);
    r.assert_problem(403, "forbidden");
}

/// What one caller's list must show: rows of `reach` only, every one of `inside`, none of
/// `outside`.
struct Expected<'a> {
    who: &'a str,
    token: &'a str,
    reach: &'a [&'a str],
    inside: Vec<i64>,
    outside: Vec<i64>,
}

impl<'a> Expected<'a> {
    fn of<const I: usize, const O: usize>(
        who: &'a str,
        token: &'a str,
        reach: &'a [&'a str],
        inside: [i64; I],
        outside: [i64; O],
    ) -> Self {
        Self {
            who,
            token,
            reach,
            inside: inside.to_vec(),
            outside: outside.to_vec(),
        }
    }
}

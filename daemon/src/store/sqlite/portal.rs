//! SQLite side of the portal's reads: the public certificate search and the RA queue's order
//! (see `store::certificates::CertificateQuery` and `store::ra::RequestOrder`).

use super::{record, unavailable, CERT_COLUMNS};
use crate::store::{CertificateQuery, SearchHit, StoreError};
use rusqlite::types::Value;
use rusqlite::{params_from_iter, Connection};

/// Migration 15 (appended to `MIGRATIONS`).
///
/// - `certificate_search`: an FTS5 index of every certificate's subject (holder name and
///   organisation), filled by a trigger on the same insert that reserves the serial, so every
///   writer (the CA, the CLI, a bulk load) is covered and nothing is searchable before it
///   exists. `unicode61` folds case across Unicode ("ĐỨC" finds "Đức");
///   `remove_diacritics 0` keeps Vietnamese marks significant ("Văn" does not find "Van").
///   The prefix indexes make the short prefixes people type ("Ng", "Phạ") one lookup instead
///   of a merge of every term that starts so. The serial is stored beside each row and the
///   search joins on it, so a `VACUUM` (which may renumber `certificates`' rowids) cannot
///   make it show the wrong certificate.
/// - `requests_queue*`: the RA queue's order (deadline first, then id, open requests only)
///   as partial indexes, for the whole reach and per province, so a queue page is one index
///   walk however many requests are open.
/// - `requests_subscriber_certificates`: the search by a subscriber's email (the email is on
///   the request; certificates do not carry it).
pub(super) const MIGRATION: &str = "
    CREATE VIRTUAL TABLE certificate_search USING fts5(
        serial UNINDEXED, subject,
        tokenize = 'unicode61 remove_diacritics 0', prefix = '1 2 3');
    INSERT INTO certificate_search (serial, subject)
        SELECT serial, subject FROM certificates ORDER BY created_at, rowid;
    CREATE TRIGGER certificates_to_search AFTER INSERT ON certificates
    BEGIN
        INSERT INTO certificate_search (serial, subject) VALUES (NEW.serial, NEW.subject);
    END;
    CREATE INDEX requests_queue ON requests(COALESCE(due_at, 9223372036854775807), id)
        WHERE state NOT IN ('fulfilled', 'rejected');
    CREATE INDEX requests_queue_province
        ON requests(province, COALESCE(due_at, 9223372036854775807), id)
        WHERE state NOT IN ('fulfilled', 'rejected');
    CREATE INDEX requests_subscriber_certificates ON requests(lower(subscriber_email), id)
        WHERE issued_certificate IS NOT NULL;";

/// The queue's sort expression: the deadline, or after every deadline when there is none
/// (`QueueKey::NO_DEADLINE`). Spelled exactly as in the indexes of [`MIGRATION`].
pub(super) const QUEUE_DUE: &str = "COALESCE(due_at, 9223372036854775807)";
/// The queue's requests: every state but the closed ones. Spelled as in the indexes.
pub(super) const QUEUE_OPEN: &str = "state NOT IN ('fulfilled', 'rejected')";

/// Most words one search matches (each is one FTS5 phrase).
const MAX_WORDS: usize = 8;

/// The FTS5 query of some words: each a quoted prefix phrase (`"phạm"* "văn"*`), quotes
/// doubled, so nothing typed is read as FTS5 syntax. `None` when no word has a letter or digit
/// (the tokenizer would drop it all).
fn fts_query(words: &[String]) -> Option<String> {
    let phrases: Vec<String> = words
        .iter()
        .filter(|w| w.chars().any(char::is_alphanumeric))
        .take(MAX_WORDS)
        .map(|w| format!("\"{}\"*", w.replace('"', "\"\"")))
        .collect();
    (!phrases.is_empty()).then(|| phrases.join(" "))
}

pub(super) fn search(
    conn: &Connection,
    query: &CertificateQuery,
    before: Option<i64>,
    limit: usize,
) -> Result<Vec<SearchHit>, StoreError> {
    let columns = CERT_COLUMNS
        .split(',')
        .map(|c| format!("c.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ");
    let (sql, needle) = match query {
        CertificateQuery::Words(words) => {
            let Some(q) = fts_query(words) else {
                return Ok(Vec::new());
            };
            (
                format!(
                    "SELECT {columns}, s.rowid FROM certificate_search s
                     JOIN certificates c ON c.serial = s.serial
                     WHERE certificate_search MATCH ?1 AND s.rowid < ?2 AND c.der IS NOT NULL
                     ORDER BY s.rowid DESC LIMIT ?3"
                ),
                q,
            )
        }
        CertificateQuery::Email(email) => (
            format!(
                "SELECT {columns}, r.id FROM requests r
                 JOIN certificates c ON c.serial = r.issued_certificate
                 WHERE lower(r.subscriber_email) = lower(?1) AND r.issued_certificate IS NOT NULL
                   AND r.id < ?2 AND c.der IS NOT NULL
                 ORDER BY r.id DESC LIMIT ?3"
            ),
            email.clone(),
        ),
    };
    let args = [
        Value::Text(needle),
        Value::Integer(before.unwrap_or(i64::MAX)),
        Value::Integer(i64::try_from(limit).unwrap_or(i64::MAX)),
    ];
    let mut stmt = conn.prepare_cached(&sql).map_err(unavailable)?;
    // The certificate's columns come first, as `record` reads them; the paging key last.
    let key_at = CERT_COLUMNS.split(',').count();
    let rows = stmt
        .query_map(params_from_iter(args), |row| {
            Ok(SearchHit {
                key: row.get(key_at)?,
                certificate: record(row)?,
            })
        })
        .map_err(unavailable)?;
    rows.collect::<Result<_, _>>().map_err(unavailable)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ra::{QueueKey, RaRequests, RequestFilter, RequestOrder};
    use crate::store::sqlite::outbox::tests::request;
    use crate::store::sqlite::tests::store;
    use crate::store::Certificates;
    use rusqlite::params;

    fn certificate(s: &super::super::SqliteStore, serial: &str, subject: &str, issued: bool) {
        s.lock()
            .expect("lock")
            .execute(
                "INSERT INTO certificates (serial, issuer, subject, profile, not_before,
                                           not_after, status, tbs, der, created_at, updated_at)
                 VALUES (?1, 'issuing', ?2, 'person', 0, 100, ?3, x'00', ?4, 0, 0)",
                params![
                    serial,
                    subject,
                    if issued { "valid" } else { "pending" },
                    issued.then_some(vec![0x30u8])
                ],
            )
            .expect("certificate");
    }

    fn words(q: &str) -> CertificateQuery {
        CertificateQuery::Words(q.split_whitespace().map(str::to_owned).collect())
    }

    fn serials(hits: &[SearchHit]) -> Vec<&str> {
        hits.iter().map(|h| h.certificate.serial.as_str()).collect()
    }

    #[test]
    fn the_search_matches_word_prefixes_in_any_case_with_diacritics_exact_and_pages() {
        let (_dir, s) = store();
        certificate(&s, "01", "CN=Phạm Văn Đức,O=Sở Y tế Đà Nẵng", true);
        certificate(&s, "02", "CN=Pham Van Duc,O=Sở Y tế Đà Nẵng", true);
        certificate(&s, "03", "CN=Nguyễn Thị Ánh,O=Trường THPT Lê Quý Đôn", true);
        certificate(&s, "04", "CN=Phạm Thị Hoa,O=Sở Y tế Đà Nẵng", false);
        let find = |q: &str| s.search(&words(q), None, 10).expect("search");
        assert_eq!(serials(&find("Văn")), ["01"], "diacritics are exact");
        assert_eq!(serials(&find("van")), ["02"]);
        assert_eq!(serials(&find("ĐỨC PHẠM")), ["01"], "any order, any case");
        assert_eq!(
            serials(&find("phạ")),
            ["01"],
            "a prefix; the pending one is not shown"
        );
        assert_eq!(
            serials(&find("ánh lê")),
            ["03"],
            "holder and organisation words"
        );
        assert!(find("ạm").is_empty(), "words match from their start");
        assert!(find("\"NEAR(").is_empty(), "typed syntax is text");
        // Newest first, a page at a time.
        let first = s.search(&words("sở"), None, 1).expect("page 1");
        assert_eq!(serials(&first), ["02"]);
        let second = s
            .search(&words("sở"), Some(first[0].key), 10)
            .expect("page 2");
        assert_eq!(serials(&second), ["01"]);
    }

    #[test]
    fn the_search_by_email_finds_the_certificates_issued_on_that_subscribers_requests() {
        let (_dir, s) = store();
        certificate(&s, "0a", "CN=Nguyễn Thị Ánh", true);
        request(&s, 1, "fulfilled", 0);
        s.lock()
            .expect("lock")
            .execute(
                "UPDATE requests SET issued_certificate = '0a' WHERE id = 1",
                [],
            )
            .expect("issued");
        let hits = s
            .search(
                &CertificateQuery::Email("ANH.NT@dn.gov.vn".into()),
                None,
                10,
            )
            .expect("search");
        assert_eq!(serials(&hits), ["0a"]);
        assert!(s
            .search(&CertificateQuery::Email("anh@dn.gov.vn".into()), None, 10)
            .expect("search")
            .is_empty());
    }

    #[test]
    fn the_queue_is_every_open_request_overdue_first_read_a_page_at_a_time() {
        let (_dir, s) = store();
        // ids 1..=6: due 500, none, 100 (overdue at 300), fulfilled, 900, none.
        for (id, state, due) in [
            (1, "accepted", Some(500)),
            (2, "submitted", None),
            (3, "approved", Some(100)),
            (4, "fulfilled", Some(50)),
            (5, "accepted", Some(900)),
            (6, "awaiting-original", None),
        ] {
            request(&s, id, state, due.unwrap_or(0));
            if due.is_none() {
                s.lock()
                    .expect("lock")
                    .execute("UPDATE requests SET due_at = NULL WHERE id = ?1", [id])
                    .expect("no deadline");
            }
        }
        let page = |after: Option<QueueKey>, limit: usize| {
            s.requests(&RequestFilter {
                order: RequestOrder::Queue(after),
                limit,
                ..RequestFilter::default()
            })
            .expect("queue")
        };
        let all: Vec<i64> = page(None, 10).iter().map(|r| r.id).collect();
        assert_eq!(all, [3, 1, 5, 2, 6]);
        let mut walked = Vec::new();
        let mut after = None;
        loop {
            let rows = page(after, 2);
            if rows.is_empty() {
                break;
            }
            walked.extend(rows.iter().map(|r| r.id));
            after = rows.last().map(QueueKey::of);
        }
        assert_eq!(walked, all, "pages join up without gaps or repeats");
        // The plan walks the partial index (no sort of the whole scope).
        let plan: String = s
            .lock()
            .expect("lock")
            .prepare(&format!(
                "EXPLAIN QUERY PLAN SELECT id FROM requests WHERE 1 = 1 AND {QUEUE_OPEN}
                 ORDER BY {QUEUE_DUE}, id LIMIT 5"
            ))
            .expect("plan")
            .query_map([], |r| r.get::<_, String>(3))
            .expect("rows")
            .collect::<Result<Vec<_>, _>>()
            .expect("plan rows")
            .join("; ");
        assert!(plan.contains("requests_queue"), "{plan}");
        assert!(!plan.contains("TEMP B-TREE"), "{plan}");
    }

    #[test]
    fn typed_text_is_never_fts_syntax() {
        let q = |w: &[&str]| fts_query(&w.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(q(&["Phạm", "Văn"]).as_deref(), Some("\"Phạm\"* \"Văn\"*"));
        assert_eq!(
            q(&["a\"b", "OR", "NEAR("]).as_deref(),
            Some("\"a\"\"b\"* \"OR\"* \"NEAR(\"*")
        );
        assert_eq!(q(&["<>", "--"]), None);
    }
}

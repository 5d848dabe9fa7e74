//! Service tests: a real data directory and store, a fake clock, no sockets.

use super::*;
use crate::ca::{Issuance, Issued};
use crate::clock::{Clock, FakeClock, SystemClock};
use crate::config::{Config, ISSUING};
use crate::datadir::{self, InitOptions};
use crate::keys::KeyRole;
use crate::store::crl::ShardFilter;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
use der::Decode;
use pkid_protocols::crl::{parse, revoked_entries};
use std::path::Path;
use x509_cert::ext::pkix::name::{DistributionPointName, GeneralName};
use x509_cert::ext::pkix::{CrlDistributionPoints, FreshestCrl, IssuingDistributionPoint};
use x509_cert::Certificate;

struct TestCa {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    clock: Arc<FakeClock>,
    authority: Arc<Authority>,
}

impl TestCa {
    /// The registration authority in front of this CA (lifecycle changes go through it).
    fn ra(&self) -> crate::ra::RegistrationAuthority {
        crate::ra::RegistrationAuthority::new(self.authority.clone())
    }
}

/// An authority over a fresh data directory whose `pkid.toml` is `toml`, on a fake clock.
fn test_ca(toml: &str) -> TestCa {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("data");
    std::fs::create_dir_all(&path).expect("mkdir");
    std::fs::write(path.join("pkid.toml"), toml).expect("config");
    datadir::init(&path, &InitOptions::default(), "test").expect("init");
    let clock = Arc::new(FakeClock::new(SystemClock.now()));
    let authority = authority(&path, clock.clone());
    TestCa {
        _dir: dir,
        path,
        clock,
        authority,
    }
}

/// Opens the data directory again: its own store connection, like another process.
fn authority(path: &Path, clock: Arc<FakeClock>) -> Arc<Authority> {
    let config = Arc::new(Config::load(path).expect("config"));
    let store = datadir::store(&config).expect("store");
    let keys = datadir::key_backend(&config).expect("keys");
    let url = &config.server.public_url;
    let issuer = |name: &str, role: KeyRole, ocsp: bool| {
        Issuer::new(
            name,
            datadir::role_certificate(path, &role).expect("cert"),
            keys.load(&role).expect("key"),
            url,
            ocsp,
        )
        .expect("issuer")
    };
    let issuers = vec![
        issuer(ROOT, KeyRole::Root, false),
        issuer(ISSUING, KeyRole::Issuing, true),
    ];
    Arc::new(Authority::new(config, store, clock, issuers))
}

fn service(ca: &TestCa) -> CrlService {
    let config = ca.authority.config();
    CrlService::new(
        ca.authority.clone(),
        config.crl.clone(),
        &config.server.public_url,
        "test",
        None,
    )
}

fn issue(ca: &TestCa, cn: &str, days: u32) -> Issued {
    let kp = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).expect("keygen");
    let spki =
        pkid_protocols::algorithm::parse_spki(kp.public_key().as_der().expect("der").as_ref())
            .expect("spki");
    let sp = ca
        .authority
        .config()
        .profile("person")
        .expect("profile")
        .clone();
    let issuing = ca.authority.issuer(ISSUING).expect("issuing").clone();
    ca.authority
        .sign_certificate(
            issuing.signing(),
            Issuance {
                profile: &sp.profile,
                profile_name: "person",
                subject: pkid_protocols::name::parse(&format!("CN={cn},O=Test")).expect("name"),
                public_key: spki,
                days,
                subject_alt_name: None,
                replaces: None,
            },
        )
        .expect("issue")
}

/// Serial → reason of every entry of a CRL.
fn listed(crl: &PublishedCrl) -> Vec<(String, Option<CrlReason>)> {
    let list = parse(&crl.der).expect("decode");
    revoked_entries(&list)
        .expect("entries")
        .into_iter()
        .map(|e| (e.serial.to_hex(), e.reason))
        .collect()
}

fn verify(crl: &PublishedCrl, ca: &TestCa, issuer: &str) {
    let list = parse(&crl.der).expect("decode");
    let tbs = der::Encode::to_der(&list.tbs_cert_list).expect("tbs");
    let key = ca
        .authority
        .issuer(issuer)
        .expect("issuer")
        .signer
        .public_key()
        .clone();
    pkid_protocols::algorithm::verify(
        &key,
        &list.signature_algorithm,
        &tbs,
        list.signature.raw_bytes(),
    )
    .expect("CRL signature");
}

#[test]
fn full_crls_list_revocations_and_holds_and_numbers_only_grow() {
    let ca = test_ca("");
    let svc = service(&ca);
    let a = issue(&ca, "a", 30);
    let b = issue(&ca, "b", 30);
    let _c = issue(&ca, "c", 30);
    let first = svc.generate(ISSUING, None, false).expect("crl");
    assert_eq!((first.number, first.entries), (1, 0));
    ca.ra()
        .revoke(
            &a.serial,
            CrlReason::KeyCompromise,
            Some(ca.clock.now() - 3600),
            "test",
        )
        .expect("revoke");
    ca.ra().hold(&b.serial, "test").expect("hold");
    let second = svc.generate(ISSUING, None, false).expect("crl");
    assert_eq!(second.number, 2);
    verify(&second, &ca, ISSUING);
    let mut want = vec![
        (a.serial.clone(), Some(CrlReason::KeyCompromise)),
        (b.serial.clone(), Some(CrlReason::CertificateHold)),
    ];
    want.sort_by_key(|(s, _)| (s.len(), s.clone()));
    assert_eq!(listed(&second), want);
    let list = parse(&second.der).expect("decode");
    let entries = revoked_entries(&list).expect("entries");
    let a_entry = entries
        .iter()
        .find(|e| e.serial.to_hex() == a.serial)
        .expect("a");
    assert_eq!(a_entry.invalidity_date, Some(ca.clock.now() - 3600));
    // Released from hold: gone from the next complete CRL.
    ca.ra().release(&b.serial, "test").expect("release");
    let third = svc.generate(ISSUING, None, false).expect("crl");
    assert_eq!(
        listed(&third),
        vec![(a.serial.clone(), Some(CrlReason::KeyCompromise))]
    );
    assert_eq!(
        svc.lookup(&CrlKey::new(ISSUING, None, false))
            .expect("served")
            .number,
        3
    );
    // The root's CRL is its own sequence and covers the issuing CA certificate only.
    assert_eq!(svc.generate(ROOT, None, false).expect("root").number, 1);

    // A new process continues the sequence.
    let again = authority(&ca.path, ca.clock.clone());
    let cfg = again.config().clone();
    let svc2 = CrlService::new(again, cfg.crl.clone(), &cfg.server.public_url, "test", None);
    assert_eq!(svc2.sync_from_store().expect("load"), 2);
    assert_eq!(svc2.generate(ISSUING, None, false).expect("crl").number, 4);
}

#[test]
fn concurrent_generations_never_share_a_number() {
    let ca = test_ca("");
    let _ = issue(&ca, "x", 30);
    let services: Vec<Arc<CrlService>> = (0..4)
        .map(|_| {
            let a = authority(&ca.path, ca.clock.clone());
            let cfg = a.config().clone();
            Arc::new(CrlService::new(
                a,
                cfg.crl.clone(),
                &cfg.server.public_url,
                "test",
                None,
            ))
        })
        .collect();
    let handles: Vec<_> = services
        .iter()
        .flat_map(|s| (0..2).map(move |_| s.clone()))
        .map(|s| {
            std::thread::spawn(move || {
                (0..5)
                    .map(|_| s.generate_detailed(ISSUING, None, false).map(|g| g.signed))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut numbers: Vec<u64> = handles
        .into_iter()
        .flat_map(|h| h.join().expect("thread"))
        .map(|r| r.expect("generate"))
        .collect();
    numbers.sort_unstable();
    let before = numbers.len();
    numbers.dedup();
    assert_eq!(
        numbers.len(),
        before,
        "a CRL number was handed out twice: {numbers:?}"
    );
    let stored = ca
        .authority
        .store()
        .stored_crl(ISSUING, None, false)
        .expect("store")
        .expect("stored");
    assert_eq!(stored.info.number, 40, "the newest CRL is the one stored");
    assert_eq!(
        pkid_protocols::crl::number_of(&parse(&stored.der).expect("decode")),
        Some(40)
    );
}

#[test]
fn deltas_list_changes_since_their_base_and_remove_released_holds() {
    let ca = test_ca("[crl]\ndeltas = true\n");
    let svc = service(&ca);
    let held = issue(&ca, "held", 30);
    ca.ra().hold(&held.serial, "test").expect("hold");
    let revoked = issue(&ca, "revoked", 30);
    let base = svc.generate(ISSUING, None, false).expect("base");
    assert_eq!(
        listed(&base),
        vec![(held.serial.clone(), Some(CrlReason::CertificateHold))]
    );
    let list = parse(&base.der).expect("decode");
    let freshest = list
        .tbs_cert_list
        .crl_extensions
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|e| e.extn_id == const_oid::db::rfc5280::ID_CE_FRESHEST_CRL)
        .expect("complete CRLs point at their delta");
    assert!(FreshestCrl::from_der(freshest.extn_value.as_bytes()).is_ok());

    ca.clock.advance(10);
    ca.ra().release(&held.serial, "test").expect("release");
    ca.ra()
        .revoke(&revoked.serial, CrlReason::Superseded, None, "test")
        .expect("revoke");
    let _fresh = issue(&ca, "fresh", 30); // issuance is not a CRL change
    let delta = svc.generate(ISSUING, None, true).expect("delta");
    assert_eq!(delta.base_number, Some(base.number));
    assert!(delta.number > base.number);
    verify(&delta, &ca, ISSUING);
    let mut want = vec![
        (held.serial.clone(), Some(CrlReason::RemoveFromCRL)),
        (revoked.serial.clone(), Some(CrlReason::Superseded)),
    ];
    want.sort_by_key(|(s, _)| (s.len(), s.clone()));
    assert_eq!(listed(&delta), want);
    assert_eq!(
        pkid_protocols::crl::base_number_of(&parse(&delta.der).expect("d")),
        Some(base.number)
    );

    // The change feed names the scope once; a new complete CRL folds the changes in.
    let (changes, _) = ca.authority.store().crl_changes_since(0).expect("changes");
    assert!(changes
        .iter()
        .all(|c| c.issuer == ISSUING && c.shard.is_none()));
    let base2 = svc.generate(ISSUING, None, false).expect("base");
    assert_eq!(
        listed(&base2),
        vec![(revoked.serial.clone(), Some(CrlReason::Superseded))]
    );
    let empty = svc.generate(ISSUING, None, true).expect("delta");
    assert_eq!((empty.base_number, empty.entries), (Some(base2.number), 0));
}

#[test]
fn issuance_alone_changes_no_crl() {
    let ca = test_ca("");
    let svc = service(&ca);
    svc.start().expect("start");
    let numbers = |svc: &CrlService| {
        svc.published()
            .iter()
            .map(|(_, c)| c.number)
            .collect::<Vec<_>>()
    };
    let before = numbers(&svc);
    assert_eq!(before.len(), 2, "root and issuing");
    let _ = issue(&ca, "new", 30);
    assert_eq!(svc.apply_changes().expect("apply"), 0);
    assert_eq!(numbers(&svc), before);
    let x = issue(&ca, "x", 30);
    ca.ra()
        .revoke(&x.serial, CrlReason::Unspecified, None, "test")
        .expect("revoke");
    assert_eq!(svc.apply_changes().expect("apply"), 1);
    let crl = svc
        .lookup(&CrlKey::new(ISSUING, None, false))
        .expect("served");
    assert_eq!(
        listed(&crl),
        vec![(x.serial.clone(), None)],
        "unspecified: no reason code"
    );
}

#[test]
fn expired_certificates_leave_after_the_grace_period() {
    let ca = test_ca("[crl]\nnext_update_hours = 24\nexpired_grace_hours = 48\n");
    let svc = service(&ca);
    let short = issue(&ca, "short", 1);
    ca.ra()
        .revoke(&short.serial, CrlReason::Superseded, None, "test")
        .expect("revoke");
    ca.clock.advance(2 * 86_400); // expired a day ago: within the grace
    assert_eq!(svc.generate(ISSUING, None, false).expect("crl").entries, 1);
    ca.clock.advance(2 * 86_400); // expired three days ago: past the 48 h grace
    assert_eq!(svc.generate(ISSUING, None, false).expect("crl").entries, 0);
}

#[test]
fn the_schedule_resigns_at_half_life_and_fills_gaps() {
    let ca = test_ca(
        "[crl]\nnext_update_hours = 10\ndelta_next_update_hours = 5\nexpired_grace_hours = 10\n",
    );
    let svc = service(&ca);
    svc.refresh().expect("refresh");
    let first = svc
        .lookup(&CrlKey::new(ISSUING, None, false))
        .expect("generated");
    assert_eq!(first.next_update - first.this_update, 10 * 3600);
    ca.clock.advance(4 * 3600);
    svc.refresh().expect("refresh");
    assert_eq!(
        svc.lookup(&CrlKey::new(ISSUING, None, false))
            .expect("x")
            .number,
        first.number
    );
    ca.clock.advance(3600);
    svc.refresh().expect("refresh");
    assert_eq!(
        svc.lookup(&CrlKey::new(ISSUING, None, false))
            .expect("x")
            .number,
        first.number + 1
    );
}

fn cdp(der: &[u8]) -> String {
    let cert = Certificate::from_der(der).expect("cert");
    let (_, points) = cert
        .tbs_certificate
        .get::<CrlDistributionPoints>()
        .expect("ext")
        .expect("CDP");
    match &points.0[0].distribution_point {
        Some(DistributionPointName::FullName(names)) => match &names[0] {
            GeneralName::UniformResourceIdentifier(u) => u.to_string(),
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
}

fn idp(crl: &PublishedCrl) -> Option<String> {
    let list = parse(&crl.der).expect("decode");
    let ext = list
        .tbs_cert_list
        .crl_extensions
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|e| e.extn_id == const_oid::db::rfc5280::ID_CE_ISSUING_DISTRIBUTION_POINT)?;
    assert!(ext.critical);
    match IssuingDistributionPoint::from_der(ext.extn_value.as_bytes())
        .expect("idp")
        .distribution_point
    {
        Some(DistributionPointName::FullName(names)) => match &names[0] {
            GeneralName::UniformResourceIdentifier(u) => Some(u.to_string()),
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
}

#[test]
fn partitions_are_assigned_at_issuance_and_match_their_crl() {
    let ca = test_ca("[crl]\nshards = 3\n");
    let svc = service(&ca);
    let certs: Vec<Issued> = (0..12).map(|i| issue(&ca, &format!("p{i}"), 30)).collect();
    let victim = &certs[0];
    ca.ra()
        .revoke(&victim.serial, CrlReason::KeyCompromise, None, "test")
        .expect("revoke");
    let made = svc.generate_all(Some(ISSUING)).expect("all");
    let labels: Vec<String> = made.iter().map(|(k, _)| k.label()).collect();
    assert_eq!(labels, ["issuing", "issuing/0", "issuing/1", "issuing/2"]);
    let url = &ca.authority.config().server.public_url;
    let mut used = BTreeSet::new();
    for c in &certs {
        let point = cdp(&c.der);
        let shard = ["0", "1", "2"]
            .iter()
            .position(|n| point == format!("{url}/crl/issuing/{n}.crl"))
            .expect("a partition URL") as u32;
        used.insert(shard);
        let crl = svc
            .lookup(&CrlKey::new(ISSUING, Some(shard), false))
            .expect("served");
        assert_eq!(
            idp(&crl).as_deref(),
            Some(point.as_str()),
            "IDP matches the CDP"
        );
        let expected = if c.serial == victim.serial { 1 } else { 0 };
        let on_it = listed(&crl).iter().filter(|(s, _)| *s == c.serial).count();
        assert_eq!(on_it, expected);
        // and on no other partition
        for other in (0..3).filter(|o| *o != shard) {
            let crl = svc
                .lookup(&CrlKey::new(ISSUING, Some(other), false))
                .expect("served");
            assert!(listed(&crl).iter().all(|(s, _)| *s != c.serial));
        }
    }
    assert!(used.len() > 1, "serials spread over partitions");
    // Certificates from before partitioning (the CA's own: OCSP, TSA, TLS) stay on the
    // issuer-wide CRL, which now names itself in its IDP.
    let wide = svc
        .lookup(&CrlKey::new(ISSUING, None, false))
        .expect("served");
    assert_eq!(idp(&wide), Some(format!("{url}/crl/issuing.crl")));
    assert!(svc.serves(&CrlKey::new(ISSUING, Some(2), false)));
    assert!(!svc.serves(&CrlKey::new(ISSUING, Some(3), false)));
    assert!(!svc.serves(&CrlKey::new(ROOT, Some(0), false)));
    assert!(
        !svc.serves(&CrlKey::new(ISSUING, None, true)),
        "deltas are off"
    );

    // The partition scan uses the partial index in serial order.
    let mut n = 0;
    struct Count<'a>(&'a mut u64);
    impl CrlVisitor for Count<'_> {
        fn row(&mut self, _: CrlRow<'_>) -> bool {
            *self.0 += 1;
            true
        }
    }
    ca.authority
        .store()
        .scan_crl_entries(
            &CrlQuery {
                issuer: ISSUING,
                shard: ShardFilter::Any,
                not_after_from: 0,
                changed_after: None,
            },
            &mut Count(&mut n),
        )
        .expect("scan");
    assert_eq!(n, 1);
}

#[test]
fn certificates_carry_freshest_crl_when_deltas_are_on() {
    let ca = test_ca("[crl]\ndeltas = true\n");
    let c = issue(&ca, "d", 30);
    let cert = Certificate::from_der(&c.der).expect("cert");
    let (_, f) = cert
        .tbs_certificate
        .get::<FreshestCrl>()
        .expect("ext")
        .expect("freshestCRL");
    let url = &ca.authority.config().server.public_url;
    assert_eq!(
        f.0[0].distribution_point,
        Some(DistributionPointName::FullName(vec![
            GeneralName::UniformResourceIdentifier(
                der::asn1::Ia5String::new(&format!("{url}/crl/issuing-delta.crl")).expect("ia5")
            )
        ]))
    );
    let plain = test_ca("");
    let c = issue(&plain, "p", 30);
    let cert = Certificate::from_der(&c.der).expect("cert");
    assert!(cert
        .tbs_certificate
        .get::<FreshestCrl>()
        .expect("ext")
        .is_none());
}

#[test]
fn large_crl_buffers_are_reused_once_no_response_holds_them() {
    let ca = test_ca("");
    let svc = service(&ca);
    let key = CrlKey::new(ISSUING, None, false);
    let spare_len = |svc: &CrlService| {
        svc.spares
            .lock()
            .expect("lock")
            .get(&key)
            .map(|v| v.capacity())
    };
    let big = vec![0x30u8; SPARE_MIN_BYTES + 10];
    let served = svc.served_bytes(&key, big, 10);
    assert_eq!(served.len(), SPARE_MIN_BYTES);
    let in_flight = served.clone(); // a response still sending it
    drop(served);
    assert_eq!(spare_len(&svc), None);
    drop(in_flight);
    assert!(spare_len(&svc).is_some_and(|c| c >= SPARE_MIN_BYTES + 10));
    // The next CRL of the scope is written into it.
    let crl = svc.generate(ISSUING, None, false).expect("crl");
    assert_eq!(spare_len(&svc), None, "taken by the new CRL");
    verify(&crl, &ca, ISSUING);
    // Small buffers are not kept.
    drop(svc.served_bytes(&key, vec![0u8; 100], 0));
    assert_eq!(spare_len(&svc), None);
}

#[test]
fn a_stored_crl_whose_body_file_is_lost_is_signed_again_at_start() {
    let ca = test_ca("");
    let first = service(&ca);
    first.start().expect("start");
    let stored = first
        .lookup(&CrlKey::new(ISSUING, None, false))
        .expect("generated");
    // A restore of pkid.db without crls/: the rows name files that are gone.
    std::fs::remove_dir_all(ca.path.join("crls")).expect("rm crls/");
    let restarted = service(&ca);
    restarted.start().expect("start despite the lost bodies");
    let again = restarted
        .lookup(&CrlKey::new(ISSUING, None, false))
        .expect("signed again");
    assert!(
        again.number > stored.number,
        "a new number: {} after {}",
        again.number,
        stored.number
    );
    verify(&again, &ca, ISSUING);
}

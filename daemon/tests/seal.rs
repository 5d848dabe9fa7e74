//! The data-sealing key of a real data directory (software backend): `pkid init` makes the
//! directory, the library opens it as the daemon does, and the key appears in `keys/` on first
//! use, private, and survives a restart.

mod common;

use common::*;
use pkid::keys::SealError;
use std::os::unix::fs::PermissionsExt;

#[test]
fn a_data_directory_seals_under_a_private_key_file_that_outlives_a_restart() {
    let dir = init(&[]);
    let data = dir.path();
    let path = data.join("keys").join("seal.key");
    assert!(!path.exists(), "made on first use, not by init");

    let opened = pkid::datadir::open(data, true).expect("open");
    let sealer = opened.keys.expect("key backend").sealer().expect("sealer");
    let phone = "0912 345 678 (Lê Văn Đức)".as_bytes();
    let sealed = sealer.seal(phone, b"request:1:phone").expect("seal");
    let mode = std::fs::metadata(&path)
        .expect("seal.key")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(std::fs::read(&path).expect("read").len(), 32);
    drop(sealer);

    // A restart: the same file, so yesterday's rows still open, and only in their own place.
    let reopened = pkid::datadir::open(data, true).expect("reopen");
    let sealer = reopened
        .keys
        .expect("key backend")
        .sealer()
        .expect("sealer");
    let opened = sealer.open(&sealed, b"request:1:phone").expect("open");
    assert_eq!(opened.as_slice(), phone);
    assert_eq!(
        sealer.open(&sealed, b"request:2:phone"),
        Err(SealError::Unauthentic)
    );

    // A key file others may read is refused, naming the file and the fix.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let again = pkid::datadir::open(data, true).expect("open");
    let refused = again
        .keys
        .expect("key backend")
        .sealer()
        .err()
        .expect("refused");
    let message = refused.to_string();
    assert!(
        message.contains("seal.key") && message.contains("chmod 600"),
        "{message}"
    );
}

//! End to end: `pkid calendar due | check` with the real binary, and the calendar file that
//! `pkid init` and `pkid serve` put in the data directory.

mod common;

use common::*;
use std::path::Path;

/// The calendar shipped in `conf/`, as `pkid init` must copy it.
fn shipped() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf/calendar-vn.toml"))
        .expect("conf/calendar-vn.toml")
}

/// `pkid calendar due --from FROM ARGS…` on `data`, which must fail: (exit code, stdout, stderr).
fn due_fails(data: &Path, from: &str, args: &[&str]) -> (i32, String, String) {
    let mut full = vec!["calendar", "due", "--from", from];
    full.extend_from_slice(args);
    pkid_fails(data, &full)
}

/// A data directory that does not exist: the commands fall back to the shipped calendar.
fn nowhere(dir: &tempfile::TempDir) -> std::path::PathBuf {
    dir.path().join("no-data-dir")
}

#[test]
fn due_across_tet_2026_prints_one_rfc3339_line_in_plus_seven() {
    let dir = tempdir();
    let data = nowhere(&dir);
    // Accepted Friday 13 February 2026 (UTC input): Tết is off from 14 to 22 February, so the
    // three working days are 23, 24 and 25 February, ending at 24:00 on the 25th.
    let out = pkid_ok(
        &data,
        &[
            "calendar",
            "due",
            "--from",
            "2026-02-13T03:00:00Z",
            "--working-days",
            "3",
        ],
    );
    assert_eq!(out, "2026-02-26T00:00:00+07:00\n");
    // A revocation accepted the evening before Tết: 12 clock hours, the holiday included.
    let out = pkid_ok(
        &data,
        &[
            "calendar",
            "due",
            "--from",
            "2026-02-16T20:00:00+07:00",
            "--hours",
            "12",
        ],
    );
    assert_eq!(out, "2026-02-17T08:00:00+07:00\n");
    // 23:59 and 00:00 local are different days of acceptance.
    let due = |from: &str| {
        pkid_ok(
            &data,
            &["calendar", "due", "--from", from, "--working-days", "3"],
        )
    };
    assert_eq!(
        due("2026-03-02T23:59:59+07:00"),
        "2026-03-06T00:00:00+07:00\n"
    );
    assert_eq!(
        due("2026-03-03T00:00:00+07:00"),
        "2026-03-07T00:00:00+07:00\n"
    );
}

#[test]
fn due_refuses_a_bad_instant_and_needs_exactly_one_period() {
    let dir = tempdir();
    let data = nowhere(&dir);
    let (code, stdout, stderr) = due_fails(&data, "13/02/2026", &["--working-days", "3"]);
    assert_eq!(code, 3, "{stderr}");
    assert!(stdout.is_empty());
    assert!(
        one_error_line(&stderr).contains("--from \"13/02/2026\""),
        "{stderr}"
    );
    let (code, _, stderr) = due_fails(
        &data,
        "2026-02-13T10:00:00+07:00",
        &["--working-days", "3", "--hours", "12"],
    );
    assert_eq!(code, 2, "{stderr}");
    let (code, _, _) = due_fails(&data, "2026-02-13T10:00:00+07:00", &[]);
    assert_eq!(code, 2);
}

#[test]
fn check_counts_each_year_and_names_the_broken_entry_of_a_file() {
    let dir = tempdir();
    let data = nowhere(&dir);
    let out = pkid_ok(&data, &["calendar", "check"]);
    assert!(
        out.contains("2026: 17 days off (13 of them Monday to Friday), 2 make-up working days"),
        "{out}"
    );

    let broken = dir.path().join("broken.toml");
    std::fs::write(
        &broken,
        "[[2026.day_off]]\nfrom = \"2026-02-14\"\nto = \"2026-02-22\"\nname = \"Tết Bính Ngọ\"\nsource = \"BLLĐ 2019 Đ112\"\n\n\
         [[2026.makeup_day]]\ndate = \"2026-02-20\"\nname = \"Làm bù\"\nsource = \"BNV\"\n",
    )
    .expect("write");
    let (code, stdout, stderr) = pkid_fails(
        &data,
        &["calendar", "check", "--calendar", path_str(&broken)],
    );
    assert_eq!(code, 3, "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    let line = one_error_line(&stderr);
    assert!(
        line.contains("broken.toml")
            && line.contains("2026 makeup_day #1 \"Làm bù\"")
            && line.contains("2026-02-20 is a Friday"),
        "{line}"
    );
    // `due` refuses to compute from a broken file rather than ignoring it.
    let (code, _, _) = due_fails(
        &data,
        "2026-02-13T10:00:00+07:00",
        &["--working-days", "3", "--calendar", path_str(&broken)],
    );
    assert_eq!(code, 3);
    let missing = dir.path().join("missing.toml");
    let (code, _, stderr) = pkid_fails(
        &data,
        &["calendar", "check", "--calendar", path_str(&missing)],
    );
    assert_eq!(code, 3);
    assert!(one_error_line(&stderr).contains("missing.toml"), "{stderr}");
}

#[test]
fn init_writes_the_calendar_the_cli_then_uses_and_serve_restores_a_missing_one() {
    let dir = init(&[]);
    let data = dir.path();
    let path = data.join("calendar-vn.toml");
    assert_eq!(
        std::fs::read_to_string(&path).expect("written by init"),
        shipped()
    );

    // An operator's edit (Monday 23 February 2026 off) is what `calendar due` uses.
    let mut edited = shipped();
    edited.push_str(
        "\n[[2026.day_off]]\ndate = \"2026-02-23\"\nname = \"Nghỉ thêm (thử)\"\nsource = \"test\"\n",
    );
    std::fs::write(&path, &edited).expect("edit");
    let args = [
        "calendar",
        "due",
        "--from",
        "2026-02-13T10:00:00+07:00",
        "--working-days",
        "3",
    ];
    assert_eq!(pkid_ok(data, &args), "2026-02-27T00:00:00+07:00\n");
    // `--calendar` overrides the data directory's file.
    let conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf/calendar-vn.toml");
    let mut with_file = args.to_vec();
    with_file.extend(["--calendar", path_str(&conf)]);
    assert_eq!(pkid_ok(data, &with_file), "2026-02-26T00:00:00+07:00\n");
    let out = pkid_ok(data, &["calendar", "check"]);
    assert!(
        out.starts_with(&format!("{}: valid\n", path.display())),
        "{out}"
    );

    // A data directory without a calendar (made before the RA existed) gets one from serve.
    std::fs::remove_file(&path).expect("remove");
    let mut daemon = Daemon::start(data);
    daemon.sigterm();
    assert!(daemon.wait().success());
    assert_eq!(
        std::fs::read_to_string(&path).expect("written by serve"),
        shipped()
    );
}

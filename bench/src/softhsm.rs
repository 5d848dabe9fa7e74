//! A SoftHSM2 token for PKCS#11 benchmark runs, in a directory of the bench's own.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Label of the benchmark token.
pub const LABEL: &str = "pkid-bench";
/// User PIN of the benchmark token (a throwaway token in a temporary directory).
pub const PIN: &str = "1234";

/// Initialises a fresh token labelled [`LABEL`] under `dir` and writes its PIN to `dir/pin`.
/// Returns the `SOFTHSM2_CONF` path that selects it, or why it could not.
pub fn init_token(dir: &Path) -> Result<PathBuf, String> {
    let tokens = dir.join("tokens");
    std::fs::create_dir_all(&tokens).map_err(|e| format!("{}: {e}", tokens.display()))?;
    let conf = dir.join("softhsm2.conf");
    let text = format!(
        "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
        tokens.display()
    );
    std::fs::write(&conf, text).map_err(|e| format!("{}: {e}", conf.display()))?;
    let out = Command::new("softhsm2-util")
        .env("SOFTHSM2_CONF", &conf)
        .args([
            "--init-token",
            "--free",
            "--label",
            LABEL,
            "--so-pin",
            "12345678",
            "--pin",
            PIN,
        ])
        .output()
        .map_err(|e| format!("softhsm2-util: {e} (apt-get install softhsm2)"))?;
    if !out.status.success() {
        return Err(format!(
            "softhsm2-util --init-token failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    std::fs::write(dir.join("pin"), format!("{PIN}\n")).map_err(|e| format!("pin file: {e}"))?;
    Ok(conf)
}

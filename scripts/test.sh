#!/usr/bin/env bash
# The project's test command: installs what the tests need on a fresh Debian machine, then runs
# every test in the workspace (unit, vector, service and end-to-end tests against the real
# daemon with openssl, curl and a SoftHSM2 token).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v openssl >/dev/null || need+=(openssl)
command -v curl >/dev/null || need+=(curl)
command -v softhsm2-util >/dev/null || need+=(softhsm2)
command -v pkcs11-tool >/dev/null || need+=(opensc)
[ -e /usr/lib/softhsm/libsofthsm2.so ] || need+=(softhsm2)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing test dependencies: ${need[*]}"
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

# Python tools the tests drive, in a virtual environment kept in target/venv (made once,
# reused): aiosmtpd, a real SMTP server for daemon/tests/notify.rs and csc.rs; pkilint, the
# independent linter daemon/tests/lint.rs runs over certificates, CRLs and OCSP responses;
# pyHanko, which signs a PDF through the CSC API and validates it in daemon/tests/csc.rs.
# The tests find the venv's python through PKID_TEST_SMTPD_PYTHON and pkilint through
# PKID_TEST_PKILINT, and fail, naming this script, when those are not set.
venv=target/venv
if ! "$venv/bin/python" -c "import aiosmtpd, pkilint, pyhanko" 2>/dev/null; then
  echo "preparing $venv with aiosmtpd, pkilint and pyhanko"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    "aiosmtpd==1.4.6" "pkilint==0.13.3" "pyhanko==0.38.0"
fi
export PKID_TEST_SMTPD_PYTHON="$PWD/$venv/bin/python"
export PKID_TEST_PKILINT="$PWD/$venv/bin"

# A real browser for daemon/tests/portal.rs: Debian's chromium and chromium-driver, driven by
# selenium from PyPI in target/venv-web. The test finds it through PKID_TEST_BROWSER_PYTHON and
# fails, naming this script, when it is not set.
web=()
[ -x /usr/bin/chromium ] || web+=(chromium)
[ -x /usr/bin/chromedriver ] || web+=(chromium-driver)
if [ ${#web[@]} -gt 0 ]; then
  echo "installing the portal tests' browser: ${web[*]}"
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${web[@]}"
fi
webenv=target/venv-web
if ! "$webenv/bin/python" -c "import selenium" 2>/dev/null; then
  echo "preparing $webenv with selenium (the portal's browser tests)"
  python3 -m venv "$webenv"
  "$webenv/bin/pip" install --quiet --disable-pip-version-check "selenium==4.38.0"
fi
export PKID_TEST_BROWSER_PYTHON="$PWD/$webenv/bin/python"

cargo test --workspace --locked --no-fail-fast "$@"

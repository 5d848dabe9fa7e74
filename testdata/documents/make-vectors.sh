#!/usr/bin/env bash
# Regenerates every vector in this directory (see README.md). Needs OpenSSL 3 and, for the
# signed PDFs, pyHanko in a throw-away venv: python3 -m venv /tmp/hanko && /tmp/hanko/bin/pip
# install pyhanko pyhanko-cli; then PYHANKO=/tmp/hanko/bin/pyhanko ./make-vectors.sh
# The keys are test keys: never trust them.
set -euo pipefail
cd "$(dirname "$0")"
PYHANKO=${PYHANKO:-pyhanko}
rm -rf ca && mkdir ca && touch ca/index.txt && echo 1000 > ca/serial

# --- the test CA: a P-256 root, an RSA issuing CA under it -------------------------------------
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout root.key \
  -subj "/C=VN/O=pkid test/CN=pkid Test Document Root" -days 36500 -set_serial 1 \
  -addext "basicConstraints=critical,CA:true" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -addext "subjectKeyIdentifier=hash" -out root.crt
openssl req -new -newkey rsa:2048 -nodes -keyout issuing.key \
  -subj "/C=VN/O=pkid test/CN=pkid Test Document Issuing CA" -out ca/issuing.csr
# ca.cnf: `openssl ca` sets exact validity dates (-startdate/-enddate), which `openssl x509`
# in OpenSSL 3.0 cannot.
openssl ca -batch -config ca.cnf -extensions v3_ca -cert root.crt -keyfile root.key \
  -startdate 20260101000000Z -enddate 20360101000000Z -in ca/issuing.csr -out issuing.crt -notext

# signer <name> <key algorithm options> <subject> <extensions section> <start> <end>
signer() {
  openssl req -new -newkey "$2" ${3:+-pkeyopt "$3"} -nodes -keyout "$1.key" -utf8 \
    -subj "$4" -out "ca/$1.csr"
  openssl ca -batch -config ca.cnf -extensions "$5" -cert issuing.crt -keyfile issuing.key \
    -startdate "$6" -enddate "$7" -in "ca/$1.csr" -out "$1.crt" -notext
}
signer rsa-signer rsa rsa_keygen_bits:2048 \
  "/C=VN/O=Sở Y tế Đà Nẵng/CN=Nguyễn Văn An" v3_signer 20260101000000Z 20360101000000Z
signer p256-signer ec ec_paramgen_curve:P-256 \
  "/C=VN/O=Trường THPT Phan Châu Trinh/CN=Trần Thị Bích" v3_signer 20260101000000Z 20360101000000Z
signer expired-signer ec ec_paramgen_curve:P-256 \
  "/C=VN/O=pkid test/CN=Expired signer" v3_signer 20260101000000Z 20260630000000Z
signer future-signer ec ec_paramgen_curve:P-256 \
  "/C=VN/O=pkid test/CN=Future signer" v3_signer 20300101000000Z 20360101000000Z
signer encipher-signer ec ec_paramgen_curve:P-256 \
  "/C=VN/O=pkid test/CN=Encipherment only" v3_encipher 20260101000000Z 20360101000000Z
cat issuing.crt > chain.pem

# --- the documents ------------------------------------------------------------------------------
printf 'Đơn đề nghị cấp chứng thư số cho cán bộ Sở Y tế Đà Nẵng.\nKính gửi: Trung tâm Chứng thực.\n' > doc.txt
printf 'Đơn đề nghị thu hồi chứng thư số.\n' > other.txt

# --- detached CMS signatures over doc.txt ------------------------------------------------------
sign() { openssl cms -sign -binary -outform DER -in doc.txt "$@"; }
sign -signer rsa-signer.crt -inkey rsa-signer.key -certfile chain.pem -out rsa.p7s
sign -signer rsa-signer.crt -inkey rsa-signer.key -nosmimecap -out rsa-nosmimecap.p7s
sign -signer rsa-signer.crt -inkey rsa-signer.key -certfile chain.pem \
  -keyopt rsa_padding_mode:pss -keyopt rsa_pss_saltlen:digest -out rsa-pss.p7s
sign -signer rsa-signer.crt -inkey rsa-signer.key -certfile chain.pem -noattr -out rsa-noattr.p7s
sign -signer p256-signer.crt -inkey p256-signer.key -certfile chain.pem -out p256.p7s
sign -signer p256-signer.crt -inkey p256-signer.key -nosmimecap -out p256-nosmimecap.p7s
sign -signer p256-signer.crt -inkey p256-signer.key -md sha384 -out p256-sha384.p7s
sign -signer p256-signer.crt -inkey p256-signer.key -keyid -out p256-keyid.p7s
sign -signer p256-signer.crt -inkey p256-signer.key -md sha1 -out p256-sha1.p7s
sign -signer p256-signer.crt -inkey p256-signer.key -nocerts -out p256-nocerts.p7s
sign -signer p256-signer.crt -inkey p256-signer.key -nodetach -out p256-attached.p7s
sign -signer p256-signer.crt -inkey p256-signer.key -signer rsa-signer.crt -inkey rsa-signer.key \
  -out two-signers.p7s
sign -signer expired-signer.crt -inkey expired-signer.key -out expired.p7s
sign -signer future-signer.crt -inkey future-signer.key -out future.p7s
sign -signer encipher-signer.crt -inkey encipher-signer.key -out encipher.p7s
# A signature over other.txt, to be checked against doc.txt: digest mismatch.
openssl cms -sign -binary -outform DER -in other.txt -signer p256-signer.crt \
  -inkey p256-signer.key -out other.p7s

# --- PDFs ---------------------------------------------------------------------------------------
python3 make-pdf.py > unsigned.pdf
"$PYHANKO" sign addsig --field Sig1 pemder --key rsa-signer.key --cert rsa-signer.crt \
  --chain issuing.crt --no-pass unsigned.pdf signed-rsa.pdf
"$PYHANKO" sign addsig --field Sig1 pemder --key p256-signer.key --cert p256-signer.crt \
  --chain issuing.crt --no-pass unsigned.pdf signed-p256.pdf
# Signed twice: the second signature (P-256) is an incremental update over the first (RSA).
"$PYHANKO" sign addsig --field Sig2 pemder --key p256-signer.key --cert p256-signer.crt \
  --chain issuing.crt --no-pass signed-rsa.pdf signed-twice.pdf
# PAdES (ETSI.CAdES.detached) with RSASSA-PSS.
"$PYHANKO" sign addsig --use-pades --prefer-pss --field Sig1 pemder --key rsa-signer.key \
  --cert rsa-signer.crt --chain issuing.crt --no-pass unsigned.pdf signed-pades-pss.pdf
# Bytes appended after signing: an incremental update the signature does not cover.
{ cat signed-p256.pdf; printf '1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n%%%%EOF\n'; } \
  > appended.pdf
# One byte of the page's text changed inside the signed range ("Hello" -> "Jello").
python3 - <<'PY'
data = open("signed-p256.pdf", "rb").read()
i = data.index(b"(Hello")
open("edited.pdf", "wb").write(data[: i + 1] + b"J" + data[i + 2 :])
PY
# --- chain faults, with the keys above (`openssl x509 -req`: these need no CA database) --------
# A signer "issued" by rsa-signer, which is not a CA: issuer-not-ca at depth 1.
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout notca-leaf.key \
  -subj "/C=VN/O=pkid test/CN=Issued by a non-CA" -out notca-leaf.csr
openssl x509 -req -in notca-leaf.csr -CA rsa-signer.crt -CAkey rsa-signer.key -set_serial 4096 \
  -days 3650 -extfile <(printf 'keyUsage=critical,digitalSignature\n') -out notca-leaf.crt
cat rsa-signer.crt issuing.crt > notca-chain.pem
openssl cms -sign -binary -outform DER -in doc.txt -signer notca-leaf.crt -inkey notca-leaf.key \
  -certfile notca-chain.pem -out notca.p7s
# A signer with a critical extension pkid does not process: critical-extension.
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout critical-signer.key \
  -subj "/C=VN/O=pkid test/CN=Critical extension" -out critical-signer.csr
openssl x509 -req -in critical-signer.csr -CA issuing.crt -CAkey issuing.key -set_serial 4097 \
  -days 3650 -extfile <(printf 'keyUsage=critical,digitalSignature\n1.3.6.1.4.1.99999.7=critical,ASN1:NULL\n') \
  -out critical-signer.crt
openssl cms -sign -binary -outform DER -in doc.txt -signer critical-signer.crt \
  -inkey critical-signer.key -out critical.p7s
rm notca-leaf.csr critical-signer.csr
rm -rf ca

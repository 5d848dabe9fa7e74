"""Signs a PDF with pyHanko through pkid's CSC API v2 (daemon/tests/csc.rs runs it).

pyHanko builds the PDF signature (CMS SignedData, PAdES baseline, signed attributes, a
signature timestamp from pkid's TSA); the one operation that needs the subscriber's key, the
signature over the signed attributes' SHA-256, is the remote call: credentials/authorize with
the one-time password and that hash (SCAL 2: the SAD is bound to it), then
signatures/signHash. pyHanko's own CSC signer speaks CSC v1 only, hence this small Signer.

Secrets come from files: the access token and the OTP. Usage:

    sign_pdf_csc.py --api https://127.0.0.1:8443/csc/v2 --ca root.crt --token-file t \
        --credential ID --otp-file o --tsa http://127.0.0.1:8080/tsa --out signed.pdf

--in names the PDF to sign; without it a blank one-page PDF is made here (pyHanko's writer).
The signed PDF is written to --out.
"""

import argparse
import asyncio
import base64
import hashlib
import json
import ssl
import sys
import urllib.error
import urllib.request

from asn1crypto import algos, x509
from pyhanko.pdf_utils import generic, writer
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.sign import fields, signers, timestamps
from pyhanko_certvalidator.registry import SimpleCertificateStore

SHA256 = "2.16.840.1.101.3.4.2.1"
ECDSA_SHA256 = "1.2.840.10045.4.3.2"


class Api:
    def __init__(self, base, ca, token):
        self.base = base.rstrip("/")
        self.ctx = ssl.create_default_context(cafile=ca)
        self.token = token

    def call(self, method, body):
        req = urllib.request.Request(
            f"{self.base}/{method}",
            data=json.dumps(body).encode(),
            headers={
                "Content-Type": "application/json",
                "Authorization": f"Bearer {self.token}",
            },
        )
        try:
            with urllib.request.urlopen(req, context=self.ctx, timeout=30) as r:
                return json.load(r)
        except urllib.error.HTTPError as e:
            sys.exit(f"{method}: HTTP {e.code}: {e.read().decode(errors='replace')}")


class PkidCscSigner(signers.Signer):
    """A pyHanko Signer whose raw signature is made by pkid over CSC v2."""

    def __init__(self, api, credential, otp):
        info = api.call(
            "credentials/info",
            {"credentialID": credential, "certificates": "chain", "certInfo": True},
        )
        chain = [
            x509.Certificate.load(base64.b64decode(c))
            for c in info["cert"]["certificates"]
        ]
        if ECDSA_SHA256 not in info["key"]["algo"]:
            sys.exit(f"the credential does not offer ecdsa-with-SHA256: {info['key']}")
        super().__init__(
            signing_cert=chain[0],
            cert_registry=SimpleCertificateStore.from_certs(chain[1:]),
            signature_mechanism=algos.SignedDigestAlgorithm(
                {"algorithm": "sha256_ecdsa"}
            ),
        )
        self.api = api
        self.credential = credential
        self.otp = otp
        self.signed = 0

    async def async_sign_raw(self, data, digest_algorithm, dry_run=False):
        if dry_run:
            return bytes(72)  # the longest DER ECDSA P-256 signature
        if digest_algorithm != "sha256":
            sys.exit(f"asked for {digest_algorithm}; this credential signs SHA-256")
        digest = base64.b64encode(hashlib.sha256(data).digest()).decode()
        sad = self.api.call(
            "credentials/authorize",
            {
                "credentialID": self.credential,
                "numSignatures": 1,
                "hashes": [digest],
                "hashAlgorithmOID": SHA256,
                "OTP": self.otp,
            },
        )["SAD"]
        out = self.api.call(
            "signatures/signHash",
            {
                "credentialID": self.credential,
                "SAD": sad,
                "hashes": [digest],
                "hashAlgorithmOID": SHA256,
                "signAlgo": ECDSA_SHA256,
            },
        )
        self.signed += 1
        return base64.b64decode(out["signatures"][0])


def one_page_pdf():
    """A blank A4 page, as pyHanko's writer makes it; its bytes."""
    import io

    w = writer.PdfFileWriter()
    page = writer.PageObject(
        contents=w.add_object(generic.StreamObject(stream_data=b"")),
        media_box=generic.ArrayObject(map(generic.NumberObject, (0, 0, 595, 842))),
    )
    w.insert_page(page)
    buf = io.BytesIO()
    w.write(buf)
    return buf.getvalue()


async def main():
    p = argparse.ArgumentParser()
    for a in ("--api", "--ca", "--token-file", "--credential", "--otp-file", "--tsa", "--out"):
        p.add_argument(a, required=True)
    p.add_argument("--in", dest="source")
    p.add_argument("--reason", default="Phê duyệt văn bản")
    p.add_argument("--location", default="Hà Nội")
    args = p.parse_args()
    with open(args.token_file) as f:
        token = f.read().strip()
    with open(args.otp_file) as f:
        otp = f.read().strip()
    import io

    signer = PkidCscSigner(Api(args.api, args.ca, token), args.credential, otp)
    meta = signers.PdfSignatureMetadata(
        field_name="ChuKy1",
        reason=args.reason,
        location=args.location,
        md_algorithm="sha256",
        subfilter=fields.SigSeedSubFilter.PADES,
    )
    if args.source:
        with open(args.source, "rb") as f:
            source = f.read()
    else:
        source = one_page_pdf()
    pdf = IncrementalPdfFileWriter(io.BytesIO(source))
    with open(args.out, "wb") as out:
        await signers.async_sign_pdf(
            pdf,
            meta,
            signer=signer,
            timestamper=timestamps.HTTPTimeStamper(args.tsa),
            output=out,
        )
    if signer.signed != 1:
        sys.exit(f"{signer.signed} remote signatures; expected exactly one")
    print(f"signed {args.out} with credential {args.credential}")


asyncio.run(main())

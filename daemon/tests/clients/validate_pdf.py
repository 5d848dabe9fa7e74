"""Validates the signatures of a PDF with pyHanko's validator against pkid's root, with
revocation required (daemon/tests/csc.rs runs it).

Revocation information is pkid's CRLs, fetched from the URLs in the certificates'
cRLDistributionPoints — with their scheme and authority replaced by --http-base, since the
test daemon listens on a port other than the public URL the certificates name. Nothing else is
fetched. Prints pyHanko's report and, last, one line per signature:

    signature ChuKy1: intact=True trusted=True timestamp_trusted=True bottom_line=True

Usage: validate_pdf.py --trust root.crt --other issuing.crt --http-base http://127.0.0.1:PORT f.pdf
"""

import argparse
import asyncio
import urllib.parse
import urllib.request

from asn1crypto import pem, x509
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import async_validate_pdf_signature
from pyhanko_certvalidator import ValidationContext


def load_cert(path):
    with open(path, "rb") as f:
        data = f.read()
    if pem.detect(data):
        _, _, data = pem.unarmor(data)
    return x509.Certificate.load(data)


def crl_urls(cert):
    for dp in cert.crl_distribution_points or []:
        for name in dp["distribution_point"].chosen:
            if name.name == "uniform_resource_identifier":
                yield name.native


def fetch(url, base):
    u = urllib.parse.urlsplit(url)
    b = urllib.parse.urlsplit(base)
    local = urllib.parse.urlunsplit((b.scheme, b.netloc, u.path, u.query, ""))
    with urllib.request.urlopen(local, timeout=30) as r:
        return r.read()


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--trust", required=True)
    p.add_argument("--other", action="append", default=[])
    p.add_argument("--http-base", required=True)
    p.add_argument("pdf")
    args = p.parse_args()
    root = load_cert(args.trust)
    others = [load_cert(o) for o in args.other]
    with open(args.pdf, "rb") as f:
        reader = PdfFileReader(f)
        sigs = reader.embedded_signatures
        if not sigs:
            raise SystemExit("no signatures")
        for sig in sigs:
            certs = list(sig.signed_data["certificates"] or [])
            chain = [c.chosen for c in certs] + others
            urls = {u for c in chain for u in crl_urls(c)}
            crls = [fetch(u, args.http_base) for u in sorted(urls)]

            def context():
                return ValidationContext(
                    trust_roots=[root],
                    other_certs=others,
                    crls=crls,
                    allow_fetching=False,
                    revocation_mode="require",
                )

            status = await async_validate_pdf_signature(
                sig,
                signer_validation_context=context(),
                ts_validation_context=context(),
            )
            print(status.pretty_print_details())
            ts = status.timestamp_validity
            print(
                f"signature {sig.field_name}: intact={status.intact} trusted={status.trusted} "
                f"timestamp_trusted={ts is not None and ts.trusted} "
                f"bottom_line={status.bottom_line}"
            )


asyncio.run(main())

"""Small documents for tests: a minimal valid one-page PDF, written by hand (no PDF library needed)."""


def minimal_pdf(text: str) -> bytes:
    """A one-page PDF showing `text` in Helvetica (text must be plain ASCII without parentheses)."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode("latin-1")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def link_flood_page(size: int, marker: str = "") -> bytes:
    """A page of `size` bytes that is nothing but links: the extractor's worst case (before the fix, 16 MB
    of it took 61 s of CPU and 1.7 GB). `marker` is appended inside, for finding the page's text later."""
    links, total, n = [], 0, 0
    while total < size:
        link = f"<a href='/x/{n}'>link {n}</a> "
        links.append(link)
        total += len(link)
        n += 1
    return f"<html><body><div>{''.join(links)}{marker}</div></body></html>".encode()

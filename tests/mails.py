"""Fictitious caseworker mails for the end-to-end tests, in the forms
Outlook and other clients really send (plain, Word HTML in base64,
quoted-printable Latin-1, multipart/alternative, attachments, reports)."""

from __future__ import annotations

import base64
import quopri

DOMAIN = "kommune.example"


def _headers(sender: str, subject: str, date: str, mid: str, extra: str = "") -> str:
    return (
        f"From: {sender}\r\nTo: sparring@{DOMAIN}\r\nSubject: {subject}\r\nDate: {date}\r\n"
        f"Message-ID: <{mid}@mail.{DOMAIN}>\r\nMIME-Version: 1.0\r\n{extra}"
    )


def plain(sender, subject, date, mid, body, extra="") -> bytes:
    head = _headers(sender, subject, date, mid, extra)
    head += 'Content-Type: text/plain; charset="utf-8"\r\nContent-Transfer-Encoding: 8bit\r\n\r\n'
    return head.encode() + body.replace("\n", "\r\n").encode("utf-8")


def latin1_qp(sender, subject, date, mid, body) -> bytes:
    head = _headers(sender, subject, date, mid)
    head += 'Content-Type: text/plain; charset="iso-8859-1"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n'
    return head.encode() + quopri.encodestring(body.encode("iso-8859-1"))


def outlook_html(sender, subject, date, mid, paragraphs: list[str]) -> bytes:
    html = (
        '<html xmlns:o="urn:schemas-microsoft-com:office:office"><head><meta http-equiv="Content-Type" '
        'content="text/html; charset=utf-8"><style><!-- p.MsoNormal {margin:0cm;} --></style></head>'
        '<body lang="DA"><div class="WordSection1">'
        + "".join(f'<p class="MsoNormal">{p}<o:p></o:p></p>' for p in paragraphs)
        + "</div></body></html>"
    )
    head = _headers(sender, subject, date, mid, "X-MS-Has-Attach: \r\n")
    head += 'Content-Type: text/html; charset="utf-8"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
    return head.encode() + base64.encodebytes(html.encode("utf-8"))


def with_attachment(sender, subject, date, mid, body) -> bytes:
    boundary = "==b0undary=="
    head = _headers(sender, subject, date, mid)
    head += f'Content-Type: multipart/mixed; boundary="{boundary}"\r\n\r\n'
    parts = (
        f"--{boundary}\r\nContent-Type: text/plain; charset=\"utf-8\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + base64.encodebytes(body.encode()).decode()
        + f"\r\n--{boundary}\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n"
        'Content-Disposition: attachment; filename="erklaering.pdf"\r\n\r\n'
        + base64.encodebytes(b"%PDF-1.4 fictitious").decode()
        + f"\r\n--{boundary}--\r\n"
    )
    return head.encode() + parts.encode()


def bounce(date, mid) -> bytes:
    boundary = "==report=="
    head = _headers(f"Mail Delivery System <MAILER-DAEMON@mail.{DOMAIN}>", "Undelivered Mail Returned to Sender", date, mid)
    head += f'Content-Type: multipart/report; report-type="delivery-status"; boundary="{boundary}"\r\n\r\n'
    body = (
        f"--{boundary}\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
        f"--{boundary}\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mail.{DOMAIN}\r\n\r\n"
        f"Final-Recipient: rfc822; nobody@{DOMAIN}\r\nAction: failed\r\nStatus: 5.1.1\r\n--{boundary}--\r\n"
    )
    return head.encode() + body.encode()


OLE = f"Ole Eksempelsen <ole.eksempelsen@{DOMAIN}>"


def week_one() -> dict[str, bytes]:
    """A week of mail to the forum, 4-7 January 2027, by name."""
    karen = f"Karen Provesen <karen.provesen@{DOMAIN}>"
    return {
        "01-young": plain(karen, "Sparring", "Mon, 04 Jan 2027 09:12:00 +0100", "e01",
                          "CPR: 150303-4321\nHelbred: Angst, i behandling hos egen læge.\n"
                          "Sociale udfordringer: Sofasurfer, gæld.\n\n\nVenlig hilsen\nKaren\nUngeindsatsen\n"),
        "02-adult-html": outlook_html(OLE, "Til sparringsforum", "Mon, 04 Jan 2027 10:03:00 +0100", "e02",
                                      ["CPR-nr.: 020280-1234", "Helbredsforhold: Rygskade, kroniske smerter.",
                                       "Sociale forhold: Skilsmisse, økonomiske problemer&nbsp;.", "&nbsp;",
                                       "Venlig hilsen", "<b>Ole</b><br>Jobcenter"]),
        "03-latin1": latin1_qp(karen, "Sparring - ny sag", "Tue, 05 Jan 2027 08:00:00 +0100", "e03",
                               "Cpr nummer 110698-2345\nHelbred: Depression, ophørt med medicin.\n"
                               "Sociale udfordringer: Ensomhed.\n"),
        "04-reply": plain(OLE, "SV: Sparringsforum", "Mon, 04 Jan 2027 11:30:00 +0100", "e04",
                          "Denne borger, tak:\n\nCPR: 171072-3456\nHelbred: Alkohol, ambulant behandling.\n"
                          "Sociale udfordringer: Intet netværk.\n\nVH Ole\n\nFra: Sparringsforum <sparring@kommune.example>\n"
                          "Sendt: 3. januar 2027 12:00\nTil: Ole\nEmne: Sparringsforum\n\nCPR: 010101-1111\n"),
        "05-subject-cpr": plain(karen, "Sparring 0507015555", "Tue, 05 Jan 2027 09:00:00 +0100", "e05",
                                "Helbred: ADHD.\nSociale udfordringer: Konflikter i familien.\n"),
        "06-bad-date": plain(karen, "Sparring", "Tue, 05 Jan 2027 09:05:00 +0100", "e06",
                             "CPR: 300290-1111\nHelbred: Stress.\nSociale udfordringer: Ingen bolig.\n"),
        "07-too-long": plain(OLE, "Sparring", "Tue, 05 Jan 2027 09:10:00 +0100", "e07",
                             "CPR: 020280-1234\nHelbred: 1\n2\n3\n4\nSociale udfordringer: 5\n6\n7\n"),
        "08-acute": plain(karen, "AKUT: sparring", "Wed, 06 Jan 2027 13:45:00 +0100", "e08",
                          "CPR: 150303-4321\nHelbred: Selvmordstanker.\nSociale udfordringer: Trusler.\n"),
        "09-outsider": plain("Someone <someone@freemail.example>", "Sparring", "Tue, 05 Jan 2027 09:20:00 +0100",
                             "e09", "CPR: 150303-4321\nHelbred: x\nSociale udfordringer: y\n"),
        "10-duplicate": plain(karen, "Sparring", "Mon, 04 Jan 2027 09:12:00 +0100", "e01",
                              "CPR: 150303-4321\nHelbred: Angst.\nSociale udfordringer: Gæld.\n"),
        "12-ooo": plain(karen, "Automatisk svar: Sparringsforum", "Tue, 05 Jan 2027 12:00:00 +0100", "e12",
                        "Jeg er på ferie.\n", "Auto-Submitted: auto-replied\r\nX-Auto-Response-Suppress: All\r\n"),
        "13-withdraw": plain(karen, "=?utf-8?q?Tr=C3=A6k?= tilbage", "Tue, 05 Jan 2027 15:00:00 +0100", "e13",
                             "Træk venligst borgeren tilbage.\nCPR: 150303-4321\n"),
        "14-under-15": plain(karen, "Sparring", "Tue, 05 Jan 2027 15:05:00 +0100", "e14",
                             "CPR: 010115-4000\nHelbred: Skolevægring.\nSociale udfordringer: Familie.\n"),
        "15-attachment": with_attachment(OLE, "Sparring med bilag", "Tue, 05 Jan 2027 15:10:00 +0100", "e15",
                                         "CPR: 171072-3456\nHelbred: Se lægeerklæring.\nSociale udfordringer: Hjemløs.\n"),
        "16-bounce": bounce("Tue, 05 Jan 2027 16:00:00 +0100", "e16"),
        "17-two-cprs": plain(OLE, "Sparring x2", "Tue, 05 Jan 2027 16:10:00 +0100", "e17",
                             "CPR: 171072-3456\nHelbred: A.\nSociale udfordringer: B.\n\n"
                             "CPR: 020280-1234\nHelbred: C.\nSociale udfordringer: D.\n"),
        "18-replaces-03": plain(karen, "Sparring", "Thu, 07 Jan 2027 11:59:00 +0100", "e18",
                                "CPR: 110698-2345\nHelbred: Spiseforstyrrelse.\nSociale udfordringer: Anbragt.\n"),
    }


EXPECTED = {
    # name: (outcome, series, session date)
    "01-young": ("accepted", "unge", "2027-01-07"),
    "02-adult-html": ("accepted", "voksne", "2027-01-13"),
    "04-reply": ("accepted", "voksne", "2027-01-13"),
    "03-latin1": ("moved", "unge", "2027-01-14"),
    "05-subject-cpr": ("moved", "unge", "2027-01-14"),
    "06-bad-date": ("rejected", None, None),
    "07-too-long": ("rejected", None, None),
    "09-outsider": ("quarantined", None, None),
    "10-duplicate": ("duplicate", None, None),
    "12-ooo": ("ignored", None, None),
    "13-withdraw": ("withdrawn", "unge", "2027-01-07"),
    "14-under-15": ("rejected", None, None),
    "15-attachment": ("accepted", "voksne", "2027-01-13"),
    "16-bounce": ("ignored", None, None),
    "17-two-cprs": ("rejected", None, None),
    "08-acute": ("accepted", "unge", "2027-01-07"),
    "18-replaces-03": ("accepted", "unge", "2027-01-14"),
}

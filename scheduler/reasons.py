"""One sentence per refusal: what is wrong and how to fix it (Danish, English).

A reason goes into receipts, ``ingest --json`` and the database, so it never
contains a CPR number, a file name or any case text: only whole-number
parameters (counts, limits) are filled in; anything else passed is dropped.
"""

from __future__ import annotations

_REASONS: dict[str, dict[str, str]] = {
    "no_cpr": {
        "da": "Vi fandt intet CPR-nummer i mailen; skriv borgerens CPR-nummer som DDMMÅÅ-XXXX, "
              "fx på en linje der begynder med »CPR:«, og send mailen igen.",
        "en": "No CPR number was found in the mail; write the citizen's CPR number as DDMMYY-XXXX, "
              "for example on a line starting with \"CPR:\", and send the mail again.",
    },
    "several_cprs": {
        "da": "Mailen indeholder {count} forskellige CPR-numre, men hver mail må kun handle om én borger; "
              "send én mail for hver borger.",
        "en": "The mail contains {count} different CPR numbers, but each mail may concern only one citizen; "
              "send one mail per citizen.",
    },
    "cpr_format": {
        "da": "CPR-nummeret har ikke 10 cifre; skriv det som DDMMÅÅ-XXXX og send mailen igen.",
        "en": "The CPR number does not have 10 digits; write it as DDMMYY-XXXX and send the mail again.",
    },
    "cpr_date": {
        "da": "CPR-nummeret svarer ikke til en gyldig fødselsdato; ret nummeret og send mailen igen.",
        "en": "The CPR number does not give a valid date of birth; correct it and send the mail again.",
    },
    "cpr_future": {
        "da": "CPR-nummeret giver en fødselsdato i fremtiden; ret nummeret og send mailen igen.",
        "en": "The CPR number gives a date of birth in the future; correct it and send the mail again.",
    },
    "no_text": {
        "da": "Mailen beskriver hverken helbredsforhold eller sociale udfordringer; skriv dem på linjer, "
              "der begynder med »Helbred:« og »Sociale udfordringer:«, og send mailen igen.",
        "en": "The mail describes neither health nor social challenges; write them on lines starting with "
              "\"Helbred:\" and \"Sociale udfordringer:\" and send the mail again.",
    },
    "too_many_lines": {
        "da": "Helbred og sociale udfordringer fylder tilsammen {count} linjer, men højst {max} er tilladt; "
              "forkort beskrivelsen og send mailen igen.",
        "en": "Health and social challenges take up {count} lines together, but at most {max} are allowed; "
              "shorten the description and send the mail again.",
    },
    "unreadable": {
        "da": "Mailen kunne ikke læses, fordi dens opbygning (MIME) er ugyldig; "
              "send punktet igen som almindelig tekst.",
        "en": "The mail could not be read because its structure (MIME) is invalid; "
              "send the item again as plain text.",
    },
    "header_too_long": {
        "da": "Mailens emnelinje er længere end {max} tegn og er ikke læst; skriv et kort emne og send mailen igen.",
        "en": "The mail's subject line is longer than {max} characters and was not read; write a short subject "
              "and send the mail again.",
    },
    "too_large": {
        "da": "Mailen er større end grænsen på {limit}; send punktet igen som almindelig tekst uden bilag.",
        "en": "The mail is larger than the limit of {limit}; send the item again as plain text "
              "without attachments.",
    },
    "no_slot": {
        "da": "Der er ingen tid i perioden, hvor alle påkrævede deltagere er ledige; vælg en længere periode "
              "eller færre påkrævede deltagere.",
        "en": "There is no time in the period when every required participant is free; choose a longer period "
              "or fewer required participants.",
    },
    "case_reference": {
        "da": "Mailen nævner ingen sag; skriv sagens reference (fx [K-7F3Q]) i emnet og send mailen igen.",
        "en": "The mail names no case; write the case reference (for example [K-7F3Q]) in the subject and send "
              "the mail again.",
    },
    "case_keyword": {
        "da": "Vi kunne ikke se, hvad mailen beder om; skriv »Enighed« eller »Opfølgning« i emnet eller på "
              "første linje og send mailen igen.",
        "en": "We could not tell what the mail asks for; write \"Enighed\" or \"Opfølgning\" in the subject or on "
              "the first line and send the mail again.",
    },
    "case_unknown": {
        "da": "Sagen i emnet findes ikke eller er lukket; tjek referencen og send mailen igen.",
        "en": "The case in the subject does not exist or is closed; check the reference and send the mail again.",
    },
    "case_not_party": {
        "da": "Kun sagens sagsbehandlere kan melde enighed og opfølgning i sagen; mailen er ikke behandlet.",
        "en": "Only the case's caseworkers can report agreement and follow-ups; the mail was not processed.",
    },
    "case_agreed": {
        "da": "Der er allerede meldt enighed i sagen, og fællessamtalen er booket eller ved at blive det.",
        "en": "Agreement has already been reported in the case; the joint conversation is booked or being booked.",
    },
    "case_not_agreed": {
        "da": "Opfølgning bookes først, når sagsbehandlerne har meldt enighed om planen; svar først »Enighed«.",
        "en": "Follow-ups are booked only once the caseworkers have reported agreement on the plan; "
              "reply \"Enighed\" first.",
    },
    "followup_line": {
        "da": "Linje {line} kan ikke læses som en dato; skriv én dato på hver linje som 2027-03-01 og send mailen igen.",
        "en": "Line {line} cannot be read as a date; write one date a line as 2027-03-01 and send the mail again.",
    },
    "followup_none": {
        "da": "Mailen indeholder ingen dato for opfølgning; skriv én dato på hver linje som 2027-03-01.",
        "en": "The mail holds no follow-up date; write one date a line as 2027-03-01.",
    },
    "followup_many": {
        "da": "Der kan højst stå {count} opfølgningsdatoer i én mail; send resten i en ny mail.",
        "en": "At most {count} follow-up dates a mail; send the rest in another mail.",
    },
    "followup_past": {
        "da": "En opfølgningsdato ligger før i dag; ret datoen og send mailen igen.",
        "en": "A follow-up date lies in the past; correct the date and send the mail again.",
    },
    "request_period": {
        "da": "Mødeanmodningen mangler en periode; skriv fx »Periode: 2027-02-01 - 2027-02-14« og send mailen igen.",
        "en": "The meeting request has no period; write for example \"Periode: 2027-02-01 - 2027-02-14\" and send "
              "the mail again.",
    },
    "request_period_range": {
        "da": "Perioden skal ligge fra i dag og højst {max} dage frem; ret »Periode:« og send mailen igen.",
        "en": "The period must lie between today and at most {max} days ahead; correct \"Periode:\" and send "
              "the mail again.",
    },
    "too_many_externals": {
        "da": "Mødeanmodningen nævner {count} eksterne deltagere, men højst {max} kan inviteres; "
              "send en anmodning med færre.",
        "en": "The meeting request names {count} external participants, but at most {max} can be invited; "
              "send a request with fewer.",
    },
    "rate_limited": {
        "da": "Der er kommet mere end {max} mails fra dig på en time; de næste behandles ikke, før der "
              "er gået en time uden så mange.",
        "en": "More than {max} mails from you arrived within an hour; the next ones are not processed "
              "until an hour has passed without that many.",
    },
    "request_duration": {
        "da": "Varigheden skal være et antal minutter mellem 10 og 480; ret »Varighed:« og send mailen igen.",
        "en": "The duration must be a number of minutes from 10 to 480; correct \"Varighed:\" and send the "
              "mail again.",
    },
    "request_title": {
        "da": "Titlen indeholder et CPR-nummer eller et kontroltegn, men den står i alle deltageres kalender; "
              "skriv »Titel:« uden og send mailen igen.",
        "en": "The title holds a CPR number or a control character, but it is shown in every attendee's "
              "calendar; write \"Titel:\" without it and send the mail again.",
    },
    "moved_late": {
        "da": "Mailen kom efter fristen for det første møde, borgeren kunne komme på, og punktet er derfor sat "
              "på det næste møde.",
        "en": "The mail arrived after the deadline of the first session the citizen could attend, so the item "
              "is on the next session.",
    },
    "moved_full": {
        "da": "Det første møde, borgeren kunne komme på, er fuldt, og punktet er derfor sat på det næste møde "
              "med en ledig tid.",
        "en": "The first session the citizen could attend is full, so the item is on the next session with a "
              "free slot.",
    },
    "under_15": {
        "da": "Borgeren er under 15 år og kan derfor ikke komme på sparringsforum; kontakt koordinatoren, "
              "hvis sagen alligevel skal drøftes.",
        "en": "The citizen is under 15 and therefore cannot be put on the sparring forum; contact the "
              "coordinator if the case must be discussed anyway.",
    },
    "no_session": {
        "da": "Der er ikke planlagt noget kommende sparringsforum for borgerens alder; kontakt koordinatoren.",
        "en": "No upcoming sparring forum is planned for the citizen's age; contact the coordinator.",
    },
    "not_allowed": {
        "da": "Mailen kommer ikke fra en godkendt afsender og er ikke behandlet; kontakt koordinatoren, "
              "hvis du skal kunne sende punkter til sparringsforum.",
        "en": "The mail does not come from an approved sender and has not been processed; contact the "
              "coordinator if you need to send items to the sparring forum.",
    },
    "nothing_to_withdraw": {
        "da": "Der er intet ventende punkt fra dig om denne borger at trække tilbage; kontrollér "
              "CPR-nummeret og send mailen igen.",
        "en": "There is no pending item from you about this citizen to withdraw; check the CPR number "
              "and send the mail again.",
    },
    "attachments_ignored": {
        "da": "Vedhæftede filer ({count}) er ikke taget med; skriv de nødvendige oplysninger direkte i mailen.",
        "en": "Attached files ({count}) were not taken in; write the necessary information in the mail itself.",
    },
    "not_an_item": {
        "da": "Mailen er genkendt som en automatisk besked og er ikke behandlet som et punkt.",
        "en": "The mail was recognised as an automatic message and was not processed as an item.",
    },
    "failed": {
        "da": "Mailen kunne ikke behandles på grund af en fejl i sparring; den er lagt til side, og driften er "
              "orienteret.",
        "en": "The mail could not be processed because of an error in sparring; it has been put aside and "
              "operations have been told.",
    },
    "duplicate": {
        "da": "Mailen er allerede behandlet; der er ikke sket mere.",
        "en": "The mail has already been processed; nothing more was done.",
    },
}
# Sender authenticity and S/MIME (issue 13): quarantined, named for the administrator.
_REASONS.update({
    "auth_failed": {
        "da": "Modtagerserveren kunne ikke bekræfte, at mailen kommer fra afsenderens domæne (DMARC/DKIM/SPF); "
              "den er sat i karantæne.",
        "en": "The receiving server could not confirm that the mail comes from the sender's domain "
              "(DMARC/DKIM/SPF); it has been quarantined.",
    },
    "smime_undecryptable": {
        "da": "Mailen er krypteret, men ikke til sparringsforummets certifikat; send den krypteret til "
              "forummets certifikat eller over den sikre forbindelse.",
        "en": "The mail is encrypted, but not to the forum's certificate; encrypt it to the forum's "
              "certificate or send it over the secure connection.",
    },
    "smime_bad_signature": {
        "da": "Mailens digitale signatur holder ikke (ændret, forfalsket eller ikke udstedt af en godkendt CA); "
              "den er sat i karantæne.",
        "en": "The mail's digital signature does not hold (changed, forged or not issued by a trusted CA); "
              "it has been quarantined.",
    },
    "smime_signer_mismatch": {
        "da": "Mailen er signeret med et certifikat til en anden adresse end afsenderens; den er sat i karantæne.",
        "en": "The mail is signed with a certificate for another address than the sender's; "
              "it has been quarantined.",
    },
})
_FALLBACK = {
    "da": "Punktet kunne ikke behandles; kontakt koordinatoren.",
    "en": "The item could not be processed; contact the coordinator.",
}
_REASONS.update({  # decisions by reply to the agenda (issue 15)
    "not_coordinator": {
        "da": "Kun seriens koordinatorer kan træffe beslutninger om punkterne på dagsordenen; "
              "mailen er lagt i karantæne.",
        "en": "Only the coordinators of the series can decide on the agenda's items; the mail was quarantined.",
    },
    "decision_no_session": {
        "da": "Emnefeltets reference peger ikke på et møde i serien; svar på dagsordenens mail uden at ændre "
              "emnefeltet, eller brug »sparring decide«.",
        "en": "The subject's reference names no session of the series; reply to the agenda's mail without "
              "changing the subject, or use \"sparring decide\".",
    },
    "decision_none": {
        "da": "Svaret indeholder ingen beslutning; skriv én linje for hvert punkt, fx »3: opstart«, »4: intet grundlag«, "
              "»5: udsat« eller »6: henvist Jobcenter«, og send svaret igen.",
        "en": "The reply holds no decision; write one line per item, for example \"3: opstart\", "
              "\"4: intet grundlag\", \"5: udsat\" or \"6: henvist Jobcenter\", and send it again.",
    },
    "decision_unknown": {
        "da": "Beslutningen kunne ikke læses; skriv punktets nummer, kolon og »opstart«, »intet grundlag«, "
              "»udsat« eller »henvist <til hvem>«.",
        "en": "The decision could not be read; write the item's number, a colon and \"opstart\", "
              "\"intet grundlag\", \"udsat\" or \"henvist <to whom>\".",
    },
    "decision_trailing": {
        "da": "Efter beslutningen kan kun stå en bemærkning efter en tankestreg, fx »5: udsat - mangler "
              "lægeerklæring«.",
        "en": "After the decision only a note after a dash may follow, for example \"5: udsat - mangler "
              "lægeerklæring\".",
    },
    "receiver_invalid": {
        "da": "Modtageren skal skrives som »modtager: navn@kommune.dk« efter »opstart«.",
        "en": "Write the receiver as \"modtager: name@kommune.dk\" after \"opstart\".",
    },
    "receiver_missing": {
        "da": "En »opstart« kræver en modtagende sagsbehandler: skriv »opstart modtager: navn@kommune.dk« "
              "(serien har ingen fast modtager).",
        "en": "An \"opstart\" needs a receiving caseworker: write \"opstart modtager: name@kommune.dk\" "
              "(the series has no receiving address).",
    },
    "receiver_not_allowed": {
        "da": "Modtagerens adresse er ikke en af kommunens tilladte adresser; skriv en intern adresse.",
        "en": "The receiver's address is not one of the municipality's allowed addresses; give an internal one.",
    },
    "referred_to_missing": {
        "da": "En »henvist« kræver, hvortil: skriv fx »6: henvist Jobcenter Nord«.",
        "en": "A \"henvist\" needs to whom: write for example \"6: henvist Jobcenter Nord\".",
    },
    "slot_invalid": {
        "da": "Punktnumrene begynder ved 1.",
        "en": "Item numbers start at 1.",
    },
    "extra_not_coordinator": {
        "da": "Kun seriens koordinatorer kan svare på en advarsel om kø; mailen er lagt i karantæne.",
        "en": "Only the coordinators of the series can answer a backlog warning; the mail was quarantined.",
    },
    "extra_unreadable": {
        "da": "Svaret indeholder hverken »Ekstra møde: ja« eller »Ekstra møde: nej«; skriv én af dem på en linje "
              "for sig og svar igen på advarslens mail.",
        "en": "The reply holds neither \"Ekstra møde: ja\" nor \"Ekstra møde: nej\"; write one of them on a line "
              "of its own and reply to the warning's mail again.",
    },
    "slot_empty": {
        "da": "Punktet findes ikke på dagsordenen; mødet havde {count} punkter.",
        "en": "The item is not on the agenda; the session had {count} items.",
    },
})
CODES = frozenset(_REASONS)


class _Numbers(dict):
    """Template values: whole numbers only; a missing one shows as '?'."""

    def __missing__(self, key: str) -> str:
        return "?"


def reason(code: str, language: str = "da", **params: object) -> str:
    """The sentence for ``code``; unknown codes get a neutral sentence."""
    language = language if language in ("da", "en") else "da"
    template = _REASONS.get(code, _FALLBACK)[language]
    values = _Numbers({k: v for k, v in params.items() if isinstance(v, int) and not isinstance(v, bool)})
    if isinstance(values.get("limit"), int):
        values["limit"] = _size(values["limit"], language)
    return template.format_map(values)


def _size(limit: int, language: str) -> str:
    if limit >= 1_000_000:
        amount, unit = limit / 1_000_000, "MB"
    else:
        amount, unit = limit / 1_000, "kB"
    text = f"{amount:.1f}".removesuffix(".0")
    return (text.replace(".", ",") if language == "da" else text) + f" {unit}"

"""The pages' words in Danish (default) and English, and which one a request gets.

One catalogue: every key has both languages, so a page never mixes them.
"""

from __future__ import annotations

LANGUAGES = ("da", "en")

CATALOGUE: dict[str, tuple[str, str]] = {
    "skip": ("Spring til indholdet", "Skip to content"),
    "site": ("Sparringsforum", "Sparring forum"),
    "nav": ("Hovedmenu", "Main menu"),
    "overview": ("Overblik", "Overview"),
    "statistics": ("Statistik", "Statistics"),
    "other_language": ("English", "Dansk"),
    "other_language_label": ("Read this page in English", "Læs siden på dansk"),
    "times_in": ("Tider i {zone}. Siden viser ingen personoplysninger.",
                 "Times in {zone}. This page shows no personal data."),
    "as_of": ("Opdateret {when}", "As of {when}"),
    # overview
    "coming_sessions": ("Kommende møder", "Coming sessions"),
    "coming_caption": ("Kommende møder i {series}: optagne pladser ud af pladser",
                       "Coming sessions of {series}: slots taken out of capacity"),
    "session": ("Møde", "Session"),
    "deadline": ("Frist", "Deadline"),
    "fill": ("Optaget", "Taken"),
    "acute": ("Akutte", "Acute"),
    "state": ("Status", "State"),
    "open": ("åben", "open"),
    "full": ("fuld", "full"),
    "closed": ("lukket for nye punkter", "closed for new items"),
    "cancelled": ("aflyst", "cancelled"),
    "extra": ("ekstra møde", "extra session"),
    "of": ("af", "of"),
    "next_deadline": ("Næste frist", "Next deadline"),
    "time_left": ("{days} d. {hours} t. {minutes} min. tilbage", "{days} d {hours} h {minutes} min left"),
    "no_deadline": ("Ingen kommende frist", "No coming deadline"),
    "queue": ("Kø", "Queue"),
    "queue_text": ("fulde møder i træk fra det næste: {n}", "full sessions in a row from the next: {n}"),
    "cases": ("Åbne sager", "Open cases"),
    "cases_caption": ("Åbne sager i {series} efter hvad de venter på",
                      "Open cases of {series} by what they wait on"),
    "waiting_on": ("Venter på", "Waiting on"),
    "count": ("Antal", "Count"),
    "stage_decided": ("booking af koordineringsmøde", "the koordineringsmøde to be booked"),
    "stage_coordination_booked": ("koordineringsmødet og enighed", "the koordineringsmøde and agreement"),
    "stage_agreed": ("booking af fællessamtale", "the fællessamtale to be booked"),
    "stage_joint_booked": ("fællessamtalen", "the fællessamtale"),
    "stage_following_up": ("opfølgning", "follow-up"),
    "offered": ("overdragelse, der venter på accept", "hand-overs waiting for acceptance"),
    "health": ("Tjenestens tilstand", "The service's health"),
    "daemon": ("Tjenesten", "The service"),
    "running": ("kører ({holder}, lease til {until})", "running ({holder}, lease until {until})"),
    "running_here": ("kører i denne proces ({holder})", "running in this process ({holder})"),
    "not_running": ("kører ikke", "not running"),
    "last_intake": ("Sidste modtagne post", "Last intake"),
    "never": ("aldrig", "never"),
    "outbox": ("Udbakke", "Outbox"),
    "outbox_text": ("{pending} venter, {failed} fejlet", "{pending} waiting, {failed} failed"),
    "outage": ("Afbrydelse", "Outage"),
    "outage_text": ("{target}-serveren fejler siden {since}", "the {target} server failing since {since}"),
    # statistics
    "period": ("Periode", "Period"),
    "period_hint": ("fx 2027-Q1, 2027-03 eller 2027", "e.g. 2027-Q1, 2027-03 or 2027"),
    "series": ("Forum", "Series"),
    "all_series": ("Alle", "All"),
    "show": ("Vis", "Show"),
    "choose": ("Vælg periode", "Choose the period"),
    "table_caption": ("Statistik for {period}{series}, efter mødets dato og alder på mødedagen",
                      "Statistics for {period}{series}, by the session's date and age on its day"),
    "suppressed_note": ("Tal fra 1 til 4 vises som »<5«, og en median over færre end 5 sager vises ikke, "
                        "så ingen borger kan genkendes. »..« er et tal skjult, for at et »<5« ikke kan regnes "
                        "ud af rækkens total.",
                        "Counts from 1 to 4 are shown as \"<5\", and a median over fewer than 5 items is "
                        "not shown, so that no citizen can be singled out. \"..\" is a number hidden so that "
                        "a \"<5\" cannot be worked out from the row's total."),
    "csv": ("Hent tabellen som CSV", "Download the table as CSV"),
    "charts": ("Diagrammer", "Charts"),
    "chart_brought": ("Sager bragt på et møde efter aldersgruppe", "Items brought to a session by age group"),
    "chart_decisions": ("Afgørelser efter slags", "Decisions by kind"),
    "chart_note": ("tal, tabellen ikke viser, er ikke tegnet", "numbers the table does not show are not drawn"),
    "chart_alt": ("Diagram: {title}. Tallene står i tabellen ovenfor; tal under 5 er ikke tegnet.",
                  "Chart: {title}. The numbers are in the table above; counts under 5 are not drawn."),
    "bad_period": ("Perioden kan ikke læses; skriv den som 2027-Q1, 2027-03 eller 2027.",
                   "The period cannot be read; write it as 2027-Q1, 2027-03 or 2027."),
    "bad_series": ("Forummet findes ikke; vælg et fra listen.", "There is no such series; choose one from the list."),
    "error": ("Fejl", "Error"),
    "forbidden": ("Adgang nægtet.", "Access denied."),
}


def words(language: str) -> dict[str, str]:
    """The catalogue in one language."""
    index = LANGUAGES.index(language)
    return {key: pair[index] for key, pair in CATALOGUE.items()}


def choose(query: str | None, accept: str | None, default: str) -> str:
    """``?lang=`` first, then the Accept-Language header by its weights, then ``default``."""
    if query in LANGUAGES:
        return query
    ranked = []
    for part in (accept or "").split(","):
        tag, _, params = part.strip().partition(";")
        weight = 1.0
        if params.strip().startswith("q="):
            try:
                weight = float(params.strip()[2:])
            except ValueError:
                continue
        ranked.append((weight, tag.strip().lower().split("-")[0]))
    for weight, tag in sorted(ranked, key=lambda pair: -pair[0]):
        if weight > 0 and tag in LANGUAGES:
            return tag
    return default

"""Issue 13.8: the record of processing follows the configuration."""

from __future__ import annotations

from scheduler.cli import main
from scheduler.config import load_config
from scheduler.services.record import record_of_processing
from tests.appkit import CONFIG


def test_the_record_is_danish_and_names_every_series_and_its_recipients(capsys):
    assert main(["--config", str(CONFIG), "record-of-processing"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("FORTEGNELSE OVER BEHANDLINGSAKTIVITETER")
    config = load_config(CONFIG)
    for series in config.series:
        assert series.name in text
        assert ", ".join(series.coordinators) in text
    assert "hver sagsbehandler får tidsplanen og kun sit eget punkt" in text
    assert f"{config.storage.retention_days} dage efter mødet" in text
    assert "Revisionssporet: 1825 dage" in text
    assert "sparring erase --cpr CPR" in text and "sparring audit --cpr CPR" in text


def test_the_record_changes_with_the_configuration():
    config = load_config(CONFIG)
    config = config.model_copy(update={
        "storage": config.storage.model_copy(update={"retention_days": 60,
                                                     "url": "postgresql://db.kommune.example/sparring?sslmode=verify-full"}),
        "agenda": config.agenda.model_copy(update={"caseworker_copy": "timetable", "cpr_display": "full"}),
        "outbox": config.outbox.model_copy(update={"transport": "smtp"}),
    })
    text = record_of_processing(config)
    assert "60 dage efter mødet" in text and "postgresql (db.kommune.example/sparring, TLS: verify-full)" in text
    assert "får kun tidsplanen, uden borgeroplysninger" in text and "CPR fuldt" in text
    assert "Udgående: smtp, sikring: starttls" in text
    graph = config.model_copy(update={"intake": config.intake.model_copy(update={"source": "graph"})})
    assert "Indgående: graph, sikring: https" in record_of_processing(graph)
    assert "https://graph.microsoft.com/v1.0 (sparring@kommune.example)" in record_of_processing(graph)
    assert "Sendt post" not in record_of_processing(graph)  # sent by SMTP: no copy in the mailbox
    both = graph.model_copy(update={"outbox": config.outbox.model_copy(update={"transport": "graph"})})
    assert "en kopi\n     i postkassens Sendt post, slettet med de modtagne mails." in record_of_processing(both)
    assert "Sent Items, deleted with the mails received." in record_of_processing(both, "en")
    english = record_of_processing(config, "en")
    assert english.startswith("RECORD OF PROCESSING ACTIVITIES") and "60 days after the session" in english

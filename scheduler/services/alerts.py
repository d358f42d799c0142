"""Telling the administrator that something failed, without personal data.

Used where a failure must not stop the rest: a mail that could not be
decided (quarantined at once), a task after a commit that raised. The
alert names the error's class and place (``scheduler.faults``), never its
text, and is queued once per key.
"""

from __future__ import annotations

import logging

from scheduler.faults import describe, error_ref
from scheduler.mail.compose import text_mail
from scheduler.render import render_mail

log = logging.getLogger("sparring.alerts")


def queue_admin_alert(app, repo, template: str, key: str, **context) -> None:
    """Queue ``template`` to ``service.admin`` in ``repo``'s transaction."""
    admin = app.config.service.admin
    subject, body = render_mail(template, app.language, tz=app.tz, forum_name=app.forum_name, **context)
    message = text_mail(sender=app.forum_address, sender_name=app.forum_name, to=[admin], subject=subject,
                        body=body, sent_at=app.now(), language=app.language)
    repo.enqueue_mail(message, kind="alert", dedupe_key=key, recipients=[admin])


def task_failed(app, task: str, exc: BaseException) -> None:
    """An after-commit task raised: log it and tell the administrator (once
    an hour per task and error). Never raises: the other tasks must run."""
    log.error("a task after a commit failed task=%s error=%s", task, describe(exc))
    try:
        now = app.now()
        with app.transaction() as repo:
            queue_admin_alert(app, repo, "alert_task_failed.txt.j2",
                              f"task-failed:{task}:{type(exc).__name__}:{now:%Y-%m-%dT%H}",
                              task=task, error=type(exc).__name__, ref=error_ref(exc), at=now)
    except Exception as second:  # the database itself may be what failed
        log.error("the administrator could not be told error=%s", describe(second))

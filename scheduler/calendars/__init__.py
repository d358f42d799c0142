"""Calendars: iCalendar/iTIP building (``ical``, ``vtimezone``, ``invitation``),
free/busy parsing (``freebusy``) and the backends ``local`` (a folder of
``.ics`` files, the default) and ``caldav``. Exchange lives in
``scheduler.exchange``. Backends are imported where chosen (``wiring``), so
that caldav is only loaded when it is configured."""

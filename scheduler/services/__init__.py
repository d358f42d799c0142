"""Use cases: take in mail, compile agendas, publish sessions, book meetings.

Services get their adapters passed in (through ``App``); they never name a
concrete backend. Only ``scheduler.wiring`` chooses adapters from the
configuration.
"""

"""``sparring case ...``: list and show cases, and the caseworkers' steps by
hand (agree, followup, close). Thin: the services decide, these print."""

from __future__ import annotations

import json
from datetime import date

from scheduler.errors import UserError


def add_case_parser(commands, parse_date) -> None:
    case = commands.add_parser("case", help="cases after the forum: list, show, agree, followup, close")
    verbs = case.add_subparsers(dest="verb", required=True, metavar="VERB")
    listing = verbs.add_parser("list", help="the cases, oldest first")
    listing.add_argument("--open", action="store_true", help="only the open ones")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(run=cmd_case_list)
    for name, run, text in (("show", cmd_case_show, "one case: parties, decisions, meetings, what waits"),
                            ("agree", cmd_case_agree, "the caseworkers agree (Enighed): book the fællessamtale"),
                            ("followup", cmd_case_followup, "book the plan's follow-up meetings"),
                            ("close", cmd_case_close, "close the case and cancel its coming meetings")):
        verb = verbs.add_parser(name, help=text)
        verb.add_argument("--case", required=True, metavar="ID", type=str.upper)
        if name == "followup":
            verb.add_argument("--on", required=True, metavar="YYYY-MM-DD[,YYYY-MM-DD]",
                              type=lambda text: tuple(parse_date(d.strip()) for d in text.split(",") if d.strip()))
        if name == "close":
            verb.add_argument("--by", default=None, metavar="ADDR", help="who closes it, for the parties' notice")
        verb.add_argument("--json", action="store_true")
        verb.set_defaults(run=run)


def cmd_case_list(ctx) -> int:
    from scheduler.services import casework

    app = ctx.app()
    with app.transaction() as repo:
        shown = [casework.describe(app, repo, c) for c in repo.cases(open_only=ctx.args.open)]
    if ctx.args.json:
        print(json.dumps(shown, ensure_ascii=False))
        return 0
    print(f"{'case':<10} {'series':<10} {'holder':<32} {'next':<17} waiting on")
    for case in shown:
        booked = [m["start"] for m in case["meetings"] if m["status"] == "booked" and m["start"]]
        print(f"{case['case']:<10} {case['series']:<10} {case['holder']:<32} "
              f"{(min(booked)[:16].replace('T', ' ') if booked else '-'):<17} {_waiting(case)}")
    return 0


def cmd_case_show(ctx) -> int:
    from scheduler.services import casework

    app = ctx.app()
    with app.transaction() as repo:
        shown = casework.describe(app, repo, _case(repo, ctx.args.case, "show"))
    if ctx.args.json:
        print(json.dumps(shown, ensure_ascii=False))
        return 0
    print(f"case {shown['case']} ({shown['series']}), held by {shown['holder']}")
    print(f"parties: {', '.join(shown['parties'])}")
    for d in shown["decisions"]:
        print(f"decision: {d['decision']} by {d['decided_by']} at {d['decided_at'][:16]} (slot {d['slot']})")
    for m in shown["meetings"]:
        when = f"{m['start'][:16].replace('T', ' ')}-{m['end'][11:16]}" if m["start"] else "no time found"
        print(f"meeting: {m['kind']:<12} {when:<22} {m['status']}")
    print(f"waiting on: {_waiting(shown)}")
    return 0


def cmd_case_agree(ctx) -> int:
    from scheduler.services import casework

    app = ctx.app()
    _allowed(app, "agree", ctx.args.case)
    with app.transaction() as repo:
        holder = repo.case(ctx.args.case).state.holder
    return _done(ctx, casework.agree(app, ctx.args.case, holder))


def cmd_case_followup(ctx) -> int:
    from scheduler.services import casework

    app = ctx.app()
    _allowed(app, "followup", ctx.args.case, ctx.args.on, app.now().date())
    with app.transaction() as repo:
        holder = repo.case(ctx.args.case).state.holder
    return _done(ctx, casework.followups(app, ctx.args.case, ctx.args.on, holder))


def cmd_case_close(ctx) -> int:
    from scheduler.services import casework

    app = ctx.app()
    _allowed(app, "close", ctx.args.case)
    return _done(ctx, casework.close(app, ctx.args.case, ctx.args.by or "sparring case close"))


def _case(repo, case_id: str, verb: str):
    case = repo.case(case_id)
    if case is None:
        raise UserError(f"case {verb}: no case {case_id}; `sparring case list` shows the cases.")
    return case


def _allowed(app, action: str, case_id: str, dates=(), today: date | None = None) -> None:
    from scheduler.reasons import reason
    from scheduler.services import casework

    with app.transaction() as repo:
        _case(repo, case_id, action)
        code = casework.refusal(repo, action, case_id, None, dates, today)
    if code:
        raise UserError(f"case {action} {case_id}: {reason(code, 'en')}")


def _done(ctx, step) -> int:
    ctx.dispatcher().run_once()
    if ctx.args.json:
        print(json.dumps(step.as_json(), ensure_ascii=False))
    else:
        for start, end, _ in step.booked:
            print(f"booked {start:%Y-%m-%d %H:%M}-{end:%H:%M}")
        for day in step.unbooked:
            print(f"no common free time from {day}")
        print(f"told: {', '.join(step.notified)}")
    return 0 if not step.unbooked else 3


def _waiting(case: dict) -> str:
    waiting = case["waiting_on"]
    return f"{waiting['step']}: {', '.join(waiting['on'])}" if waiting else "closed"

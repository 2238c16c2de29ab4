"""Alerts: which conditions hold, what changed since the last run, rendering (all pure); sending.

Lifecycle per condition, with state in Table Storage (the alerts table):
- opened: a mail when it first holds (after `stuckProcessingHours` for stuck processing);
- continuing: no mail, except a reminder once `cooldownHours` have passed since the last mail;
- worsened: a mail when it gets worse (more seats short, more guests, more users in error);
- resolved: a mail when it clears (only if someone was told it was open), and only when the run
  read its subject completely (`RunScope`): what a run did not see keeps its state;
- reopened: a mail when a resolved condition holds again;
- snoozed: an operator can silence a condition until a time; it still resolves normally.
A failed send is recorded and retried on the next run; it never fails the enforcement.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from shared import subscriptions as subs_mod
from shared.forecast import forecast, runs_out
from shared.graph import GraphClient, describe_graph_error
from shared.names import sku_label, sku_row_label
from shared.policy import AlertSettings, ResolvedPolicy
from shared.store import parse_time
from shared.templating import clean, render_template
from shared.waiting import waiting_sentence

if TYPE_CHECKING:
    from shared.policy import Policy
    from shared.run import RunReport
    from shared.settings import Settings
    from shared.store import TableStore

# Kinds whose severity can grow in a way worth a new mail.
SUBSCRIPTION_KINDS = frozenset(
    {"subscription-ending", "subscription-status", "subscription-reduced", "subscription-trial"}
)
WORSENING_KINDS = frozenset(
    {
        "sku-exhausted",
        "group-guests",
        "group-errors",
        "run-problem",
        "group-shrank",
        "sku-dropped",
        *SUBSCRIPTION_KINDS,
    }
)
MAILED = frozenset({"opened", "reopened", "worsened", "reminder", "resolved"})


@dataclass(frozen=True)
class Condition:
    key: str  # stable identity, safe as a Table RowKey (ids only, never names)
    kind: str  # one of shared.policy.ALERT_KINDS
    subject: str
    severity: int  # larger is worse
    facts: tuple[tuple[str, str], ...]  # label, value; directory values are escaped when rendered
    advice: str
    min_age: timedelta = timedelta(0)  # how long it must hold before anyone is told


@dataclass(frozen=True)
class AlertAction:
    key: str
    transition: str  # opened | reopened | worsened | reminder | resolved | pending | quiet-resolve
    condition: Condition | None  # None when it cleared
    state: Mapping[str, Any] = field(default_factory=dict)  # the state before this run

    @property
    def mails(self) -> bool:
        return self.transition in MAILED

    @property
    def subject(self) -> str:
        return (
            self.condition.subject if self.condition else str(self.state.get("Subject", self.key))
        )

    @property
    def kind(self) -> str:
        return self.condition.kind if self.condition else str(self.state.get("Kind", ""))


@dataclass(frozen=True)
class RunScope:
    """What a run read completely: the only subjects whose conditions it may resolve.

    Built by the run from what it actually read (shared.run.run_scope). A condition whose subject
    is outside the scope keeps its state: no mail, no resolve. The default scope covers nothing.
    """

    complete: bool = False  # the run read and wrote all it set out to (status succeeded)
    limited: bool = False  # the run was limited to groupIds
    sku_ids_known: frozenset[str] = frozenset()  # SKUs whose seats and demand are known completely
    groups_listed: frozenset[str] | None = None  # every tagged group; None: listing incomplete
    guests_checked: frozenset[str] = frozenset()  # groups checked for B2B guests
    errors_checked: frozenset[str] = frozenset()  # groups whose members' licence errors were read
    subscriptions_read: bool = False  # GET /directory/subscriptions read completely this run

    def without_skus(self, sku_ids: Iterable[str]) -> RunScope:
        """This scope with these SKUs not known completely (e.g. an unread group carries one)."""
        return replace(self, sku_ids_known=self.sku_ids_known - {s.lower() for s in sku_ids})

    def covers(self, kind: str, subject_id: str) -> bool:
        """May this run resolve a condition of `kind` about `subject_id` (a SKU or group id)?"""
        if kind in ("run-problem", "group-shrank", "sku-dropped"):
            # A sudden loss is measured against the whole last successful run: only a complete,
            # unrestricted run can say it no longer holds.
            return self.complete and not self.limited
        if kind == "sku-exhausted":
            return subject_id in self.sku_ids_known
        if kind == "sku-low":
            # Its forecast counts subscription ends: without them it may only look fine.
            return subject_id in self.sku_ids_known and self.subscriptions_read
        if kind in SUBSCRIPTION_KINDS:
            # The list is read whole or not at all: a subscription no longer listed is gone.
            return self.subscriptions_read
        checked = {
            "group-guests": self.guests_checked,
            "group-errors": self.errors_checked,
            "group-stuck": self.groups_listed or frozenset(),
        }.get(kind)
        if checked is None:
            return False  # a kind this code does not know: never resolved by guesswork
        if subject_id in checked:
            return True
        # A group no longer tagged (or deleted) is no longer a subject, once every tagged group
        # is known to have been found.
        return (
            self.groups_listed is not None
            and not self.limited
            and subject_id not in self.groups_listed
        )


def subject_id(key: str, kind: str) -> str:
    """The SKU or group id a condition key names ("" for run-level conditions)."""
    return key[len(kind) + 1 :] if key.startswith(kind + "-") else ""


# ---------------------------------------------------------------------------------------------
# Which conditions hold (pure)


def open_conditions(
    summary: Mapping[str, Any],
    status: str,
    resolved: ResolvedPolicy | None = None,
    alert_settings: AlertSettings | None = None,
    history: Mapping[str, Sequence[tuple[datetime, int]]] | None = None,
    now: datetime | None = None,
    subscription_peaks: Mapping[str, int] | None = None,
) -> dict[str, Condition]:
    """The conditions a run's summary shows. `history` is (time, consumed) per SKU id;
    `subscription_peaks` the most licences each subscription held in earlier runs within
    `subscriptionDays`."""
    cfg = alert_settings or AlertSettings()
    now = now or datetime.now(UTC)
    found: dict[str, Condition] = {}
    groups = list(summary.get("groups") or [])

    for sku in summary.get("skus") or []:
        sid, part = sku["skuId"], sku["skuPartNumber"]
        name = sku_row_label(sku)  # "Office 365 E5 (ENTERPRISEPREMIUM)": what people recognise
        blocked = [g["displayName"] for g in groups if part in (g.get("shortfall") or {})]
        numbers = (
            ("Licence", name),
            ("Enabled", str(sku["enabled"])),
            ("Consumed", str(sku["consumed"])),
            ("Free", str(sku["freeBefore"])),
            ("Reserve", str(sku["reserve"])),
            ("Demand", str(sku["demand"])),
        )
        if sku["shortfall"] > 0:
            found[f"sku-exhausted-{sid}"] = Condition(
                f"sku-exhausted-{sid}",
                "sku-exhausted",
                f"{name} has run out: {sku['shortfall']} more seat(s) needed",
                int(sku["shortfall"]),
                (
                    *numbers,
                    ("Groups blocked", ", ".join(blocked) or "none"),
                    *_waiting_fact(summary, sid),
                ),
                f"Buy {sku['shortfall']} seat(s) of {name} or remove members; the next run "
                "assigns the blocked groups and reprocesses users stuck in CountViolation.",
            )
            continue
        low = _low_reason(sku, resolved, cfg, history, now, subs_mod.of_summary(summary))
        if low:
            found[f"sku-low-{sid}"] = Condition(
                f"sku-low-{sid}",
                "sku-low",
                f"{name} is running low: {low}",
                0,
                numbers,
                f"Buy seats of {name} before it runs out; new members of its groups then get "
                "nothing until seats are bought.",
            )

    for g in groups:
        gid, name = g["groupId"], g["displayName"]
        if g["decision"] == "blocked-guests":
            found[f"group-guests-{gid}"] = Condition(
                f"group-guests-{gid}",
                "group-guests",
                f"Group {name} is blocked: {g['guestCount']} B2B guest(s)",
                int(g["guestCount"]),
                (("Group", name), ("Profile", g["profile"]), ("Guests", ", ".join(g["guests"]))),
                "Remove the listed guests from the group (group-based licensing must not be "
                "used with B2B accounts); the next run assigns its licences.",
            )
        errors: Mapping[str, Sequence[str]] = g.get("licenseErrors") or {}
        if errors:
            count = sum(len(v) for v in errors.values())
            from shared.planner import ERROR_ADVICE  # the advice lives with the decisions

            found[f"group-errors-{gid}"] = Condition(
                f"group-errors-{gid}",
                "group-errors",
                f"Group {name}: {count} member(s) in licence errors that seats will not fix",
                count,
                (("Group", name), *((e, ", ".join(u)) for e, u in sorted(errors.items()))),
                " ".join(
                    f"{e}: {ERROR_ADVICE.get(e, ERROR_ADVICE['Other'])}." for e in sorted(errors)
                ),
            )
        state = g.get("processingState")
        if state and state != "ProcessingComplete":
            found[f"group-stuck-{gid}"] = Condition(
                f"group-stuck-{gid}",
                "group-stuck",
                f"Group {name} has been in licence processing ({state}) for over "
                f"{cfg.stuck_processing_hours} h",
                0,
                (("Group", name), ("State", state)),
                "Open the group's licences in the Entra admin centre; if processing does not "
                "finish, reprocess the group or open a support case.",
                min_age=timedelta(hours=cfg.stuck_processing_hours),
            )

    found.update(sudden_loss_conditions(summary))
    found.update(subscription_conditions(summary, cfg, subscription_peaks or {}, now))

    # A refused nightly apply did not enforce anything: a run problem too (an HTTP caller sees
    # the refusal in the answer).
    if status in ("failed", "partial") or (
        status == "refused" and summary.get("trigger") == "timer"
    ):
        unknown = [g["displayName"] for g in groups if g["decision"] == "unknown"]
        failed = [g["displayName"] for g in groups if g.get("outcome") == "failed"]
        grant = sorted({p for g in groups for p in g.get("missingPermissions") or ()})
        advice = (
            "Read the run (python -m shared show RUN_ID, or GET /api/runs/RUN_ID); the next "
            "run retries what was not done."
        )
        if grant:
            advice = (
                f"Graph refused writes (403): grant the app the Microsoft Graph application "
                f"permission {', '.join(grant)} and give admin consent (docs/deploy.md). " + advice
            )
        found["run-problem"] = Condition(
            "run-problem",
            "run-problem",
            f"Licensing run {status}",
            2 if status == "failed" else 1,
            (
                ("Status", status),
                ("Error", summary.get("error") or summary.get("refusedReason") or ""),
                ("Groups not read", ", ".join(unknown) or "none"),
                ("Writes failed", ", ".join(failed) or "none"),
                *((("Permissions to grant", ", ".join(grant)),) if grant else ()),
            ),
            advice,
        )
    return found


def sudden_loss_conditions(summary: Mapping[str, Any]) -> dict[str, Condition]:
    """group-shrank / sku-dropped from the run's sudden losses (shared/removals.py)."""
    found: dict[str, Condition] = {}
    removals = summary.get("removals") or {}
    for loss in removals.get("suddenLosses") or []:
        kind, sid, name = loss["kind"], loss["subjectId"], loss["name"]
        what = "direct members" if kind == "group-shrank" else "consumed seats"
        key = f"{kind}-{sid}"
        found[key] = Condition(
            key,
            kind,
            f"{'Group' if kind == 'group-shrank' else 'Licence'} {name} lost "
            f"{loss['lost']} {what} ({loss['percent']} %) since the last successful run",
            int(loss["lost"]),
            (
                ("Subject", name),
                ("Before", str(loss["before"])),
                ("Now", str(loss["now"])),
                ("Lost", f"{loss['lost']} ({loss['percent']} %)"),
                ("Compared with run", str(loss["previousRunId"])),
                ("Removals this run", "none: blocked by this loss"),
            ),
            "Check what changed (a dynamic membership rule, a directory sync, a deleted group or "
            "subscription) before the next run; this run removed nothing, neither opt-in cleanups "
            "nor unlisted licences.",
        )
    return found


def _waiting_fact(summary: Mapping[str, Any], sku_id: str) -> tuple[tuple[str, str], ...]:
    """("Waiting", "12 people wait for Office 365 E5 (ENTERPRISEPREMIUM), the longest for 6
    days") from the run's waiting list; nothing when the run recorded none."""
    waiting = summary.get("waiting") or {}
    for count in waiting.get("skus") or ():
        if count.get("skuId") == sku_id:
            return (("Waiting", waiting_sentence(count, bool(waiting.get("complete")))),)
    return ()


def _low_reason(
    sku: Mapping[str, Any],
    resolved: ResolvedPolicy | None,
    cfg: AlertSettings,
    history: Mapping[str, Sequence[tuple[datetime, int]]] | None,
    now: datetime,
    subscriptions: Sequence[subs_mod.Subscription] | None = None,
) -> str | None:
    sid = sku["skuId"]
    free = int(sku["freeAfter"])
    enabled = int(sku["enabled"])
    if resolved is not None:
        absolute = resolved.warn_below_free.get(sid)
        if absolute is not None and free < absolute:
            return f"{free} free seat(s), under the warning level of {absolute}"
        percent = resolved.warn_below_percent.get(sid)
        if percent is not None and enabled > 0 and free * 100 < percent * enabled:
            return f"{free} free seat(s) of {enabled}, under {percent} %"
    if not cfg.forecast_days:
        return None
    fc = forecast(history[sid], free, now) if history and sid in history else None
    growth: str | None = None
    if fc is not None and fc.runs_out_on is not None:
        days = fc.days_left(now)
        if days is not None and days <= cfg.forecast_days:
            growth = (
                f"at {fc.slope_per_day:.1f} seat(s) a day it runs out in about {days:.0f} day(s) "
                f"(around {fc.runs_out_on:%Y-%m-%d})"
            )
    # Seats free over time: a subscription ending before growth would use the seats up.
    changes = subs_mod.supply_changes(subscriptions or (), sid)
    if changes and free > 0:
        slope = fc.slope_per_day if fc is not None and fc.runs_out_on is not None else 0.0
        outlook = runs_out(free, slope, changes, now)
        days = outlook.days_left(now)
        if (
            outlook.cause == "supply"
            and outlook.change is not None
            and outlook.runs_out_on is not None
            and days is not None
            and days <= cfg.forecast_days
            and (fc is None or fc.runs_out_on is None or outlook.runs_out_on < fc.runs_out_on)
        ):
            return (
                f"{outlook.change.why}: it runs out in about {days:.0f} day(s) "
                f"(around {outlook.runs_out_on:%Y-%m-%d})"
            )
    return growth


def subscription_conditions(
    summary: Mapping[str, Any],
    cfg: AlertSettings,
    peaks: Mapping[str, int],
    now: datetime,
) -> dict[str, Condition]:
    """Supply conditions from the run's subscriptions; none when they were not read (unknown:
    the open ones keep their state, RunScope.covers)."""
    subs = subs_mod.of_summary(summary)
    if not subs:
        return {}
    skus = {str(s["skuId"]).lower(): s for s in summary.get("skus") or []}
    horizon = now + timedelta(days=cfg.subscription_days)
    found: dict[str, Condition] = {}
    for sub in subs:
        sku = skus.get(sub.sku_id)
        label = sku_label(sub.sku_id, sub.part_number or (sku or {}).get("skuPartNumber"))
        enabled = int(sku["enabled"]) if sku else None
        # Seats held once the run's own writes are processed (freeAfter, measured or planned):
        # the next run reads the same figure, so it does not look "worse" for this run's work.
        consumed = None
        if sku is not None and enabled is not None:
            after = sku.get("freeAfter")
            consumed = enabled - int(after) if after is not None else int(sku["consumed"])
        date = f"{sub.next_lifecycle:%Y-%m-%d}" if sub.next_lifecycle else "no date given"
        held = "unknown" if consumed is None else str(consumed)
        base = (
            ("Licence", label),
            ("Subscription", sub.commerce_id or sub.id),
            ("Status", sub.status),
            ("Seats in it", str(sub.total)),
            ("Users holding the licence now", held),
            ("Seats enabled now", "unknown" if enabled is None else str(enabled)),
        )
        ending = sub.next_lifecycle is not None and sub.next_lifecycle <= horizon
        if sub.is_trial and sub.status in ("Enabled", "Warning"):
            # Users on trial seats: those beyond what the other (paid) seats cover.
            paid = (
                None if enabled is None else enabled - (sub.total if sub.status == "Enabled" else 0)
            )
            on_trial = (
                0 if consumed is None or paid is None else min(sub.total, max(0, consumed - paid))
            )
            if on_trial > 0:
                key = f"subscription-trial-{sub.id}"
                found[key] = Condition(
                    key,
                    "subscription-trial",
                    f"{label}: {on_trial} user(s) rely on a trial that ends on {date}",
                    on_trial,
                    (*base, ("Trial ends", date), ("Users on trial seats", str(on_trial))),
                    f"Buy {label} seats before {date} (or move these users to another licence): "
                    "when the trial ends its users lose the licence's services.",
                )
            continue
        if sub.status in ("Warning", "Suspended", "LockedOut"):
            nxt = subs_mod.NEXT_STATUS.get(sub.status)
            key = f"subscription-status-{sub.id}"
            found[key] = Condition(
                key,
                "subscription-status",
                f"{label}: a subscription of {sub.total} seat(s) is {sub.status}",
                1 if sub.status == "Warning" else 2,
                (*base, *((("Next", f"{nxt} on {date}"),) if nxt else ())),
                (
                    f"Renew it in the Microsoft 365 admin center before {date}: its seats no "
                    "longer count as free, and after that date its users lose access."
                    if sub.status == "Warning"
                    else "Its users have lost the licence's services: reactivate or replace "
                    "the subscription in the Microsoft 365 admin center, or move them to "
                    "another licence."
                ),
            )
        elif sub.status == subs_mod.ENABLED and ending and sub.total > 0:
            after = None if enabled is None else enabled - sub.total
            short = 0 if consumed is None or after is None else max(0, consumed - after)
            key = f"subscription-ending-{sub.id}"
            found[key] = Condition(
                key,
                "subscription-ending",
                f"{label}: {sub.total} seat(s) end on {date} unless renewed",
                short,
                (
                    *base,
                    ("Ends on", date),
                    ("Seats that would be lost", str(sub.total)),
                    ("Seats enabled after", "unknown" if after is None else str(after)),
                    ("Users left without a seat", "unknown" if consumed is None else str(short)),
                ),
                f"Renew the subscription before {date}, or buy seats elsewhere; otherwise "
                "group licensing has no seats for users beyond what is left.",
            )
        peak = peaks.get(sub.id)
        if peak is not None and sub.total < peak:
            key = f"subscription-reduced-{sub.id}"
            lost = peak - sub.total
            found[key] = Condition(
                key,
                "subscription-reduced",
                f"{label}: a subscription holds {lost} licence(s) fewer than before "
                f"({sub.total} of {peak})",
                lost,
                (*base, ("Licences before", str(peak)), ("Seats lost", str(lost))),
                "Check the renewal quantity in the Microsoft 365 admin center; if the cut was "
                "not meant, add the seats back before users in its groups go without.",
            )
    return found


# ---------------------------------------------------------------------------------------------
# What changed since the last run (pure)


def transitions(
    now_conditions: Mapping[str, Condition],
    states: Mapping[str, Mapping[str, Any]],
    now: datetime,
    *,
    scope: RunScope,
    cooldown: timedelta = timedelta(hours=72),
) -> list[AlertAction]:
    """The actions this run calls for. A condition that no longer holds is resolved only when
    `scope` covers its subject; otherwise it keeps its state (the run did not see it)."""
    actions: list[AlertAction] = []
    for key, cond in sorted(now_conditions.items()):
        st = states.get(key) or {}
        status = st.get("Status")
        snoozed = _time(st.get("SnoozedUntil")) > now
        if status in (None, "resolved"):
            if cond.min_age > timedelta(0):
                actions.append(AlertAction(key, "pending", cond, st))
                continue
            actions.append(AlertAction(key, "reopened" if status else "opened", cond, st))
        elif status == "pending":
            if now - _time(st.get("FirstSeen")) >= cond.min_age:
                actions.append(AlertAction(key, "opened", cond, st))
        elif not st.get("Notified"):
            actions.append(AlertAction(key, str(st.get("LastChange") or "opened"), cond, st))
        elif snoozed:
            continue
        elif cond.kind in WORSENING_KINDS and cond.severity > int(st.get("Severity") or 0):
            actions.append(AlertAction(key, "worsened", cond, st))
        elif st.get("LastMailAt") and now - _time(st["LastMailAt"]) >= cooldown:
            actions.append(AlertAction(key, "reminder", cond, st))
    for key, st in sorted(states.items()):
        if key in now_conditions or st.get("Status") not in ("open", "pending"):
            continue
        kind = str(st.get("Kind") or "")
        if not scope.covers(kind, subject_id(key, kind)):
            continue
        told = st.get("Status") == "open" and st.get("Notified")
        actions.append(AlertAction(key, "resolved" if told else "quiet-resolve", None, st))
    return actions


def _time(value: Any) -> datetime:
    """A stored time; absent or unreadable: the earliest time (never "just now")."""
    return parse_time(value) or datetime.min.replace(tzinfo=UTC)


# ---------------------------------------------------------------------------------------------
# Rendering (pure)

_LABELS = {"worsened": "Worse: ", "reopened": "Again: ", "reminder": "Still: "}


def render(action: AlertAction, run_id: str, tenant: str = "") -> tuple[str, str]:
    """(subject, HTML body) for one alert mail (shared/templates/mail.html.j2, autoescaped).

    tenant: the tenant's display name when the deployment enforces several; the subject starts
    with it, so one mailbox's alerts from many customers are told apart at a glance."""
    c = action.condition
    body = render_template(
        "mail.html.j2",
        cleared=c is None,
        subject=c.subject if c else action.subject,
        facts=c.facts if c else (),
        advice=c.advice if c else "",
        run_id=run_id,
        tenant=tenant,
    )
    tag = f"[Licensing] {tenant}: " if tenant else "[Licensing] "
    if c is None:
        subject = f"{tag}Resolved: {action.subject}"
    else:
        subject = f"{tag}{_LABELS.get(action.transition, '')}{c.subject}"
    # A header must stay one line whatever a group name holds.
    return " ".join(clean(subject).split()), body


# ---------------------------------------------------------------------------------------------
# Sending


async def process_alerts(
    report: RunReport,
    status: str,
    settings: Settings,
    graph: GraphClient,
    store: TableStore,
    policy: Policy | None,
    resolved: ResolvedPolicy | None,
    scope: RunScope,
    now: datetime | None = None,
) -> list[dict[str, Any]]:
    """Send the mails this run calls for and record the alert states; return what happened.

    `scope`: what the run read completely; only conditions about it can resolve.
    Plan mode writes nothing, mail included: it reports what apply would send.
    """
    if not settings.alert_mailbox:
        return []
    cfg = policy.alerts if policy else AlertSettings()
    now = now or datetime.now(UTC)
    summary = report.summary()
    history = {}
    if cfg.forecast_days:
        for sku in summary["skus"]:
            rows = await asyncio.to_thread(store.sku_history, sku["skuId"])
            history[sku["skuId"]] = [(_time(r.get("At")), int(r.get("Consumed", 0))) for r in rows]
    if not scope.subscriptions_read:
        # Not read (unknown), or a run limited to groupIds: no supply condition opens or closes.
        summary = {**summary, "subscriptions": None}
    peaks: dict[str, int] = {}
    since = now - timedelta(days=cfg.subscription_days)
    for sub in subs_mod.of_summary(summary) or ():
        rows = await asyncio.to_thread(store.subscription_history, sub.id, since)
        totals = [int(r["TotalLicenses"]) for r in rows if r.get("TotalLicenses") is not None]
        if totals:
            peaks[sub.id] = max(totals)
    conditions = open_conditions(summary, status, resolved, cfg, history, now, peaks)
    states = await asyncio.to_thread(store.alert_states)
    results: list[dict[str, Any]] = []
    cooldown = timedelta(hours=cfg.cooldown_hours)
    for action in transitions(conditions, states, now, scope=scope, cooldown=cooldown):
        subject, body = render(action, report.run_id, report.tenant_name or report.tenant_id or "")
        to = list(cfg.recipients.get(action.kind) or settings.alert_recipients)
        result: dict[str, Any] = {
            "condition": action.key,
            "transition": action.transition,
            "subject": subject,
            "to": to,
            "sent": False,
            "error": "",
        }
        if report.mode == "plan":
            if action.mails:
                result["error"] = "plan mode: not sent"
                results.append(result)
            continue
        sent, error = False, ""
        if action.mails:
            try:
                await graph.send_mail(settings.alert_mailbox, to, subject, body)
                sent = True
            except Exception as exc:  # a mailbox failure must never fail the enforcement
                error = describe_graph_error(exc)
        result.update(sent=sent, error=error)
        entity = _next_state(action, sent, error, report.run_id, now)
        await asyncio.to_thread(store.put_alert_state, action.key, entity)
        if action.mails:
            results.append(result)
    return results


def _next_state(
    action: AlertAction, sent: bool, error: str, run_id: str, now: datetime
) -> dict[str, Any]:
    st = dict(action.state)
    cond = action.condition
    entity: dict[str, Any] = {
        "Kind": action.kind,
        "Subject": action.subject,
        "Severity": cond.severity if cond else int(st.get("Severity") or 0),
        "FirstSeen": st.get("FirstSeen") if st.get("Status") in ("open", "pending") else now,
        "LastRunId": run_id,
        "LastChange": action.transition,
        "UpdatedAt": now,
        "SnoozedUntil": st.get("SnoozedUntil") or "",
        "SendError": error,
        "LastMailAt": now if sent else st.get("LastMailAt") or "",
    }
    if action.transition == "pending":
        entity.update(Status="pending", Notified=False, FirstSeen=now)
    elif action.transition in ("resolved", "quiet-resolve"):
        # An unsent "resolved" stays open and is retried; a condition nobody was told of just ends.
        done = sent or action.transition == "quiet-resolve"
        entity.update(Status="resolved" if done else "open", Notified=not done)
        if not done:
            entity["LastChange"] = "resolved"
    else:
        entity.update(Status="open", Notified=sent)
    return entity


async def snooze(store: TableStore, key: str, until: datetime) -> bool:
    """Silence one condition's mails until `until` (it still resolves). False: no such alert."""
    states = await asyncio.to_thread(store.alert_states)
    if key not in states:
        return False
    entity = {k: v for k, v in states[key].items() if k not in ("PartitionKey", "RowKey")}
    entity["SnoozedUntil"] = until
    await asyncio.to_thread(store.put_alert_state, key, entity)
    return True

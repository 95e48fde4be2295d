"""Managing what was created: changing, suspending and closing accounts, tariffs and vendors,
each change audited (fsbill.db.audit) in the transaction that makes it.

The rules (docs/ACCOUNTS.md):
- a change that would leave an account with less than nothing available (balance + credit
  limit − held, fsbill.core.grant.available) is refused unless forced, with the arithmetic in the
  message, as `fsbill adjust` refuses a debit; forced, the live calls keep what they hold and get
  no extension (their grant sees available < 0);
- a lower channel limit applies to new calls; live calls are never cut by it;
- an account changes to a tariff in another currency only with a zero balance and no live call;
- closing is not deleting: a closed account (or tariff, or vendor) keeps its rows, its ledger and
  its CDRs; a closed account takes no calls (rejection `closed`) and no top-ups, a closed tariff
  is given to no account, a closed vendor is never routed to. Closed is final.
"""

from __future__ import annotations

from dataclasses import dataclass

from fsbill.core.grant import available as available_of
from fsbill.core.money import Money, RoundingMethod, RoundingRule
from fsbill.core.recharge import Settings
from fsbill.core.recharge import describe as describe_recharge
from fsbill.core.recharge import from_stored as recharge_settings
from fsbill.core.recharge import stored as stored_recharge
from fsbill.db import accounts, audit, ledger, notices, subtree
from fsbill.db import vendors as dbvendors
from fsbill.db.audit import Change
from fsbill.db.connection import Store
from fsbill.db.rows import DbRow
from fsbill.errors import Conflict, InvalidInput, NotFound

ACTIVE, SUSPENDED, CLOSED = "active", "suspended", "closed"
NONE_WORDS = ("", "none")  # `--email none` clears it
MAX_EMAIL = 254


def _changed(changes: list[Change]) -> list[Change]:
    return [c for c in changes if c.old != c.new]


def _valid_email(email: str) -> str:
    email = email.strip()
    if email.lower() in NONE_WORDS:
        return ""
    local, at, domain = email.rpartition("@")
    if (
        not at
        or not local
        or "." not in domain.strip(".")
        or len(email) > MAX_EMAIL
        or any(ch.isspace() or ord(ch) < 32 for ch in email)
    ):
        raise InvalidInput(
            f"--email must be an address like billing@example.com (or 'none' to clear it), got {email!r}"
        )
    return email


# -- accounts ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Result:
    """What a management command did: the entity as it is now and the changes it made (none:
    everything already had the value asked for)."""

    changes: tuple[Change, ...]


@dataclass(frozen=True)
class AccountResult(Result):
    account: ledger.AccountView
    entry: ledger.LedgerView | None = None  # `close --force`: the entry that moved the balance out


def _open_account(store: Store, code: str) -> DbRow:
    row = ledger.account_for_update(store, code)
    if row is None:
        raise NotFound(f"no account {code!r} (see 'fsbill account list')")
    return row


def _refuse_if_closed(row: DbRow, what: str) -> None:
    if row.status == CLOSED:
        raise InvalidInput(f"account {row.code!r} is closed: {what}")


def set_account(
    store: Store,
    code: str,
    now_us: int,
    actor: str,
    *,
    credit_limit: Money | None = None,
    max_channels: int | None = None,
    tariff: str | None = None,
    email: str | None = None,
    force: bool = False,
) -> AccountResult:
    """Change an account's attributes (those given); refused as a whole if any is refused."""
    if credit_limit is None and max_channels is None and tariff is None and email is None:
        raise InvalidInput("nothing to set: give at least one of --credit-limit, --max-channels, --tariff, --email")
    if credit_limit is not None and credit_limit.is_negative():
        raise InvalidInput(f"--credit-limit must not be negative, got {credit_limit}")
    if max_channels is not None and max_channels < 0:
        raise InvalidInput("--max-channels must be 0 (no limit) or more")
    if email is not None:
        email = _valid_email(email)
    m = store.models
    with store.transaction():
        row = _open_account(store, code)
        _refuse_if_closed(row, "a closed account cannot be changed")
        update: dict[str, object] = {}
        changes: list[Change] = []
        balance, held = Money(row.balance_micros), Money(row.reserved_micros)
        if tariff is not None:
            new = m.Tariff.get_or_none(m.Tariff.name == tariff)
            if new is None:
                raise NotFound(f"no tariff named {tariff!r} (see 'fsbill tariff list')")
            if tariff.startswith(dbvendors.DECK_PREFIX):
                raise InvalidInput(f"{tariff!r} is a vendor's cost deck, not a tariff customers can be sold")
            old = m.Tariff.get_by_id(row.tariff_id)
            if new.id != old.id:
                if new.status == CLOSED:
                    raise InvalidInput(f"tariff {tariff!r} is closed: it is no longer given to accounts")
                subtree.check_tariff_for(store, new, row.parent_id, code)  # a reseller's tariff stays in its subtree
                if new.currency != row.currency:
                    if balance or held or row.live_channels:
                        raise InvalidInput(
                            f"tariff {tariff!r} is in {new.currency} and account {code!r} is in {row.currency}: "
                            f"a change of currency needs a zero balance and no live call "
                            f"(balance {balance} {row.currency}, live calls {row.live_channels} holding {held}); "
                            f"move the balance out with 'fsbill adjust' first"
                        )
                    update["currency"] = new.currency
                    changes.append(Change("currency", row.currency, new.currency))
                update["tariff"] = new.id
                changes.insert(0, Change("tariff", old.name, new.name))
        if credit_limit is not None:
            old_limit = Money(row.credit_limit_micros)
            if credit_limit < old_limit and not force:
                left = available_of(balance, credit_limit, held)
                if left.is_negative():
                    raise InvalidInput(
                        f"credit limit {credit_limit} would leave {left} available "
                        f"(balance {balance} + credit limit {credit_limit} − held by live calls {held}); "
                        f"use --force to apply anyway"
                    )
            update["credit_limit_micros"] = credit_limit.micros
            changes.append(Change("credit_limit", str(old_limit), str(credit_limit)))
        if max_channels is not None:
            update["max_channels"] = max_channels
            changes.append(Change("max_channels", str(row.max_channels), str(max_channels)))
        if email is not None:
            update["email"] = email
            changes.append(Change("email", row.email or None, email or None))
        changes = _changed(changes)
        if changes:
            update["updated_us"] = now_us
            m.Account.update(update).where(m.Account.id == row.id).execute()
            audit.record(store, actor, now_us, "set", "account", code, changes)
            notices.check_low_balance(store, row.id, now_us)  # a credit limit changes what is available
    return AccountResult(tuple(changes), ledger.get_account(store, code))


@dataclass(frozen=True)
class AutoRechargeResult:
    account: str
    settings: Settings | None  # in force now (None: off)
    failures: int  # failed charges in a row since the last credit
    changes: tuple[Change, ...]

    def as_json(self) -> dict:
        return {
            "auto_recharge": self.settings.as_json() if self.settings else None,
            "recharge_failures": self.failures,
        }


def set_auto_recharge(
    store: Store, code: str, settings: Settings | None, now_us: int, actor: str
) -> AutoRechargeResult:
    """`account set --auto-recharge AMOUNT --below LEVEL [--max-per-day N]` (None: off), audited
    in the same transaction. Checked at once: an account already under the level is asked for
    money now (docs/NOTICES.md "Auto-recharge")."""
    m = store.models
    with store.transaction():
        row = _open_account(store, code)
        _refuse_if_closed(row, "a closed account cannot be changed")
        old = recharge_settings(row.auto_recharge_micros, row.auto_recharge_below_micros, row.auto_recharge_max_per_day)
        changes = _changed([Change("auto_recharge", describe_recharge(old), describe_recharge(settings))])
        if changes:
            amount, below, per_day = stored_recharge(settings)
            m.Account.update(
                auto_recharge_micros=amount,
                auto_recharge_below_micros=below,
                auto_recharge_max_per_day=per_day,
                updated_us=now_us,
            ).where(m.Account.id == row.id).execute()
            audit.record(store, actor, now_us, "set", "account", code, changes)
            notices.check_low_balance(store, row.id, now_us)
    return AutoRechargeResult(code, settings, row.recharge_failures, tuple(changes))


def auto_recharge_of(store: Store, code: str) -> AutoRechargeResult:
    m = store.models
    with store.reading():
        row = m.Account.get_or_none(m.Account.code == code)
        if row is None:
            raise NotFound(f"no account {code!r} (see 'fsbill account list')")
    settings = recharge_settings(
        row.auto_recharge_micros, row.auto_recharge_below_micros, row.auto_recharge_max_per_day
    )
    return AutoRechargeResult(code, settings, row.recharge_failures, ())


def set_account_status(store: Store, code: str, status: str, now_us: int, actor: str) -> AccountResult:
    """`account suspend|resume`: a suspended account's new calls are refused (`suspended`)."""
    if status not in (ACTIVE, SUSPENDED):
        raise InvalidInput(f"unknown status {status!r}")
    m = store.models
    with store.transaction():
        row = _open_account(store, code)
        _refuse_if_closed(row, "closed is final (its ledger and CDRs are kept)")
        changes = _changed([Change("status", row.status, status)])
        if changes:
            m.Account.update(status=status, updated_us=now_us).where(m.Account.id == row.id).execute()
            audit.record(store, actor, now_us, "set", "account", code, changes)
            notices.status_changed(store, code, row.status, status, now_us)  # account.suspended / resumed
    return AccountResult(tuple(changes), ledger.get_account(store, code))


def account_cli(store: Store, code: str, number: str, add: bool, now_us: int, actor: str) -> AccountResult:
    """`account cli add|remove`: a caller id that identifies the account."""
    number = accounts._valid_cli(number)
    m = store.models
    with store.transaction():
        row = _open_account(store, code)
        owner = m.AccountCli.get_or_none(m.AccountCli.number == number)
        if add:
            _refuse_if_closed(row, "a closed account takes no new caller id")
            if owner is not None and owner.account_id != row.id:
                other = m.Account.get_by_id(owner.account_id).code
                raise Conflict(f"caller id {number} already belongs to account {other!r} (remove it there first)")
            changes = [] if owner is not None else [Change("cli", None, number)]
            if changes:
                m.AccountCli.create(number=number, account=row.id)
        else:
            if owner is None or owner.account_id != row.id:
                raise NotFound(f"account {code!r} has no caller id {number}")
            m.AccountCli.delete().where(m.AccountCli.id == owner.id).execute()
            changes = [Change("cli", number, None)]
        if changes:
            audit.record(store, actor, now_us, "cli_add" if add else "cli_remove", "account", code, changes)
    return AccountResult(tuple(changes), ledger.get_account(store, code))


def close_account(store: Store, code: str, now_us: int, actor: str, *, force: bool = False) -> AccountResult:
    """Close an account: no more calls, no more top-ups; its ledger and CDRs stay.

    Refused while it has live calls or a non-zero balance, unless `force`: then the balance goes
    out through a ledger entry of kind `close` (a debt is written off the same way) and the live
    calls finish what they hold, with no extension."""
    m = store.models
    entry = None
    with store.transaction():
        row = _open_account(store, code)
        if row.status == CLOSED:
            raise Conflict(f"account {code!r} is already closed")
        balance, held, limit = Money(row.balance_micros), Money(row.reserved_micros), Money(row.credit_limit_micros)
        live = row.live_channels
        if (balance or held or live) and not force:
            has, does = [], []
            if balance:
                has.append(f"balance {balance} {row.currency}")
                does.append(f"move {-balance} {row.currency} through the ledger (kind close)")
            if held or live:
                left = available_of(Money(0), limit, held)
                has.append(f"{live} live call(s) holding {held} {row.currency}")
                does.append(
                    f"leave {left} available (balance 0.00 + credit limit {limit} − held by live calls {held}) "
                    f"and end those calls when their grant runs out"
                )
            raise InvalidInput(
                f"account {code!r} has {' and '.join(has)}: closing would {' and '.join(does)}; "
                f"use --force to close anyway"
            )
        if balance:
            note = "balance moved out at close" if balance.micros > 0 else "debt written off at close"
            entry_id, _ = ledger.post(store, row.id, -balance, "close", now_us, note=note)
            entry = ledger._ledger_view(m.LedgerEntry.get_by_id(entry_id), code)
        m.Account.update(status=CLOSED, closed_us=now_us, updated_us=now_us).where(m.Account.id == row.id).execute()
        changes = [Change("status", row.status, CLOSED)]
        if balance:
            changes.append(Change("balance", str(balance), "0.00"))
        audit.record(store, actor, now_us, "close", "account", code, changes)
    return AccountResult(tuple(changes), ledger.get_account(store, code), entry)


# -- tariffs -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TariffResult(Result):
    tariff: ledger.TariffView
    accounts: int = 0  # open accounts still on it (`close`)


def _tariff_row(store: Store, name: str) -> DbRow:
    m = store.models
    if name.startswith(dbvendors.DECK_PREFIX):
        raise InvalidInput(f"{name!r} is a vendor's cost deck: change it with 'fsbill vendor set'")
    q = m.Tariff.select().where(m.Tariff.name == name)
    row = (q.for_update() if store.kind == "postgresql" else q).first()
    if row is None:
        raise NotFound(f"no tariff named {name!r} (see 'fsbill tariff list')")
    return row


def _rounding_changes(
    store: Store, row: DbRow, decimals: int | None, rounding: str | None, timezone: str | None
) -> list[Change]:
    """Change a deck's rounding rule and time zone (the tariff row of a tariff or a vendor's
    deck); bumps `deck_version` so every node's cached deck is rebuilt before its next call.
    Live calls keep the rule frozen when they were authorized."""
    m = store.models
    update: dict[str, object] = {}
    changes: list[Change] = []
    if decimals is not None:
        RoundingRule(decimals, RoundingMethod(row.rounding_method))  # validates the range
        update["rounding_decimals"] = decimals
        changes.append(Change("decimals", str(row.rounding_decimals), str(decimals)))
    if rounding is not None:
        try:
            method = RoundingMethod(rounding)
        except ValueError:
            known = ", ".join(r.value for r in RoundingMethod)
            raise InvalidInput(f"--rounding must be one of {known}, got {rounding!r}") from None
        update["rounding_method"] = method.value
        changes.append(Change("rounding", row.rounding_method, method.value))
    if timezone is not None:
        update["timezone"] = accounts._valid_timezone(timezone)
        changes.append(Change("timezone", row.timezone, timezone))
    changes = _changed(changes)
    if changes:
        update["deck_version"] = m.Tariff.deck_version + 1
        m.Tariff.update(update).where(m.Tariff.id == row.id).execute()
    return changes


def set_tariff(
    store: Store,
    name: str,
    now_us: int,
    actor: str,
    *,
    decimals: int | None = None,
    rounding: str | None = None,
    timezone: str | None = None,
) -> TariffResult:
    if decimals is None and rounding is None and timezone is None:
        raise InvalidInput("nothing to set: give at least one of --decimals, --rounding, --timezone")
    with store.transaction():
        row = _tariff_row(store, name)
        if row.status == CLOSED:
            raise InvalidInput(f"tariff {name!r} is closed: a closed tariff cannot be changed")
        changes = _rounding_changes(store, row, decimals, rounding, timezone)
        audit.record(store, actor, now_us, "set", "tariff", name, changes)
    return TariffResult(tuple(changes), ledger.get_tariff(store, name))


def close_tariff(store: Store, name: str, now_us: int, actor: str) -> TariffResult:
    """A closed tariff is given to no account (`account add`, `account set --tariff`); the
    accounts already on it keep it, and it keeps rating their calls."""
    m = store.models
    with store.transaction():
        row = _tariff_row(store, name)
        if row.status == CLOSED:
            raise Conflict(f"tariff {name!r} is already closed")
        m.Tariff.update(status=CLOSED).where(m.Tariff.id == row.id).execute()
        changes = [Change("status", row.status, CLOSED)]
        audit.record(store, actor, now_us, "close", "tariff", name, changes)
        users = m.Account.select().where((m.Account.tariff == row.id) & (m.Account.status != CLOSED)).count()
    return TariffResult(tuple(changes), ledger.get_tariff(store, name), users)


# -- vendors -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class VendorResult(Result):
    vendor: dbvendors.VendorView


def _vendor_row(store: Store, name: str) -> DbRow:
    m = store.models
    q = m.Vendor.select().where(m.Vendor.name == name)
    row = (q.for_update() if store.kind == "postgresql" else q).first()
    if row is None:
        raise NotFound(f"no vendor named {name!r} (see 'fsbill vendor list')")
    return row


def set_vendor(
    store: Store,
    name: str,
    now_us: int,
    actor: str,
    *,
    dial_string: str | None = None,
    weight: int | None = None,
    max_channels: int | None = None,
    decimals: int | None = None,
    rounding: str | None = None,
    timezone: str | None = None,
) -> VendorResult:
    """Change a vendor; live calls keep the channel they hold and the dial string they were
    bridged with; a lower channel limit applies to new calls."""
    given = (dial_string, weight, max_channels, decimals, rounding, timezone)
    if all(v is None for v in given):
        raise InvalidInput(
            "nothing to set: give at least one of --dial-string, --weight, --max-channels, "
            "--decimals, --rounding, --timezone"
        )
    if dial_string is not None:
        dial_string = dbvendors._valid_dial_string(dial_string)
    if max_channels is not None and max_channels < 0:
        raise InvalidInput("--max-channels must be 0 (no limit) or more")
    m = store.models
    with store.transaction():
        row = _vendor_row(store, name)
        if row.status == CLOSED:
            raise InvalidInput(f"vendor {name!r} is closed: a closed vendor cannot be changed")
        update: dict[str, object] = {}
        changes: list[Change] = []
        if dial_string is not None:
            update["dial_string"] = dial_string
            changes.append(Change("dial_string", row.dial_string, dial_string))
        if weight is not None:
            update["weight"] = weight
            changes.append(Change("weight", str(row.weight), str(weight)))
        if max_channels is not None:
            update["max_channels"] = max_channels
            changes.append(Change("max_channels", str(row.max_channels), str(max_channels)))
        changes = _changed(changes)
        if changes:
            m.Vendor.update(update).where(m.Vendor.id == row.id).execute()
        deck = m.Tariff.get_by_id(row.deck_id)
        changes += _rounding_changes(store, deck, decimals, rounding, timezone)
        audit.record(store, actor, now_us, "set", "vendor", name, changes)
    return VendorResult(tuple(changes), dbvendors.get_vendor(store, name))


def set_vendor_status(store: Store, name: str, status: str, now_us: int, actor: str) -> VendorResult:
    """`vendor suspend|resume`, audited; a closed vendor stays closed."""
    if status not in (dbvendors.ACTIVE, dbvendors.SUSPENDED):
        raise InvalidInput(f"vendor status must be {dbvendors.ACTIVE} or {dbvendors.SUSPENDED}")
    m = store.models
    with store.transaction():
        row = _vendor_row(store, name)
        if row.status == CLOSED:
            raise InvalidInput(f"vendor {name!r} is closed: closed is final (add a new vendor instead)")
        changes = _changed([Change("status", row.status, status)])
        if changes:
            m.Vendor.update(status=status).where(m.Vendor.id == row.id).execute()
            audit.record(store, actor, now_us, "set", "vendor", name, changes)
    return VendorResult(tuple(changes), dbvendors.get_vendor(store, name))


def close_vendor(store: Store, name: str, now_us: int, actor: str) -> VendorResult:
    """A closed vendor is never routed to again (like a suspended one, for good); the calls it
    carries now finish on it; its deck, attempts and CDRs stay."""
    m = store.models
    with store.transaction():
        row = _vendor_row(store, name)
        if row.status == CLOSED:
            raise Conflict(f"vendor {name!r} is already closed")
        m.Vendor.update(status=CLOSED).where(m.Vendor.id == row.id).execute()
        changes = [Change("status", row.status, CLOSED)]
        audit.record(store, actor, now_us, "close", "vendor", name, changes)
    return VendorResult(tuple(changes), dbvendors.get_vendor(store, name))

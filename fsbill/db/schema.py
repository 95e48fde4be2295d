"""The tables, as peewee models built per database.

Models are created by `build_models(database)` rather than bound to a module-level proxy so
that one process can hold several databases at once (tests run SQLite and PostgreSQL side by
side; the benchmark runs several stores). The schema itself is owned by `migrations/`; these
classes only describe it for queries and must match it.

Units: every amount is an integer in micro-units (`*_micros`, see fsbill.core.money); every instant
is epoch microseconds (`*_us`, as FreeSWITCH's `*_uepoch`); durations are whole seconds (`*_s`).
"""

from __future__ import annotations

from types import SimpleNamespace

from peewee import (
    BigIntegerField,
    CharField,
    CompositeKey,
    Database,
    ForeignKeyField,
    IntegerField,
    Model,
    TextField,
)


def build_models(database: Database) -> SimpleNamespace:
    class Base(Model):
        class Meta:
            legacy_table_names = False

    class Tariff(Base):
        name = CharField(unique=True)
        currency = CharField(max_length=3)
        rounding_decimals = IntegerField(default=4)
        rounding_method = CharField(default="half_up")
        timezone = CharField(default="UTC")
        deck_version = IntegerField(default=0)
        created_us = BigIntegerField()
        status = CharField(default="active")  # active | closed (migrations/0006_audit.py)
        # fraud guards, the default for its accounts (migrations/0007_fraud_guards.py)
        daily_cap_micros = BigIntegerField(null=True)
        monthly_cap_micros = BigIntegerField(null=True)
        block_prefixes = TextField(null=True)
        allow_prefixes = TextField(null=True)
        max_rate_micros = BigIntegerField(null=True)
        max_calls_per_minute = IntegerField(null=True)
        low_balance = TextField(null=True)  # its accounts' default low-balance levels (migrations/0011_notices.py)
        owner_id = IntegerField(null=True)  # the reseller that made it, NULL = the operator's (migrations/0017)

    class Rate(Base):
        tariff = ForeignKeyField(Tariff, backref="rates", on_delete="CASCADE")
        prefix = CharField()
        rate_micros = BigIntegerField()
        connect_fee_micros = BigIntegerField(default=0)
        initial_increment_s = IntegerField(default=1)
        increment_s = IntegerField(default=1)
        min_duration_s = IntegerField(default=0)
        description = TextField(default="")
        effective_from_us = BigIntegerField(null=True)
        effective_until_us = BigIntegerField(null=True)
        weekdays = CharField(null=True)  # ISO weekday digits '12345' (Mon=1), NULL = every day
        time_from_min = IntegerField(null=True)  # minutes after local midnight, inclusive
        time_to_min = IntegerField(null=True)  # exclusive; may wrap past midnight

    class Account(Base):
        code = CharField(unique=True)
        tariff = ForeignKeyField(Tariff, backref="accounts")
        currency = CharField(max_length=3)
        balance_micros = BigIntegerField(default=0)
        credit_limit_micros = BigIntegerField(default=0)
        reserved_micros = BigIntegerField(default=0)
        max_channels = IntegerField(default=0)  # 0 = no limit
        live_channels = IntegerField(default=0)
        status = CharField(default="active")  # active | suspended | closed
        created_us = BigIntegerField()
        updated_us = BigIntegerField()
        email = CharField(default="")  # migrations/0006_audit.py
        closed_us = BigIntegerField(null=True)
        # fraud guards: NULL = the tariff's default, -1 / '' = off (migrations/0007_fraud_guards.py)
        daily_cap_micros = BigIntegerField(null=True)
        monthly_cap_micros = BigIntegerField(null=True)
        block_prefixes = TextField(null=True)
        allow_prefixes = TextField(null=True)
        max_rate_micros = BigIntegerField(null=True)
        max_calls_per_minute = IntegerField(null=True)
        arrears_micros = BigIntegerField(default=0)  # charges not yet paid (migrations/0010_plans.py)
        low_balance = TextField(null=True)  # NULL = the tariff's levels, '' = none (migrations/0011_notices.py)
        parent_id = IntegerField(null=True)  # the reseller above it, NULL = top level (migrations/0013_resellers.py)
        # auto-recharge: all NULL = off (migrations/0012_recharge.py)
        auto_recharge_micros = BigIntegerField(null=True)
        auto_recharge_below_micros = BigIntegerField(null=True)
        auto_recharge_max_per_day = IntegerField(null=True)
        recharge_failures = IntegerField(default=0)  # failed charges in a row since the last credit

    class AccountCli(Base):
        number = CharField(unique=True)
        account = ForeignKeyField(Account, backref="clis", on_delete="CASCADE")

    class LedgerEntry(Base):
        account = ForeignKeyField(Account, backref="ledger")
        amount_micros = BigIntegerField()
        kind = CharField()  # topup | adjust | call | charge | credit | arrears (fsbill.db.charges)
        reference = CharField(null=True)
        call_uuid = CharField(null=True)
        balance_after_micros = BigIntegerField()
        note = TextField(default="")
        created_us = BigIntegerField()

        class Meta:
            indexes = ((("account", "reference"), True),)

    class LiveCall(Base):  # one row per socket visit of a channel (migrations/0002_visit.py)
        uuid = CharField()
        visit = IntegerField(default=1)
        account = ForeignKeyField(Account, backref="live_calls")
        node = CharField()
        caller = CharField(default="")
        destination = CharField(default="")
        prefix = CharField(default="")
        rate_micros = BigIntegerField()
        connect_fee_micros = BigIntegerField()
        initial_increment_s = IntegerField()
        increment_s = IntegerField()
        min_duration_s = IntegerField()
        rounding_decimals = IntegerField()
        rounding_method = CharField()
        granted_s = IntegerField()
        held_micros = BigIntegerField()
        debited_micros = BigIntegerField(default=0)
        balance_before_micros = BigIntegerField(default=0)
        created_us = BigIntegerField()
        answered_us = BigIntegerField(null=True)
        cutoff_us = BigIntegerField(null=True)
        lease_until_us = BigIntegerField()
        hold_until_us = BigIntegerField()
        instance = CharField(default="")  # the process enforcing it (migrations/0005_restart.py)
        # FreeSWITCH's CDR fields (migrations/0003_cdr_channel_fields.py)
        bleg_uuid = CharField(default="")
        accountcode = CharField(default="")
        caller_id_name = CharField(default="")
        context = CharField(default="")
        # inbound numbers (migrations/0014_dids.py): the number called, why it is unbilled
        did = CharField(default="")
        reason = CharField(default="")
        bundle_s = IntegerField(default=0)  # of its grant, paid from bundles (migrations/0015_bundles.py)

        class Meta:
            primary_key = CompositeKey("uuid", "visit")

    class Cdr(Base):
        uuid = CharField()
        visit = IntegerField(default=1)
        account_code = CharField(default="")
        node = CharField(default="")
        caller = CharField(default="")
        destination = CharField(default="")
        prefix = CharField(default="")
        currency = CharField(default="")
        rate_micros = BigIntegerField(default=0)
        connect_fee_micros = BigIntegerField(default=0)
        initial_increment_s = IntegerField(default=0)
        increment_s = IntegerField(default=0)
        min_duration_s = IntegerField(default=0)
        start_us = BigIntegerField()
        answer_us = BigIntegerField(null=True)
        end_us = BigIntegerField(null=True)
        billsec = IntegerField(default=0)
        billed_s = IntegerField(default=0)
        cost_micros = BigIntegerField(default=0)
        charged_micros = BigIntegerField(default=0)
        uncollected_micros = BigIntegerField(default=0)
        balance_before_micros = BigIntegerField(null=True)
        balance_after_micros = BigIntegerField(null=True)
        hangup_cause = CharField(default="")
        result = CharField()  # completed | cut_off | rejected | unanswered | recovered
        reason = CharField(default="")
        created_us = BigIntegerField()
        vendor = CharField(default="")  # the vendor that carried the call (migrations/0004)
        vendor_cost_micros = BigIntegerField(null=True)
        margin_micros = BigIntegerField(null=True)
        # FreeSWITCH's CDR fields (migrations/0003_cdr_channel_fields.py)
        bleg_uuid = CharField(default="")
        accountcode = CharField(default="")
        caller_id_name = CharField(default="")
        context = CharField(default="")
        # inbound numbers (migrations/0014_dids.py), after the columns the CGRateS mapping numbers
        direction = CharField(default="outbound")  # outbound | inbound
        did = CharField(default="")
        bundle_s = IntegerField(default=0)  # bundle seconds used (migrations/0015_bundles.py)

    class Did(Base):  # an inbound number (migrations/0014_dids.py, fsbill.db.dids)
        number = CharField(unique=True)
        account_id = IntegerField()
        dial_string = CharField()
        rate_micros = BigIntegerField(null=True)  # None: free inbound
        connect_fee_micros = BigIntegerField(default=0)
        initial_increment_s = IntegerField(default=1)
        increment_s = IntegerField(default=1)
        on_empty = CharField(default="reject")  # reject | free
        max_channels = IntegerField(default=0)  # 0 = no limit
        status = CharField(default="active")  # active | removed
        created_us = BigIntegerField()
        updated_us = BigIntegerField()

    class Vendor(Base):
        name = CharField(unique=True)
        deck = ForeignKeyField(Tariff, column_name="deck_id")  # its cost deck: a tariff named vendor:NAME
        dial_string = CharField(max_length=1024)
        max_channels = IntegerField(default=0)  # 0 = no limit
        live_channels = IntegerField(default=0)
        weight = IntegerField(default=0)
        status = CharField(default="active")  # active | suspended | closed
        created_us = BigIntegerField()

    class LiveCallVendor(Base):
        call_uuid = CharField()
        visit = IntegerField(default=1)  # the call's socket visit (migrations/0002)
        vendor = ForeignKeyField(Vendor, column_name="vendor_id")
        position = IntegerField()
        leg_uuid = CharField()
        answered = IntegerField(default=0)  # 0 holding a channel, 1 the leg FreeSWITCH bridged, -1 released
        # the vendor's rate for the call, frozen at authorization like the customer's
        prefix = CharField(default="")
        rate_micros = BigIntegerField()
        connect_fee_micros = BigIntegerField()
        initial_increment_s = IntegerField()
        increment_s = IntegerField()
        min_duration_s = IntegerField()
        rounding_decimals = IntegerField()
        rounding_method = CharField()

    class VendorAttempt(Base):
        call_uuid = CharField()
        visit = IntegerField(default=1)
        vendor = CharField()
        position = IntegerField()
        result = CharField()  # answered | failed
        cause = CharField(default="")
        start_us = BigIntegerField()

        class Meta:
            indexes = ((("uuid", "visit"), True),)

    class SwitchCdr(Base):  # a channel's CDR as FreeSWITCH posted it (mod_json_cdr)
        uuid = CharField(unique=True)
        switch = CharField(default="")
        answer_us = BigIntegerField(null=True)
        end_us = BigIntegerField(null=True)
        start_us = BigIntegerField(default=0)
        billsec = IntegerField(default=0)
        hangup_cause = CharField(default="")
        destination = CharField(default="")
        received_us = BigIntegerField()
        applied = CharField(default="")
        body = TextField(default="")

    class Recovery(Base):  # what a recovered leg's CDR may still be corrected to
        uuid = CharField()
        visit = IntegerField(default=1)
        account_id = IntegerField()
        granted_s = IntegerField()
        grant_micros = BigIntegerField()
        rounding_decimals = IntegerField()
        rounding_method = CharField()
        created_us = BigIntegerField()
        corrected_us = BigIntegerField(null=True)

        class Meta:
            indexes = ((("uuid", "visit"), True),)

    class AuditEntry(Base):  # one changed field of an account, tariff or vendor (migrations/0006)
        created_us = BigIntegerField()
        actor = CharField()
        action = CharField()  # add | set | close | cli_add | cli_remove
        entity = CharField()  # account | tariff | vendor
        subject = CharField()  # the account's code, the tariff's or vendor's name
        field = CharField()
        old_value = TextField(null=True)
        new_value = TextField(null=True)

    class CallHold(Base):  # what an ancestor of the payer holds for a live call (migrations/0013_resellers.py)
        uuid = CharField()
        visit = IntegerField()
        account_id = IntegerField()
        depth = IntegerField()  # 0 = the top of the chain
        prefix = CharField(default="")
        rate_micros = BigIntegerField()
        connect_fee_micros = BigIntegerField()
        initial_increment_s = IntegerField()
        increment_s = IntegerField()
        min_duration_s = IntegerField()
        rounding_decimals = IntegerField()
        rounding_method = CharField()
        held_micros = BigIntegerField()
        debited_micros = BigIntegerField(default=0)

        class Meta:
            primary_key = CompositeKey("uuid", "visit", "account_id")

    class CdrLevel(Base):  # one ancestor level of a settled call (migrations/0013_resellers.py)
        uuid = CharField()
        visit = IntegerField()
        depth = IntegerField()
        account_code = CharField()
        currency = CharField(max_length=3)
        prefix = CharField(default="")
        rate_micros = BigIntegerField()
        billed_s = IntegerField()
        cost_micros = BigIntegerField()
        charged_micros = BigIntegerField()
        uncollected_micros = BigIntegerField(default=0)
        margin_micros = BigIntegerField(null=True)  # the level below's cost minus this one's
        # the exchange rate the margin was converted at (migrations/0016_fx.py); NULL: one currency
        fx_pair = CharField(null=True)  # "RUB/USD": 1 RUB = fx_rate USD
        fx_rate = CharField(null=True)  # exact decimal text, as set with `fsbill fx set`

        class Meta:
            primary_key = CompositeKey("uuid", "visit", "depth")

    class FxRate(Base):  # exchange rates between levels (migrations/0016_fx.py, fsbill.db.fx)
        source = CharField(max_length=3)
        target = CharField(max_length=3)
        rate = CharField()  # exact decimal text: 1 source = rate target
        created_us = BigIntegerField()
        updated_us = BigIntegerField()

        class Meta:
            indexes = ((("source", "target"), True),)

    class CallStart(Base):  # calls admitted, for max_calls_per_minute (migrations/0007_fraud_guards.py)
        account_id = IntegerField()
        created_us = BigIntegerField()

    # recurring charges (migrations/0010_plans.py, fsbill.db.plans, fsbill.db.charges)
    class Plan(Base):
        name = CharField(unique=True)
        fee_micros = BigIntegerField()
        period = CharField()  # monthly | daily
        currency = CharField(max_length=3)
        created_us = BigIntegerField()
        bundle_id = IntegerField(null=True)  # the bundle it sells (migrations/0015_bundles.py)

    class Subscription(Base):
        account_id = IntegerField()
        plan_id = IntegerField()
        quantity = IntegerField(default=1)
        start_us = BigIntegerField()
        end_us = BigIntegerField(null=True)
        created_us = BigIntegerField()
        done_us = BigIntegerField(null=True)  # nothing more can fall due

    class Charge(Base):  # one charge or credit of a subscription's period
        subscription_id = IntegerField()
        account_id = IntegerField()
        period_start_us = BigIntegerField()
        kind = CharField()  # charge | credit
        from_us = BigIntegerField()
        until_us = BigIntegerField()
        amount_micros = BigIntegerField()
        taken_micros = BigIntegerField()
        arrears_micros = BigIntegerField(default=0)
        created_us = BigIntegerField()
        node = CharField(default="")

    class Lease(Base):  # one node at a time (fsbill.db.charges.take_lease)
        name = CharField(primary_key=True)
        holder = CharField(default="")
        until_us = BigIntegerField(default=0)

    class LowBalanceState(Base):  # a disarmed (account, level) (migrations/0011_notices.py)
        account_id = IntegerField()
        level_micros = BigIntegerField()
        created_us = BigIntegerField()

        class Meta:
            indexes = ((("account_id", "level_micros"), True),)

    class Notice(Base):  # the outbox (migrations/0011_notices.py, fsbill.db.notices)
        uid = CharField(unique=True, max_length=64)  # the stable id receivers see (webhook-id)
        kind = CharField(max_length=64)
        account_code = CharField(default="")
        payload = TextField()
        created_us = BigIntegerField()
        status = CharField(default="pending")  # pending | delivered
        webhook_status = CharField(default="pending")  # pending | sent | none
        email_status = CharField(default="pending")  # pending | sent | none
        attempts = IntegerField(default=0)
        next_attempt_us = BigIntegerField()
        claimed_by = CharField(default="")
        claimed_until_us = BigIntegerField(default=0)
        last_error = TextField(default="")
        delivered_us = BigIntegerField(null=True)

    class Recharge(Base):  # an auto-recharge request (migrations/0012_recharge.py, fsbill.db.recharge)
        uid = CharField(unique=True, max_length=64)  # its key: the reference its credit carries
        account_id = IntegerField()
        amount_micros = BigIntegerField()
        status = CharField(default="open")  # open | credited | failed
        day = CharField(max_length=10)  # the local date it was made on (the tariff's time zone)
        created_us = BigIntegerField()
        closed_us = BigIntegerField(null=True)
        entry_id = IntegerField(null=True)  # the ledger entry that credited it

        class Meta:
            indexes = ((("account_id", "day"), False), (("account_id", "status"), False))

    class ApiToken(Base):  # the HTTP API's bearer tokens, as hashes (migrations/0008_api.py)
        name = CharField(max_length=64, unique=True)
        role = CharField(max_length=16)  # admin | readonly | account
        account_code = CharField(max_length=64, null=True)  # role account: the one it may read
        token_sha256 = CharField(max_length=64, unique=True)
        created_us = BigIntegerField()
        revoked_us = BigIntegerField(null=True)

    class ApiIdempotency(Base):  # a money-moving request's Idempotency-Key and its response
        key = CharField(max_length=255, unique=True)
        fingerprint = CharField(max_length=64)  # SHA-256 of method, path and body
        token_name = CharField(max_length=64)
        status = IntegerField()
        body = TextField()
        created_us = BigIntegerField()

    class Payment(Base):  # a gateway's credit or PayPal refund, once per identity (migrations/0009_payments.py)
        identity = CharField(unique=True)  # stripe:<payment intent> | paypal:<txn_id>
        provider = CharField()  # stripe | paypal
        kind = CharField()  # credit | refund
        parent_id = IntegerField(null=True)  # a refund's credit
        account_id = IntegerField()
        currency = CharField(max_length=3)
        amount_micros = BigIntegerField()
        refunded_micros = BigIntegerField(default=0)  # of a credit: refunds recorded, taken or owed
        owed_micros = BigIntegerField(default=0)  # of those, what could not be taken (live calls held it)
        reference = CharField(null=True)  # the ledger entry's
        notice_id = IntegerField(null=True)
        created_us = BigIntegerField()

    class PaymentNotice(Base):  # a gateway's notification as received (migrations/0009_payments.py)
        provider = CharField()
        key = CharField(unique=True)  # stripe-event:<event id> | paypal-ipn:<sha256 of the body>
        kind = CharField(default="")  # credit | refund | refund_total | '' (not read yet)
        status = (
            CharField()
        )  # pending | credited | refunded | duplicate | unmatched | applied | rejected | invalid | ignored
        identity = CharField(default="")  # the payment it names (a refund: the refund's own, PayPal)
        parent = CharField(default="")  # a refund's credit
        account = CharField(default="")  # the account code the notice names
        amount_micros = BigIntegerField(null=True)
        currency = CharField(default="")
        reference = CharField(default="")
        reason = TextField(default="")
        payment_id = IntegerField(null=True)
        body = TextField(default="")  # the raw notice (PayPal: latin-1, so any bytes round-trip)
        received_us = BigIntegerField()
        updated_us = BigIntegerField()
        attempts = IntegerField(default=0)  # PayPal verification attempts
        next_attempt_us = BigIntegerField(null=True)

    # bundles of minutes (migrations/0015_bundles.py, fsbill.db.bundles)
    class Bundle(Base):
        name = CharField(unique=True)
        seconds = BigIntegerField()
        prefixes = TextField(default="")  # comma-separated; '' = every destination
        rollover_max_s = BigIntegerField(default=0)
        increment_s = IntegerField(default=1)
        created_us = BigIntegerField()

    class AccountBundle(Base):  # one balance per subscription to a plan with a bundle
        account_id = IntegerField()
        subscription_id = IntegerField(unique=True)
        bundle_id = IntegerField()
        period_start_us = BigIntegerField()
        period_end_us = BigIntegerField()
        seconds = BigIntegerField(default=0)  # left this period, held seconds included
        held_s = BigIntegerField(default=0)  # held by live calls
        created_us = BigIntegerField()

    class BundleHold(Base):  # what a live call holds on a balance
        uuid = CharField()
        visit = IntegerField()
        account_bundle_id = IntegerField()
        position = IntegerField()
        held_s = BigIntegerField()
        period_start_us = BigIntegerField()

        class Meta:
            primary_key = CompositeKey("uuid", "visit", "account_bundle_id")

    class BundleEntry(Base):  # the ledger of bundle seconds
        account_bundle_id = IntegerField()
        account_id = IntegerField()
        delta_s = BigIntegerField()
        kind = CharField()  # given | carried | expired | call
        period_start_us = BigIntegerField()
        call_uuid = CharField(default="")
        visit = IntegerField(default=0)
        seconds_after = BigIntegerField()
        created_us = BigIntegerField()

    models = SimpleNamespace(
        Tariff=Tariff,
        Rate=Rate,
        Account=Account,
        AccountCli=AccountCli,
        LedgerEntry=LedgerEntry,
        LiveCall=LiveCall,
        Cdr=Cdr,
        Vendor=Vendor,
        LiveCallVendor=LiveCallVendor,
        VendorAttempt=VendorAttempt,
        SwitchCdr=SwitchCdr,
        Recovery=Recovery,
        AuditEntry=AuditEntry,
        CallStart=CallStart,
        CallHold=CallHold,
        CdrLevel=CdrLevel,
        Plan=Plan,
        Subscription=Subscription,
        Charge=Charge,
        Lease=Lease,
        LowBalanceState=LowBalanceState,
        Notice=Notice,
        Recharge=Recharge,
        ApiToken=ApiToken,
        ApiIdempotency=ApiIdempotency,
        Payment=Payment,
        PaymentNotice=PaymentNotice,
        Did=Did,
        Bundle=Bundle,
        AccountBundle=AccountBundle,
        BundleHold=BundleHold,
        BundleEntry=BundleEntry,
        FxRate=FxRate,
    )
    all_models = [
        Tariff,
        Rate,
        Account,
        AccountCli,
        LedgerEntry,
        LiveCall,
        Cdr,
        Vendor,
        LiveCallVendor,
        VendorAttempt,
        SwitchCdr,
        Recovery,
        AuditEntry,
        CallStart,
        CallHold,
        CdrLevel,
        Plan,
        Subscription,
        Charge,
        Lease,
        LowBalanceState,
        Notice,
        Recharge,
        ApiToken,
        ApiIdempotency,
        Payment,
        PaymentNotice,
        Did,
        Bundle,
        AccountBundle,
        BundleHold,
        BundleEntry,
        FxRate,
    ]
    database.bind(all_models, bind_refs=False, bind_backrefs=False)
    models.all = all_models
    return models

"""The settings of what runs around the enforcer in `fsbill serve`: the HTTP API, the payment
gateways, recurring charges and notices (each its own YAML section; fsbill.config loads them)."""

from __future__ import annotations

from dataclasses import dataclass, field

from fsbill.redaction import SECRET

STRIPE_TOLERANCE_S = 300  # Stripe's own libraries' default: a signature older than this is a replay
PAYPAL_VERIFY_URL = (
    "https://ipnpb.paypal.com/cgi-bin/webscr"  # the sandbox: https://ipnpb.sandbox.paypal.com/cgi-bin/webscr
)


@dataclass(frozen=True)
class StripeConfig:
    """Stripe webhooks to `POST /v1/payments/stripe` (docs/PAYMENTS.md); off while
    `webhook_secret` is empty."""

    webhook_secret: str = field(default="", metadata=SECRET)  # whsec_..., the endpoint's signing secret
    tolerance_s: int = STRIPE_TOLERANCE_S


@dataclass(frozen=True)
class PaypalConfig:
    """PayPal IPN to `POST /v1/payments/paypal` (docs/PAYMENTS.md); off while `receiver_email`
    is empty."""

    receiver_email: str = ""  # the PayPal account payments must have gone to
    verify_url: str = PAYPAL_VERIFY_URL
    verify_timeout_s: float = 30.0
    retry_max_s: int = 3600  # verification retried with backoff doubling up to this


@dataclass(frozen=True)
class Payments:
    """Payment gateways (`payments:`): Stripe and PayPal, each credited exactly once."""

    stripe: StripeConfig = field(default_factory=StripeConfig)
    paypal: PaypalConfig = field(default_factory=PaypalConfig)


@dataclass(frozen=True)
class ApiConfig:
    """The HTTP API (`api:`, docs/API.md); off while `listen` is empty. Its bearer tokens live
    in the database (`fsbill api token add`), never in this file."""

    listen: str = ""

    def address(self) -> tuple[str, int] | None:
        from fsbill.config import parse_hostport  # the one address parser; config imports this module

        return parse_hostport(self.listen, "api.listen") if self.listen else None


@dataclass(frozen=True)
class Charges:
    """Recurring charges posted by `fsbill serve` itself (`charges:`, docs/PLANS.md): every
    `interval_s`, on one node at a time (a lease in the database). `enabled: false` leaves
    it to cron running `fsbill charges run`."""

    enabled: bool = True
    interval_s: int = 300


@dataclass(frozen=True)
class WebhookConfig:
    """Where notices are POSTed (`notify.webhook`), signed per Standard Webhooks with `secret`
    (whsec_ + base64 of the key). Off while `url` is empty."""

    url: str = ""
    secret: str = field(default="", metadata=SECRET)
    timeout_s: float = 10.0


@dataclass(frozen=True)
class SmtpConfig:
    """The mail server notices are sent through (`notify.smtp`) to each account's `--email`.
    Off while `host` is empty. YAML key `from` is the sender's address."""

    host: str = ""
    port: int = 25
    from_: str = field(default="", metadata={"key": "from"})
    username: str = ""
    password: str = field(default="", metadata=SECRET)
    starttls: bool = False
    timeout_s: float = 10.0


@dataclass(frozen=True)
class NotifyConfig:
    """Delivery of notices by `fsbill serve` (docs/NOTICES.md): at least once, with retries
    every retry_first_s × 2^n up to retry_max_s; a deliverer holds a claimed notice for lease_s."""

    webhook: WebhookConfig = field(default_factory=WebhookConfig)
    smtp: SmtpConfig = field(default_factory=SmtpConfig)
    poll_s: float = 2.0
    retry_first_s: float = 10.0
    retry_max_s: float = 3600.0
    lease_s: float = 60.0
    batch: int = 50

    @property
    def enabled(self) -> bool:
        return bool(self.webhook.url or self.smtp.host)


__all__ = [
    "PAYPAL_VERIFY_URL",
    "STRIPE_TOLERANCE_S",
    "ApiConfig",
    "Charges",
    "NotifyConfig",
    "PaypalConfig",
    "Payments",
    "SmtpConfig",
    "StripeConfig",
    "WebhookConfig",
]

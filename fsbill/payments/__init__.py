"""Payment gateways: Stripe webhooks and PayPal IPN, each credited exactly once (docs/PAYMENTS.md).

`PaymentsApp` serves `POST /v1/payments/stripe` and `POST /v1/payments/paypal` (mounted by the
API server); `PaypalVerifier` is the greenlet that verifies stored PayPal notices; `PATHS` are
the two routes' OpenAPI 3.1 path items. The books side is fsbill.db.payments.
"""

from fsbill.payments.app import PAYPAL_PATH, PREFIX, STRIPE_PATH, PaymentsApp
from fsbill.payments.openapi import PATHS
from fsbill.payments.verifier import PaypalVerifier

__all__ = ["PATHS", "PAYPAL_PATH", "PREFIX", "STRIPE_PATH", "PaymentsApp", "PaypalVerifier"]

"""`fsbill cdr export` reads CDRs a page at a time (bounded memory, short reads): the pages add
up to exactly the rows and order of one query, ties on the start time included."""

from fsbill.core.records import RejectionRecord
from fsbill.db import calls as dbcalls
from fsbill.db import ledger
from fsbill.db.cdr_export import iter_cdrs


def test_pages_add_up_to_the_whole_export_in_order(store):
    ledger.create_tariff(store, "retail", "EUR", 1)
    ledger.create_account(store, "acme", "retail", 1)
    for i in range(11):
        dbcalls.write_rejection(
            store,
            RejectionRecord(
                uuid=f"u-{i:02d}",
                account_code="acme" if i % 2 else "",
                node="n",
                caller="1555",
                destination="49",
                currency="EUR",
                start_us=1_000_000 * (i // 3),  # three CDRs share each start: the id breaks the tie
                reason="no_rate",
                hangup_cause="",
            ),
            now_us=5,
        )
    whole = [c.uuid for c in dbcalls.cdrs(store)]
    assert len(whole) == 11
    for page in (1, 2, 3, 5000):
        assert [c.uuid for c in iter_cdrs(store, page_rows=page)] == whole
    acme = [c.uuid for c in dbcalls.cdrs(store, account="acme", since_us=1_000_000)]
    assert [c.uuid for c in iter_cdrs(store, account="acme", since_us=1_000_000, page_rows=2)] == acme
    assert list(iter_cdrs(store, until_us=0)) == []

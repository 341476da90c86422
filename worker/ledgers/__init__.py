"""The company ledgers in amoCRM: time notes, hour packages and quotas (spec §7).

amoCRM stays the source of truth. The worker reads the time notes account-wide by
``updated_at`` (one request when nothing changed), the companies linked to support
requests by ``updated_at`` and, the first time it sees one, by id, and keeps for every
support request the few facts the quotas count (company, tariff, tags, registration).
The rules themselves are :mod:`sla.ledger`'s; this package feeds them and turns their
answer into field values and tasks: :mod:`.read` reads amoCRM, :mod:`.plan` plans, on what
:mod:`.cache` holds of requests (:mod:`.facts`) and companies (:mod:`.company`), under the
settings of :mod:`.options`.

The choices where the spec is silent are the README's ("For admins: switching the ledgers
on"); the step a cycle takes is :mod:`.step`, the statement ``explain --company`` prints
:mod:`.statement`.
"""

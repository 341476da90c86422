"""The company ledgers in amoCRM: time notes, hour packages and quotas (spec §7).

amoCRM stays the source of truth. The worker reads the time notes account-wide by
``updated_at`` (one request when nothing changed), the companies linked to support
requests by ``updated_at`` and, the first time it sees one, by id, and keeps for every
support request the few facts the quotas count (company, tariff, tags, registration).
The rules themselves are :mod:`sla.ledger`'s; this package feeds them and turns their
answer into field values and tasks: :mod:`.read` reads amoCRM, :mod:`.plan` plans, on what
:mod:`.cache` holds of requests (:mod:`.facts`) and companies (:mod:`.company`), under the
settings of :mod:`.options`.

Choices where the spec is silent:

* A company's package is the one its «Пакет: часов» and «Пакет: оплачен» fields name
  now; entries outside its validity are work outside a package.
* A company's plan, for its «Квоты» summary, is the tariff of its latest request.
* Quota tasks and the «Пакет: исчерпан» flag go to open requests only; a request closed
  before the worker saw it over a limit gets neither.
* The package task comes when a package is used up while still valid.
"""

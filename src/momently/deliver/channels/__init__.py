"""Channel adapters, one per module, each importing only its own driver.

Every adapter implements :class:`momently.deliver.types.Channel`: ``send``
returns the provider's id or raises a ``RetryableSendError`` (the provider is
down, slow, throttling, or refuses our credentials — worth retrying, and counted
against the provider's health so the outbox fails over) or a
``PermanentSendError`` (this message or address is refused — dead at once).

What dedupes a send that a crash left unacknowledged (sent, not marked sent):

============  =====================================  ==========================================
channel       idempotency key travels as             who drops the duplicate
============  =====================================  ==========================================
email (SMTP)  ``Message-ID: <key@domain>``           the receiver: SMTP relays do not dedupe;
                                                     mailbox providers that thread on
                                                     Message-ID show one message
webhook       ``webhook-id`` (Standard Webhooks)     the receiver, as the spec asks it to
Web Push      ``Topic`` header and payload ``key``   the push service replaces an undelivered
                                                     message of the same topic; the service
                                                     worker's notification ``tag`` replaces
                                                     a shown one
SMS (Twilio)  (none: the Messages API has no         nobody — a duplicate SMS is possible;
              idempotency key)                       name the channel in ``at_most_once`` to
                                                     drop instead of resend
in-app        the SSE event ``id``                   the hub (one entry per key) and the
                                                     snippet (ignores an id it has shown)
============  =====================================  ==========================================
"""

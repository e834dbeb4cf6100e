"""Where a delivery goes: the recipient directory is the one place a phone or an openid lives.

- A delivery keeps its address masked (what the admin and the API show) and a reference to its
  directory entry (`recipient`); its channel says which of the entry's addresses it goes to.
- The engine puts the real address on the delivery in memory right after it claims it
  (`deliveries_fill_addresses`: the claim in channels/sending.py, reconciliation, the receipt
  pull), so backends read `delivery.address` as before; `Delivery.save` keeps it masked.
- Every delivery has a directory entry: inline addresses update the directory, a one-time code
  goes to an entry named by the phone's keyed hash (scenarios/otp.py), a test send to a test
  recipient's entry. So no address needs a second encrypted home; a WeCom group robot is the
  one channel without a person's address (the account's key says where it goes).
- A person is found by an address through its keyed hash (`recipients_find`), never by the
  clear value, which is not in the table.
"""

from django.db import transaction
from django.db.models import Q

from .fields import keyed_hash
from .masking import mask_address
from .models import ADDRESS_FIELDS, HASHED, Channel, ChannelAccount, Delivery, Recipient

# Which directory field holds a channel's address.
CHANNEL_FIELD = {
    Channel.WECHAT_MINI_SUBSCRIBE: "wechat_mini_openid",
    Channel.WECHAT_OA_TEMPLATE: "wechat_oa_openid",
    Channel.WECOM_APP: "wecom_userid",
    Channel.APP_PUSH: "push_registration_ids",
    Channel.SMS: "phone",
}


def address_for(*, channel: str, recipient: Recipient | None, account: ChannelAccount | None = None) -> str:
    """The recipient's address on a channel, in clear, or "" when they have none there."""
    if channel == Channel.WECOM_ROBOT:
        # A group robot posts to its group; the account holds the webhook key.
        return "robot"
    if recipient is None:
        return ""
    if channel == Channel.INBOX:
        return f"{recipient.audience}:{recipient.external_id}"
    field = CHANNEL_FIELD.get(channel)
    if field is None:
        return ""
    value = getattr(recipient, field)
    return ",".join(value or []) if isinstance(value, list) else value


def masked_address(channel: str, address: str) -> str:
    return mask_address(channel, address)


def deliveries_fill_addresses(deliveries: list[Delivery]) -> None:
    """Put each delivery's real address on it, in memory only, from its directory entry: one
    query for the entries not loaded with the deliveries. A delivery whose entry is gone, or no
    longer has an address on the channel (erased), gets "" and its backend refuses it."""
    cached = Delivery.recipient.is_cached
    wanted = {d.recipient_id for d in deliveries if d.recipient_id is not None and not cached(d)}
    loaded = Recipient.objects.in_bulk(wanted) if wanted else {}
    for delivery in deliveries:
        recipient = delivery.recipient if cached(delivery) else loaded.get(delivery.recipient_id)
        delivery.address = address_for(channel=delivery.channel, recipient=recipient)


def recipients_find(*, field: str, value: str) -> list[Recipient]:
    """Directory entries holding this address (a phone may be a patient's and a code's entry)."""
    if field not in HASHED:
        raise ValueError(f"not a searchable address: {field}")
    digest = keyed_hash(field, value)
    if not digest:
        return []
    return list(Recipient.objects.filter(**{f"{field}_hash": digest}).order_by("audience", "external_id"))


def recipients_matching(value: str) -> list[int]:
    """Ids of the entries with this value as any of their searchable addresses (the admin's search)."""
    match = Q()
    for field in HASHED:
        digest = keyed_hash(field, value)
        if digest:
            match |= Q(**{f"{field}_hash": digest})
    return sorted(Recipient.objects.filter(match).values_list("pk", flat=True)) if match else []


def directory_rehash(*, batch_size: int = 1000) -> int:
    """Every entry's addresses decrypted and saved again: encrypted with the first key, hashed
    with the current hash key. A batch per transaction; returns the entries done."""
    done, after = 0, 0
    while True:
        with transaction.atomic():
            batch = list(Recipient.objects.select_for_update().filter(pk__gt=after).order_by("pk")[:batch_size])
            if not batch:
                return done
            for recipient in batch:
                for name in ADDRESS_FIELDS:
                    setattr(recipient, name, getattr(recipient, name))  # clear in memory: encrypted anew
                for name in HASHED:
                    setattr(recipient, f"{name}_hash", keyed_hash(name, getattr(recipient, name)))
            Recipient.objects.bulk_update(batch, [*ADDRESS_FIELDS, *(f"{n}_hash" for n in HASHED)])
        done += len(batch)
        after = batch[-1].pk

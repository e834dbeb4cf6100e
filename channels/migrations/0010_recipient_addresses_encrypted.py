"""The recipient directory's addresses encrypted at rest, each searchable one beside its keyed
hash; deliveries keep their address masked.

Reversible for the directory (the reverse decrypts the addresses back into clear columns). One-way
for deliveries: a masked address cannot be unmasked; the reverse writes back each delivery's
address as its directory entry holds it now (the same one unless the person changed it since)."""

import json

from django.db import migrations

import channels.fields
from channels.fields import keyed_hash, seal, unseal
from channels.masking import mask_address

TEXT = ("phone", "wechat_mini_openid", "wechat_oa_openid", "wechat_unionid", "wecom_userid")
CHANNEL_FIELD = {
    "wechat_mini_subscribe": "wechat_mini_openid",
    "wechat_oa_template": "wechat_oa_openid",
    "wecom_app": "wecom_userid",
    "app_push": "push_registration_ids",
    "sms": "phone",
}
BATCH = 2000


def _rows(cursor, sql, params=()):
    cursor.execute(sql, params)
    while rows := cursor.fetchmany(BATCH):
        yield from rows


def encrypt(apps, schema_editor):
    connection = schema_editor.connection
    q = connection.ops.quote_name
    recipients, deliveries = q("channels_recipient"), q("channels_delivery")
    columns = [*TEXT, "push_registration_ids"]
    with connection.cursor() as read, connection.cursor() as write:
        updates = []
        for pk, *values in list(_rows(read, f"SELECT id, {', '.join(map(q, columns))} FROM {recipients}")):
            clear = dict(zip(columns, values, strict=True))
            ids = clear["push_registration_ids"]
            ids = json.loads(ids) if isinstance(ids, str) and ids else (ids or [])
            sealed = [seal(clear[f]) if clear[f] else "" for f in TEXT]
            sealed.append(seal(json.dumps(ids, ensure_ascii=False)) if ids else "")
            hashes = [keyed_hash(f, clear[f] or "") for f in TEXT]
            updates.append([*sealed, *hashes, pk])
        assignments = ", ".join(f"{q(c)} = %s" for c in [*columns, *(f"{f}_hash" for f in TEXT)])
        for start in range(0, len(updates), BATCH):
            write.executemany(
                f"UPDATE {recipients} SET {assignments} WHERE id = %s",  # noqa: S608 (names are ours)
                updates[start : start + BATCH],
            )
        masked = [
            (mask_address(channel, address), pk)
            for pk, channel, address in _rows(
                read,
                f"SELECT id, channel, address FROM {deliveries} WHERE address <> '' "  # noqa: S608
                "AND channel NOT IN ('inbox', 'wecom_robot')",
            )
        ]
        for start in range(0, len(masked), BATCH):
            write.executemany(
                f"UPDATE {deliveries} SET address = %s WHERE id = %s",  # noqa: S608
                masked[start : start + BATCH],
            )


def decrypt(apps, schema_editor):
    connection = schema_editor.connection
    q = connection.ops.quote_name
    recipients, deliveries = q("channels_recipient"), q("channels_delivery")
    columns = [*TEXT, "push_registration_ids"]
    with connection.cursor() as read, connection.cursor() as write:
        clear_by_pk = {}
        for pk, *values in list(_rows(read, f"SELECT id, {', '.join(map(q, columns))} FROM {recipients}")):
            clear = {c: unseal(v) if v else "" for c, v in zip(columns, values, strict=True)}
            clear["push_registration_ids"] = clear["push_registration_ids"] or "[]"
            clear_by_pk[pk] = clear
        assignments = ", ".join(f"{q(c)} = %s" for c in columns)
        write.executemany(
            f"UPDATE {recipients} SET {assignments} WHERE id = %s",  # noqa: S608
            [[clear[c] for c in columns] + [pk] for pk, clear in clear_by_pk.items()],
        )
        restored = []
        for pk, channel, recipient_id in _rows(
            read, f"SELECT id, channel, recipient_id FROM {deliveries} WHERE recipient_id IS NOT NULL"  # noqa: S608
        ):
            field = CHANNEL_FIELD.get(channel)
            if field and recipient_id in clear_by_pk:
                value = clear_by_pk[recipient_id][field]
                restored.append((",".join(json.loads(value)) if field == "push_registration_ids" else value, pk))
        write.executemany(f"UPDATE {deliveries} SET address = %s WHERE id = %s", restored)  # noqa: S608


class Migration(migrations.Migration):

    dependencies = [
        ('channels', '0009_policies'),
    ]

    operations = [
        migrations.AddField(
            model_name='recipient',
            name='phone_hash',
            field=channels.fields.KeyedHashField(db_index=True, source='phone'),
        ),
        migrations.AddField(
            model_name='recipient',
            name='wechat_mini_openid_hash',
            field=channels.fields.KeyedHashField(db_index=True, source='wechat_mini_openid'),
        ),
        migrations.AddField(
            model_name='recipient',
            name='wechat_oa_openid_hash',
            field=channels.fields.KeyedHashField(db_index=True, source='wechat_oa_openid'),
        ),
        migrations.AddField(
            model_name='recipient',
            name='wechat_unionid_hash',
            field=channels.fields.KeyedHashField(db_index=True, source='wechat_unionid'),
        ),
        migrations.AddField(
            model_name='recipient',
            name='wecom_userid_hash',
            field=channels.fields.KeyedHashField(db_index=True, source='wecom_userid'),
        ),
        migrations.AlterField(
            model_name='recipient',
            name='phone',
            field=channels.fields.EncryptedTextField(blank=True, max_length=32, verbose_name='phone'),
        ),
        migrations.AlterField(
            model_name='recipient',
            name='push_registration_ids',
            field=channels.fields.EncryptedListField(blank=True, default=list, verbose_name='push registration ids'),
        ),
        migrations.AlterField(
            model_name='recipient',
            name='wechat_mini_openid',
            field=channels.fields.EncryptedTextField(blank=True, max_length=64, verbose_name='mini-program openid'),
        ),
        migrations.AlterField(
            model_name='recipient',
            name='wechat_oa_openid',
            field=channels.fields.EncryptedTextField(blank=True, max_length=64, verbose_name='official-account openid'),
        ),
        migrations.AlterField(
            model_name='recipient',
            name='wechat_unionid',
            field=channels.fields.EncryptedTextField(blank=True, max_length=64, verbose_name='WeChat unionid'),
        ),
        migrations.AlterField(
            model_name='recipient',
            name='wecom_userid',
            field=channels.fields.EncryptedTextField(blank=True, max_length=64, verbose_name='WeCom user id'),
        ),
        migrations.RunPython(encrypt, decrypt, elidable=False),
    ]

from django.db import migrations


class Migration(migrations.Migration):
    """No query reads status changes by (status, at): the funnel and the coverage matrix count
    deliveries. The index only cost an entry per timeline row."""

    dependencies = [
        ("channels", "0012_index_diet"),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name="deliverystatuschange",
            name="status_change_funnel",
        ),
    ]

"""Thin Celery tasks of the project layer: status webhooks (notifycenter/webhooks.py)."""

from celery import shared_task
from django.conf import settings

from .webhooks import webhook_deliveries_purge, webhooks_publish, webhooks_send_due


@shared_task(name="notifycenter.tasks.publish_webhooks", ignore_result=True)
def publish_webhooks() -> int:
    """Unpublished status changes become webhook deliveries; then the due ones are sent."""
    published = webhooks_publish()
    webhooks_send_due()
    return published


@shared_task(name="notifycenter.tasks.send_webhooks", ignore_result=True)
def send_webhooks() -> int:
    return webhooks_send_due()


@shared_task(name="notifycenter.tasks.purge_old_webhook_deliveries", ignore_result=True)
def purge_old_webhook_deliveries() -> int:
    return webhook_deliveries_purge(older_than_days=settings.EVENT_RETENTION_DAYS)

"""Console actions in the objects' history. Django's admin writes a history entry (LogEntry) for
every form save and delete, but none for an action on a list (revoke, cancel, replay): who
revoked an API key or cancelled a broadcast was nowhere. `log_action_change` writes one entry
per object, as a form save does, so the object's history page and the console's recent actions
show who did it and when. The fields are stored as Django stores a form's (names untranslated)
and shown in the reader's language.

Here, in the lowest layer, so that every layer's admin can use it (imports point down)."""

from django.utils import translation


def log_action_change(model_admin, request, objects, *field_names: str) -> None:
    """One history entry per object: `request.user` changed `field_names` of it."""
    with translation.override(None):
        fields = [str(model_admin.model._meta.get_field(name).verbose_name) for name in field_names]
    message = [{"changed": {"fields": fields}}]
    for obj in objects:
        model_admin.log_change(request, obj, message)

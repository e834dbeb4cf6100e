"""Undoing the reference cycles that Django and DRF leave in every API request, so that reference
counting frees a request's objects when its answer is out and Python's cyclic collector has
nothing to stop the web process's threads for (notifycenter/middleware.py, DrfCyclesMiddleware).

Beside the contexts through which DRF's view, request and response hold one another (emptied by
the middleware itself), two kinds are undone here:
- Django's `View.setup` gives a view with `get` a `head` attribute, its own bound `get`;
- a DRF serializer and its fields: each bound field holds its serializer (`parent`), the
  serializer's cached `fields` hold the fields and the serializer again, a list field holds its
  `child` and the child its list field.

Here, in the lowest layer, so that every layer's views can use it (imports point down).
"""

from rest_framework.fields import Field
from rest_framework.serializers import BaseSerializer


def view_release(view) -> None:
    """Drop a view's `head`, when it is the view's own bound method (Django's View.setup)."""
    head = getattr(view, "__dict__", {}).get("head")
    if head is not None and getattr(head, "__self__", None) is view:
        del view.__dict__["head"]


def serializer_release(field: Field) -> None:
    """Unbind a serializer's (or a field's) fields and children from it, all the way down. Read
    what it validated first: `validated_data` and `errors` stay, `fields` is built anew if asked."""
    fields = field.__dict__.pop("fields", None)  # DRF caches the bound fields there
    children = list(fields.values()) if fields is not None else []
    if fields is not None:
        fields.serializer = None
    child = field.__dict__.get("child")
    if isinstance(child, Field):
        children.append(child)
    for each in children:
        each.__dict__.pop("parent", None)
        serializer_release(each)


def validated(serializer: BaseSerializer) -> dict:
    """`serializer.validated_data`, or DRF's ValidationError with its errors (the API's 400 as
    before), leaving no cycle behind either way."""
    try:
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data
    finally:
        serializer_release(serializer)

"""Generic list / detail / edit / delete views shared by every admin catalog model.

Each view opens with one access check (`require`) and reads objects only through the
model's `for_user` queryset, so what a user may see is decided in one place. Every write
happens in one transaction together with its audit entry.
"""

from django.contrib import messages
from django.contrib.admin.utils import NestedObjects
from django.contrib.auth.mixins import LoginRequiredMixin
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, router, transaction
from django.db.models import ProtectedError
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views import View

from portal import audit, tables
from portal.roles import CHANGE, VIEW, has_perm

CONFLICT = (
    "This conflicts with an entry someone else saved at the same moment, or with one that "
    "exists already: nothing was saved. Check the form and save it again."
)


def require(user, area: str, action: str) -> None:
    if not has_perm(user, area, action):
        raise PermissionDenied(f"You may not {action} {area.replace('_', ' ')}.")


class ObjectView(LoginRequiredMixin, View):
    """Base: a model, the queryset to read it from, and the permission area it belongs to."""

    queryset = None
    action = VIEW
    addable = True
    # The URL namespace of the model's pages; by default its app's label.
    url_namespace = ""

    @property
    def model(self):
        return self.queryset.model

    @property
    def area(self) -> str:
        return self.queryset.area

    def url_name(self, suffix: str) -> str:
        meta = self.model._meta
        return f"{self.url_namespace or meta.app_label}:{meta.model_name}_{suffix}"

    def dispatch(self, request, *args, **kwargs):
        if request.user.is_authenticated:
            require(request.user, self.area, self.action)
        return super().dispatch(request, *args, **kwargs)

    def get_queryset(self, request):
        return self.queryset.all().for_user(request.user, self.action)

    def get_object(self, request, pk):
        return get_object_or_404(self.get_queryset(request), pk=pk)

    def base_context(self, request) -> dict:
        meta = self.model._meta
        return {
            "model_name": meta.verbose_name,
            "model_name_plural": meta.verbose_name_plural,
            "can_change": has_perm(request.user, self.area, CHANGE),
            "add_url": reverse(self.url_name("add")) if self.addable else "",
            "list_url": reverse(self.url_name("list")),
        }


class ObjectListView(ObjectView):
    table = None
    filterset = None
    template_name = "generic/object_list.html"
    empty_message = ""

    def get(self, request):
        queryset = self.get_queryset(request)
        filterset = self.filterset(request.GET, queryset=queryset, request=request)
        table = self.table(filterset.qs)
        context = self.base_context(request) | {
            "table": table,
            "listing": tables.listing(table, request),
            "filter_form": filterset.form,
            "filtered": any(v for k, v in request.GET.items() if k not in ("sort", "page")),
            "empty_message": self.empty_message,
        }
        return render(request, self.template_name, context)


class ObjectDetailView(ObjectView):
    template_name = None

    def get(self, request, pk):
        obj = self.get_object(request, pk)
        context = self.base_context(request) | {"object": obj} | self.extra_context(request, obj)
        return render(request, self.template_name, context)

    def extra_context(self, request, obj) -> dict:
        return {}


class ObjectEditView(ObjectView):
    """Create (no pk) or edit (pk) one object through its form."""

    form_class = None
    template_name = "generic/object_edit.html"
    action = CHANGE

    def editable(self, obj) -> str:
        """An explanation why this object may not be edited, or '' when it may."""
        return ""

    def new_object(self, request):
        return self.model()

    def save(self, request, form):
        """Hook: save the valid form inside the view's transaction; a `ValidationError`
        rolls the save back and shows the form again with the message (an `IntegrityError`
        too, as a save that conflicts with another one)."""
        return form.save()

    def get(self, request, pk=None):
        obj = self.get_object(request, pk) if pk else self.new_object(request)
        if reason := self.editable(obj):
            messages.error(request, reason)
            return redirect(obj)
        form = self.form_class(instance=obj, user=request.user)
        return self.render_form(request, form, obj)

    def post(self, request, pk=None):
        obj = self.get_object(request, pk) if pk else self.new_object(request)
        if reason := self.editable(obj):
            messages.error(request, reason)
            return redirect(obj)
        tracker = audit.ChangeTracker(obj) if pk else None
        form = self.form_class(request.POST, instance=obj, user=request.user)
        if not form.is_valid():
            return self.render_form(request, form, obj)
        try:
            with transaction.atomic():
                obj = self.save(request, form)
                if tracker:
                    tracker.record(request.user)
                else:
                    audit.record_created(request.user, obj)
        except ValidationError as refused:
            # A rule checked while saving (e.g. "keep an Org admin"): nothing was saved.
            form.add_error(None, refused)
            return self.render_form(request, form, obj)
        except IntegrityError:
            # Someone else saved the same thing after the form was checked (two admins adding
            # one price at once): nothing was saved. Checked again, the form sees their
            # save and names the field where it can.
            form.full_clean()
            if form.is_valid():
                form.add_error(None, CONFLICT)
            return self.render_form(request, form, obj)
        verb = "Updated" if pk else "Created"
        detail = getattr(form, "success_detail", "")
        messages.success(request, f"{verb} {self.model._meta.verbose_name} “{obj}”. {detail}")
        return redirect(obj)

    def render_form(self, request, form, obj):
        context = self.base_context(request) | {"form": form, "object": obj}
        return render(request, self.template_name, context)


class ObjectDeleteView(ObjectView):
    """A confirm page that lists what depends on the object, then the delete."""

    template_name = "generic/object_delete.html"
    action = CHANGE

    def deletable(self, obj) -> str:
        return ""

    def delete(self, request, obj) -> None:
        """Hook: delete inside the view's transaction; a `ValidationError` rolls it back.

        The row is locked first: a row being inserted that refers to it (a workspace of
        this profile, a profile on this infrastructure) either committed before, and the
        delete sees it, or waits for the delete.
        """
        self.model._base_manager.select_for_update().filter(pk=obj.pk).exists()
        obj.delete()

    def dependents(self, obj):
        """What the delete does: (deleted with it, blocking it, kept with the link cleared).

        Blocking objects are the protected ones (PROTECT, or still in use for links that
        keep history: `pools.history`), each with its state and page when it has them.
        """
        collector = NestedObjects(using=router.db_for_write(self.model))
        collector.collect([obj])
        nested = collector.nested(lambda o: f"{o._meta.verbose_name.capitalize()}: {o}")
        protected = sorted(
            (_blocker(o) for o in collector.protected), key=lambda item: item["label"]
        )
        # nested() is [obj, [children...]]; the object itself is not a dependent.
        children = nested[1] if len(nested) > 1 else []
        return children, protected, _kept(collector)

    def get(self, request, pk):
        obj = self.get_object(request, pk)
        return self.render_confirm(request, obj)

    def render_confirm(self, request, obj):
        cascaded, protected, kept = self.dependents(obj)
        context = self.base_context(request) | {
            "object": obj,
            "cascaded": cascaded,
            "protected": protected,
            "kept": kept,
            "refusal": self.deletable(obj),
        }
        return render(request, self.template_name, context)

    def post(self, request, pk):
        obj = self.get_object(request, pk)
        if self.deletable(obj):
            return self.render_confirm(request, obj)
        before = audit.snapshot(obj)
        name = str(obj)
        try:
            with transaction.atomic():
                audit.record_deleted(request.user, obj, before)
                self.delete(request, obj)
        except ProtectedError:
            return self.render_confirm(request, obj)
        except ValidationError as refused:
            messages.error(request, " ".join(refused.messages))
            # The delete rolled back, but the instance in memory lost its primary key.
            return self.render_confirm(request, self.get_object(request, pk))
        messages.success(request, f"Deleted {self.model._meta.verbose_name} “{name}”.")
        return redirect(self.url_name("list"))


def _blocker(obj) -> dict:
    """A protected object on the delete page: what it is, its state, and its page."""
    label = f"{obj._meta.verbose_name.capitalize()}: {obj}"
    if hasattr(obj, "get_state_display"):
        label += f" ({obj.get_state_display().lower()})"
    url = obj.get_absolute_url() if hasattr(obj, "get_absolute_url") else ""
    return {"label": label, "url": url}


def _kept(collector) -> list[str]:
    """Objects that stay but lose their link to the deleted one (SET_NULL, history)."""
    counts: dict[str, int] = {}
    for (field, value), batches in collector.field_updates.items():
        if value is not None or not field.is_relation:
            continue
        n = sum(len(batch) if isinstance(batch, list) else batch.count() for batch in batches)
        if n:
            meta = field.model._meta
            name = str(meta.verbose_name_plural if n > 1 else meta.verbose_name)
            counts[name] = counts.get(name, 0) + n
    return [f"{n} {name}" for name, n in sorted(counts.items())]

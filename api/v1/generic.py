"""The API's generic views over the pages' own list / edit / delete views: the pages supply
the queryset (`for_user`), the filterset, the form, the save and delete rules, so the API and
the pages cannot disagree. Every write is audited as the pages audit it."""

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from django.db.models import ProtectedError
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from api import etags
from api.forms import bind, form_request_serializer
from api.permissions import reads
from api.problems import NON_FIELD, Conflict
from portal import audit
from portal.roles import CHANGE, VIEW


class IntegerIdViewSet(viewsets.GenericViewSet):
    """The base of our viewsets: objects are found by an integer id, so the router's path
    takes only an `int` there (and the schema says so). Anything else is no route, a 404
    problem; the router's default (any text) let "abc" reach the lookups, whose ValueError
    was a 500."""

    lookup_value_converter = "int"


class PageBackedViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, IntegerIdViewSet):
    """List, read, create, update (PATCH with If-Match) and delete through the pages' views.

    Subclasses name `list_page`, `edit_page`, `delete_page` (the page classes) and the
    `rows_key` of inline rows, if the form has them.
    """

    list_page = None
    edit_page = None
    delete_page = None
    rows_key = ""
    # Relations the output serializer reads and the page's queryset does not load.
    prefetch: tuple[str, ...] = ()
    conditional_updates = True
    read_only = False  # set by actions that only compute an answer (`api.permissions.reads`)
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    @property
    def area(self) -> str:
        return self.list_page.queryset.area

    @property
    def filterset_class(self):
        return self.list_page.filterset

    def get_queryset(self):
        action = VIEW if reads(self.request, self) else CHANGE
        objects = self.list_page.queryset.all().for_user(self.request.user, action)
        objects = objects.prefetch_related(*self.prefetch)
        return objects if objects.ordered else objects.order_by("pk")  # stable pages

    def get_serializer_class(self):
        if self.action in ("create", "partial_update"):
            name = self.edit_page.form_class.__name__.removesuffix("Form") + "Write"
            return form_request_serializer(self.edit_page.form_class, name, self.rows_key)
        return self.output_serializer

    def _response(self, obj, code=status.HTTP_200_OK) -> Response:
        data = self.output_serializer(obj, context=self.get_serializer_context()).data
        return Response(data, status=code, headers={"ETag": etags.etag_of(data)})

    def retrieve(self, request, *args, **kwargs):
        return self._response(self.get_object())

    def _save(self, page, obj, create: bool):
        """Validate with the page's form and save with the page's hook, audited."""
        if reason := page.editable(obj):
            raise Conflict(reason)
        # Before the form: validating a model form writes its values into the instance.
        tracker = None if create else audit.ChangeTracker(obj)
        form = bind(
            page.form_class,
            self.request.data,
            user=self.request.user,
            instance=obj,
            rows_key=self.rows_key,
        )
        try:
            with transaction.atomic():
                obj = page.save(self.request, form)
                if tracker:
                    tracker.record(self.request.user)
                else:
                    audit.record_created(self.request.user, obj)
        except DjangoValidationError as refused:
            raise ValidationError({NON_FIELD: refused.messages}) from refused
        return obj

    def create(self, request, *args, **kwargs):
        page = self.edit_page()
        obj = self._save(page, page.new_object(request), create=True)
        return self._response(self.get_queryset().get(pk=obj.pk), status.HTTP_201_CREATED)

    def _get_locked_object(self):
        """The object, read again once its row is locked (inside the caller's transaction).

        An edit committed between the first read and the lock is in the second read, so the
        If-Match comparison, the form and the audit's "before" all start from it: of two
        PATCHes of the same version, the second sees the first and gets 412.
        """
        seen = self.get_object()  # 404 / 403 as for a read
        # Lock the row alone: the page's queryset may group (annotations), and PostgreSQL
        # refuses FOR UPDATE with GROUP BY.
        type(seen)._base_manager.select_for_update().filter(pk=seen.pk).exists()
        return self.get_object()

    @transaction.atomic
    def partial_update(self, request, *args, **kwargs):
        obj = self._get_locked_object()
        current = self.output_serializer(obj, context=self.get_serializer_context()).data
        etags.require_match(request, etags.etag_of(current))
        page = self.edit_page()
        # Edit the object as the edit page loads it: the list's prefetched rows (resource
        # groups, components) would still be the old ones when the audit reads "after".
        self._save(page, page.get_object(request, obj.pk), create=False)
        return self._response(self.get_queryset().get(pk=obj.pk))

    def destroy(self, request, *args, **kwargs):
        obj = self.get_object()
        page = self.delete_page()
        if reason := page.deletable(obj):
            raise Conflict(reason)
        before = audit.snapshot(obj)
        try:
            with transaction.atomic():
                audit.record_deleted(request.user, obj, before)
                page.delete(request, obj)
        except ProtectedError as protected:
            _, blocking, _ = page.dependents(self.get_object())
            names = "; ".join(item["label"] for item in blocking)
            raise Conflict(f"Still in use: {names}.") from protected
        except DjangoValidationError as refused:
            raise Conflict(" ".join(refused.messages)) from refused
        return Response(status=status.HTTP_204_NO_CONTENT)


def write_docs(output, noun: str):
    return extend_schema_view(
        create=extend_schema(summary=f"Create a {noun}", responses={201: output}),
        partial_update=extend_schema(
            summary=f"Change a {noun} (send If-Match with the ETag you read)",
            responses={200: output},
        ),
        destroy=extend_schema(summary=f"Delete a {noun}"),
    )


class NoSuchPath(APIView):
    """Any other path under /api/v1/: a 404 problem, not the portal's HTML page."""

    schema = None  # not an operation
    permission_classes = []
    throttle_classes = []

    def http_method_not_allowed(self, request, *args, **kwargs):
        raise NotFound("No such API path; /api/docs/ lists them.")

    get = post = put = patch = delete = http_method_not_allowed

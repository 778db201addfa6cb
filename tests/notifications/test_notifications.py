"""Notifications (issue 16): once per occurrence, by the user's choice of channel, in the
portal with an unread count, and what the engine sends them for."""

# Fixtures are imported from tests/workspace_fixtures.py, so arguments "redefine" them.
# ruff: noqa: F811
import socket
import threading
from datetime import timedelta

import pytest
from django.core import mail
from django.db import connection, transaction
from django.urls import reverse
from django.utils import timezone

from pools import health, notices, warmpool
from pools.lifecycle import State, transition
from pools.steps import fail
from portal import notifications, users
from portal.models import AuditEntry, Notification, NotificationKind, NotificationPreference
from profiles.models import Infrastructure
from tests.pools.warm_fixtures import warm_profile  # noqa: F401
from tests.workspace_fixtures import starter, workspace_factory  # noqa: F401

READY = NotificationKind.WORKSPACE_READY


def message(key="workspace:1:ready", kind=READY) -> notifications.Message:
    return notifications.Message(kind=kind, key=key, subject="Ready", body="It is.", url="/w/1/")


def test_one_notification_and_one_email_per_occurrence(member, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        assert len(notifications.notify([member], message())) == 1
        assert notifications.notify([member], message()) == []  # a second delivery
    assert Notification.objects.count() == 1
    (email,) = mail.outbox
    assert email.to == [member.email]
    assert "http://127.0.0.1:8000/w/1/" in email.body
    assert notifications.send_email(Notification.objects.get().pk) is False  # sent already


def test_nothing_is_sent_when_the_decision_rolls_back(member, django_capture_on_commit_callbacks):
    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        notifications.notify([member], message())
        raise RuntimeError("the warning's transaction failed")
    assert (callbacks, mail.outbox, Notification.objects.count()) == ([], [], 0)


def test_each_user_chooses_the_channels_per_kind(
    member, org_admin, django_capture_on_commit_callbacks
):
    NotificationPreference.objects.create(user=member, kind=READY, email=False, in_portal=True)
    NotificationPreference.objects.create(user=org_admin, kind=READY, email=True, in_portal=False)
    with django_capture_on_commit_callbacks(execute=True):
        notifications.notify([member, org_admin], message())
    assert [email.to for email in mail.outbox] == [[org_admin.email]]
    assert notifications.unread_count(member) == 1
    assert notifications.unread_count(org_admin) == 0


def test_a_user_without_an_address_gets_no_email(user_factory, django_capture_on_commit_callbacks):
    nobody = user_factory("noaddress", "member")
    nobody.email = ""
    nobody.save()
    with django_capture_on_commit_callbacks(execute=True):
        notifications.notify([nobody], message())
    assert mail.outbox == []
    assert notifications.unread_count(nobody) == 1


def test_a_mail_server_that_is_down_keeps_the_notification(
    member, monkeypatch, django_capture_on_commit_callbacks
):
    def down(**kwargs):
        raise ConnectionRefusedError("no mail server")

    monkeypatch.setattr("portal.notifications.send_mail", down)
    with django_capture_on_commit_callbacks(execute=True):
        notifications.notify([member], message())
    assert notifications.unread_count(member) == 1
    assert Notification.objects.get().emailed_at is None  # not sent, so not marked sent


def test_an_email_the_mail_library_refuses_is_not_marked_sent(member):
    # A subject stored with a line break (notify() no longer makes one): BadHeaderError.
    notification = Notification.objects.create(
        user=member, key="k", kind=READY, subject="lab\nnotes is ready"
    )
    assert notifications.send_email(notification.pk) is False
    notification.refresh_from_db()
    assert (mail.outbox, notification.emailed_at) == ([], None)


@pytest.mark.django_db(transaction=True)
def test_a_mail_server_that_never_answers_does_not_hold_the_worker(member, settings):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # the kernel accepts the connection; nothing ever says "220"
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", silent.getsockname()[1]
    settings.EMAIL_USE_TLS = False
    settings.EMAIL_TIMEOUT = 1
    # What notify() makes; committed, as the worker's own connection must see it.
    notification = Notification.objects.create(user=member, key="k", kind=READY, subject="Ready")
    sent = []

    def send():  # in a thread, so a send that hangs fails the test instead of hanging it
        try:
            sent.append(notifications.send_email(notification.pk))
        finally:
            connection.close()

    worker = threading.Thread(target=send, daemon=True)
    worker.start()
    worker.join(settings.EMAIL_TIMEOUT + 10)
    still_waiting = worker.is_alive()
    silent.close()
    worker.join(5)
    assert not still_waiting, "send_email still waits on a mail server that never answers"
    notification.refresh_from_db()
    assert (sent, notification.emailed_at) == ([False], None)


def test_a_subject_is_one_line(member):
    (notification,) = notifications.notify(
        [member], notifications.Message(kind=READY, key="k", subject="lab\r\n\x07 notes\u2028ok")
    )
    assert notification.subject == "lab notes ok"


def test_a_deactivated_owner_is_not_emailed_about_the_workspace(
    member, org_admin, starter, workspace_factory, django_capture_on_commit_callbacks
):
    workspace = workspace_factory(member, starter, state=State.PROVISIONING, name="left-behind")
    users.deactivate(org_admin, member)
    fail(workspace, "Node gpu-07.internal.example: CUDA error")
    with django_capture_on_commit_callbacks(execute=True):
        assert notices.notify_workspace_events() == 1
    assert mail.outbox == []
    # Still recorded, so the next pass does not tell it again, and listed should the
    # account come back.
    notification = Notification.objects.get(user=member)
    assert (notification.email_wanted, notification.in_portal) == (False, True)


# -- the pages ----------------------------------------------------------------------------------


def test_the_list_the_badge_and_marking_read(member, client):
    notifications.notify([member], message("a"))
    notifications.notify([member], message("b"))
    client.force_login(member)
    assert "2<span" in client.get(reverse("portal:notification_badge")).content.decode()
    page = client.get(reverse("portal:notification_list")).content.decode()
    assert "2 unread" in page and "Ready" in page
    first = Notification.objects.get(key="a")
    client.post(reverse("portal:notification_read", args=[first.pk]))
    assert notifications.unread_count(member) == 1
    client.post(reverse("portal:notification_read_all"))
    assert notifications.unread_count(member) == 0
    assert (
        client.get(reverse("portal:notification_badge")).content.decode().strip() == "Notifications"
    )


def test_the_header_asks_for_the_count_after_the_page(member, client):
    client.force_login(member)
    page = client.get(reverse("portal:notification_list")).content.decode()
    assert f'hx-get="{reverse("portal:notification_badge")}"' in page


def test_choosing_what_to_get_is_saved_and_audited(member, client):
    client.force_login(member)
    page = client.get(reverse("portal:notification_settings")).content.decode()
    assert "A workspace of mine is about to expire" in page
    assert "warm pool halted" not in page  # an administrators' kind
    response = client.post(
        reverse("portal:notification_settings"),
        {
            f"{kind}-{channel}": "on"
            for kind in NotificationKind.values
            for channel in ("email", "portal")
        }
        | {"expiry_warning-email": ""},
    )
    assert response.status_code == 302
    preference = NotificationPreference.objects.get(user=member)
    assert (preference.kind, preference.email, preference.in_portal) == (
        "expiry_warning",
        False,
        True,
    )
    assert AuditEntry.objects.filter(message="changed their notification choices").count() == 1
    # Nothing ticked at all (an empty POST) is a choice too: no kind by any channel.
    client.post(reverse("portal:notification_settings"), {})
    assert (
        NotificationPreference.objects.filter(user=member, email=False, in_portal=False).count()
        == 6
    )


def test_administrators_choose_about_their_kinds(org_admin, client):
    client.force_login(org_admin)
    page = client.get(reverse("portal:notification_settings")).content.decode()
    assert "A warm pool halted after repeated failures" in page


# -- what the engine tells --------------------------------------------------------------------


def test_owners_hear_of_ready_and_failed_once(
    member, starter, workspace_factory, django_capture_on_commit_callbacks
):
    ready = workspace_factory(member, starter, state=State.PROVISIONING, name="fast")
    broken = workspace_factory(member, starter, state=State.PROVISIONING, name="broken")
    transition(ready, State.READY, message="ready")
    fail(broken, "The image could not be pulled.")
    with django_capture_on_commit_callbacks(execute=True):
        assert notices.notify_workspace_events() == 2
        assert notices.notify_workspace_events() == 0  # the next pass, or a second delivery
    subjects = sorted(email.subject for email in mail.outbox)
    assert subjects == [
        "[GPU PaaS] Workspace “broken” failed",
        "[GPU PaaS] Workspace “fast” is ready",
    ]
    assert "The image could not be pulled." in mail.outbox[0].body + mail.outbox[1].body


def test_a_workspace_name_with_a_line_break_is_still_emailed(
    member, starter, workspace_factory, django_capture_on_commit_callbacks
):
    # A name stored before requests made names one line.
    workspace = workspace_factory(member, starter, state=State.PROVISIONING, name="lab\nnotes")
    fail(workspace, "The image could not be pulled.")
    with django_capture_on_commit_callbacks(execute=True):
        notices.notify_workspace_events()
    (email,) = mail.outbox
    assert email.to == [member.email]
    assert email.subject == "[GPU PaaS] Workspace “lab notes” failed"
    assert Notification.objects.get().emailed_at is not None


@pytest.mark.django_db(transaction=True)
def test_one_name_with_a_line_break_does_not_stop_the_pass_for_everyone(
    user_factory, starter, workspace_factory
):
    # Real commits, as in a worker: each email is sent as its notification commits.
    mallory = user_factory("mallory", "member")
    alice = user_factory("alice", "member")
    odd = workspace_factory(mallory, starter, state=State.PROVISIONING, name="x\ny")
    fine = workspace_factory(alice, starter, state=State.PROVISIONING, name="fine")
    fail(odd, "broken")
    fail(fine, "broken too")
    assert notices.notify_workspace_events() == 2
    assert sorted(email.to[0] for email in mail.outbox) == [alice.email, mallory.email]
    assert not Notification.objects.filter(emailed_at=None).exists()


def test_one_occurrence_that_fails_does_not_stop_the_pass_for_the_others(
    member, user_factory, starter, workspace_factory, monkeypatch
):
    alice = user_factory("alice", "member")
    odd = workspace_factory(member, starter, state=State.PROVISIONING, name="odd")
    fine = workspace_factory(alice, starter, state=State.PROVISIONING, name="fine")
    fail(odd, "broken")
    fail(fine, "broken too")
    composed = notices.event_message

    def compose(event):
        if event.workspace_id == odd.pk:
            raise RuntimeError("a bug in one message")
        return composed(event)

    monkeypatch.setattr(notices, "event_message", compose)
    assert notices.notify_workspace_events() == 1
    assert list(Notification.objects.values_list("user", flat=True)) == [alice.pk]
    monkeypatch.undo()  # the failed one was not recorded: the next pass tells it
    assert notices.notify_workspace_events() == 1


def test_owners_hear_when_their_workspace_is_degraded(member, starter, workspace_factory):
    workspace = workspace_factory(member, starter, state=State.READY, name="shaky")
    transition(workspace, State.DEGRADED, message="its JupyterLab does not answer")
    notices.notify_workspace_events()
    notification = Notification.objects.get(user=member)
    assert notification.kind == NotificationKind.WORKSPACE_DEGRADED
    assert "its JupyterLab does not answer" in notification.body


def test_a_claimed_or_restarted_workspace_is_not_announced(member, starter, workspace_factory):
    workspace = workspace_factory(member, starter, state=State.STARTING)
    transition(workspace, State.READY, message="ready")
    assert notices.notify_workspace_events() == 0


def test_old_events_are_not_told(member, starter, workspace_factory):
    workspace = workspace_factory(member, starter, state=State.PROVISIONING)
    transition(workspace, State.READY, message="ready")
    assert notices.notify_workspace_events(timezone.now() + timedelta(days=2)) == 0


def test_administrators_hear_once_that_a_pool_halted(
    warm_profile, member, org_admin, operator, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        for _ in range(warmpool.HARD_LIMIT + 2):
            warmpool.record_failure(warm_profile.pk, "no capacity")
    told = Notification.objects.filter(kind=NotificationKind.POOL_HALTED)
    assert sorted(told.values_list("user__username", flat=True)) == ["olga", "otto"]
    assert len(mail.outbox) == 2 and "halted after 5 failures" in mail.outbox[0].subject


def test_administrators_hear_when_infrastructure_becomes_unreachable(
    local_infrastructure, org_admin, member
):
    started = timezone.now()
    infrastructure = Infrastructure.objects.get(pk=local_infrastructure.pk)
    health.record(infrastructure, health.unreachable("connection refused"), started)
    infrastructure = Infrastructure.objects.get(pk=local_infrastructure.pk)
    health.record(infrastructure, health.unreachable("still refused"), timezone.now())
    (notification,) = Notification.objects.all()
    assert notification.user == org_admin
    assert notification.kind == NotificationKind.INFRASTRUCTURE_UNREACHABLE
    assert "connection refused" in notification.body


def test_a_pass_with_nothing_new_costs_two_queries_however_many_events(
    member, starter, workspace_factory, django_assert_num_queries
):
    for number in range(5):
        workspace = workspace_factory(member, starter, state=State.PROVISIONING, name=f"w{number}")
        transition(workspace, State.READY, message="ready")
    assert notices.notify_workspace_events() == 5
    with django_assert_num_queries(2):  # the recent events, the keys already told
        assert notices.notify_workspace_events() == 0

"""Carry the log context from the code that enqueues a task to the worker that runs it.

django-q2 sends `pre_enqueue` with the task package before it is signed and queued: the
ids bound at that moment (the request id and user of the web request, say) ride along in
the package under `log_context`, beside the task's arguments, so task functions never see
them. In the worker, `pre_execute` binds them again together with the task's id and
function, and the id of the object the task works on, found by the name of the task's
first parameter (`TASK_OBJECT_PARAMETERS`). `post_execute_in_worker` restores what was
bound before (nothing, in a worker; the caller's context for a task run synchronously).

So one request's web log lines and its tasks' worker log lines share a request id, and the
web side logs the task id it enqueued ("enqueued task …").
"""

from __future__ import annotations

import inspect
import logging
import pydoc

from django.dispatch import receiver
from django_q.signals import post_execute_in_worker, pre_enqueue, pre_execute

from portal import logs

logger = logging.getLogger("portal.tasks")
_tokens: list = []  # one per task running in this process (more than one only when sync)

# A task whose first parameter has one of these names works on that object: its id is
# bound under the log field named here (e.g. `provision_workspace(workspace_id)`).
TASK_OBJECT_PARAMETERS = {
    "workspace_id": "workspace_id",
    "instance_id": "pool_instance_id",
    "pool_instance_id": "pool_instance_id",
}


def _function_name(func) -> str:
    if isinstance(func, str):
        return func
    return f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', repr(func))}"


def _object_ids(func, args) -> dict[str, str]:
    """{"workspace_id": "42"} for a task whose first parameter is `workspace_id`."""
    if isinstance(func, str):
        func = pydoc.locate(func)
    if not callable(func) or not args:
        return {}
    try:
        parameters = list(inspect.signature(func).parameters)
    except (TypeError, ValueError):
        return {}
    field = TASK_OBJECT_PARAMETERS.get(parameters[0]) if parameters else None
    return {field: str(args[0])} if field else {}


@receiver(pre_enqueue)
def remember_context(sender, task: dict, **kwargs) -> None:
    context = logs.current()
    if context:
        task["log_context"] = context
    ids = _object_ids(task["func"], task.get("args") or ())
    with logs.bind(task_id=task["id"], task=_function_name(task["func"]), **ids):
        logger.info("enqueued task %s", task["name"])


@receiver(pre_execute)
def bind_task_context(sender, func, task: dict, **kwargs) -> None:
    context = dict(task.get("log_context") or {})
    context.update(task_id=task["id"], task=_function_name(task["func"]))
    context.update(_object_ids(func, task.get("args") or ()))
    _tokens.append(logs.replace(context))
    logger.info("running task %s", task["name"])


@receiver(post_execute_in_worker)
def clear_task_context(sender, task: dict, **kwargs) -> None:
    outcome = "done" if task.get("success") else "failed"
    logger.info("task %s %s", task["name"], outcome)
    if _tokens:
        logs.restore(_tokens.pop())

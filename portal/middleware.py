import uuid

from portal.audit import current_request_id


class RequestIdMiddleware:
    """Tag each request with an id so the audit entries it writes can be grouped."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.id = uuid.uuid4()
        token = current_request_id.set(request.id)
        try:
            return self.get_response(request)
        finally:
            current_request_id.reset(token)

"""`ETag` on reads and `If-Match` on updates, so two admins cannot overwrite each other.

The ETag is a hash of the object as the API returns it. An update without If-Match is
refused with 428 (the client must say which version it changes), one whose If-Match no
longer matches with 412; the comparison runs with the row locked, so of two concurrent
updates from the same version exactly one wins.
"""

import hashlib
import json

from django.core.serializers.json import DjangoJSONEncoder

from api.problems import PreconditionFailed, PreconditionRequired


def etag_of(data) -> str:
    encoded = json.dumps(data, sort_keys=True, cls=DjangoJSONEncoder).encode()
    return '"' + hashlib.sha256(encoded).hexdigest()[:32] + '"'


def require_match(request, current: str) -> None:
    header = request.headers.get("If-Match", "").strip()
    if not header:
        raise PreconditionRequired()
    offered = {tag.strip() for tag in header.split(",")}
    if "*" not in offered and current not in offered:
        raise PreconditionFailed()

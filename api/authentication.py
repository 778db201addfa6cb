"""Token authentication for the API: `Authorization: Bearer gpp_…`.

Session authentication (DRF's, which enforces CSRF) works next to it, so the browsable docs
and the portal's own pages can call the API as the signed-in user.
"""

from rest_framework import authentication, exceptions

from api import tokens


class TokenAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1").split()
        if not header or header[0] != self.keyword:
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Give one token after “Bearer”.")
        try:
            token = tokens.check(header[1])
        except tokens.TokenRefused as refused:
            raise exceptions.AuthenticationFailed(str(refused)) from refused
        return token.user, token

    def authenticate_header(self, request) -> str:
        # A 401 (not 403) for requests without credentials, with the scheme to use.
        return f'{self.keyword} realm="api"'

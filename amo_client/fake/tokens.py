"""OAuth as amoCRM's league/oauth2-server does it: single-use authorization codes and refresh
tokens, access tokens checked on every call, a long-lived token, revocation."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

from amo_client.fake.records import (
    AccessToken,
    AuthorizationCode,
    RefreshToken,
    TokenGrant,
    TokenPair,
)
from amo_client.fake.replies import JSON, Reply, encode, oauth_problem
from amo_client.fake.store import AccountStore

AUTHORIZATION_CODE_LIFETIME = 20 * 60.0


class Tokens(AccountStore):
    """The account's OAuth server and the tokens it has issued."""

    def _start_tokens(
        self,
        *,
        client_id: str,
        client_secret: str,
        redirect_uri: str,
        access_token_lifetime: float,
        refresh_token_lifetime: float,
        long_lived_token: str | None,
        long_lived_token_lifetime: float,
        revoked_refresh_status: int,
        revoke_access_on_refresh: bool,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.redirect_uri = redirect_uri
        self._access_token_lifetime = access_token_lifetime
        self._refresh_token_lifetime = refresh_token_lifetime
        self._revoked_refresh_status = revoked_refresh_status
        self._revoke_access_on_refresh = revoke_access_on_refresh
        self._access_tokens: dict[str, AccessToken] = {}
        self._refresh_tokens: dict[str, RefreshToken] = {}
        self._codes: dict[str, AuthorizationCode] = {}
        self._token_grants: list[TokenGrant] = []
        self.long_lived_token = long_lived_token or "fake-ll-" + secrets.token_urlsafe(32)
        self._access_tokens[self.long_lived_token] = AccessToken(
            self.long_lived_token, self.api_user_id, self._clock() + long_lived_token_lifetime
        )

    def _authenticate(self, header: str | None) -> int | None:
        if not header:
            return None
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            return None
        token = self._access_tokens.get(value.strip())
        if token is None or token.revoked or token.expires_at <= self._clock():
            return None
        return token.user_id

    def _oauth_token(self, body: Any, content_type: str, content: bytes) -> Reply:
        """``POST /oauth2/access_token``; ``body`` is the JSON read from ``content``, if any."""
        data: dict[str, Any] = {}
        if isinstance(body, dict):
            data = body
        elif "form" in content_type:
            data = dict(parse_qsl(content.decode("utf-8", "replace")))
        grant_type = str(data.get("grant_type", ""))
        if (
            data.get("client_id") != self.client_id
            or data.get("client_secret") != self.client_secret
        ):
            return self._grant_refused(grant_type, 401, "Client authentication failed")
        if grant_type == "authorization_code":
            return self._exchange_code(data)
        if grant_type == "refresh_token":
            return self._refresh(data)
        return self._grant_refused(
            grant_type, 400, "Check that all required parameters have been provided"
        )

    def _grant_refused(self, grant_type: str, status: int, hint: str) -> Reply:
        self._token_grants.append(TokenGrant(grant_type, issued=False, hint=hint))
        return oauth_problem(status, hint)

    def _exchange_code(self, data: Mapping[str, Any]) -> Reply:
        code = self._codes.get(str(data.get("code", "")))
        if code is None:
            return self._grant_refused(
                "authorization_code", 400, "Cannot decrypt the authorization code"
            )
        if code.used:
            return self._grant_refused(
                "authorization_code", 400, "Authorization code has been revoked"
            )
        if code.expires_at <= self._clock():
            return self._grant_refused("authorization_code", 400, "Authorization code has expired")
        if data.get("redirect_uri") != self.redirect_uri:
            return self._grant_refused("authorization_code", 400, "Invalid redirect URI")
        code.used = True
        return self._issue(code.user_id, "authorization_code")

    def _refresh(self, data: Mapping[str, Any]) -> Reply:
        token = self._refresh_tokens.get(str(data.get("refresh_token", "")))
        if token is None:
            return self._grant_refused("refresh_token", 400, "Cannot decrypt the refresh token")
        if token.used or token.revoked:
            return self._grant_refused(
                "refresh_token", self._revoked_refresh_status, "Token has been revoked"
            )
        if token.expires_at <= self._clock():
            return self._grant_refused("refresh_token", 400, "Token has expired")
        token.used = True
        if self._revoke_access_on_refresh and token.access_value in self._access_tokens:
            self._access_tokens[token.access_value].revoked = True
        return self._issue(token.user_id, "refresh_token")

    def _issue(self, user_id: int, grant_type: str) -> Reply:
        pair = self._new_pair(user_id)
        self._token_grants.append(TokenGrant(grant_type, issued=True))
        body = {
            "token_type": "Bearer",
            "expires_in": pair.expires_in,
            "access_token": pair.access_token,
            "refresh_token": pair.refresh_token,
        }
        return Reply(200, encode(body), JSON)

    def _new_pair(self, user_id: int) -> TokenPair:
        now = self._clock()
        access = "fake-at-" + secrets.token_urlsafe(32)
        refresh = "fake-rt-" + secrets.token_urlsafe(32)
        self._access_tokens[access] = AccessToken(
            access, user_id, now + self._access_token_lifetime
        )
        self._refresh_tokens[refresh] = RefreshToken(
            refresh, user_id, now + self._refresh_token_lifetime, access
        )
        return TokenPair(access, refresh, int(self._access_token_lifetime))

    def issue_authorization_code(self, *, user_id: int | None = None) -> str:
        """An authorization code as an admin copies it from amoCRM: single use, valid 20 min."""
        with self._lock:
            value = "fake-code-" + secrets.token_urlsafe(24)
            self._codes[value] = AuthorizationCode(
                value, user_id or self.api_user_id, self._clock() + AUTHORIZATION_CODE_LIFETIME
            )
            return value

    def issue_token_pair(self, *, user_id: int | None = None) -> TokenPair:
        """A fresh OAuth pair, as if the integration had just been authorized."""
        with self._lock:
            return self._new_pair(user_id or self.api_user_id)

    def revoke_tokens(self) -> None:
        """Revoke every token, the long-lived one included (the integration was uninstalled)."""
        with self._lock:
            for access in self._access_tokens.values():
                access.revoked = True
            for refresh in self._refresh_tokens.values():
                refresh.revoked = True

    def expire_access_tokens(self) -> None:
        """Make every access token expired now; refresh tokens stay usable."""
        with self._lock:
            now = self._clock()
            for access in self._access_tokens.values():
                access.expires_at = min(access.expires_at, now)

    @property
    def token_grants(self) -> list[TokenGrant]:
        with self._lock:
            return list(self._token_grants)

    @property
    def refresh_reuse_attempts(self) -> int:
        """How often a spent (or revoked) refresh token was presented again."""
        with self._lock:
            return sum(
                1
                for grant in self._token_grants
                if grant.grant_type == "refresh_token" and grant.hint == "Token has been revoked"
            )

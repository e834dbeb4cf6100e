"""Providers that take an access token (WeChat, WeCom): `errcode` answers, a token fetched per
account and cached (channels/tokens.py), and on an expired token one refresh and an immediate
second try. Subclasses give their token request and their table of codes."""

from django.utils.translation import gettext as _

from ..models import AttemptOutcome, ChannelAccount, TokenRefreshReason
from ..tokens import TokenUnavailable, access_token, refresh_recorded, token_expired, token_store
from .base import DeliveryResult, next_china_day
from .http import HttpBackend, ProviderHttpError, Steps


class TokenBackend(HttpBackend):
    token_path = ""
    token_codes: frozenset = frozenset()
    transient_codes: frozenset = frozenset({-1})
    # Codes that mean "today's quota is spent": retried after midnight in China, not in minutes.
    daily_quota_codes: frozenset = frozenset()

    def token_params(self, account: ChannelAccount) -> dict:
        raise NotImplementedError

    def outcome_for(self, errcode: int) -> str:
        if errcode == 0:
            return AttemptOutcome.SENT
        if errcode in self.token_codes:
            return AttemptOutcome.TOKEN_EXPIRED
        if errcode in self.transient_codes:
            return AttemptOutcome.TRANSIENT
        return AttemptOutcome.PERMANENT  # documented refusals and anything unknown: never retried blindly

    def post_with_token(self, account: ChannelAccount, path: str, body: dict) -> Steps:
        """Send (as steps); on an expired token, refresh once and send again at once. The token
        comes from the cache, or is fetched blocking before the request is built."""
        for attempt in (1, 2):
            try:
                token = access_token(account.pk, lambda: self.fetch_token(account))
                answer = yield self.call(
                    "POST", f"{self.base_url(account)}{path}", params={"access_token": token}, json=body
                )
            except ProviderHttpError as err:
                return err.result
            except TokenUnavailable as err:
                return DeliveryResult(AttemptOutcome.TRANSIENT, "token_unavailable", str(err))
            errcode = int(answer.get("errcode", 0))
            outcome = self.outcome_for(errcode)
            if outcome == AttemptOutcome.TOKEN_EXPIRED and attempt == 1:
                token_expired(account.pk, token)
                continue
            return DeliveryResult(
                outcome,
                "" if errcode == 0 else str(errcode),
                "" if errcode == 0 else answer.get("errmsg", ""),
                answer,
                str(answer.get("msgid", "")),
                retry_at=next_china_day() if errcode in self.daily_quota_codes else None,
            )
        raise AssertionError("unreachable")

    def check(self, account: ChannelAccount) -> DeliveryResult:
        """A token from the provider, which proves the app id and secret, recorded as a refresh
        for the connection test; it replaces the cached one."""
        try:
            token, expires_in = refresh_recorded(
                account.pk, lambda: self.fetch_token(account), reason=TokenRefreshReason.CHECK
            )
        except ProviderHttpError as err:
            return err.result
        token_store(account.pk, token, expires_in)
        return DeliveryResult(
            AttemptOutcome.SENT, message=_("access token issued, valid for %(seconds)s s") % {"seconds": expires_in}
        )

    def fetch_token(self, account: ChannelAccount) -> tuple[str, int]:
        answer = self.request("GET", f"{self.base_url(account)}{self.token_path}", params=self.token_params(account))
        return self.token_from(answer)

    def token_from(self, answer: dict) -> tuple[str, int]:
        if not answer.get("access_token"):
            errcode = int(answer.get("errcode", -1))
            raise ProviderHttpError(
                DeliveryResult(self.outcome_for(errcode), str(errcode), answer.get("errmsg", ""), answer)
            )
        return answer["access_token"], int(answer.get("expires_in", 7200))

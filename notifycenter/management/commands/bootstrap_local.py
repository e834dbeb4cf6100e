import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from channels.models import ChannelAccount
from notifycenter.auth import api_keys_forget
from notifycenter.models import SCOPES, ApiKey

# Sandbox accounts aimed at `manage.py fakeproviders`; their credentials are throwaway values the
# fake server accepts, encrypted at rest like real ones.
SANDBOX_ACCOUNTS = [
    {
        "name": "sandbox-wechat-oa",
        "channel": "wechat_oa_template",
        "provider": "wechat",
        "app_id": "wx-sandbox-oa",
        "secret": {"app_secret": "sandbox-oa-secret", "token": "sandbox-wechat-token"},
        "options": {},
    },
    {
        "name": "sandbox-wechat-mini",
        "channel": "wechat_mini_subscribe",
        "provider": "wechat",
        "app_id": "wx-sandbox-mini",
        "secret": {"app_secret": "sandbox-mini-secret", "token": "sandbox-wechat-token"},
        "options": {"miniprogram_state": "developer"},
    },
    {
        "name": "sandbox-wecom-ops-robot",
        "channel": "wecom_robot",
        "provider": "wecom",
        "app_id": "",
        "secret": {"robot_key": "sandbox-robot-key"},
        "options": {},
        "rate_limit_per_minute": 20,
    },
    {
        "name": "sandbox-wecom-app",
        "channel": "wecom_app",
        "provider": "wecom",
        "app_id": "ww-sandbox-corp",
        "secret": {"corp_secret": "sandbox-corp-secret"},
        "options": {"agentid": 1000002},
    },
    {
        "name": "sandbox-jpush",
        "channel": "app_push",
        "provider": "jpush",
        "app_id": "sandbox-app-key",
        "secret": {"master_secret": "sandbox-master-secret"},
        "options": {"apns_production": False},
    },
    {
        "name": "sandbox-aliyun-sms",
        "channel": "sms",
        "provider": "aliyun",
        "app_id": "sandbox-access-key",
        "secret": {"access_key_secret": "sandbox-access-secret", "callback_token": "sandbox-callback-token"},
        "options": {"sign_name": "互联网医院"},
    },
    {
        # Not the default: bind a template's SMS to it in the admin to send through Tencent Cloud.
        "name": "sandbox-tencent-sms",
        "channel": "sms",
        "provider": "tencent",
        "app_id": "1400000000",
        "secret": {
            "secret_id": "sandbox-secret-id",
            "secret_key": "sandbox-secret-key",
            "callback_token": "sandbox-callback-token",
        },
        "options": {"sign_name": "互联网医院", "region": "ap-guangzhou"},
    },
]


class Command(BaseCommand):
    help = "For `make run`: an admin login and a local API key, kept in the data folder and printed."

    def handle(self, *args, **options):
        data_dir = Path(settings.DATA_DIR)
        login_file = data_dir / "admin-login.txt"
        key_file = data_dir / "dev-api-key"
        User = get_user_model()

        admin = User.objects.filter(username="admin").first()
        saved = login_file.read_text().split() if login_file.exists() else []
        # As with the key: the login printed must be one this database accepts.
        if admin is None or len(saved) != 2 or not admin.check_password(saved[1]):
            password = secrets.token_urlsafe(12)
            user, _ = User.objects.get_or_create(username="admin", defaults={"is_staff": True, "is_superuser": True})
            user.is_staff = user.is_superuser = True
            user.set_password(password)
            user.save()
            _write_private(login_file, f"admin {password}\n")
        username, password = login_file.read_text().split()

        # The key in the file must be one this database knows: a file written against another
        # database (a test run's, say) would print a key every request refuses.
        kept = key_file.read_text().strip() if key_file.exists() else ""
        if not ApiKey.objects.filter(client="local-dev", is_active=True, hashed_key=ApiKey.hash(kept)).exists():
            ApiKey.objects.filter(client="local-dev").update(is_active=False)
            api_keys_forget()
            _, raw = ApiKey.generate(client="local-dev", name="make-run", scopes=list(SCOPES))
            _write_private(key_file, raw + "\n")
        # The local key may do all the API offers (a key made by an older version lacked webhooks).
        if (
            ApiKey.objects.filter(client="local-dev", is_active=True)
            .exclude(scopes=list(SCOPES))
            .update(scopes=list(SCOPES))
        ):
            api_keys_forget()

        for spec in SANDBOX_ACCOUNTS:
            if not ChannelAccount.objects.filter(name=spec["name"]).exists():
                ChannelAccount.objects.create(
                    name=spec["name"],
                    channel=spec["channel"],
                    provider=spec["provider"],
                    app_id=spec["app_id"],
                    credentials=spec["secret"],
                    options=spec["options"],
                    sandbox=True,
                    is_default=not ChannelAccount.objects.filter(channel=spec["channel"], is_default=True).exists(),
                    rate_limit_per_minute=spec.get("rate_limit_per_minute"),
                )

        self.stdout.write(self.style.SUCCESS("Admin login:   ") + f"{username} / {password}   ({login_file})")
        self.stdout.write(self.style.SUCCESS("Local API key: ") + f"{key_file.read_text().strip()}   ({key_file})")


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o600)

"""The recipient directory, as the hospital backend keeps it current (Api-Key, scope recipients)."""

from drf_spectacular.utils import OpenApiExample, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from inbox.cycles import validated

from .masking import mask_id, mask_phone
from .models import Audience, Recipient
from .otp import MAINLAND_MOBILE, otp_verify
from .services import consents_grant, recipient_put


class RecipientInput(serializers.Serializer):
    name = serializers.CharField(max_length=100, required=False, allow_blank=True)
    phone = serializers.RegexField(r"^\+?[0-9]{6,20}$", required=False, allow_blank=True)
    wechat_mini_openid = serializers.CharField(max_length=64, required=False, allow_blank=True)
    wechat_oa_openid = serializers.CharField(max_length=64, required=False, allow_blank=True)
    wechat_unionid = serializers.CharField(max_length=64, required=False, allow_blank=True)
    push_registration_ids = serializers.ListField(
        child=serializers.CharField(max_length=64), max_length=10, required=False
    )
    wecom_userid = serializers.CharField(max_length=64, required=False, allow_blank=True)
    locale = serializers.ChoiceField(choices=["zh-hans", "en"], required=False)


class RecipientOutput(serializers.ModelSerializer):
    """Addresses come back masked: the directory is written by the backend, not read from here."""

    phone = serializers.SerializerMethodField()
    wechat_mini_openid = serializers.SerializerMethodField()
    wechat_oa_openid = serializers.SerializerMethodField()
    consents = serializers.SerializerMethodField()

    class Meta:
        model = Recipient
        fields = [
            "audience",
            "external_id",
            "name",
            "phone",
            "wechat_mini_openid",
            "wechat_oa_openid",
            "locale",
            "consents",
            "updated_at",
        ]

    def get_phone(self, obj) -> str:
        return mask_phone(obj.phone)

    def get_wechat_mini_openid(self, obj) -> str:
        return mask_id(obj.wechat_mini_openid)

    def get_wechat_oa_openid(self, obj) -> str:
        return mask_id(obj.wechat_oa_openid)

    def get_consents(self, obj) -> dict:
        return {c.template_id: c.remaining for c in obj.consents.all()}


def _audience(value: str) -> str:
    if value not in Audience.values:
        raise NotFound(f"Unknown audience {value!r}; one of {', '.join(Audience.values)}.")
    return value


EXTERNAL_ID_MAX = Recipient._meta.get_field("external_id").max_length


def _external_id(value: str) -> str:
    if not value or len(value) > EXTERNAL_ID_MAX or "\x00" in value:
        raise ValidationError({"external_id": [f"An external id has 1 to {EXTERNAL_ID_MAX} characters, no NUL."]})
    return value


class RecipientPutApi(APIView):
    @extend_schema(
        request=RecipientInput,
        responses={200: RecipientOutput, 201: RecipientOutput},
        examples=[
            OpenApiExample(
                "A patient's addresses",
                value={"name": "张三", "phone": "13812345678", "wechat_mini_openid": "oMini-p42-openid"},
                request_only=True,
            )
        ],
        summary="Create or update a person's addresses",
    )
    def put(self, request, audience: str, external_id: str):
        values = validated(RecipientInput(data=request.data))
        recipient, created = recipient_put(
            audience=_audience(audience), external_id=_external_id(external_id), **values
        )
        return Response(RecipientOutput(recipient).data, status=status.HTTP_201_CREATED if created else 200)


class SubscriptionsApi(APIView):
    class SubscriptionsInput(serializers.Serializer):
        template_ids = serializers.ListField(
            child=serializers.CharField(max_length=128),
            min_length=1,
            max_length=20,
            help_text="WeChat template ids the user just accepted in wx.requestSubscribeMessage.",
        )

    @extend_schema(
        request=SubscriptionsInput,
        responses=RecipientOutput,
        examples=[
            OpenApiExample("Consent to one template", value={"template_ids": ["tmpl-video-call"]}, request_only=True)
        ],
        summary="Record mini-program subscribe consents (each allows one send)",
    )
    def post(self, request, audience: str, external_id: str):
        values = validated(self.SubscriptionsInput(data=request.data))
        recipient = consents_grant(
            audience=_audience(audience), external_id=_external_id(external_id), template_ids=values["template_ids"]
        )
        return Response(RecipientOutput(recipient).data)


class OtpVerifyInput(serializers.Serializer):
    phone = serializers.RegexField(MAINLAND_MOBILE)
    purpose = serializers.CharField(max_length=64, min_length=1)
    code = serializers.RegexField(r"^\d{4,8}$")


class OtpVerifyApi(APIView):
    @extend_schema(
        request=OtpVerifyInput,
        responses={200: inline_serializer("OtpVerified", {"verified": serializers.BooleanField()})},
        summary="Check a one-time SMS code: accepted once; 5 wrong tries lock it",
    )
    def post(self, request):
        otp_verify(client=request.user.client, **validated(OtpVerifyInput(data=request.data)))
        return Response({"verified": True})

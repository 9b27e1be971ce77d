"""ExternalIdType and ExternalId as edx-platform defines them (fields, uniqueness, get-or-create)."""

from __future__ import annotations

import uuid

from django.contrib.auth.models import User
from django.db import models


class ExternalIdType(models.Model):
    CALIPER = "caliper"
    XAPI = "xapi"
    LTI = "lti"

    name = models.CharField(max_length=32, unique=True)
    description = models.TextField(default="")

    class Meta:
        app_label = "external_user_ids"


class ExternalId(models.Model):
    external_user_id = models.UUIDField(default=uuid.uuid4, editable=False, unique=True)
    external_id_type = models.ForeignKey(ExternalIdType, on_delete=models.CASCADE)
    user = models.ForeignKey(User, on_delete=models.CASCADE)

    class Meta:
        unique_together = (("user", "external_id_type"),)
        app_label = "external_user_ids"

    @classmethod
    def add_new_user_id(cls, user: User, type_name: str) -> tuple[ExternalId | None, bool]:
        try:
            type_obj = ExternalIdType.objects.get(name=type_name)
        except ExternalIdType.DoesNotExist:
            return None, False
        return cls.objects.get_or_create(user=user, external_id_type=type_obj)

    @classmethod
    def batch_get_or_create_user_ids(cls, users: list[User], type_name: str) -> dict[int, ExternalId] | None:
        try:
            type_obj = ExternalIdType.objects.get(name=type_name)
        except ExternalIdType.DoesNotExist:
            return None
        result = {eid.user_id: eid for eid in cls.objects.filter(user__in=users, external_id_type=type_obj)}
        new = [cls(user=user, external_id_type=type_obj) for user in users if user.id not in result]
        result.update({eid.user_id: eid for eid in cls.objects.bulk_create(new)})
        return result

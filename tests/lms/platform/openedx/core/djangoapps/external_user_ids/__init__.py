"""A stand-in for edx-platform's `openedx.core.djangoapps.external_user_ids` app, the one edx-platform module
rthub's plug-in imports: its two models and the two class methods callers use, with the signatures and
answers of edx-platform's (`add_new_user_id(user, type_name) -> (ExternalId | None, created)`,
`batch_get_or_create_user_ids(users, type_name) -> {user id: ExternalId} | None`), on a real database."""

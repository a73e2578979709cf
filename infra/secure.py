"""The secure stack's principals and what each may do (`python -m infra.stack up --secure`).

Kafka principals (SCRAM-SHA-512, passwords generated per stack), least privilege:

| principal | may |
|---|---|
| `producer` | WRITE (so DESCRIBE) the image topic; enough for the idempotent producer (KIP-679) |
| `worker`   | READ the image topic and its consumer group, WRITE the dead-letter topic; creates nothing |
| `monitor`  | DESCRIBE the image topic and the group: lag for `consumer.status` and the viewer |
| `admin`    | the super user: creates topics and grants the ACLs below, as a platform team would |

The topics are created here, by `admin`, since no other principal may create one; the worker is
configured not to declare any topic of its own (consumer/app.py). PostgreSQL's logins are made
by the documented commands (`python -m db create-worker-login`, `create-viewer-login`) once the
schema exists. docs/deploying/security.md lists the same table for a real cluster.
"""

from __future__ import annotations

import secrets

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)

from infra.process import PG_USER, StackConfig, StackError

KAFKA_USERS = ("admin", "producer", "worker", "monitor")
IMAGE_TOPIC, DEAD_LETTER_TOPIC, GROUP = "image-keys", "image-keys-dead-letter", "visionscaling"


def new_passwords() -> dict[str, str]:
    return {name: secrets.token_urlsafe(18) for name in (*KAFKA_USERS, PG_USER)}


def grants(topic: str, dead_letter: str, group: str) -> dict[str, list[tuple[ResourceType, str, AclOperation]]]:
    """Each principal's ACLs for one pipeline (topic, dead-letter topic, consumer group)."""
    return {
        "producer": [(ResourceType.TOPIC, topic, AclOperation.WRITE)],
        "worker": [
            (ResourceType.TOPIC, topic, AclOperation.READ),
            (ResourceType.GROUP, group, AclOperation.READ),
            (ResourceType.TOPIC, dead_letter, AclOperation.WRITE),
        ],
        "monitor": [
            (ResourceType.TOPIC, topic, AclOperation.DESCRIBE),
            (ResourceType.GROUP, group, AclOperation.DESCRIBE),
        ],
    }


def grant(cfg: StackConfig, topic: str, dead_letter: str, group: str, partitions: int = 3) -> None:
    """Create the pipeline's two topics (as admin) and grant every principal its ACLs."""
    from common.kafka_admin import ensure_topic
    from infra.kafka import admin_config, admin_settings

    for name in (topic, dead_letter):  # the project's own topic creation, as admin
        ensure_topic(admin_settings(cfg, kafka_partitions=partitions), name=name)
    admin = AdminClient(admin_config(cfg))
    bindings = [
        AclBinding(kind, name, ResourcePatternType.LITERAL, f"User:{user}", "*", op, AclPermissionType.ALLOW)
        for user, acls in grants(topic, dead_letter, group).items()
        for kind, name, op in acls
    ]
    for future in admin.create_acls(bindings, request_timeout=30).values():
        future.result()


def add_users(cfg: StackConfig) -> None:
    """Every principal's SCRAM-SHA-512 credential, set by admin over TLS (so no password is
    ever on a command line); setting it again with the same password is harmless."""
    from confluent_kafka.admin import ScramCredentialInfo, ScramMechanism, UserScramCredentialUpsertion

    from infra.kafka import admin_config

    admin = AdminClient(admin_config(cfg))
    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192)
    upserts = [UserScramCredentialUpsertion(u, info, cfg.passwords[u].encode()) for u in KAFKA_USERS]
    for user, future in admin.alter_user_scram_credentials(upserts, request_timeout=30).items():
        try:
            future.result()
        except KafkaException as exc:
            raise StackError(f"could not set the SCRAM credential of {user}: {exc.args[0].str()}") from exc


def start(cfg: StackConfig) -> None:
    """After the services: the principals, the default pipeline's topics and ACLs (idempotent)."""
    add_users(cfg)
    grant(cfg, IMAGE_TOPIC, DEAD_LETTER_TOPIC, GROUP)

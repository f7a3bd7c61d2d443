"""Create a partner account of the reseller space and print its invitation link.

For a newcomer on a local ``make run`` (no mailer yet): it sends ``partner.create`` as
``operations`` and reads the ``partner.notification`` the mailer would get, as ``mailer``
(through a temporary ``mailer.*`` queue), both with the users of ``broker-users.json``.

    python -m tools.invite_partner RESELLER_ID "COMPANY" EMAIL
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid
from collections.abc import Sequence

import aio_pika

from shared.runtime.identity import read_users, with_credentials
from shared.runtime.settings import Settings
from shared.runtime.topology import COMMANDS, EVENTS


async def invite(reseller_id: str, company: str, email: str) -> str:
    settings, timeout = Settings(), 20.0
    users = read_users(settings.users_file())
    ns = settings.amqp_namespace
    mailer = await aio_pika.connect(with_credentials(settings.amqp_url, users["mailer"]))
    operations = await aio_pika.connect(with_credentials(settings.amqp_url, users["operations"]))
    async with mailer, operations:
        listen = await mailer.channel()
        queue = await listen.declare_queue(
            f"{ns}mailer.invite-{uuid.uuid4().hex[:8]}", exclusive=True, auto_delete=True
        )
        await queue.bind(ns + EVENTS, routing_key="partner.notification")
        send = await operations.channel()
        replies = await send.get_queue("amq.rabbitmq.reply-to", ensure=False)
        reply: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

        async def on_reply(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            if not reply.done():
                reply.set_result(message.body)

        await replies.consume(on_reply, no_ack=True)
        exchange = await send.get_exchange(ns + COMMANDS, ensure=False)
        body = {"reseller_id": reseller_id, "company": company, "contact_email": email}
        await exchange.publish(
            aio_pika.Message(
                json.dumps(body).encode(),
                message_id=str(uuid.uuid4()),
                content_type="application/json",
                reply_to="amq.rabbitmq.reply-to",
                user_id=users["operations"].username,
            ),
            routing_key="partner.create",
        )
        answer = json.loads(await asyncio.wait_for(reply, timeout))
        if not answer["ok"]:
            raise SystemExit(f"refused: {answer['error']['message']}")
        async with queue.iterator(timeout=timeout) as notifications:
            async for message in notifications:
                await message.ack()
                event = json.loads(message.body)
                if event.get("reseller_id") == reseller_id:
                    link: str = event["link"]
                    return link
    raise SystemExit("no invitation arrived; is the reseller space running (make run)?")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.invite_partner", description=__doc__)
    parser.add_argument("reseller_id")
    parser.add_argument("company")
    parser.add_argument("email")
    args = parser.parse_args(argv)
    link = asyncio.run(invite(args.reseller_id, args.company, args.email))
    print(f"invitation for {args.email}: {link}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
